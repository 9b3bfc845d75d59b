//! A provider's `introspection` block: opaque tokens (and, with
//! `introspect_jwt`, JWTs) checked at the authorization server, by RFC 7662
//! introspection (three answer formats) or RFC 8693 token exchange.
#![forbid(unsafe_code)]

use crate::config::endpoint::{parse_endpoint, Endpoint};
use crate::config::error::ConfigError;
use crate::config::fields::Fields;

/// The fields of the block.
pub const INTROSPECTION_FIELDS: &[&str] = &[
    "endpoint",
    "upstream",
    "client_id",
    "client_secret",
    "auth_method",
    "response",
    "jwt_member",
    "timeout",
    "cache_ttl",
    "negative_cache_ttl",
    "max_entries",
    "mode",
    "audience",
    "scope",
    "phantom_header",
    "introspect_jwt",
];

/// The largest phantom JWT forwarded (Envoy's default limit on request
/// headers is 60 KiB): a larger one is refused with 502, never cut.
pub const MAX_PHANTOM_BYTES: usize = 48 << 10;

#[derive(Clone, Debug, PartialEq, Eq, Copy)]
pub enum AuthMethod {
    /// `Authorization: Basic` of the form-encoded id and secret.
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

#[derive(Clone, Debug, PartialEq, Eq, Copy)]
pub enum AnswerFormat {
    /// RFC 7662 JSON: `active` and claims (a phantom JWT in `jwt_member`).
    Json,
    /// The body is the token as a JWT (`Accept: application/jwt`); 204,
    /// 400 or 410 mean inactive.
    Jwt,
    /// RFC 9701 `application/token-introspection+jwt`.
    IntrospectionJwt,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Introspection(AnswerFormat),
    /// RFC 8693: the opaque token exchanged for a JWT.
    TokenExchange {
        audience: Option<String>,
        scope: Option<String>,
    },
}

#[derive(Clone, PartialEq, Eq)]
pub struct IntrospectionSettings {
    /// `None`: the discovery metadata's `introspection_endpoint`.
    pub endpoint: Option<Endpoint>,
    /// Envoy cluster, or Kong `host:port` (default: the endpoint's
    /// authority).
    pub upstream: Option<String>,
    pub client_id: String,
    /// The secret itself (read from the VM's environment at configure time
    /// when configured as `{"env": "NAME"}`).
    pub client_secret: String,
    /// The environment variable the secret came from, if any.
    pub secret_env: Option<String>,
    pub auth_method: AuthMethod,
    pub mode: Mode,
    pub jwt_member: Option<String>,
    pub timeout_ms: u64,
    pub cache_ttl_s: u64,
    pub negative_cache_ttl_s: u64,
    pub max_entries: usize,
    /// Where the phantom JWT goes; `None`: `Authorization: Bearer`.
    pub phantom_header: Option<String>,
    pub introspect_jwt: bool,
}

// The secret stays out of logs and debug output.
impl std::fmt::Debug for IntrospectionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionSettings")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl IntrospectionSettings {
    /// Whether answers carry a JWT, verified with the provider's keys.
    pub fn yields_jwt(&self) -> bool {
        match &self.mode {
            Mode::TokenExchange { .. } => true,
            Mode::Introspection(AnswerFormat::Json) => self.jwt_member.is_some(),
            Mode::Introspection(_) => true,
        }
    }
}

