//! jwt-jwks: a proxy-wasm HTTP filter that validates JWTs against keys
//! fetched from JWKS endpoints through host callouts and shared by every
//! worker through proxy-wasm shared data.
//!
//! The modules, from the bottom layer up (each uses only those above it in
//! this list; `tests/layers.rs` fails on any import cycle):
//! - `crypto`: algorithms, the RSA/ECDSA/Ed25519 verifiers, public keys
//!   from JWK components or PEM, the encoding of a host-side check.
//! - `config`: the JSON configuration, validated, as plain data.
//! - `token`: where a request carries its token; compact JWS decoding; the
//!   strict JSON reader.
//! - `authz`: the header and claims policy, route rules and what a token
//!   must grant, what a claim becomes upstream, and every refusal.
//! - `store`: the shared-data trait the logic sees the host through.
//! - `keys`: JWKS parsing, the shared key-set layout, the refresh state
//!   machine (leases, schedule, retries, unknown `kid`).
//! - `revoke`: deny entries, their index, the pulled lists and the admin
//!   push (kept in shared data with the layout of `keys`); Token Status
//!   Lists.
//! - `introspect`: opaque tokens: the introspection (or token exchange)
//!   call, its answers, the shared result cache.
//! - `metrics`, `response`, `admin`: counters, local replies (RFC 6750),
//!   the admin routes.
//! - `engine`: one VM's state and decisions: it runs a token through the
//!   layers above, keeps each provider's parsed keys in step with shared
//!   data, holds paused requests and the verified-token cache.
//! - `host`: the proxy-wasm glue (wasm32 only, but for the header-map
//!   reader): root and HTTP contexts and the adapters for shared data,
//!   metrics, the clock and Envoy's crypto.
//!
//! A request: `host::http` reads the headers and asks `admin` whether the
//! path is its own; `authz::rules` picks the route; `token::find` takes the
//! token; `engine` decodes it (`token::jose`), checks header and claims
//! (`authz::claims`), finds the key (`keys`, from shared data through
//! `store`), verifies (`crypto`, or Envoy's BoringSSL), authorizes
//! (`authz::rules`) and returns a verdict: allow with headers to set, deny
//! (`response` builds the answer), or wait for keys.
//! A refresh: `host::root`'s tick asks `engine`, which asks
//! `keys::refresh` whether this VM takes the lease; the host sends the
//! callout; its answer goes back through `keys::refresh` into
//! `keys::layout` (a new generation), and every worker re-reads the key
//! set when it sees that generation.
//!
//! Everything but `host` is host-neutral, `#![forbid(unsafe_code)]`, and
//! runs under `cargo test`.

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
pub mod authz;
pub mod config;
pub mod crypto;
pub mod engine;
pub mod host;
pub mod introspect;
pub mod keys;
pub mod metrics;
pub mod response;
pub mod revoke;
pub mod store;
pub mod token;
