//! The token's header and claims reader (`jose::Header::parse`,
//! `jose::Claims::parse`, on `src/token/json.rs`) against serde_json with the
//! derived structs it replaced, on random documents and random mutations of
//! them. They must agree on every document that is a JSON object: the same
//! accept or refuse, and the same values. The intended differences: a
//! header or claims set that is not an object (serde's derived structs also
//! took a JSON array, field by field) is refused, and so is a document with a
//! member name repeated in any of its objects (serde_json keeps the last
//! value; issue 19, item 3): the reference is serde_json plus [`NoDup`].

mod common;

use common::Rng;
use jwt_jwks::token::jose::{Claims, Header};
use serde::de::{self, Deserializer};
use serde::Deserialize;

// ---- the reference: serde_json with the structs the filter used before.

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct RefHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    cty: Option<String>,
    #[serde(default)]
    crit: Option<Vec<String>>,
    #[serde(default)]
    jku: Option<serde_json::Value>,
    #[serde(default)]
    x5u: Option<serde_json::Value>,
    #[serde(default)]
    jwk: Option<serde_json::Value>,
    #[serde(default)]
    x5c: Option<serde_json::Value>,
}

#[derive(Debug, PartialEq)]
struct RefAudience(Vec<String>);

impl<'de> Deserialize<'de> for RefAudience {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum A {
            One(String),
            Many(Vec<String>),
        }
        Ok(RefAudience(match A::deserialize(d)? {
            A::One(s) => vec![s],
            A::Many(v) => v,
        }))
    }
}

#[derive(Debug)]
struct RefDate(f64);

impl<'de> Deserialize<'de> for RefDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if !v.is_finite() || v < 0.0 {
            return Err(de::Error::custom("a date must be a non-negative number"));
        }
        Ok(RefDate(v))
    }
}

#[derive(Debug, Deserialize)]
struct RefClaims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<RefAudience>,
    #[serde(default)]
    exp: Option<RefDate>,
    #[serde(default)]
    nbf: Option<RefDate>,
    #[serde(default)]
    iat: Option<RefDate>,
    #[serde(default)]
    jti: Option<String>,
}

// ---- random documents.

const KEYS: &[&str] = &[
    "alg", "kid", "typ", "cty", "crit", "jku", "x5u", "jwk", "x5c", "iss", "sub", "aud", "exp",
    "nbf", "iat", "jti", "scope", "roles", "x", "",
];

fn string(rng: &mut Rng) -> String {
    let mut s = String::from("\"");
    for _ in 0..rng.below(12) {
        match rng.below(16) {
            0 => s.push_str("\\\""),
            1 => s.push_str("\\\\"),
            2 => s.push_str("\\/"),
            3 => s.push_str(["\\b", "\\f", "\\n", "\\r", "\\t"][rng.below(5)]),
            4 => s.push_str(&format!("\\u{:04x}", rng.below(0x3000))),
            5 => s.push_str("\\ud83d\\ude00"),
            6 => s.push_str(["\\ud83d", "\\ude00", "\\uD800\\u0041"][rng.below(3)]),
            7 => s.push_str(["é", "€", "😀"][rng.below(3)]),
            _ => s.push((b'a' + rng.below(26) as u8) as char),
        }
    }
    s.push('"');
    s
}

fn number(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => "0".into(),
        1 => format!("-{}", rng.below(100_000)),
        2 => format!("{}.{}", rng.below(2_000_000_000), rng.below(1000)),
        3 => format!("{}e{}", rng.below(100), rng.below(30)),
        4 => format!("{}E-{}", 1 + rng.below(100), rng.below(10)),
        5 => format!("{}", rng.next()),
        6 => "123456789012345678901234567890".into(),
        7 => ["1e400", "-0", "0.0", "-1.5e-3", "1e+2"][rng.below(5)].into(),
        _ => format!("{}", 1_600_000_000 + rng.below(400_000_000)),
    }
}

fn value(rng: &mut Rng, depth: usize) -> String {
    let pick = if depth > 3 {
        rng.below(5)
    } else {
        rng.below(8)
    };
    match pick {
        0 | 1 => string(rng),
        2 => number(rng),
        3 => ["null", "true", "false"][rng.below(3)].into(),
        4 => string(rng),
        5 => {
            let items: Vec<String> = (0..rng.below(4))
                .map(|_| {
                    if rng.below(2) == 0 {
                        string(rng)
                    } else {
                        value(rng, depth + 1)
                    }
                })
                .collect();
            format!("[{}]", items.join(","))
        }
        _ => object(rng, depth + 1),
    }
}

fn ws(rng: &mut Rng) -> &'static str {
    [" ", "", "", "\n", "\t", " \r\n "][rng.below(6)]
}

