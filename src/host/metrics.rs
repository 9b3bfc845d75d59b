//! The filter's counters in the host's metrics.
#![forbid(unsafe_code)]

use std::cell::Cell;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::metrics::{self, Gauge, Metric, Metrics};

/// The filter's counters. A request only bumps a count in the VM's memory;
/// the root context adds the counts to the host's metrics on every tick
/// (100 ms), and whatever is left when the set is replaced or dropped. A
/// host call per counter per request cost more than the rest of a token
/// cache hit; a scrape sees the counts at most one tick late.
#[derive(Default)]
pub(crate) struct HostMetrics {
    ids: Vec<Option<u32>>,
    pending: Vec<Cell<u64>>,
    /// Gauge ids, in `Gauge::index()` order.
    gauges: Vec<Option<u32>>,
}

impl HostMetrics {
    pub(crate) fn define() -> HostMetrics {
        let ids: Vec<Option<u32>> = metrics::all_names()
            .iter()
            .map(
                |name| match hostcalls::define_metric(MetricType::Counter, name) {
                    Ok(id) => Some(id),
                    Err(e) => {
                        log::warn!("jwt_jwks: metric {name} unavailable: {e:?}");
                        None
                    }
                },
            )
            .collect();
        let pending = ids.iter().map(|_| Cell::new(0)).collect();
        let gauges = Gauge::ALL
            .iter()
            .map(
                |g| match hostcalls::define_metric(MetricType::Gauge, g.name()) {
                    Ok(id) => Some(id),
                    Err(e) => {
                        log::warn!("jwt_jwks: metric {} unavailable: {e:?}", g.name());
                        None
                    }
                },
            )
            .collect();
        HostMetrics {
            ids,
            pending,
            gauges,
        }
    }

    /// Hands the counts gathered since the last flush to the host.
    pub(crate) fn flush(&self) {
        for (id, count) in self.ids.iter().zip(&self.pending) {
            let n = count.take();
            if let (Some(id), true) = (id, n > 0) {
                let _ = hostcalls::increment_metric(*id, i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }
}

impl Drop for HostMetrics {
    fn drop(&mut self) {
        self.flush();
    }
}

impl Metrics for HostMetrics {
    fn set(&self, g: Gauge, value: u64) {
        if let Some(Some(id)) = self.gauges.get(g.index()) {
            let _ = hostcalls::record_metric(*id, value);
        }
    }

    fn incr(&self, m: Metric) {
        if let Some(c) = self.pending.get(m.index()) {
            c.set(c.get().saturating_add(1));
        }
    }
}
