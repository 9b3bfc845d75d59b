//! What the engine hands the host glue: a verdict per request, what an
//! allowed request carries upstream, a paused request, a callout to send.
#![forbid(unsafe_code)]

use std::rc::Rc;

use crate::authz::refusal::Refusal;
use crate::keys::refresh::Doc;
use crate::token::find::Source;

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let the request through, with these changes (shared with the
    /// token cache: a hit hands out the grant without copying it).
    Allow(Rc<Grant>),
    Deny(Refusal),
    /// Pause until `doc` of provider `provider` is in (new keys, or a
    /// status list). With `dispatch`, the caller holds the fetch lease and
    /// must send the callout for `doc`.
    Wait {
        provider: usize,
        dispatch: bool,
        doc: Doc,
    },
}

/// What an allowed request carries upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// Headers to set (claims, payload, a phantom token), already
    /// sanitized.
    pub headers: Vec<(String, String)>,
    /// Whether the token must not go upstream whatever `forward_token`
    /// says (an opaque token replaced by its phantom JWT).
    pub strip_token: bool,
    /// The verified identity as JSON, for the host property.
    pub identity: Option<String>,
}

impl Verdict {
    pub fn is_allow(&self) -> bool {
        matches!(self, Verdict::Allow(_))
    }
}

/// A paused request, with what is needed to finish it from another context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub context_id: u32,
    pub token: String,
    pub source: Source,
    pub grpc: bool,
    pub provider: usize,
    /// The matched rule, if any.
    pub rule: Option<usize>,
    pub deadline_ms: u64,
    /// The generation of what it waits for when it started waiting.
    pub gen: u64,
    /// What it waits for: the provider's keys (`Doc::Jwks`) or a status
    /// list (`Doc::StatusList`).
    pub doc: Doc,
}

/// A callout to send: the JWKS, the OpenID Provider metadata, a revocation
/// or status list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    pub doc: Doc,
    /// Envoy cluster name, or Kong `host:port`.
    pub upstream: String,
    pub headers: Vec<(String, String)>,
    /// A request body (introspection's form).
    pub body: Option<Vec<u8>>,
    pub timeout_ms: u64,
}
