//! Differential test of `jwt_jwks::crypto::rsa` against jwt-simple (pure Rust, the
//! RSA implementation the filter used before): fresh keys of 2048, 3072 and
//! 4096 bits, tokens with random claims signed by jwt-simple for RS256/384/512
//! and PS256/384/512. Both verifiers must accept every genuine signature and
//! refuse every corrupted one; ours must also refuse the signature under
//! every other algorithm (wrong hash, wrong scheme).

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::Rng;
use jwt_jwks::crypto::alg::{Alg, AlgSet, KeyFamily};
use jwt_jwks::crypto::key::{PublicKey, SigError};
use jwt_jwks::crypto::rsa::{Hash, RsaKey};
use jwt_simple::prelude::*;

/// Our verdict for `alg`.
fn ours(key: &RsaKey, alg: Alg, msg: &[u8], sig: &[u8]) -> bool {
    match alg {
        Alg::RS256 => key.verify_pkcs1v15(Hash::Sha256, msg, sig),
        Alg::RS384 => key.verify_pkcs1v15(Hash::Sha384, msg, sig),
        Alg::RS512 => key.verify_pkcs1v15(Hash::Sha512, msg, sig),
        Alg::PS256 => key.verify_pss(Hash::Sha256, msg, sig),
        Alg::PS384 => key.verify_pss(Hash::Sha384, msg, sig),
        Alg::PS512 => key.verify_pss(Hash::Sha512, msg, sig),
        _ => unreachable!(),
    }
}

fn sign(alg: Alg, der: &[u8], claims: JWTClaims<serde_json::Value>) -> String {
    match alg {
        Alg::RS256 => RS256KeyPair::from_der(der).unwrap().sign(claims),
        Alg::RS384 => RS384KeyPair::from_der(der).unwrap().sign(claims),
        Alg::RS512 => RS512KeyPair::from_der(der).unwrap().sign(claims),
        Alg::PS256 => PS256KeyPair::from_der(der).unwrap().sign(claims),
        Alg::PS384 => PS384KeyPair::from_der(der).unwrap().sign(claims),
        Alg::PS512 => PS512KeyPair::from_der(der).unwrap().sign(claims),
        _ => unreachable!(),
    }
    .unwrap()
}

/// jwt-simple's verdict on `signing_input.signature` for `alg`.
fn theirs(alg: Alg, n: &[u8], e: &[u8], signing_input: &str, sig: &[u8]) -> bool {
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig));
    let opts = || {
        Some(VerificationOptions {
            time_tolerance: Some(Duration::from_days(1)),
            ..VerificationOptions::default()
        })
    };
    type C = serde_json::Value;
    match alg {
        Alg::RS256 => RS256PublicKey::from_components(n, e)
            .unwrap()
            .verify_token::<C>(&token, opts())
            .is_ok(),
        Alg::RS384 => RS384PublicKey::from_components(n, e)
            .unwrap()
            .verify_token::<C>(&token, opts())
            .is_ok(),
        Alg::RS512 => RS512PublicKey::from_components(n, e)
            .unwrap()
            .verify_token::<C>(&token, opts())
            .is_ok(),
        Alg::PS256 => PS256PublicKey::from_components(n, e)
            .unwrap()
            .verify_token::<C>(&token, opts())
            .is_ok(),
        Alg::PS384 => PS384PublicKey::from_components(n, e)
            .unwrap()
            .verify_token::<C>(&token, opts())
            .is_ok(),
        Alg::PS512 => PS512PublicKey::from_components(n, e)
            .unwrap()
            .verify_token::<C>(&token, opts())
            .is_ok(),
        _ => unreachable!(),
    }
}

/// Big-endian a + b, `None` when the sum needs more than `a.len()` bytes.
fn add_be(a: &[u8], b: &[u8]) -> Option<Vec<u8>> {
    let mut out = a.to_vec();
    let mut carry = 0u16;
    let mut bi = b.iter().rev();
    for o in out.iter_mut().rev() {
        let s = u16::from(*o) + u16::from(*bi.next().unwrap_or(&0)) + carry;
        *o = s as u8;
        carry = s >> 8;
    }
    (carry == 0).then_some(out)
}

/// `n` as exactly `k` big-endian bytes.
fn fixed(n: &[u8], k: usize) -> Vec<u8> {
    let n = &n[n.iter().position(|b| *b != 0).unwrap_or(n.len())..];
    let mut out = vec![0u8; k - n.len()];
    out.extend_from_slice(n);
    out
}

#[derive(Default, Debug)]
struct Counts {
    genuine: usize,
    corrupted: usize,
    cross_alg: usize,
}

