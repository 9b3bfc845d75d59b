//! OpenID Provider metadata (OpenID Connect Discovery 1.0): the document at
//! a provider's `discovery_uri` names its `jwks_uri`. Its `issuer` must be
//! one of the provider's configured `issuers` (section 4.3: else the
//! document is not used), and its `jwks_uri` an http(s) URI.
#![forbid(unsafe_code)]

use serde_json::Value;

use crate::config::{parse_endpoint, Endpoint, Provider};

/// What the filter takes from the metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub issuer: String,
    pub jwks_uri: Endpoint,
    /// Kept for opaque-token introspection.
    pub introspection_endpoint: Option<String>,
}

/// Reads and checks a metadata document for provider `p`.
pub fn parse(body: &[u8], p: &Provider) -> Result<Metadata, String> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| format!("discovery document is not JSON: {e}"))?;
    let Value::Object(map) = &doc else {
        return Err("discovery document is not a JSON object".to_string());
    };
    let text = |name: &str| match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("discovery document: {name} is not a string")),
    };
    let issuer = text("issuer")?.ok_or("discovery document has no issuer")?;
    if !p.claims.issuers.contains(&issuer) {
        return Err(format!(
            "discovery document's issuer {issuer:?} is not one of the provider's issuers"
        ));
    }
    let jwks = text("jwks_uri")?.ok_or("discovery document has no jwks_uri")?;
    let jwks_uri = parse_endpoint(&jwks)
        .map_err(|e| format!("discovery document's jwks_uri: {}", e.message))?;
    Ok(Metadata {
        issuer,
        jwks_uri,
        introspection_endpoint: text("introspection_endpoint")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn provider() -> Provider {
        Config::parse(
            br#"{"discovery_uri":"https://idp/realms/a/.well-known/openid-configuration",
                 "issuers":["https://idp/realms/a"]}"#,
        )
        .unwrap()
        .providers
        .remove(0)
    }

    #[test]
    fn takes_the_jwks_uri_of_a_document_for_a_configured_issuer() {
        let m = parse(
            br#"{"issuer":"https://idp/realms/a","jwks_uri":"https://keys.idp:8443/certs?v=2",
                 "introspection_endpoint":"https://idp/introspect","other":[1]}"#,
            &provider(),
        )
        .unwrap();
        assert_eq!(m.jwks_uri.authority, "keys.idp:8443");
        assert_eq!(m.jwks_uri.path, "/certs?v=2");
        assert_eq!(
            m.introspection_endpoint.as_deref(),
            Some("https://idp/introspect")
        );
    }

    #[test]
    fn refuses_another_issuer_and_broken_documents() {
        let p = provider();
        let cases: &[(&[u8], &str)] = &[
            (
                br#"{"issuer":"https://evil/realms/a","jwks_uri":"https://idp/certs"}"#,
                "not one of the provider's issuers",
            ),
            (
                br#"{"issuer":"https://idp/realms/a/","jwks_uri":"https://idp/certs"}"#,
                "not one of",
            ),
            (br#"{"jwks_uri":"https://idp/certs"}"#, "no issuer"),
            (br#"{"issuer":"https://idp/realms/a"}"#, "no jwks_uri"),
            (
                br#"{"issuer":"https://idp/realms/a","jwks_uri":"ftp://idp/certs"}"#,
                "jwks_uri",
            ),
            (
                br#"{"issuer":7,"jwks_uri":"https://idp/certs"}"#,
                "not a string",
            ),
            (b"[]", "not a JSON object"),
            (b"{", "not JSON"),
        ];
        for (body, want) in cases {
            let err = parse(body, &p).unwrap_err();
            assert!(
                err.contains(want),
                "{err:?} for {}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
