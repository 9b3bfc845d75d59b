//! ECDSA verification for P-256 (ES256), P-384 (ES384) and P-521 (ES512)
//! with per-key precomputation.
//!
//! A JWKS key verifies many signatures over its lifetime, so each key gets a
//! fixed-base comb table on its first verification (a key set may list keys
//! that never sign anything here; they cost no table), as the generator does
//! once per VM.
//! `R = u1·G + u2·Q` is then a sum of table entries: no doublings at all, one
//! mixed addition per signed digit of each scalar. The field and point
//! arithmetic are the curve crates' own (`p256`, `p384`, `p521`); the only code here is
//! the digit recoding and the table lookup.
//!
//! Table layout: for a window of `w` bits the scalar is recoded into signed
//! digits `d_i` in `[-(2^(w-1) - 1), 2^(w-1)]` with `k = sum d_i·2^(w·i)`, and
//! row `i` holds `d·2^(w·i)·P` for `d` in `1..=2^(w-1)` in affine form; a
//! negative digit adds the negated entry.
//!
//! Semantics are those of the `ecdsa` crate's verification: `r` and `s` in
//! `[1, n-1]` (no low-s rule), `e` = bits2int(hash) reduced mod `n`, `w = s^-1`,
//! `u1 = e·w`, `u2 = r·w`, `R = u1·G + u2·Q` must not be the identity and
//! `x(R) mod n` must equal `r`. bits2int keeps the leftmost `bits(n)` bits of
//! the hash; no hash here is longer than that (SHA-256 for the 256-bit order,
//! SHA-384 for the 384-bit one, SHA-512 for the 521-bit one), so `e` is the
//! hash read as an integer (for P-521, the 64 bytes left-padded to 66), as the
//! `ecdsa` crate computes it. Everything handled is public, so nothing here
//! tries to be constant-time.
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use p256::elliptic_curve::group::Curve as _;
use p256::elliptic_curve::ops::{Invert, Reduce};
use p256::elliptic_curve::point::AffineCoordinates;
use p256::elliptic_curve::{CurveAffine, CurveArithmetic, Field, FieldBytes, Group, PrimeField};

/// What the comb and the verifier need from a curve beyond
/// `CurveArithmetic`: its sizes, its hash and the conversions whose trait
/// bounds are easier to state per curve than generically.
pub trait EcCurve: CurveArithmetic + Sized {
    /// Length of a coordinate and a scalar, in bytes (the hash is no longer).
    const LEN: usize;
    /// Bits in the group order `n` (the scalars' bit length).
    const ORDER_BITS: usize;
    /// Window (bits per digit) of a key's table.
    const KEY_WINDOW: usize;
    /// Window of the generator's table (built once per VM, so larger).
    const G_WINDOW: usize;
    /// The hash of the JWS algorithm (SHA-256 for ES256, SHA-384 for ES384,
    /// SHA-512 for ES512) as a `LEN`-byte big-endian integer (left-padded).
    fn digest(msg: &[u8]) -> FieldBytes<Self>;
    /// A canonical scalar (`< n`) from `LEN` big-endian bytes.
    fn scalar(bytes: &[u8]) -> Option<Self::Scalar>;
    /// `LEN` big-endian bytes reduced mod `n`.
    fn reduce(bytes: &FieldBytes<Self>) -> Self::Scalar;
    /// `s^-1 mod n`, `None` for zero.
    fn invert(s: &Self::Scalar) -> Option<Self::Scalar>;
    /// A SEC1 point that is on the curve and not the identity.
    fn point(sec1: &[u8]) -> Option<Self::ProjectivePoint>;
    /// The generator's table, built on first use.
    fn generator_table() -> &'static Comb<Self>;
}

/// Number of signed `window`-bit digits for a scalar of `bits` bits: one more
/// bit than the scalar, for the final carry of the signed recoding.
const fn digit_count(bits: usize, window: usize) -> usize {
    (bits + window) / window
}

/// `window` bits of the big-endian integer `be` starting at bit `pos`
/// (bit 0 the least significant); bits beyond the integer read as 0.
fn bits_at(be: &[u8], pos: usize, window: usize) -> u32 {
    let mut v = 0u32;
    for j in 0..window {
        let bit = pos + j;
        let byte = be
            .len()
            .checked_sub(1 + bit / 8)
            .and_then(|i| be.get(i))
            .copied()
            .unwrap_or(0);
        v |= u32::from((byte >> (bit % 8)) & 1) << j;
    }
    v
}

