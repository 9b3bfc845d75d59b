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
    assert_eq!(strs(&c.header_names), vec!["authorization"]);
    assert_eq!(strs(&c.uri_param_names), vec!["jwt"]);
    assert_eq!(strs(&c.cookie_names), vec!["jwt"]);
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
        strs(&c.header_names),
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
    let c = parse(&format!(
        r#"{{"jwks_uri":"http://a/j","admin_token_sha256":"{hex}","admin_path_prefix":"/_auth"}}"#
    ))
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
    let u = parse_endpoint("http://127.0.0.1:8080/keys?x=1").unwrap();
    assert_eq!(
        (u.scheme.as_str(), u.authority.as_str(), u.path.as_str()),
        ("http", "127.0.0.1:8080", "/keys?x=1")
    );
    let u = parse_endpoint("HTTPS://idp.example").unwrap();
    assert_eq!((u.scheme.as_str(), u.path.as_str()), ("https", "/"));
    let u = parse_endpoint("http://idp?x").unwrap();
    assert_eq!(u.path, "/?x");
    assert!(parse_endpoint("http://user@idp/").is_err());
    assert!(parse_endpoint("http://idp/a b").is_err());
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
        field_of(r#"{"jwks_uri":"http://a/j","providers":[{"name":"a","jwks_uri":"http://a/j"}]}"#),
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
    assert_eq!(ok.identity_property, None, "off unless named");

    let bad = |rule: &str| field_of(&format!(r#"{{"jwks_uri":"http://a/j","rules":[{rule}]}}"#));
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
    let on = parse(r#"{"jwks_uri":"http://a/j","identity_property":"jwt_jwks_identity"}"#).unwrap();
    assert_eq!(on.identity_property.as_deref(), Some("jwt_jwks_identity"));
}

#[test]
fn refresh_ahead_time_defaults_from_a_short_ttl_and_must_stay_below_it() {
    let p = |json: &str| parse(json).unwrap().providers.remove(0);
    assert_eq!(
        p(r#"{"jwks_uri":"http://a/j","cache_ttl":300}"#).refresh_ahead_s,
        150
    );
    assert_eq!(
        p(r#"{"jwks_uri":"http://a/j","cache_ttl":1}"#).refresh_ahead_s,
        0
    );
    assert_eq!(
        p(r#"{"jwks_uri":"http://a/j","cache_ttl":3600}"#).refresh_ahead_s,
        300
    );
    assert_eq!(
        p(r#"{"jwks_uri":"http://a/j","cache_ttl":3600,"refresh_ahead_time":300}"#).refresh_ahead_s,
        300,
        "the seed's configuration"
    );
    let e =
        parse(r#"{"jwks_uri":"http://a/j","cache_ttl":300,"refresh_ahead_time":300}"#).unwrap_err();
    assert_eq!(e.field, "refresh_ahead_time");
    assert!(e.message.contains("cache_ttl (300)"), "{e}");
    let e =
        parse(r#"{"providers":[{"name":"a","jwks_uri":"http://a/j","refresh_ahead_time":4000}]}"#)
            .unwrap_err();
    assert_eq!(e.field, "providers[0].refresh_ahead_time");
}

#[test]
fn discovery_needs_issuers_and_excludes_jwks_uri() {
    let c = parse(
        r#"{"discovery_uri":"https://idp:8443/.well-known/openid-configuration","issuers":["https://idp"]}"#,
    )
    .unwrap();
    let p = &c.providers[0];
    assert_eq!(p.discovery_upstream, "idp:8443");
    assert_eq!(
        p.upstream, "",
        "the discovered jwks_uri's authority, at run time"
    );
    assert_eq!(
        p.key_set_uri(),
        Some("https://idp:8443/.well-known/openid-configuration")
    );
    assert_eq!(
        field_of(r#"{"discovery_uri":"https://idp/.well-known/openid-configuration"}"#),
        "issuers"
    );
    assert_eq!(
        field_of(r#"{"discovery_uri":"https://idp/x","jwks_uri":"https://idp/j","issuers":["i"]}"#),
        "discovery_uri"
    );
    assert_eq!(
        field_of(r#"{"jwks_uri":"https://idp/j","discovery_upstream":"idp:443"}"#),
        "discovery_upstream"
    );
    assert_eq!(
        field_of(r#"{"discovery_uri":"idp/x","issuers":["i"]}"#),
        "discovery_uri"
    );
}

#[test]
fn an_empty_configuration_is_refused_with_one_clear_message() {
    for empty in ["", " ", "\n\t "] {
        let e = parse(empty).unwrap_err();
        assert_eq!(e.field, "(configuration)");
        assert!(e.message.starts_with("empty:"), "{e}");
    }
    assert_eq!(field_of("{}"), "jwks_uri");
}

fn strs(names: &[std::sync::Arc<str>]) -> Vec<&str> {
    names.iter().map(|n| &**n).collect()
}
