//! This VM's copy of each provider's key set, kept in step with shared
//! data by generation, and the refresh it asks `keys::refresh` for: on a
//! request (cold start, unknown `kid`), on the tick, and when an answer
//! arrives.
#![forbid(unsafe_code)]

use crate::authz::refusal::Refusal;
use crate::config::Provider;
use crate::engine::verdict::{Callout, Verdict};
use crate::engine::{Engine, KEYS_RECHECK_MS};
use crate::keys::jwks;
use crate::keys::layout;
use crate::keys::layout::Names;
use crate::keys::refresh::{self, Acquire, Answer, Doc, Trigger};
use crate::metrics::{Metric, Metrics};
use crate::store::{SharedStore, StoreError};

impl Engine {
    /// The generation a token-cache hit compares with: this VM's, read again
    /// from shared data when the last read is `KEYS_RECHECK_MS` old (or the
    /// clock went back).
    pub(super) fn recent_gen(
        &mut self,
        store: &dyn SharedStore,
        idx: usize,
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        if let Some(rt) = self.providers.get(idx) {
            let age = now_ms.wrapping_sub(rt.checked_ms);
            if rt.loaded && age < KEYS_RECHECK_MS {
                return Ok(rt.gen);
            }
        }
        let gen = self.sync(store, idx)?;
        if let Some(rt) = self.providers.get_mut(idx) {
            rt.checked_ms = now_ms;
        }
        Ok(gen)
    }

    /// Re-reads a provider's key set if its generation moved. Returns the
    /// current generation. Once loaded, the per-request check is a lookup of
    /// the next generation's marker, which is absent until the set changes.
    pub fn sync(&mut self, store: &dyn SharedStore, idx: usize) -> Result<u64, StoreError> {
        self.sync_with(store, idx, false)
    }

    /// [`Engine::sync`] that reads the generation itself rather than trusting
    /// the absence of the next generation's marker (the tick's check).
    pub fn sync_full(&mut self, store: &dyn SharedStore, idx: usize) -> Result<u64, StoreError> {
        self.sync_with(store, idx, true)
    }

    pub(super) fn sync_with(
        &mut self,
        store: &dyn SharedStore,
        idx: usize,
        full: bool,
    ) -> Result<u64, StoreError> {
        let allowed = self.cfg.allowed_algorithms;
        let max = self.cfg.providers.get(idx).map_or(0, |p| p.max_cache_size);
        let Some(rt) = self.providers.get_mut(idx) else {
            return Ok(0);
        };
        let Some(names) = &rt.names else { return Ok(0) };
        if rt.loaded && !full && !layout::has_marker(store, &rt.next)? {
            return Ok(rt.gen);
        }
        let gen = layout::read_gen(store, names)?;
        if gen != rt.gen || !rt.loaded {
            let (bytes, _) = store.get(&names.keys)?;
            rt.keys = bytes
                .and_then(|b| jwks::parse(&b, allowed, max).ok())
                .map(|p| p.set)
                .unwrap_or_default();
            rt.gen = gen;
            rt.next = names.marker(gen + 1);
            rt.loaded = true;
        }
        Ok(gen)
    }

    /// The number of keys this VM holds for a provider.
    pub fn local_key_count(&self, idx: usize) -> usize {
        self.providers.get(idx).map_or(0, |r| r.keys.len())
    }

    /// A provider that fetches its keys, and the shared-data names of its
    /// set; `None` for a fallback key alone.
    pub(super) fn fetching(&self, idx: usize) -> Option<(&Provider, &Names)> {
        let p = self.cfg.providers.get(idx)?;
        let names = self.providers.get(idx)?.names.as_ref()?;
        Some((p, names))
    }

