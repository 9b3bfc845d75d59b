//! `jwt_jwks::crypto::ecdsa` against the `ecdsa` crate's verifier (through `p256`,
//! `p384` and `p521`) on deterministic pseudo-random keys, messages and signatures,
//! plus mutated signatures: both must give the same verdict on every input,
//! and the verdicts the ECDSA definition fixes are asserted outright.

mod common;

use common::Rng;
use jwt_jwks::crypto::ecdsa::{P256Key, P384Key, P521Key};

/// Big-endian `a - b` (a >= b), same length.
fn be_sub(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; a.len()];
    let mut borrow = 0i16;
    for i in (0..a.len()).rev() {
        let mut d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = 0;
        if d < 0 {
            d += 256;
            borrow = 1;
        }
        out[i] = d as u8;
    }
    assert_eq!(borrow, 0);
    out
}

/// Big-endian `a + 1`, same length (wrapping).
fn be_inc(a: &[u8]) -> Vec<u8> {
    let mut out = a.to_vec();
    for b in out.iter_mut().rev() {
        let (v, carry) = b.overflowing_add(1);
        *b = v;
        if !carry {
            break;
        }
    }
    out
}

/// Named signature variants derived from a good signature `r || s`, with the
/// verdict ECDSA fixes for them when it does (`None`: depends, compare only).
fn variants(sig: &[u8], n: &[u8], rng: &mut Rng) -> Vec<(String, Vec<u8>, Option<bool>)> {
    let len = n.len();
    let (r, s) = sig.split_at(len);
    let zero = vec![0u8; len];
    let join = |a: &[u8], b: &[u8]| [a, b].concat();
    let mut out = vec![
        ("good".to_string(), sig.to_vec(), Some(true)),
        // n - s: the other valid s; ECDSA (and the ecdsa crate for the NIST
        // curves) has no low-s rule, so it verifies.
        ("high-s".into(), join(r, &be_sub(n, s)), Some(true)),
        ("swapped".into(), join(s, r), None),
        ("r=0".into(), join(&zero, s), Some(false)),
        ("s=0".into(), join(r, &zero), Some(false)),
        ("r=n".into(), join(n, s), Some(false)),
        ("s=n".into(), join(r, n), Some(false)),
        ("r=n+1".into(), join(&be_inc(n), s), Some(false)),
        ("s=n+1".into(), join(r, &be_inc(n)), Some(false)),
        ("r=2^k-1".into(), join(&vec![0xff; len], s), Some(false)),
        ("s=2^k-1".into(), join(r, &vec![0xff; len]), Some(false)),
        ("r=1".into(), join(&be_inc(&zero), s), Some(false)),
        ("s=1".into(), join(r, &be_inc(&zero)), Some(false)),
        ("short".into(), sig[..sig.len() - 1].to_vec(), Some(false)),
        ("long".into(), [sig, &[0]].concat(), Some(false)),
        ("empty".into(), Vec::new(), Some(false)),
        ("zeros".into(), vec![0; 2 * len], Some(false)),
    ];
    for _ in 0..4 {
        let bit = rng.below(sig.len() * 8);
        let mut flipped = sig.to_vec();
        flipped[bit / 8] ^= 1 << (bit % 8);
        out.push((format!("bit {bit}"), flipped, Some(false)));
    }
    out.push(("random".into(), rng.bytes(2 * len), Some(false)));
    out
}

macro_rules! differential {
    ($name:ident, $curve:ident, $ours:ty, $len:expr, $keys:expr) => {
        #[test]
        fn $name() {
            use $curve::ecdsa::signature::{Signer as _, Verifier as _};
            use $curve::ecdsa::{Signature, SigningKey, VerifyingKey};
            use $curve::elliptic_curve::PrimeField as _;

            // n as big-endian bytes: (n - 1) + 1.
            let n = be_inc(&(-$curve::Scalar::ONE).to_repr());
            let mut rng = Rng(0x5eed ^ $len);
            let (mut checked, mut accepted) = (0usize, 0usize);
            let mut other: Option<(Vec<u8>, VerifyingKey)> = None;
            for _ in 0..$keys {
                let sk = loop {
                    if let Ok(k) = SigningKey::from_slice(&rng.bytes($len)) {
                        break k;
                    }
                };
                let vk = *sk.verifying_key();
                let sec1 = vk.to_sec1_point(false).as_bytes().to_vec();
                let ours = <$ours>::from_sec1(&sec1).expect("a valid key loads");
                for _ in 0..4 {
                    let msg_len = rng.below(300);
                    let msg = rng.bytes(msg_len);
                    let sig: Signature = sk.sign(&msg);
                    let sig = sig.to_bytes().to_vec();
                    let reference = |vk: &VerifyingKey, m: &[u8], s: &[u8]| {
                        Signature::from_slice(s).is_ok_and(|s| vk.verify(m, &s).is_ok())
                    };
                    for (what, s, expect) in variants(&sig, &n, &mut rng) {
                        let got = ours.verify(&msg, &s);
                        assert_eq!(got, reference(&vk, &msg, &s), "{what}");
                        if let Some(e) = expect {
                            assert_eq!(got, e, "{what}");
                        }
                        checked += 1;
                        accepted += usize::from(got);
                    }
                    // Another message, and the previous key, refuse it.
                    let mut msg2 = msg.clone();
                    msg2.push(0);
                    assert!(!ours.verify(&msg2, &sig));
                    assert!(!reference(&vk, &msg2, &sig));
                    if let Some((sec1, vk2)) = &other {
                        let k2 = <$ours>::from_sec1(sec1).expect("loads");
                        assert!(!k2.verify(&msg, &sig));
                        assert!(!reference(vk2, &msg, &sig));
                    }
                    checked += 2;
                }
                other = Some((sec1, vk));
            }
            println!(
                "{}: {checked} checks, {accepted} accepted",
                stringify!($name)
            );
            // Each key and message: the good and the high-s signatures.
            assert_eq!(accepted, $keys * 4 * 2);
        }
    };
}

differential!(p256_matches_the_ecdsa_crate, p256, P256Key, 32, 24);
differential!(p384_matches_the_ecdsa_crate, p384, P384Key, 48, 12);
differential!(p521_matches_the_ecdsa_crate, p521, P521Key, 66, 8);