/// The signed digits of a big-endian scalar, least significant first:
/// `k = sum d_i·2^(window·i)` with `d_i` in `[-(2^(window-1) - 1), 2^(window-1)]`.
/// `count` must be `digit_count(bits, window)` for a `bits`-bit scalar, which
/// makes the last digit absorb the final carry.
fn signed_digits(be: &[u8], window: usize, count: usize) -> impl Iterator<Item = i32> + '_ {
    let full = 1i32 << window;
    let half = full / 2;
    let mut carry = 0i32;
    (0..count).map(move |i| {
        // At most 2^window: `window` bits plus a carry of 0 or 1.
        let v = i32::try_from(bits_at(be, i * window, window)).unwrap_or(0) + carry;
        if v > half {
            carry = 1;
            v - full
        } else {
            carry = 0;
            v
        }
    })
}

/// Fixed-base comb table of one point (see the module documentation).
pub struct Comb<C: CurveArithmetic> {
    window: usize,
    digits: usize,
    /// Row `i`, digit `d` (1-based) at `i * 2^(window-1) + d - 1`.
    entries: Vec<C::AffinePoint>,
}

impl<C: EcCurve> Comb<C> {
    /// The table of `base` for `window`-bit signed digits. `base` must not be
    /// the identity (no entry is then: `d·2^j` is never a multiple of the
    /// prime order).
    pub fn new(base: C::ProjectivePoint, window: usize) -> Comb<C> {
        let window = window.clamp(1, 16);
        let digits = digit_count(C::ORDER_BITS, window);
        let half = 1usize << (window - 1);
        let mut proj = Vec::with_capacity(digits * half);
        let mut row_base = base;
        for _ in 0..digits {
            let mut multiple = row_base;
            proj.push(multiple);
            for _ in 1..half {
                multiple += row_base;
                proj.push(multiple);
            }
            // `multiple` is 2^(window-1)·row_base; the next row starts at 2^window·row_base.
            row_base = multiple.double();
        }
        let mut entries = vec![C::AffinePoint::default(); proj.len()];
        C::ProjectivePoint::batch_normalize(&proj, &mut entries);
        Comb {
            window,
            digits,
            entries,
        }
    }

    /// Bytes of table data.
    pub fn size_bytes(&self) -> usize {
        self.entries.len() * std::mem::size_of::<C::AffinePoint>()
    }

    /// Adds `k·P` to `acc`, for the point `P` of this table and `k` given as
    /// big-endian bytes.
    fn add_mul(&self, acc: &mut C::ProjectivePoint, k_be: &[u8]) {
        let half = 1usize << (self.window - 1);
        for (row, d) in signed_digits(k_be, self.window, self.digits).enumerate() {
            let Some(idx) = (d.unsigned_abs() as usize).checked_sub(1) else {
                continue;
            };
            if let Some(p) = self.entries.get(row * half + idx) {
                if d < 0 {
                    *acc += &-*p;
                } else {
                    *acc += p;
                }
            }
        }
    }

    /// `k·P` for the point `P` of this table.
    pub fn mul(&self, k: &C::Scalar) -> C::ProjectivePoint {
        let mut acc = C::ProjectivePoint::identity();
        self.add_mul(&mut acc, k.to_repr().as_ref());
        acc
    }
}

/// An ECDSA public key prepared for verification.
pub struct VerifyingKey<C: EcCurve> {
    q: C::ProjectivePoint,
    table: OnceLock<Comb<C>>,
}

impl<C: EcCurve> VerifyingKey<C> {
    /// A key from its SEC1 uncompressed encoding `04 || x || y`; `None` when
    /// the encoding is malformed, the point is not on the curve or is the
    /// identity.
    pub fn from_sec1(sec1: &[u8]) -> Option<VerifyingKey<C>> {
        if sec1.len() != 1 + 2 * C::LEN || sec1.first() != Some(&4) {
            return None;
        }
        let q = C::point(sec1)?;
        if bool::from(q.is_identity()) {
            return None;
        }
        // Build the generator's table now if this VM has none yet, so that
        // the first request does not pay for it.
        let _ = C::generator_table();
        Some(VerifyingKey {
            q,
            table: OnceLock::new(),
        })
    }

    /// This key's table, built on first use.
    fn table(&self) -> &Comb<C> {
        self.table.get_or_init(|| Comb::new(self.q, C::KEY_WINDOW))
    }

    /// Bytes of this key's precomputed table (0 until its first check).
    pub fn table_bytes(&self) -> usize {
        self.table.get().map_or(0, Comb::size_bytes)
    }

