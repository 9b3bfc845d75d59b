//! Introspection and token-exchange answers: any status and body, in every
//! answer format, never a panic; an active answer without a JWT carries a
//! JSON object of claims.
#![no_main]

use jwt_jwks::config::Config;
use jwt_jwks::introspect::answer::{self, Reading};
use jwt_jwks::keys::refresh::Answer;
use libfuzzer_sys::fuzz_target;

const MODES: [&str; 5] = [
    r#""response":"json""#,
    r#""response":"json","jwt_member":"jwt""#,
    r#""response":"jwt""#,
    r#""response":"introspection_jwt""#,
    r#""mode":"token_exchange""#,
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let mode = MODES[usize::from(first) % MODES.len()];
    let status = [200u16, 204, 400, 401, 410, 503][usize::from(first / 8) % 6];
    let cfg = Config::parse(
        format!(
            r#"{{"jwks_uri":"http://i/j","introspection":{{"endpoint":"http://i/x","client_id":"c","client_secret":"s",{mode}}}}}"#
        )
        .as_bytes(),
    )
    .expect("the fuzz configuration loads");
    let s = cfg.providers[0].introspection.as_ref().expect("introspection");
    let a = Answer {
        status: Some(status),
        body_size: body.len(),
        body: Some(body),
        ..Answer::default()
    };
    if let Ok(Reading::Active { claims: Some(c), jwt: None, .. }) = answer::read(s, &a) {
        assert!(serde_json::from_str::<serde_json::Value>(&c).is_ok_and(|v| v.is_object()));
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = answer::read_signed_payload(text);
    }
});
