//! Wycheproof ECDSA vectors in IEEE P1363 form (`r || s`, the JOSE encoding),
//! vendored in `tests/vectors/wycheproof/`.
//!
//! P-256/SHA-256 and P-384/SHA-384 run against `jwt_jwks::crypto::ecdsa` directly,
//! P-521/SHA-512 both directly and through `keys::PublicKey` (the ES512
//! path). Every `valid` vector must verify and every `invalid` one must fail.
//!
//! `acceptable` (legal but weak cases Wycheproof lets an implementation
//! accept or refuse): the decision here is "same verdict as the `ecdsa`
//! crate", checked for every curve on every vector, not only the
//! acceptable ones. The vendored files have no acceptable vectors; the count
//! is asserted so a new file with some is noticed.

mod common;

use common::hex;
use jwt_jwks::crypto::alg::{Alg, AlgSet, KeyFamily};
use jwt_jwks::crypto::ecdsa::{P256Key, P384Key, P521Key};
use jwt_jwks::crypto::key::PublicKey;
use p256::ecdsa::signature::Verifier as _;
use serde_json::Value;

fn load(name: &str) -> Value {
    common::wycheproof(name)
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    valid: usize,
    invalid: usize,
    acceptable: usize,
    keys: usize,
    keys_refused: usize,
    /// Invalid vectors whose key was refused (so no signature was checked).
    invalid_by_key: usize,
}

/// Runs one file. `load_key` builds a verifier from the SEC1 point, `None`
/// when refused; `reference` gives the `ecdsa` crate's verdict (or `None`
/// when there is no comparison for this curve).
fn run<K>(
    file: &str,
    load_key: impl Fn(&[u8]) -> Option<K>,
    verify: impl Fn(&K, &[u8], &[u8]) -> bool,
    reference: impl Fn(&[u8], &[u8], &[u8]) -> Option<bool>,
) -> Counts {
    let doc = load(file);
    let mut c = Counts::default();
    let mut failures = Vec::new();
    for group in doc["testGroups"].as_array().expect("testGroups") {
        let sec1 = hex(group["publicKey"]["uncompressed"]
            .as_str()
            .expect("uncompressed"));
        let key = load_key(&sec1);
        c.keys += 1;
        if key.is_none() {
            c.keys_refused += 1;
        }
        for t in group["tests"].as_array().expect("tests") {
            let id = t["tcId"].as_u64().expect("tcId");
            let msg = hex(t["msg"].as_str().expect("msg"));
            let sig = hex(t["sig"].as_str().expect("sig"));
            let got = key.as_ref().is_some_and(|k| verify(k, &msg, &sig));
            let result = t["result"].as_str().expect("result");
            match result {
                "valid" => c.valid += 1,
                "invalid" => {
                    c.invalid += 1;
                    if key.is_none() {
                        c.invalid_by_key += 1;
                    }
                }
                "acceptable" => c.acceptable += 1,
                other => panic!("{file} tcId {id}: unknown result {other}"),
            }
            let want = match result {
                "valid" => Some(true),
                "invalid" => Some(false),
                _ => None,
            };
            if let Some(w) = want {
                if got != w {
                    failures.push(format!("tcId {id} ({result}, {:?}): got {got}", t["flags"]));
                }
            }
            if let Some(r) = reference(&sec1, &msg, &sig) {
                if got != r {
                    failures.push(format!(
                        "tcId {id} ({result}): {got}, the ecdsa crate says {r}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{file}:\n{}", failures.join("\n"));
    println!("{file}: {c:?}");
    c
}

#[test]
fn p256_sha256() {
    let c = run(
        "ecdsa_secp256r1_sha256_p1363_test.json",
        P256Key::from_sec1,
        |k, m, s| k.verify(m, s),
        |sec1, m, s| {
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1).ok()?;
            Some(p256::ecdsa::Signature::from_slice(s).is_ok_and(|sig| vk.verify(m, &sig).is_ok()))
        },
    );
    assert_eq!((c.valid, c.invalid, c.acceptable), (173, 89, 0));
    assert_eq!((c.keys, c.keys_refused, c.invalid_by_key), (112, 0, 0));
}

#[test]
fn p384_sha384() {
    let c = run(
        "ecdsa_secp384r1_sha384_p1363_test.json",
        P384Key::from_sec1,
        |k, m, s| k.verify(m, s),
        |sec1, m, s| {
            let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(sec1).ok()?;
            Some(p384::ecdsa::Signature::from_slice(s).is_ok_and(|sig| vk.verify(m, &sig).is_ok()))
        },
    );
    assert_eq!((c.valid, c.invalid, c.acceptable), (193, 87, 0));
    assert_eq!(c.keys_refused, 0);
    assert_eq!(c.invalid_by_key, 0);
    assert!(c.keys > 0);
}

#[test]
fn p521_sha512_through_keys() {
    let c = run(
        "ecdsa_secp521r1_sha512_p1363_test.json",
        |sec1| PublicKey::ec(KeyFamily::P521, sec1, AlgSet::of(&[Alg::ES512])).ok(),
        |k, m, s| {
            // The ES512 path hashes the signing input as bytes; any bytes do.
            let input = String::from_utf8(m.to_vec());
            match input {
                Ok(input) => k.verify(Alg::ES512, &input, s).is_ok(),
                // Not UTF-8: cannot be a JWS signing input. None of the
                // vectors' messages is, which the count below checks.
                Err(_) => panic!("non-UTF-8 message"),
            }
        },
        p521_reference,
    );
    assert_eq!((c.valid, c.invalid, c.acceptable), (231, 87, 0));
    assert_eq!(c.keys_refused, 0);
}

/// The `ecdsa` crate's verdict (through `p521`) on one P-521 vector.
fn p521_reference(sec1: &[u8], m: &[u8], s: &[u8]) -> Option<bool> {
    let vk = p521::ecdsa::VerifyingKey::from_sec1_bytes(sec1).ok()?;
    Some(p521::ecdsa::Signature::from_slice(s).is_ok_and(|sig| vk.verify(m, &sig).is_ok()))
}

#[test]
fn p521_sha512() {
    let c = run(
        "ecdsa_secp521r1_sha512_p1363_test.json",
        P521Key::from_sec1,
        |k, m, s| k.verify(m, s),
        p521_reference,
    );
    assert_eq!((c.valid, c.invalid, c.acceptable), (231, 87, 0));
    assert_eq!(c.keys_refused, 0);
    assert_eq!(c.invalid_by_key, 0);
}
