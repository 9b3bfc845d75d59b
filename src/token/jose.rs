//! Decoding a compact JWS: three base64url parts, a JOSE header and a JSON
//! claims set. Nothing here trusts the token; sizes are bounded by the
//! caller's `max_token_size` before any allocation.
#![forbid(unsafe_code)]

use crate::token::json::{self, Reader};
use serde::Serialize;
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
pub type Text<'a> = Cow<'a, str>;

/// The JOSE header fields this filter looks at (RFC 7515 section 4.1). A
/// known member given twice is refused. `jku`, `x5u`, `jwk` and `x5c` are
/// checked as JSON and otherwise ignored: keys come only from the configured
/// JWKS or fallback key.
#[derive(Debug, Default)]
pub struct Header<'a> {
    pub alg: Text<'a>,
    pub kid: Option<Text<'a>>,
    pub typ: Option<Text<'a>>,
    pub cty: Option<Text<'a>>,
    pub crit: Option<Vec<Text<'a>>>,
}

/// `aud` is a string or an array of strings (RFC 7519 section 4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Audience<'a>(pub Vec<Text<'a>>);

impl Audience<'_> {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|t| &**t)
    }
}

impl Serialize for Audience<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// A NumericDate: seconds since the epoch, possibly fractional.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumericDate(pub f64);

/// The registered claims the policy checks (RFC 7519 section 4.1). Other
/// claims stay in the raw payload for later use (rules, forwarding).
#[derive(Debug, Default)]
pub struct Claims<'a> {
    pub iss: Option<Text<'a>>,
    pub sub: Option<Text<'a>>,
    pub aud: Option<Audience<'a>>,
    pub exp: Option<NumericDate>,
    pub nbf: Option<NumericDate>,
    pub iat: Option<NumericDate>,
    pub jti: Option<Text<'a>>,
    /// `client_id` (RFC 8693), `azp` (OpenID Connect) and `sid`: read only
    /// for revocation entries, so a value that is not a string is ignored
    /// rather than refused.
    pub client_id: Option<Text<'a>>,
    pub azp: Option<Text<'a>>,
    pub sid: Option<Text<'a>>,
    /// `status` (draft-ietf-oauth-status-list) as raw JSON text, read only
    /// when the provider checks status lists.
    pub status: Option<&'a str>,
}

/// An optional string member: `null` is absent.
fn opt_text<'a>(r: &mut Reader<'a>) -> json::Result<Option<Text<'a>>> {
    if r.null()? {
        return Ok(None);
    }
    r.string().map(Some)
}

/// An optional array of strings: `null` is absent.
fn opt_texts<'a>(r: &mut Reader<'a>) -> json::Result<Option<Vec<Text<'a>>>> {
    if r.null()? {
        return Ok(None);
    }
    let mut all = Vec::new();
    r.array(|r| {
        all.push(r.string()?);
        Ok(())
    })?;
    Ok(Some(all))
}

/// An optional NumericDate: a finite, non-negative number.
fn opt_date(r: &mut Reader) -> json::Result<Option<NumericDate>> {
    if r.null()? {
        return Ok(None);
    }
    let v = r.number()?;
    if !v.is_finite() || v < 0.0 {
        return Err(json::Error::Type);
    }
    Ok(Some(NumericDate(v)))
}

/// The header members read; a second one of any of them is refused.
const HEADER_MEMBERS: [&str; 9] = [
    "alg", "kid", "typ", "cty", "crit", "jku", "x5u", "jwk", "x5c",
];

/// The registered claims read; a second one of any of them is refused.
const CLAIM_MEMBERS: [&str; 11] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "azp",
    "sid",
    "status",
];

