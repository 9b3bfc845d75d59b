//! Parsing a JWKS document into verification keys, and selecting keys by
//! `kid` and `alg`. One bad key never spoils the others.
#![forbid(unsafe_code)]

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use crate::crypto::alg::{Alg, AlgSet, KeyFamily};
use crate::crypto::key::PublicKey;

/// A key that passed every check, with the JWK it came from (kept so the
/// accepted set can be shared with other workers and re-parsed there).
#[derive(Debug)]
pub struct KeyEntry {
    pub kid: Option<String>,
    pub key: PublicKey,
    pub jwk: Value,
}

/// A key left out, and why (shown in `cache/info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub kid: Option<String>,
    pub reason: String,
}

/// Why a whole document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    NotJson,
    NoKeysArray,
    NoUsableKeys(usize),
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::NotJson => f.write_str("JWKS is not valid JSON"),
            JwksError::NoKeysArray => f.write_str("JWKS has no \"keys\" array"),
            JwksError::NoUsableKeys(n) => {
                write!(f, "JWKS has no usable signing key ({n} keys skipped)")
            }
        }
    }
}

/// The usable keys of one JWKS, in document order.
#[derive(Debug, Default)]
pub struct KeySet {
    pub entries: Vec<KeyEntry>,
}

/// The result of parsing: the keys and what was skipped.
#[derive(Debug, Default)]
pub struct Parsed {
    pub set: KeySet,
    pub skipped: Vec<Skipped>,
}

impl KeySet {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn find(&self, kid: &str) -> Option<&KeyEntry> {
        self.entries.iter().find(|e| e.kid.as_deref() == Some(kid))
    }

    /// Keys that may verify `alg`, in document order.
    pub fn for_alg(&self, alg: Alg) -> impl Iterator<Item = &KeyEntry> {
        self.entries
            .iter()
            .filter(move |e| e.key.algs().contains(alg))
    }

    pub fn kids(&self) -> Vec<String> {
        self.entries.iter().filter_map(|e| e.kid.clone()).collect()
    }

    /// The accepted JWKs as a JWKS document.
    pub fn to_document(&self) -> Value {
        Value::Object(
            [(
                "keys".to_string(),
                Value::Array(self.entries.iter().map(|e| e.jwk.clone()).collect()),
            )]
            .into_iter()
            .collect(),
        )
    }
}

fn field<'a>(jwk: &'a Value, name: &str) -> Option<&'a str> {
    jwk.get(name).and_then(Value::as_str)
}

fn b64_field(jwk: &Value, name: &str) -> Result<Vec<u8>, String> {
    let s = field(jwk, name).ok_or_else(|| format!("missing \"{name}\""))?;
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| format!("\"{name}\" is not base64url"))
}

fn fixed(jwk: &Value, name: &str, len: usize) -> Result<Vec<u8>, String> {
    let v = b64_field(jwk, name)?;
    if v.len() != len {
        return Err(format!("\"{name}\" must be {len} bytes"));
    }
    Ok(v)
}

/// How a JWKS is read.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub allowed: AlgSet,
    /// Keys kept, the first ones in document order.
    pub max_keys: usize,
    /// Skip a JWK without `alg` (`require_jwk_alg`), instead of letting it
    /// serve every allowed algorithm of its type.
    pub require_alg: bool,
}

/// Builds one key, or says why not.
fn build_key(jwk: &Value, allowed: AlgSet, require_alg: bool) -> Result<PublicKey, String> {
    if !jwk.is_object() {
        return Err("not a JSON object".into());
    }
    if require_alg && matches!(jwk.get("alg"), None | Some(Value::Null)) {
        return Err("no \"alg\" (require_jwk_alg)".into());
    }
    if let Some(u) = jwk.get("use") {
        if u.as_str() != Some("sig") {
            return Err("\"use\" is not \"sig\"".into());
        }
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|a| a.iter().any(|o| o.as_str() == Some("verify")));
        if !verifies {
            return Err("\"key_ops\" does not include \"verify\"".into());
        }
    }
    let kty = field(jwk, "kty").ok_or("missing \"kty\"")?;
    let family = match (kty, field(jwk, "crv")) {
        ("RSA", _) => KeyFamily::Rsa,
        ("EC", Some("P-256")) => KeyFamily::P256,
        ("EC", Some("P-384")) => KeyFamily::P384,
        ("EC", Some("P-521")) => KeyFamily::P521,
        ("OKP", Some("Ed25519")) => KeyFamily::Ed25519,
        ("EC", _) | ("OKP", _) => return Err("unsupported \"crv\"".into()),
        _ => return Err(format!("unsupported \"kty\" {kty:?}")),
    };
    let algs = match jwk.get("alg") {
        None | Some(Value::Null) => allowed.intersect(AlgSet::family(family)),
        Some(a) => {
            let name = a.as_str().ok_or("\"alg\" is not a string")?;
            let alg = Alg::parse(name).ok_or_else(|| format!("unsupported \"alg\" {name:?}"))?;
            if alg.family() != family {
                return Err(format!("\"alg\" {name} does not match the key type"));
            }
            if !allowed.contains(alg) {
                return Err(format!("\"alg\" {name} is not in allowed_algorithms"));
            }
            AlgSet::of(&[alg])
        }
    };
    if algs.is_empty() {
        return Err("key type matches no algorithm in allowed_algorithms".into());
    }
    let key = match family {
        KeyFamily::Rsa => PublicKey::rsa(&b64_field(jwk, "n")?, &b64_field(jwk, "e")?, algs),
        KeyFamily::Ed25519 => PublicKey::ed25519(&fixed(jwk, "x", 32)?, algs),
        ec => {
            let len = match ec {
                KeyFamily::P256 => 32,
                KeyFamily::P384 => 48,
                _ => 66,
            };
            let mut sec1 = Vec::with_capacity(1 + 2 * len);
            sec1.push(4);
            sec1.extend(fixed(jwk, "x", len)?);
            sec1.extend(fixed(jwk, "y", len)?);
            PublicKey::ec(ec, &sec1, algs)
        }
    };
    key.map_err(|e| e.to_string())
}

