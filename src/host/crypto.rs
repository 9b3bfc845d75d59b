//! Envoy's `verify_signature` foreign function, as `crypto::host` asks for it.
#![forbid(unsafe_code)]

use proxy_wasm::hostcalls;

use crate::crypto::host::{self, HostCrypto};

/// Envoy's `verify_signature` foreign function. Only installed when the
/// host is Envoy (or `host_crypto: on`): on ngx_wasm_module an unknown
/// foreign function is a trap.
pub(crate) struct EnvoyCrypto;

impl HostCrypto for EnvoyCrypto {
    fn verify(&self, args: &[u8]) -> Result<bool, String> {
        match hostcalls::call_foreign_function("verify_signature", Some(args)) {
            // An empty answer is a result of `false` with no error text.
            Ok(None) => Ok(false),
            Ok(Some(bytes)) => match host::decode_result(&bytes) {
                Some((ok, error)) => host::verdict(ok, &error),
                None => Err("unreadable verify_signature result".to_string()),
            },
            Err(status) => Err(format!("verify_signature: {status:?}")),
        }
    }
}
