//! Verification keys: built once from JWK components or a PEM, then used to
//! check signatures: RSA by this crate's verification-only `rsa` module,
//! ES256/ES384/ES512 by `ecdsa` (the p256/p384/p521 arithmetic with per-key
//! tables), EdDSA by `ed25519` (curve25519-dalek). The
//! caller has decoded the token and checked its header and claims; a key
//! only checks `signature` over `signing_input`.
#![forbid(unsafe_code)]

use std::fmt;

use crate::crypto::alg::{Alg, AlgSet, KeyFamily};
use crate::crypto::ecdsa::{P256Key, P384Key, P521Key};
use crate::crypto::ed25519;
use crate::crypto::host::{self, HostCrypto};
use crate::crypto::pem::{PemError, PemKey};
use crate::crypto::roca;
use crate::crypto::rsa::{self, RsaKey};

/// The smallest RSA modulus accepted (RFC 7518 section 3.3 and NIST).
pub const MIN_RSA_BITS: usize = 2048;

/// The largest RSA modulus accepted. A check costs about the square of the
/// size; 8,192 bits is four times the usual key and sixteen times its cost,
/// and no identity provider signs with more.
pub const MAX_RSA_BITS: usize = 8192;

/// The largest RSA public exponent accepted, in bits: BoringSSL's limit
/// (`kMaxExponentBits`), so that Envoy's host check and the wasm check
/// accept the same keys. 65537 has 17.
pub const MAX_RSA_EXPONENT_BITS: usize = 33;

/// Why a key could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    RsaTooSmall(usize),
    RsaTooLarge(usize),
    RsaExponentTooLarge(usize),
    /// The modulus has the ROCA fingerprint (CVE-2017-15361).
    RsaRoca,
    Invalid(&'static str),
    NotAllowed,
    Pem(PemError),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::RsaTooSmall(bits) => {
                write!(
                    f,
                    "RSA key of {bits} bits is under the {MIN_RSA_BITS}-bit minimum"
                )
            }
            KeyError::RsaTooLarge(bits) => {
                write!(
                    f,
                    "RSA key of {bits} bits is over the {MAX_RSA_BITS}-bit maximum"
                )
            }
            KeyError::RsaExponentTooLarge(bits) => write!(
                f,
                "RSA exponent of {bits} bits is over the {MAX_RSA_EXPONENT_BITS}-bit maximum"
            ),
            KeyError::RsaRoca => f.write_str(
                "RSA modulus has the ROCA fingerprint (CVE-2017-15361): its private key can be computed",
            ),
            KeyError::Invalid(what) => write!(f, "invalid key: {what}"),
            KeyError::NotAllowed => {
                f.write_str("key type matches no algorithm in allowed_algorithms")
            }
            KeyError::Pem(e) => write!(f, "not a usable PEM public key: {e}"),
        }
    }
}

/// Why a signature check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigError {
    /// The signature does not verify under this key.
    BadSignature,
    /// The key cannot be used with the token's algorithm.
    WrongAlgorithm,
}

/// One (algorithm, key) pair ready to verify.
enum Verifier {
    Es256(P256Key),
    Es384(P384Key),
    Es512(Box<P521Key>),
    EdDsa(Box<ed25519::VerifyingKey>),
}

/// A public key, prepared for every algorithm it may verify.
pub struct PublicKey {
    family: KeyFamily,
    algs: AlgSet,
    verifiers: Vec<(Alg, Verifier)>,
    /// RSA keys: prepared once, for every RSA algorithm in `algs`.
    rsa: Option<RsaKey>,
    /// DER SubjectPublicKeyInfo for host crypto (RSA and EC), built once.
    spki: Option<Vec<u8>>,
    /// EC coordinate length (32, 48, 66), for `r || s` to DER.
    coord_len: usize,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("family", &self.family)
            .field("algs", &self.algs.iter().map(Alg::name).collect::<Vec<_>>())
            .finish()
    }
}

fn bit_length(n: &[u8]) -> usize {
    match n.iter().position(|b| *b != 0) {
        None => 0,
        Some(i) => {
            let first = n.get(i).copied().unwrap_or(0);
            (n.len() - i) * 8 - first.leading_zeros() as usize
        }
    }
}

