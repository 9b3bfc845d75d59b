//! What an introspection (or token exchange) answer means. A JWT it carries
//! (phantom token, RFC 9701 answer, exchanged token) is returned unverified:
//! the engine verifies it with the provider's keys before anything is
//! cached or forwarded.
#![forbid(unsafe_code)]

use serde_json::{Map, Value};

use crate::config::introspection::{AnswerFormat, IntrospectionSettings, Mode};
use crate::keys::refresh::Answer;

/// An answer read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// The token is active. `claims`: RFC 7662 members (JSON object text),
    /// when no JWT stands for them; `jwt`: a phantom JWT to verify and
    /// forward; `cap_s`: a lifetime the answer itself gives (`expires_in`).
    Active {
        claims: Option<String>,
        jwt: Option<String>,
        cap_s: Option<u64>,
    },
    /// RFC 9701: a signed answer to verify, then read with
    /// [`read_signed_payload`].
    Signed(String),
    Inactive,
}

/// Why an answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Not reached in time, refused, or 429/503: answered 503.
    Unavailable(String),
    /// Answered, uselessly: 502. The kind (`status`, `malformed`,
    /// `phantom`) and why.
    Failed(&'static str, String),
}

fn malformed(why: impl Into<String>) -> Failure {
    Failure::Failed("malformed", why.into())
}

/// Reads an RFC 7662 object: inactive, or active with its claims (and the
/// phantom JWT in `jwt_member`).
fn read_object(o: &Map<String, Value>, jwt_member: Option<&str>) -> Result<Reading, Failure> {
    match o.get("active") {
        Some(Value::Bool(false)) => return Ok(Reading::Inactive),
        Some(Value::Bool(true)) => {}
        _ => return Err(malformed("no boolean \"active\"")),
    }
    let jwt = match jwt_member {
        None => None,
        Some(m) => match o.get(m) {
            Some(Value::String(j)) if !j.is_empty() => Some(j.clone()),
            _ => return Err(malformed(format!("no JWT in \"{m}\""))),
        },
    };
    let mut claims = o.clone();
    claims.remove("active");
    if let Some(m) = jwt_member {
        claims.remove(m);
    }
    Ok(Reading::Active {
        claims: jwt.is_none().then(|| Value::Object(claims).to_string()),
        jwt,
        cap_s: None,
    })
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, Failure> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(malformed("not a JSON object")),
    }
}

fn compact_jwt(body: &[u8]) -> Result<String, Failure> {
    let text = std::str::from_utf8(body)
        .map_err(|_| malformed("not text"))?
        .trim();
    if text.split('.').count() != 3 {
        return Err(malformed("not a compact JWT"));
    }
    Ok(text.to_string())
}

/// Reads an answer (`body` only when it was read: a 200 within the size
/// limit).
pub fn read(s: &IntrospectionSettings, a: &Answer) -> Result<Reading, Failure> {
    let Some(status) = a.status else {
        return Err(Failure::Unavailable(format!(
            "no answer ({})",
            a.dispatch_status.as_deref().unwrap_or("callout failed")
        )));
    };
    let body = a.body.unwrap_or_default();
    match (status, &s.mode) {
        // 504: what Envoy answers for a callout past its timeout.
        (429 | 503 | 504, _) => Err(Failure::Unavailable(format!("HTTP {status}"))),
        (200, _) if a.body.is_none() && a.body_size > 0 => Err(malformed(format!(
            "answer of {} bytes is too large",
            a.body_size
        ))),
        (200, Mode::Introspection(AnswerFormat::Json)) => {
            read_object(&json_object(body)?, s.jwt_member.as_deref())
        }
        (200, Mode::Introspection(AnswerFormat::Jwt)) => Ok(Reading::Active {
            claims: None,
            jwt: Some(compact_jwt(body)?),
            cap_s: None,
        }),
        (204 | 400 | 410, Mode::Introspection(AnswerFormat::Jwt)) => Ok(Reading::Inactive),
        (200, Mode::Introspection(AnswerFormat::IntrospectionJwt)) => {
            Ok(Reading::Signed(compact_jwt(body)?))
        }
        (200, Mode::TokenExchange { .. }) => {
            let o = json_object(body)?;
            let Some(Value::String(jwt)) = o.get("access_token") else {
                return Err(malformed("no access_token"));
            };
            let cap_s = match o.get("expires_in") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_u64().ok_or_else(|| malformed("bad expires_in"))?),
            };
            Ok(Reading::Active {
                claims: None,
                jwt: Some(jwt.clone()),
                cap_s,
            })
        }
        // RFC 8693 section 2.2.2: an unusable subject token is a 400
        // (`invalid_request` or `invalid_grant`).
        (400, Mode::TokenExchange { .. }) => Ok(Reading::Inactive),
        (_, _) => Err(Failure::Failed("status", format!("HTTP {status}"))),
    }
}

