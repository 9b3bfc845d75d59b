//! Opaque tokens, checked at the authorization server (seed 003's phantom
//! token flow): RFC 7662 introspection in three answer formats, or RFC 8693
//! token exchange; the answers cached in shared data for every worker.
//!
//! - `request`: the callout: form body, client authentication, `Accept`.
//! - `answer`: what an answer means: active (claims, a phantom JWT, how
//!   long it may be kept), inactive, or a failure of the server (503/502).
//! - `cache`: the shared result cache: fixed slots keyed by a digest of the
//!   token scoped to the provider's settings, leases so that one call
//!   serves every request for a token, an epoch for clears, the sweep.
//! - `held`: one VM's view: the epoch it saw, the calls it awaits.
#![forbid(unsafe_code)]

pub mod answer;
pub mod cache;
pub mod held;
pub mod request;
