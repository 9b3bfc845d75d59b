//! A provider's revocation list source: a document of deny entries pulled
//! from `revocation_uri` on its own interval, and what happens when it
//! cannot be refreshed.
#![forbid(unsafe_code)]

use crate::config::endpoint::{parse_endpoint, Endpoint};
use crate::config::error::ConfigError;
use crate::config::fields::Fields;

/// The provider fields of this file.
pub const REVOCATION_FIELDS: &[&str] = &[
    "revocation_uri",
    "revocation_upstream",
    "revocation_refresh_interval",
    "max_staleness",
    "revocation_fail",
];

/// The fields a status list shares with the pulled list.
const STATUS_SHARED: &[&str] = &["max_staleness", "revocation_fail"];

/// The shortest `revocation_refresh_interval`.
pub const MIN_INTERVAL_S: u64 = 5;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationSource {
    pub endpoint: Endpoint,
    /// Envoy cluster, or Kong `host:port` (default: the URI's authority).
    pub upstream: String,
    /// Seconds between pulls (a tenth of it is jitter, taken off).
    pub interval_s: u64,
    /// Past this many seconds without a good pull, the list counts as
    /// failed.
    pub max_staleness_s: u64,
    /// When failed: refuse every token of the provider (503) instead of
    /// serving with the last list.
    pub fail_closed: bool,
}

pub(crate) fn parse_revocation(f: &Fields) -> Result<Option<RevocationSource>, ConfigError> {
    let Some(uri) = f.string("revocation_uri")? else {
        // `max_staleness` and `revocation_fail` also serve status lists.
        let status_list = f.bool_or("status_list", false)?;
        let misplaced = |n: &str| f.has(n) && !(status_list && STATUS_SHARED.contains(&n));
        if let Some(other) = REVOCATION_FIELDS.iter().skip(1).find(|n| misplaced(n)) {
            return Err(f.err(other, "set only with revocation_uri"));
        }
        return Ok(None);
    };
    let endpoint = parse_endpoint(&uri).map_err(|e| f.err("revocation_uri", e.message))?;
    let upstream = match f.string("revocation_upstream")? {
        Some(u) if u.is_empty() => return Err(f.err("revocation_upstream", "must not be empty")),
        Some(u) => u,
        None => endpoint.authority.clone(),
    };
    let interval_s = f.count_in("revocation_refresh_interval", 60, MIN_INTERVAL_S, 86_400)?;
    let max_staleness_s = f.count_in("max_staleness", (interval_s * 5).max(300), 1, 7 * 86_400)?;
    if max_staleness_s < interval_s {
        return Err(f.err(
            "max_staleness",
            format!(
                "must be at least revocation_refresh_interval ({interval_s}), got \
                 {max_staleness_s}: the list would count as failed between two pulls"
            ),
        ));
    }
    let fail_closed = parse_fail(f)?;
    Ok(Some(RevocationSource {
        endpoint,
        upstream,
        interval_s,
        max_staleness_s,
        fail_closed,
    }))
}

/// `revocation_fail`: `true` for `closed`.
pub(crate) fn parse_fail(f: &Fields) -> Result<bool, ConfigError> {
    match f.string("revocation_fail")?.as_deref() {
        None | Some("open") => Ok(false),
        Some("closed") => Ok(true),
        Some(other) => Err(f.err(
            "revocation_fail",
            format!("must be \"open\" or \"closed\", got {other:?}"),
        )),
    }
}
