//! Decoding a compact JWS: three base64url parts, a JOSE header and a JSON
//! claims set. Nothing here trusts the token; sizes are bounded by the
//! caller's `max_token_size` before any allocation.
#![forbid(unsafe_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Why a token could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Five dot-separated parts: an encrypted token (JWE).
    Encrypted,
    /// Not three dot-separated parts.
    Parts,
    /// A part is not canonical unpadded base64url.
    Base64,
    /// The header is not a JSON object of the expected shape.
    Header,
    /// The payload is not a JSON object with well-typed registered claims.
    Claims,
}

impl DecodeError {
    pub fn describe(self) -> &'static str {
        match self {
            DecodeError::Encrypted => "encrypted tokens (JWE) are not accepted",
            DecodeError::Parts => "malformed token: expected three dot-separated parts",
            DecodeError::Base64 => "malformed token: invalid base64url",
            DecodeError::Header => "malformed token: invalid JOSE header",
            DecodeError::Claims => "malformed token: invalid claims",
        }
    }
}

/// A string member of the header or claims: borrowed from the decoded JSON
/// when it has no escapes (the common case), owned when it has.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text<'a>(pub Cow<'a, str>);

impl<'a> From<&'a str> for Text<'a> {
    fn from(s: &'a str) -> Text<'a> {
        Text(Cow::Borrowed(s))
    }
}

impl PartialEq<str> for Text<'_> {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Text<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> de::Visitor<'de> for Visit {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Visit)
    }
}

/// The JOSE header fields this filter looks at. Duplicate members of these
/// fields are refused by the deserializer. `jku`, `x5u`, `jwk` and `x5c` are
/// read only so their presence is visible; they are never followed.
#[derive(Debug, Deserialize, Default)]
pub struct Header<'a> {
    #[serde(borrow)]
    pub alg: Text<'a>,
    #[serde(default, borrow)]
    pub kid: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub typ: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub cty: Option<Text<'a>>,
    #[serde(default)]
    pub crit: Option<Vec<String>>,
    #[serde(default)]
    pub jku: Option<serde_json::Value>,
    #[serde(default)]
    pub x5u: Option<serde_json::Value>,
    #[serde(default)]
    pub jwk: Option<serde_json::Value>,
    #[serde(default)]
    pub x5c: Option<serde_json::Value>,
}

/// `aud` is a string or an array of strings (RFC 7519 section 4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Audience<'a>(pub Vec<Text<'a>>);

impl Audience<'_> {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|t| &*t.0)
    }
}

impl Serialize for Audience<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Audience<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor rather than an untagged enum: serde buffers an untagged
        // value into a tree first, a cost every token paid.
        struct Visit;
        impl<'de> de::Visitor<'de> for Visit {
            type Value = Audience<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Audience<'de>, E> {
                Ok(Audience(vec![Text(Cow::Borrowed(v))]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Audience<'de>, E> {
                Ok(Audience(vec![Text(Cow::Owned(v.to_owned()))]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Audience<'de>, A::Error> {
                let mut all = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
                while let Some(one) = seq.next_element::<Text<'de>>()? {
                    all.push(one);
                }
                Ok(Audience(all))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// A NumericDate: seconds since the epoch, possibly fractional.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumericDate(pub f64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if !v.is_finite() || v < 0.0 {
            return Err(de::Error::custom("a date must be a non-negative number"));
        }
        Ok(NumericDate(v))
    }
}

/// The registered claims the policy checks. Other claims stay in the raw
/// payload for later use (forwarding), untouched.
#[derive(Debug, Deserialize, Default)]
pub struct Claims<'a> {
    #[serde(default, borrow)]
    pub iss: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub sub: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub aud: Option<Audience<'a>>,
    #[serde(default)]
    pub exp: Option<NumericDate>,
    #[serde(default)]
    pub nbf: Option<NumericDate>,
    #[serde(default)]
    pub iat: Option<NumericDate>,
    #[serde(default, borrow)]
    pub jti: Option<Text<'a>>,
}

