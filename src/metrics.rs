//! Counters, named once. Envoy shows proxy-wasm metrics in `/stats` and
//! `/stats/prometheus` (prefixed `wasmcustom.`); Kong through its
//! Prometheus plugin's `wasm_metrics` option.
#![forbid(unsafe_code)]

use crate::authz::refusal::Refusal;

/// One counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Allowed,
    /// A refusal, by its `Refusal::metric()` reason.
    Denied(&'static str),
    FetchSuccess,
    FetchFailure,
    CacheHit,
    CacheMiss,
    /// A request paused to wait for keys.
    Paused,
    AdminRequests,
    /// A token answered from the verified-token cache.
    TokenCacheHit,
    /// A signature checked by the host's crypto.
    HostVerification,
    /// A callout sent for a JWKS.
    FetchSent,
    /// A JWKS answered `304 Not Modified` (also a success).
    NotModified,
    /// A callout sent for OpenID Provider metadata.
    DiscoverySent,
    /// Metadata that could not be fetched or used.
    DiscoveryFailure,
    /// A callout sent for a revocation list.
    RevocationFetchSent,
    /// A revocation list stored or confirmed (`304`).
    RevocationFetchSuccess,
    /// A revocation list that could not be fetched or used.
    RevocationFetchFailure,
    /// A callout sent for a status list.
    StatusListFetchSent,
    /// A status list stored or confirmed (`304`).
    StatusListFetchSuccess,
    /// A status list that could not be fetched or was not accepted.
    StatusListFetchFailure,
    /// An introspection (or token exchange) call sent.
    IntrospectionCalls,
    /// An opaque token answered from the shared introspection cache.
    IntrospectionHit,
    /// An inactive token answered from the shared introspection cache.
    IntrospectionNegativeHit,
    /// A request that waited for another request's call for its token.
    IntrospectionCoalesced,
    /// A call that failed, by kind: unreachable or 429/503; another status;
    /// a malformed answer; a phantom JWT that did not verify.
    IntrospectionErrorUnavailable,
    IntrospectionErrorStatus,
    IntrospectionErrorMalformed,
    IntrospectionErrorPhantom,
}

const FIXED: &[&str] = &[
    "jwt_jwks_allowed",
    "jwt_jwks_jwks_fetch_success",
    "jwt_jwks_jwks_fetch_failure",
    "jwt_jwks_cache_hit",
    "jwt_jwks_cache_miss",
    "jwt_jwks_paused",
    "jwt_jwks_admin_requests",
    "jwt_jwks_token_cache_hit",
    "jwt_jwks_host_verifications",
    "jwt_jwks_jwks_fetches",
    "jwt_jwks_jwks_not_modified",
    "jwt_jwks_discovery_fetches",
    "jwt_jwks_discovery_failure",
    "jwt_jwks_revocation_fetches",
    "jwt_jwks_revocation_fetch_success",
    "jwt_jwks_revocation_fetch_failure",
    "jwt_jwks_status_list_fetches",
    "jwt_jwks_status_list_fetch_success",
    "jwt_jwks_status_list_fetch_failure",
    "jwt_jwks_introspection_calls",
    "jwt_jwks_introspection_hits",
    "jwt_jwks_introspection_negative_hits",
    "jwt_jwks_introspection_coalesced",
    "jwt_jwks_introspection_errors_unavailable",
    "jwt_jwks_introspection_errors_status",
    "jwt_jwks_introspection_errors_malformed",
    "jwt_jwks_introspection_errors_phantom",
];

