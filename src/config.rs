//! The filter's JSON configuration: field names, defaults, and validation
//! with errors that name the field.
//!
//! Field names and units mirror the Kong `jwt-jwks` plugin where a field
//! means the same thing; see the README's configuration reference.
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::alg::{Alg, AlgSet};
use crate::keys::{FallbackKey, KeyError};
use crate::rules::{self, ClaimPaths, Requirements, Rule};

/// A configuration refused at configure time. `field` names the offending
/// field (dotted for nested values) so the operator knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        ConfigError {
            // An empty JSON key must still be named (found by fuzzing).
            field: if field.is_empty() {
                "\"\"".to_string()
            } else {
                field.to_string()
            },
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration: field `{}`: {}",
            self.field, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// Which token field selects the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyClaim {
    /// The JOSE header's `kid` picks one key (this filter's default).
    Kid,
    /// The token's `iss` picks the provider; its keys are tried by `alg`.
    Iss,
}

/// A parsed `jwks_uri`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwksUri {
    pub uri: String,
    pub scheme: String,
    /// `host[:port]` as written in the URI; sent as `:authority`.
    pub authority: String,
    /// Path and query; sent as `:path`.
    pub path: String,
}

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

/// One key source: a JWKS endpoint and/or a static fallback key.
#[derive(Clone, Debug)]
pub struct Provider {
    /// `default` for the flat single-provider form.
    pub name: String,
    pub jwks: Option<JwksUri>,
    /// Where the callout goes: an Envoy cluster name, or Kong's `host:port`.
    pub upstream: String,
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
}

/// The admin path, present only when a token protects it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminConfig {
    pub prefix: String,
    /// SHA-256 of the admin bearer token.
    pub token_sha256: [u8; 32],
}

/// How requests paused for keys are woken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitMode {
    /// Decide from the host at the first request (`shared` on Envoy).
    Auto,
    /// One fetch wakes every paused request (needs a host whose
    /// `set_effective_context` works, like Envoy).
    Shared,
    /// Every paused request is woken by a callout of its own (hosts where
    /// one context cannot resume another, like ngx_wasm_module / Kong).
    PerRequest,
}

/// Whether signatures are checked by the host's crypto.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostCryptoMode {
    /// When the host is Envoy (it answers `plugin_vm_id`).
    Auto,
    /// Always (only on a host with `verify_signature`: elsewhere the call
    /// is a host trap).
    On,
    Off,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub providers: Vec<Provider>,
    /// Lower-case header names, in search order.
    pub header_names: Vec<String>,
    pub uri_param_names: Vec<String>,
    pub cookie_names: Vec<String>,
    pub max_token_size: usize,
    pub run_on_preflight: bool,
    pub key_claim: KeyClaim,
    pub allowed_algorithms: AlgSet,
    pub forward_token: bool,
    pub realm: String,
    pub admin: Option<AdminConfig>,
    pub max_pending_requests: usize,
    pub wait_mode: WaitMode,
    /// Verified-token cache per worker: entries (0 disables) and bytes.
    pub token_cache_size: usize,
    pub token_cache_max_bytes: usize,
    pub host_crypto: HostCryptoMode,
    /// Per-route policy, first match wins.
    pub rules: Vec<Rule>,
    /// Requirements when no rule matches.
    pub default_require: Requirements,
    pub claim_paths: ClaimPaths,
    /// (claim path, lower-case header name).
    pub claims_to_headers: Vec<(Vec<String>, String)>,
    pub payload_header: Option<String>,
    /// Host property for the verified identity (Envoy filter state
    /// `wasm.<name>`); `None` disables.
    pub identity_property: Option<String>,
    /// `ssl_verify` as written, kept only to log where TLS is really set.
    pub ssl_verify: Option<bool>,
}

/// Every top-level field this filter accepts.
pub const FIELDS: &[&str] = &[
    "jwks_uri",
    "jwks_upstream",
    "cache_ttl",
    "header_names",
    "run_on_preflight",
    "timeout",
    "ssl_verify",
    "key_claim_name",
    "fallback_public_key",
    "allowed_algorithms",
    "claims_to_verify",
    "max_cache_size",
    "refresh_ahead_time",
    "retry_count",
    "retry_delay",
    "issuers",
    "audiences",
    "clock_skew",
    "max_token_age",
    "uri_param_names",
    "cookie_names",
    "max_token_size",
    "min_refresh_interval",
    "max_jwks_size",
    "forward_token",
    "admin_path_prefix",
    "admin_token",
    "admin_token_sha256",
    "realm",
    "max_pending_requests",
    "wait_mode",
    "providers",
    "rules",
    "scopes",
    "permissions",
    "roles",
    "scope_claims",
    "permissions_claims",
    "roles_claims",
    "claims_to_headers",
    "payload_header",
    "identity_property",
    "token_cache_size",
    "token_cache_max_bytes",
    "host_crypto",
];

