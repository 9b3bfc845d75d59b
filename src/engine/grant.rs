//! Authorization and what goes upstream, once a token is verified: the
//! route's requirements, claims forwarded as headers, the payload header,
//! the identity property.
#![forbid(unsafe_code)]

use serde::Serialize;
use serde_json::Value;

use crate::authz::refusal::Refusal;
use crate::authz::{forward, rules};
use crate::engine::verdict::Grant;
use crate::engine::Engine;
use crate::token::jose;

/// The verified identity handed to the host (`identity_property`), as JSON
/// with its keys in this order.
#[derive(Serialize)]
struct Identity<'a> {
    aud: Option<&'a jose::Audience<'a>>,
    iss: Option<&'a str>,
    provider: Option<&'a str>,
    sub: Option<&'a str>,
}

impl Engine {
    /// Authorization and what goes upstream, for a verified token.
    pub(super) fn grant(
        &self,
        d: &jose::Decoded,
        idx: usize,
        rule: Option<usize>,
    ) -> Result<Grant, Refusal> {
        let require = rule
            .and_then(|i| self.cfg.rules.get(i))
            .map_or(&self.cfg.default_require, |r| &r.require);
        let mut headers = Vec::new();
        if !require.is_empty() || !self.cfg.claims_to_headers.is_empty() {
            let payload: Value = serde_json::from_str(d.payload_json)
                .map_err(|_| Refusal::Decode(jose::DecodeError::Claims))?;
            rules::authorize(require, &self.cfg.claim_paths, &payload)
                .map_err(Refusal::InsufficientScope)?;
            for (path, header) in &self.cfg.claims_to_headers {
                if let Some(v) = rules::claim_at(&payload, path).and_then(forward::header_value) {
                    headers.push((header.clone(), v));
                }
            }
        }
        if let Some(h) = &self.cfg.payload_header {
            headers.push((h.clone(), d.payload_b64().to_string()));
        }
        let identity = self.identity_property.then(|| {
            let id = Identity {
                aud: d.claims.aud.as_ref(),
                iss: d.claims.iss.as_deref(),
                provider: self.cfg.providers.get(idx).map(|p| p.name.as_str()),
                sub: d.claims.sub.as_deref(),
            };
            serde_json::to_string(&id).unwrap_or_default()
        });
        Ok(Grant {
            headers,
            identity,
            strip_token: false,
        })
    }
}
