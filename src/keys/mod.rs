//! Key sets: a JWKS document parsed into keys (`jwks`), the layout of one
//! JWKS in proxy-wasm shared data that every worker reads (`layout`), and
//! the refresh state machine that decides who fetches, when, and what an
//! answer does to the shared set (`refresh`).
#![forbid(unsafe_code)]

pub mod jwks;
pub mod layout;
pub mod refresh;