    pub(super) fn refresh(
        &mut self,
        store: &dyn SharedStore,
        idx: usize,
        now_ms: u64,
        trigger: Trigger,
        otherwise: Refusal,
    ) -> Result<Verdict, Refusal> {
        let Some((p, names)) = self.fetching(idx) else {
            return Err(otherwise);
        };
        match refresh::try_acquire(store, names, p, &self.owner, now_ms, trigger) {
            Ok(Acquire::Acquired) => Ok(Verdict::Wait {
                provider: idx,
                dispatch: true,
                doc: Doc::Jwks,
            }),
            Ok(Acquire::Busy) if self.shared_wake => Ok(Verdict::Wait {
                provider: idx,
                dispatch: false,
                doc: Doc::Jwks,
            }),
            // Nobody could wake this request: on a cold start it fetches
            // for itself (the answer resumes it); an unknown kid is refused
            // now rather than left hanging (the refresh under way will
            // serve the client's retry).
            Ok(Acquire::Busy) if trigger == Trigger::Cold => Ok(Verdict::Wait {
                provider: idx,
                dispatch: true,
                doc: Doc::Jwks,
            }),
            // Cold: a retry delay is running; the periodic check will fetch.
            Ok(Acquire::NotDue) if trigger == Trigger::Cold && self.shared_wake => {
                Ok(Verdict::Wait {
                    provider: idx,
                    dispatch: false,
                    doc: Doc::Jwks,
                })
            }
            Ok(_) => Err(otherwise),
            Err(e) => {
                log::warn!("jwt_jwks: refresh lease: {e}");
                Err(otherwise)
            }
        }
    }

    /// Creates each key set's shared state if it has none yet (see
    /// [`layout::ensure_state`]); called when the filter is configured.
    pub fn prepare(&self, store: &dyn SharedStore) -> Result<(), StoreError> {
        for names in self.providers.iter().filter_map(|r| r.names.as_ref()) {
            layout::ensure_state(store, names)?;
        }
        self.prepare_introspection(store)
    }

    /// The periodic check: providers whose scheduled refresh this VM must
    /// now send (it took the lease).
    pub fn tick(&mut self, store: &dyn SharedStore, now_ms: u64) -> Vec<usize> {
        let mut due = Vec::new();
        for idx in 0..self.providers.len() {
            if let Err(e) = self.sync_full(store, idx) {
                log::warn!("jwt_jwks: reading shared keys failed: {e}");
                continue;
            }
            let Some((p, names)) = self.fetching(idx) else {
                continue;
            };
            match refresh::try_acquire(store, names, p, &self.owner, now_ms, Trigger::Scheduled) {
                Ok(Acquire::Acquired) => due.push(idx),
                Ok(_) => {}
                Err(e) => log::warn!("jwt_jwks: refresh lease: {e}"),
            }
        }
        due
    }

    /// The callout to send for a provider: its revocation list for
    /// `Doc::Revocations`; else, as the shared state says, the metadata when
    /// it is due or the JWKS, with the set's validators.
    pub fn callout(
        &self,
        store: &dyn SharedStore,
        idx: usize,
        doc: Doc,
        now_ms: u64,
    ) -> Option<Callout> {
        match doc {
            Doc::Revocations => return self.revocation_callout(store, idx),
            Doc::StatusList(slot) => return self.status_callout(store, slot),
            Doc::Introspection(id) => return self.introspection_callout(store, id),
            Doc::Jwks | Doc::Discovery => {}
        }
        let (p, names) = self.fetching(idx)?;
        let state = layout::read_state(store, names).unwrap_or_default();
        let r = refresh::next_request(p, &state, now_ms)?;
        Some(Callout {
            doc: r.doc,
            upstream: r.upstream,
            headers: r.headers,
            timeout_ms: p.timeout_ms,
            body: None,
        })
    }

    /// Whether a callout body of `size` bytes may be read.
    pub fn body_allowed(&self, idx: usize, doc: Doc, size: usize) -> bool {
        match doc {
            Doc::Revocations => return self.revocation_body_allowed(size),
            Doc::StatusList(slot) => return self.status_body_allowed(slot, size),
            Doc::Introspection(_) => return self.introspection_body_allowed(size),
            Doc::Jwks | Doc::Discovery => {}
        }
        self.cfg
            .providers
            .get(idx)
            .is_some_and(|p| refresh::body_allowed(p, size))
    }