impl PublicKey {
    /// An RSA key from its modulus and exponent (big-endian), for the RSA
    /// algorithms in `algs`.
    pub fn rsa(n: &[u8], e: &[u8], algs: AlgSet) -> Result<PublicKey, KeyError> {
        let bits = bit_length(n);
        if bits < MIN_RSA_BITS {
            return Err(KeyError::RsaTooSmall(bits));
        }
        if bits > MAX_RSA_BITS {
            return Err(KeyError::RsaTooLarge(bits));
        }
        let e_bits = bit_length(e);
        if e_bits > MAX_RSA_EXPONENT_BITS {
            return Err(KeyError::RsaExponentTooLarge(e_bits));
        }
        if roca::vulnerable(n) {
            return Err(KeyError::RsaRoca);
        }
        let algs = algs.intersect(AlgSet::family(KeyFamily::Rsa));
        if algs.is_empty() {
            return Err(KeyError::NotAllowed);
        }
        let key =
            RsaKey::new(n, e).map_err(|_| KeyError::Invalid("RSA modulus or exponent refused"))?;
        Ok(PublicKey {
            family: KeyFamily::Rsa,
            algs,
            verifiers: Vec::new(),
            rsa: Some(key),
            spki: Some(host::spki_rsa(n, e)),
            coord_len: 0,
        })
    }

    /// An EC key from its SEC1 encoding (uncompressed `04 || x || y`).
    pub fn ec(family: KeyFamily, sec1: &[u8], algs: AlgSet) -> Result<PublicKey, KeyError> {
        let algs = algs.intersect(AlgSet::family(family));
        if algs.is_empty() {
            return Err(KeyError::NotAllowed);
        }
        let bad = KeyError::Invalid("EC point not on the curve");
        let (alg, v) = match family {
            KeyFamily::P256 => (
                Alg::ES256,
                Verifier::Es256(P256Key::from_sec1(sec1).ok_or(bad)?),
            ),
            KeyFamily::P384 => (
                Alg::ES384,
                Verifier::Es384(P384Key::from_sec1(sec1).ok_or(bad)?),
            ),
            KeyFamily::P521 => (
                Alg::ES512,
                Verifier::Es512(Box::new(P521Key::from_sec1(sec1).ok_or(bad)?)),
            ),
            _ => return Err(KeyError::Invalid("not an EC curve")),
        };
        let coord_len = sec1.len().saturating_sub(1) / 2;
        Ok(PublicKey {
            family,
            algs,
            verifiers: vec![(alg, v)],
            rsa: None,
            spki: host::spki_ec(coord_len, sec1),
            coord_len,
        })
    }

    /// An Ed25519 key from its 32 raw bytes.
    pub fn ed25519(raw: &[u8], algs: AlgSet) -> Result<PublicKey, KeyError> {
        let algs = algs.intersect(AlgSet::family(KeyFamily::Ed25519));
        if algs.is_empty() {
            return Err(KeyError::NotAllowed);
        }
        let key = ed25519::VerifyingKey::from_bytes(raw).map_err(|e| match e {
            ed25519::KeyRefusal::Length => KeyError::Invalid("Ed25519 key must be 32 bytes"),
            ed25519::KeyRefusal::Invalid | ed25519::KeyRefusal::Weak => {
                KeyError::Invalid("weak or invalid Ed25519 key")
            }
        })?;
        Ok(PublicKey {
            family: KeyFamily::Ed25519,
            algs,
            verifiers: vec![(Alg::EdDSA, Verifier::EdDsa(Box::new(key)))],
            rsa: None,
            spki: None,
            coord_len: 0,
        })
    }

    pub fn family(&self) -> KeyFamily {
        self.family
    }

    /// The algorithms this key may verify.
    pub fn algs(&self) -> AlgSet {
        self.algs
    }

    /// Checks a signature with the host's crypto when it can (RSA PKCS#1
    /// v1.5 and ECDSA keys, on a host that offers it): `None` when the host
    /// path does not apply or the host could not run the check, so the
    /// caller uses the wasm path.
    pub fn verify_on_host(
        &self,
        host: &dyn HostCrypto,
        alg: Alg,
        signing_input: &str,
        signature: &[u8],
    ) -> Option<Result<(), SigError>> {
        let hash = host::host_hash(alg)?;
        let spki = self.spki.as_deref()?;
        if !self.algs.contains(alg) {
            return Some(Err(SigError::WrongAlgorithm));
        }
        let der;
        let sig = if self.family == KeyFamily::Rsa {
            signature
        } else {
            match host::ecdsa_der(signature, self.coord_len) {
                Some(d) => {
                    der = d;
                    &der
                }
                None => return Some(Err(SigError::BadSignature)),
            }
        };
        let args = host::encode_args(hash, spki, sig, signing_input.as_bytes());
        match host.verify(&args) {
            Ok(true) => Some(Ok(())),
            Ok(false) => Some(Err(SigError::BadSignature)),
            Err(e) => {
                log::warn!("jwt_jwks: host signature check unavailable ({e}); using the wasm path");
                None
            }
        }
    }

