//! The admin path: `GET <prefix>/cache/info`, `POST <prefix>/cache/clear`,
//! `POST <prefix>/cache/clear/<kid>`, and the pushed deny entries
//! (`POST <prefix>/revocations?entries=<document>`, `GET
//! <prefix>/revocations` paged by `offset` and `limit`, `DELETE
//! <prefix>/revocations/<id>`), answered by the filter itself and protected
//! by a bearer token compared in constant time.
//!
//! A push carries its entries document (`{"entries": [...]}`, URL-encoded)
//! in the query, not in a body: Envoy's wasm host turns a filter's pause in
//! the header phase into a pause of the whole stream (proxy-wasm-cpp-host,
//! `ContextBase::convertVmCallResultToFilterHeadersStatus`), so a filter
//! cannot read a request body without first letting the headers go on to
//! the upstream. The query keeps the push inside the filter on every host.
#![forbid(unsafe_code)]

use serde_json::json;

use crate::config::AdminConfig;
use crate::response::{json_reply, LocalReply};

/// What an admin request asks for, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Info,
    ClearAll,
    ClearKid(String),
    /// Add deny entries: the entries document, from the query.
    RevocationsAdd(String),
    RevocationsList {
        offset: usize,
        limit: usize,
    },
    RevocationsDelete(String),
}

/// The largest page of `GET <prefix>/revocations`.
pub const MAX_PAGE: usize = 1000;

/// A query parameter's value, URL-decoded (`+` is a space).
fn query_param(query: &str, name: &str) -> Option<Option<String>> {
    let raw = query
        .split('&')
        .filter_map(|p| p.split_once('=').or(Some((p, ""))))
        .find(|(k, _)| *k == name)?
        .1;
    Some(decode_kid(&raw.replace('+', " ")))
}

/// `offset` and `limit` of a query string (defaults 0 and 100; `limit`
/// at most [`MAX_PAGE`]); `None` when one is not a number.
fn page(query: &str) -> Option<(usize, usize)> {
    let (mut offset, mut limit) = (0, 100);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "offset" => offset = v.parse().ok()?,
            "limit" => limit = v.parse::<usize>().ok()?.clamp(1, MAX_PAGE),
            _ => {}
        }
    }
    Some((offset, limit))
}

/// The routing decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Not under the admin prefix (or the admin path is off).
    NotAdmin,
    /// Refused or unknown: answer this.
    Reply(LocalReply),
    /// Authenticated and valid: run it.
    Run(Action),
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn error(status: u16, error: &str, message: &str) -> LocalReply {
    json_reply(status, json!({ "error": error, "message": message }))
}

