//! jwt-jwks: a proxy-wasm HTTP filter that validates JWTs against keys
//! fetched from JWKS endpoints through host callouts and shared by every
//! worker through proxy-wasm shared data.
//!
//! The logic modules are host-neutral and `#![forbid(unsafe_code)]`; only
//! `filter` (compiled for wasm32) talks to the proxy-wasm host.

// No panic reachable from input: the logic may not unwrap, expect, panic or
// index out of bounds (tests may).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod admin;
pub mod alg;
pub mod cache;
pub mod config;
pub mod ecdsa;
pub mod ed25519;
pub mod engine;
pub mod fetch;
pub mod headers;
pub mod hostcrypto;
pub mod jose;
pub mod json;
pub mod jwks;
pub mod keys;
pub mod metrics;
pub mod pem;
pub mod policy;
pub mod response;
pub mod rsa;
pub mod rules;
pub mod token;
pub mod token_cache;

#[cfg(target_arch = "wasm32")]
mod filter;
