//! The token path: decode, header and claims policy, and a signature check
//! against fixed keys of every family. Nothing may panic; nothing random
//! may verify.
#![no_main]

use std::sync::OnceLock;

use jwt_jwks::crypto::alg::{Alg, AlgSet};
use jwt_jwks::config::Config;
use jwt_jwks::authz::claims;
use jwt_jwks::keys::jwks;
use jwt_jwks::token::jose;
use libfuzzer_sys::fuzz_target;

struct Fixed {
    keys: jwks::KeySet,
    cfg: Config,
}

fn fixed() -> &'static Fixed {
    static F: OnceLock<Fixed> = OnceLock::new();
    F.get_or_init(|| {
        let doc = include_str!("../keys.json");
        let keys = jwks::parse(doc.as_bytes(), AlgSet::of(&Alg::ALL), 100)
            .expect("fuzz/keys.json loads")
            .set;
        let cfg = Config::parse(br#"{"jwks_uri":"http://idp/jwks","issuers":["https://idp"],"audiences":["api"],"max_token_age":3600}"#)
            .expect("fixed config");
        Fixed { keys, cfg }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let f = fixed();
    let mut scratch = jose::Scratch::default();
    let Ok(d) = jose::decode(token, &mut scratch) else { return };
    let _ = claims::check_claims(&d.claims, &f.cfg.providers[0].claims, 1_800_000_000);
    let Ok(alg) = claims::check_header(d.header, AlgSet::of(&Alg::ALL)) else { return };
    for entry in f.keys.for_alg(alg) {
        if entry.key.verify(alg, d.signing_input, d.signature).is_ok() {
            panic!("a fuzzed token verified under a fixed key: {token}");
        }
    }
});
