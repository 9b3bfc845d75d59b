//! Per-route policy: which routes need a token, from which providers, and
//! what it must grant (scopes, permissions, roles with `any`/`all`), plus
//! how granted values are read from the claims and what goes upstream.
#![forbid(unsafe_code)]

use serde_json::{json, Map, Value};

use crate::config::{describe, ConfigError, Fields};

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

impl Requirement {
    fn satisfied_by(&self, granted: &[String]) -> bool {
        let has = |want: &String| match want.strip_suffix('*') {
            Some(prefix) => granted
                .iter()
                .any(|g| g.starts_with(prefix) && !g.is_empty()),
            None => granted.iter().any(|g| g == want),
        };
        match self.mode {
            Match::Any => self.values.iter().any(has),
            Match::All => self.values.iter().all(has),
        }
    }

    fn to_json(&self) -> Value {
        let key = match self.mode {
            Match::Any => "any",
            Match::All => "all",
        };
        json!({ key: self.values })
    }
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

/// What a token lacked: the requirements that failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Missing(pub Requirements);

impl Missing {
    /// The `scope` attribute of the challenge: the required scopes.
    pub fn scope_attribute(&self) -> Option<String> {
        self.0.scopes.as_ref().map(|r| r.values.join(" "))
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let kinds = [
            ("scopes", &self.0.scopes),
            ("permissions", &self.0.permissions),
            ("roles", &self.0.roles),
        ];
        for (name, req) in kinds {
            if let Some(r) = req {
                m.insert(name.to_string(), r.to_json());
            }
        }
        Value::Object(m)
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

/// The first rule matching the request, if any. `path` may carry a query.
pub fn match_rule(rules: &[Rule], method: &str, path: &str) -> Option<usize> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    rules.iter().position(|r| {
        let path_ok = match &r.path {
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Exact(p) => path == p,
        };
        path_ok && (r.methods.is_empty() || r.methods.iter().any(|m| m == method))
    })
}

/// The value at a dotted path.
pub fn claim_at<'a>(payload: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(payload, |v, seg| v.get(seg))
}

/// Granted values: strings are split on spaces (OAuth 2.0 `scope`), arrays
/// contribute their string elements.
fn granted(payload: &Value, paths: &[Vec<String>]) -> Vec<String> {
    let mut out = Vec::new();
    for p in paths {
        match claim_at(payload, p) {
            Some(Value::String(s)) => out.extend(s.split_whitespace().map(str::to_string)),
            Some(Value::Array(a)) => {
                out.extend(a.iter().filter_map(Value::as_str).map(str::to_string))
            }
            _ => {}
        }
    }
    out
}

/// Checks requirements against a verified payload.
pub fn authorize(req: &Requirements, paths: &ClaimPaths, payload: &Value) -> Result<(), Missing> {
    let mut missing = Requirements::default();
    let kinds = [
        (&req.scopes, &paths.scopes, &mut missing.scopes),
        (
            &req.permissions,
            &paths.permissions,
            &mut missing.permissions,
        ),
        (&req.roles, &paths.roles, &mut missing.roles),
    ];
    for (want, from, out) in kinds {
        if let Some(w) = want {
            if !w.satisfied_by(&granted(payload, from)) {
                *out = Some(w.clone());
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Missing(missing))
    }
}

/// Longest header value forwarded; longer claims are not forwarded.
pub const MAX_HEADER_VALUE: usize = 8192;

/// A claim as a header value: strings as-is, arrays joined with `,`,
/// numbers and booleans as JSON text, objects as compact JSON. Control
/// characters are removed so a claim can never inject a header.
pub fn header_value(v: &Value) -> Option<String> {
    let text = match v {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|e| match e {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim().to_string();
    (!clean.is_empty() && clean.len() <= MAX_HEADER_VALUE).then_some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(mode: Match, values: &[&str]) -> Requirement {
        Requirement {
            mode,
            values: values.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn paths() -> ClaimPaths {
        ClaimPaths {
            scopes: vec![split_path("scope"), split_path("scp")],
            permissions: vec![split_path("permissions")],
            roles: vec![
                split_path("realm_access.roles"),
                split_path("resource_access.api.roles"),
            ],
        }
    }

    fn only(kind: &str, r: Requirement) -> Requirements {
        let mut q = Requirements::default();
        match kind {
            "scopes" => q.scopes = Some(r),
            "permissions" => q.permissions = Some(r),
            _ => q.roles = Some(r),
        }
        q
    }

    #[test]
    fn oauth_scope_string_and_scp_array_with_wildcards() {
        let q = only("scopes", req(Match::Any, &["invoice_*"]));
        assert!(authorize(&q, &paths(), &json!({"scope": "profile invoice_read"})).is_ok());
        assert!(authorize(&q, &paths(), &json!({"scp": ["invoice_write"]})).is_ok());
        let err = authorize(&q, &paths(), &json!({"scope": "profile invoice"})).unwrap_err();
        assert_eq!(err.scope_attribute().as_deref(), Some("invoice_*"));
        assert_eq!(err.to_json(), json!({"scopes": {"any": ["invoice_*"]}}));
        assert!(authorize(
            &only("scopes", req(Match::Any, &["*"])),
            &paths(),
            &json!({"scope": "x"})
        )
        .is_ok());
        assert!(authorize(
            &only("scopes", req(Match::Any, &["*"])),
            &paths(),
            &json!({})
        )
        .is_err());
    }

    #[test]
    fn all_needs_every_value_and_any_needs_one() {
        let all = only("permissions", req(Match::All, &["chat:read", "chat:write"]));
        assert!(authorize(
            &all,
            &paths(),
            &json!({"permissions": ["chat:read", "chat:write", "x"]})
        )
        .is_ok());
        assert!(authorize(&all, &paths(), &json!({"permissions": ["chat:read"]})).is_err());
        assert!(authorize(
            &all,
            &paths(),
            &json!({"permissions": "chat:read chat:write"})
        )
        .is_ok());
        let any = only("permissions", req(Match::Any, &["a", "b"]));
        assert!(authorize(&any, &paths(), &json!({"permissions": ["b"]})).is_ok());
        assert!(authorize(&any, &paths(), &json!({"permissions": []})).is_err());
    }

    #[test]
    fn keycloak_nested_roles_from_several_paths() {
        let q = only("roles", req(Match::All, &["admin", "billing"]));
        let payload = json!({
            "realm_access": {"roles": ["admin"]},
            "resource_access": {"api": {"roles": ["billing"]}, "other": {"roles": ["x"]}}
        });
        assert!(authorize(&q, &paths(), &payload).is_ok());
        assert!(authorize(&q, &paths(), &json!({"realm_access": {"roles": ["admin"]}})).is_err());
        assert!(
            authorize(&q, &paths(), &json!({"realm_access": "admin"})).is_err(),
            "not at that path"
        );
    }

    #[test]
    fn every_kind_must_hold_and_missing_names_only_the_failures() {
        let q = Requirements {
            scopes: Some(req(Match::Any, &["read"])),
            roles: Some(req(Match::Any, &["admin"])),
            permissions: None,
        };
        let err = authorize(&q, &paths(), &json!({"scope": "read"})).unwrap_err();
        assert_eq!(err.to_json(), json!({"roles": {"any": ["admin"]}}));
        assert_eq!(err.scope_attribute(), None);
    }

    #[test]
    fn header_values_are_flat_and_clean() {
        assert_eq!(header_value(&json!("alice")).as_deref(), Some("alice"));
        assert_eq!(
            header_value(&json!(["a", "b", 3])).as_deref(),
            Some("a,b,3")
        );
        assert_eq!(header_value(&json!(42)).as_deref(), Some("42"));
        assert_eq!(header_value(&json!(true)).as_deref(), Some("true"));
        assert_eq!(header_value(&json!({"k": 1})).as_deref(), Some("{\"k\":1}"));
        assert_eq!(
            header_value(&json!("a\r\nx-evil: 1")).as_deref(),
            Some("ax-evil: 1")
        );
        assert_eq!(header_value(&json!("\u{0}\n")), None);
        assert_eq!(header_value(&json!(null)), None);
        assert_eq!(header_value(&json!("x".repeat(MAX_HEADER_VALUE + 1))), None);
    }

    fn rule(path: PathMatch, methods: &[&str]) -> Rule {
        Rule {
            path,
            methods: methods.iter().map(|s| s.to_string()).collect(),
            auth: AuthMode::Required,
            providers: None,
            require: Requirements::default(),
            run_on_preflight: None,
        }
    }

    #[test]
    fn first_matching_rule_wins_on_path_and_method() {
        let rules = vec![
            rule(PathMatch::Exact("/invoices/export".into()), &["POST"]),
            rule(PathMatch::Prefix("/invoices".into()), &[]),
            rule(PathMatch::Prefix("/".into()), &["GET"]),
        ];
        assert_eq!(match_rule(&rules, "POST", "/invoices/export?x=1"), Some(0));
        assert_eq!(match_rule(&rules, "GET", "/invoices/export"), Some(1));
        assert_eq!(match_rule(&rules, "DELETE", "/invoices/1"), Some(1));
        assert_eq!(match_rule(&rules, "GET", "/health"), Some(2));
        assert_eq!(match_rule(&rules, "POST", "/health"), None);
    }
}
