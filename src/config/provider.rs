//! Providers: one key source each (a JWKS endpoint, an OpenID Provider
//! metadata document that names one, and/or a static fallback key), its
//! refresh timings, and the claims its tokens must satisfy. The flat form (fields at top level) is one provider named
//! `default`.
#![forbid(unsafe_code)]

use std::sync::Arc;

use serde_json::Value;

use crate::config::endpoint::{parse_endpoint, Endpoint};
use crate::config::error::ConfigError;
use crate::config::fields::{describe, Fields};
use crate::config::introspection::{parse_introspection, IntrospectionSettings};
use crate::config::revocation::{parse_revocation, RevocationSource};
use crate::config::status_list::{parse_status_list, StatusListSettings};
use crate::crypto::alg::AlgSet;
use crate::crypto::key::{FallbackKey, KeyError};

/// The claims a provider's tokens must satisfy.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimsPolicy {
    pub issuers: Vec<String>,
    pub audiences: Vec<String>,
    pub require_exp: bool,
    pub require_nbf: bool,
    pub require_iat: bool,
    pub require_iss: bool,
    pub require_aud: bool,
    pub require_sub: bool,
    pub clock_skew_s: u64,
    pub max_token_age_s: Option<u64>,
}

/// One key source: a JWKS endpoint (configured, or found by discovery)
/// and/or a static fallback key.
#[derive(Clone, Debug)]
pub struct Provider {
    /// `default` for the flat single-provider form.
    pub name: String,
    /// The configured `jwks_uri`.
    pub jwks: Option<Endpoint>,
    /// Where the JWKS callout goes: an Envoy cluster name, or Kong's
    /// `host:port`. Empty with discovery and no `jwks_upstream`: then the
    /// authority of the discovered `jwks_uri`.
    pub upstream: String,
    /// The OpenID Provider metadata URL, instead of `jwks_uri`.
    pub discovery: Option<Endpoint>,
    /// Where the metadata callout goes (default: its authority).
    pub discovery_upstream: String,
    pub cache_ttl_s: u64,
    pub refresh_ahead_s: u64,
    pub timeout_ms: u64,
    pub retry_count: u32,
    pub retry_delay_ms: u64,
    pub min_refresh_interval_s: u64,
    pub max_cache_size: usize,
    pub max_jwks_size: usize,
    pub fallback: Option<Arc<FallbackKey>>,
    pub claims: ClaimsPolicy,
    /// `typ` values a token must carry (lower case, no `application/`);
    /// empty: any `JWT` or `*+jwt`, or none.
    pub allowed_types: Vec<String>,
    /// Every JWK must name its `alg` (`require_jwk_alg`).
    pub require_jwk_alg: bool,
    /// The pulled list of deny entries, if any.
    pub revocation: Option<RevocationSource>,
    /// Token Status List checks, if on.
    pub status_list: Option<StatusListSettings>,
    /// Opaque tokens checked at the authorization server, if on.
    pub introspection: Option<IntrospectionSettings>,
}

impl Provider {
    /// The URI that names this provider's key set in shared data: the
    /// `jwks_uri`, or the `discovery_uri`. `None` for a fallback key alone.
    pub fn key_set_uri(&self) -> Option<&str> {
        self.jwks
            .as_ref()
            .or(self.discovery.as_ref())
            .map(|e| e.uri.as_str())
    }

    /// The seconds below which no scheduled fetch follows another:
    /// `min_refresh_interval`, and never under one second.
    pub fn min_interval_s(&self) -> u64 {
        self.min_refresh_interval_s.max(1)
    }
}

/// A `typ` as compared: lower case, without the optional `application/`
/// prefix (RFC 7515 section 4.1.9).
pub fn media_type(typ: &str) -> String {
    let t = typ.to_ascii_lowercase();
    match t.strip_prefix("application/") {
        Some(rest) => rest.to_string(),
        None => t,
    }
}

/// Fields that belong to a provider: at top level in the flat form, inside
/// each entry of `providers` otherwise.
pub const PROVIDER_FIELDS: &[&str] = &[
    "issuers",
    "audiences",
    "jwks_uri",
    "jwks_upstream",
    "discovery_uri",
    "discovery_upstream",
    "cache_ttl",
    "refresh_ahead_time",
    "timeout",
    "retry_count",
    "retry_delay",
    "min_refresh_interval",
    "max_cache_size",
    "max_jwks_size",
    "fallback_public_key",
    "claims_to_verify",
    "clock_skew",
    "max_token_age",
    "allowed_types",
    "require_jwk_alg",
    "revocation_uri",
    "revocation_upstream",
    "revocation_refresh_interval",
    "max_staleness",
    "revocation_fail",
    "status_list",
    "status_list_upstream",
    "status_list_ttl",
    "max_status_list_size",
    "max_status_lists",
    "introspection",
];

