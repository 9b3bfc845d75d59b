//! Wycheproof's JSON Web Key vectors (`../shared/testvectors/wycheproof/
//! json_web_key_test.json`, 26 key-level cases) through the filter's JWKS
//! reader, `jose::decode`'s classification and the signature check (issue
//! 19, item 1). Every vector Wycheproof calls invalid is refused; the valid
//! ones are accepted, except HMAC keys, which this filter never accepts.
//! tcId 7 is a ROCA-vulnerable RSA key whose signature verifies: it is
//! refused at key load, and `skipped_keys` says why.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_jwks::authz::claims;
use jwt_jwks::crypto::alg::{Alg, AlgSet};
use jwt_jwks::keys::jwks;
use jwt_jwks::token::jose::Header;
use serde_json::{json, Value};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/testvectors/wycheproof/json_web_key_test.json"
);

/// Valid vectors the filter refuses by policy: symmetric keys (HS256/384/512).
const POLICY: &[u64] = &[2, 13, 14, 15];

/// The reason each refusal is expected for (the part of it that must appear).
fn expected_reason(id: u64) -> &'static str {
    match id {
        1..=4 | 10..=18 | 25 | 26 => "algorithm is not allowed",
        6 => "key refused",
        7 => "key refused",
        8 => "key refused",
        9 => "key refused",
        19 | 20 => "key refused",
        21..=24 => "key refused",
        _ => "",
    }
}

fn verdict(keys: &Result<jwks::Parsed, jwks::JwksError>, jws: &str) -> Result<(), String> {
    let parts: Vec<&str> = jws.split('.').collect();
    let [h, p, s] = parts[..] else {
        return Err("not three parts".into());
    };
    let header_json = URL_SAFE_NO_PAD.decode(h).map_err(|_| "header base64")?;
    let header = Header::parse(std::str::from_utf8(&header_json).unwrap())
        .map_err(|_| "header json".to_string())?;
    let alg = claims::check_header(&header, AlgSet::of(&Alg::ALL))
        .map_err(|r| r.describe().to_string())?;
    let keys = keys.as_ref().map_err(|_| "key refused".to_string())?;
    let entry = header
        .kid
        .as_deref()
        .and_then(|k| keys.set.find(k))
        .ok_or("key refused")?;
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| "signature base64")?;
    entry
        .key
        .verify(alg, &jws[..h.len() + 1 + p.len()], &sig)
        .map_err(|_| "bad signature".to_string())
}

#[test]
fn wycheproof_json_web_key_vectors() {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(VECTORS).expect("the vectors")).unwrap();
    let mut outcomes: BTreeMap<u64, Result<(), String>> = BTreeMap::new();
    let mut roca_reason = None;
    for group in doc["testGroups"].as_array().unwrap() {
        let set = group
            .get("public")
            .or_else(|| group.get("private"))
            .unwrap();
        let set = if set.get("keys").is_some() {
            set.clone()
        } else {
            json!({ "keys": [set] })
        };
        let keys = jwks::parse(set.to_string().as_bytes(), AlgSet::of(&Alg::ALL), 10);
        for t in group["tests"].as_array().unwrap() {
            let id = t["tcId"].as_u64().unwrap();
            let got = verdict(&keys, t["jws"].as_str().unwrap());
            if id == 7 {
                let skipped = match &keys {
                    Err(jwks::JwksError::NoUsableKeys(_)) => {
                        let again = jwt_jwks::keys::refresh::evaluate(
                            &jwt_jwks::keys::refresh::Answer {
                                status: Some(200),
                                body_size: set.to_string().len(),
                                body: Some(set.to_string().as_bytes()),
                                ..Default::default()
                            },
                            &jwt_jwks::config::Config::parse(br#"{"jwks_uri":"http://i/j"}"#)
                                .unwrap()
                                .providers[0],
                            AlgSet::of(&Alg::ALL),
                        );
                        again.err()
                    }
                    other => panic!("tcId 7: the ROCA key must not load: {other:?}"),
                };
                roca_reason = skipped;
            }
            outcomes.insert(id, got.clone());
            let valid = t["result"] == "valid";
            if valid && !POLICY.contains(&id) {
                assert_eq!(got, Ok(()), "tcId {id} ({})", t["comment"]);
            } else {
                let why = got.expect_err(&format!("tcId {id} ({}) accepted", t["comment"]));
                let want = if valid {
                    "algorithm is not allowed"
                } else {
                    expected_reason(id)
                };
                assert!(why.contains(want), "tcId {id}: {why:?}, expected {want:?}");
            }
        }
    }
    assert_eq!(outcomes.len(), 26);
    assert_eq!(outcomes[&5], Ok(()));
    // The ROCA key is refused with its reason, which cache/info shows in
    // skipped_keys.
    let set = doc["testGroups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["tests"][0]["tcId"] == 7)
        .unwrap()["public"]["keys"][0]
        .clone();
    let one = json!({ "keys": [set, serde_json::from_str::<Value>(RSA_2048).unwrap()] });
    let parsed = jwks::parse(one.to_string().as_bytes(), AlgSet::of(&Alg::ALL), 10).unwrap();
    assert_eq!(parsed.set.len(), 1);
    assert!(
        parsed.skipped[0].reason.contains("ROCA"),
        "{:?}",
        parsed.skipped
    );
    // A JWKS holding only that key is a failed fetch (current keys kept).
    let reason = roca_reason.expect("the ROCA-only set is refused");
    assert!(reason.contains("usable"), "{reason}");
}

/// An ordinary 2048-bit RSA JWK (from the filter's JWKS tests) beside the
/// ROCA key, so that the set loads and the skipped reason can be read.
const RSA_2048: &str = r#"{"kty":"RSA","kid":"ok","e":"AQAB","n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"}"#;
