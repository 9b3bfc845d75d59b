//! Per-route authorization: the rule a request matches, and whether a
//! verified token grants what that rule requires (scopes, permissions,
//! roles with `any`/`all`, read from the configured claim paths).
#![forbid(unsafe_code)]

use serde_json::{json, Map, Value};

use crate::config::rules::{ClaimPaths, Match, PathMatch, Requirement, Requirements, Rule};

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
                m.insert(name.to_string(), requirement_json(r));
            }
        }
        Value::Object(m)
    }
}

/// Whether `granted` holds the required values. A value ending in `*`
/// matches any granted value with that prefix (`invoice_*`); `*` alone
/// matches any value.
fn satisfied(req: &Requirement, granted: &[String]) -> bool {
    let has = |want: &String| match want.strip_suffix('*') {
        Some(prefix) => granted
            .iter()
            .any(|g| g.starts_with(prefix) && !g.is_empty()),
        None => granted.iter().any(|g| g == want),
    };
    match req.mode {
        Match::Any => req.values.iter().any(has),
        Match::All => req.values.iter().all(has),
    }
}

/// `{"any": [...]}` or `{"all": [...]}`, as configured.
fn requirement_json(req: &Requirement) -> Value {
    let key = match req.mode {
        Match::Any => "any",
        Match::All => "all",
    };
    json!({ key: req.values })
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
            if !satisfied(w, &granted(payload, from)) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::rules::AuthMode;

    fn split_path(p: &str) -> Vec<String> {
        p.split('.').map(str::to_string).collect()
    }

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
