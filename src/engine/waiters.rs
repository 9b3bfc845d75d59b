//! Requests paused while keys are fetched: registered up to
//! `max_pending_requests`, and decided again when their provider's keys
//! change, its fetch ends, or their deadline passes.
#![forbid(unsafe_code)]

use crate::engine::verdict::{Pending, Verdict};
use crate::engine::Engine;
use crate::keys::layout;
use crate::metrics::Metrics;
use crate::store::SharedStore;

impl Engine {
    /// Registers a paused request; `false` when the cap is reached.
    pub fn add_waiter(&mut self, mut w: Pending) -> bool {
        if self.waiters.len() >= self.cfg.max_pending_requests {
            return false;
        }
        w.gen = self.providers.get(w.provider).map_or(0, |r| r.gen);
        self.waiters.push(w);
        true
    }

    pub fn remove_waiter(&mut self, context_id: u32) {
        self.waiters.retain(|w| w.context_id != context_id);
    }

    /// Takes one paused request out of the list (to decide it now).
    pub fn take_waiter(&mut self, context_id: u32) -> Option<Pending> {
        let pos = self
            .waiters
            .iter()
            .position(|w| w.context_id == context_id)?;
        Some(self.waiters.swap_remove(pos))
    }

    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// Looks at every paused request: those whose provider has new keys,
    /// whose fetch ended, or whose deadline passed are decided again.
    /// Returns the final verdicts to carry out, and the providers whose
    /// refresh the caller must now send (a re-decision took the lease).
    pub fn review_waiters(
        &mut self,
        store: &dyn SharedStore,
        metrics: &dyn Metrics,
        now_ms: u64,
    ) -> (Vec<(Pending, Verdict)>, Vec<usize>) {
        let mut finals = Vec::new();
        let mut dispatch = Vec::new();
        // per_request: only a request's own callout may finish it.
        if self.waiters.is_empty() || !self.shared_wake {
            return (finals, dispatch);
        }
        let mut status = Vec::with_capacity(self.providers.len());
        for idx in 0..self.providers.len() {
            let gen = self.sync(store, idx).unwrap_or(0);
            let busy = self
                .providers
                .get(idx)
                .and_then(|r| r.names.as_ref())
                .and_then(|n| layout::read_state(store, n).ok())
                .is_some_and(|s| s.lease_held(now_ms));
            status.push((gen, busy));
        }
        let waiters = std::mem::take(&mut self.waiters);
        for mut w in waiters {
            let (gen, busy) = status.get(w.provider).copied().unwrap_or((0, false));
            let expired = now_ms >= w.deadline_ms;
            if !expired && gen == w.gen && busy {
                self.waiters.push(w);
                continue;
            }
            match self.authenticate(store, metrics, now_ms, &w.token, w.rule, !expired) {
                Verdict::Wait {
                    provider,
                    dispatch: d,
                } => {
                    if d && !dispatch.contains(&provider) {
                        dispatch.push(provider);
                    }
                    w.gen = gen;
                    self.waiters.push(w);
                }
                v => finals.push((w, v)),
            }
        }
        (finals, dispatch)
    }
}