/// A string member, or `None` for any other JSON value (skipped).
fn lenient_text<'a>(r: &mut Reader<'a>) -> json::Result<Option<Text<'a>>> {
    match r.string() {
        Ok(t) => Ok(Some(t)),
        Err(json::Error::Type) => {
            r.skip()?;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The index of a known member, after refusing a second one.
fn known(names: &[&str], key: &str, seen: &mut u32) -> json::Result<Option<usize>> {
    let Some(i) = names.iter().position(|n| *n == key) else {
        return Ok(None);
    };
    json::once(seen, 1 << i)?;
    Ok(Some(i))
}

impl<'a> Header<'a> {
    /// Reads a header: a JSON object with a string `alg`.
    pub fn parse(text: &'a str) -> json::Result<Header<'a>> {
        let mut r = Reader::new(text);
        let mut h = Header::default();
        let (mut seen, mut alg) = (0u32, None);
        r.object(|r, key| {
            match known(&HEADER_MEMBERS, key, &mut seen)? {
                None => r.skip()?,
                Some(0) => alg = Some(r.string()?),
                Some(1) => h.kid = opt_text(r)?,
                Some(2) => h.typ = opt_text(r)?,
                Some(3) => h.cty = opt_text(r)?,
                Some(4) => h.crit = opt_texts(r)?,
                // `jku`, `x5u`, `jwk`, `x5c`: checked as JSON values,
                // numbers within range included, and otherwise ignored.
                Some(_) => {
                    serde_json::from_str::<serde_json::Value>(r.raw()?)
                        .map_err(|_| json::Error::Syntax)?;
                }
            }
            Ok(())
        })?;
        r.finish()?;
        h.alg = alg.ok_or(json::Error::Type)?;
        Ok(h)
    }
}

impl<'a> Claims<'a> {
    /// Reads a claims set: a JSON object whose registered claims have their
    /// RFC 7519 types.
    pub fn parse(text: &'a str) -> json::Result<Claims<'a>> {
        let mut r = Reader::new(text);
        let mut c = Claims::default();
        let mut seen = 0u32;
        r.object(|r, key| {
            match known(&CLAIM_MEMBERS, key, &mut seen)? {
                None => r.skip()?,
                Some(0) => c.iss = opt_text(r)?,
                Some(1) => c.sub = opt_text(r)?,
                Some(2) => c.aud = opt_audience(r)?,
                Some(3) => c.exp = opt_date(r)?,
                Some(4) => c.nbf = opt_date(r)?,
                Some(5) => c.iat = opt_date(r)?,
                Some(6) => c.jti = opt_text(r)?,
                Some(7) => c.client_id = lenient_text(r)?,
                Some(8) => c.azp = lenient_text(r)?,
                Some(9) => c.sid = lenient_text(r)?,
                Some(_) => c.status = Some(r.raw()?),
            }
            Ok(())
        })?;
        r.finish()?;
        Ok(c)
    }
}

/// `aud`: a string, an array of strings, or `null` (absent).
fn opt_audience<'a>(r: &mut Reader<'a>) -> json::Result<Option<Audience<'a>>> {
    if r.null()? {
        return Ok(None);
    }
    match r.string() {
        Ok(one) => Ok(Some(Audience(vec![one]))),
        Err(json::Error::Type) => Ok(opt_texts(r)?.map(Audience)),
        Err(e) => Err(e),
    }
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
    /// The last header part that decoded and what it decoded to: the
    /// tokens of one issuer and key share their header, byte for byte, so
    /// most tokens skip its base64 and JSON.
    memo: Option<(String, Header<'static>)>,
}

/// A string that owns its text.
fn owned(t: Text) -> Text<'static> {
    Cow::Owned(t.into_owned())
}

impl Header<'_> {
    /// The same header, owning its text (to be kept between tokens).
    fn into_owned(self) -> Header<'static> {
        let own = |t: Option<Text>| t.map(owned);
        Header {
            alg: owned(self.alg),
            kid: own(self.kid),
            typ: own(self.typ),
            cty: own(self.cty),
            crit: self.crit.map(|c| c.into_iter().map(owned).collect()),
        }
    }
}