/// Parses a JWKS. Keys that cannot be used are skipped with a reason; a
/// `kid` that appears on more than one usable key is refused (every copy),
/// so a token can never be verified by "the other" key of that id; at most
/// `max_keys` keys are kept, the first ones in document order.
pub fn parse(bytes: &[u8], allowed: AlgSet, max_keys: usize) -> Result<Parsed, JwksError> {
    parse_with(
        bytes,
        Rules {
            allowed,
            max_keys,
            require_alg: false,
        },
    )
}

/// [`parse`] with every rule spelled out.
pub fn parse_with(bytes: &[u8], rules: Rules) -> Result<Parsed, JwksError> {
    let Rules {
        allowed,
        max_keys,
        require_alg,
    } = rules;
    let doc: Value = serde_json::from_slice(bytes).map_err(|_| JwksError::NotJson)?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(JwksError::NoKeysArray)?;

    let mut built: Vec<(Option<String>, Result<PublicKey, String>, &Value)> = keys
        .iter()
        .map(|jwk| {
            let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_string);
            (kid, build_key(jwk, allowed, require_alg), jwk)
        })
        .collect();

    // Duplicate kids among usable keys: refuse every copy.
    let usable_kids: Vec<String> = built
        .iter()
        .filter(|(_, k, _)| k.is_ok())
        .filter_map(|(kid, _, _)| kid.clone())
        .collect();
    for (kid, key, _) in built.iter_mut() {
        if let (Some(k), Ok(_)) = (kid.as_deref(), &*key) {
            if usable_kids.iter().filter(|x| x.as_str() == k).count() > 1 {
                *key = Err("\"kid\" appears more than once in the JWKS".into());
            }
        }
    }

    let mut parsed = Parsed::default();
    for (kid, key, jwk) in built {
        match key {
            Ok(key) if parsed.set.entries.len() < max_keys => parsed.set.entries.push(KeyEntry {
                kid,
                key,
                jwk: jwk.clone(),
            }),
            Ok(_) => parsed.skipped.push(Skipped {
                kid,
                reason: format!("over max_cache_size ({max_keys})"),
            }),
            Err(reason) => parsed.skipped.push(Skipped { kid, reason }),
        }
    }
    if parsed.set.is_empty() {
        return Err(JwksError::NoUsableKeys(parsed.skipped.len()));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A 2048-bit modulus (from RFC 7515 appendix A.2) and an RFC 8037 Ed25519 key.
    pub const RSA_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn all() -> AlgSet {
        AlgSet::of(&Alg::ALL)
    }

    fn rsa(kid: &str, extra: &str) -> String {
        format!(r#"{{"kty":"RSA","kid":"{kid}","n":"{RSA_N}","e":"AQAB"{extra}}}"#)
    }

    fn doc(keys: &[String]) -> Vec<u8> {
        format!(r#"{{"keys":[{}]}}"#, keys.join(",")).into_bytes()
    }

    #[test]
    fn rsa_key_without_alg_serves_every_allowed_rsa_alg() {
        let p = parse(
            &doc(&[rsa("r1", "")]),
            AlgSet::of(&[Alg::RS256, Alg::PS256, Alg::ES256]),
            10,
        )
        .unwrap();
        let e = p.set.find("r1").unwrap();
        assert!(e.key.algs().contains(Alg::RS256) && e.key.algs().contains(Alg::PS256));
        assert!(!e.key.algs().contains(Alg::ES256));
        assert_eq!(p.set.for_alg(Alg::PS256).count(), 1);
        assert_eq!(p.set.for_alg(Alg::ES256).count(), 0);
    }

    #[test]
    fn alg_must_match_key_type_and_be_allowed() {
        let p = parse(
            &doc(&[
                rsa("a", r#","alg":"ES256""#),
                rsa("b", r#","alg":"HS256""#),
                rsa("c", r#","alg":"RS384""#),
                rsa("d", r#","alg":"RS256""#),
            ]),
            AlgSet::of(&[Alg::RS256]),
            10,
        )
        .unwrap();
        assert_eq!(p.set.kids(), vec!["d"]);
        let reasons: Vec<_> = p.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert!(reasons[0].contains("does not match"), "{reasons:?}");
        assert!(reasons[1].contains("unsupported"), "{reasons:?}");
        assert!(
            reasons[2].contains("not in allowed_algorithms"),
            "{reasons:?}"
        );
    }

    #[test]
    fn non_signing_unknown_and_weak_keys_are_skipped_others_load() {
        let small_n = URL_SAFE_NO_PAD.encode([0xc5u8; 128]);
        let p = parse(
            &doc(&[
                rsa("enc", r#","use":"enc""#),
                rsa("ops", r#","key_ops":["encrypt"]"#),
                r#"{"kty":"oct","kid":"h","k":"AAAA"}"#.to_string(),
                format!(r#"{{"kty":"RSA","kid":"small","n":"{small_n}","e":"AQAB"}}"#),
                r#"{"kty":"EC","kid":"badpt","crv":"P-256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#.to_string(),
                r#""not an object""#.to_string(),
                format!(r#"{{"kty":"OKP","crv":"Ed25519","kid":"ed","x":"{ED_X}"}}"#),
                rsa("good", r#","use":"sig""#),
            ]),
            all(),
            10,
        )
        .unwrap();
        assert_eq!(p.set.kids(), vec!["ed", "good"]);
        assert_eq!(p.skipped.len(), 6);
        assert!(p
            .skipped
            .iter()
            .any(|s| s.reason.contains("under the 2048-bit minimum")));
        assert!(p.skipped.iter().any(|s| s.reason.contains("kty")));
    }

    #[test]
    fn duplicate_kid_refuses_every_copy() {
        let p = parse(
            &doc(&[
                rsa("dup", ""),
                format!(r#"{{"kty":"OKP","crv":"Ed25519","kid":"dup","x":"{ED_X}"}}"#),
                rsa("ok", ""),
            ]),
            all(),
            10,
        )
        .unwrap();
        assert_eq!(p.set.kids(), vec!["ok"]);
        assert!(p
            .skipped
            .iter()
            .all(|s| s.reason.contains("more than once")));
    }

    #[test]
    fn max_cache_size_keeps_first_keys_in_document_order() {
        let p = parse(&doc(&[rsa("1", ""), rsa("2", ""), rsa("3", "")]), all(), 2).unwrap();
        assert_eq!(p.set.kids(), vec!["1", "2"]);
        assert!(p.skipped[0].reason.contains("max_cache_size"));
    }

    #[test]
    fn whole_document_errors() {
        assert_eq!(parse(b"{", all(), 10).unwrap_err(), JwksError::NotJson);
        assert_eq!(
            parse(b"{\"k\":[]}", all(), 10).unwrap_err(),
            JwksError::NoKeysArray
        );
        assert_eq!(
            parse(b"{\"keys\":{}}", all(), 10).unwrap_err(),
            JwksError::NoKeysArray
        );
        assert_eq!(
            parse(b"{\"keys\":[]}", all(), 10).unwrap_err(),
            JwksError::NoUsableKeys(0)
        );
        assert_eq!(
            parse(&doc(&[rsa("e", r#","use":"enc""#)]), all(), 10).unwrap_err(),
            JwksError::NoUsableKeys(1)
        );
    }

    #[test]
    fn accepted_set_round_trips_through_its_document() {
        let p = parse(
            &doc(&[rsa("a", ""), rsa("b", r#","use":"enc""#)]),
            all(),
            10,
        )
        .unwrap();
        let again = parse(p.set.to_document().to_string().as_bytes(), all(), 10).unwrap();
        assert_eq!(again.set.kids(), vec!["a"]);
        assert!(again.skipped.is_empty());
    }

    /// Issue 19, item 10: `require_jwk_alg` skips keys that would serve
    /// every algorithm of their type.
    #[test]
    fn require_jwk_alg_skips_keys_without_alg() {
        let doc = format!(
            r#"{{"keys":[{},{}]}}"#,
            rsa("a", ""),
            rsa("b", r#","alg":"RS256""#)
        );
        let all = AlgSet::of(&Alg::ALL);
        let loose = parse(doc.as_bytes(), all, 10).unwrap();
        assert_eq!(loose.set.len(), 2);
        let rules = Rules {
            allowed: all,
            max_keys: 10,
            require_alg: true,
        };
        let strict = parse_with(doc.as_bytes(), rules).unwrap();
        assert_eq!(strict.set.len(), 1);
        assert!(strict.set.find("b").is_some());
        assert_eq!(strict.skipped[0].kid.as_deref(), Some("a"));
        assert!(strict.skipped[0].reason.contains("require_jwk_alg"));
    }
}
