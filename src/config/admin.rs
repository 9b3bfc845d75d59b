//! The admin path's configuration: its prefix and the digest of the bearer
//! token that protects it.
#![forbid(unsafe_code)]

use crate::config::error::ConfigError;
use crate::config::fields::Fields;

/// The admin path, present only when a token protects it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminConfig {
    pub prefix: String,
    /// SHA-256 of the admin bearer token.
    pub token_sha256: [u8; 32],
}

pub(crate) fn parse_admin(f: &Fields) -> Result<Option<AdminConfig>, ConfigError> {
    let prefix = f
        .string("admin_path_prefix")?
        .unwrap_or_else(|| "/jwt-jwks".to_string());
    if !prefix.starts_with('/')
        || prefix.len() < 2
        || prefix.ends_with('/')
        || prefix.contains(['?', '#', ' '])
    {
        return Err(ConfigError::new(
            "admin_path_prefix",
            format!("must start with '/', not end with '/', and hold no '?', '#' or spaces, got {prefix:?}"),
        ));
    }
    let token = f.string("admin_token")?;
    let digest = f.string("admin_token_sha256")?;
    let token_sha256 = match (token, digest) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "admin_token_sha256",
                "set admin_token or admin_token_sha256, not both",
            ))
        }
        (Some(t), None) => {
            if t.len() < 16 {
                return Err(ConfigError::new(
                    "admin_token",
                    "must be at least 16 characters",
                ));
            }
            hmac_sha256::Hash::hash(t.as_bytes())
        }
        (None, Some(hex)) => decode_hex32(&hex).ok_or_else(|| {
            ConfigError::new("admin_token_sha256", "must be 64 hexadecimal characters")
        })?,
        (None, None) => return Ok(None),
    };
    Ok(Some(AdminConfig {
        prefix,
        token_sha256,
    }))
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        *out.get_mut(i)? = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}