const CLAIM_NAMES: &[&str] = &["exp", "nbf", "iat", "iss", "aud", "sub"];

/// The flat form (one provider, fields at top level) or `providers`.
pub(crate) fn parse_providers(f: &Fields, allowed: AlgSet) -> Result<Vec<Provider>, ConfigError> {
    let Some(list) = f.raw("providers") else {
        return Ok(vec![parse_provider(f, allowed, "default".to_string())?]);
    };
    if let Some(flat) = PROVIDER_FIELDS.iter().find(|n| f.has(n)) {
        return Err(f.err(
            flat,
            "set inside each entry of providers when providers is used",
        ));
    }
    let Value::Array(list) = list else {
        return Err(f.err(
            "providers",
            format!("expected an array, got {}", describe(list)),
        ));
    };
    if list.is_empty() {
        return Err(f.err("providers", "must list at least one provider"));
    }
    let mut known: Vec<&str> = PROVIDER_FIELDS.to_vec();
    known.push("name");
    let mut out: Vec<Provider> = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let pf = Fields::object(v, format!("providers[{i}]."), &known)?;
        let name = pf
            .string("name")?
            .ok_or_else(|| pf.err("name", "required"))?;
        if name.is_empty() || out.iter().any(|p| p.name == name) {
            return Err(pf.err("name", format!("{name:?} is empty or used twice")));
        }
        out.push(parse_provider(&pf, allowed, name)?);
    }
    if out.len() > 1 {
        for (i, p) in out.iter().enumerate() {
            if p.claims.issuers.is_empty() {
                return Err(f.err(
                    &format!("providers[{i}].issuers"),
                    "required when there are several providers: the token's iss selects the provider",
                ));
            }
            for iss in &p.claims.issuers {
                if out
                    .iter()
                    .skip(i + 1)
                    .any(|q| q.claims.issuers.contains(iss))
                {
                    return Err(f.err(
                        "providers",
                        format!("issuer {iss:?} is listed by two providers"),
                    ));
                }
            }
        }
    }
    Ok(out)
}

