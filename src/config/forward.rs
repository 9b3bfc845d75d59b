//! What the configuration may forward upstream: header names the filter
//! may set, and `claims_to_headers`.
#![forbid(unsafe_code)]

use serde_json::Value;

use crate::config::error::ConfigError;
use crate::config::fields::{describe, Fields};

/// Headers the filter never sets from claims.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
];

pub(crate) fn header_name(f: &Fields, field: &str, name: &str) -> Result<String, ConfigError> {
    let lower = name.to_ascii_lowercase();
    let valid = !lower.is_empty()
        && lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~!#$&'*+^`|".contains(&b));
    if !valid || RESERVED_HEADERS.contains(&lower.as_str()) {
        return Err(f.err(
            field,
            format!("{name:?} is not a header name the filter may set"),
        ));
    }
    Ok(lower)
}

pub(crate) fn parse_claims_to_headers(
    f: &Fields,
) -> Result<Vec<(Vec<String>, String)>, ConfigError> {
    let Some(v) = f.raw("claims_to_headers") else {
        return Ok(Vec::new());
    };
    let Value::Object(m) = v else {
        return Err(f.err(
            "claims_to_headers",
            format!(
                "expected an object of claim path to header name, got {}",
                describe(v)
            ),
        ));
    };
    let mut out: Vec<(Vec<String>, String)> = Vec::new();
    for (path, header) in m {
        let Value::String(h) = header else {
            return Err(f.err(
                "claims_to_headers",
                format!("{path:?}: the header name must be a string"),
            ));
        };
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(f.err("claims_to_headers", format!("{path:?} is not a claim path")));
        }
        let h = header_name(f, "claims_to_headers", h)?;
        if out.iter().any(|(_, x)| *x == h) {
            return Err(f.err("claims_to_headers", format!("header {h:?} is used twice")));
        }
        out.push((path.split('.').map(str::to_string).collect(), h));
    }
    Ok(out)
}