#[test]
fn agrees_with_jwt_simple_on_random_keys_and_messages() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut counts = Counts::default();
    for bits in [2048usize, 2048, 3072, 4096] {
        let kp = RS256KeyPair::generate(bits).unwrap();
        let der = kp.to_der().unwrap();
        let comps = kp.public_key().to_components();
        let (n, e) = (comps.n, comps.e);
        let key = RsaKey::new(&n, &e).unwrap();
        assert_eq!(key.bits(), bits);
        let k = key.size();
        let n_k = fixed(&n, k);
        let algs: Vec<Alg> = AlgSet::family(KeyFamily::Rsa).iter().collect();
        let public = PublicKey::rsa(&n, &e, AlgSet::of(&algs)).unwrap();
        assert_eq!(algs.len(), 6);

        for &alg in &algs {
            for _ in 0..2 {
                let custom = serde_json::json!({ "m": rng.text(300) });
                let claims = Claims::with_custom_claims(custom, Duration::from_hours(1))
                    .with_subject(rng.text(40));
                let token = sign(alg, &der, claims);
                let dot = token.rfind('.').unwrap();
                let (input, sig_b64) = (&token[..dot], &token[dot + 1..]);
                let sig = URL_SAFE_NO_PAD.decode(sig_b64).unwrap();
                assert_eq!(sig.len(), k);
                let msg = input.as_bytes();

                // Genuine: both accept, through the filter's key too.
                assert!(
                    ours(&key, alg, msg, &sig),
                    "{bits} {alg:?}: genuine refused"
                );
                assert!(
                    theirs(alg, &n, &e, input, &sig),
                    "{bits} {alg:?}: jwt-simple"
                );
                assert_eq!(public.verify(alg, input, &sig), Ok(()));
                counts.genuine += 1;

                // Every other algorithm: wrong hash and/or wrong scheme.
                for other in algs.iter().filter(|a| **a != alg) {
                    assert!(
                        !ours(&key, *other, msg, &sig),
                        "{bits} {alg:?} as {other:?}"
                    );
                    assert_eq!(
                        public.verify(*other, input, &sig),
                        Err(SigError::BadSignature)
                    );
                    counts.cross_alg += 1;
                }

                // Corrupted signatures: both refuse.
                let mut variants: Vec<(&str, Vec<u8>)> = Vec::new();
                let mut flipped = sig.clone();
                let bit = rng.below(8 * k);
                flipped[bit / 8] ^= 1 << (bit % 8);
                variants.push(("one bit flipped", flipped));
                variants.push(("s = n", n_k.clone()));
                variants.push(("s = n + 1", add_be(&n_k, &[1]).unwrap()));
                if let Some(s_plus_n) = add_be(&sig, &n_k) {
                    variants.push(("s + n", s_plus_n));
                }
                variants.push(("s = 2^(8k) - 1", vec![0xff; k]));
                variants.push(("s = 0", vec![0; k]));
                let mut one = vec![0; k];
                one[k - 1] = 1;
                variants.push(("s = 1", one));
                let mut nm1 = n_k.clone();
                nm1[k - 1] -= 1; // n is odd: no borrow
                variants.push(("s = n - 1", nm1));
                let mut longer = vec![0];
                longer.extend_from_slice(&sig);
                variants.push(("leading zero added", longer));
                variants.push(("last byte dropped", sig[..k - 1].to_vec()));
                variants.push(("empty", Vec::new()));
                for (what, bad) in &variants {
                    assert!(
                        !ours(&key, alg, msg, bad),
                        "{bits} {alg:?}: {what} accepted"
                    );
                    assert!(
                        !theirs(alg, &n, &e, input, bad),
                        "{bits} {alg:?}: jwt-simple accepted {what}"
                    );
                    counts.corrupted += 1;
                }

                // A corrupted message: both refuse.
                let mut other_input = input.as_bytes().to_vec();
                let pos = rng.below(other_input.len());
                other_input[pos] = if other_input[pos] == b'A' { b'B' } else { b'A' };
                let other_input = String::from_utf8(other_input).unwrap();
                assert!(!ours(&key, alg, other_input.as_bytes(), &sig));
                assert!(!theirs(alg, &n, &e, &other_input, &sig));
                counts.corrupted += 1;
            }
        }
    }
    println!("{counts:?}");
    assert_eq!(counts.genuine, 4 * 6 * 2);
    assert_eq!(counts.cross_alg, 4 * 6 * 2 * 5);
    assert!(counts.corrupted >= 4 * 6 * 2 * 11);
}