fn parse_provider(f: &Fields, allowed: AlgSet, name: String) -> Result<Provider, ConfigError> {
    let endpoint = |field: &str| -> Result<Option<Endpoint>, ConfigError> {
        match f.string(field)? {
            Some(uri) => Ok(Some(
                parse_endpoint(&uri).map_err(|e| f.err(field, e.message))?,
            )),
            None => Ok(None),
        }
    };
    let jwks = endpoint("jwks_uri")?;
    let discovery = endpoint("discovery_uri")?;
    if jwks.is_some() && discovery.is_some() {
        return Err(f.err("discovery_uri", "set jwks_uri or discovery_uri, not both"));
    }
    let fallback = match f.string("fallback_public_key")? {
        Some(pem) => Some(Arc::new(
            FallbackKey::from_pem(&pem, allowed)
                .map_err(|e: KeyError| f.err("fallback_public_key", e.to_string()))?,
        )),
        None => None,
    };
    if jwks.is_none() && discovery.is_none() && fallback.is_none() {
        return Err(f.err(
            "jwks_uri",
            "required (or set discovery_uri, or fallback_public_key for a static key)",
        ));
    }
    let upstream_field = |field: &str| -> Result<Option<String>, ConfigError> {
        match f.string(field)? {
            Some(u) if u.is_empty() => Err(f.err(field, "must not be empty")),
            other => Ok(other),
        }
    };
    let upstream = match upstream_field("jwks_upstream")? {
        Some(u) => u,
        None => jwks
            .as_ref()
            .map(|j| j.authority.clone())
            .unwrap_or_default(),
    };
    let discovery_upstream = match (upstream_field("discovery_upstream")?, &discovery) {
        (Some(_), None) => {
            return Err(f.err("discovery_upstream", "set only with discovery_uri"));
        }
        (Some(u), Some(_)) => u,
        (None, d) => d.as_ref().map(|d| d.authority.clone()).unwrap_or_default(),
    };

    let cache_ttl_s = f.count_in("cache_ttl", 3600, 1, 31 * 24 * 3600)?;
    // Unset, the refresh starts 300 s before the end of cache_ttl, or
    // halfway through a shorter one; set, it must leave the set fresh for a
    // while (else it would be due the moment it arrives).
    let refresh_ahead_s = match f.count("refresh_ahead_time")? {
        None => (cache_ttl_s / 2).min(300),
        Some(ahead) if ahead >= cache_ttl_s => {
            return Err(f.err(
                "refresh_ahead_time",
                format!(
                    "must be less than cache_ttl ({cache_ttl_s}), got {ahead}: the key set would be \
                     due for a refresh as soon as it arrives"
                ),
            ));
        }
        Some(ahead) => ahead,
    };
    let timeout_ms = f.count_in("timeout", 5000, 1, 600_000)?;
    let introspection = parse_introspection(f, timeout_ms, discovery.is_some())?;
    let retry_count = f.count_in("retry_count", 3, 0, 20)? as u32;
    let retry_delay_ms = f.count_in("retry_delay", 1000, 0, 600_000)?;
    let min_refresh_interval_s = f.count_in("min_refresh_interval", 30, 0, 24 * 3600)?;
    let max_cache_size = f.count_in("max_cache_size", 100, 1, 10_000)? as usize;
    let max_jwks_size = f.count_in("max_jwks_size", 1 << 20, 256, 16 << 20)? as usize;

    let issuers = f.strings("issuers")?.unwrap_or_default();
    if issuers.iter().any(|s| s.is_empty()) {
        return Err(f.err("issuers", "must not contain empty strings"));
    }
    if discovery.is_some() && issuers.is_empty() {
        return Err(f.err(
            "issuers",
            "required with discovery_uri: the metadata's issuer must be one of them",
        ));
    }
    let audiences = f.strings("audiences")?.unwrap_or_default();
    if audiences.iter().any(|s| s.is_empty()) {
        return Err(f.err("audiences", "must not contain empty strings"));
    }
    let listed = match f.strings("claims_to_verify")? {
        Some(list) => {
            for c in &list {
                if !CLAIM_NAMES.contains(&c.as_str()) {
                    return Err(f.err(
                        "claims_to_verify",
                        format!("{c:?} is not one of exp, nbf, iat, iss, aud, sub"),
                    ));
                }
            }
            list
        }
        None => vec!["exp".to_string()],
    };
    let has = |n: &str| listed.iter().any(|c| c == n);
    let mut allowed_types = Vec::new();
    for t in f.strings("allowed_types")?.unwrap_or_default() {
        let m = media_type(&t);
        if m != "jwt" && !m.ends_with("+jwt") {
            return Err(f.err(
                "allowed_types",
                format!("{t:?} is not JWT or a *+jwt media type (e.g. at+jwt)"),
            ));
        }
        if !allowed_types.contains(&m) {
            allowed_types.push(m);
        }
    }
    if f.has("allowed_types") && allowed_types.is_empty() {
        return Err(f.err("allowed_types", "must list at least one type"));
    }
    let require_jwk_alg = f.bool_or("require_jwk_alg", false)?;
    let clock_skew_s = f.count_in("clock_skew", 60, 0, 3600)?;
    let max_token_age_s = match f.count("max_token_age")? {
        Some(0) => return Err(f.err("max_token_age", "must be at least 1 second")),
        other => other,
    };
    let claims = ClaimsPolicy {
        require_exp: has("exp"),
        require_nbf: has("nbf"),
        require_iat: has("iat") || max_token_age_s.is_some(),
        require_iss: has("iss") || !issuers.is_empty(),
        require_aud: has("aud") || !audiences.is_empty(),
        require_sub: has("sub"),
        issuers,
        audiences,
        clock_skew_s,
        max_token_age_s,
    };

    Ok(Provider {
        name,
        jwks,
        upstream,
        discovery,
        discovery_upstream,
        cache_ttl_s,
        refresh_ahead_s,
        timeout_ms,
        retry_count,
        retry_delay_ms,
        min_refresh_interval_s,
        max_cache_size,
        max_jwks_size,
        fallback,
        claims,
        allowed_types,
        require_jwk_alg,
        revocation: parse_revocation(f)?,
        status_list: parse_status_list(f)?,
        introspection,
    })
}