/// Fields that belong to a provider: at top level in the flat form, inside
/// each entry of `providers` otherwise.
pub const PROVIDER_FIELDS: &[&str] = &[
    "issuers",
    "audiences",
    "jwks_uri",
    "jwks_upstream",
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
];

/// Headers the filter never sets from claims.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
];

const CLAIM_NAMES: &[&str] = &["exp", "nbf", "iat", "iss", "aud", "sub"];

/// Reads fields from the JSON object, turning `null` into "not set" (Kong
/// sends `null` for unset optional fields) and naming the field on errors.
pub(crate) struct Fields<'a> {
    map: &'a Map<String, Value>,
    /// Prepended to field names in errors (`providers[1].`, `rules[0].`).
    prefix: String,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(map: &'a Map<String, Value>, prefix: String) -> Self {
        Fields { map, prefix }
    }

    /// Reads a nested object's fields, refusing names not in `known`.
    pub(crate) fn object(
        v: &'a Value,
        prefix: String,
        known: &[&str],
    ) -> Result<Self, ConfigError> {
        let Value::Object(map) = v else {
            return Err(ConfigError::new(
                prefix.trim_end_matches('.'),
                format!("expected an object, got {}", describe(v)),
            ));
        };
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                return Err(ConfigError::new(&format!("{prefix}{key}"), "unknown field"));
            }
        }
        Ok(Fields { map, prefix })
    }

    pub(crate) fn err(&self, name: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::new(&format!("{}{name}", self.prefix), message)
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        !matches!(self.map.get(name), None | Some(Value::Null))
    }

    pub(crate) fn raw(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    pub(crate) fn get<T: DeserializeOwned>(
        &self,
        name: &str,
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|_| self.err(name, format!("expected {expected}, got {}", describe(v)))),
        }
    }

    pub(crate) fn bool_or(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        Ok(self.get::<bool>(name, "true or false")?.unwrap_or(default))
    }

    /// A non-negative whole number (JSON numbers like `3600.0` are accepted).
    pub(crate) fn count(&self, name: &str) -> Result<Option<u64>, ConfigError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let n = v.as_f64().ok_or_else(|| {
                    self.err(name, format!("expected a number, got {}", describe(v)))
                })?;
                if !n.is_finite() || n < 0.0 || n.fract() != 0.0 || n > 1e15 {
                    return Err(self.err(
                        name,
                        format!("expected a non-negative whole number, got {n}"),
                    ));
                }
                Ok(Some(n as u64))
            }
        }
    }

    pub(crate) fn count_in(
        &self,
        name: &str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let n = self.count(name)?.unwrap_or(default);
        if n < min || n > max {
            return Err(self.err(name, format!("must be between {min} and {max}, got {n}")));
        }
        Ok(n)
    }

    pub(crate) fn string(&self, name: &str) -> Result<Option<String>, ConfigError> {
        self.get::<String>(name, "a string")
    }

    pub(crate) fn strings(&self, name: &str) -> Result<Option<Vec<String>>, ConfigError> {
        self.get::<Vec<String>>(name, "an array of strings")
    }
}

