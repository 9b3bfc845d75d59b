//! Signature checks by the host: Envoy's `verify_signature` foreign
//! function (BoringSSL). It takes a protobuf `VerifySignatureArguments
//! {1: hash_function, 2: public_key (DER SubjectPublicKeyInfo), 3: signature,
//! 4: text}` and answers `VerifySignatureResult {1: result, 2: error}`. RSA is
//! PKCS#1 v1.5 only there (PS* stay on the wasm path); ECDSA signatures must
//! be DER, so JOSE's fixed-size `r || s` is converted. Everything here is
//! encoding, tested on the host; the call itself is in the glue.
#![forbid(unsafe_code)]

use crate::crypto::alg::Alg;

/// The host's verifier, as the engine needs it.
pub trait HostCrypto {
    /// `Ok(valid)`, or `Err` when the host could not run the check (the
    /// caller then uses the wasm path).
    fn verify(&self, args: &[u8]) -> Result<bool, String>;
}

/// The hash name Envoy expects, for the algorithms the host can check.
pub fn host_hash(alg: Alg) -> Option<&'static str> {
    match alg {
        Alg::RS256 | Alg::ES256 => Some("sha256"),
        Alg::RS384 | Alg::ES384 => Some("sha384"),
        Alg::RS512 | Alg::ES512 => Some("sha512"),
        _ => None,
    }
}

fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    der_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// A DER INTEGER from unsigned big-endian bytes (minimal, non-negative).
fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().take_while(|b| **b == 0).count();
    let trimmed = bytes.get(start..).unwrap_or_default();
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    der(0x02, &content)
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    der(0x30, &parts.concat())
}

fn bit_string(content: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(content.len() + 1);
    c.push(0); // no unused bits
    c.extend_from_slice(content);
    der(0x03, &c)
}

const OID_RSA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
const OID_EC: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
const NULL: &[u8] = &[0x05, 0x00];

/// SubjectPublicKeyInfo of an RSA key.
pub fn spki_rsa(n: &[u8], e: &[u8]) -> Vec<u8> {
    let key = seq(&[&der_uint(n), &der_uint(e)]);
    seq(&[&seq(&[OID_RSA, NULL]), &bit_string(&key)])
}

/// SubjectPublicKeyInfo of an EC key (`sec1` is the uncompressed point);
/// `coord_len` is 32, 48 or 66.
pub fn spki_ec(coord_len: usize, sec1: &[u8]) -> Option<Vec<u8>> {
    let curve = match coord_len {
        32 => OID_P256,
        48 => OID_P384,
        66 => OID_P521,
        _ => return None,
    };
    Some(seq(&[&seq(&[OID_EC, curve]), &bit_string(sec1)]))
}

/// JOSE `r || s` to a DER ECDSA-Sig-Value; `None` if the length is wrong.
pub fn ecdsa_der(raw: &[u8], coord_len: usize) -> Option<Vec<u8>> {
    if raw.len() != 2 * coord_len {
        return None;
    }
    let (r, s) = raw.split_at(coord_len);
    Some(seq(&[&der_uint(r), &der_uint(s)]))
}