    /// Whether `sig` (JOSE `r || s`, `2·LEN` bytes) is a valid signature of
    /// `msg` under this key.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        if sig.len() != 2 * C::LEN {
            return false;
        }
        let Some((r_be, s_be)) = sig.split_at_checked(C::LEN) else {
            return false;
        };
        let (Some(r), Some(s)) = (C::scalar(r_be), C::scalar(s_be)) else {
            return false;
        };
        if bool::from(r.is_zero()) {
            return false;
        }
        let Some(w) = C::invert(&s) else {
            return false; // s = 0
        };
        let e = C::reduce(&C::digest(msg));
        let u1 = e * w;
        let u2 = r * w;
        let mut acc = C::ProjectivePoint::identity();
        C::generator_table().add_mul(&mut acc, u1.to_repr().as_ref());
        self.table().add_mul(&mut acc, u2.to_repr().as_ref());
        let point = acc.to_affine();
        if bool::from(point.is_identity()) {
            return false;
        }
        C::reduce(&point.x()) == r
    }
}

macro_rules! ec_curve {
    ($curve:ty, $crate_:ident, $len:expr, $order_bits:expr, $key_window:expr, $g_window:expr, $hash:expr) => {
        impl EcCurve for $curve {
            const LEN: usize = $len;
            const ORDER_BITS: usize = $order_bits;
            const KEY_WINDOW: usize = $key_window;
            const G_WINDOW: usize = $g_window;

            fn digest(msg: &[u8]) -> FieldBytes<Self> {
                let hash = $hash(msg);
                let mut out = FieldBytes::<Self>::default();
                // Right-aligned: the hash is never longer than `LEN`.
                for (o, h) in out.iter_mut().rev().zip(hash.iter().rev()) {
                    *o = *h;
                }
                out
            }

            fn scalar(bytes: &[u8]) -> Option<Self::Scalar> {
                let repr = FieldBytes::<Self>::try_from(bytes).ok()?;
                $crate_::Scalar::from_repr(repr).into_option()
            }

            fn reduce(bytes: &FieldBytes<Self>) -> Self::Scalar {
                <$crate_::Scalar as Reduce<FieldBytes<Self>>>::reduce(bytes)
            }

            fn invert(s: &Self::Scalar) -> Option<Self::Scalar> {
                Invert::invert_vartime(s).into_option()
            }

            fn point(sec1: &[u8]) -> Option<Self::ProjectivePoint> {
                $crate_::PublicKey::from_sec1_bytes(sec1)
                    .ok()
                    .map(|k| k.to_projective())
            }

            fn generator_table() -> &'static Comb<Self> {
                static TABLE: OnceLock<Comb<$curve>> = OnceLock::new();
                TABLE.get_or_init(|| Comb::new($crate_::ProjectivePoint::GENERATOR, Self::G_WINDOW))
            }
        }
    };
}

/// P-521 windows, by measurement in wasm under V8 (AffinePoint is 156 bytes
/// on wasm32). A key's table: 3-bit digits, 174 rows of 4 entries (106 KB,
/// ~25 ms to build on its first check); 4 bits would be 160 KB for ~15% less
/// per check. The generator's: 5-bit digits, 105 rows of 16 entries (256 KB,
/// ~70 ms once per VM); 6 bits (424 KB, ~110 ms) measured no faster, 7 bits
/// with a 4-bit key table (731 KB + 160 KB) ~20% faster.
const P521_KEY_WINDOW: usize = 3;
const P521_G_WINDOW: usize = 5;

ec_curve!(p256::NistP256, p256, 32, 256, 6, 7, hmac_sha256::Hash::hash);
ec_curve!(
    p384::NistP384,
    p384,
    48,
    384,
    5,
    6,
    hmac_sha512::sha384::Hash::hash
);
ec_curve!(
    p521::NistP521,
    p521,
    66,
    521,
    P521_KEY_WINDOW,
    P521_G_WINDOW,
    hmac_sha512::Hash::hash
);

