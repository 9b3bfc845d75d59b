//! Differential: the filter's own verifiers (RSA, ECDSA comb tables,
//! Ed25519) against the reference crates of the tests (jwt-simple for RSA,
//! the p256/p384 `ecdsa` verifiers, ed25519-compact). The input picks the
//! algorithm, the key (ECDSA and Ed25519: from its bytes; RSA: one key per
//! process, key generation being slow), the message and the changes made to
//! a genuine signature; the two verdicts must agree.
#![no_main]

use std::sync::OnceLock;

use jwt_jwks::crypto::alg::{Alg, AlgSet, KeyFamily};
use jwt_jwks::crypto::key::PublicKey;
use jwt_simple::prelude::*;
use libfuzzer_sys::fuzz_target;

/// Applies `(position, xor)` pairs to `sig`.
fn mutate(sig: &mut [u8], changes: &[u8]) {
    for pair in changes.chunks_exact(2) {
        if !sig.is_empty() {
            let i = usize::from(pair[0]) * 7 % sig.len();
            sig[i] ^= pair[1];
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
}

fn ours(key: &PublicKey, alg: Alg, input: &str, sig: &[u8]) -> bool {
    key.verify(alg, input, sig).is_ok()
}

fn rsa_key() -> &'static RS256KeyPair {
    static K: OnceLock<RS256KeyPair> = OnceLock::new();
    K.get_or_init(|| RS256KeyPair::generate(2048).unwrap())
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 34 {
        return;
    }
    let (sel, secret, rest) = (data[0], &data[1..33], &data[33..]);
    let split = rest.len().min(usize::from(data[0] >> 2));
    let (msg, changes) = rest.split_at(split);
    let input = b64(msg);
    match sel % 4 {
        0 => {
            use p256::ecdsa::signature::{Signer, Verifier};
            let Ok(sk) = p256::ecdsa::SigningKey::from_slice(secret) else { return };
            let sec1 = sk.verifying_key().to_sec1_point(false);
            let key = PublicKey::ec(KeyFamily::P256, sec1.as_bytes(), AlgSet::of(&[Alg::ES256])).unwrap();
            let sig: p256::ecdsa::Signature = sk.sign(input.as_bytes());
            let mut raw = sig.to_bytes().to_vec();
            mutate(&mut raw, changes);
            let theirs = p256::ecdsa::Signature::from_slice(&raw)
                .is_ok_and(|s| sk.verifying_key().verify(input.as_bytes(), &s).is_ok());
            assert_eq!(ours(&key, Alg::ES256, &input, &raw), theirs, "ES256");
        }
        1 => {
            use p384::ecdsa::signature::{Signer, Verifier};
            let mut wide = [0u8; 48];
            wide[16..].copy_from_slice(secret);
            let Ok(sk) = p384::ecdsa::SigningKey::from_slice(&wide) else { return };
            let sec1 = sk.verifying_key().to_sec1_point(false);
            let key = PublicKey::ec(KeyFamily::P384, sec1.as_bytes(), AlgSet::of(&[Alg::ES384])).unwrap();
            let sig: p384::ecdsa::Signature = sk.sign(input.as_bytes());
            let mut raw = sig.to_bytes().to_vec();
            mutate(&mut raw, changes);
            let theirs = p384::ecdsa::Signature::from_slice(&raw)
                .is_ok_and(|s| sk.verifying_key().verify(input.as_bytes(), &s).is_ok());
            assert_eq!(ours(&key, Alg::ES384, &input, &raw), theirs, "ES384");
        }
        2 => {
            let seed = ed25519_compact::Seed::from_slice(secret).unwrap();
            let kp = ed25519_compact::KeyPair::from_seed(seed);
            let Ok(key) = PublicKey::ed25519(kp.pk.as_ref(), AlgSet::of(&[Alg::EdDSA])) else {
                return;
            };
            let mut raw = kp.sk.sign(input.as_bytes(), None).to_vec();
            mutate(&mut raw, changes);
            let theirs = ed25519_compact::Signature::from_slice(&raw)
                .is_ok_and(|s| kp.pk.verify(input.as_bytes(), &s).is_ok());
            let mine = ours(&key, Alg::EdDSA, &input, &raw);
            if mine != theirs {
                // The one known difference: ed25519-compact's equation is
                // cofactored, so an R with a torsion component passes there
                // (tests/ed25519_differential.rs). Ours never accepts more.
                assert!(theirs && !mine, "EdDSA: ours accepted what the reference refused");
                let r: [u8; 32] = raw[..32].try_into().unwrap();
                let point = curve25519_dalek::edwards::CompressedEdwardsY(r).decompress();
                assert!(
                    point.is_some_and(|p| !p.is_torsion_free()),
                    "EdDSA: refused a signature the reference accepts, R torsion-free"
                );
            }
        }
        _ => {
            let kp = rsa_key();
            let comps = kp.public_key().to_components();
            let der = kp.to_der().unwrap();
            let (alg, token) = match secret[0] % 6 {
                0 => (Alg::RS256, kp.sign(Claims::with_custom_claims(serde_json::json!({ "m": input }), Duration::from_hours(1)))),
                1 => (Alg::RS384, RS384KeyPair::from_der(&der).unwrap().sign(Claims::with_custom_claims(serde_json::json!({ "m": input }), Duration::from_hours(1)))),
                2 => (Alg::RS512, RS512KeyPair::from_der(&der).unwrap().sign(Claims::with_custom_claims(serde_json::json!({ "m": input }), Duration::from_hours(1)))),
                3 => (Alg::PS256, PS256KeyPair::from_der(&der).unwrap().sign(Claims::with_custom_claims(serde_json::json!({ "m": input }), Duration::from_hours(1)))),
                4 => (Alg::PS384, PS384KeyPair::from_der(&der).unwrap().sign(Claims::with_custom_claims(serde_json::json!({ "m": input }), Duration::from_hours(1)))),
                _ => (Alg::PS512, PS512KeyPair::from_der(&der).unwrap().sign(Claims::with_custom_claims(serde_json::json!({ "m": input }), Duration::from_hours(1)))),
            };
            let token = token.unwrap();
            let (signing_input, sig) = token.rsplit_once('.').unwrap();
            let mut raw = Base64UrlSafeNoPadding::decode_to_vec(sig, None).unwrap();
            mutate(&mut raw, changes);
            let mutated = format!("{signing_input}.{}", b64(&raw));
            let key = PublicKey::rsa(&comps.n, &comps.e, AlgSet::of(&[alg])).unwrap();
            let pk = kp.public_key();
            let theirs = match alg {
                Alg::RS256 => pk.verify_token::<serde_json::Value>(&mutated, None).is_ok(),
                Alg::RS384 => RS384PublicKey::from_der(&pk.to_der().unwrap()).unwrap().verify_token::<serde_json::Value>(&mutated, None).is_ok(),
                Alg::RS512 => RS512PublicKey::from_der(&pk.to_der().unwrap()).unwrap().verify_token::<serde_json::Value>(&mutated, None).is_ok(),
                Alg::PS256 => PS256PublicKey::from_der(&pk.to_der().unwrap()).unwrap().verify_token::<serde_json::Value>(&mutated, None).is_ok(),
                Alg::PS384 => PS384PublicKey::from_der(&pk.to_der().unwrap()).unwrap().verify_token::<serde_json::Value>(&mutated, None).is_ok(),
                _ => PS512PublicKey::from_der(&pk.to_der().unwrap()).unwrap().verify_token::<serde_json::Value>(&mutated, None).is_ok(),
            };
            assert_eq!(ours(&key, alg, signing_input, &raw), theirs, "{alg:?}");
        }
    }
});
