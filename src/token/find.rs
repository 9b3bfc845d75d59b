//! Where a token is found: configured headers, then query parameters, then
//! cookies (the seed plugin's order). The first found wins.
#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::sync::Arc;

use crate::config::Config;

/// Why a request's token cannot be taken (`authz::refusal` answers both
/// with 400 `invalid_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindError {
    /// Longer than `max_token_size`.
    TooLarge,
    /// Two copies of a token header, or one folded into a list.
    DuplicateHeader,
}

/// Where the token was found, so it can be removed before the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Header(Arc<str>),
    Query(Arc<str>),
    Cookie(Arc<str>),
}

/// A token, borrowed from the request where it can be, as the request
/// holds it (any bytes): [`Found::token`] checks and reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<'a> {
    raw: Cow<'a, [u8]>,
    pub source: Source,
}

impl Found<'_> {
    /// The token's bytes, unchecked: what the token cache is looked up by
    /// (it holds only tokens that [`Found::token`] accepted and that
    /// verified, so a hit needs no other check).
    pub fn bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The token as text. A comma in a header's token means the proxy
    /// folded two headers into one (a JWT never holds a comma): ambiguous,
    /// refused. Bytes that are not UTF-8 are read lossily (such a token
    /// never verifies).
    pub fn token(&self) -> Result<Cow<'_, str>, FindError> {
        if matches!(self.source, Source::Header(_)) && self.raw.contains(&b',') {
            return Err(FindError::DuplicateHeader);
        }
        Ok(text(&self.raw))
    }
}

/// UTF-8 as is (the fast check, nearly always), anything else lossily
/// (a token that is not UTF-8 never verifies, and is refused as
/// malformed). Also how the glue reads the header values it uses.
pub fn text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Strips a case-insensitive `Bearer ` scheme. For `Authorization` the
/// scheme is required; other headers may carry the bare token.
fn from_header<'a>(name: &str, value: &'a [u8]) -> Option<&'a [u8]> {
    let v = value.trim_ascii();
    let bearer = v
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case(b"bearer "))
        .and_then(|_| v.get(7..))
        .map(<[u8]>::trim_ascii_start);
    match bearer {
        Some(t) if !t.is_empty() => Some(t),
        Some(_) => None,
        None if name == "authorization" => None,
        None if v.is_empty() => None,
        None => Some(v),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b.get(i) {
            Some(b'%') => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            Some(b'+') => {
                out.push(b' ');
                i += 1;
            }
            Some(c) => {
                out.push(*c);
                i += 1;
            }
            None => break,
        }
    }
    String::from_utf8(out).ok()
}

fn query_param(path: &str, name: &str) -> Option<String> {
    let query = path.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| percent_decode(k).as_deref() == Some(name))
        .and_then(|(_, v)| percent_decode(v))
        .filter(|v| !v.is_empty())
}

/// A cookie value without the double quotes around it.
fn trim_quotes(mut v: &[u8]) -> &[u8] {
    while let [b'"', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b'"'] = v {
        v = rest;
    }
    v
}

fn cookie<'a, K: AsRef<[u8]>, V: AsRef<[u8]>>(
    headers: &'a [(K, V)],
    name: &str,
) -> Option<&'a [u8]> {
    headers
        .iter()
        .filter(|(k, _)| k.as_ref().eq_ignore_ascii_case(b"cookie"))
        .flat_map(|(_, v)| v.as_ref().split(|b| *b == b';'))
        .filter_map(|c| {
            let c = c.trim_ascii();
            let eq = c.iter().position(|b| *b == b'=')?;
            Some((c.get(..eq)?, c.get(eq + 1..)?))
        })
        .find(|(k, _)| *k == name.as_bytes())
        .map(|(_, v)| trim_quotes(v))
        .filter(|v| !v.is_empty())
}

/// Finds the request's token. `headers` are the request headers as the host
/// gives them (names lower-case in Envoy and Kong; values any bytes),
/// `path` is `:path`. A token from a header or cookie is borrowed from it.
pub fn extract<'a, K: AsRef<[u8]>, V: AsRef<[u8]>>(
    cfg: &Config,
    headers: &'a [(K, V)],
    path: &str,
) -> Result<Option<Found<'a>>, FindError> {
    let found = find(cfg, headers, path)?;
    if let Some(f) = &found {
        if f.raw.len() > cfg.max_token_size {
            return Err(FindError::TooLarge);
        }
    }
    Ok(found)
}

