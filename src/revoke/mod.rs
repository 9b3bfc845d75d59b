//! Revocation: deny entries (`jti`, `sub`, client, `sid`, not-before cut-offs)
//! and Token Status Lists, checked after a token's signature and claims
//! pass, and again each time a verdict is served from the token cache.
//!
//! - `entry`: the entry format shared by the admin push and pulled lists.
//! - `index`: a worker's lookup structure (one hash lookup per claim kind).
//! - `held`: a worker's copy of every list, synced by generation.
//! - `pull`: a provider's `revocation_uri`: schedule, lease, answers.
//! - `push`: the admin routes' edits of the pushed list.
//! - `status`: Token Status Lists: a token's reference, the list token,
//!   the lookup.
//! - `status_fetch`: one status list in shared data: lease, schedule,
//!   answers.
//! - `status_held`: a worker's copies of the status lists its tokens name.
//!
//! Both sources live in shared data as lists with a generation and markers
//! (the layout of `keys::layout`), so every worker sees a change on its next
//! request.
#![forbid(unsafe_code)]

pub mod entry;
pub mod held;
pub mod index;
pub mod pull;
pub mod push;
pub mod status;
pub mod status_fetch;
pub mod status_held;