    /// Checks `signature` (the decoded third part of a compact JWS) over
    /// `signing_input` (`header.payload`) for `alg`.
    pub fn verify(&self, alg: Alg, signing_input: &str, signature: &[u8]) -> Result<(), SigError> {
        if let Some(key) = &self.rsa {
            return verify_rsa(key, self.algs, alg, signing_input, signature);
        }
        let Some((_, v)) = self.verifiers.iter().find(|(a, _)| *a == alg) else {
            return Err(SigError::WrongAlgorithm);
        };
        let msg = signing_input.as_bytes();
        let ok = match v {
            Verifier::Es256(k) => k.verify(msg, signature),
            Verifier::Es384(k) => k.verify(msg, signature),
            Verifier::EdDsa(k) => k.verify(msg, signature),
            Verifier::Es512(k) => k.verify(msg, signature),
        };
        verified(ok)
    }
}

/// Checks `signature` over `signing_input` with an RSA key for one of the
/// RSA algorithms it serves.
fn verify_rsa(
    key: &RsaKey,
    algs: AlgSet,
    alg: Alg,
    signing_input: &str,
    signature: &[u8],
) -> Result<(), SigError> {
    if !algs.contains(alg) {
        return Err(SigError::WrongAlgorithm);
    }
    let msg = signing_input.as_bytes();
    let ok = match alg {
        Alg::RS256 => key.verify_pkcs1v15(rsa::Hash::Sha256, msg, signature),
        Alg::RS384 => key.verify_pkcs1v15(rsa::Hash::Sha384, msg, signature),
        Alg::RS512 => key.verify_pkcs1v15(rsa::Hash::Sha512, msg, signature),
        Alg::PS256 => key.verify_pss(rsa::Hash::Sha256, msg, signature),
        Alg::PS384 => key.verify_pss(rsa::Hash::Sha384, msg, signature),
        Alg::PS512 => key.verify_pss(rsa::Hash::Sha512, msg, signature),
        _ => return Err(SigError::WrongAlgorithm),
    };
    verified(ok)
}

fn verified(ok: bool) -> Result<(), SigError> {
    if ok {
        Ok(())
    } else {
        Err(SigError::BadSignature)
    }
}

/// The static `fallback_public_key`.
#[derive(Debug)]
pub struct FallbackKey {
    pub key: PublicKey,
}