pub(crate) fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Config {
    /// Every header the filter may set upstream: incoming copies are removed.
    pub fn forwarded_headers(&self) -> impl Iterator<Item = &str> {
        self.claims_to_headers
            .iter()
            .map(|(_, h)| h.as_str())
            .chain(self.payload_header.as_deref())
    }

    /// Settings that load but deserve the operator's attention.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(v) = self.ssl_verify {
            out.push(format!(
                "ssl_verify={v} is not enforced by the filter: TLS of the JWKS callout is the host's \
                 (Envoy: the cluster's transport_socket; Kong: nginx_wasm_tls_verify_cert, nginx_wasm_tls_verify_host \
                 and nginx_wasm_tls_trusted_certificate, derived from lua_ssl_* by default)"
            ));
        }
        if self.key_claim == KeyClaim::Iss
            && self.providers.iter().any(|p| p.claims.issuers.is_empty())
        {
            out.push(
                "key_claim_name=iss without issuers: tokens of any issuer signed by the provider's keys are \
                 accepted; list the expected issuers in issuers"
                    .to_string(),
            );
        }
        out
    }

    /// Parses and validates the plugin configuration.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| ConfigError::new("(configuration)", format!("not valid JSON: {e}")))?;
        let map = match &value {
            Value::Object(m) => m,
            other => {
                return Err(ConfigError::new(
                    "(configuration)",
                    format!("expected a JSON object, got {}", describe(other)),
                ))
            }
        };
        for key in map.keys() {
            if !FIELDS.contains(&key.as_str()) {
                return Err(ConfigError::new(key, "unknown field"));
            }
        }
        let f = Fields::new(map, String::new());

        let allowed = parse_algorithms(&f)?;
        let key_claim = match f.string("key_claim_name")?.as_deref() {
            None | Some("kid") => KeyClaim::Kid,
            Some("iss") => KeyClaim::Iss,
            Some(other) => {
                return Err(ConfigError::new(
                    "key_claim_name",
                    format!("must be \"kid\" or \"iss\", got {other:?}"),
                ))
            }
        };

        let mut providers = parse_providers(&f, allowed)?;
        if key_claim == KeyClaim::Iss || providers.len() > 1 {
            // The issuer selects the provider: a token without one selects nothing.
            for p in providers.iter_mut() {
                p.claims.require_iss = true;
            }
        }
        let names_of: Vec<String> = providers.iter().map(|p| p.name.clone()).collect();
        let provider_index = |n: &str| names_of.iter().position(|x| x == n);
        let rules = match f.raw("rules") {
            None => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, r)| rules::parse_rule(r, i, &provider_index))
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(f.err(
                    "rules",
                    format!("expected an array, got {}", describe(other)),
                ))
            }
        };
        let default_require = rules::parse_requirements(&f)?;
        let claim_paths = rules::parse_claim_paths(&f)?;
        let claims_to_headers = parse_claims_to_headers(&f)?;
        let payload_header = match f.string("payload_header")? {
            Some(h) => Some(header_name(&f, "payload_header", &h)?),
            None => None,
        };
        if let Some(h) = &payload_header {
            if claims_to_headers.iter().any(|(_, x)| x == h) {
                return Err(f.err(
                    "payload_header",
                    format!("{h:?} is also a claims_to_headers target"),
                ));
            }
        }
        let identity_property = match map.get("identity_property") {
            None => Some("jwt_jwks_identity".to_string()),
            Some(Value::Null) => None,
            Some(_) => {
                let p = f.string("identity_property")?.unwrap_or_default();
                if p.is_empty()
                    || !p
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(f.err("identity_property", "letters, digits, '_' and '-' only"));
                }
                Some(p)
            }
        };
        let header_names = names(&f, "header_names", &["Authorization"], true)?;
        let uri_param_names = names(&f, "uri_param_names", &["jwt"], false)?;
        let cookie_names = names(&f, "cookie_names", &["jwt"], false)?;

        let realm = f.string("realm")?.unwrap_or_else(|| "jwt-jwks".to_string());
        if realm.is_empty()
            || !realm
                .chars()
                .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\')
        {
            return Err(ConfigError::new(
                "realm",
                "must be non-empty printable ASCII without quotes or backslashes",
            ));
        }

        let admin = parse_admin(&f)?;
        let max_token_size = f.count_in("max_token_size", 8192, 64, 1 << 20)? as usize;
        let max_pending_requests = f.count_in("max_pending_requests", 1000, 0, 1_000_000)? as usize;
        let wait_mode = match f.string("wait_mode")?.as_deref() {
            None | Some("auto") => WaitMode::Auto,
            Some("shared") => WaitMode::Shared,
            Some("per_request") => WaitMode::PerRequest,
            Some(other) => {
                return Err(ConfigError::new(
                    "wait_mode",
                    format!("must be \"auto\", \"shared\" or \"per_request\", got {other:?}"),
                ))
            }
        };

        let token_cache_size = f.count_in("token_cache_size", 4096, 0, 1_000_000)? as usize;
        let token_cache_max_bytes =
            f.count_in("token_cache_max_bytes", 2 << 20, 4096, 1 << 30)? as usize;
        let host_crypto = match f.string("host_crypto")?.as_deref() {
            None | Some("auto") => HostCryptoMode::Auto,
            Some("on") => HostCryptoMode::On,
            Some("off") => HostCryptoMode::Off,
            Some(other) => {
                return Err(f.err(
                    "host_crypto",
                    format!("must be \"auto\", \"on\" or \"off\", got {other:?}"),
                ))
            }
        };
        Ok(Config {
            host_crypto,
            token_cache_size,
            token_cache_max_bytes,
            providers,
            rules,
            default_require,
            claim_paths,
            claims_to_headers,
            payload_header,
            identity_property,
            header_names,
            uri_param_names,
            cookie_names,
            max_token_size,
            run_on_preflight: f.bool_or("run_on_preflight", false)?,
            key_claim,
            allowed_algorithms: allowed,
            forward_token: f.bool_or("forward_token", true)?,
            realm,
            admin,
            max_pending_requests,
            wait_mode,
            ssl_verify: f.get::<bool>("ssl_verify", "true or false")?,
        })
    }
}

