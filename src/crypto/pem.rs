//! Public keys in PEM: a `PUBLIC KEY` (X.509 SubjectPublicKeyInfo: RSA, EC
//! P-256/P-384/P-521 with an uncompressed point, Ed25519) or an
//! `RSA PUBLIC KEY` (PKCS#1). Only what `fallback_public_key` needs: a small
//! strict DER reader, no certificate, no private key, no encryption.
#![forbid(unsafe_code)]

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::crypto::alg::KeyFamily;

/// The key a PEM holds, in the form the key constructors take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemKey {
    /// Modulus and exponent, big-endian, without sign bytes.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An uncompressed SEC1 point (`04 || x || y`).
    Ec { family: KeyFamily, sec1: Vec<u8> },
    /// The 32 raw bytes.
    Ed25519(Vec<u8>),
}

/// Why a PEM was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemError {
    /// No `-----BEGIN ...-----` / `-----END ...-----` pair.
    NoArmor,
    /// A label other than `PUBLIC KEY` or `RSA PUBLIC KEY`.
    Label(String),
    /// The body is not base64.
    Base64,
    /// The DER does not have the expected structure.
    Der(&'static str),
    /// A well-formed key of a type or curve not supported.
    Unsupported(&'static str),
}

impl fmt::Display for PemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemError::NoArmor => f.write_str("no -----BEGIN/END----- lines"),
            PemError::Label(l) if l.contains("PRIVATE") => {
                write!(f, "a {l}: give the public key")
            }
            PemError::Label(l) => write!(
                f,
                "a {l}: expected PUBLIC KEY (SubjectPublicKeyInfo) or RSA PUBLIC KEY"
            ),
            PemError::Base64 => f.write_str("the body is not base64"),
            PemError::Der(what) => write!(f, "malformed DER: {what}"),
            PemError::Unsupported(what) => write!(f, "unsupported key: {what}"),
        }
    }
}

const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const NULL: u8 = 0x05;
const OID: u8 = 0x06;

/// A cursor over DER bytes.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Der<'a> {
        Der { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The content of the next element, which must have tag `tag`.
    fn take(&mut self, tag: u8, what: &'static str) -> Result<&'a [u8], PemError> {
        let bad = PemError::Der(what);
        let (&t, rest) = self.rest.split_first().ok_or(bad.clone())?;
        if t != tag {
            return Err(bad);
        }
        let (&first, mut rest) = rest.split_first().ok_or(bad.clone())?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 {
                return Err(bad);
            }
            let (digits, after) = rest.split_at_checked(count).ok_or(bad.clone())?;
            rest = after;
            let len = digits
                .iter()
                .fold(0usize, |acc, d| (acc << 8) | usize::from(*d));
            // DER: the shortest form only (no leading zero octet, and the
            // long form only from 128 on).
            if digits.first() == Some(&0) || len < 0x80 {
                return Err(PemError::Der("non-minimal length"));
            }
            len
        };
        let (content, after) = rest.split_at_checked(len).ok_or(bad)?;
        self.rest = after;
        Ok(content)
    }

    /// A non-negative INTEGER as big-endian magnitude bytes.
    fn uint(&mut self, what: &'static str) -> Result<Vec<u8>, PemError> {
        let c = self.take(INTEGER, what)?;
        match c.first() {
            None => Err(PemError::Der(what)),
            Some(b) if b & 0x80 != 0 => Err(PemError::Der("negative integer")),
            // DER: no leading zero octet unless the next one has its top bit.
            Some(0) if c.get(1).is_some_and(|b| b & 0x80 == 0) => {
                Err(PemError::Der("non-minimal integer"))
            }
            Some(_) => {
                let skip = c.iter().take_while(|b| **b == 0).count();
                Ok(c.get(skip..).unwrap_or_default().to_vec())
            }
        }
    }

    fn done(&self, what: &'static str) -> Result<(), PemError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(PemError::Der(what))
        }
    }
}

/// `(label, DER)` of the first PEM block in `text`.
fn unarmor(text: &str) -> Result<(String, Vec<u8>), PemError> {
    let text = text.trim();
    let begin = text.find("-----BEGIN ").ok_or(PemError::NoArmor)?;
    let after_begin = text.get(begin + 11..).ok_or(PemError::NoArmor)?;
    let label_end = after_begin.find("-----").ok_or(PemError::NoArmor)?;
    let label = after_begin.get(..label_end).unwrap_or_default().to_string();
    let body_and_end = after_begin.get(label_end + 5..).unwrap_or_default();
    let end_line = format!("-----END {label}-----");
    let end = body_and_end.find(&end_line).ok_or(PemError::NoArmor)?;
    let body: String = body_and_end
        .get(..end)
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = STANDARD.decode(body).map_err(|_| PemError::Base64)?;
    Ok((label, der))
}

