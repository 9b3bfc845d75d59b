//! Differential test of the filter's Ed25519 check (`PublicKey::ed25519` +
//! `verify`) against ed25519-compact, the verifier jwt-simple used before, on
//! keys and messages from a deterministic PRNG, with mutated signatures.
//!
//! The two agree everywhere except on purpose: ed25519-compact checks the
//! cofactored equation (it accepts when `[S]B - [k]A - R` is of small order),
//! the filter the cofactorless one, so signatures built with a torsion
//! component in `R` or in the key pass there and fail here.

mod common;

use common::Rng;
use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use jwt_jwks::crypto::alg::{Alg, AlgSet};
use jwt_jwks::crypto::key::PublicKey;

/// An RFC 8032 signer that can add a torsion point to `R` or to the key.
struct Signer {
    a: Scalar,
    prefix: [u8; 32],
}

fn h(parts: &[&[u8]]) -> Scalar {
    let mut h = hmac_sha512::Hash::new();
    for p in parts {
        h.update(p);
    }
    Scalar::from_bytes_mod_order_wide(&h.finalize())
}

impl Signer {
    fn new(seed: &[u8; 32]) -> Signer {
        let digest = hmac_sha512::Hash::hash(seed);
        let mut s = [0u8; 32];
        s.copy_from_slice(&digest[..32]);
        s[0] &= 248;
        s[31] &= 127;
        s[31] |= 64;
        let mut prefix = [0u8; 32];
        prefix.copy_from_slice(&digest[32..]);
        Signer {
            a: Scalar::from_bytes_mod_order(s),
            prefix,
        }
    }
    fn point(&self) -> EdwardsPoint {
        ED25519_BASEPOINT_POINT * self.a
    }
    /// Signs `msg` for the key `key` (the true key, or it plus torsion),
    /// adding `r_torsion` to R. Returns the signature and k.
    fn sign(&self, key: &[u8; 32], msg: &[u8], r_torsion: &EdwardsPoint) -> ([u8; 64], Scalar) {
        let r = h(&[&self.prefix, msg]);
        let big_r = (ED25519_BASEPOINT_POINT * r + r_torsion).compress();
        let k = h(&[big_r.as_bytes(), key, msg]);
        let s = r + k * self.a;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(big_r.as_bytes());
        sig[32..].copy_from_slice(s.as_bytes());
        (sig, k)
    }
}

fn ours(pk: &[u8; 32], msg: &str, sig: &[u8]) -> bool {
    match PublicKey::ed25519(pk, AlgSet::of(&[Alg::EdDSA])) {
        Ok(key) => key.verify(Alg::EdDSA, msg, sig).is_ok(),
        Err(_) => false,
    }
}

fn compact(pk: &[u8; 32], msg: &str, sig: &[u8]) -> bool {
    let pk = ed25519_compact::PublicKey::new(*pk);
    pk.validate().is_ok()
        && ed25519_compact::Signature::from_slice(sig)
            .is_ok_and(|sig| pk.verify(msg.as_bytes(), &sig).is_ok())
}

/// ℓ, the group order, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

