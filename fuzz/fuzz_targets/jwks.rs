//! The JWKS parser: any document, never a panic; what loads re-loads.
#![no_main]

use jwt_jwks::crypto::alg::{Alg, AlgSet};
use jwt_jwks::keys::jwks;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = jwks::parse(data, AlgSet::of(&Alg::ALL), 16) {
        assert!(!parsed.set.is_empty() && parsed.set.len() <= 16);
        // The accepted set, shared with other workers as a document, must
        // load again to the same keys.
        let again = jwks::parse(parsed.set.to_document().to_string().as_bytes(), AlgSet::of(&Alg::ALL), 16)
            .expect("an accepted set re-parses");
        assert_eq!(again.set.kids(), parsed.set.kids());
    }
});
