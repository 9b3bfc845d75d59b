//! Per-route policy as configured: which routes need a token, from which
//! providers, and what it must grant (scopes, permissions, roles with
//! `any`/`all`), plus where granted values are read from in the claims.
//! Parsed here, evaluated by `authz::rules`.
#![forbid(unsafe_code)]

use serde_json::Value;

use crate::config::error::ConfigError;
use crate::config::fields::{describe, Fields};

/// `any`: one required value suffices; `all`: every one is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    Any,
    All,
}

/// Required values of one kind. A value ending in `*` matches any granted
/// value with that prefix (`invoice_*`); `*` alone matches any value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub mode: Match,
    pub values: Vec<String>,
}

/// What a token must grant on a route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    pub scopes: Option<Requirement>,
    pub permissions: Option<Requirement>,
    pub roles: Option<Requirement>,
}

impl Requirements {
    pub fn is_empty(&self) -> bool {
        self.scopes.is_none() && self.permissions.is_none() && self.roles.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// A valid token is needed (the default).
    Required,
    /// No token passes; a token, if present, must be valid.
    Optional,
    /// No token is looked at.
    Public,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
}

/// One entry of `rules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub path: PathMatch,
    /// Upper-case methods; empty means any.
    pub methods: Vec<String>,
    pub auth: AuthMode,
    /// Indices into `Config::providers`; `None` means any provider.
    pub providers: Option<Vec<usize>>,
    pub require: Requirements,
    pub run_on_preflight: Option<bool>,
}

pub const RULE_FIELDS: &[&str] = &[
    "path_prefix",
    "path",
    "methods",
    "auth",
    "providers",
    "scopes",
    "permissions",
    "roles",
    "run_on_preflight",
];

/// Where granted values and forwarded claims are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPaths {
    pub scopes: Vec<Vec<String>>,
    pub permissions: Vec<Vec<String>>,
    pub roles: Vec<Vec<String>>,
}

fn split_path(p: &str) -> Vec<String> {
    p.split('.').map(str::to_string).collect()
}

fn valid_value(v: &str) -> bool {
    !v.is_empty()
        && v.chars()
            .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\' && c != ' ')
}

/// Parses `{"any": [...]}` or `{"all": [...]}`.
pub(crate) fn parse_requirement(
    f: &Fields,
    name: &str,
) -> Result<Option<Requirement>, ConfigError> {
    let Some(v) = f.raw(name) else {
        return Ok(None);
    };
    let Value::Object(m) = v else {
        return Err(f.err(
            name,
            format!(
                "expected {{\"any\": [...]}} or {{\"all\": [...]}}, got {}",
                describe(v)
            ),
        ));
    };
    let (mode, list) = match (m.get("any"), m.get("all"), m.len()) {
        (Some(l), None, 1) => (Match::Any, l),
        (None, Some(l), 1) => (Match::All, l),
        _ => return Err(f.err(name, "must have exactly one key, \"any\" or \"all\"")),
    };
    let values: Vec<String> = serde_json::from_value(list.clone())
        .map_err(|_| f.err(name, "expected a list of strings"))?;
    if values.is_empty() {
        return Err(f.err(name, "must list at least one value"));
    }
    if let Some(bad) = values.iter().find(|v| !valid_value(v)) {
        return Err(f.err(
            name,
            format!("{bad:?}: values are printable ASCII without spaces, quotes or backslashes"),
        ));
    }
    Ok(Some(Requirement { mode, values }))
}

pub(crate) fn parse_requirements(f: &Fields) -> Result<Requirements, ConfigError> {
    Ok(Requirements {
        scopes: parse_requirement(f, "scopes")?,
        permissions: parse_requirement(f, "permissions")?,
        roles: parse_requirement(f, "roles")?,
    })
}

pub(crate) fn parse_claim_paths(f: &Fields) -> Result<ClaimPaths, ConfigError> {
    let list = |name: &str, default: &[&str]| -> Result<Vec<Vec<String>>, ConfigError> {
        let v = f
            .strings(name)?
            .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect());
        if v.iter()
            .any(|p| p.is_empty() || p.split('.').any(str::is_empty))
        {
            return Err(f.err(name, "claim paths are dot-separated names, none empty"));
        }
        Ok(v.iter().map(|p| split_path(p)).collect())
    };
    Ok(ClaimPaths {
        scopes: list("scope_claims", &["scope", "scp"])?,
        permissions: list("permissions_claims", &["permissions"])?,
        roles: list("roles_claims", &["roles"])?,
    })
}

/// Parses one rule; `provider_index` maps a provider name to its index.
pub(crate) fn parse_rule(
    v: &Value,
    i: usize,
    provider_index: &dyn Fn(&str) -> Option<usize>,
) -> Result<Rule, ConfigError> {
    let f = Fields::object(v, format!("rules[{i}]."), RULE_FIELDS)?;
    let path = match (f.string("path_prefix")?, f.string("path")?) {
        (Some(p), None) => PathMatch::Prefix(p),
        (None, Some(p)) => PathMatch::Exact(p),
        _ => return Err(f.err("path_prefix", "set exactly one of path_prefix and path")),
    };
    let (PathMatch::Prefix(p) | PathMatch::Exact(p)) = &path;
    if !p.starts_with('/') {
        return Err(f.err("path", format!("{p:?} must start with '/'")));
    }
    let methods: Vec<String> = f
        .strings("methods")?
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.to_ascii_uppercase())
        .collect();
    if methods
        .iter()
        .any(|m| m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()))
    {
        return Err(f.err("methods", "methods are names like GET or POST"));
    }
    let auth = match f.string("auth")?.as_deref() {
        None | Some("required") => AuthMode::Required,
        Some("optional") => AuthMode::Optional,
        Some("public") => AuthMode::Public,
        Some(other) => {
            return Err(f.err(
                "auth",
                format!("must be \"required\", \"optional\" or \"public\", got {other:?}"),
            ))
        }
    };
    let providers = match f.strings("providers")? {
        None => None,
        Some(names) => {
            let mut idx = Vec::new();
            for n in &names {
                idx.push(
                    provider_index(n)
                        .ok_or_else(|| f.err("providers", format!("no provider named {n:?}")))?,
                );
            }
            if idx.is_empty() {
                return Err(f.err("providers", "must name at least one provider"));
            }
            Some(idx)
        }
    };
    let require = parse_requirements(&f)?;
    if auth == AuthMode::Public && (!require.is_empty() || providers.is_some()) {
        return Err(f.err(
            "auth",
            "a public rule cannot require providers, scopes, permissions or roles",
        ));
    }
    Ok(Rule {
        path,
        methods,
        auth,
        providers,
        require,
        run_on_preflight: f.get::<bool>("run_on_preflight", "true or false")?,
    })
}