fn decode_kid(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(c) = b.get(i) {
        if *c == b'%' {
            out.push(u8::from_str_radix(s.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(*c);
            i += 1;
        }
    }
    String::from_utf8(out).ok().filter(|k| !k.is_empty())
}

/// Routes a request. `path` is `:path` (the query is ignored, and a token
/// there is never accepted); `authorization` is the request's header.
pub fn route(
    admin: Option<&AdminConfig>,
    method: &str,
    path: &str,
    authorization: Option<&str>,
) -> Route {
    let Some(admin) = admin else {
        return Route::NotAdmin;
    };
    let path = path.split('#').next().unwrap_or_default();
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let Some(rest) = path.strip_prefix(admin.prefix.as_str()) else {
        return Route::NotAdmin;
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        return Route::NotAdmin;
    }

    let presented = authorization.and_then(|v| {
        let v = v.trim();
        v.get(..7)
            .filter(|p| p.eq_ignore_ascii_case("bearer "))
            .and_then(|_| v.get(7..))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    });
    let Some(presented) = presented else {
        let mut r = error(401, "unauthorized", "admin token required");
        r.headers.push((
            "www-authenticate".into(),
            "Bearer realm=\"jwt-jwks-admin\"".into(),
        ));
        return Route::Reply(r);
    };
    if !constant_time_eq(
        &hmac_sha256::Hash::hash(presented.as_bytes()),
        &admin.token_sha256,
    ) {
        return Route::Reply(error(403, "forbidden", "admin token refused"));
    }

    let (action, allowed) = match rest {
        "/cache/info" => (Action::Info, "GET"),
        "/cache/clear" => (Action::ClearAll, "POST"),
        "/revocations" if method == "POST" => match query_param(query, "entries") {
            Some(Some(doc)) => (Action::RevocationsAdd(doc), "POST"),
            _ => {
                return Route::Reply(error(
                    400,
                    "invalid_request",
                    "the entries document goes in the query: ?entries=<URL-encoded JSON>",
                ))
            }
        },
        "/revocations" => match page(query) {
            Some((offset, limit)) => (Action::RevocationsList { offset, limit }, "GET, POST"),
            None => {
                return Route::Reply(error(
                    400,
                    "invalid_request",
                    "offset and limit must be whole numbers",
                ))
            }
        },
        _ => {
            if let Some(id) = rest.strip_prefix("/revocations/").and_then(decode_kid) {
                if id.contains('/') {
                    return Route::Reply(error(404, "not_found", "unknown admin path"));
                }
                (Action::RevocationsDelete(id), "DELETE")
            } else {
                match rest.strip_prefix("/cache/clear/").and_then(decode_kid) {
                    Some(kid) if !kid.contains('/') => (Action::ClearKid(kid), "POST"),
                    _ => return Route::Reply(error(404, "not_found", "unknown admin path")),
                }
            }
        }
    };
    let method_ok = allowed.split(", ").any(|a| a == method)
        || (allowed.starts_with("GET") && method == "HEAD");
    if !method_ok {
        let mut r = error(
            405,
            "method_not_allowed",
            "method not allowed on this admin path",
        );
        r.headers.push(("allow".into(), allowed.into()));
        return Route::Reply(r);
    }
    Route::Run(action)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "admin-secret-0123456789";

    fn admin() -> AdminConfig {
        AdminConfig {
            prefix: "/jwt-jwks".into(),
            token_sha256: hmac_sha256::Hash::hash(TOKEN.as_bytes()),
        }
    }

    fn status(r: Route) -> u16 {
        match r {
            Route::Reply(r) => r.status,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn bearer() -> String {
        format!("Bearer {TOKEN}")
    }

    #[test]
    fn routes_with_the_right_token() {
        let a = admin();
        let b = bearer();
        assert_eq!(
            route(Some(&a), "GET", "/jwt-jwks/cache/info", Some(&b)),
            Route::Run(Action::Info)
        );
        assert_eq!(
            route(Some(&a), "POST", "/jwt-jwks/cache/clear", Some(&b)),
            Route::Run(Action::ClearAll)
        );
        assert_eq!(
            route(
                Some(&a),
                "POST",
                "/jwt-jwks/cache/clear/key%201?x=y",
                Some(&b)
            ),
            Route::Run(Action::ClearKid("key 1".into()))
        );
        assert_eq!(
            route(
                Some(&a),
                "GET",
                "/jwt-jwks/cache/info",
                Some(&format!("bearer  {TOKEN} "))
            ),
            Route::Run(Action::Info)
        );
    }

    #[test]
    fn refusals() {
        let a = admin();
        let b = bearer();
        assert_eq!(
            status(route(Some(&a), "GET", "/jwt-jwks/cache/info", None)),
            401
        );
        assert_eq!(
            status(route(
                Some(&a),
                "GET",
                &format!("/jwt-jwks/cache/info?token={TOKEN}"),
                None
            )),
            401
        );
        assert_eq!(
            status(route(
                Some(&a),
                "GET",
                "/jwt-jwks/cache/info",
                Some("Bearer wrong-token-wrong")
            )),
            403
        );
        assert_eq!(
            status(route(
                Some(&a),
                "GET",
                "/jwt-jwks/cache/info",
                Some(&format!("Basic {TOKEN}"))
            )),
            401
        );
        assert_eq!(
            status(route(Some(&a), "POST", "/jwt-jwks/cache/info", Some(&b))),
            405
        );
        assert_eq!(
            status(route(Some(&a), "GET", "/jwt-jwks/cache/clear", Some(&b))),
            405
        );
        assert_eq!(
            status(route(
                Some(&a),
                "DELETE",
                "/jwt-jwks/cache/clear/k",
                Some(&b)
            )),
            405
        );
        assert_eq!(
            status(route(Some(&a), "GET", "/jwt-jwks/cache", Some(&b))),
            404
        );
        assert_eq!(status(route(Some(&a), "GET", "/jwt-jwks", Some(&b))), 404);
        assert_eq!(
            status(route(Some(&a), "POST", "/jwt-jwks/cache/clear/", Some(&b))),
            404
        );
        assert_eq!(
            status(route(
                Some(&a),
                "POST",
                "/jwt-jwks/cache/clear/a/b",
                Some(&b)
            )),
            404
        );
    }

    #[test]
    fn revocation_routes() {
        let a = admin();
        let b = bearer();
        assert_eq!(
            route(
                Some(&a),
                "POST",
                "/jwt-jwks/revocations?entries=%7B%22entries%22%3A+%5B%5D%7D",
                Some(&b)
            ),
            Route::Run(Action::RevocationsAdd("{\"entries\": []}".into()))
        );
        assert_eq!(
            status(route(Some(&a), "POST", "/jwt-jwks/revocations", Some(&b))),
            400
        );
        assert_eq!(
            route(
                Some(&a),
                "GET",
                "/jwt-jwks/revocations?offset=5&limit=5000",
                Some(&b)
            ),
            Route::Run(Action::RevocationsList {
                offset: 5,
                limit: MAX_PAGE
            })
        );
        assert_eq!(
            route(Some(&a), "GET", "/jwt-jwks/revocations", Some(&b)),
            Route::Run(Action::RevocationsList {
                offset: 0,
                limit: 100
            })
        );
        assert_eq!(
            route(
                Some(&a),
                "DELETE",
                "/jwt-jwks/revocations/0123abcd",
                Some(&b)
            ),
            Route::Run(Action::RevocationsDelete("0123abcd".into()))
        );
        assert_eq!(
            status(route(
                Some(&a),
                "GET",
                "/jwt-jwks/revocations?limit=x",
                Some(&b)
            )),
            400
        );
        assert_eq!(
            status(route(Some(&a), "PUT", "/jwt-jwks/revocations", Some(&b))),
            405
        );
        assert_eq!(
            status(route(Some(&a), "GET", "/jwt-jwks/revocations/x", Some(&b))),
            405
        );
        assert_eq!(
            status(route(Some(&a), "POST", "/jwt-jwks/revocations", None)),
            401
        );
        assert_eq!(
            status(route(Some(&a), "DELETE", "/jwt-jwks/revocations/x", None)),
            401
        );
    }

    #[test]
    fn other_paths_and_an_absent_admin_config_are_not_admin() {
        let a = admin();
        assert_eq!(
            route(Some(&a), "GET", "/jwt-jwksX/cache/info", None),
            Route::NotAdmin
        );
        assert_eq!(
            route(Some(&a), "GET", "/api/jwt-jwks/cache/info", None),
            Route::NotAdmin
        );
        assert_eq!(
            route(None, "GET", "/jwt-jwks/cache/info", Some(&bearer())),
            Route::NotAdmin
        );
    }

    #[test]
    fn comparison_is_exact() {
        let x = [1u8; 32];
        let mut y = x;
        assert!(constant_time_eq(&x, &y));
        y[31] ^= 1;
        assert!(!constant_time_eq(&x, &y));
    }
}
