//! RSA signature verification, and nothing else: RSASSA-PKCS1-v1_5 and
//! RSASSA-PSS (RFC 8017 sections 8.1.2, 8.2.2, 9.1.2, 9.2) with SHA-256,
//! SHA-384 and SHA-512, the way JWS uses them (RFC 7518 sections 3.3, 3.5).
//!
//! Why it is written here: the general-purpose bignum behind jwt-simple uses
//! 64-bit limbs, and wasm32 has no 64x64->128 multiply, so every limb product
//! becomes a slow emulated sequence. Here the limbs are 32 bits and the
//! accumulators 64 bits, which wasm multiplies natively.
//!
//! Only public values pass through this module (key, signature, message),
//! so nothing needs to run in constant time. Nothing here can panic: no
//! indexing, no unwrap; every length is fixed when the key is loaded.
//!
//! The encodings are checked by building the one expected encoding and
//! comparing it in full (PKCS#1 v1.5), or by following EMSA-PSS-VERIFY
//! step by step with the salt length pinned to the hash length (PSS), as
//! RFC 7518 section 3.5 requires for PS256/384/512.
#![forbid(unsafe_code)]

use std::cmp::Ordering;
use std::fmt;

/// The largest modulus accepted, in bits.
pub const MAX_MODULUS_BITS: usize = 16384;

/// The hash of a JWS RSA algorithm (RS/PS 256, 384, 512). PSS uses it for
/// the message digest and for MGF1 alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

/// A digest of up to 64 bytes.
struct Digest {
    bytes: [u8; 64],
    len: usize,
}

impl Digest {
    fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
}

fn copy_prefix(dst: &mut [u8], src: &[u8]) {
    dst.iter_mut().zip(src).for_each(|(d, s)| *d = *s);
}

impl Hash {
    /// The digest length in bytes (hLen).
    pub const fn output_len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// The hash of the concatenation of `parts`.
    fn digest(self, parts: &[&[u8]]) -> Digest {
        let mut bytes = [0u8; 64];
        match self {
            Hash::Sha256 => {
                let mut h = hmac_sha256::Hash::new();
                parts.iter().for_each(|p| h.update(p));
                copy_prefix(&mut bytes, &h.finalize());
            }
            Hash::Sha384 => {
                let mut h = hmac_sha512::sha384::Hash::new();
                parts.iter().for_each(|p| h.update(p));
                copy_prefix(&mut bytes, &h.finalize());
            }
            Hash::Sha512 => {
                let mut h = hmac_sha512::Hash::new();
                parts.iter().for_each(|p| h.update(p));
                copy_prefix(&mut bytes, &h.finalize());
            }
        }
        Digest {
            bytes,
            len: self.output_len(),
        }
    }

    /// DER of the PKCS#1 v1.5 DigestInfo up to the digest itself: SEQUENCE {
    /// SEQUENCE { OID, NULL }, OCTET STRING (hLen) } (RFC 8017 section 9.2,
    /// note 1). Only the form with explicit NULL parameters is accepted.
    const fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }
}

/// Why a public key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaError {
    /// The modulus is even, or under 2^64 (no RSA modulus is).
    BadModulus,
    /// The modulus exceeds [`MAX_MODULUS_BITS`].
    ModulusTooLarge,
    /// The exponent is even, under 3, over 64 bits, or not below n.
    BadExponent,
}

impl fmt::Display for RsaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RsaError::BadModulus => "RSA modulus is even or too small",
            RsaError::ModulusTooLarge => "RSA modulus is over 16384 bits",
            RsaError::BadExponent => "RSA exponent is even, under 3 or over 64 bits",
        })
    }
}

/// An RSA public key prepared for verification: the modulus as limbs of
/// `w` bits (least significant first, each in a `u32`) with its Montgomery
/// constants.
///
/// Why limbs narrower than 32 bits: a Montgomery product is computed column
/// by column (product scanning), each column summing up to 2L limb products
/// in one `u64` with no carry handling per product. With w = 28 that holds
/// for L <= 120 limbs (2L * 2^56 < 2^64), enough for moduli up to 3360 bits;
/// larger ones use w = 26 (L <= 631 at 16384 bits, 2L * 2^52 < 2^63). A
/// wasm32 loop of multiply-and-add without carry chains runs about twice
/// as fast as the 32-bit-limb carry-propagating one.
///
/// Every limb vector of the key and its scratch space has `n.len()` limbs;
/// the arithmetic relies on it.
#[derive(Clone)]
pub struct RsaKey {
    /// The modulus, little-endian `w`-bit limbs.
    n: Vec<u32>,
    /// -n^-1 mod 2^w.
    n0_inv: u32,
    /// R^2 mod n with R = 2^(w * n.len()): converts into Montgomery form.
    r2: Vec<u32>,
    /// The public exponent: odd, 3 <= e < 2^64 (< n).
    e: u64,
    /// Bit length of n.
    bits: usize,
    /// Limb width in bits, 28 or 26.
    w: u32,
}

