//! Wycheproof's Ed25519 vectors (`tests/vectors/wycheproof/ed25519_test.json`)
//! through the filter's key loading (`PublicKey::ed25519`) and signature
//! check (`PublicKey::verify`): every valid vector verifies, every invalid
//! one fails (a key refused at load counts as failing).

mod common;

use common::hex;
use jwt_jwks::crypto::alg::{Alg, AlgSet};
use jwt_jwks::crypto::ed25519::VerifyingKey;
use jwt_jwks::crypto::key::PublicKey;

#[test]
fn wycheproof_ed25519() {
    let doc = common::wycheproof("ed25519_test.json");
    let groups = doc["testGroups"].as_array().expect("testGroups");
    let (mut valid, mut invalid, mut key_refused, mut raw_msgs) = (0, 0, 0, 0);
    let mut differs_from_compact = Vec::new();
    let mut wrong = Vec::new();
    for group in groups {
        let pk = hex(group["publicKey"]["pk"].as_str().expect("pk"));
        let key = PublicKey::ed25519(&pk, AlgSet::of(&[Alg::EdDSA]));
        let raw_key = VerifyingKey::from_bytes(&pk);
        assert_eq!(key.is_ok(), raw_key.is_ok(), "load verdicts differ");
        for t in group["tests"].as_array().expect("tests") {
            let id = t["tcId"].as_u64().expect("tcId");
            let msg = hex(t["msg"].as_str().expect("msg"));
            let sig = hex(t["sig"].as_str().expect("sig"));
            let expect_valid = match t["result"].as_str().expect("result") {
                "valid" => true,
                "invalid" => false,
                other => panic!("tcId {id}: unexpected result {other}"),
            };
            let verdict = match (&key, &raw_key) {
                (Ok(key), Ok(raw_key)) => {
                    let raw_verdict = raw_key.verify(&msg, &sig);
                    // The filter's path takes the signing input as text;
                    // messages that are not UTF-8 go to the module directly.
                    match std::str::from_utf8(&msg) {
                        Ok(text) => {
                            let v = key.verify(Alg::EdDSA, text, &sig).is_ok();
                            assert_eq!(v, raw_verdict, "tcId {id}: paths differ");
                            v
                        }
                        Err(_) => {
                            raw_msgs += 1;
                            raw_verdict
                        }
                    }
                }
                _ => {
                    key_refused += 1;
                    false
                }
            };
            // ed25519-compact, the verifier jwt-simple used before.
            let old = {
                let pk = ed25519_compact::PublicKey::from_slice(&pk).expect("32 bytes");
                pk.validate().is_ok()
                    && ed25519_compact::Signature::from_slice(&sig)
                        .is_ok_and(|s| pk.verify(&msg, &s).is_ok())
            };
            if old != verdict {
                differs_from_compact.push(id);
            }
            if expect_valid {
                valid += 1;
            } else {
                invalid += 1;
            }
            if verdict != expect_valid {
                wrong.push((id, t["comment"].as_str().unwrap_or("").to_string()));
            }
        }
    }
    println!(
        "ed25519: {valid} valid, {invalid} invalid, {key_refused} tests under a key refused \
         at load, {raw_msgs} non-UTF-8 messages checked through ed25519::VerifyingKey"
    );
    assert!(
        wrong.is_empty(),
        "verdicts differ from Wycheproof: {wrong:?}"
    );
    // Where the two differ (cofactored against cofactorless equation) no
    // Wycheproof vector tells them apart.
    assert!(
        differs_from_compact.is_empty(),
        "verdicts differ from ed25519-compact: {differs_from_compact:?}"
    );
    assert_eq!(
        valid + invalid,
        doc["numberOfTests"].as_u64().expect("count")
    );
    assert!(valid > 0 && invalid > 0);
}
