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

/// An RSA public key prepared for verification: the modulus as 32-bit
/// limbs (least significant first) with its Montgomery constants.
///
/// Every limb vector of the key and of its scratch space has `n.len()`
/// limbs (or twice that); the arithmetic below relies on it.
#[derive(Clone)]
pub struct RsaKey {
    /// The modulus, little-endian limbs, the top limb non-zero.
    n: Vec<u32>,
    /// -n^-1 mod 2^32.
    n0_inv: u32,
    /// R^2 mod n with R = 2^(32 * n.len()): converts into Montgomery form.
    r2: Vec<u32>,
    /// The public exponent: odd, 3 <= e < 2^64, e < n.
    e: u64,
    /// Bit length of n.
    bits: usize,
}

impl fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaKey")
            .field("bits", &self.bits)
            .field("e", &self.e)
            .finish()
    }
}

/// Big-endian bytes (leading zeros allowed) to `len` little-endian limbs;
/// `None` when the value needs more limbs.
fn limbs_from_be(bytes: &[u8], len: usize) -> Option<Vec<u32>> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let bytes = bytes.get(start..)?;
    if bytes.len().div_ceil(4) > len {
        return None;
    }
    let mut out = vec![0u32; len];
    for (limb, chunk) in out.iter_mut().zip(bytes.rchunks(4)) {
        *limb = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
    }
    Some(out)
}

