//! Token Status Lists (draft-ietf-oauth-status-list): a token's reference
//! (`status.status_list {idx, uri}`), the list token served at `uri` (a JWT
//! of `typ` `statuslist+jwt` whose `status_list {bits, lst}` holds a
//! zlib-compressed array of `bits`-wide statuses), and the lookup of one
//! status in it.
#![forbid(unsafe_code)]

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use crate::config::provider::media_type;
use crate::token::jose::Decoded;

/// The `typ` a list token carries (compared without `application/`).
pub const LIST_TYPE: &str = "statuslist+jwt";

/// A token's place in a status list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub idx: u64,
    pub uri: String,
}

/// Reads a token's `status` claim (raw JSON). `Ok(None)`: the claim names
/// no status list (another status mechanism, or none). (Read through
/// `Value` rather than derived types: the code it shares keeps the module
/// small.)
pub fn reference(status: &str) -> Result<Option<Reference>, ListError> {
    let bad = || ListError::Malformed("status.status_list needs idx and uri".into());
    let v: Value = serde_json::from_str(status).map_err(|_| bad())?;
    let Value::Object(o) = v else {
        return Err(bad());
    };
    let list = match o.get("status_list") {
        None | Some(Value::Null) => return Ok(None),
        Some(l) => l,
    };
    let idx = list.get("idx").and_then(Value::as_u64).ok_or_else(bad)?;
    let uri = list.get("uri").and_then(Value::as_str).ok_or_else(bad)?;
    Ok(Some(Reference {
        idx,
        uri: uri.to_string(),
    }))
}

/// A decoded list: `bits` per status, least significant bits first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusList {
    pub bits: u8,
    pub bytes: Vec<u8>,
}

impl StatusList {
    /// The status at `idx`; `None` past the end of the list.
    pub fn get(&self, idx: u64) -> Option<u8> {
        let bits = u64::from(self.bits);
        let per_byte = 8 / bits;
        let byte = *self.bytes.get(usize::try_from(idx / per_byte).ok()?)?;
        let shift = (idx % per_byte) * bits;
        let mask = ((1u16 << bits) - 1) as u8;
        Some((byte >> shift) & mask)
    }

    /// How many statuses the list holds.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64 * (8 / u64::from(self.bits))
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The form kept in shared data: the width, then the inflated bytes.
    pub fn to_stored(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len() + 1);
        out.push(self.bits);
        out.extend_from_slice(&self.bytes);
        out
    }

    /// Reads [`StatusList::to_stored`]'s form back.
    pub fn from_stored(stored: &[u8]) -> Option<StatusList> {
        let (&bits, bytes) = stored.split_first()?;
        matches!(bits, 1 | 2 | 4 | 8).then(|| StatusList {
            bits,
            bytes: bytes.to_vec(),
        })
    }
}

/// Why a list token was not accepted (or a token's reference not read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListError {
    /// Not a list token, or not one for this URI or time.
    Malformed(String),
    /// Its signature or key did not check.
    Signature(String),
    /// `lst` is not zlib data, or inflates past the limit.
    Inflate(String),
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListError::Malformed(m) => write!(f, "not a usable status list token: {m}"),
            ListError::Signature(m) => write!(f, "status list signature: {m}"),
            ListError::Inflate(m) => write!(f, "status list data: {m}"),
        }
    }
}

/// What a list token says besides its bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub list: StatusList,
    /// `ttl`: seconds the list may be kept.
    pub ttl_s: Option<u64>,
    /// `exp`: when it must no longer be used (seconds).
    pub exp_s: Option<u64>,
}

