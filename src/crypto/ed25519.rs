//! Ed25519 signature verification (RFC 8032 section 5.1.7), verification
//! only, on `curve25519-dalek`'s group arithmetic.
//!
//! Strict on every encoding, cofactorless on the equation:
//! - the public key `A` and the signature's `R` must be canonical encodings
//!   (`y < p`) of curve points that are not of small order;
//! - `S` must be canonical (`S < L`);
//! - the signature holds when `[S]B - [k]A == R` exactly, with
//!   `k = SHA-512(R || A || M) mod L`.
//!
//! Speed: `[S]B` and `[k](-A)` are both fixed-base multiplications over
//! radix-16 tables (64 additions and 4 doublings each) instead of one
//! double-base multiplication (about 253 doublings). The table for `B` is
//! built once per VM, the one for `-A` once per key, on first use: 30 KiB of
//! heap each and a few milliseconds to build, so keys that never verify a
//! token cost nothing. On wasm32 the crate picks its 32-bit field backend
//! (32x32->64 products, native in wasm) rather than 64-bit limbs with
//! 128-bit products that wasm has to emulate.
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsBasepointTable, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::BasepointTable;

/// Length of an encoded public key.
pub const KEY_LEN: usize = 32;
/// Length of a signature (`R || S`).
pub const SIG_LEN: usize = 64;

/// Why a public key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    /// Not 32 bytes.
    Length,
    /// Not the canonical encoding of a curve point.
    Invalid,
    /// A point of small order (it could "verify" forged signatures).
    Weak,
}

/// An Ed25519 public key, checked and decoded once.
pub struct VerifyingKey {
    /// The encoding of `A`, hashed into every `k`.
    encoded: [u8; KEY_LEN],
    /// `-A`.
    minus_a: EdwardsPoint,
    /// Radix-16 table of multiples of `-A`, built on first use (`OnceLock`
    /// keeps keys `Sync`, as the configuration's `Arc`s need).
    table: OnceLock<Box<EdwardsBasepointTable>>,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("encoded", &self.encoded)
            .finish_non_exhaustive()
    }
}

/// Whether the low 255 bits of `bytes` (little-endian) are below
/// `p = 2^255 - 19`. The curve crate reduces `y` modulo `p` when decoding, so
/// the 19 encodings of `y + p` would otherwise pass as aliases.
fn y_is_canonical(bytes: &[u8; 32]) -> bool {
    // y >= p exactly when bytes 1..=30 are 0xff, byte 31 (without the sign
    // bit) is 0x7f and byte 0 is at least 0xed.
    let (first, rest) = bytes.split_at(1);
    let (middle, last) = rest.split_at(30);
    let top_is_max = last.iter().all(|b| b & 0x7f == 0x7f) && middle.iter().all(|b| *b == 0xff);
    !(top_is_max && first.iter().all(|b| *b >= 0xed))
}

/// Decodes a point that is canonically encoded and not of small order.
/// (The only points with `x = 0`, whose "negative zero" encoding is not
/// canonical, are of small order, so they are refused here too.)
fn decode_point(bytes: &[u8; 32]) -> Result<EdwardsPoint, KeyRefusal> {
    if !y_is_canonical(bytes) {
        return Err(KeyRefusal::Invalid);
    }
    let point = CompressedEdwardsY(*bytes)
        .decompress()
        .ok_or(KeyRefusal::Invalid)?;
    if point.is_small_order() {
        return Err(KeyRefusal::Weak);
    }
    Ok(point)
}

/// The table for the base point, shared by every key in the VM.
fn base_table() -> &'static EdwardsBasepointTable {
    static TABLE: OnceLock<Box<EdwardsBasepointTable>> = OnceLock::new();
    TABLE.get_or_init(|| Box::new(EdwardsBasepointTable::create(&ED25519_BASEPOINT_POINT)))
}

impl VerifyingKey {
    /// Checks and decodes a 32-byte public key.
    pub fn from_bytes(raw: &[u8]) -> Result<VerifyingKey, KeyRefusal> {
        let encoded: [u8; KEY_LEN] = raw.try_into().map_err(|_| KeyRefusal::Length)?;
        let a = decode_point(&encoded)?;
        // A key with a torsion component (A = P + T, T of small order) is not
        // a forgery risk with the cofactorless check, but no honest signer
        // has one: refused at load (issue 19, item 8).
        if !a.is_torsion_free() {
            return Err(KeyRefusal::Weak);
        }
        Ok(VerifyingKey {
            encoded,
            minus_a: -a,
            table: OnceLock::new(),
        })
    }