/// Compares two numbers of the same limb count.
fn cmp_limbs(a: &[u32], b: &[u32]) -> Ordering {
    a.iter()
        .rev()
        .zip(b.iter().rev())
        .map(|(x, y)| x.cmp(y))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// a -= b over the common length; returns the borrow out.
fn sub_in_place(a: &mut [u32], b: &[u32]) -> bool {
    let mut borrow = false;
    for (x, y) in a.iter_mut().zip(b) {
        let (d1, b1) = x.overflowing_sub(*y);
        let (d2, b2) = d1.overflowing_sub(u32::from(borrow));
        *x = d2;
        borrow = b1 || b2;
    }
    borrow
}

/// t = a * b, schoolbook. `t` has `2 * len` limbs, `a` and `b` `len`.
fn mul_full(t: &mut [u32], a: &[u32], b: &[u32]) {
    t.fill(0);
    let len = b.len();
    for (i, ai) in a.iter().enumerate() {
        // Row i adds ai * b at limbs i..i+len and writes its carry to limb
        // i+len, which no earlier row has touched (they end at i+len-1).
        let Some((top, row)) = t.get_mut(i..=i + len).and_then(|r| r.split_last_mut()) else {
            return;
        };
        let ai = u64::from(*ai);
        let mut carry = 0u64;
        for (tj, bj) in row.iter_mut().zip(b) {
            let s = u64::from(*tj) + ai * u64::from(*bj) + carry;
            *tj = s as u32;
            carry = s >> 32;
        }
        *top = carry as u32;
    }
}

/// t = a^2: the products a_i * a_j (i < j) once, doubled, plus the squares.
/// `t` has `2 * len` limbs, `a` `len`.
fn sqr_full(t: &mut [u32], a: &[u32]) {
    t.fill(0);
    let len = a.len();
    // Off-diagonal products: row i adds a_i * a[i+1..] at limbs 2i+1.. and
    // writes its carry to limb i+len, untouched by earlier rows.
    for (i, ai) in a.iter().enumerate() {
        let (Some(rest), Some((top, row))) = (
            a.get(i + 1..),
            t.get_mut(2 * i + 1..=i + len)
                .and_then(|r| r.split_last_mut()),
        ) else {
            continue;
        };
        let ai = u64::from(*ai);
        let mut carry = 0u64;
        for (tj, bj) in row.iter_mut().zip(rest) {
            let s = u64::from(*tj) + ai * u64::from(*bj) + carry;
            *tj = s as u32;
            carry = s >> 32;
        }
        *top = carry as u32;
    }
    // Double and add the squares a_i^2 at limbs 2i, 2i+1. The total is
    // a^2 < 2^(64 len), so nothing carries out of the top limb.
    let mut shifted_out = 0u32;
    let mut carry = 0u64;
    for (pair, ai) in t.chunks_exact_mut(2).zip(a) {
        if let [lo, hi] = pair {
            let sq = u64::from(*ai) * u64::from(*ai);
            let lo2 = (*lo << 1) | shifted_out;
            let hi2 = (*hi << 1) | (*lo >> 31);
            shifted_out = *hi >> 31;
            let s = u64::from(lo2) + (sq & 0xffff_ffff) + carry;
            *lo = s as u32;
            let s = u64::from(hi2) + (sq >> 32) + (s >> 32);
            *hi = s as u32;
            carry = s >> 32;
        }
    }
}

impl RsaKey {
    /// Prepares a key from its modulus and public exponent, big-endian
    /// (leading zero bytes allowed).
    ///
    /// Refused: an even modulus or one under 2^64, one over 16384 bits, an
    /// even exponent, one under 3 or over 2^64 - 1 (JWKS keys use 65537;
    /// the cap keeps the exponentiation short), or one not below n. The
    /// caller sets the minimum modulus size (2048 bits for JWS).
    pub fn new(n: &[u8], e: &[u8]) -> Result<RsaKey, RsaError> {
        let n_start = n.iter().position(|b| *b != 0).unwrap_or(n.len());
        let n_bytes = n.get(n_start..).unwrap_or(&[]);
        if n_bytes.len() * 8 > MAX_MODULUS_BITS + 7 {
            return Err(RsaError::ModulusTooLarge);
        }
        let len = n_bytes.len().div_ceil(4);
        let n_limbs = limbs_from_be(n_bytes, len).ok_or(RsaError::BadModulus)?;
        let bits = match n_limbs.last() {
            Some(top) if *top != 0 => 32 * len - top.leading_zeros() as usize,
            _ => return Err(RsaError::BadModulus),
        };
        if bits > MAX_MODULUS_BITS {
            return Err(RsaError::ModulusTooLarge);
        }
        let n0 = n_limbs.first().copied().unwrap_or(0);
        if bits <= 64 || n0 & 1 == 0 {
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

        // n0^-1 mod 2^32 by Newton's iteration: each step doubles the
        // number of correct low bits, and n0 is its own inverse mod 2^3.
        let mut inv = n0;
        for _ in 0..4 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inv)));
        }
        let mut key = RsaKey {
            n: n_limbs,
            n0_inv: inv.wrapping_neg(),
            r2: Vec::new(),
            e,
            bits,
        };
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

    fn limbs(&self) -> usize {
        self.n.len()
    }

    /// R^2 mod n. R mod n by doubling 2^(bits-1) (< n) up to 2^(32 len);
    /// then `len` more doublings give 2^len * R mod n, the Montgomery form
    /// of 2^len; five Montgomery squarings raise it to 2^(32 len) = R, whose
    /// Montgomery form is R^2 mod n.
    fn compute_r2(&self) -> Vec<u32> {
        let len = self.limbs();
        let mut x = vec![0u32; len];
        let top_bit = self.bits - 1;
        if let Some(limb) = x.get_mut(top_bit / 32) {
            *limb = 1 << (top_bit % 32);
        }
        for _ in 0..(32 * len - top_bit + len) {
            self.double_mod(&mut x);
        }
        let mut t = vec![0u32; 2 * len];
        let mut y = vec![0u32; len];
        for _ in 0..5 {
            self.mont_sqr(&mut y, &x, &mut t);
            std::mem::swap(&mut x, &mut y);
        }
        x
    }

    /// x = 2x mod n, for x < n.
    fn double_mod(&self, x: &mut [u32]) {
        let mut out = 0u32;
        for limb in x.iter_mut() {
            let next = *limb >> 31;
            *limb = (*limb << 1) | out;
            out = next;
        }
        if out != 0 || cmp_limbs(x, &self.n).is_ge() {
            sub_in_place(x, &self.n);
        }
    }

    /// Montgomery reduction: out = t / R mod n, for t < n * R (`t` has
    /// `2 len` limbs and is clobbered). The result is fully reduced.
    fn mont_reduce(&self, out: &mut [u32], t: &mut [u32]) {
        let len = self.limbs();
        let mut top_carry = 0u64;
        for i in 0..len {
            // Adds m * n at limb i, making limb i zero, and folds the carry
            // into limb i+len, whose own carry out moves on to limb
            // i+len+1 in the next round through `top_carry`.
            let Some((last, row)) = t.get_mut(i..=i + len).and_then(|r| r.split_last_mut()) else {
                return;
            };
            let m = u64::from(row.first().copied().unwrap_or(0).wrapping_mul(self.n0_inv));
            let mut carry = 0u64;
            for (tj, nj) in row.iter_mut().zip(&self.n) {
                let s = u64::from(*tj) + m * u64::from(*nj) + carry;
                *tj = s as u32;
                carry = s >> 32;
            }
            let s = u64::from(*last) + carry + top_carry;
            *last = s as u32;
            top_carry = s >> 32;
        }
        // (t + m n) / R < 2n: one subtraction at most.
        let high = t.get(len..).unwrap_or(&[]);
        copy_limbs(out, high);
        if top_carry != 0 || cmp_limbs(out, &self.n).is_ge() {
            sub_in_place(out, &self.n);
        }
    }

    /// out = a * b / R mod n, for a, b < n.
    fn mont_mul(&self, out: &mut [u32], a: &[u32], b: &[u32], t: &mut [u32]) {
        mul_full(t, a, b);
        self.mont_reduce(out, t);
    }

    /// out = a^2 / R mod n, for a < n.
    fn mont_sqr(&self, out: &mut [u32], a: &[u32], t: &mut [u32]) {
        sqr_full(t, a);
        self.mont_reduce(out, t);
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
        let s = limbs_from_be(sig, len)?;
        if cmp_limbs(&s, &self.n).is_ge() {
            return None;
        }
        let mut t = vec![0u32; 2 * len];
        let mut x = vec![0u32; len];
        let mut y = vec![0u32; len];
        // x = s R mod n, the Montgomery form of s.
        self.mont_mul(&mut x, &s, &self.r2, &mut t);
        let s_mont = x.clone();
        // Left to right over the bits of e below the top one. The last bit
        // is 1 (e is odd); multiplying by plain s there, not s R, also
        // leaves Montgomery form: (s^(e-1) R) * s / R = s^e.
        let top = 63 - self.e.leading_zeros();
        for bit in (0..top).rev() {
            self.mont_sqr(&mut y, &x, &mut t);
            if bit == 0 {
                self.mont_mul(&mut x, &y, &s, &mut t);
            } else if (self.e >> bit) & 1 == 1 {
                self.mont_mul(&mut x, &y, &s_mont, &mut t);
            } else {
                std::mem::swap(&mut x, &mut y);
            }
        }
        // x < n < 2^(8k): its bytes beyond k are zero.
        let mut em = vec![0u8; k];
        for (dst, src) in em
            .iter_mut()
            .rev()
            .zip(x.iter().flat_map(|l| l.to_le_bytes()))
        {
            *dst = src;
        }
        Some(em)
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

/// out = the first `out.len()` limbs of `src`.
fn copy_limbs(out: &mut [u32], src: &[u32]) {
    out.iter_mut().zip(src).for_each(|(d, s)| *d = *s);
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

    fn from_u128(v: u128, len: usize) -> Vec<u32> {
        (0..len)
            .map(|i| v.checked_shr(32 * i as u32).unwrap_or(0) as u32)
            .collect()
    }

    /// Big numbers as bytes for reference arithmetic: schoolbook over u8
    /// digits, slow but obviously right.
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

    /// a mod n by shift-and-subtract over bits (big-endian bytes).
    fn be_mod(a: &[u8], n: &[u8]) -> Vec<u8> {
        let len = n.len().div_ceil(4) + 1;
        let n_l = limbs_from_be(n, len).unwrap();
        let mut r = vec![0u32; len];
        for byte in a {
            for bit in (0..8).rev() {
                let mut out = (byte >> bit) as u32 & 1;
                for l in r.iter_mut() {
                    let next = *l >> 31;
                    *l = (*l << 1) | out;
                    out = next;
                }
                if cmp_limbs(&r, &n_l).is_ge() {
                    sub_in_place(&mut r, &n_l);
                }
            }
        }
        let mut bytes: Vec<u8> = r.iter().rev().flat_map(|l| l.to_be_bytes()).collect();
        bytes.drain(..bytes.len() - n.len());
        bytes
    }

    fn limbs_to_be(l: &[u32]) -> Vec<u8> {
        l.iter().rev().flat_map(|x| x.to_be_bytes()).collect()
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
    fn limbs_round_trip_with_leading_zeros() {
        let l = limbs_from_be(&[0, 0, 1, 2, 3, 4, 5], 2).unwrap();
        assert_eq!(l, vec![0x0203_0405, 0x01]);
        assert_eq!(limbs_from_be(&[1, 0, 0, 0, 0], 1), None);
        assert_eq!(limbs_from_be(&[], 2).unwrap(), vec![0, 0]);
    }

    #[test]
    fn n0_inv_is_minus_inverse() {
        let mut rng = Rng(7);
        for _ in 0..50 {
            let n = odd_modulus(&mut rng, 64);
            let key = RsaKey::new(&n, &[1, 0, 1]).unwrap();
            assert_eq!(key.n[0].wrapping_mul(key.n0_inv), u32::MAX);
        }
    }

    #[test]
    fn mul_and_square_match_reference() {
        let mut rng = Rng(99);
        for len in [1usize, 2, 3, 5, 8, 17] {
            for _ in 0..20 {
                let a = rng.bytes(4 * len);
                let b = rng.bytes(4 * len);
                let al = limbs_from_be(&a, len).unwrap();
                let bl = limbs_from_be(&b, len).unwrap();
                let mut t = vec![0u32; 2 * len];
                mul_full(&mut t, &al, &bl);
                assert_eq!(limbs_to_be(&t), be_mul(&a, &b));
                sqr_full(&mut t, &al);
                assert_eq!(limbs_to_be(&t), be_mul(&a, &a));
            }
            // All-ones limbs: every carry path at its maximum.
            let m = vec![u32::MAX; len];
            let mb = limbs_to_be(&m);
            let mut t = vec![0u32; 2 * len];
            mul_full(&mut t, &m, &m);
            assert_eq!(limbs_to_be(&t), be_mul(&mb, &mb));
            sqr_full(&mut t, &m);
            assert_eq!(limbs_to_be(&t), be_mul(&mb, &mb));
        }
    }

    #[test]
    fn montgomery_multiplication_matches_reference() {
        let mut rng = Rng(1234);
        for bytes in [12usize, 16, 33, 64, 256] {
            let n = odd_modulus(&mut rng, bytes);
            let key = RsaKey::new(&n, &[3]).unwrap();
            let len = key.limbs();
            let mut r = vec![0u8; 4 * len + 1];
            r[0] = 1;
            let r_inv_check = |x: &[u32], a: &[u8], b: &[u8]| {
                // x = a b / R mod n  <=>  x R = a b mod n.
                let lhs = be_mod(&be_mul(&limbs_to_be(x), &r), &n);
                let rhs = be_mod(&be_mul(a, b), &n);
                assert_eq!(lhs, rhs);
                assert!(cmp_limbs(x, &key.n).is_lt());
            };
            let nm1 = {
                let mut v = key.n.clone();
                v[0] -= 1;
                v
            };
            let mut cases = vec![
                (vec![0u32; len], nm1.clone()),
                (from_u128(1, len), from_u128(1, len)),
                (nm1.clone(), nm1.clone()),
                (from_u128(1, len), nm1.clone()),
            ];
            for _ in 0..10 {
                let a = be_mod(&rng.bytes(bytes), &n);
                let b = be_mod(&rng.bytes(bytes), &n);
                cases.push((
                    limbs_from_be(&a, len).unwrap(),
                    limbs_from_be(&b, len).unwrap(),
                ));
            }
            let mut t = vec![0u32; 2 * len];
            let mut x = vec![0u32; len];
            for (a, b) in &cases {
                key.mont_mul(&mut x, a, b, &mut t);
                r_inv_check(&x, &limbs_to_be(a), &limbs_to_be(b));
                key.mont_sqr(&mut x, a, &mut t);
                r_inv_check(&x, &limbs_to_be(a), &limbs_to_be(a));
            }
        }
    }

    #[test]
    fn r2_matches_reference() {
        let mut rng = Rng(42);
        for bytes in [9usize, 12, 13, 64, 100, 256, 512] {
            let n = odd_modulus(&mut rng, bytes);
            // A modulus whose top limb is not full.
            let mut n_short = n.clone();
            n_short[0] = 1;
            for n in [n, n_short] {
                let key = RsaKey::new(&n, &[1, 0, 1]).unwrap();
                let len = key.limbs();
                let mut r2 = vec![0u8; 8 * len + 1];
                r2[0] = 1;
                let expect = be_mod(&r2, &n);
                let got = limbs_to_be(&key.r2);
                assert_eq!(&got[got.len() - n.len()..], &expect[..]);
                assert!(got[..got.len() - n.len()].iter().all(|b| *b == 0));
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