/// Reads a verified RFC 9701 answer's payload: its `token_introspection`
/// member is an RFC 7662 object.
pub fn read_signed_payload(payload_json: &str) -> Result<Reading, Failure> {
    let o = json_object(payload_json.as_bytes())?;
    match o.get("token_introspection") {
        Some(Value::Object(ti)) => read_object(ti, None),
        _ => Err(malformed("no token_introspection object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn settings(extra: &str) -> IntrospectionSettings {
        let cfg = Config::parse(
            format!(
                r#"{{"jwks_uri":"http://idp/jwks","introspection":{{"endpoint":"http://idp/i","client_id":"gw","client_secret":"s"{extra}}}}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        cfg.providers[0].introspection.clone().unwrap()
    }

    fn answer(status: u16, body: &str) -> Answer<'_> {
        Answer {
            status: Some(status),
            body_size: body.len(),
            body: (!body.is_empty()).then_some(body.as_bytes()),
            ..Answer::default()
        }
    }

    #[test]
    fn rfc7662_json_with_and_without_a_phantom_member() {
        let s = settings("");
        let r = read(
            &s,
            &answer(200, r#"{"active":true,"sub":"a","scope":"x y","exp":5}"#),
        );
        let Ok(Reading::Active {
            claims: Some(c),
            jwt: None,
            ..
        }) = r
        else {
            panic!("{r:?}")
        };
        let c: Value = serde_json::from_str(&c).unwrap();
        assert_eq!(c, serde_json::json!({"sub":"a","scope":"x y","exp":5}));
        assert_eq!(
            read(&s, &answer(200, r#"{"active":false}"#)),
            Ok(Reading::Inactive)
        );
        for bad in [r#"{"active":"yes"}"#, r#"{}"#, "[]", "nope"] {
            assert!(
                matches!(
                    read(&s, &answer(200, bad)),
                    Err(Failure::Failed("malformed", _))
                ),
                "{bad}"
            );
        }
        let s = settings(r#","jwt_member":"jwt""#);
        assert_eq!(
            read(&s, &answer(200, r#"{"active":true,"jwt":"a.b.c"}"#)),
            Ok(Reading::Active {
                claims: None,
                jwt: Some("a.b.c".into()),
                cap_s: None
            })
        );
        assert!(read(&s, &answer(200, r#"{"active":true}"#)).is_err());
    }

    #[test]
    fn statuses_map_to_inactive_503_or_502() {
        let s = settings("");
        let down = Answer {
            dispatch_status: Some("timeout".into()),
            ..Answer::default()
        };
        assert!(matches!(read(&s, &down), Err(Failure::Unavailable(m)) if m.contains("timeout")));
        for code in [429, 503, 504] {
            assert!(matches!(
                read(&s, &answer(code, "")),
                Err(Failure::Unavailable(_))
            ));
        }
        for code in [401, 403, 404, 500, 502, 204] {
            assert!(
                matches!(
                    read(&s, &answer(code, "")),
                    Err(Failure::Failed("status", _))
                ),
                "{code}"
            );
        }
        let jwt = settings(r#","response":"jwt""#);
        for code in [204, 400, 410] {
            assert_eq!(
                read(&jwt, &answer(code, "")),
                Ok(Reading::Inactive),
                "{code}"
            );
        }
        assert!(matches!(
            read(&jwt, &answer(401, "")),
            Err(Failure::Failed("status", _))
        ));
        assert_eq!(
            read(&jwt, &answer(200, " a.b.c\n")),
            Ok(Reading::Active {
                claims: None,
                jwt: Some("a.b.c".into()),
                cap_s: None
            })
        );
        assert!(read(&jwt, &answer(200, "a.b")).is_err());
        let oversized = Answer {
            status: Some(200),
            body_size: 1 << 30,
            ..Answer::default()
        };
        assert!(matches!(
            read(&jwt, &oversized),
            Err(Failure::Failed("malformed", _))
        ));
    }

    #[test]
    fn rfc9701_and_token_exchange() {
        let s = settings(r#","response":"introspection_jwt""#);
        assert_eq!(
            read(&s, &answer(200, "h.p.s")),
            Ok(Reading::Signed("h.p.s".into()))
        );
        assert!(matches!(
            read_signed_payload(r#"{"iss":"i","token_introspection":{"active":true,"sub":"a"}}"#),
            Ok(Reading::Active {
                claims: Some(_),
                jwt: None,
                ..
            })
        ));
        assert_eq!(
            read_signed_payload(r#"{"token_introspection":{"active":false}}"#),
            Ok(Reading::Inactive)
        );
        assert!(read_signed_payload(r#"{"active":true}"#).is_err());
        let x = settings(r#","mode":"token_exchange""#);
        assert_eq!(
            read(
                &x,
                &answer(
                    200,
                    r#"{"access_token":"a.b.c","issued_token_type":"urn:ietf:params:oauth:token-type:jwt","expires_in":60}"#
                )
            ),
            Ok(Reading::Active {
                claims: None,
                jwt: Some("a.b.c".into()),
                cap_s: Some(60)
            })
        );
        assert_eq!(
            read(&x, &answer(400, r#"{"error":"invalid_grant"}"#)),
            Ok(Reading::Inactive)
        );
        assert!(read(&x, &answer(200, r#"{"token_type":"Bearer"}"#)).is_err());
    }
}