/// Buffers a token is decoded into. A worker keeps one and reuses it, so
/// that once they have grown to its usual token size, decoding allocates
/// nothing for the parts (they never outgrow `max_token_size`, which the
/// caller enforces).
#[derive(Debug, Default)]
pub struct Scratch {
    header: Vec<u8>,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

/// A decoded, not yet verified, token: it borrows from the token and from
/// the [`Scratch`] it was decoded into.
#[derive(Debug)]
pub struct Decoded<'a> {
    pub header: Header<'a>,
    pub claims: Claims<'a>,
    /// `base64url(header) "." base64url(payload)`: what the signature covers.
    pub signing_input: &'a str,
    pub signature: &'a [u8],
    /// The decoded payload (JSON text), for claims beyond the registered ones.
    pub payload_json: &'a str,
}

impl Decoded<'_> {
    /// The payload exactly as the token carries it (base64url).
    pub fn payload_b64(&self) -> &str {
        self.signing_input.split_once('.').map_or("", |(_, p)| p)
    }
}

/// Canonical unpadded base64url (RFC 7515 section 2): the engine's default
/// config refuses padding, other alphabets and non-zero trailing bits.
fn b64(part: &str, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    out.clear();
    URL_SAFE_NO_PAD
        .decode_vec(part, out)
        .map_err(|_| DecodeError::Base64)
}

/// What is wrong with a token that failed to decode: the part count comes
/// first (a JWE's parts fail in other ways too), then the part's own error.
fn classify(token: &str, err: DecodeError) -> DecodeError {
    match token.bytes().filter(|b| *b == b'.').count() {
        2 => err,
        4 => DecodeError::Encrypted,
        _ => DecodeError::Parts,
    }
}

/// Splits and decodes a compact JWS into `scratch`.
pub fn decode<'a>(token: &'a str, scratch: &'a mut Scratch) -> Result<Decoded<'a>, DecodeError> {
    decode_parts(token, scratch).map_err(|e| classify(token, e))
}