fn pkcs1(der: &[u8]) -> Result<PemKey, PemError> {
    let mut outer = Der::new(der);
    let mut key = Der::new(outer.take(SEQUENCE, "RSAPublicKey")?);
    outer.done("data after the key")?;
    let n = key.uint("RSA modulus")?;
    let e = key.uint("RSA exponent")?;
    key.done("data after the RSA exponent")?;
    Ok(PemKey::Rsa { n, e })
}

fn spki(der: &[u8]) -> Result<PemKey, PemError> {
    let mut outer = Der::new(der);
    let mut info = Der::new(outer.take(SEQUENCE, "SubjectPublicKeyInfo")?);
    outer.done("data after the key")?;
    let mut alg = Der::new(info.take(SEQUENCE, "AlgorithmIdentifier")?);
    let bits = info.take(BIT_STRING, "subjectPublicKey")?;
    info.done("data after subjectPublicKey")?;
    let key = match bits.split_first() {
        Some((0, key)) => key,
        _ => return Err(PemError::Der("subjectPublicKey")),
    };
    let oid = alg.take(OID, "algorithm")?;
    if oid == OID_RSA {
        // Parameters NULL, or absent.
        if !alg.is_empty() {
            alg.take(NULL, "RSA parameters")?;
        }
        alg.done("RSA parameters")?;
        return pkcs1(key);
    }
    if oid == OID_ED25519 {
        alg.done("Ed25519 parameters")?;
        return Ok(PemKey::Ed25519(key.to_vec()));
    }
    if oid != OID_EC {
        return Err(PemError::Unsupported(
            "not RSA, EC P-256/P-384/P-521 or Ed25519",
        ));
    }
    let curve = alg.take(OID, "named curve")?;
    alg.done("EC parameters")?;
    let (family, coord) = match curve {
        c if c == OID_P256 => (KeyFamily::P256, 32),
        c if c == OID_P384 => (KeyFamily::P384, 48),
        c if c == OID_P521 => (KeyFamily::P521, 66),
        _ => return Err(PemError::Unsupported("EC curve other than P-256/384/521")),
    };
    match key.first() {
        Some(4) if key.len() == 1 + 2 * coord => Ok(PemKey::Ec {
            family,
            sec1: key.to_vec(),
        }),
        Some(2 | 3) => Err(PemError::Unsupported("compressed EC point")),
        _ => Err(PemError::Der("EC point")),
    }
}