    /// The key's 32-byte encoding.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.encoded
    }

    /// Whether `signature` (`R || S`, 64 bytes) is valid for `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = <&[u8; SIG_LEN]>::try_from(signature) else {
            return false;
        };
        let (r_half, s_half) = sig.split_at(32);
        let (Ok(r_bytes), Ok(s_bytes)) =
            (<[u8; 32]>::try_from(r_half), <[u8; 32]>::try_from(s_half))
        else {
            return false;
        };
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
            return false;
        };
        let mut h = hmac_sha512::Hash::new();
        h.update(r_bytes);
        h.update(self.encoded);
        h.update(message);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize());
        // Both scalars are below L < 2^253, as the radix-16 tables require.
        let table = self
            .table
            .get_or_init(|| Box::new(EdwardsBasepointTable::create(&self.minus_a)));
        let expected_r = base_table().mul_base(&s) + table.mul_base(&k);
        // Equal to the canonical encoding of the computed point: so R's
        // encoding is canonical and on the curve, and that point is R. (One
        // inversion here is cheaper than decoding R, a square root.) R of
        // small order is refused, as for keys.
        expected_r.compress().as_bytes() == &r_bytes && !expected_r.is_small_order()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // RFC 8032 section 7.1, TEST 2 and TEST 3.
    const PK2: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    const SIG2: &str = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
                        085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";
    const PK3: &str = "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025";
    const SIG3: &str = "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac\
                        18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a";

    #[test]
    fn rfc8032_vectors_verify() {
        let k2 = VerifyingKey::from_bytes(&hex(PK2)).unwrap();
        assert!(k2.verify(&[0x72], &hex(SIG2)));
        assert!(!k2.verify(&[0x73], &hex(SIG2)));
        let k3 = VerifyingKey::from_bytes(&hex(PK3)).unwrap();
        assert!(k3.verify(&[0xaf, 0x82], &hex(SIG3)));
        // A signature under the other key fails.
        assert!(!k3.verify(&[0x72], &hex(SIG2)));
        assert_eq!(k3.as_bytes().to_vec(), hex(PK3));
    }

    #[test]
    fn wrong_lengths_are_refused() {
        assert_eq!(
            VerifyingKey::from_bytes(&[1u8; 31]).unwrap_err(),
            KeyRefusal::Length
        );
        let k2 = VerifyingKey::from_bytes(&hex(PK2)).unwrap();
        let sig = hex(SIG2);
        assert!(!k2.verify(&[0x72], &sig[..63]));
        let mut long = sig.clone();
        long.push(0);
        assert!(!k2.verify(&[0x72], &long));
    }

    #[test]
    fn small_order_keys_are_weak() {
        // The identity (y = 1) and (0, -1) (y = p - 1).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            VerifyingKey::from_bytes(&identity).unwrap_err(),
            KeyRefusal::Weak
        );
        let mut minus_one = [0xffu8; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        assert_eq!(
            VerifyingKey::from_bytes(&minus_one).unwrap_err(),
            KeyRefusal::Weak
        );
    }

    #[test]
    fn keys_with_a_torsion_component_are_weak() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        let clean = ED25519_BASEPOINT_POINT * Scalar::from(12345u64);
        assert!(VerifyingKey::from_bytes(clean.compress().as_bytes()).is_ok());
        for t in EIGHT_TORSION.iter().skip(1) {
            let mixed = clean + t;
            assert!(!mixed.is_small_order());
            assert_eq!(
                VerifyingKey::from_bytes(mixed.compress().as_bytes()).unwrap_err(),
                KeyRefusal::Weak
            );
        }
    }

    #[test]
    fn non_canonical_y_is_refused() {
        // y = p + 1 is the identity's alias; y = 2^255 - 1 is p + 18.
        let mut p_plus_1 = [0xffu8; 32];
        p_plus_1[0] = 0xee;
        p_plus_1[31] = 0x7f;
        assert!(!y_is_canonical(&p_plus_1));
        assert_eq!(
            VerifyingKey::from_bytes(&p_plus_1).unwrap_err(),
            KeyRefusal::Invalid
        );
        assert!(!y_is_canonical(&[0xff; 32]));
        let mut p_minus_1 = [0xffu8; 32];
        p_minus_1[0] = 0xec;
        p_minus_1[31] = 0x7f;
        assert!(y_is_canonical(&p_minus_1));
        // The sign bit is not part of y.
        p_minus_1[31] = 0xff;
        assert!(y_is_canonical(&p_minus_1));
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        assert!(!y_is_canonical(&p));
    }

    #[test]
    fn non_canonical_s_is_refused() {
        // S + L verifies the same equation; it must be refused.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let k2 = VerifyingKey::from_bytes(&hex(PK2)).unwrap();
        let mut sig = hex(SIG2);
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(sig[32 + i]) + u16::from(L[i]) + carry;
            sig[32 + i] = v as u8;
            carry = v >> 8;
        }
        assert_eq!(carry, 0);
        assert!(!k2.verify(&[0x72], &sig));
    }
}