impl FallbackKey {
    /// Parses a PEM SubjectPublicKeyInfo (or PKCS#1 RSA) public key.
    pub fn from_pem(pem: &str, allowed: AlgSet) -> Result<FallbackKey, KeyError> {
        let key = match crate::crypto::pem::parse(pem).map_err(KeyError::Pem)? {
            PemKey::Rsa { n, e } => PublicKey::rsa(&n, &e, allowed)?,
            PemKey::Ec { family, sec1 } => PublicKey::ec(family, &sec1, allowed)?,
            PemKey::Ed25519(raw) => PublicKey::ed25519(&raw, allowed)?,
        };
        Ok(FallbackKey { key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_length_ignores_leading_zeros() {
        assert_eq!(bit_length(&[0, 0, 1]), 1);
        assert_eq!(bit_length(&[0x80, 0]), 16);
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[0, 0x7f]), 7);
    }

    #[test]
    fn small_rsa_keys_are_refused() {
        let n = vec![0xffu8; 128]; // 1024 bits
        assert_eq!(
            PublicKey::rsa(&n, &[1, 0, 1], AlgSet::of(&[Alg::RS256])).unwrap_err(),
            KeyError::RsaTooSmall(1024)
        );
    }

    /// Issue 19, item 2: keys that cost 100-150x a normal check, or that
    /// Envoy's BoringSSL would refuse, are refused at load with the reason.
    #[test]
    fn oversized_rsa_moduli_and_exponents_are_refused() {
        let algs = AlgSet::of(&[Alg::RS256]);
        let mut n = vec![0xffu8; 1025]; // 8,200 bits
        assert_eq!(
            PublicKey::rsa(&n, &[1, 0, 1], algs).unwrap_err(),
            KeyError::RsaTooLarge(8200)
        );
        n.truncate(1024); // 8,192 bits: accepted
        assert!(PublicKey::rsa(&n, &[1, 0, 1], algs).is_ok());
        let n = vec![0xffu8; 256];
        // 2^33 - 1 (33 bits) is the largest exponent; 2^33 + 1 is refused.
        let e33 = [0x01, 0xff, 0xff, 0xff, 0xff];
        assert!(PublicKey::rsa(&n, &e33, algs).is_ok());
        let e34 = [0x02, 0x00, 0x00, 0x00, 0x01];
        let err = PublicKey::rsa(&n, &e34, algs).unwrap_err();
        assert_eq!(err, KeyError::RsaExponentTooLarge(34));
        assert!(err.to_string().contains("33-bit maximum"), "{err}");
        let e64 = [0xff; 8];
        assert_eq!(
            PublicKey::rsa(&n, &e64, algs).unwrap_err(),
            KeyError::RsaExponentTooLarge(64)
        );
    }

    #[test]
    fn keys_only_serve_allowed_algorithms_of_their_family() {
        let raw = [7u8; 32];
        // A valid-looking Ed25519 key is refused when EdDSA is not allowed.
        assert_eq!(
            PublicKey::ed25519(&raw, AlgSet::of(&[Alg::RS256])).unwrap_err(),
            KeyError::NotAllowed
        );
    }

    #[test]
    fn fallback_pems_written_by_other_encoders_load_and_verify() {
        use jwt_simple::prelude::*;
        let all = AlgSet::of(&Alg::ALL);
        let claims = || Claims::create(Duration::from_mins(5));
        let check = |pem: &str, family: KeyFamily, alg: Alg, token: String| {
            let k = FallbackKey::from_pem(pem, all).unwrap().key;
            assert_eq!(k.family(), family);
            let (input, sig) = token.rsplit_once('.').unwrap();
            let sig =
                base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig)
                    .unwrap();
            k.verify(alg, input, &sig).unwrap();
        };
        let rsa = RS256KeyPair::generate(2048).unwrap();
        let t = rsa.sign(claims()).unwrap();
        check(
            &rsa.public_key().to_pem().unwrap(),
            KeyFamily::Rsa,
            Alg::RS256,
            t,
        );
        let p256 = ES256KeyPair::generate();
        let t = p256.sign(claims()).unwrap();
        check(
            &p256.public_key().to_pem().unwrap(),
            KeyFamily::P256,
            Alg::ES256,
            t,
        );
        let p384 = ES384KeyPair::generate();
        let t = p384.sign(claims()).unwrap();
        check(
            &p384.public_key().to_pem().unwrap(),
            KeyFamily::P384,
            Alg::ES384,
            t,
        );
        let ed = Ed25519KeyPair::generate();
        let t = ed.sign(claims()).unwrap();
        check(&ed.public_key().to_pem(), KeyFamily::Ed25519, Alg::EdDSA, t);
    }

    #[test]
    fn ec_keys_off_the_curve_are_refused() {
        // The P-256 generator, then the same with y changed.
        let mut sec1 = vec![4u8];
        sec1.extend_from_slice(&[
            0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5, 0x63, 0xa4,
            0x40, 0xf2, 0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45,
            0xd8, 0x98, 0xc2, 0x96, 0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a, 0x7f, 0x9b, 0x8e, 0xe7,
            0xeb, 0x4a, 0x7c, 0x0f, 0x9e, 0x16, 0x2b, 0xce, 0x33, 0x57, 0x6b, 0x31, 0x5e, 0xce,
            0xcb, 0xb6, 0x40, 0x68, 0x37, 0xbf, 0x51, 0xf5,
        ]);
        let es256 = AlgSet::of(&[Alg::ES256]);
        let key = PublicKey::ec(KeyFamily::P256, &sec1, es256).unwrap();
        assert_eq!(
            key.verify(Alg::ES256, "a.b", &[1u8; 64]),
            Err(SigError::BadSignature)
        );
        assert_eq!(
            key.verify(Alg::ES384, "a.b", &[1u8; 96]),
            Err(SigError::WrongAlgorithm)
        );
        sec1[64] ^= 1;
        assert_eq!(
            PublicKey::ec(KeyFamily::P256, &sec1, es256).unwrap_err(),
            KeyError::Invalid("EC point not on the curve")
        );
    }

    #[test]
    fn garbage_pem_is_refused() {
        assert_eq!(
            FallbackKey::from_pem(
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
                AlgSet::of(&Alg::ALL)
            )
            .unwrap_err(),
            KeyError::Pem(PemError::Der("SubjectPublicKeyInfo"))
        );
    }
}