    /// Records a callout's answer. When the outcome asks for a follow-up
    /// (good metadata), the caller sends the JWKS callout next.
    pub fn fetch_done(
        &mut self,
        store: &dyn SharedStore,
        metrics: &dyn Metrics,
        now_ms: u64,
        idx: usize,
        doc: Doc,
        answer: &Answer,
    ) -> Option<refresh::Outcome> {
        match doc {
            Doc::Revocations => {
                self.revocation_done(store, metrics, now_ms, idx, answer);
                return None;
            }
            Doc::StatusList(slot) => {
                self.status_done(store, metrics, now_ms, slot, answer);
                return None;
            }
            Doc::Introspection(id) => {
                self.introspection_done(store, metrics, now_ms, id, answer);
                return None;
            }
            Doc::Jwks | Doc::Discovery => {}
        }
        let allowed = self.cfg.allowed_algorithms;
        let (p, names) = self.fetching(idx)?;
        let stored = match doc {
            Doc::Revocations | Doc::StatusList(_) | Doc::Introspection(_) => return None,
            Doc::Jwks => {
                let result = refresh::evaluate(answer, p, allowed);
                refresh::complete(store, names, p, &self.owner, now_ms, answer, result)
            }
            Doc::Discovery => {
                refresh::complete_discovery(store, names, p, &self.owner, now_ms, answer)
            }
        };
        let outcome = match stored {
            Ok(o) => o,
            Err(e) => {
                log::error!("jwt_jwks: storing a fetch result failed: {e}");
                return None;
            }
        };
        let from = p.key_set_uri().unwrap_or_default();
        match &outcome {
            refresh::Outcome::Stored { keys, skipped, .. } => {
                metrics.incr(Metric::FetchSuccess);
                log::info!("jwt_jwks: JWKS fetched for {from}: {keys} keys ({skipped} skipped)");
            }
            refresh::Outcome::NotModified { .. } => {
                metrics.incr(Metric::FetchSuccess);
                metrics.incr(Metric::NotModified);
            }
            refresh::Outcome::Discovered { jwks_uri } => {
                log::debug!("jwt_jwks: discovery for {from}: jwks_uri {jwks_uri}");
            }
            refresh::Outcome::DiscoveryFailedKept(e) => {
                metrics.incr(Metric::DiscoveryFailure);
                log::warn!(
                    "jwt_jwks: discovery fetch from {from} failed: {e}; fetching the keys from \
                     the jwks_uri it named before"
                );
            }
            refresh::Outcome::Failed(e) => {
                metrics.incr(Metric::FetchFailure);
                if doc == Doc::Discovery {
                    metrics.incr(Metric::DiscoveryFailure);
                }
                log::warn!("jwt_jwks: fetch for {from} failed: {e}; keeping the current keys");
            }
        }
        let _ = self.sync(store, idx);
        Some(outcome)
    }

    /// The callout could not be sent: give the lease back.
    pub fn fetch_not_sent(
        &mut self,
        store: &dyn SharedStore,
        metrics: &dyn Metrics,
        now_ms: u64,
        idx: usize,
        doc: Doc,
        why: &str,
    ) {
        let failed = Answer {
            dispatch_status: Some(format!("callout could not be sent: {why}")),
            ..Answer::default()
        };
        match doc {
            Doc::Revocations => return self.revocation_done(store, metrics, now_ms, idx, &failed),
            Doc::StatusList(slot) => {
                return self.status_done(store, metrics, now_ms, slot, &failed)
            }
            Doc::Introspection(id) => {
                return self.introspection_done(store, metrics, now_ms, id, &failed)
            }
            Doc::Jwks | Doc::Discovery => {}
        }
        metrics.incr(Metric::FetchFailure);
        if let Some((p, names)) = self.fetching(idx) {
            let error = format!("callout could not be sent: {why}");
            log::warn!("jwt_jwks: {error}");
            if let Err(e) = refresh::abandon(store, names, p, &self.owner, now_ms, &error) {
                log::warn!("jwt_jwks: releasing the refresh lease: {e}");
            }
        }
    }
}
