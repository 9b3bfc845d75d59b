//! The answers the filter sends itself: refusals (RFC 6750) and admin replies.
#![forbid(unsafe_code)]

use serde_json::json;

use crate::authz::refusal::{Class, Refusal};

/// A local reply, host-neutral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// For gRPC requests: the gRPC status to send instead of the HTTP one.
    pub grpc_status: Option<u32>,
}

/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_S: u32 = 5;

const GRPC_UNAUTHENTICATED: u32 = 16;
const GRPC_INVALID_ARGUMENT: u32 = 3;
const GRPC_UNAVAILABLE: u32 = 14;
const GRPC_PERMISSION_DENIED: u32 = 7;

pub fn json_reply(status: u16, body: serde_json::Value) -> LocalReply {
    LocalReply {
        status,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: body.to_string(),
        grpc_status: None,
    }
}

/// The refusal answer: status, `WWW-Authenticate`, and a JSON body that
/// never echoes the token.
pub fn refusal(r: &Refusal, realm: &str, grpc: bool) -> LocalReply {
    let desc = r.describe();
    let (status, error, challenge, grpc_status) = match r.class() {
        Class::NoCredentials => (
            401,
            "unauthorized",
            Some(format!("Bearer realm=\"{realm}\"")),
            GRPC_UNAUTHENTICATED,
        ),
        Class::InvalidRequest => (
            400,
            "invalid_request",
            Some(format!(
                "Bearer realm=\"{realm}\", error=\"invalid_request\", error_description=\"{desc}\""
            )),
            GRPC_INVALID_ARGUMENT,
        ),
        Class::InvalidToken => (
            401,
            "invalid_token",
            Some(format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{desc}\""
            )),
            GRPC_UNAUTHENTICATED,
        ),
        Class::Unavailable => (503, "temporarily_unavailable", None, GRPC_UNAVAILABLE),
        Class::BadGateway => (502, "bad_gateway", None, GRPC_UNAVAILABLE),
        Class::Forbidden => {
            let scope = match r {
                Refusal::InsufficientScope(m) => m.scope_attribute(),
                _ => None,
            };
            let scope = scope
                .map(|s| format!(", scope=\"{s}\""))
                .unwrap_or_default();
            (
                403,
                "insufficient_scope",
                Some(format!(
                    "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{desc}\"{scope}"
                )),
                GRPC_PERMISSION_DENIED,
            )
        }
    };
    let body = match r {
        Refusal::InsufficientScope(m) => {
            json!({ "error": error, "message": desc, "missing": m.to_json() })
        }
        _ => json!({ "error": error, "message": desc }),
    };
    let mut reply = json_reply(status, body);
    if let Some(c) = challenge {
        reply.headers.push(("www-authenticate".into(), c));
    }
    if status == 503 {
        reply
            .headers
            .push(("retry-after".into(), RETRY_AFTER_S.to_string()));
    }
    if grpc {
        reply.grpc_status = Some(grpc_status);
    }
    reply
}

/// Whether the request is gRPC (answered with `grpc-status`).
pub fn is_grpc(content_type: Option<&[u8]>) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    content_type
        .and_then(|c| c.get(..GRPC.len()))
        .is_some_and(|p| p.eq_ignore_ascii_case(GRPC))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::jose::DecodeError;

    fn header<'a>(r: &'a LocalReply, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn missing_token_is_a_bare_challenge() {
        let r = refusal(&Refusal::MissingToken, "api", false);
        assert_eq!(r.status, 401);
        assert_eq!(header(&r, "www-authenticate"), Some("Bearer realm=\"api\""));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "unauthorized");
    }

    #[test]
    fn invalid_token_names_the_error_and_description() {
        let r = refusal(&Refusal::Expired, "api", false);
        assert_eq!(r.status, 401);
        assert_eq!(
            header(&r, "www-authenticate"),
            Some("Bearer realm=\"api\", error=\"invalid_token\", error_description=\"token expired\"")
        );
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body,
            json!({"error": "invalid_token", "message": "token expired"})
        );
    }

    #[test]
    fn bad_requests_and_unavailability() {
        let r = refusal(&Refusal::TokenTooLarge, "api", false);
        assert_eq!(r.status, 400);
        assert!(header(&r, "www-authenticate")
            .unwrap()
            .contains("error=\"invalid_request\""));
        let r = refusal(&Refusal::KeysUnavailable, "api", false);
        assert_eq!(r.status, 503);
        assert_eq!(header(&r, "retry-after"), Some("5"));
    }

    #[test]
    fn insufficient_scope_names_what_is_missing() {
        use crate::authz::rules::Missing;
        use crate::config::rules::{Match, Requirement, Requirements};
        let missing = Missing(Requirements {
            scopes: Some(Requirement {
                mode: Match::Any,
                values: vec!["invoice_*".into(), "admin".into()],
            }),
            ..Requirements::default()
        });
        let r = refusal(&Refusal::InsufficientScope(missing), "api", false);
        assert_eq!(r.status, 403);
        let challenge = header(&r, "www-authenticate").unwrap();
        assert!(
            challenge.starts_with("Bearer realm=\"api\", error=\"insufficient_scope\""),
            "{challenge}"
        );
        assert!(
            challenge.ends_with(", scope=\"invoice_* admin\""),
            "{challenge}"
        );
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            body["missing"],
            json!({"scopes": {"any": ["invoice_*", "admin"]}})
        );
        let g = refusal(&Refusal::InsufficientScope(Missing::default()), "api", true);
        assert_eq!(g.grpc_status, Some(7));
    }

    #[test]
    fn grpc_requests_get_a_grpc_status() {
        assert_eq!(
            refusal(&Refusal::Decode(DecodeError::Parts), "r", true).grpc_status,
            Some(16)
        );
        assert_eq!(
            refusal(&Refusal::KeysUnavailable, "r", true).grpc_status,
            Some(14)
        );
        assert_eq!(refusal(&Refusal::Expired, "r", false).grpc_status, None);
        assert!(is_grpc(Some(b"application/grpc+proto")));
        assert!(is_grpc(Some(b"Application/GRPC")));
        assert!(!is_grpc(Some(b"application/json")));
        assert!(!is_grpc(Some(b"application/grp")));
        assert!(!is_grpc(None));
    }
}