fn object(rng: &mut Rng, depth: usize) -> String {
    let members: Vec<String> = (0..rng.below(9))
        .map(|_| {
            let key = KEYS[rng.below(KEYS.len())];
            let key = if rng.below(20) == 0 && !key.is_empty() {
                // The same name, escaped.
                format!("\\u{:04x}{}", key.as_bytes()[0], &key[1..])
            } else {
                key.to_string()
            };
            format!(
                "{}\"{key}\"{}:{}{}",
                ws(rng),
                ws(rng),
                ws(rng),
                value(rng, depth)
            )
        })
        .collect();
    format!("{{{}}}", members.join(","))
}

fn mutate(rng: &mut Rng, doc: &str) -> String {
    let mut b = doc.as_bytes().to_vec();
    for _ in 0..1 + rng.below(3) {
        if b.is_empty() {
            break;
        }
        let i = rng.below(b.len());
        match rng.below(5) {
            0 => {
                b.remove(i);
            }
            1 => b.insert(i, b"{}[]\",:\\ 0-.eE+un"[rng.below(17)]),
            2 => b.truncate(i),
            3 => b[i] = b"{}[]\",:\\ 0-.eE+"[rng.below(15)],
            _ => b.insert(i, 0x01),
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

// ---- comparison.

fn same_date(ours: Option<f64>, theirs: Option<f64>) -> bool {
    match (ours, theirs) {
        (None, None) => true,
        // serde_json (without float_roundtrip) may round a decimal fraction
        // one unit in the last place differently.
        (Some(a), Some(b)) => a == b || ((a - b) / b).abs() < 1e-15,
        _ => false,
    }
}

/// The duplicate rule, written independently of the reader under test: on a
/// document serde_json accepts, whether some object repeats a member name
/// (names compared after unescaping, as UTF-16 units), or has a name that is
/// not text (a lone surrogate: the reader decodes every name to compare it).
fn names_ok(doc: &str) -> bool {
    enum Frame {
        Object(std::collections::HashSet<Vec<u16>>),
        Array,
    }
    let chars: Vec<char> = doc.chars().collect();
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '{' => stack.push(Frame::Object(Default::default())),
            '[' => stack.push(Frame::Array),
            '}' | ']' => {
                stack.pop();
            }
            '"' => {
                let mut units: Vec<u16> = Vec::new();
                i += 1;
                while chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                        let c = match chars[i] {
                            'u' => {
                                let hex: String = chars[i + 1..i + 5].iter().collect();
                                i += 4;
                                units.push(u16::from_str_radix(&hex, 16).unwrap());
                                i += 1;
                                continue;
                            }
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            'b' => '\u{8}',
                            'f' => '\u{c}',
                            other => other,
                        };
                        let mut buf = [0u16; 2];
                        units.extend_from_slice(c.encode_utf16(&mut buf));
                    } else {
                        let mut buf = [0u16; 2];
                        units.extend_from_slice(chars[i].encode_utf16(&mut buf));
                    }
                    i += 1;
                }
                let mut j = i + 1;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                if let (Some(Frame::Object(seen)), Some(':')) = (stack.last_mut(), chars.get(j)) {
                    if String::from_utf16(&units).is_err() || !seen.insert(units) {
                        return false;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    true
}

/// serde_json's verdict, with the name rule on top.
fn reference<T: de::DeserializeOwned>(doc: &str) -> Result<T, String> {
    let t = serde_json::from_str::<T>(doc).map_err(|e| e.to_string())?;
    if !names_ok(doc) {
        return Err("a repeated member name".to_string());
    }
    Ok(t)
}

fn compare(doc: &str) {
    let is_object = doc.trim_start().starts_with('{');
    let theirs = reference::<RefHeader>(doc);
    match Header::parse(doc) {
        Ok(h) => {
            let t =
                theirs.unwrap_or_else(|e| panic!("header accepted, serde refused ({e}): {doc}"));
            assert_eq!(&*h.alg, t.alg, "{doc}");
            assert_eq!(h.kid.as_deref(), t.kid.as_deref(), "{doc}");
            assert_eq!(h.typ.as_deref(), t.typ.as_deref(), "{doc}");
            assert_eq!(h.cty.as_deref(), t.cty.as_deref(), "{doc}");
            let crit: Option<Vec<&str>> = h.crit.as_ref().map(|c| c.iter().map(|s| &**s).collect());
            let tcrit: Option<Vec<&str>> =
                t.crit.as_ref().map(|c| c.iter().map(|s| &**s).collect());
            assert_eq!(crit, tcrit, "{doc}");
        }
        Err(_) => assert!(
            theirs.is_err() || !is_object,
            "header refused, serde accepted: {doc}"
        ),
    }
    let theirs = reference::<RefClaims>(doc);
    match Claims::parse(doc) {
        Ok(c) => {
            let t =
                theirs.unwrap_or_else(|e| panic!("claims accepted, serde refused ({e}): {doc}"));
            assert_eq!(c.iss.as_deref(), t.iss.as_deref(), "{doc}");
            assert_eq!(c.sub.as_deref(), t.sub.as_deref(), "{doc}");
            assert_eq!(c.jti.as_deref(), t.jti.as_deref(), "{doc}");
            let aud: Option<Vec<String>> =
                c.aud.as_ref().map(|a| a.iter().map(String::from).collect());
            assert_eq!(aud, t.aud.map(|a| a.0), "{doc}");
            assert!(
                same_date(c.exp.map(|d| d.0), t.exp.map(|d| d.0)),
                "exp {doc}"
            );
            assert!(
                same_date(c.nbf.map(|d| d.0), t.nbf.map(|d| d.0)),
                "nbf {doc}"
            );
            assert!(
                same_date(c.iat.map(|d| d.0), t.iat.map(|d| d.0)),
                "iat {doc}"
            );
        }
        Err(_) => assert!(
            theirs.is_err() || !is_object,
            "claims refused, serde accepted: {doc}"
        ),
    }
}

#[test]
fn header_and_claims_read_as_serde_json_did() {
    let mut rng = Rng(0x6a77_745f_6a73_6f6e);
    let (mut accepted, mut total) = (0, 0);
    for _ in 0..40_000 {
        let doc = object(&mut rng, 0);
        for d in [doc.clone(), mutate(&mut rng, &doc), mutate(&mut rng, &doc)] {
            compare(&d);
            total += 1;
            if Claims::parse(&d).is_ok() {
                accepted += 1;
            }
        }
    }
    // Both outcomes are exercised, not only one.
    assert!(
        accepted > total / 10 && accepted < total * 9 / 10,
        "{accepted}/{total}"
    );
}

#[test]
fn the_intended_difference_is_only_non_objects() {
    // serde's derived structs read an array field by field; a JOSE header
    // and a claims set are JSON objects (RFC 7515, RFC 7519).
    assert!(serde_json::from_str::<RefHeader>(r#"["RS256"]"#).is_ok());
    assert!(Header::parse(r#"["RS256"]"#).is_err());
    assert!(serde_json::from_str::<RefClaims>("[]").is_ok());
    assert!(Claims::parse("[]").is_err());
    for doc in ["\"x\"", "1", "null", "true"] {
        assert!(
            Header::parse(doc).is_err() && Claims::parse(doc).is_err(),
            "{doc}"
        );
    }
}

#[test]
fn hand_picked_documents_agree() {
    for doc in [
        r#"{"alg":"RS256","kid":"a","alg":"ES256"}"#,
        r#"{"\u0061lg":"RS256","alg":"ES256"}"#,
        r#"{"alg":"RS256","crit":[]}"#,
        r#"{"alg":"RS256","crit":null,"kid":null}"#,
        r#"{"alg":"RS256","jwk":{"n":1e400}}"#,
        r#"{"alg":"RS256","x5c":["MIIB"],"x5c":[]}"#,
        r#"{"alg":"RS256","other":1e400}"#,
        r#"{"alg":null}"#,
        r#"{"aud":["a","b"],"aud":"c"}"#,
        r#"{"aud":[],"exp":1.5,"nbf":0,"iat":-0}"#,
        r#"{"exp":-1}"#,
        r#"{"exp":1e400}"#,
        r#"{"exp":"1"}"#,
        r#"{"iss":"https:\/\/idp","sub":"\ud83d\ude00","x":{"y":[{"z":null}]}}"#,
        r#"{"iss":"\ud83d"}"#,
        r#"{"scope":"a b","roles":["x"],"exp":1700000000.123456789}"#,
        "{\"iss\":\"a\tb\"}",
        r#"{"\ud800":1}"#,
        r#"{"x":{"\ud800":"\udc00"}}"#,
        r#"{"a\u0000b":1,"iss":"\u0000"}"#,
        " {} ",
        "{} {}",
    ] {
        compare(doc);
    }
}

#[test]
fn repeated_names_are_the_other_intended_difference() {
    // Issue 19, item 3: serde_json keeps the last of two values; an upstream
    // reading the forwarded payload may keep the first. Both readers here
    // refuse, at any depth.
    for doc in [
        r#"{"exp":1,"scope":"read","scope":"admin"}"#,
        r#"{"realm_access":{"roles":["a"],"roles":["admin"]}}"#,
        r#"{"x":[{"k":1,"k":2}]}"#,
    ] {
        assert!(serde_json::from_str::<RefClaims>(doc).is_ok(), "{doc}");
        assert!(Claims::parse(doc).is_err(), "{doc}");
        assert!(!names_ok(doc), "{doc}");
    }
    assert!(Header::parse(r#"{"alg":"RS256","x-custom":1,"x-custom":2}"#).is_err());
}
