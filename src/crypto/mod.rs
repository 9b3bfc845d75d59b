//! Signature checking, below everything else: the JWS algorithms and key
//! families, the verifiers written here for wasm (RSA, ECDSA with per-key
//! tables, Ed25519), public keys built from JWK components or PEM, and the
//! encoding of a check for the host's own verifier (Envoy's BoringSSL).
//! Nothing here knows about tokens, configuration or the host.
#![forbid(unsafe_code)]

pub mod alg;
pub mod ecdsa;
pub mod ed25519;
pub mod host;
pub mod key;
pub mod pem;
pub mod roca;
pub mod rsa;