fn find<'a, K: AsRef<[u8]>, V: AsRef<[u8]>>(
    cfg: &Config,
    headers: &'a [(K, V)],
    path: &str,
) -> Result<Option<Found<'a>>, FindError> {
    for name in &cfg.header_names {
        let mut values = headers
            .iter()
            .filter(|(k, _)| k.as_ref().eq_ignore_ascii_case(name.as_bytes()));
        let Some((_, first)) = values.next() else {
            continue;
        };
        let first = first.as_ref();
        // A second header is ambiguous: refused. So is one the proxy
        // folded into a comma-separated list: `Found::token` refuses a
        // comma in the token, here one outside it (the token is the value
        // but for blanks and the scheme).
        if values.next().is_some() {
            return Err(FindError::DuplicateHeader);
        }
        match from_header(name, first) {
            Some(token) => {
                return Ok(Some(Found {
                    raw: Cow::Borrowed(token),
                    source: Source::Header(name.clone()),
                }))
            }
            None if first.contains(&b',') => return Err(FindError::DuplicateHeader),
            None => {}
        }
    }
    for name in &cfg.uri_param_names {
        if let Some(token) = query_param(path, name) {
            return Ok(Some(Found {
                raw: Cow::Owned(token.into_bytes()),
                source: Source::Query(name.clone()),
            }));
        }
    }
    for name in &cfg.cookie_names {
        if let Some(token) = cookie(headers, name) {
            return Ok(Some(Found {
                raw: Cow::Borrowed(token),
                source: Source::Cookie(name.clone()),
            }));
        }
    }
    Ok(None)
}

/// `:path` without the named query parameter (used when the token must not
/// reach the upstream). Works on bytes: a path is not always UTF-8, and
/// everything but the removed parameter goes upstream unchanged.
pub fn path_without_param(path: &[u8], name: &str) -> Vec<u8> {
    let Some(q) = path.iter().position(|b| *b == b'?') else {
        return path.to_vec();
    };
    let (base, query) = (
        path.get(..q).unwrap_or_default(),
        path.get(q + 1..).unwrap_or_default(),
    );
    let kept: Vec<&[u8]> = query
        .split(|b| *b == b'&')
        .filter(|kv| {
            let k = kv.split(|b| *b == b'=').next().unwrap_or_default();
            std::str::from_utf8(k)
                .ok()
                .and_then(percent_decode)
                .as_deref()
                != Some(name)
        })
        .collect();
    let mut out = base.to_vec();
    if !kept.is_empty() {
        out.push(b'?');
        out.extend_from_slice(&kept.join(&b'&'));
    }
    out
}

/// A `Cookie` header value without the named cookie, on bytes; `None` when
/// nothing is left.
pub fn cookie_without(value: &[u8], name: &str) -> Option<Vec<u8>> {
    let kept: Vec<&[u8]> = value
        .split(|b| *b == b';')
        .map(|c| c.trim_ascii())
        .filter(|c| {
            !c.is_empty()
                && c.split(|b| *b == b'=').next().map(<[u8]>::trim_ascii) != Some(name.as_bytes())
        })
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(kept.join(&b"; "[..]))
    }
}