/// A decoded, not yet verified, token: it borrows from the token and from
/// the [`Scratch`] it was decoded into.
#[derive(Debug)]
pub struct Decoded<'a> {
    pub header: &'a Header<'static>,
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

/// base64url digit values; 0xFF for every other byte. (Indexing in a
/// constant: an out-of-bounds index would fail the build, not a request.)
#[allow(clippy::indexing_slicing)]
const B64URL: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let digits = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut i = 0;
    while i < 64 {
        t[digits[i] as usize] = i as u8;
        i += 1;
    }
    t
};

fn digit(b: u8) -> u32 {
    u32::from(B64URL.get(usize::from(b)).copied().unwrap_or(0xFF))
}

/// Canonical unpadded base64url (RFC 7515 section 2): no padding, no
/// other alphabet, no non-zero trailing bits. Decoded here rather than by
/// the base64 crate on the per-request path: this loop is a small fraction
/// of the crate's general decoder in compiled code, and the code a request
/// runs is what misses the instruction cache between requests
/// (`make bench-callgrind`).
fn b64(part: &str, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let bytes = part.as_bytes();
    let (whole, tail) = bytes.split_at(bytes.len() / 4 * 4);
    let tail_len = match tail.len() {
        0 => 0,
        2 => 1,
        3 => 2,
        _ => return Err(DecodeError::Base64),
    };
    out.clear();
    out.resize(whole.len() / 4 * 3 + tail_len, 0);
    let (body, end) = out.split_at_mut(whole.len() / 4 * 3);
    for (q, o) in whole.chunks_exact(4).zip(body.chunks_exact_mut(3)) {
        let (&[a, b, c, d], [x, y, z]) = (q, o) else {
            return Err(DecodeError::Base64);
        };
        let (a, b, c, d) = (digit(a), digit(b), digit(c), digit(d));
        // An invalid byte's 0xFF has the bit no digit has.
        if (a | b | c | d) & 0x80 != 0 {
            return Err(DecodeError::Base64);
        }
        let n = a << 18 | b << 12 | c << 6 | d;
        (*x, *y, *z) = ((n >> 16) as u8, (n >> 8) as u8, n as u8);
    }
    match (tail, end) {
        ([], []) => Ok(()),
        (&[a, b], [x]) => {
            let (a, b) = (digit(a), digit(b));
            let n = a << 6 | b;
            if (a | b) & 0x80 != 0 || n & 0xF != 0 {
                return Err(DecodeError::Base64);
            }
            *x = (n >> 4) as u8;
            Ok(())
        }
        (&[a, b, c], [x, y]) => {
            let (a, b, c) = (digit(a), digit(b), digit(c));
            let n = a << 12 | b << 6 | c;
            if (a | b | c) & 0x80 != 0 || n & 0x3 != 0 {
                return Err(DecodeError::Base64);
            }
            (*x, *y) = ((n >> 10) as u8, (n >> 2) as u8);
            Ok(())
        }
        _ => Err(DecodeError::Base64),
    }
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
    let memo_hit = scratch.memo.as_ref().is_some_and(|(seg, _)| seg == h);
    if !memo_hit {
        scratch.memo = None;
        b64(h, &mut scratch.header)?;
    }
    b64(p, &mut scratch.payload)?;
    b64(s, &mut scratch.signature)?;
    if !memo_hit {
        // JSON text is UTF-8: checked once here, so that the parser need
        // not check each string again.
        let text = std::str::from_utf8(&scratch.header).map_err(|_| DecodeError::Header)?;
        let header = Header::parse(text).map_err(|_| DecodeError::Header)?;
        let owned = header.into_owned();
        scratch.memo = Some((h.to_string(), owned));
    }
    let scratch: &'a Scratch = scratch;
    let header = scratch
        .memo
        .as_ref()
        .map(|(_, h)| h)
        .ok_or(DecodeError::Header)?;
    let payload_json = std::str::from_utf8(&scratch.payload).map_err(|_| DecodeError::Claims)?;
    let claims = Claims::parse(payload_json).map_err(|_| DecodeError::Claims)?;
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
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

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
        assert!(matches!(a.claims.iss, Some(Cow::Borrowed(_))));
        assert!(matches!(b.claims.iss, Some(Cow::Owned(_))));
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
    fn a_repeated_header_part_reads_as_the_first_time_and_failures_are_not_kept() {
        let mut scratch = Scratch::default();
        let h1 = r#"{"alg":"RS256","kid":"k\/1","typ":"JWT","crit":["x"]}"#;
        let h2 = r#"{"alg":"ES256"}"#;
        let first = tok(h1, r#"{"sub":"a"}"#);
        let again = format!("{}.{}.{}", enc(h1), enc(r#"{"sub":"b"}"#), enc("s2"));
        for t in [&first, &again, &first] {
            let d = super::decode(t, &mut scratch).unwrap();
            assert_eq!(d.header.alg, "RS256");
            assert_eq!(d.header.kid.as_deref(), Some("k/1"));
            assert_eq!(d.header.typ.as_deref(), Some("JWT"));
            assert_eq!(d.header.crit.as_ref().map(|c| c.len()), Some(1));
        }
        assert_eq!(
            super::decode(&again, &mut scratch)
                .unwrap()
                .claims
                .sub
                .as_deref(),
            Some("b")
        );
        let other = tok(h2, "{}");
        let d = super::decode(&other, &mut scratch).unwrap();
        assert_eq!((&*d.header.alg, d.header.kid.is_none()), ("ES256", true));
        // A header that fails, twice: refused both times, and the next good
        // token is read afresh.
        let bad = tok(r#"{"alg":5}"#, "{}");
        for _ in 0..2 {
            assert_eq!(
                super::decode(&bad, &mut scratch).unwrap_err(),
                DecodeError::Header
            );
        }
        let d = super::decode(&first, &mut scratch).unwrap();
        assert_eq!(d.header.alg, "RS256");
        // A good header with a bad payload keeps the header for the next.
        let bad_claims = format!("{}.{}.{}", enc(h1), enc("[]"), enc("s"));
        assert_eq!(
            super::decode(&bad_claims, &mut scratch).unwrap_err(),
            DecodeError::Claims
        );
        assert_eq!(
            super::decode(&again, &mut scratch).unwrap().header.alg,
            "RS256"
        );
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
    fn base64url_agrees_with_the_crate_on_every_short_input() {
        // Every string of up to three characters over the alphabet and some
        // strangers, then random longer ones: same bytes, same refusals.
        let chars: Vec<u8> = b"ABZaz09-_+/=. \x00\xff"
            .iter()
            .copied()
            .chain(b'A'..=b'D')
            .collect();
        let mut inputs: Vec<Vec<u8>> = vec![vec![]];
        for len in 1..=3 {
            let mut next = Vec::new();
            for prefix in inputs.iter().filter(|p| p.len() == len - 1) {
                for c in &chars {
                    let mut v = prefix.clone();
                    v.push(*c);
                    next.push(v);
                }
            }
            inputs.extend(next);
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 64) as usize;
            let v: Vec<u8> = (0..len)
                .map(|i| {
                    let r = (x >> (i % 57)) as usize;
                    if r % 97 == 0 {
                        b'+'
                    } else {
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[r % 64]
                    }
                })
                .collect();
            inputs.push(v);
        }
        let mut out = Vec::new();
        for input in inputs {
            let Ok(text) = std::str::from_utf8(&input) else {
                continue;
            };
            let ours = b64(text, &mut out).map(|_| out.clone());
            let theirs = URL_SAFE_NO_PAD
                .decode(text)
                .map_err(|_| DecodeError::Base64);
            assert_eq!(ours, theirs, "{text:?}");
        }
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
