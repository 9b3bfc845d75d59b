//! The token header and claims reader (src/token/json.rs): nothing may panic, and
//! nothing it accepts may be other than JSON. serde_json's `IgnoredAny` is
//! the judge: it checks the grammar with the same leniency as the reader's
//! skipping (escaped lone surrogates, numbers out of f64 range), and the
//! members the reader decodes are checked more strictly still.
#![no_main]

use jwt_jwks::token::jose::{Claims, Header};
use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = std::str::from_utf8(data) else { return };
    let json = serde_json::from_str::<IgnoredAny>(doc).is_ok();
    if Header::parse(doc).is_ok() {
        assert!(json, "a header that is not JSON was accepted: {doc:?}");
    }
    if Claims::parse(doc).is_ok() {
        assert!(json, "claims that are not JSON were accepted: {doc:?}");
    }
});