fn parse_algorithms(f: &Fields) -> Result<AlgSet, ConfigError> {
    let Some(list) = f.strings("allowed_algorithms")? else {
        return Ok(AlgSet::of(&Alg::DEFAULT_ALLOWED));
    };
    let mut set = AlgSet::empty();
    for name in &list {
        match Alg::parse(name) {
            Some(a) => set.insert(a),
            None => {
                let why = if name.eq_ignore_ascii_case("none") || name.starts_with("HS") {
                    "is never accepted with public keys"
                } else {
                    "is not a supported algorithm (RS256/384/512, PS256/384/512, ES256/384/512, EdDSA)"
                };
                return Err(ConfigError::new(
                    "allowed_algorithms",
                    format!("{name:?} {why}"),
                ));
            }
        }
    }
    if set.is_empty() {
        return Err(ConfigError::new(
            "allowed_algorithms",
            "must list at least one algorithm",
        ));
    }
    Ok(set)
}

/// The flat form (one provider, fields at top level) or `providers`.
fn parse_providers(f: &Fields, allowed: AlgSet) -> Result<Vec<Provider>, ConfigError> {
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

fn header_name(f: &Fields, field: &str, name: &str) -> Result<String, ConfigError> {
    let lower = name.to_ascii_lowercase();
    let valid = !lower.is_empty()
        && lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~!#$&'*+^`|".contains(&b));
    if !valid || RESERVED_HEADERS.contains(&lower.as_str()) {
        return Err(f.err(
            field,
            format!("{name:?} is not a header name the filter may set"),
        ));
    }
    Ok(lower)
}

fn parse_claims_to_headers(f: &Fields) -> Result<Vec<(Vec<String>, String)>, ConfigError> {
    let Some(v) = f.raw("claims_to_headers") else {
        return Ok(Vec::new());
    };
    let Value::Object(m) = v else {
        return Err(f.err(
            "claims_to_headers",
            format!(
                "expected an object of claim path to header name, got {}",
                describe(v)
            ),
        ));
    };
    let mut out: Vec<(Vec<String>, String)> = Vec::new();
    for (path, header) in m {
        let Value::String(h) = header else {
            return Err(f.err(
                "claims_to_headers",
                format!("{path:?}: the header name must be a string"),
            ));
        };
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(f.err("claims_to_headers", format!("{path:?} is not a claim path")));
        }
        let h = header_name(f, "claims_to_headers", h)?;
        if out.iter().any(|(_, x)| *x == h) {
            return Err(f.err("claims_to_headers", format!("header {h:?} is used twice")));
        }
        out.push((path.split('.').map(str::to_string).collect(), h));
    }
    Ok(out)
}

fn parse_provider(f: &Fields, allowed: AlgSet, name: String) -> Result<Provider, ConfigError> {
    let jwks = match f.string("jwks_uri")? {
        Some(uri) => Some(parse_jwks_uri(&uri).map_err(|e| f.err("jwks_uri", e.message))?),
        None => None,
    };
    let fallback = match f.string("fallback_public_key")? {
        Some(pem) => Some(Arc::new(
            FallbackKey::from_pem(&pem, allowed)
                .map_err(|e: KeyError| f.err("fallback_public_key", e.to_string()))?,
        )),
        None => None,
    };
    if jwks.is_none() && fallback.is_none() {
        return Err(f.err(
            "jwks_uri",
            "required (or set fallback_public_key for a static key)",
        ));
    }
    let upstream = match f.string("jwks_upstream")? {
        Some(u) if u.is_empty() => return Err(f.err("jwks_upstream", "must not be empty")),
        Some(u) => u,
        None => jwks
            .as_ref()
            .map(|j| j.authority.clone())
            .unwrap_or_default(),
    };

    let cache_ttl_s = f.count_in("cache_ttl", 3600, 1, 31 * 24 * 3600)?;
    let refresh_ahead_s = f.count_in("refresh_ahead_time", 300, 0, 31 * 24 * 3600)?;
    let timeout_ms = f.count_in("timeout", 5000, 1, 600_000)?;
    let retry_count = f.count_in("retry_count", 3, 0, 20)? as u32;
    let retry_delay_ms = f.count_in("retry_delay", 1000, 0, 600_000)?;
    let min_refresh_interval_s = f.count_in("min_refresh_interval", 30, 0, 24 * 3600)?;
    let max_cache_size = f.count_in("max_cache_size", 100, 1, 10_000)? as usize;
    let max_jwks_size = f.count_in("max_jwks_size", 1 << 20, 256, 16 << 20)? as usize;

    let issuers = f.strings("issuers")?.unwrap_or_default();
    if issuers.iter().any(|s| s.is_empty()) {
        return Err(f.err("issuers", "must not contain empty strings"));
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
    })
}