impl fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaKey")
            .field("bits", &self.bits)
            .field("e", &self.e)
            .finish()
    }
}

/// The largest modulus, in bits, that uses 28-bit limbs (120 limbs).
const MAX_BITS_W28: usize = 28 * 120;

/// Compares two numbers of the same limb count.
fn cmp_limbs(a: &[u32], b: &[u32]) -> Ordering {
    a.iter()
        .rev()
        .zip(b.iter().rev())
        .map(|(x, y)| x.cmp(y))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// Sum of x_i * y_(len-1-i): `x` forwards against `y` backwards.
fn dot_rev(x: Option<&[u32]>, y: Option<&[u32]>) -> u64 {
    let (Some(x), Some(y)) = (x, y) else {
        return 0;
    };
    x.iter()
        .zip(y.iter().rev())
        .fold(0u64, |acc, (a, b)| acc + u64::from(*a) * u64::from(*b))
}

/// Column k of a * b: the sum of a_i * b_(k-i).
fn mul_column(a: &[u32], b: &[u32], k: usize) -> u64 {
    let len = a.len();
    let lo = (k + 1).saturating_sub(len);
    let hi = k.min(len - 1);
    dot_rev(a.get(lo..=hi), b.get(k - hi..=k - lo))
}

/// Column k of a^2: the pairs a_i * a_(k-i) with i < k - i twice, plus
/// a_(k/2)^2 when k is even.
fn sqr_column(a: &[u32], k: usize) -> u64 {
    let len = a.len();
    let lo = (k + 1).saturating_sub(len);
    // i runs from lo while i < k - i; the partners run down from k - lo.
    let count = k.div_ceil(2) - lo;
    let off = dot_rev(a.get(lo..lo + count), a.get(k + 1 - lo - count..=k - lo));
    let mid = if k % 2 == 0 {
        a.get(k / 2).map_or(0, |x| u64::from(*x) * u64::from(*x))
    } else {
        0
    };
    2 * off + mid
}

impl RsaKey {
    /// Prepares a key from its modulus and public exponent, big-endian
    /// (leading zero bytes allowed).
    ///
    /// Refused: an even modulus or one under 2^64, one over 16384 bits, an
    /// even exponent, one under 3 or over 2^64 - 1 (JWKS keys use 65537;
    /// the cap keeps the exponentiation short and e < n). The caller sets
    /// the minimum modulus size (2048 bits for JWS).
    pub fn new(n: &[u8], e: &[u8]) -> Result<RsaKey, RsaError> {
        let n_start = n.iter().position(|b| *b != 0).unwrap_or(n.len());
        let n_bytes = n.get(n_start..).unwrap_or(&[]);
        if n_bytes.len() * 8 > MAX_MODULUS_BITS + 7 {
            return Err(RsaError::ModulusTooLarge);
        }
        let bits = match n_bytes.first() {
            Some(top) => 8 * n_bytes.len() - top.leading_zeros() as usize,
            None => return Err(RsaError::BadModulus),
        };
        if bits > MAX_MODULUS_BITS {
            return Err(RsaError::ModulusTooLarge);
        }
        if bits <= 64 || n_bytes.last().is_none_or(|b| b & 1 == 0) {
            return Err(RsaError::BadModulus);
        }

        let e_start = e.iter().position(|b| *b != 0).unwrap_or(e.len());
        let e_bytes = e.get(e_start..).unwrap_or(&[]);
        if e_bytes.len() > 8 {
            return Err(RsaError::BadExponent);
        }
        let e = e_bytes
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        // n > 2^64 > e, so e < n holds.
        if e < 3 || e & 1 == 0 {
            return Err(RsaError::BadExponent);
        }

        let w = if bits <= MAX_BITS_W28 { 28 } else { 26 };
        let mut key = RsaKey {
            n: Vec::new(),
            n0_inv: 0,
            r2: Vec::new(),
            e,
            bits,
            w,
        };
        key.n = key.limbs_from_be(n_bytes).ok_or(RsaError::BadModulus)?;
        let n0 = key.n.first().copied().unwrap_or(0);
        // n0^-1 mod 2^32 by Newton's iteration: each step doubles the
        // number of correct low bits, and n0 is its own inverse mod 2^3.
        let mut inv = n0;
        for _ in 0..4 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inv)));
        }
        key.n0_inv = inv.wrapping_neg() & key.mask();
        key.r2 = key.compute_r2();
        Ok(key)
    }

    /// Bit length of the modulus.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Byte length of the modulus: every signature has exactly this length.
    pub fn size(&self) -> usize {
        self.bits.div_ceil(8)
    }

    /// The public exponent.
    pub fn exponent(&self) -> u64 {
        self.e
    }

    /// The limb count L: the smallest with w * L >= bits.
    fn limbs(&self) -> usize {
        self.bits.div_ceil(self.w as usize)
    }

    fn mask(&self) -> u32 {
        (1 << self.w) - 1
    }

    /// Big-endian bytes (leading zeros allowed) to L limbs; `None` when the
    /// value is 2^(w L) or more.
    fn limbs_from_be(&self, bytes: &[u8]) -> Option<Vec<u32>> {
        let (w, mask) = (self.w, u64::from(self.mask()));
        let mut out = vec![0u32; self.limbs()];
        let mut limbs = out.iter_mut();
        let mut acc = 0u64;
        let mut have = 0u32;
        let mut put = |v: u64| match limbs.next() {
            Some(l) => {
                *l = v as u32;
                true
            }
            None => v == 0,
        };
        for b in bytes.iter().rev() {
            acc |= u64::from(*b) << have;
            have += 8;
            while have >= w {
                if !put(acc & mask) {
                    return None;
                }
                acc >>= w;
                have -= w;
            }
        }
        if !put(acc) {
            return None;
        }
        Some(out)
    }

    /// L limbs to `k` big-endian bytes (the value must be below 2^(8k)).
    fn to_be(&self, limbs: &[u32], k: usize) -> Vec<u8> {
        let mut out = vec![0u8; k];
        let mut dst = out.iter_mut().rev();
        let mut acc = 0u64;
        let mut have = 0u32;
        for l in limbs {
            acc |= u64::from(*l) << have;
            have += self.w;
            while have >= 8 {
                if let Some(d) = dst.next() {
                    *d = acc as u8;
                }
                acc >>= 8;
                have -= 8;
            }
        }
        if let Some(d) = dst.next() {
            *d = acc as u8;
        }
        out
    }

    /// a -= b (same limb count); the borrow out is dropped.
    fn sub_in_place(&self, a: &mut [u32], b: &[u32]) {
        let mask = self.mask();
        let mut borrow = 0u32;
        for (x, y) in a.iter_mut().zip(b) {
            // x, y < 2^w with w <= 28: a negative difference wraps to a
            // value with the top bit set.
            let d = x.wrapping_sub(*y).wrapping_sub(borrow);
            borrow = d >> 31;
            *x = d & mask;
        }
    }

    /// R^2 mod n. R mod n by doubling 2^(bits-1) (< n) up to 2^(w L); then
    /// a = w L / 2^j more doublings (2^j the largest power of two dividing
    /// w) give 2^a R mod n, the Montgomery form of 2^a; j Montgomery
    /// squarings raise it to 2^(w L) = R, whose Montgomery form is R^2 mod n.
    fn compute_r2(&self) -> Vec<u32> {
        let len = self.limbs();
        let w = self.w as usize;
        let mut x = vec![0u32; len];
        let top_bit = self.bits - 1;
        if let Some(limb) = x.get_mut(top_bit / w) {
            *limb = 1 << (top_bit % w);
        }
        let j = self.w.trailing_zeros();
        for _ in 0..(w * len - top_bit + ((w * len) >> j)) {
            self.double_mod(&mut x);
        }
        let mut y = vec![0u32; len];
        let mut m = vec![0u32; len];
        for _ in 0..j {
            self.mont_sqr(&mut y, &x, &mut m);
            std::mem::swap(&mut x, &mut y);
        }
        x
    }

    /// x = 2x mod n, for x < n.
    fn double_mod(&self, x: &mut [u32]) {
        let mask = self.mask();
        let mut out = 0u32;
        for limb in x.iter_mut() {
            let v = (*limb << 1) | out;
            out = v >> self.w;
            *limb = v & mask;
        }
        if out != 0 || cmp_limbs(x, &self.n).is_ge() {
            self.sub_in_place(x, &self.n);
        }
    }

    /// Montgomery product by product scanning: out = (sum of the columns
    /// `ab(k)`) / R mod n, fully reduced, where the columns are those of a
    /// product of two numbers below n. `m` (L limbs) is scratch.
    ///
    /// Column k < L adds the products m_i n_(k-i) for i < k, then picks
    /// m_k so that the column's low w bits become zero; columns k >= L
    /// give the result limbs. Each column holds at most 2L products of two
    /// w-bit limbs plus the previous column's carry: under 2^64 (see
    /// [`RsaKey`]). The result (ab + mn) / R is below 2n: one subtraction
    /// at most.
    fn mont_columns(&self, out: &mut [u32], m: &mut [u32], ab: impl Fn(usize) -> u64) {
        let len = self.limbs();
        let (w, mask) = (self.w, self.mask());
        let n = self.n.as_slice();
        let n0 = u64::from(n.first().copied().unwrap_or(0));
        let mut acc = 0u64;
        for k in 0..len {
            acc += ab(k) + dot_rev(m.get(..k), n.get(1..=k));
            let mk = (acc as u32).wrapping_mul(self.n0_inv) & mask;
            if let Some(slot) = m.get_mut(k) {
                *slot = mk;
            }
            acc += u64::from(mk) * n0;
            acc >>= w;
        }
        for (k, o) in (len..2 * len).zip(out.iter_mut()) {
            let lo = k + 1 - len;
            acc += ab(k) + dot_rev(m.get(lo..len), n.get(lo..len));
            *o = acc as u32 & mask;
            acc >>= w;
        }
        if acc != 0 || cmp_limbs(out, n).is_ge() {
            self.sub_in_place(out, n);
        }
    }

    /// out = a * b / R mod n, for a, b < n.
    fn mont_mul(&self, out: &mut [u32], a: &[u32], b: &[u32], m: &mut [u32]) {
        self.mont_columns(out, m, |k| mul_column(a, b, k));
    }

    /// out = a^2 / R mod n, for a < n.
    fn mont_sqr(&self, out: &mut [u32], a: &[u32], m: &mut [u32]) {
        self.mont_columns(out, m, |k| sqr_column(a, k));
    }

    /// RSAVP1 and I2OSP (RFC 8017 sections 5.2.2, 4.1): s^e mod n as `size()`
    /// big-endian bytes. `None` when the signature is not `size()` bytes
    /// long or not below n.
    fn public_op(&self, sig: &[u8]) -> Option<Vec<u8>> {
        let k = self.size();
        if sig.len() != k {
            return None;
        }
        let len = self.limbs();
        let s = self.limbs_from_be(sig)?;
        if cmp_limbs(&s, &self.n).is_ge() {
            return None;
        }
        let mut m = vec![0u32; len];
        let mut x = vec![0u32; len];
        let mut y = vec![0u32; len];
        // x = s R mod n, the Montgomery form of s.
        self.mont_mul(&mut x, &s, &self.r2, &mut m);
        let s_mont = x.clone();
        // Left to right over the bits of e below the top one. The last bit
        // is 1 (e is odd); multiplying by plain s there, not s R, also
        // leaves Montgomery form: (s^(e-1) R) * s / R = s^e.
        let top = 63 - self.e.leading_zeros();
        for bit in (0..top).rev() {
            self.mont_sqr(&mut y, &x, &mut m);
            if bit == 0 {
                self.mont_mul(&mut x, &y, &s, &mut m);
            } else if (self.e >> bit) & 1 == 1 {
                self.mont_mul(&mut x, &y, &s_mont, &mut m);
            } else {
                std::mem::swap(&mut x, &mut y);
            }
        }
        // x < n < 2^(8k).
        Some(self.to_be(&x, k))
    }

    /// RSASSA-PKCS1-V1_5-VERIFY (RFC 8017 section 8.2.2): builds the one
    /// valid encoding 00 01 FF..FF 00 || DigestInfo || H(msg) and compares
    /// it with the signature's in full.
    pub fn verify_pkcs1v15(&self, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
        let Some(em) = self.public_op(sig) else {
            return false;
        };
        let prefix = hash.digest_info_prefix();
        let digest = hash.digest(&[msg]);
        let t_len = prefix.len() + digest.len;
        // At least eight 0xFF bytes (RFC 8017 section 9.2 step 3).
        let Some(ps_len) = em.len().checked_sub(t_len + 3).filter(|l| *l >= 8) else {
            return false;
        };
        let expected = [0x00u8, 0x01]
            .iter()
            .chain(std::iter::repeat_n(&0xffu8, ps_len))
            .chain(std::iter::once(&0x00u8))
            .chain(prefix)
            .chain(digest.as_slice());
        em.iter().eq(expected)
    }

    /// RSASSA-PSS-VERIFY (RFC 8017 sections 8.1.2, 9.1.2) with MGF1 over
    /// the same hash and the salt length equal to the hash length, as JWS
    /// requires (RFC 7518 section 3.5).
    pub fn verify_pss(&self, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
        let Some(em) = self.public_op(sig) else {
            return false;
        };
        // emBits = modBits - 1: when modBits - 1 is a multiple of 8 the
        // encoding is one byte shorter than the modulus and the integer's
        // top byte must be zero (I2OSP to emLen bytes).
        let em_bits = self.bits - 1;
        let em_len = em_bits.div_ceil(8);
        let em: &[u8] = match em.len() - em_len {
            0 => &em,
            _ => match em.split_first() {
                Some((0, rest)) => rest,
                _ => return false,
            },
        };
        emsa_pss_verify(hash, msg, em, em_bits)
    }
}

