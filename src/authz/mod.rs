//! What a decoded token must satisfy, and why a request is refused: the
//! header and claims policy checked before the signature (`claims`), the
//! route rules and the scopes, permissions and roles a verified token must
//! grant (`rules`), what a claim becomes upstream (`forward`), and every
//! refusal with its RFC 6750 class, description and metric (`refusal`).
#![forbid(unsafe_code)]

pub mod claims;
pub mod forward;
pub mod refusal;
pub mod rules;
