//! The ROCA fingerprint (CVE-2017-15361): RSA moduli made by a flawed
//! Infineon key generator have the form `k * M + (65537^a mod M)`, with `M`
//! the product of the small primes below. So for every such prime `p`,
//! `n mod p` lies in the subgroup that 65537 generates modulo `p`. A random
//! modulus does that for all 38 primes with a probability near 2^-154, so
//! the test has no practical false positives; such a key's private key can
//! be computed from its public key, and it is refused at load.
#![forbid(unsafe_code)]

/// The primes of the fingerprint (3 to 167).
const PRIMES: [u32; 38] = [
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97,
    101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
];

/// `n` (big-endian) modulo `p`.
fn residue(n: &[u8], p: u32) -> u32 {
    n.iter().fold(0u32, |r, b| (r * 256 + u32::from(*b)) % p)
}

/// Whether `r` is a power of 65537 modulo `p`.
fn in_subgroup(r: u32, p: u32) -> bool {
    let g = 65537 % p;
    let mut x = 1 % p;
    // The subgroup has at most p - 1 elements.
    for _ in 0..p {
        if x == r {
            return true;
        }
        x = x * g % p;
        if x == 1 % p {
            return x == r;
        }
    }
    false
}

/// Whether the modulus `n` (big-endian) carries the ROCA fingerprint.
pub fn vulnerable(n: &[u8]) -> bool {
    PRIMES.iter().all(|p| in_subgroup(residue(n, *p), *p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_of_65537_are_fingerprinted_and_their_neighbours_not() {
        // n = 65537^a mod M has the fingerprint by construction; a small
        // multiple-free example: 65537^5 itself (M is far larger).
        let mut n = vec![1u8];
        for _ in 0..5 {
            // n *= 65537, big-endian
            let mut carry = 0u64;
            for b in n.iter_mut().rev() {
                let v = u64::from(*b) * 65537 + carry;
                *b = (v & 0xff) as u8;
                carry = v >> 8;
            }
            while carry > 0 {
                n.insert(0, (carry & 0xff) as u8);
                carry >>= 8;
            }
        }
        assert!(vulnerable(&n));
        let last = n.len() - 1;
        n[last] ^= 2;
        assert!(!vulnerable(&n));
        assert!(!vulnerable(&[0xff; 256]));
    }
}