/// Whether the request is a CORS preflight.
pub fn is_preflight<K: AsRef<[u8]>, V>(method: &str, headers: &[(K, V)]) -> bool {
    method == "OPTIONS"
        && headers
            .iter()
            .any(|(k, _)| k.as_ref().eq_ignore_ascii_case(b"origin"))
        && headers.iter().any(|(k, _)| {
            k.as_ref()
                .eq_ignore_ascii_case(b"access-control-request-method")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_HEADERS: &[(&str, &str)] = &[];

    fn cfg(extra: &str) -> Config {
        Config::parse(format!(r#"{{"jwks_uri":"http://a/j"{extra}}}"#).as_bytes()).unwrap()
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let c = cfg("");
        for v in ["Bearer abc", "bearer abc", "BEARER   abc", "  Bearer abc  "] {
            let one = h(&[("authorization", v)]);
            let f = extract(&c, &one, "/").unwrap().unwrap();
            assert_eq!(f.token().unwrap(), "abc", "{v}");
            assert_eq!(f.source, Source::Header("authorization".into()));
        }
        assert_eq!(
            extract(&c, &h(&[("authorization", "Basic dXNlcg==")]), "/").unwrap(),
            None
        );
        assert_eq!(
            extract(&c, &h(&[("authorization", "Bearer ")]), "/").unwrap(),
            None
        );
        assert_eq!(
            extract(&c, &h(&[("authorization", "abc")]), "/").unwrap(),
            None
        );
    }

    #[test]
    fn headers_then_query_then_cookie() {
        let c = cfg(r#","header_names":["Authorization","X-JWT-Token"]"#);
        let all = h(&[
            ("cookie", "a=1; jwt=fromcookie"),
            ("x-jwt-token", "fromheader"),
        ]);
        let f = extract(&c, &all, "/p?jwt=fromquery").unwrap().unwrap();
        assert_eq!(
            (f.token().unwrap().into_owned(), f.source),
            (
                "fromheader".to_string(),
                Source::Header("x-jwt-token".into())
            )
        );
        let only_cookie = h(&[("cookie", "jwt=fromcookie")]);
        let f = extract(&c, &only_cookie, "/p?x=1&jwt=fromquery")
            .unwrap()
            .unwrap();
        assert_eq!(
            (f.token().unwrap().into_owned(), f.source),
            ("fromquery".to_string(), Source::Query("jwt".into()))
        );
        let cookies = h(&[("cookie", "a=1; jwt=fromcookie")]);
        let f = extract(&c, &cookies, "/p").unwrap().unwrap();
        assert_eq!(
            (f.token().unwrap().into_owned(), f.source),
            ("fromcookie".to_string(), Source::Cookie("jwt".into()))
        );
        assert_eq!(extract(&c, NO_HEADERS, "/p?jwtx=1").unwrap(), None);
    }

    #[test]
    fn two_token_headers_are_a_bad_request() {
        let c = cfg("");
        let two = h(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert_eq!(extract(&c, &two, "/"), Err(FindError::DuplicateHeader));
        // A folded list: refused when the token is read, whether the comma
        // is in what would be the token or outside it.
        let folded = h(&[("authorization", "Bearer a, Bearer b")]);
        let f = extract(&c, &folded, "/").unwrap().unwrap();
        assert_eq!(f.bytes(), b"a, Bearer b");
        assert_eq!(f.token(), Err(FindError::DuplicateHeader));
        let basic = h(&[("authorization", "Basic a, Basic b")]);
        assert_eq!(extract(&c, &basic, "/"), Err(FindError::DuplicateHeader));
        // Only a header's token: a query parameter may hold a comma.
        let f = extract(&c, NO_HEADERS, "/?jwt=a%2Cb").unwrap().unwrap();
        assert_eq!(f.token().unwrap(), "a,b");
    }

    #[test]
    fn a_token_is_borrowed_as_the_request_holds_it() {
        let c = cfg(r#","header_names":["Authorization","X-JWT-Token"]"#);
        let raw: &[(&[u8], &[u8])] = &[(b"x-jwt-token", b" a.b\xff.c ")];
        let f = extract(&c, raw, "/").unwrap().unwrap();
        assert_eq!(f.bytes(), b"a.b\xff.c");
        assert_eq!(f.token().unwrap(), "a.b\u{fffd}.c", "read lossily");
        let quoted = h(&[("cookie", "jwt=\"\"q.r.s\"")]);
        let f = extract(&c, &quoted, "/").unwrap().unwrap();
        assert_eq!(f.token().unwrap(), "q.r.s");
    }

    #[test]
    fn size_limit_applies_to_every_source() {
        let c = cfg(r#","max_token_size":64"#);
        let big = "a".repeat(65);
        assert_eq!(
            extract(&c, &h(&[("authorization", &format!("Bearer {big}"))]), "/"),
            Err(FindError::TooLarge)
        );
        assert_eq!(
            extract(&c, NO_HEADERS, &format!("/?jwt={big}")),
            Err(FindError::TooLarge)
        );
        assert!(
            extract(&c, NO_HEADERS, &format!("/?jwt={}", "a".repeat(64)))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn removing_the_token_keeps_everything_else() {
        assert_eq!(
            path_without_param(b"/p?a=1&jwt=x&b=2", "jwt"),
            b"/p?a=1&b=2"
        );
        assert_eq!(path_without_param(b"/p?jwt=x", "jwt"), b"/p");
        assert_eq!(path_without_param(b"/p", "jwt"), b"/p");
        assert_eq!(
            path_without_param(b"/\xe9?a=\xff&jwt=x", "jwt"),
            b"/\xe9?a=\xff"
        );
        assert_eq!(
            cookie_without(b"a=1; jwt=x; b=2", "jwt").as_deref(),
            Some(&b"a=1; b=2"[..])
        );
        assert_eq!(
            cookie_without(b"t=\xe9t\xe9; jwt=x", "jwt").as_deref(),
            Some(&b"t=\xe9t\xe9"[..])
        );
        assert_eq!(cookie_without(b"jwt=x", "jwt"), None);
    }

    #[test]
    fn preflight_needs_origin_and_requested_method() {
        let both = h(&[
            ("origin", "https://app"),
            ("access-control-request-method", "GET"),
        ]);
        assert!(is_preflight("OPTIONS", &both));
        assert!(!is_preflight("GET", &both));
        assert!(!is_preflight("OPTIONS", &h(&[("origin", "https://app")])));
    }
}