/// Parses `http(s)://authority/path?query`.
pub fn parse_jwks_uri(uri: &str) -> Result<JwksUri, ConfigError> {
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
    Ok(JwksUri {
        uri: uri.to_string(),
        scheme,
        authority: authority.to_string(),
        path,
    })
}

fn names(
    f: &Fields,
    field: &str,
    default: &[&str],
    lower: bool,
) -> Result<Vec<String>, ConfigError> {
    let list = f
        .strings(field)?
        .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect());
    let mut out = Vec::with_capacity(list.len());
    for n in list {
        let valid = !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~!#$&'*+^`|".contains(&b));
        if !valid {
            return Err(ConfigError::new(
                field,
                format!("{n:?} is not a valid name"),
            ));
        }
        out.push(if lower { n.to_ascii_lowercase() } else { n });
    }
    Ok(out)
}

fn parse_admin(f: &Fields) -> Result<Option<AdminConfig>, ConfigError> {
    let prefix = f
        .string("admin_path_prefix")?
        .unwrap_or_else(|| "/jwt-jwks".to_string());
    if !prefix.starts_with('/')
        || prefix.len() < 2
        || prefix.ends_with('/')
        || prefix.contains(['?', '#', ' '])
    {
        return Err(ConfigError::new(
            "admin_path_prefix",
            format!("must start with '/', not end with '/', and hold no '?', '#' or spaces, got {prefix:?}"),
        ));
    }
    let token = f.string("admin_token")?;
    let digest = f.string("admin_token_sha256")?;
    let token_sha256 = match (token, digest) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "admin_token_sha256",
                "set admin_token or admin_token_sha256, not both",
            ))
        }
        (Some(t), None) => {
            if t.len() < 16 {
                return Err(ConfigError::new(
                    "admin_token",
                    "must be at least 16 characters",
                ));
            }
            hmac_sha256::Hash::hash(t.as_bytes())
        }
        (None, Some(hex)) => decode_hex32(&hex).ok_or_else(|| {
            ConfigError::new("admin_token_sha256", "must be 64 hexadecimal characters")
        })?,
        (None, None) => return Ok(None),
    };
    Ok(Some(AdminConfig {
        prefix,
        token_sha256,
    }))
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        *out.get_mut(i)? = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, ConfigError> {
        Config::parse(json.as_bytes())
    }

    fn field_of(json: &str) -> String {
        parse(json).expect_err("should be refused").field
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = parse(r#"{"jwks_uri":"https://auth.example.com/.well-known/jwks.json"}"#).unwrap();
        let p = &c.providers[0];
        assert_eq!(p.upstream, "auth.example.com");
        assert_eq!(p.jwks.as_ref().unwrap().path, "/.well-known/jwks.json");
        assert_eq!(
            (p.cache_ttl_s, p.refresh_ahead_s, p.timeout_ms),
            (3600, 300, 5000)
        );
        assert_eq!(
            (p.retry_count, p.retry_delay_ms, p.min_refresh_interval_s),
            (3, 1000, 30)
        );
        assert_eq!((p.max_cache_size, p.max_jwks_size), (100, 1 << 20));
        assert_eq!(c.header_names, vec!["authorization"]);
        assert_eq!(c.uri_param_names, vec!["jwt"]);
        assert_eq!(c.cookie_names, vec!["jwt"]);
        assert_eq!(c.max_token_size, 8192);
        assert_eq!(c.key_claim, KeyClaim::Kid);
        assert!(!c.run_on_preflight && c.forward_token);
        assert_eq!(c.allowed_algorithms, AlgSet::of(&Alg::DEFAULT_ALLOWED));
        assert!(p.claims.require_exp && !p.claims.require_iss && !p.claims.require_aud);
        assert_eq!(p.claims.clock_skew_s, 60);
        assert!(c.admin.is_none(), "no admin token: admin path off");
        assert_eq!(c.realm, "jwt-jwks");
        assert_eq!(c.wait_mode, WaitMode::Auto);
    }

    #[test]
    fn seed_plugin_config_loads_unchanged() {
        let seed = r#"{
            "jwks_uri": "https://auth-service/.well-known/jwks.json",
            "cache_ttl": 3600, "timeout": 5000, "ssl_verify": false,
            "key_claim_name": "iss",
            "allowed_algorithms": ["RS256", "RS384", "RS512"],
            "claims_to_verify": ["exp", "iss", "aud", "nbf"],
            "retry_count": 3, "retry_delay": 1000,
            "header_names": ["Authorization", "X-JWT-Token", "X-Access-Token"],
            "run_on_preflight": false,
            "max_cache_size": 100, "refresh_ahead_time": 300,
            "fallback_public_key": null
        }"#;
        let c = parse(seed).unwrap();
        assert_eq!(c.key_claim, KeyClaim::Iss);
        let warnings = c.warnings();
        assert!(
            warnings.iter().any(|w| w.contains("ssl_verify=false")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|w| w.contains("without issuers")),
            "{warnings:?}"
        );
        assert_eq!(c.ssl_verify, Some(false));
        let p = &c.providers[0];
        assert!(p.claims.require_iss && p.claims.require_aud && p.claims.require_nbf);
        assert_eq!(p.upstream, "auth-service");
        assert_eq!(
            c.header_names,
            vec!["authorization", "x-jwt-token", "x-access-token"]
        );
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let e = parse(r#"{"jwks_uri":"http://a/j","cache_tll":5}"#).unwrap_err();
        assert_eq!(e.field, "cache_tll");
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn wrong_types_and_ranges_name_the_field() {
        assert_eq!(
            field_of(r#"{"jwks_uri":"http://a/j","cache_ttl":"abc"}"#),
            "cache_ttl"
        );
        assert_eq!(
            field_of(r#"{"jwks_uri":"http://a/j","cache_ttl":-1}"#),
            "cache_ttl"
        );
        assert_eq!(
            field_of(r#"{"jwks_uri":"http://a/j","timeout":1.5}"#),
            "timeout"
        );
        assert_eq!(
            field_of(r#"{"jwks_uri":"http://a/j","header_names":"Authorization"}"#),
            "header_names"
        );
        assert_eq!(
            field_of(r#"{"jwks_uri":"http://a/j","header_names":["bad header"]}"#),
            "header_names"
        );
        assert_eq!(field_of(r#"{"jwks_uri":"ftp://a/j"}"#), "jwks_uri");
        assert_eq!(field_of(r#"{"jwks_uri":"http:///j"}"#), "jwks_uri");
        assert_eq!(field_of(r#"{}"#), "jwks_uri");
        assert_eq!(
            field_of(r#"{"jwks_uri":"http://a/j","allowed_algorithms":["HS256"]}"#),
            "allowed_algorithms"
        );
        assert_eq!(
            field_of(r#"{"jwks_uri":"http://a/j","allowed_algorithms":["none"]}"#),
            "allowed_algorithms"
        );
        assert_eq!(
            field_of(r#"{"jwks_uri":"http://a/j","allowed_algorithms":[]}"#),
            "allowed_algorithms"
        );
        assert_eq!(
            field_of(r#"{"jwks_uri":"http://a/j","key_claim_name":"sub"}"#),
            "key_claim_name"
        );
        assert_eq!(
            field_of(r#"{"jwks_uri":"http://a/j","claims_to_verify":["jti"]}"#),
            "claims_to_verify"
        );
        assert_eq!(
            field_of(r#"{"jwks_uri":"http://a/j","fallback_public_key":"nope"}"#),
            "fallback_public_key"
        );
        assert_eq!(
            field_of(r#"{"jwks_uri":"http://a/j","admin_token":"short"}"#),
            "admin_token"
        );
        assert_eq!(
            field_of(r#"{"jwks_uri":"http://a/j","admin_token_sha256":"zz"}"#),
            "admin_token_sha256"
        );
        assert_eq!(
            field_of(r#"{"jwks_uri":"http://a/j","admin_path_prefix":"jwt"}"#),
            "admin_path_prefix"
        );
        assert_eq!(
            field_of(r#"{"jwks_uri":"http://a/j","realm":"a\"b"}"#),
            "realm"
        );
        assert_eq!(
            field_of(r#"{"jwks_uri":"http://a/j","max_token_age":0}"#),
            "max_token_age"
        );
        assert_eq!(
            field_of(r#"{"jwks_uri":"http://a/j","issuers":[""]}"#),
            "issuers"
        );
        assert_eq!(
            field_of(r#"{"jwks_uri":"http://a/j","wait_mode":"poll"}"#),
            "wait_mode"
        );
        assert_eq!(field_of(r#"[1]"#), "(configuration)");
        assert_eq!(field_of(r#"{"#), "(configuration)");
    }

    #[test]
    fn fuzz_regression_an_empty_field_name_is_named() {
        // fuzz/regressions/config/empty-field-name
        let e = parse(r#"{"": 3600, "timeout": 5000}"#).unwrap_err();
        assert_eq!(e.field, "\"\"");
        assert!(e.to_string().contains("field `\"\"`: unknown field"), "{e}");
        let e = parse(r#"{"providers":[{"name":"a","jwks_uri":"http://a/j","":1}]}"#).unwrap_err();
        assert_eq!(e.field, "providers[0].");
    }

    #[test]
    fn issuers_and_audiences_make_their_claims_required() {
        let c = parse(r#"{"jwks_uri":"http://a/j","issuers":["https://i"],"audiences":["api"],"claims_to_verify":["exp"]}"#)
            .unwrap();
        let p = &c.providers[0].claims;
        assert!(p.require_iss && p.require_aud);
        let c = parse(r#"{"jwks_uri":"http://a/j","max_token_age":600}"#).unwrap();
        assert!(c.providers[0].claims.require_iat);
    }

    #[test]
    fn admin_token_forms() {
        let c = parse(r#"{"jwks_uri":"http://a/j","admin_token":"0123456789abcdef"}"#).unwrap();
        let a = c.admin.unwrap();
        assert_eq!(a.prefix, "/jwt-jwks");
        assert_eq!(a.token_sha256, hmac_sha256::Hash::hash(b"0123456789abcdef"));
        let hex: String = hmac_sha256::Hash::hash(b"0123456789abcdef")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let c = parse(&format!(r#"{{"jwks_uri":"http://a/j","admin_token_sha256":"{hex}","admin_path_prefix":"/_auth"}}"#))
            .unwrap();
        let b = c.admin.unwrap();
        assert_eq!(b.token_sha256, a.token_sha256);
        assert_eq!(b.prefix, "/_auth");
        assert_eq!(
            field_of(&format!(
                r#"{{"jwks_uri":"http://a/j","admin_token":"0123456789abcdef","admin_token_sha256":"{hex}"}}"#
            )),
            "admin_token_sha256"
        );
    }

    #[test]
    fn jwks_uri_parts() {
        let u = parse_jwks_uri("http://127.0.0.1:8080/keys?x=1").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.authority.as_str(), u.path.as_str()),
            ("http", "127.0.0.1:8080", "/keys?x=1")
        );
        let u = parse_jwks_uri("HTTPS://idp.example").unwrap();
        assert_eq!((u.scheme.as_str(), u.path.as_str()), ("https", "/"));
        let u = parse_jwks_uri("http://idp?x").unwrap();
        assert_eq!(u.path, "/?x");
        assert!(parse_jwks_uri("http://user@idp/").is_err());
        assert!(parse_jwks_uri("http://idp/a b").is_err());
    }

    #[test]
    fn explicit_upstream_overrides_the_authority() {
        let c = parse(r#"{"jwks_uri":"http://idp:9000/j","jwks_upstream":"idp_cluster"}"#).unwrap();
        assert_eq!(c.providers[0].upstream, "idp_cluster");
        assert_eq!(
            field_of(r#"{"jwks_uri":"http://idp/j","jwks_upstream":""}"#),
            "jwks_upstream"
        );
    }

    #[test]
    fn providers_are_selected_by_issuer_and_validated() {
        let c = parse(
            r#"{"providers":[
                {"name":"external","issuers":["https://auth.example.com"],"jwks_uri":"http://auth-internal:8080/jwks"},
                {"name":"partner","issuers":["https://partner"],"jwks_uri":"https://partner/jwks","audiences":["api"]}
            ],"rules":[{"path_prefix":"/p","providers":["partner"]}]}"#,
        )
        .unwrap();
        assert_eq!(c.providers.len(), 2);
        assert_eq!(c.providers[0].name, "external");
        assert_eq!(c.providers[0].upstream, "auth-internal:8080");
        assert!(c.providers.iter().all(|p| p.claims.require_iss));
        assert_eq!(c.rules[0].providers, Some(vec![1]));

        let two = |a: &str, b: &str| {
            format!(
                r#"{{"providers":[{{"name":"a","jwks_uri":"http://a/j"{a}}},{{"name":"b","jwks_uri":"http://b/j"{b}}}]}}"#
            )
        };
        assert_eq!(
            field_of(&two(r#","issuers":["x"]"#, "")),
            "providers[1].issuers"
        );
        assert_eq!(
            field_of(&two(r#","issuers":["x"]"#, r#","issuers":["x"]"#)),
            "providers"
        );
        assert_eq!(
            field_of(&two(r#","issuers":["x"],"bogus":1"#, "")),
            "providers[0].bogus"
        );
        assert_eq!(
            field_of(&two(r#","cache_ttl":"x""#, "")),
            "providers[0].cache_ttl"
        );
        assert_eq!(
            field_of(
                r#"{"jwks_uri":"http://a/j","providers":[{"name":"a","jwks_uri":"http://a/j"}]}"#
            ),
            "jwks_uri"
        );
        assert_eq!(
            field_of(r#"{"providers":[{"jwks_uri":"http://a/j"}]}"#),
            "providers[0].name"
        );
        assert_eq!(field_of(r#"{"providers":[]}"#), "providers");
        assert_eq!(
            field_of(
                r#"{"providers":[{"name":"a","jwks_uri":"http://a/j"}],"rules":[{"path":"/x","providers":["b"]}]}"#
            ),
            "rules[0].providers"
        );
    }

    #[test]
    fn rules_and_requirements_are_validated() {
        let ok = parse(
            r#"{"jwks_uri":"http://a/j","rules":[
                {"path_prefix":"/invoices","methods":["get","POST"],"scopes":{"any":["invoice_*"]}},
                {"path":"/health","auth":"public"},
                {"path_prefix":"/","auth":"optional","roles":{"all":["a","b"]},"run_on_preflight":true}
            ],"permissions":{"all":["chat:read"]},"roles_claims":["realm_access.roles"],
            "claims_to_headers":{"sub":"X-JWT-Sub","realm_access.roles":"x-jwt-roles"},"payload_header":"x-jwt-payload"}"#,
        )
        .unwrap();
        assert_eq!(ok.rules.len(), 3);
        assert_eq!(ok.rules[0].methods, vec!["GET", "POST"]);
        assert!(ok.default_require.permissions.is_some());
        assert!(ok
            .claims_to_headers
            .contains(&(vec!["sub".to_string()], "x-jwt-sub".to_string())));
        let mut forwarded: Vec<&str> = ok.forwarded_headers().collect();
        forwarded.sort_unstable();
        assert_eq!(forwarded, vec!["x-jwt-payload", "x-jwt-roles", "x-jwt-sub"]);
        assert_eq!(ok.identity_property.as_deref(), Some("jwt_jwks_identity"));

        let bad =
            |rule: &str| field_of(&format!(r#"{{"jwks_uri":"http://a/j","rules":[{rule}]}}"#));
        assert_eq!(
            bad(r#"{"path":"/a","path_prefix":"/a"}"#),
            "rules[0].path_prefix"
        );
        assert_eq!(bad(r#"{"methods":["GET"]}"#), "rules[0].path_prefix");
        assert_eq!(bad(r#"{"path":"a"}"#), "rules[0].path");
        assert_eq!(bad(r#"{"path":"/a","auth":"maybe"}"#), "rules[0].auth");
        assert_eq!(
            bad(r#"{"path":"/a","scopes":{"any":["x"],"all":["y"]}}"#),
            "rules[0].scopes"
        );
        assert_eq!(
            bad(r#"{"path":"/a","scopes":{"any":[]}}"#),
            "rules[0].scopes"
        );
        assert_eq!(
            bad(r#"{"path":"/a","scopes":{"any":["a b"]}}"#),
            "rules[0].scopes"
        );
        assert_eq!(bad(r#"{"path":"/a","scopes":["x"]}"#), "rules[0].scopes");
        assert_eq!(
            bad(r#"{"path":"/a","auth":"public","roles":{"any":["x"]}}"#),
            "rules[0].auth"
        );
        assert_eq!(bad(r#"{"path":"/a","weight":1}"#), "rules[0].weight");
        assert_eq!(
            bad(r#"{"path":"/a","methods":["G T"]}"#),
            "rules[0].methods"
        );
        let top = |extra: &str| field_of(&format!(r#"{{"jwks_uri":"http://a/j",{extra}}}"#));
        assert_eq!(
            top(r#""claims_to_headers":{"sub":"authorization"}"#),
            "claims_to_headers"
        );
        assert_eq!(
            top(r#""claims_to_headers":{"sub":"x-a","iss":"X-A"}"#),
            "claims_to_headers"
        );
        assert_eq!(
            top(r#""claims_to_headers":{"a..b":"x-a"}"#),
            "claims_to_headers"
        );
        assert_eq!(
            top(r#""payload_header":"x-a","claims_to_headers":{"sub":"x-a"}"#),
            "payload_header"
        );
        assert_eq!(top(r#""roles_claims":["a."]"#), "roles_claims");
        assert_eq!(top(r#""identity_property":"a.b""#), "identity_property");
        assert_eq!(top(r#""rules":{}"#), "rules");
        let off = parse(r#"{"jwks_uri":"http://a/j","identity_property":null}"#).unwrap();
        assert_eq!(off.identity_property, None);
    }
}
