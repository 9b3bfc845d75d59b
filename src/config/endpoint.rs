//! An endpoint the filter calls: `http(s)://authority/path?query`, as
//! `jwks_uri`, `discovery_uri`, `revocation_uri`, or a `jwks_uri` read from
//! discovery metadata.
#![forbid(unsafe_code)]

use crate::config::error::ConfigError;

/// A parsed `http(s)://authority/path` (`jwks_uri`, `discovery_uri`, or a
/// `jwks_uri` read from discovery metadata).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub uri: String,
    pub scheme: String,
    /// `host[:port]` as written in the URI; sent as `:authority`.
    pub authority: String,
    /// Path and query; sent as `:path`.
    pub path: String,
}

/// Parses `http(s)://authority/path?query`.
pub fn parse_endpoint(uri: &str) -> Result<Endpoint, ConfigError> {
    let err = |m: &str| ConfigError::new("jwks_uri", format!("{m}: {uri:?}"));
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| err("expected http:// or https:// URI"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(err("scheme must be http or https"));
    }
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty()
        || authority.contains('@')
        || authority.chars().any(|c| c.is_whitespace())
    {
        return Err(err("needs a host (and no user info)"));
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) || path.contains('#') {
        return Err(err(
            "path must not contain spaces, control characters or a fragment",
        ));
    }
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    Ok(Endpoint {
        uri: uri.to_string(),
        scheme,
        authority: authority.to_string(),
        path,
    })
}