fn varint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
    out.push((number << 3) | 2);
    varint(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// The serialized `VerifySignatureArguments`.
pub fn encode_args(hash: &str, spki: &[u8], signature: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(spki.len() + signature.len() + text.len() + 24);
    field(&mut out, 1, hash.as_bytes());
    field(&mut out, 2, spki);
    field(&mut out, 3, signature);
    field(&mut out, 4, text);
    out
}

fn read_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Parses a `VerifySignatureResult`: `(result, error)`. A missing `result`
/// is `false` (proto3 default); a malformed message is `None`.
pub fn decode_result(bytes: &[u8]) -> Option<(bool, String)> {
    let (mut pos, mut result, mut error) = (0usize, false, String::new());
    while pos < bytes.len() {
        let key = read_varint(bytes, &mut pos)?;
        match (key >> 3, key & 7) {
            (1, 0) => result = read_varint(bytes, &mut pos)? != 0,
            (_, 0) => {
                read_varint(bytes, &mut pos)?;
            }
            (n, 2) => {
                let len = usize::try_from(read_varint(bytes, &mut pos)?).ok()?;
                let end = pos.checked_add(len)?;
                let data = bytes.get(pos..end)?;
                if n == 2 {
                    error = String::from_utf8_lossy(data).into_owned();
                }
                pos = end;
            }
            _ => return None,
        }
    }
    Some((result, error))
}

/// What a `VerifySignatureResult` means. Envoy answers a signature that
/// does not verify with `result: false` and the error
/// `Failed to verify digest. Error code: 0` (`EVP_DigestVerify` returned 0);
/// every other error (an unsupported hash, a key BoringSSL will not set up,
/// an internal failure) means the host could not judge, and the caller
/// checks in wasm instead, so that Envoy and Kong give the same verdict.
pub fn verdict(result: bool, error: &str) -> Result<bool, String> {
    if result {
        return Ok(true);
    }
    if error.is_empty() || error == "Failed to verify digest. Error code: 0" {
        return Ok(false);
    }
    Err(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_simple::prelude::*;

    #[test]
    fn rsa_spki_round_trips_through_a_der_parser() {
        let kp = RS256KeyPair::generate(2048).unwrap();
        let c = kp.public_key().to_components();
        let der = spki_rsa(&c.n, &c.e);
        let back = RS256PublicKey::from_der(&der).unwrap().to_components();
        assert_eq!((back.n, back.e), (c.n, c.e));
        assert_eq!(
            der,
            kp.public_key().to_der().unwrap(),
            "the same bytes jwt-simple writes"
        );
    }

    #[test]
    fn ec_spki_round_trips_for_every_curve() {
        let p256 = ES256KeyPair::generate().public_key();
        let point = p256.public_key().to_bytes_uncompressed();
        let der = spki_ec(32, &point).unwrap();
        assert_eq!(
            ES256PublicKey::from_der(&der)
                .unwrap()
                .public_key()
                .to_bytes_uncompressed(),
            point
        );
        let p384 = ES384KeyPair::generate().public_key();
        let point = p384.public_key().to_bytes_uncompressed();
        let der = spki_ec(48, &point).unwrap();
        assert_eq!(
            ES384PublicKey::from_der(&der)
                .unwrap()
                .public_key()
                .to_bytes_uncompressed(),
            point
        );
        let sk = p521::ecdsa::SigningKey::from_slice(&[7u8; 66][..]).ok();
        let sk = sk.unwrap_or_else(|| {
            p521::ecdsa::SigningKey::from_slice(&[[0u8; 2].as_slice(), &[7u8; 64]].concat())
                .unwrap()
        });
        let point = sk.verifying_key().to_sec1_point(false);
        let der = spki_ec(66, point.as_bytes()).unwrap();
        use p521::pkcs8::DecodePublicKey;
        let back = p521::ecdsa::VerifyingKey::from_public_key_der(&der).unwrap();
        assert_eq!(back.to_sec1_point(false).as_bytes(), point.as_bytes());
        assert_eq!(spki_ec(40, &point.as_bytes()[..81]), None);
    }

    #[test]
    fn ecdsa_signatures_convert_to_minimal_der() {
        use p256::ecdsa::signature::Signer;
        let sk = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
        for msg in [&b"a"[..], b"bb", b"ccc", b"dddd", b"eeeee"] {
            let sig: p256::ecdsa::Signature = sk.sign(msg);
            let der = ecdsa_der(&sig.to_bytes(), 32).unwrap();
            assert_eq!(der, sig.to_der().as_bytes(), "same DER as the p256 crate");
        }
        // High bits set and leading zeros.
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80;
        raw[63] = 1;
        let der = ecdsa_der(&raw, 32).unwrap();
        assert_eq!(&der[..4], &[0x30, 0x26, 0x02, 0x21]);
        assert_eq!(&der[der.len() - 3..], &[0x02, 0x01, 0x01]);
        assert_eq!(ecdsa_der(&raw[..63], 32), None);
    }

    #[test]
    fn arguments_and_results_follow_the_protobuf_wire_format() {
        let args = encode_args("sha256", &[1, 2], &[3; 200], b"t");
        assert_eq!(&args[..8], &[0x0a, 6, b's', b'h', b'a', b'2', b'5', b'6']);
        assert_eq!(&args[8..12], &[0x12, 2, 1, 2]);
        assert_eq!(
            &args[12..15],
            &[0x1a, 0xc8, 0x01],
            "length 200 as a two-byte varint"
        );
        assert_eq!(&args[args.len() - 3..], &[0x22, 1, b't']);
        assert_eq!(decode_result(&[0x08, 1]), Some((true, String::new())));
        assert_eq!(decode_result(&[]), Some((false, String::new())));
        assert_eq!(
            decode_result(&[0x12, 2, b'n', b'o']),
            Some((false, "no".into()))
        );
        assert_eq!(
            decode_result(&[0x08, 0x01, 0x12, 5, b'x']),
            None,
            "truncated"
        );
        assert_eq!(decode_result(&[0x0b]), None, "unknown wire type");
        assert_eq!(host_hash(Alg::PS256), None);
        assert_eq!(host_hash(Alg::ES512), Some("sha512"));
    }

    /// Issue 19, item 7: an error from the host is not a bad signature.
    #[test]
    fn host_errors_other_than_a_mismatch_fall_back_to_wasm() {
        assert_eq!(verdict(true, ""), Ok(true));
        assert_eq!(verdict(false, ""), Ok(false));
        assert_eq!(
            verdict(false, "Failed to verify digest. Error code: 0"),
            Ok(false)
        );
        for e in [
            "Failed to initialize digest verify.",
            "sha3 is not supported.",
            "Failed to verify digest. Error code: -1",
        ] {
            assert_eq!(verdict(false, e), Err(e.to_string()));
        }
    }
}
