//! Which host this is, settled once per VM at the first request.
#![forbid(unsafe_code)]

use std::rc::Rc;

use proxy_wasm::hostcalls;

use crate::config::HostCryptoMode;
use crate::engine::Engine;
use crate::host::crypto::EnvoyCrypto;

/// Tells Envoy from other hosts, once per VM: Envoy answers the
/// `plugin_vm_id` property; ngx_wasm_module (Kong) does not, and there one
/// context cannot resume another's request and foreign functions trap.
pub(crate) fn settle_host(e: &mut Engine) {
    let envoy = matches!(hostcalls::get_property(vec!["plugin_vm_id"]), Ok(Some(_)));
    e.set_host(envoy);
    let crypto = match e.config().host_crypto {
        HostCryptoMode::On => true,
        HostCryptoMode::Auto => envoy,
        HostCryptoMode::Off => false,
    };
    if crypto {
        e.set_host_crypto(Some(Rc::new(EnvoyCrypto)));
    }
    log::info!(
        "jwt_jwks: host {} Envoy; signatures checked by {}; paused requests are woken {}",
        if envoy { "is" } else { "is not" },
        if crypto {
            "the host (RSA PKCS#1, ECDSA) and wasm (PSS, EdDSA)"
        } else {
            "wasm"
        },
        if e.shared_wake() {
            "by any context (shared)"
        } else {
            "each by its own callout (per_request)"
        }
    );
}