/// An ES256 key.
pub type P256Key = VerifyingKey<p256::NistP256>;
/// An ES384 key.
pub type P384Key = VerifyingKey<p384::NistP384>;
/// An ES512 key.
pub type P521Key = VerifyingKey<p521::NistP521>;

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar256(be: [u8; 32]) -> p256::Scalar {
        <p256::Scalar as Reduce<FieldBytes<p256::NistP256>>>::reduce(&be.into())
    }

    fn edge_scalars256() -> Vec<p256::Scalar> {
        let mut out = vec![
            p256::Scalar::ZERO,
            p256::Scalar::ONE,
            -p256::Scalar::ONE,
            -p256::Scalar::from(2u64),
            scalar256([0xff; 32]),
            scalar256([0x55; 32]),
            scalar256([0xaa; 32]),
        ];
        for k in [1usize, 5, 6, 7, 31, 63, 64, 127, 128, 200, 254, 255] {
            let mut be = [0u8; 32];
            be[31 - k / 8] = 1 << (k % 8);
            out.push(scalar256(be));
            // 2^k - 1: a run of ones, the worst case for carries.
            let mut ones = [0u8; 32];
            for bit in 0..k {
                ones[31 - bit / 8] |= 1 << (bit % 8);
            }
            out.push(scalar256(ones));
        }
        out
    }

    #[test]
    fn digits_recompose_the_scalar() {
        for window in 1..=8 {
            for be in [
                [0xffu8; 4],
                [0x80, 0, 0, 1],
                [0x7f, 0xff, 0xff, 0xff],
                [0; 4],
            ] {
                let value = i64::from(u32::from_be_bytes(be));
                let count = digit_count(32, window);
                let digits: Vec<i32> = signed_digits(&be, window, count).collect();
                let half = 1i32 << (window - 1);
                assert!(
                    digits.iter().all(|d| *d > -half && *d <= half),
                    "{digits:?}"
                );
                let back: i64 = digits
                    .iter()
                    .enumerate()
                    .map(|(i, d)| i64::from(*d) << (window * i))
                    .sum();
                assert_eq!(back, value, "window {window}");
            }
        }
    }

    #[test]
    fn generator_table_matches_scalar_multiplication_p256() {
        let table = p256::NistP256::generator_table();
        for k in edge_scalars256() {
            assert_eq!(table.mul(&k), p256::ProjectivePoint::GENERATOR * k, "{k:?}");
        }
    }

    #[test]
    fn every_window_matches_scalar_multiplication_p256() {
        let base = p256::ProjectivePoint::GENERATOR * scalar256([0x3c; 32]);
        for window in 1..=8 {
            let table = Comb::<p256::NistP256>::new(base, window);
            for k in edge_scalars256() {
                assert_eq!(table.mul(&k), base * k, "window {window}");
            }
        }
    }

    #[test]
    fn generator_table_matches_scalar_multiplication_p384() {
        let table = p384::NistP384::generator_table();
        let mut scalars = vec![p384::Scalar::ZERO, p384::Scalar::ONE, -p384::Scalar::ONE];
        for k in [1usize, 5, 6, 100, 191, 192, 300, 382, 383] {
            let mut be = [0u8; 48];
            be[47 - k / 8] = 1 << (k % 8);
            scalars.push(<p384::Scalar as Reduce<FieldBytes<p384::NistP384>>>::reduce(&be.into()));
        }
        scalars
            .push(<p384::Scalar as Reduce<FieldBytes<p384::NistP384>>>::reduce(&[0xff; 48].into()));
        for k in scalars {
            assert_eq!(table.mul(&k), p384::ProjectivePoint::GENERATOR * k, "{k:?}");
        }
    }

    fn scalar521(be: &[u8]) -> p521::Scalar {
        let mut bytes = FieldBytes::<p521::NistP521>::default();
        for (o, b) in bytes.iter_mut().rev().zip(be.iter().rev()) {
            *o = *b;
        }
        // At most 521 bits, so one conditional subtraction reduces it.
        if let Some(top) = bytes.first_mut() {
            *top &= 1;
        }
        <p521::Scalar as Reduce<FieldBytes<p521::NistP521>>>::reduce(&bytes)
    }

    fn edge_scalars521() -> Vec<p521::Scalar> {
        let mut out = vec![
            p521::Scalar::ZERO,
            p521::Scalar::ONE,
            -p521::Scalar::ONE,
            -p521::Scalar::from(2u64),
            scalar521(&[0xff; 66]),
            scalar521(&[0x55; 66]),
            scalar521(&[0xaa; 66]),
        ];
        for k in [
            1usize, 2, 3, 5, 6, 7, 63, 64, 255, 256, 511, 512, 513, 518, 519, 520,
        ] {
            let mut be = [0u8; 66];
            be[65 - k / 8] = 1 << (k % 8);
            out.push(scalar521(&be));
            let mut ones = [0u8; 66];
            for bit in 0..k {
                ones[65 - bit / 8] |= 1 << (bit % 8);
            }
            out.push(scalar521(&ones));
        }
        out
    }

    #[test]
    fn order_bits_match_the_curves() {
        use p256::elliptic_curve::Curve as _;
        assert_eq!(
            p256::NistP256::ORDER.bit_width() as usize,
            p256::NistP256::ORDER_BITS
        );
        assert_eq!(
            p384::NistP384::ORDER.bit_width() as usize,
            p384::NistP384::ORDER_BITS
        );
        assert_eq!(
            p521::NistP521::ORDER.bit_width() as usize,
            p521::NistP521::ORDER_BITS
        );
    }

    #[test]
    fn generator_table_matches_scalar_multiplication_p521() {
        let table = p521::NistP521::generator_table();
        for k in edge_scalars521() {
            assert_eq!(table.mul(&k), p521::ProjectivePoint::GENERATOR * k, "{k:?}");
        }
    }

    #[test]
    fn every_window_matches_scalar_multiplication_p521() {
        let base = p521::ProjectivePoint::GENERATOR * scalar521(&[0x3c; 66]);
        for window in 1..=7 {
            let table = Comb::<p521::NistP521>::new(base, window);
            for k in edge_scalars521() {
                assert_eq!(table.mul(&k), base * k, "window {window}");
            }
        }
    }

    #[test]
    fn p521_digest_is_left_padded() {
        let d = p521::NistP521::digest(b"abc");
        assert_eq!(d[..2], [0, 0]);
        assert_eq!(d[2..], hmac_sha512::Hash::hash(b"abc"));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let g = p256::ProjectivePoint::GENERATOR.to_affine();
        let mut sec1 = vec![4u8];
        sec1.extend_from_slice(&g.x());
        sec1.extend_from_slice(&g.y());
        assert!(P256Key::from_sec1(&sec1).is_some());
        // Compressed, truncated, wrong tag, off the curve, P-384 length.
        let mut compressed = vec![2u8 | u8::from(bool::from(g.y_is_odd()))];
        compressed.extend_from_slice(&g.x());
        assert!(P256Key::from_sec1(&compressed).is_none());
        assert!(P256Key::from_sec1(&sec1[..64]).is_none());
        let mut tag = sec1.clone();
        tag[0] = 6;
        assert!(P256Key::from_sec1(&tag).is_none());
        let mut off = sec1.clone();
        off[64] ^= 1;
        assert!(P256Key::from_sec1(&off).is_none());
        assert!(P384Key::from_sec1(&sec1).is_none());
        // The all-zero encoding is not a point.
        let mut zero = vec![0u8; 65];
        zero[0] = 4;
        assert!(P256Key::from_sec1(&zero).is_none());
    }

    #[test]
    fn table_sizes() {
        let g = p256::ProjectivePoint::GENERATOR.to_affine();
        let mut sec1 = vec![4u8];
        sec1.extend_from_slice(&g.x());
        sec1.extend_from_slice(&g.y());
        let key = P256Key::from_sec1(&sec1).unwrap();
        // No table until the key checks a signature.
        assert_eq!(key.table_bytes(), 0);
        assert!(!key.verify(b"m", &[1u8; 64]));
        // 43 rows of 32 entries (6-bit windows).
        assert_eq!(
            key.table_bytes(),
            43 * 32 * std::mem::size_of::<p256::AffinePoint>()
        );
        assert!(key.table_bytes() <= 100 * 1024, "{}", key.table_bytes());
        let g = p521::ProjectivePoint::GENERATOR.to_affine();
        let mut sec1 = vec![4u8];
        sec1.extend_from_slice(&g.x());
        sec1.extend_from_slice(&g.y());
        let key521 = P521Key::from_sec1(&sec1).unwrap();
        assert!(!key521.verify(b"m", &[1u8; 132]));
        let rows = (521 + P521_KEY_WINDOW) / P521_KEY_WINDOW;
        assert_eq!(
            key521.table_bytes(),
            rows * (1 << (P521_KEY_WINDOW - 1)) * std::mem::size_of::<p521::AffinePoint>()
        );
        assert!(
            key521.table_bytes() <= 150 * 1024,
            "{}",
            key521.table_bytes()
        );
        println!(
            "P-256 key table {} bytes, P-384 generator table {} bytes, \
             P-521 key table {} bytes, P-521 generator table {} bytes",
            key.table_bytes(),
            p384::NistP384::generator_table().size_bytes(),
            key521.table_bytes(),
            p521::NistP521::generator_table().size_bytes()
        );
    }
}