/// Reads the VM's environment (WASI `environ_get`).
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub(crate) fn parse_introspection(
    f: &Fields,
    provider_timeout_ms: u64,
    has_discovery: bool,
) -> Result<Option<IntrospectionSettings>, ConfigError> {
    let Some(i) = f.nested("introspection", INTROSPECTION_FIELDS)? else {
        return Ok(None);
    };
    let endpoint = match i.string("endpoint")? {
        Some(uri) => Some(parse_endpoint(&uri).map_err(|e| i.err("endpoint", e.message))?),
        None if has_discovery => None,
        None => {
            return Err(i.err(
                "endpoint",
                "required (or a discovery_uri whose metadata names an introspection_endpoint)",
            ))
        }
    };
    let upstream = match i.string("upstream")? {
        Some(u) if u.is_empty() => return Err(i.err("upstream", "must not be empty")),
        u => u,
    };
    let client_id = i
        .string("client_id")?
        .filter(|c| !c.is_empty())
        .ok_or_else(|| i.err("client_id", "required"))?;
    let (client_secret, secret_env) = match i.raw("client_secret") {
        Some(serde_json::Value::String(s)) if !s.is_empty() => (s.clone(), None),
        Some(serde_json::Value::Object(o)) if o.len() == 1 && o.contains_key("env") => {
            let name = o
                .get("env")
                .and_then(|v| v.as_str())
                .filter(|n| !n.is_empty())
                .ok_or_else(|| i.err("client_secret.env", "must name an environment variable"))?;
            let secret = env_var(name).ok_or_else(|| {
                i.err(
                    "client_secret.env",
                    format!("the VM has no environment variable {name:?} (or it is empty)"),
                )
            })?;
            (secret, Some(name.to_string()))
        }
        _ => {
            return Err(i.err(
                "client_secret",
                "required: the secret, or {\"env\": \"NAME\"} to read it from the VM's environment",
            ))
        }
    };
    let auth_method = match i.string("auth_method")?.as_deref() {
        None | Some("client_secret_basic") => AuthMethod::Basic,
        Some("client_secret_post") => AuthMethod::Post,
        Some(o) => {
            return Err(i.err(
                "auth_method",
                format!("must be \"client_secret_basic\" or \"client_secret_post\", got {o:?}"),
            ))
        }
    };
    let format = match i.string("response")?.as_deref() {
        None | Some("json") => AnswerFormat::Json,
        Some("jwt") => AnswerFormat::Jwt,
        Some("introspection_jwt") => AnswerFormat::IntrospectionJwt,
        Some(o) => {
            return Err(i.err(
                "response",
                format!("must be \"json\", \"jwt\" or \"introspection_jwt\", got {o:?}"),
            ))
        }
    };
    let mode = match i.string("mode")?.as_deref() {
        None | Some("introspection") => {
            for n in ["audience", "scope"] {
                if i.has(n) {
                    return Err(i.err(n, "set only with mode \"token_exchange\""));
                }
            }
            Mode::Introspection(format)
        }
        Some("token_exchange") => {
            if i.has("response") || i.has("jwt_member") {
                let n = if i.has("response") {
                    "response"
                } else {
                    "jwt_member"
                };
                return Err(i.err(n, "set only with mode \"introspection\""));
            }
            Mode::TokenExchange {
                audience: i.string("audience")?,
                scope: i.string("scope")?,
            }
        }
        Some(o) => {
            return Err(i.err(
                "mode",
                format!("must be \"introspection\" or \"token_exchange\", got {o:?}"),
            ))
        }
    };
    let jwt_member = i.string("jwt_member")?;
    if jwt_member.is_some() && format != AnswerFormat::Json {
        return Err(i.err("jwt_member", "set only with response \"json\""));
    }
    let phantom_header = match i.string("phantom_header")? {
        Some(h) => Some(crate::config::forward::header_name(
            &i,
            "phantom_header",
            &h,
        )?),
        None => None,
    };
    let cache_ttl_s = i.count_in("cache_ttl", 300, 0, 86_400)?;
    Ok(Some(IntrospectionSettings {
        endpoint,
        upstream,
        client_id,
        client_secret,
        secret_env,
        auth_method,
        mode,
        jwt_member,
        timeout_ms: i.count_in("timeout", provider_timeout_ms, 1, 60_000)?,
        cache_ttl_s,
        negative_cache_ttl_s: i.count_in("negative_cache_ttl", 10.min(cache_ttl_s), 0, 3600)?,
        max_entries: i.count_in("max_entries", 10_000, 16, 100_000)? as usize,
        phantom_header,
        introspect_jwt: i.bool_or("introspect_jwt", false)?,
    }))
}
