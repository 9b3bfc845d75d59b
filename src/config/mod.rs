//! The filter's JSON configuration: field names, defaults, and validation
//! with errors that name the field.
//!
//! Field names and units mirror the Kong `jwt-jwks` plugin where a field
//! means the same thing; see docs/configuration.md.
//!
//! `Config::parse` reads the top-level fields; each part with rules of its
//! own is read by its file: providers (key sources and claim policy),
//! route rules, forwarded headers, the admin path. The types here and there
//! are plain data that the layers above read; nothing in `config` depends
//! on them.
#![forbid(unsafe_code)]

pub mod admin;
pub mod endpoint;
pub mod error;
pub mod fields;
pub mod forward;
pub mod introspection;
pub mod provider;
pub mod revocation;
pub mod rules;
pub mod status_list;

use std::sync::Arc;

use serde_json::Value;

use crate::crypto::alg::{Alg, AlgSet};
use admin::parse_admin;
use fields::{describe, Fields};
use forward::{header_name, parse_claims_to_headers};
use provider::parse_providers;
use rules::{ClaimPaths, Requirements, Rule};

pub use admin::AdminConfig;
pub use endpoint::{parse_endpoint, Endpoint};
pub use error::ConfigError;
pub use introspection::IntrospectionSettings;
pub use provider::{media_type, ClaimsPolicy, Provider};
pub use revocation::RevocationSource;
pub use status_list::StatusListSettings;

/// Which token field selects the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyClaim {
    /// The JOSE header's `kid` picks one key (this filter's default).
    Kid,
    /// The token's `iss` picks the provider; its keys are tried by `alg`.
    Iss,
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
    /// Shared with the `Source` of every token found (no copy a request).
    pub header_names: Vec<Arc<str>>,
    pub uri_param_names: Vec<Arc<str>>,
    pub cookie_names: Vec<Arc<str>>,
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
    /// Deny entries held per source (the admin push, each pulled list).
    pub max_revocation_entries: usize,
}

/// Every top-level field this filter accepts.
pub const FIELDS: &[&str] = &[
    "jwks_uri",
    "jwks_upstream",
    "discovery_uri",
    "discovery_upstream",
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
    "allowed_types",
    "require_jwk_alg",
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
    "revocation_uri",
    "revocation_upstream",
    "revocation_refresh_interval",
    "max_staleness",
    "revocation_fail",
    "max_revocation_entries",
    "status_list",
    "status_list_upstream",
    "status_list_ttl",
    "max_status_list_size",
    "max_status_lists",
    "introspection",
];

impl Config {
    /// Every header the filter may set upstream: incoming copies are removed.
    pub fn forwarded_headers(&self) -> impl Iterator<Item = &str> {
        self.claims_to_headers
            .iter()
            .map(|(_, h)| h.as_str())
            .chain(self.payload_header.as_deref())
            .chain(
                self.providers
                    .iter()
                    .filter_map(|p| p.introspection.as_ref()?.phantom_header.as_deref()),
            )
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
        // A control plane may send nothing at all (Istio, for an empty
        // pluginConfig): say so, rather than a JSON parser's EOF error.
        if bytes.trim_ascii().is_empty() {
            return Err(ConfigError::new(
                "(configuration)",
                "empty: the filter needs a JSON object with jwks_uri, discovery_uri or \
                 fallback_public_key",
            ));
        }
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
        // Off unless named: a filter-state write costs every allowed
        // request (its price is in docs/configuration.md), and only later
        // filters read it.
        let identity_property = match map.get("identity_property") {
            None | Some(Value::Null) => None,
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
            max_revocation_entries: f.count_in("max_revocation_entries", 100_000, 1, 1_000_000)?
                as usize,
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

fn names(
    f: &Fields,
    field: &str,
    default: &[&str],
    lower: bool,
) -> Result<Vec<Arc<str>>, ConfigError> {
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
        out.push(Arc::from(if lower { n.to_ascii_lowercase() } else { n }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
