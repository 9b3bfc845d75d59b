//! A provider's Token Status List checks (draft-ietf-oauth-status-list): a
//! token carrying `status.status_list {idx, uri}` is looked up in the list
//! at `uri`, a JWT signed with the provider's keys.
#![forbid(unsafe_code)]

use crate::config::error::ConfigError;
use crate::config::fields::Fields;
use crate::config::revocation::parse_fail;

/// The provider fields of this file (`max_staleness` and `revocation_fail`
/// are shared with the pulled list: `config::revocation`).
pub const STATUS_LIST_FIELDS: &[&str] = &[
    "status_list",
    "status_list_upstream",
    "status_list_ttl",
    "max_status_list_size",
    "max_status_lists",
];

/// The shortest time a list is kept before it is fetched again, whatever
/// its `ttl` says: the bound on how often one list is fetched.
pub const MIN_TTL_S: u64 = 2;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusListSettings {
    /// Envoy cluster, or Kong `host:port`, for every list (default: each
    /// list URI's authority).
    pub upstream: Option<String>,
    /// How long a list without a `ttl` claim is kept (seconds).
    pub default_ttl_s: u64,
    /// The largest list, in bytes once inflated.
    pub max_size: usize,
    /// How many lists this provider's tokens may name (per worker).
    pub max_lists: usize,
    /// Past `max(ttl, max_staleness)` seconds after its last good fetch, a
    /// list counts as failed.
    pub max_staleness_s: u64,
    /// When failed: refuse the provider's tokens that name it (503)
    /// instead of serving with the last list, or without one.
    pub fail_closed: bool,
}

pub(crate) fn parse_status_list(f: &Fields) -> Result<Option<StatusListSettings>, ConfigError> {
    if !f.bool_or("status_list", false)? {
        if let Some(other) = STATUS_LIST_FIELDS.iter().skip(1).find(|n| f.has(n)) {
            return Err(f.err(other, "set only with status_list: true"));
        }
        return Ok(None);
    }
    let upstream = match f.string("status_list_upstream")? {
        Some(u) if u.is_empty() => return Err(f.err("status_list_upstream", "must not be empty")),
        u => u,
    };
    let default_ttl_s = f.count_in("status_list_ttl", 300, MIN_TTL_S, 86_400)?;
    Ok(Some(StatusListSettings {
        upstream,
        default_ttl_s,
        max_size: f.count_in("max_status_list_size", 1 << 20, 1, 16 << 20)? as usize,
        max_lists: f.count_in("max_status_lists", 16, 1, 1024)? as usize,
        max_staleness_s: f.count_in("max_staleness", 300, 1, 7 * 86_400)?,
        fail_closed: parse_fail(f)?,
    }))
}