impl Metric {
    /// Position in `all_names()`, so hosts can keep ids in a plain array.
    pub fn index(self) -> usize {
        match self {
            Metric::Allowed => 0,
            Metric::FetchSuccess => 1,
            Metric::FetchFailure => 2,
            Metric::CacheHit => 3,
            Metric::CacheMiss => 4,
            Metric::Paused => 5,
            Metric::AdminRequests => 6,
            Metric::TokenCacheHit => 7,
            Metric::HostVerification => 8,
            Metric::FetchSent => 9,
            Metric::NotModified => 10,
            Metric::DiscoverySent => 11,
            Metric::DiscoveryFailure => 12,
            Metric::RevocationFetchSent => 13,
            Metric::RevocationFetchSuccess => 14,
            Metric::RevocationFetchFailure => 15,
            Metric::StatusListFetchSent => 16,
            Metric::StatusListFetchSuccess => 17,
            Metric::StatusListFetchFailure => 18,
            Metric::IntrospectionCalls => 19,
            Metric::IntrospectionHit => 20,
            Metric::IntrospectionNegativeHit => 21,
            Metric::IntrospectionCoalesced => 22,
            Metric::IntrospectionErrorUnavailable => 23,
            Metric::IntrospectionErrorStatus => 24,
            Metric::IntrospectionErrorMalformed => 25,
            Metric::IntrospectionErrorPhantom => 26,
            Metric::Denied(reason) => {
                FIXED.len()
                    + Refusal::METRICS
                        .iter()
                        .position(|r| *r == reason)
                        .unwrap_or(Refusal::METRICS.len() - 1)
            }
        }
    }
}

/// One gauge: a value set, not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gauge {
    /// Seconds since the oldest pulled revocation list was last fetched or
    /// confirmed (0 before the first pull).
    RevocationListAge,
}

impl Gauge {
    pub const ALL: [Gauge; 1] = [Gauge::RevocationListAge];

    pub fn name(self) -> &'static str {
        match self {
            Gauge::RevocationListAge => "jwt_jwks_revocation_list_age_seconds",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Gauge::RevocationListAge => 0,
        }
    }
}

/// Every counter name, in `index()` order.
pub fn all_names() -> Vec<String> {
    FIXED
        .iter()
        .map(|s| s.to_string())
        .chain(
            Refusal::METRICS
                .iter()
                .map(|r| format!("jwt_jwks_denied_{r}")),
        )
        .collect()
}

/// Where counters and gauges go.
pub trait Metrics {
    fn incr(&self, m: Metric);
    /// Sets a gauge (hosts without gauges may ignore it).
    fn set(&self, _g: Gauge, _value: u64) {}
}

/// Counts in memory (tests, and hosts without metrics).
#[derive(Debug, Default)]
pub struct MemoryMetrics {
    counts: std::cell::RefCell<Vec<u64>>,
    gauges: std::cell::RefCell<Vec<u64>>,
}

impl MemoryMetrics {
    pub fn get(&self, m: Metric) -> u64 {
        self.counts.borrow().get(m.index()).copied().unwrap_or(0)
    }

    pub fn gauge(&self, g: Gauge) -> u64 {
        self.gauges.borrow().get(g.index()).copied().unwrap_or(0)
    }
}

impl Metrics for MemoryMetrics {
    fn set(&self, g: Gauge, value: u64) {
        let mut v = self.gauges.borrow_mut();
        if v.len() <= g.index() {
            v.resize(g.index() + 1, 0);
        }
        if let Some(x) = v.get_mut(g.index()) {
            *x = value;
        }
    }

    fn incr(&self, m: Metric) {
        let mut c = self.counts.borrow_mut();
        let i = m.index();
        if c.len() <= i {
            c.resize(i + 1, 0);
        }
        if let Some(v) = c.get_mut(i) {
            *v += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_match_names() {
        let names = all_names();
        assert_eq!(names[Metric::Allowed.index()], "jwt_jwks_allowed");
        assert_eq!(names[Metric::CacheMiss.index()], "jwt_jwks_cache_miss");
        for r in Refusal::METRICS {
            assert_eq!(
                names[Metric::Denied(r).index()],
                format!("jwt_jwks_denied_{r}")
            );
        }
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "names are unique");
    }
}