fn decode_parts<'a>(token: &'a str, scratch: &'a mut Scratch) -> Result<Decoded<'a>, DecodeError> {
    // A dot left in the signature part fails its base64: no separate count
    // of the dots on the way to a valid token.
    let (h, rest) = token.split_once('.').ok_or(DecodeError::Parts)?;
    let (p, s) = rest.split_once('.').ok_or(DecodeError::Parts)?;
    if h.is_empty() || p.is_empty() {
        return Err(DecodeError::Parts);
    }
    b64(h, &mut scratch.header)?;
    b64(p, &mut scratch.payload)?;
    b64(s, &mut scratch.signature)?;
    let scratch: &'a Scratch = scratch;
    // JSON text is UTF-8: checked once here, so that the parser need not
    // check each string again.
    let header_json = std::str::from_utf8(&scratch.header).map_err(|_| DecodeError::Header)?;
    let payload_json = std::str::from_utf8(&scratch.payload).map_err(|_| DecodeError::Claims)?;
    let header: Header = serde_json::from_str(header_json).map_err(|_| DecodeError::Header)?;
    let claims: Claims = serde_json::from_str(payload_json).map_err(|_| DecodeError::Claims)?;
    let signing_input = token
        .get(..h.len() + 1 + p.len())
        .ok_or(DecodeError::Parts)?;
    Ok(Decoded {
        header,
        claims,
        signing_input,
        signature: &scratch.signature,
        payload_json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes into a scratch of its own (leaked: tests only).
    fn decode(t: &str) -> Result<Decoded<'_>, DecodeError> {
        super::decode(t, Box::leak(Box::default()))
    }

    fn enc(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn tok(h: &str, p: &str) -> String {
        format!("{}.{}.{}", enc(h), enc(p), enc("sig"))
    }

    #[test]
    fn decodes_header_claims_and_signature() {
        let t = tok(
            r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
            r#"{"iss":"i","aud":["a","b"],"exp":1700000000,"nbf":1.5,"extra":{"x":1}}"#,
        );
        let d = decode(&t).unwrap();
        assert_eq!(d.header.alg, "RS256");
        assert_eq!(d.header.kid.as_deref(), Some("k1"));
        assert_eq!(d.claims.aud, Some(Audience(vec!["a".into(), "b".into()])));
        assert_eq!(d.claims.exp, Some(NumericDate(1_700_000_000.0)));
        assert_eq!(d.claims.nbf, Some(NumericDate(1.5)));
        assert_eq!(d.signature, b"sig");
        assert_eq!(d.signing_input, &t[..t.rfind('.').unwrap()]);
        assert_eq!(d.payload_b64(), t.split('.').nth(1).unwrap());
        assert!(d.payload_json.starts_with("{\"iss\""));
    }

    #[test]
    fn strings_with_escapes_read_the_same_as_without() {
        let plain = tok(
            r#"{"alg":"RS256","kid":"k/1"}"#,
            r#"{"iss":"https://idp/x","sub":"al\u00efce","aud":["api"]}"#,
        );
        let escaped = tok(
            r#"{"alg":"RS\u0032\u00356","kid":"k\/1"}"#,
            r#"{"iss":"https:\/\/idp\/x","sub":"al\u00efce","aud":["\u0061pi"]}"#,
        );
        let (a, b) = (decode(&plain).unwrap(), decode(&escaped).unwrap());
        assert!(matches!(a.claims.iss.as_ref().unwrap().0, Cow::Borrowed(_)));
        assert!(matches!(b.claims.iss.as_ref().unwrap().0, Cow::Owned(_)));
        for d in [&a, &b] {
            assert_eq!(d.header.alg, "RS256");
            assert_eq!(d.header.kid.as_deref(), Some("k/1"));
            assert_eq!(d.claims.iss.as_deref(), Some("https://idp/x"));
            assert_eq!(d.claims.sub.as_deref(), Some("al\u{ef}ce"));
            assert_eq!(
                d.claims.aud.as_ref().unwrap().iter().collect::<Vec<_>>(),
                ["api"]
            );
        }
    }

    #[test]
    fn a_reused_scratch_holds_only_the_latest_token() {
        let long = format!(
            "{}.{}.{}",
            enc(r#"{"alg":"RS256","kid":"a-rather-long-key-id"}"#),
            enc(&format!(r#"{{"sub":"{}"}}"#, "x".repeat(500))),
            enc(&"s".repeat(300))
        );
        let short = tok(r#"{"alg":"ES256"}"#, r#"{"sub":"y"}"#);
        let mut scratch = Scratch::default();
        assert_eq!(
            super::decode(&long, &mut scratch).unwrap().signature.len(),
            300
        );
        let d = super::decode(&short, &mut scratch).unwrap();
        assert_eq!(d.header.alg, "ES256");
        assert_eq!(d.header.kid, None);
        assert_eq!(d.claims.sub.as_deref(), Some("y"));
        assert_eq!(d.signature, b"sig");
        assert_eq!(d.payload_json, r#"{"sub":"y"}"#);
        // A failed decode leaves nothing a later token could pick up.
        assert!(super::decode("e30.e30.!!", &mut scratch).is_err());
        let d = super::decode(&short, &mut scratch).unwrap();
        assert_eq!(d.signature, b"sig");
    }

    #[test]
    fn audience_is_a_string_or_an_array_of_strings_only() {
        let aud = |json: &str| {
            let t: &'static str = Box::leak(tok(r#"{"alg":"ES256"}"#, json).into_boxed_str());
            decode(t).map(|d| d.claims.aud)
        };
        assert_eq!(
            aud(r#"{"aud":"a\u0062"}"#).unwrap(),
            Some(Audience(vec!["ab".into()]))
        );
        assert_eq!(aud(r#"{"aud":[]}"#).unwrap(), Some(Audience(vec![])));
        assert_eq!(aud(r#"{"aud":null}"#).unwrap(), None);
        for bad in [
            r#"{"aud":5}"#,
            r#"{"aud":{"a":"b"}}"#,
            r#"{"aud":["a",["b"]]}"#,
            r#"{"aud":["a",null]}"#,
            r#"{"aud":true}"#,
        ] {
            assert_eq!(aud(bad).unwrap_err(), DecodeError::Claims, "{bad}");
        }
    }

    #[test]
    fn single_audience_string_is_a_list_of_one() {
        let t = tok(r#"{"alg":"ES256"}"#, r#"{"aud":"api"}"#);
        let d = decode(&t).unwrap();
        assert_eq!(d.claims.aud, Some(Audience(vec!["api".into()])));
    }

    #[test]
    fn wrong_part_counts_and_jwe_are_refused() {
        assert_eq!(decode("a.b").unwrap_err(), DecodeError::Parts);
        assert_eq!(decode("a.b.c.d").unwrap_err(), DecodeError::Parts);
        assert_eq!(decode("a.b.c.d.e").unwrap_err(), DecodeError::Encrypted);
        assert_eq!(decode("..").unwrap_err(), DecodeError::Parts);
        assert_eq!(decode("").unwrap_err(), DecodeError::Parts);
        // The part count decides before the parts' own errors.
        let h = enc(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#);
        assert_eq!(
            decode(&format!("{h}..iv.ct.tag")).unwrap_err(),
            DecodeError::Encrypted
        );
        assert_eq!(
            decode(&format!("{h}.{}.s.g", enc("{}"))).unwrap_err(),
            DecodeError::Parts
        );
        assert_eq!(
            decode(&format!("{h}.{}.A.A", enc("{}"))).unwrap_err(),
            DecodeError::Parts
        );
    }

    #[test]
    fn non_canonical_base64_is_refused() {
        let h = enc(r#"{"alg":"RS256"}"#);
        let p = enc(r#"{}"#);
        // Padding, standard-alphabet characters and stray bytes.
        assert_eq!(
            decode(&format!("{h}=.{p}.AA")).unwrap_err(),
            DecodeError::Base64
        );
        assert_eq!(
            decode(&format!("{h}.{p}.A+/A")).unwrap_err(),
            DecodeError::Base64
        );
        assert_eq!(
            decode(&format!("{h}.{p}.A A")).unwrap_err(),
            DecodeError::Base64
        );
        // "AB" decodes to one byte with non-zero trailing bits: refused.
        assert_eq!(
            decode(&format!("{h}.{p}.AB")).unwrap_err(),
            DecodeError::Base64
        );
        assert!(decode(&format!("{h}.{p}.AA")).is_ok());
    }

    #[test]
    fn header_and_claims_shapes_are_checked() {
        assert_eq!(
            decode(&tok(r#"[1]"#, "{}")).unwrap_err(),
            DecodeError::Header
        );
        assert_eq!(
            decode(&tok(r#"{"kid":"x"}"#, "{}")).unwrap_err(),
            DecodeError::Header
        );
        assert_eq!(
            decode(&tok(r#"{"alg":5}"#, "{}")).unwrap_err(),
            DecodeError::Header
        );
        assert_eq!(
            decode(&tok(r#"{"alg":"RS256","alg":"none"}"#, "{}")).unwrap_err(),
            DecodeError::Header,
            "duplicate alg"
        );
        assert_eq!(
            decode(&tok(r#"{"alg":"RS256"}"#, "foo")).unwrap_err(),
            DecodeError::Claims
        );
        assert_eq!(
            decode(&tok(r#"{"alg":"RS256"}"#, r#"{"exp":"soon"}"#)).unwrap_err(),
            DecodeError::Claims
        );
        assert_eq!(
            decode(&tok(r#"{"alg":"RS256"}"#, r#"{"exp":-1}"#)).unwrap_err(),
            DecodeError::Claims
        );
        assert_eq!(
            decode(&tok(r#"{"alg":"RS256"}"#, r#"{"aud":[1]}"#)).unwrap_err(),
            DecodeError::Claims
        );
        assert_eq!(
            decode(&tok(r#"{"alg":"RS256"}"#, r#"{"iss":1}"#)).unwrap_err(),
            DecodeError::Claims
        );
        assert_eq!(
            decode(&tok(r#"{"alg":"RS256"}"#, r#"{"exp":1,"exp":2}"#)).unwrap_err(),
            DecodeError::Claims,
            "duplicate exp"
        );
    }
}