/// Parses the first PEM block of `text`.
pub fn parse(text: &str) -> Result<PemKey, PemError> {
    let (label, der) = unarmor(text)?;
    match label.as_str() {
        "PUBLIC KEY" => spki(&der),
        "RSA PUBLIC KEY" => pkcs1(&der),
        _ => Err(PemError::Label(label)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::host::{spki_ec, spki_rsa};

    fn armor(label: &str, der: &[u8]) -> String {
        let b = STANDARD.encode(der);
        let lines: Vec<&str> = b
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    fn modulus() -> Vec<u8> {
        (0..256).map(|i| (i as u8) | 0x81).collect()
    }

    #[test]
    fn rsa_spki_and_pkcs1_give_the_components() {
        let n = modulus();
        let der = spki_rsa(&n, &[1, 0, 1]);
        let want = PemKey::Rsa {
            n: n.clone(),
            e: vec![1, 0, 1],
        };
        assert_eq!(parse(&armor("PUBLIC KEY", &der)).unwrap(), want);
        // PKCS#1 is the BIT STRING's content (after the unused-bits byte).
        let pkcs1_der = &der[der.len() - 270..];
        assert_eq!(pkcs1_der[0], 0x30);
        assert_eq!(parse(&armor("RSA PUBLIC KEY", pkcs1_der)).unwrap(), want);
        // Text around the block is ignored.
        let noisy = format!("key:\n{}trailing", armor("PUBLIC KEY", &der));
        assert_eq!(parse(&noisy).unwrap(), want);
    }

    #[test]
    fn ec_points_and_ed25519_keys() {
        for (coord, family) in [
            (32, KeyFamily::P256),
            (48, KeyFamily::P384),
            (66, KeyFamily::P521),
        ] {
            let mut sec1 = vec![4u8];
            sec1.extend((0..2 * coord).map(|i| i as u8));
            let der = spki_ec(coord, &sec1).unwrap();
            assert_eq!(
                parse(&armor("PUBLIC KEY", &der)).unwrap(),
                PemKey::Ec { family, sec1 }
            );
        }
        let raw = [9u8; 32];
        let mut der = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0,
        ];
        der.extend_from_slice(&raw);
        assert_eq!(
            parse(&armor("PUBLIC KEY", &der)).unwrap(),
            PemKey::Ed25519(raw.to_vec())
        );
    }

    #[test]
    fn malformed_and_unsupported_keys_are_refused_with_a_reason() {
        let der = spki_rsa(&modulus(), &[1, 0, 1]);
        // Truncated, or with bytes after the key.
        let cut = armor("PUBLIC KEY", &der[..der.len() - 1]);
        assert!(matches!(parse(&cut), Err(PemError::Der(_))));
        let mut long = der.clone();
        long.push(0);
        assert_eq!(
            parse(&armor("PUBLIC KEY", &long)),
            Err(PemError::Der("data after the key"))
        );
        // A private key, a certificate, no armour, bad base64.
        let e = parse(&armor("PRIVATE KEY", &der)).unwrap_err();
        assert!(e.to_string().contains("give the public key"), "{e}");
        assert!(matches!(
            parse(&armor("CERTIFICATE", &der)),
            Err(PemError::Label(_))
        ));
        assert_eq!(parse("MIIB"), Err(PemError::NoArmor));
        assert_eq!(
            parse("-----BEGIN PUBLIC KEY-----\n@@@\n-----END PUBLIC KEY-----"),
            Err(PemError::Base64)
        );
        // A compressed point and an unknown curve.
        let mut compressed = vec![0x02u8];
        compressed.extend([1u8; 32]);
        let mut c = spki_ec(32, &[4u8; 65]).unwrap();
        let at = c.len() - 65;
        c.truncate(at - 3);
        c.extend([0x03, 34, 0]);
        c.extend(&compressed);
        c[1] = (c.len() - 2) as u8;
        assert_eq!(
            parse(&armor("PUBLIC KEY", &c)),
            Err(PemError::Unsupported("compressed EC point"))
        );
        let mut other = spki_ec(32, &[4u8; 65]).unwrap();
        let pos = other
            .windows(3)
            .position(|w| w == [0x03, 0x01, 0x07])
            .unwrap();
        other[pos + 2] = 0x08;
        assert_eq!(
            parse(&armor("PUBLIC KEY", &other)),
            Err(PemError::Unsupported("EC curve other than P-256/384/521"))
        );
        // A negative modulus.
        let mut neg = der.clone();
        let p = neg
            .windows(4)
            .position(|w| w == [0x02, 0x82, 0x01, 0x01])
            .unwrap();
        neg[p + 4] = 0x80;
        assert_eq!(
            parse(&armor("PUBLIC KEY", &neg)),
            Err(PemError::Der("negative integer"))
        );
    }

    /// Issue 19, item 9: only DER's one encoding is read (no BER leniency),
    /// so a key has one accepted byte form.
    #[test]
    fn non_minimal_lengths_and_integers_are_refused() {
        let n = modulus();
        // PKCS#1: SEQUENCE { INTEGER n, INTEGER e } with n's leading 0x00.
        let mut int_n = vec![0x02, 0x82, 0x01, 0x01, 0x00];
        int_n.extend_from_slice(&n);
        let int_e = [0x02, 0x03, 0x01, 0x00, 0x01];
        let body: Vec<u8> = [int_n.clone(), int_e.to_vec()].concat();
        let mut good = vec![0x30, 0x82];
        good.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        good.extend_from_slice(&body);
        assert!(parse(&armor("RSA PUBLIC KEY", &good)).is_ok());
        // The same with e written 00 01 00 01 (a leading zero it does not need).
        let padded_e = [0x02, 0x04, 0x00, 0x01, 0x00, 0x01];
        let body2: Vec<u8> = [int_n, padded_e.to_vec()].concat();
        let mut bad = vec![0x30, 0x82];
        bad.extend_from_slice(&u16::try_from(body2.len()).unwrap().to_be_bytes());
        bad.extend_from_slice(&body2);
        assert_eq!(
            parse(&armor("RSA PUBLIC KEY", &bad)),
            Err(PemError::Der("non-minimal integer"))
        );
        // A length in four octets where two do.
        let mut long = vec![0x30, 0x84, 0x00, 0x00];
        long.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        long.extend_from_slice(&body);
        assert_eq!(
            parse(&armor("RSA PUBLIC KEY", &long)),
            Err(PemError::Der("non-minimal length"))
        );
        // A short length in the long form (0x81 0x05 instead of 0x05).
        let short_long = [0x30, 0x81, 0x05, 0x02, 0x01, 0x01, 0x02, 0x00];
        assert_eq!(
            parse(&armor("RSA PUBLIC KEY", &short_long)),
            Err(PemError::Der("non-minimal length"))
        );
    }
}
