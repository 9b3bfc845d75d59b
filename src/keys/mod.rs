//! Key sets: a JWKS document parsed into keys (`jwks`), the OpenID
//! Provider metadata that may name it (`discovery`), the layout of one key
//! set in proxy-wasm shared data that every worker reads (`layout`), and
//! the refresh state machine that decides who fetches, when, and what an
//! answer does to the shared set (`refresh`), with its schedule from the
//! answers' HTTP caching headers (`freshness`) and its budget for unknown
//! `kid`s (`kid_budget`).
#![forbid(unsafe_code)]

pub mod discovery;
pub mod freshness;
pub mod jwks;
pub mod kid_budget;
pub mod layout;
pub mod refresh;
