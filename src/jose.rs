//! Decoding a compact JWS: three base64url parts, a JOSE header and a JSON
//! claims set. Nothing here trusts the token; sizes are bounded by the
//! caller's `max_token_size` before any allocation.
#![forbid(unsafe_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::{self, Deserializer};
use serde::Deserialize;

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

/// The JOSE header fields this filter looks at. Duplicate members of these
/// fields are refused by the deserializer. `jku`, `x5u`, `jwk` and `x5c` are
/// read only so their presence is visible; they are never followed.
#[derive(Debug, Deserialize, Default)]
pub struct Header {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub cty: Option<String>,
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
pub struct Audience(pub Vec<String>);

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor rather than an untagged enum: serde buffers an untagged
        // value into a tree first, a cost every token paid.
        struct Visit;
        impl<'de> de::Visitor<'de> for Visit {
            type Value = Audience;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Audience, E> {
                Ok(Audience(vec![v.to_owned()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Audience, A::Error> {
                let mut all = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
                while let Some(one) = seq.next_element::<String>()? {
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
pub struct Claims {
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub aud: Option<Audience>,
    #[serde(default)]
    pub exp: Option<NumericDate>,
    #[serde(default)]
    pub nbf: Option<NumericDate>,
    #[serde(default)]
    pub iat: Option<NumericDate>,
    #[serde(default)]
    pub jti: Option<String>,
}

/// A decoded, not yet verified, token.
#[derive(Debug)]
pub struct Decoded<'t> {
    pub header: Header,
    pub claims: Claims,
    /// `base64url(header) "." base64url(payload)`: what the signature covers.
    pub signing_input: &'t str,
    pub signature: Vec<u8>,
    /// The decoded payload (JSON bytes), for claims beyond the registered ones.
    pub payload_json: Vec<u8>,
}

impl Decoded<'_> {
    /// The payload exactly as the token carries it (base64url).
    pub fn payload_b64(&self) -> &str {
        self.signing_input.split_once('.').map_or("", |(_, p)| p)
    }
}

/// Canonical unpadded base64url (RFC 7515 section 2): the engine's default
/// config refuses padding, other alphabets and non-zero trailing bits.
fn b64(part: &str) -> Result<Vec<u8>, DecodeError> {
    URL_SAFE_NO_PAD
        .decode(part)
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

/// Splits and decodes a compact JWS.
pub fn decode(token: &str) -> Result<Decoded<'_>, DecodeError> {
    decode_parts(token).map_err(|e| classify(token, e))
}

fn decode_parts(token: &str) -> Result<Decoded<'_>, DecodeError> {
    // A dot left in the signature part fails its base64: no separate count
    // of the dots on the way to a valid token.
    let (h, rest) = token.split_once('.').ok_or(DecodeError::Parts)?;
    let (p, s) = rest.split_once('.').ok_or(DecodeError::Parts)?;
    if h.is_empty() || p.is_empty() {
        return Err(DecodeError::Parts);
    }
    let header_json = b64(h)?;
    let payload_json = b64(p)?;
    let signature = b64(s)?;
    let header: Header = serde_json::from_slice(&header_json).map_err(|_| DecodeError::Header)?;
    let claims: Claims = serde_json::from_slice(&payload_json).map_err(|_| DecodeError::Claims)?;
    let signing_input = token
        .get(..h.len() + 1 + p.len())
        .ok_or(DecodeError::Parts)?;
    Ok(Decoded {
        header,
        claims,
        signing_input,
        signature,
        payload_json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(d.payload_json.starts_with(b"{\"iss\""));
    }

    #[test]
    fn audience_is_a_string_or_an_array_of_strings_only() {
        let aud = |json: &str| decode(&tok(r#"{"alg":"ES256"}"#, json)).map(|d| d.claims.aud);
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
