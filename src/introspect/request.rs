//! The introspection (or token exchange) callout: `POST` of a form to the
//! endpoint, with the gateway's client credentials, never the client's.
#![forbid(unsafe_code)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::config::introspection::{AnswerFormat, AuthMethod, IntrospectionSettings, Mode};
use crate::config::Endpoint;

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749
/// appendix B: unreserved characters kept, space as `+`).
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The headers and body of the call for `token`.
pub fn build(
    s: &IntrospectionSettings,
    endpoint: &Endpoint,
    token: &str,
) -> (Vec<(String, String)>, Vec<u8>) {
    let mut form: Vec<(&str, &str)> = match &s.mode {
        Mode::Introspection(_) => vec![("token", token), ("token_type_hint", "access_token")],
        Mode::TokenExchange { audience, scope } => {
            let mut f = vec![
                ("grant_type", EXCHANGE),
                ("subject_token", token),
                ("subject_token_type", ACCESS_TOKEN),
                ("requested_token_type", JWT),
            ];
            if let Some(a) = audience {
                f.push(("audience", a));
            }
            if let Some(sc) = scope {
                f.push(("scope", sc));
            }
            f
        }
    };
    if s.auth_method == AuthMethod::Post {
        form.push(("client_id", &s.client_id));
        form.push(("client_secret", &s.client_secret));
    }
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let accept = match &s.mode {
        Mode::Introspection(AnswerFormat::Json) | Mode::TokenExchange { .. } => "application/json",
        Mode::Introspection(AnswerFormat::Jwt) => "application/jwt",
        Mode::Introspection(AnswerFormat::IntrospectionJwt) => {
            "application/token-introspection+jwt"
        }
    };
    let mut headers = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), endpoint.path.clone()),
        (":authority".to_string(), endpoint.authority.clone()),
        (":scheme".to_string(), endpoint.scheme.clone()),
        (
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("accept".to_string(), accept.to_string()),
    ];
    if s.auth_method == AuthMethod::Basic {
        // RFC 6749 section 2.3.1: each part form-encoded before base64.
        let pair = format!(
            "{}:{}",
            form_encode(&s.client_id),
            form_encode(&s.client_secret)
        );
        headers.push((
            "authorization".to_string(),
            format!("Basic {}", STANDARD.encode(pair)),
        ));
    }
    (headers, body.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn settings(extra: &str) -> IntrospectionSettings {
        let cfg = Config::parse(
            format!(
                r#"{{"jwks_uri":"http://idp/jwks","introspection":{{"endpoint":"https://idp:8443/introspect","client_id":"gw one","client_secret":"s:cr%t"{extra}}}}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        cfg.providers[0].introspection.clone().unwrap()
    }

    fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn basic_auth_form_encodes_both_parts_before_base64() {
        let s = settings("");
        let e = s.endpoint.clone().unwrap();
        let (h, body) = build(&s, &e, "op aque+/=");
        assert_eq!(header(&h, ":method"), Some("POST"));
        assert_eq!(header(&h, ":path"), Some("/introspect"));
        assert_eq!(header(&h, ":authority"), Some("idp:8443"));
        assert_eq!(header(&h, "accept"), Some("application/json"));
        // "gw+one:s%3Acr%25t"
        assert_eq!(
            header(&h, "authorization"),
            Some(format!("Basic {}", STANDARD.encode("gw+one:s%3Acr%25t")).as_str())
        );
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "token=op+aque%2B%2F%3D&token_type_hint=access_token"
        );
    }

    #[test]
    fn post_auth_and_token_exchange_and_accept_per_format() {
        let s = settings(r#","auth_method":"client_secret_post","response":"jwt""#);
        let (h, body) = build(&s, s.endpoint.as_ref().unwrap(), "t");
        assert_eq!(header(&h, "authorization"), None);
        assert_eq!(header(&h, "accept"), Some("application/jwt"));
        let body = String::from_utf8(body).unwrap();
        assert!(
            body.ends_with("&client_id=gw+one&client_secret=s%3Acr%25t"),
            "{body}"
        );
        let s = settings(r#","response":"introspection_jwt""#);
        let (h, _) = build(&s, s.endpoint.as_ref().unwrap(), "t");
        assert_eq!(
            header(&h, "accept"),
            Some("application/token-introspection+jwt")
        );
        let s = settings(r#","mode":"token_exchange","audience":"https://api","scope":"a b""#);
        let (_, body) = build(&s, s.endpoint.as_ref().unwrap(), "t");
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=t\
             &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token\
             &requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt\
             &audience=https%3A%2F%2Fapi&scope=a+b"
        );
    }
}