/// EMSA-PSS-VERIFY (RFC 8017 section 9.1.2), sLen = hLen, MGF1 with `hash`.
/// `em` is emLen = ceil(em_bits / 8) bytes.
fn emsa_pss_verify(hash: Hash, msg: &[u8], em: &[u8], em_bits: usize) -> bool {
    let h_len = hash.output_len();
    let s_len = h_len;
    let em_len = em.len();
    // Step 3.
    if em_len < h_len + s_len + 2 {
        return false;
    }
    // Step 4: the trailer.
    let Some((&0xbc, em)) = em.split_last() else {
        return false;
    };
    // Step 5: maskedDB || H.
    let Some((masked_db, h)) = em.split_at_checked(em_len - h_len - 1) else {
        return false;
    };
    // Step 6: the bits above emBits are zero.
    let zero_bits = 8 * em_len - em_bits;
    let top_mask = 0xffu8 >> zero_bits;
    if masked_db.first().is_none_or(|b| b & !top_mask != 0) {
        return false;
    }
    // Steps 7-9: DB = maskedDB xor MGF1(H), top bits cleared.
    let mut db = masked_db.to_vec();
    for (counter, chunk) in (0u32..).zip(db.chunks_mut(h_len)) {
        let mask = hash.digest(&[h, &counter.to_be_bytes()]);
        chunk
            .iter_mut()
            .zip(mask.as_slice())
            .for_each(|(d, m)| *d ^= m);
    }
    if let Some(first) = db.first_mut() {
        *first &= top_mask;
    }
    // Step 10: PS (zeros) || 0x01 || salt.
    let Some((ps_one, salt)) = db.split_at_checked(db.len() - s_len) else {
        return false;
    };
    let Some((&0x01, ps)) = ps_one.split_last() else {
        return false;
    };
    if ps.iter().any(|b| *b != 0) {
        return false;
    }
    // Steps 12-14: H == Hash(00 x 8 || mHash || salt).
    let m_hash = hash.digest(&[msg]);
    let h2 = hash.digest(&[&[0u8; 8], m_hash.as_slice(), salt]);
    h == h2.as_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference arithmetic on big-endian bytes, independent of the code
    /// under test: schoolbook multiplication over u8 digits and bit-serial
    /// reduction, slow but obviously right.
    fn be_mul(a: &[u8], b: &[u8]) -> Vec<u8> {
        let mut out = vec![0u32; a.len() + b.len()];
        for (i, x) in a.iter().rev().enumerate() {
            for (j, y) in b.iter().rev().enumerate() {
                out[i + j] += u32::from(*x) * u32::from(*y);
            }
            let mut c = 0u32;
            for d in out.iter_mut() {
                let s = *d + c;
                *d = s & 0xff;
                c = s >> 8;
            }
        }
        out.iter().rev().map(|d| *d as u8).collect()
    }

    /// a mod n (big-endian bytes), as `n.len()` bytes.
    fn be_mod(a: &[u8], n: &[u8]) -> Vec<u8> {
        // r and n as little-endian bytes, one spare byte for the shift.
        let n_le: Vec<u16> = n.iter().rev().map(|b| u16::from(*b)).chain([0]).collect();
        let mut r = vec![0u16; n_le.len()];
        for byte in a {
            for bit in (0..8).rev() {
                let mut carry = u16::from((byte >> bit) & 1);
                for d in r.iter_mut() {
                    let v = (*d << 1) | carry;
                    *d = v & 0xff;
                    carry = v >> 8;
                }
                let ge = r
                    .iter()
                    .rev()
                    .zip(n_le.iter().rev())
                    .map(|(x, y)| x.cmp(y))
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal)
                    .is_ge();
                if ge {
                    let mut borrow = 0i32;
                    for (x, y) in r.iter_mut().zip(&n_le) {
                        let d = i32::from(*x) - i32::from(*y) - borrow;
                        borrow = i32::from(d < 0);
                        *x = (d & 0xff) as u16;
                    }
                }
            }
        }
        r.iter().take(n.len()).rev().map(|d| *d as u8).collect()
    }

    /// 2^e as big-endian bytes.
    fn pow2(e: usize) -> Vec<u8> {
        let mut v = vec![0u8; e / 8 + 1];
        v[0] = 1 << (e % 8);
        v
    }

    /// A key's limbs as `n.len()` big-endian bytes (the value fits).
    fn to_bytes(key: &RsaKey, x: &[u32]) -> Vec<u8> {
        let wide = key.to_be(x, (key.w as usize * key.limbs()).div_ceil(8) + 1);
        let k = key.size();
        assert!(wide[..wide.len() - k].iter().all(|b| *b == 0));
        wide[wide.len() - k..].to_vec()
    }

    /// A deterministic xorshift generator.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// A random odd modulus of `bytes` bytes with the top bit set.
    fn odd_modulus(rng: &mut Rng, bytes: usize) -> Vec<u8> {
        let mut n = rng.bytes(bytes);
        n[0] |= 0x80;
        *n.last_mut().unwrap() |= 1;
        n
    }

    #[test]
    fn limb_width_follows_the_column_bound() {
        let at = |bits: usize| {
            let mut n = vec![0xffu8; bits.div_ceil(8)];
            n[0] = 0xff >> (8 * n.len() - bits);
            let key = RsaKey::new(&n, &[3]).unwrap();
            assert_eq!(key.bits(), bits);
            (key.w, key.limbs())
        };
        assert_eq!(at(2048), (28, 74));
        assert_eq!(at(3072), (28, 110));
        assert_eq!(at(3360), (28, 120));
        assert_eq!(at(3361), (26, 130));
        assert_eq!(at(4096), (26, 158));
        assert_eq!(at(16384), (26, 631));
    }

    #[test]
    fn limbs_round_trip() {
        let mut rng = Rng(3);
        for bytes in [9usize, 64, 256, 421, 512] {
            let n = odd_modulus(&mut rng, bytes);
            let key = RsaKey::new(&n, &[3]).unwrap();
            let mask = key.mask();
            for _ in 0..10 {
                let v = rng.bytes(bytes);
                let limbs = key.limbs_from_be(&v).unwrap();
                assert!(limbs.iter().all(|l| *l <= mask));
                assert_eq!(key.to_be(&limbs, bytes), v);
                // Leading zeros change nothing.
                let mut padded = vec![0u8; 5];
                padded.extend_from_slice(&v);
                assert_eq!(key.limbs_from_be(&padded).unwrap(), limbs);
            }
            let wl = key.w as usize * key.limbs();
            assert!(key.limbs_from_be(&pow2(wl)).is_none());
            let below: Vec<u8> = be_mod(&pow2(wl), &pow2(wl)); // zero
            assert!(key.limbs_from_be(&below).unwrap().iter().all(|l| *l == 0));
            let mut max = vec![0xffu8; wl.div_ceil(8)];
            max[0] = 0xff >> (8 * max.len() - wl);
            assert!(key.limbs_from_be(&max).unwrap().iter().all(|l| *l == mask));
        }
    }

    #[test]
    fn n0_inv_is_minus_inverse() {
        let mut rng = Rng(7);
        for bytes in [64usize, 500] {
            for _ in 0..50 {
                let n = odd_modulus(&mut rng, bytes);
                let key = RsaKey::new(&n, &[1, 0, 1]).unwrap();
                assert_eq!(key.n[0].wrapping_mul(key.n0_inv) & key.mask(), key.mask());
            }
        }
    }

    #[test]
    fn columns_match_schoolbook() {
        let mut rng = Rng(99);
        for len in [1usize, 2, 3, 5, 8, 17, 120] {
            let mut cases: Vec<(Vec<u32>, Vec<u32>)> = (0..10)
                .map(|_| {
                    let a = (0..len).map(|_| rng.next() as u32 >> 4).collect();
                    let b = (0..len).map(|_| rng.next() as u32 >> 4).collect();
                    (a, b)
                })
                .collect();
            cases.push((vec![(1 << 28) - 1; len], vec![(1 << 28) - 1; len]));
            for (a, b) in &cases {
                for k in 0..2 * len {
                    let mut ab = 0u64;
                    let mut aa = 0u64;
                    for i in 0..len {
                        for j in 0..len {
                            if i + j == k {
                                ab += u64::from(a[i]) * u64::from(b[j]);
                                aa += u64::from(a[i]) * u64::from(a[j]);
                            }
                        }
                    }
                    assert_eq!(mul_column(a, b, k), ab, "len {len} k {k}");
                    assert_eq!(sqr_column(a, k), aa, "len {len} k {k}");
                }
            }
        }
    }

    /// Checks out = a b / R mod n, i.e. out R = a b (mod n), and out < n.
    fn check_mont(key: &RsaKey, n: &[u8], out: &[u32], a: &[u32], b: &[u32]) {
        let r = pow2(key.w as usize * key.limbs());
        let lhs = be_mod(&be_mul(&to_bytes(key, out), &r), n);
        let rhs = be_mod(&be_mul(&to_bytes(key, a), &to_bytes(key, b)), n);
        assert_eq!(lhs, rhs);
        assert!(cmp_limbs(out, &key.n).is_lt());
    }

    #[test]
    fn montgomery_multiplication_matches_reference() {
        let mut rng = Rng(1234);
        let mut moduli: Vec<Vec<u8>> = [12usize, 16, 33, 64, 256, 384, 421, 512]
            .iter()
            .map(|b| odd_modulus(&mut rng, *b))
            .collect();
        // All-ones moduli at the largest limb count of each width: n - 1
        // squared fills every column to its bound.
        moduli.push(vec![0xff; 420]);
        moduli.push(vec![0xff; 2048]);
        for n in &moduli {
            let key = RsaKey::new(n, &[3]).unwrap();
            let len = key.limbs();
            let limbs = |v: &[u8]| key.limbs_from_be(v).unwrap();
            let mut nm1_bytes = n.clone();
            *nm1_bytes.last_mut().unwrap() -= 1;
            let nm1 = limbs(&nm1_bytes);
            let one = limbs(&[1]);
            let zero = vec![0u32; len];
            let mut cases = vec![
                (zero.clone(), nm1.clone()),
                (one.clone(), one.clone()),
                (nm1.clone(), nm1.clone()),
                (one.clone(), nm1.clone()),
            ];
            let rounds = if n.len() > 1000 { 1 } else { 6 };
            for _ in 0..rounds {
                let a = be_mod(&rng.bytes(n.len()), n);
                let b = be_mod(&rng.bytes(n.len()), n);
                cases.push((limbs(&a), limbs(&b)));
            }
            let mut m = vec![0u32; len];
            let mut x = vec![0u32; len];
            for (a, b) in &cases {
                key.mont_mul(&mut x, a, b, &mut m);
                check_mont(&key, n, &x, a, b);
                let mut sq = vec![0u32; len];
                key.mont_sqr(&mut sq, a, &mut m);
                check_mont(&key, n, &sq, a, a);
                // The squaring and the multiplication agree.
                key.mont_mul(&mut x, a, a, &mut m);
                assert_eq!(sq, x);
            }
        }
    }

    #[test]
    fn r2_matches_reference() {
        let mut rng = Rng(42);
        for bytes in [9usize, 12, 13, 64, 100, 256, 420, 421, 512, 2048] {
            let n = odd_modulus(&mut rng, bytes);
            // A modulus whose top byte is 1.
            let mut n_short = n.clone();
            n_short[0] = 1;
            for n in [n, n_short] {
                let key = RsaKey::new(&n, &[1, 0, 1]).unwrap();
                let r2 = pow2(2 * key.w as usize * key.limbs());
                assert_eq!(to_bytes(&key, &key.r2), be_mod(&r2, &n), "{bytes} bytes");
            }
        }
    }

    #[test]
    fn public_op_small_values() {
        // n = 2^64 + 13 (odd, just over the 64-bit floor), e = 3 and 65537.
        let n_val: u128 = (1u128 << 64) + 13;
        let n = n_val.to_be_bytes()[7..].to_vec(); // 9 bytes
        for e in [3u64, 65537, (1 << 63) + 1, u64::MAX] {
            let key = RsaKey::new(&n, &e.to_be_bytes()).unwrap();
            assert_eq!(key.size(), 9);
            let pow = |s: u128| {
                let mut acc = 1u128;
                let mut base = s % n_val;
                let mut e = e;
                while e > 0 {
                    if e & 1 == 1 {
                        acc = mulmod(acc, base, n_val);
                    }
                    base = mulmod(base, base, n_val);
                    e >>= 1;
                }
                acc
            };
            for s in [
                0u128,
                1,
                2,
                n_val - 1,
                n_val - 2,
                0xfedc_ba98_7654_3210,
                (1 << 64) + 5,
            ] {
                let sig = s.to_be_bytes()[7..].to_vec();
                let em = key.public_op(&sig).unwrap();
                let mut full = [0u8; 16];
                full[7..].copy_from_slice(&em);
                assert_eq!(u128::from_be_bytes(full), pow(s), "s={s:#x} e={e}");
            }
            // s = n and s > n are refused, as are wrong lengths.
            assert!(key.public_op(&n).is_none());
            let over = (n_val + 1).to_be_bytes()[7..].to_vec();
            assert!(key.public_op(&over).is_none());
            assert!(key.public_op(&[0xff; 9]).is_none());
            assert!(key.public_op(&[1; 8]).is_none());
            assert!(key.public_op(&[0; 10]).is_none());
        }
    }

    fn mulmod(a: u128, b: u128, n: u128) -> u128 {
        // Shift-and-add, for n < 2^127.
        let mut r = 0u128;
        let mut a = a % n;
        let mut b = b;
        while b > 0 {
            if b & 1 == 1 {
                r = (r + a) % n;
            }
            a = (a << 1) % n;
            b >>= 1;
        }
        r
    }

    #[test]
    fn keys_are_checked() {
        let mut n = vec![0xffu8; 256];
        assert!(RsaKey::new(&n, &[1, 0, 1]).is_ok());
        // Leading zeros are fine.
        let mut padded = vec![0u8; 3];
        padded.extend_from_slice(&n);
        assert_eq!(RsaKey::new(&padded, &[0, 1, 0, 1]).unwrap().bits(), 2048);
        assert_eq!(
            RsaKey::new(&n, &[1, 0, 0]).unwrap_err(),
            RsaError::BadExponent
        );
        assert_eq!(RsaKey::new(&n, &[1]).unwrap_err(), RsaError::BadExponent);
        assert_eq!(RsaKey::new(&n, &[]).unwrap_err(), RsaError::BadExponent);
        assert_eq!(RsaKey::new(&n, &[0; 4]).unwrap_err(), RsaError::BadExponent);
        assert!(RsaKey::new(&n, &[3]).is_ok());
        assert!(RsaKey::new(&n, &[0xff; 8]).is_ok());
        assert_eq!(RsaKey::new(&n, &[1; 9]).unwrap_err(), RsaError::BadExponent);
        assert!(RsaKey::new(&n, &[0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]).is_ok());
        *n.last_mut().unwrap() = 0xfe;
        assert_eq!(
            RsaKey::new(&n, &[1, 0, 1]).unwrap_err(),
            RsaError::BadModulus
        );
        assert_eq!(
            RsaKey::new(&[], &[1, 0, 1]).unwrap_err(),
            RsaError::BadModulus
        );
        assert_eq!(
            RsaKey::new(&[0; 300], &[3]).unwrap_err(),
            RsaError::BadModulus
        );
        assert_eq!(
            RsaKey::new(&[0xff; 8], &[3]).unwrap_err(),
            RsaError::BadModulus
        );
        assert!(RsaKey::new(&[0xff; 2048], &[1, 0, 1]).is_ok());
        assert_eq!(
            RsaKey::new(&[0xff; 2049], &[1, 0, 1]).unwrap_err(),
            RsaError::ModulusTooLarge
        );
        let mut big = vec![1u8];
        big.extend_from_slice(&[0xff; 2048]);
        assert_eq!(
            RsaKey::new(&big, &[1, 0, 1]).unwrap_err(),
            RsaError::ModulusTooLarge
        );
    }

    #[test]
    fn wrong_lengths_and_edge_signatures_fail() {
        let mut rng = Rng(5);
        let n = odd_modulus(&mut rng, 256);
        let key = RsaKey::new(&n, &[1, 0, 1]).unwrap();
        let msg = b"abc";
        for sig in [vec![], vec![0u8; 255], vec![0u8; 257], vec![0u8; 256], {
            let mut one = vec![0u8; 256];
            one[255] = 1;
            one
        }] {
            for h in [Hash::Sha256, Hash::Sha384, Hash::Sha512] {
                assert!(!key.verify_pkcs1v15(h, msg, &sig));
                assert!(!key.verify_pss(h, msg, &sig));
            }
        }
        // s = 1 gives EM = 1, s = 0 gives 0 and s = n - 1 gives n - 1
        // (e odd): exercised above and in public_op_small_values.
        let mut nm1 = n.clone();
        *nm1.last_mut().unwrap() -= 1;
        let em = key.public_op(&nm1).unwrap();
        assert_eq!(em, nm1);
        let mut one = vec![0u8; 256];
        one[255] = 1;
        assert_eq!(key.public_op(&one).unwrap(), one);
        assert_eq!(key.public_op(&[0u8; 256]).unwrap(), vec![0u8; 256]);
    }

    #[test]
    fn digest_info_prefixes_have_the_right_lengths() {
        for h in [Hash::Sha256, Hash::Sha384, Hash::Sha512] {
            let p = h.digest_info_prefix();
            assert_eq!(p.len(), 19);
            // Outer SEQUENCE length covers the rest, OCTET STRING length = hLen.
            assert_eq!(usize::from(p[1]), p.len() - 2 + h.output_len());
            assert_eq!(usize::from(p[18]), h.output_len());
            assert_eq!(
                h.digest(&[b"a", b"bc"]).as_slice(),
                h.digest(&[b"abc"]).as_slice()
            );
        }
        assert_eq!(
            Hash::Sha256.digest(&[b"abc"]).as_slice()[..4],
            [0xba, 0x78, 0x16, 0xbf]
        );
    }
}
