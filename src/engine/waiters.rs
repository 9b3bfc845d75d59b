//! Requests paused while keys are fetched: registered up to
//! `max_pending_requests`, and decided again when their provider's keys
//! change, its fetch ends, or their deadline passes.
#![forbid(unsafe_code)]

use crate::engine::verdict::{Pending, Verdict};
use crate::engine::Engine;
use crate::keys::layout;
use crate::keys::refresh::Doc;
use crate::metrics::Metrics;
use crate::store::SharedStore;

/// A fetch to send: the provider, and which of its documents.
pub type Fetch = (usize, Doc);

impl Engine {
    /// Registers a paused request; `false` when the cap is reached.
    pub fn add_waiter(&mut self, store: &dyn SharedStore, mut w: Pending, now_ms: u64) -> bool {
        if self.waiters.len() >= self.cfg.max_pending_requests {
            return false;
        }
        w.gen = self.waiting_gen(store, w.provider, w.doc, now_ms);
        self.waiters.push(w);
        true
    }

    /// The generation of what a request waits for, as this VM holds it.
    fn waiting_gen(
        &mut self,
        store: &dyn SharedStore,
        provider: usize,
        doc: Doc,
        now_ms: u64,
    ) -> u64 {
        match doc {
            Doc::StatusList(slot) => self.status_progress(store, slot, now_ms).0,
            Doc::Introspection(_) => 0,
            _ => self.providers.get(provider).map_or(0, |r| r.gen),
        }
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

    /// Looks at every paused request: those whose provider has new keys
    /// (or whose status list arrived), whose fetch ended, or whose deadline
    /// passed are decided again. Returns the final verdicts to carry out,
    /// and the fetches the caller must now send (a re-decision took the
    /// lease).
    pub fn review_waiters(
        &mut self,
        store: &dyn SharedStore,
        metrics: &dyn Metrics,
        now_ms: u64,
    ) -> (Vec<(Pending, Verdict)>, Vec<Fetch>) {
        let mut finals = Vec::new();
        let mut dispatch = Vec::new();
        // per_request: only a request's own callout may finish it.
        if self.waiters.is_empty() || !self.shared_wake {
            self.end_handoff();
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
        // Status lists, read once each for all their waiters.
        let mut lists: Vec<(u32, (u64, bool))> = Vec::new();
        let waiters = std::mem::take(&mut self.waiters);
        for mut w in waiters {
            let (gen, busy) = match w.doc {
                Doc::Introspection(_) => {
                    let busy = self.introspection_busy(store, w.provider, &w.token, now_ms);
                    (0, busy)
                }
                Doc::StatusList(slot) => match lists.iter().find(|(s, _)| *s == slot) {
                    Some((_, p)) => *p,
                    None => {
                        let p = self.status_progress(store, slot, now_ms);
                        lists.push((slot, p));
                        p
                    }
                },
                _ => status.get(w.provider).copied().unwrap_or((0, false)),
            };
            let expired = now_ms >= w.deadline_ms;
            if !expired && gen == w.gen && busy {
                self.waiters.push(w);
                continue;
            }
            match self.authenticate(store, metrics, now_ms, &w.token, w.rule, !expired) {
                Verdict::Wait {
                    provider,
                    dispatch: d,
                    doc,
                } => {
                    if d && !dispatch.contains(&(provider, doc)) {
                        dispatch.push((provider, doc));
                    }
                    if doc != w.doc {
                        w.doc = doc;
                        w.gen = self.waiting_gen(store, provider, doc, now_ms);
                    } else {
                        w.gen = gen;
                    }
                    self.waiters.push(w);
                }
                v => finals.push((w, v)),
            }
        }
        self.end_handoff();
        (finals, dispatch)
    }
}
