//! Wycheproof JWS vectors (`../shared/testvectors/wycheproof/`), run through
//! this filter's key parsing, token decoding (`jose::decode`, the request
//! path's decoder), header policy and signature check. A vector whose
//! payload is not a JWT claims set is refused by `jose::decode` (asserted);
//! its signature is still checked, from the parts decoded here.
//!
//! For each vector the test computes the filter's verdict and compares it
//! with Wycheproof's. Where the filter's policy decides before any signature
//! is checked (a key it refuses, an algorithm it never accepts, a
//! non-compact serialization), the verdict is "refused" and the vector is
//! listed in `POLICY_DECIDES` with the reason, so a change in policy shows up
//! here as a failing test.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_jwks::authz::claims;
use jwt_jwks::crypto::alg::{Alg, AlgSet};
use jwt_jwks::crypto::key::SigError;
use jwt_jwks::keys::jwks;
use jwt_jwks::token::jose::{self, DecodeError, Header};

std::thread_local! {
    /// Vectors `jose::decode` read up to the payload (none of Wycheproof's
    /// payloads is a JWT claims set, so there it stops with `Claims`).
    static DECODED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}
use serde_json::Value;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/testvectors/wycheproof/json_web_signature_test.json"
);

/// Vectors Wycheproof calls valid that this filter refuses by policy,
/// before any signature is checked, with the reason. (Every vector
/// Wycheproof calls invalid must be refused, for whatever reason; the test
/// counts how many were refused by the signature check itself.)
const POLICY_DECIDES: &[(u64, &str)] = &[
    // Symmetric `oct` keys never verify tokens here (HS256 vectors).
    (1, "key refused"),
    (348, "key refused"),
    (352, "key refused"),
    (357, "key refused"),
    (358, "key refused"),
    (359, "key refused"),
    (372, "key refused"),
    (373, "key refused"),
    (376, "key refused"),
    (377, "key refused"),
    // RFC 7520 figure 20: a key published with "alg":"PS256" used for a
    // PS384 token. A JWK's `alg` pins the key to that algorithm here.
    (346, "key does not serve alg"),
    (350, "key does not serve alg"),
    // RFC 7520 figure 27: the JWK says "alg":"ES521", which is not a JWS
    // algorithm (ES512 is); a key with an unknown `alg` is not loaded.
    (347, "key refused"),
    (351, "key refused"),
    // An empty payload (RFC 7515 allows it) is not a JWT: jose::decode
    // refuses a token whose middle part is empty.
    (259, "malformed token: expected three dot-separated parts"),
    (264, "malformed token: expected three dot-separated parts"),
    (268, "malformed token: expected three dot-separated parts"),
    (272, "malformed token: expected three dot-separated parts"),
    (320, "malformed token: expected three dot-separated parts"),
    (325, "malformed token: expected three dot-separated parts"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Valid,
    Refused(String),
}

/// The filter's verdict on one compact JWS with one JWK as the key set.
fn verdict(keys: &Result<jwks::Parsed, jwks::JwksError>, jws: &Value) -> Verdict {
    let Ok(keys) = keys else {
        return Verdict::Refused("key refused".into());
    };
    let Some(jws) = jws.as_str() else {
        return Verdict::Refused("not compact serialization".into());
    };
    let mut scratch = jose::Scratch::default();
    let decoded = jose::decode(jws, &mut scratch);
    match &decoded {
        Err(DecodeError::Claims) => DECODED.with(|c| c.set(c.get() + 1)),
        Err(e) => return Verdict::Refused(e.describe().into()),
        Ok(_) => {}
    }
    let parts: Vec<&str> = jws.split('.').collect();
    let [h, p, s] = parts[..] else {
        return Verdict::Refused("not three parts".into());
    };
    let Ok(header_json) = URL_SAFE_NO_PAD.decode(h) else {
        return Verdict::Refused("header base64".into());
    };
    let Ok(header_text) = std::str::from_utf8(&header_json) else {
        return Verdict::Refused("header utf-8".into());
    };
    let Ok(header) = Header::parse(header_text) else {
        return Verdict::Refused("header json".into());
    };
    let alg = match claims::check_header(&header, AlgSet::of(&Alg::ALL)) {
        Ok(a) => a,
        Err(r) => return Verdict::Refused(r.describe().into()),
    };
    let Ok(sig) = URL_SAFE_NO_PAD.decode(s) else {
        return Verdict::Refused("signature base64".into());
    };
    if URL_SAFE_NO_PAD.decode(p).is_err() {
        return Verdict::Refused("payload base64".into());
    }
    let signing_input = &jws[..h.len() + 1 + p.len()];
    // What jose::decode made of it, when it took it, is what this test
    // decoded itself: the request path reads tokens the same way.
    if let Ok(d) = &decoded {
        assert_eq!(d.signing_input, signing_input);
        assert_eq!(d.signature, &sig[..]);
        assert_eq!(&*d.header.alg, &*header.alg);
        assert_eq!(d.header.kid.as_deref(), header.kid.as_deref());
        DECODED.with(|c| c.set(c.get() + 1));
    }
    let key = match header.kid.as_deref().and_then(|k| keys.set.find(k)) {
        Some(e) => &e.key,
        None => return Verdict::Refused("unknown kid".into()),
    };
    match key.verify(alg, signing_input, &sig) {
        Ok(()) => Verdict::Valid,
        Err(SigError::BadSignature) => Verdict::Refused("bad signature".into()),
        Err(SigError::WrongAlgorithm) => Verdict::Refused("key does not serve alg".into()),
    }
}

#[test]
fn wycheproof_json_web_signature_vectors() {
    let text =
        std::fs::read_to_string(VECTORS).expect("Wycheproof vectors in ../shared/testvectors");
    let doc: Value = serde_json::from_str(&text).unwrap();
    let policy: BTreeMap<u64, &str> = POLICY_DECIDES.iter().copied().collect();
    let (mut checked, mut by_signature, mut valid_seen) = (0, 0, 0);
    let mut mismatches = Vec::new();
    let mut policy_seen = Vec::new();
    let mut refused_by: BTreeMap<String, usize> = BTreeMap::new();
    for group in doc["testGroups"].as_array().unwrap() {
        let jwk = group.get("public").or_else(|| group.get("private"));
        let keys = match jwk {
            Some(k) => jwks::parse(
                serde_json::json!({ "keys": [k] }).to_string().as_bytes(),
                AlgSet::of(&Alg::ALL),
                10,
            ),
            None => Err(jwks::JwksError::NoKeysArray),
        };
        for t in group["tests"].as_array().unwrap() {
            let id = t["tcId"].as_u64().unwrap();
            let expected_valid = t["result"] == "valid";
            let got = verdict(&keys, &t["jws"]);
            checked += 1;
            valid_seen += usize::from(expected_valid);
            match (&got, policy.get(&id)) {
                (Verdict::Valid, None) if expected_valid => by_signature += 1,
                (Verdict::Refused(why), None) if !expected_valid => {
                    by_signature += usize::from(why == "bad signature");
                    *refused_by.entry(why.clone()).or_insert(0) += 1;
                }
                (Verdict::Refused(why), Some(reason)) if expected_valid && why == reason => {
                    policy_seen.push(id)
                }
                _ => mismatches.push(format!(
                    "tcId {id} ({}): wycheproof {}, filter {got:?}, listed {:?}",
                    t["comment"],
                    t["result"],
                    policy.get(&id)
                )),
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert_eq!(
        policy_seen.len(),
        POLICY_DECIDES.len(),
        "every listed vector exists"
    );
    assert!(
        checked > 300 && valid_seen > 20,
        "{checked} vectors, {valid_seen} valid"
    );
    // The signature check itself must do real work on these vectors.
    assert!(
        refused_by.get("bad signature").copied().unwrap_or(0) > 200,
        "{refused_by:?}"
    );
    let decoded = DECODED.with(|c| c.get());
    assert!(
        decoded > 250,
        "{decoded} vectors read by jose::decode up to the payload"
    );
    eprintln!(
        "wycheproof: {checked} vectors ({decoded} read by jose::decode up to the payload); \
         {by_signature} decided by the signature check; \
         valid vectors refused by policy: {}; invalid vectors refused by reason: {refused_by:?}",
        policy_seen.len()
    );
}