/// Checks a decoded list token whose signature the caller has verified:
/// its `typ`, that its `sub` is the `uri` it was fetched from, that it is
/// issued and not expired, and inflates its list up to `max_size` bytes.
pub fn accept(d: &Decoded, uri: &str, now_s: u64, max_size: usize) -> Result<Accepted, ListError> {
    let bad = |m: &str| Err(ListError::Malformed(m.to_string()));
    if d.header.typ.as_deref().map(media_type).as_deref() != Some(LIST_TYPE) {
        return bad("typ is not statuslist+jwt");
    }
    if d.claims.sub.as_deref() != Some(uri) {
        return bad("sub is not the URI the list was fetched from");
    }
    if d.claims.iat.is_none() {
        return bad("no iat");
    }
    let exp_s = d.claims.exp.map(|e| e.0 as u64);
    if exp_s.is_some_and(|e| e <= now_s) {
        return bad("expired");
    }
    let p: Value = serde_json::from_str(d.payload_json)
        .map_err(|e| ListError::Malformed(format!("status_list: {e}")))?;
    let list = p.get("status_list");
    let bits = list.and_then(|l| l.get("bits")).and_then(Value::as_u64);
    let Some(bits @ (1 | 2 | 4 | 8)) = bits else {
        return bad("bits is not 1, 2, 4 or 8");
    };
    let Some(lst) = list.and_then(|l| l.get("lst")).and_then(Value::as_str) else {
        return bad("no lst");
    };
    let ttl_s = match p.get("ttl") {
        None | Some(Value::Null) => None,
        Some(t) => match t.as_f64() {
            Some(t) if t.is_finite() && t > 0.0 => Some(t as u64),
            _ => return bad("ttl is not a positive number"),
        },
    };
    let compressed = URL_SAFE_NO_PAD
        .decode(lst.as_bytes())
        .map_err(|_| ListError::Malformed("lst is not base64url".into()))?;
    let bytes = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&compressed, max_size)
        .map_err(|e| match e.status {
            miniz_oxide::inflate::TINFLStatus::HasMoreOutput => {
                ListError::Inflate(format!("inflates past {max_size} bytes"))
            }
            _ => ListError::Inflate("lst is not valid zlib data".into()),
        })?;
    Ok(Accepted {
        list: StatusList {
            bits: bits as u8,
            bytes,
        },
        ttl_s,
        exp_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::jose;

    /// An unsigned token (the signature is the caller's business here).
    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    fn lst(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(miniz_oxide::deflate::compress_to_vec_zlib(bytes, 6))
    }

    const URI: &str = "https://idp.example/statuslists/1";
    const H: &str = r#"{"alg":"ES256","typ":"statuslist+jwt","kid":"k"}"#;

    fn payload(bits: u8, bytes: &[u8]) -> String {
        format!(
            r#"{{"sub":"{URI}","iat":1700000000,"exp":4000000000,"ttl":43200,"status_list":{{"bits":{bits},"lst":"{}"}}}}"#,
            lst(bytes)
        )
    }

    fn accept_token(t: &str, max: usize) -> Result<Accepted, ListError> {
        let mut scratch = jose::Scratch::default();
        let d = jose::decode(t, &mut scratch).unwrap();
        accept(&d, URI, 1_800_000_000, max)
    }

    #[test]
    fn reads_each_width_least_significant_bits_first() {
        // The draft's 1-bit example: 0xB9 0xA3 holds 1 0 0 1 1 1 0 1 1 1 0 0 0 1 0 1.
        let l = StatusList {
            bits: 1,
            bytes: vec![0xB9, 0xA3],
        };
        let got: Vec<u8> = (0..16).map(|i| l.get(i).unwrap()).collect();
        assert_eq!(got, [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1]);
        assert_eq!((l.len(), l.get(16)), (16, None));
        // The draft's 2-bit example: 0xC9 0x44 0xF9 holds 1 2 0 3 0 1 0 1 1 2 3 3.
        let l = StatusList {
            bits: 2,
            bytes: vec![0xC9, 0x44, 0xF9],
        };
        let got: Vec<u8> = (0..12).map(|i| l.get(i).unwrap()).collect();
        assert_eq!(got, [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3]);
        let l = StatusList {
            bits: 4,
            bytes: vec![0x21, 0xF0],
        };
        let got: Vec<u8> = (0..4).map(|i| l.get(i).unwrap()).collect();
        assert_eq!(got, [1, 2, 0, 15]);
        let l = StatusList {
            bits: 8,
            bytes: vec![0, 7, 255],
        };
        assert_eq!((l.get(1), l.get(2), l.get(3)), (Some(7), Some(255), None));
        assert_eq!(l.get(u64::MAX), None);
    }

    #[test]
    fn a_good_list_token_is_accepted_and_round_trips_through_shared_data() {
        let a = accept_token(&token(H, &payload(2, &[0xC9, 0x44])), 1024).unwrap();
        assert_eq!(a.list.bytes, [0xC9, 0x44]);
        assert_eq!((a.ttl_s, a.exp_s), (Some(43200), Some(4_000_000_000)));
        assert_eq!(StatusList::from_stored(&a.list.to_stored()), Some(a.list));
        assert_eq!(StatusList::from_stored(&[3, 0]), None);
        assert_eq!(StatusList::from_stored(&[]), None);
        let with_prefix = r#"{"alg":"ES256","typ":"application/statuslist+jwt"}"#;
        assert!(accept_token(&token(with_prefix, &payload(1, &[1])), 1024).is_ok());
    }

    #[test]
    fn hostile_lists_are_refused() {
        let wrong_typ = r#"{"alg":"ES256","typ":"JWT"}"#;
        let no_typ = r#"{"alg":"ES256"}"#;
        for h in [wrong_typ, no_typ] {
            assert!(matches!(
                accept_token(&token(h, &payload(1, &[1])), 1024),
                Err(ListError::Malformed(_))
            ));
        }
        // Too big once inflated: a megabyte of zeros compresses to a kilobyte.
        let big = vec![0u8; 1 << 20];
        assert!(matches!(
            accept_token(&token(H, &payload(1, &big)), 4096),
            Err(ListError::Inflate(m)) if m.contains("4096")
        ));
        assert!(accept_token(&token(H, &payload(1, &big)), 1 << 20).is_ok());
        // Not zlib, not base64url, bad widths, another URI, expired, no iat.
        let bad_payloads = [
            format!(
                r#"{{"sub":"{URI}","iat":1,"status_list":{{"bits":1,"lst":"{}"}}}}"#,
                URL_SAFE_NO_PAD.encode(b"plain")
            ),
            format!(r#"{{"sub":"{URI}","iat":1,"status_list":{{"bits":1,"lst":"***"}}}}"#),
            format!(
                r#"{{"sub":"{URI}","iat":1,"status_list":{{"bits":3,"lst":"{}"}}}}"#,
                lst(&[1])
            ),
            format!(
                r#"{{"sub":"{URI}","iat":1,"status_list":{{"bits":16,"lst":"{}"}}}}"#,
                lst(&[1])
            ),
            format!(
                r#"{{"sub":"https://other/","iat":1,"status_list":{{"bits":1,"lst":"{}"}}}}"#,
                lst(&[1])
            ),
            format!(
                r#"{{"sub":"{URI}","iat":1,"exp":1000,"status_list":{{"bits":1,"lst":"{}"}}}}"#,
                lst(&[1])
            ),
            format!(
                r#"{{"sub":"{URI}","status_list":{{"bits":1,"lst":"{}"}}}}"#,
                lst(&[1])
            ),
            format!(
                r#"{{"sub":"{URI}","iat":1,"ttl":-5,"status_list":{{"bits":1,"lst":"{}"}}}}"#,
                lst(&[1])
            ),
            format!(r#"{{"sub":"{URI}","iat":1}}"#),
        ];
        for p in bad_payloads {
            assert!(accept_token(&token(H, &p), 1024).is_err(), "{p}");
        }
    }

    #[test]
    fn a_tokens_reference() {
        assert_eq!(
            reference(r#"{"status_list":{"idx":7,"uri":"https://l/1"}}"#).unwrap(),
            Some(Reference {
                idx: 7,
                uri: "https://l/1".into()
            })
        );
        assert_eq!(reference(r#"{"other_mechanism":{}}"#).unwrap(), None);
        for bad in [
            r#"{"status_list":{"idx":-1,"uri":"u"}}"#,
            r#"{"status_list":{"idx":1.5,"uri":"u"}}"#,
            r#"{"status_list":{"uri":"u"}}"#,
            r#"{"status_list":{"idx":1}}"#,
            r#"[]"#,
        ] {
            assert!(reference(bad).is_err(), "{bad}");
        }
    }
}