#[test]
fn agrees_with_ed25519_compact() {
    let mut rng = Rng(0x5eed_0025_5190);
    let identity = EdwardsPoint::default();
    let mut counts = [0usize; 9];
    let mut mixed_key_accepted = 0;
    for round in 0..150 {
        let seed: [u8; 32] = rng.array();
        let signer = Signer::new(&seed);
        let pk = signer.point().compress().to_bytes();
        let msg = rng.signing_input(400);
        let (sig, _) = signer.sign(&pk, msg.as_bytes(), &identity);

        // The test's signer is RFC 8032's: same bytes as ed25519-compact.
        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
        assert_eq!(*kp.pk, pk, "round {round}: public key");
        assert_eq!(*kp.sk.sign(msg.as_bytes(), None), sig, "round {round}");

        let both = |what: &str, s: &[u8], m: &str, expect: bool| {
            let (o, c) = (ours(&pk, m, s), compact(&pk, m, s));
            assert_eq!((o, c), (expect, expect), "round {round}: {what}");
        };
        both("valid", &sig, &msg, true);
        counts[0] += 1;

        let mut bad = sig;
        let bit = rng.below(256);
        bad[bit / 8] ^= 1 << (bit % 8);
        both("bit flip in R", &bad, &msg, false);
        counts[1] += 1;

        let mut bad = sig;
        let bit = 256 + rng.below(256);
        bad[bit / 8] ^= 1 << (bit % 8);
        both("bit flip in S", &bad, &msg, false);
        counts[2] += 1;

        // S + ℓ: the same equation, a non-canonical S (fits: S < 2^253).
        let mut bad = sig;
        let mut carry = 0u16;
        for (b, l) in bad[32..].iter_mut().zip(L) {
            let v = u16::from(*b) + u16::from(l) + carry;
            *b = v as u8;
            carry = v >> 8;
        }
        assert_eq!(carry, 0);
        both("S + L", &bad, &msg, false);
        counts[3] += 1;

        let mut bad = sig;
        bad[..32].fill(0);
        both("zeroed R", &bad, &msg, false);
        counts[4] += 1;

        if !msg.is_empty() {
            let mut other = msg.clone().into_bytes();
            let i = rng.below(other.len());
            other[i] = if other[i] == b'A' { b'B' } else { b'A' };
            let other = String::from_utf8(other).unwrap();
            both("changed message", &sig, &other, false);
            counts[5] += 1;
        }

        let garbage: [u8; 64] = rng.array();
        both("random signature", &garbage, &msg, false);
        counts[6] += 1;

        // R with a torsion component: cofactored equation holds, cofactorless not.
        let t = EIGHT_TORSION[1 + rng.below(7)];
        let (mixed, _) = signer.sign(&pk, msg.as_bytes(), &t);
        assert!(!ours(&pk, &msg, &mixed), "round {round}: mixed-order R");
        assert!(
            compact(&pk, &msg, &mixed),
            "round {round}: compact, mixed R"
        );
        counts[7] += 1;

        // A key with a torsion component is refused at load (issue 19, item
        // 8), even when [k]T = 0 would make the exact equation hold.
        let mixed_pk = (signer.point() + t).compress().to_bytes();
        let (msig, k) = signer.sign(&mixed_pk, msg.as_bytes(), &identity);
        let exact = (t * k).is_identity();
        assert!(
            PublicKey::ed25519(&mixed_pk, AlgSet::of(&[Alg::EdDSA])).is_err(),
            "round {round}: mixed key refused"
        );
        assert!(!ours(&mixed_pk, &msg, &msig), "round {round}: mixed key");
        assert!(
            compact(&mixed_pk, &msg, &msig),
            "round {round}: compact, mixed key"
        );
        mixed_key_accepted += usize::from(exact);
        counts[8] += 1;
    }
    println!(
        "valid {}, R flips {}, S flips {}, S+L {}, zeroed R {}, changed messages {}, \
         random signatures {}, mixed-order R {}, mixed-order keys {} refused ({} of them \
         with an exact equation)",
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        counts[4],
        counts[5],
        counts[6],
        counts[7],
        counts[8],
        mixed_key_accepted
    );
}

#[test]
fn small_order_and_non_canonical_keys_are_refused_like_before() {
    // Every 8-torsion point, and the identity's non-canonical alias y = p + 1.
    let mut encodings: Vec<[u8; 32]> = EIGHT_TORSION
        .iter()
        .map(|t| t.compress().to_bytes())
        .collect();
    let mut alias = [0xffu8; 32];
    alias[0] = 0xee;
    alias[31] = 0x7f;
    encodings.push(alias);
    for e in encodings {
        assert!(PublicKey::ed25519(&e, AlgSet::of(&[Alg::EdDSA])).is_err());
        assert!(ed25519_compact::PublicKey::new(e).validate().is_err());
    }
}
