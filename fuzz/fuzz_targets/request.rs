//! The request side: admin routing and token extraction over arbitrary
//! methods, paths and headers.
#![no_main]

use std::sync::OnceLock;

use jwt_jwks::config::Config;
use jwt_jwks::admin;
use jwt_jwks::authz::rules;
use jwt_jwks::token::find;
use libfuzzer_sys::fuzz_target;

fn cfg() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| {
        Config::parse(
            br#"{"jwks_uri":"http://idp/jwks","admin_token":"0123456789abcdef-admin",
                 "header_names":["Authorization","X-Token"],"uri_param_names":["jwt","access_token"],
                 "cookie_names":["jwt","session"],"max_token_size":512,
                 "rules":[{"path_prefix":"/a","methods":["GET"]},{"path":"/b","auth":"public"}]}"#,
        )
        .expect("fixed config")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Lines: method, path, then headers as "name: value".
    let mut lines = text.split('\n');
    let method = lines.next().unwrap_or_default();
    let path = lines.next().unwrap_or_default();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let c = cfg();
    let auth = headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.as_str());
    let _ = admin::route(c.admin.as_ref(), method, path, auth);
    let _ = rules::match_rule(&c.rules, method, path);
    let _ = find::is_preflight(method, &headers);
    if let Ok(Some(found)) = find::extract(c, &headers, path) {
        assert!(found.bytes().len() <= c.max_token_size);
        if let Ok(token) = found.token() {
            assert!(!matches!(found.source, find::Source::Header(_)) || !token.contains(','));
        }
        let _ = find::path_without_param(path.as_bytes(), "jwt");
    }
});
