//! Tokens before any key is involved: where a request carries one
//! (`find`), how a compact JWS decodes into its header, claims and
//! signature (`jose`), and the strict JSON reader both JOSE documents go
//! through (`json`).
#![forbid(unsafe_code)]

pub mod find;
pub mod jose;
pub mod json;
