//! The engine's side of revocation: the check every allowed token passes
//! through (fresh or from the token cache), the pulls sent from the tick,
//! the admin push routes, and `cache/info`'s part. The lists themselves are
//! held by `revoke::held`.
#![forbid(unsafe_code)]

use serde_json::{json, Value};

use crate::authz::refusal::Refusal;
use crate::engine::verdict::{Callout, Verdict};
use crate::engine::Engine;
use crate::keys::layout::{self, Names};
use crate::keys::refresh::Answer;
use crate::metrics::{Gauge, Metric, Metrics};
use crate::revoke::index::SubjectRef;
use crate::revoke::{pull, push};
use crate::store::{SharedStore, StoreError};

impl Engine {
    /// The revocation check of a verified token of provider `idx`: its
    /// deny entries, then its status list (which may have to be fetched
    /// first: a `Wait`).
    pub(super) fn check_revoked(
        &mut self,
        store: &dyn SharedStore,
        idx: usize,
        subject: &SubjectRef,
        now_ms: u64,
        may_wait: bool,
    ) -> Result<Option<Verdict>, Refusal> {
        self.check_denied(store, idx, subject, now_ms)?;
        match subject.status {
            Some(r) => self.check_status(store, idx, r, now_ms, may_wait),
            None => Ok(None),
        }
    }

    /// The deny entries' check.
    fn check_denied(
        &mut self,
        store: &dyn SharedStore,
        idx: usize,
        subject: &SubjectRef,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let r = &mut self.revocations;
        if !r.enabled() {
            return Ok(());
        }
        r.active = true;
        if let Err(e) = r.sync(store, now_ms / 1000, false) {
            log::warn!("jwt_jwks: reading revocation lists failed: {e}");
        }
        let src = self
            .cfg
            .providers
            .get(idx)
            .and_then(|p| p.revocation.as_ref());
        if let Some(src) = src.filter(|s| s.fail_closed) {
            let Some((list, fresh_until)) = r.pulled.get_mut(idx).and_then(|p| p.as_mut()) else {
                return Err(Refusal::RevocationUnavailable);
            };
            if now_ms >= *fresh_until {
                // The tick reads the freshness every 100 ms; before refusing,
                // read it now (another worker may have just pulled), and the
                // lists with it.
                let state = layout::read_state(store, &list.names).unwrap_or_default();
                *fresh_until = pull::fresh_until(src, &state);
                if now_ms >= *fresh_until {
                    return Err(Refusal::RevocationUnavailable);
                }
                if let Err(e) = r.sync(store, now_ms / 1000, true) {
                    log::warn!("jwt_jwks: reading revocation lists failed: {e}");
                }
            }
        }
        match r.index.check(subject, now_ms / 1000) {
            None => Ok(()),
            Some(kind) => Err(Refusal::Revoked(kind.name())),
        }
    }

    /// The tick's share: re-read every list's generation and each pulled
    /// list's freshness; providers whose pull this VM must send now.
    pub fn revocation_tick(
        &mut self,
        store: &dyn SharedStore,
        metrics: &dyn Metrics,
        now_ms: u64,
    ) -> Vec<usize> {
        let mut due = Vec::new();
        if !self.revocations.enabled() {
            return due;
        }
        if let Err(e) = self.revocation_refresh_state(store, now_ms) {
            log::warn!("jwt_jwks: reading revocation lists failed: {e}");
        }
        if let Some(age) = self
            .revocations
            .oldest_fetch_ms()
            .map(|t| now_ms.saturating_sub(t))
        {
            metrics.set(Gauge::RevocationListAge, age / 1000);
        }
        for (idx, p) in self.cfg.providers.iter().enumerate() {
            let Some(Some((list, _))) = self.revocations.pulled.get(idx) else {
                continue;
            };
            match pull::try_acquire(store, &list.names, p.timeout_ms, &self.owner, now_ms) {
                Ok(true) => due.push(idx),
                Ok(false) => {}
                Err(e) => log::warn!("jwt_jwks: revocation list lease: {e}"),
            }
        }
        due
    }

    /// The pull callout of provider `idx`.
    pub(super) fn revocation_callout(
        &self,
        store: &dyn SharedStore,
        idx: usize,
    ) -> Option<Callout> {
        let p = self.cfg.providers.get(idx)?;
        let src = p.revocation.as_ref()?;
        let state = layout::read_state(store, &pull::names(src)).unwrap_or_default();
        Some(Callout {
            doc: crate::keys::refresh::Doc::Revocations,
            upstream: src.upstream.clone(),
            headers: pull::request_headers(src, &state),
            timeout_ms: p.timeout_ms,
            body: None,
        })
    }

    pub(super) fn revocation_body_allowed(&self, size: usize) -> bool {
        size <= pull::max_body(self.cfg.max_revocation_entries)
    }

    /// Records a pull's answer (or that it could not be sent: `answer`
    /// without a status).
    pub(super) fn revocation_done(
        &mut self,
        store: &dyn SharedStore,
        metrics: &dyn Metrics,
        now_ms: u64,
        idx: usize,
        answer: &Answer,
    ) {
        let Some(src) = self
            .cfg
            .providers
            .get(idx)
            .and_then(|p| p.revocation.as_ref())
        else {
            return;
        };
        let names = pull::names(src);
        let max = self.cfg.max_revocation_entries;
        match pull::complete(store, &names, src, max, &self.owner, now_ms, answer) {
            Ok(pull::Outcome::Stored { entries, .. }) => {
                metrics.incr(Metric::RevocationFetchSuccess);
                log::info!(
                    "jwt_jwks: revocation list from {}: {entries} live entries",
                    src.endpoint.uri
                );
            }
            Ok(pull::Outcome::NotModified) => metrics.incr(Metric::RevocationFetchSuccess),
            Ok(pull::Outcome::Failed(e)) => {
                metrics.incr(Metric::RevocationFetchFailure);
                log::warn!(
                    "jwt_jwks: revocation list from {} failed: {e}; keeping the last list",
                    src.endpoint.uri
                );
            }
            Err(e) => log::error!("jwt_jwks: storing a revocation list failed: {e}"),
        }
        if let Err(e) = self.revocation_refresh_state(store, now_ms) {
            log::warn!("jwt_jwks: reading revocation lists failed: {e}");
        }
    }

    /// Re-reads every list whose generation moved, and each pulled list's
    /// freshness.
    fn revocation_refresh_state(
        &mut self,
        store: &dyn SharedStore,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        if self.revocations.active {
            self.revocations.sync(store, now_ms / 1000, true)?;
        }
        for (idx, p) in self.cfg.providers.iter().enumerate() {
            if let (Some(src), Some(Some((list, fresh_until)))) =
                (&p.revocation, self.revocations.pulled.get_mut(idx))
            {
                let state = layout::read_state(store, &list.names)?;
                list.fetched_at_ms = state.fetched_at_ms;
                *fresh_until = pull::fresh_until(src, &state);
            }
        }
        Ok(())
    }

    /// `cache/info`'s revocation part.
    pub(super) fn revocation_info(&self, store: &dyn SharedStore, now_ms: u64) -> Value {
        let bytes = |names: &Names| {
            store
                .get(&names.keys)
                .ok()
                .and_then(|(b, _)| b)
                .map_or(0, |b| b.len())
        };
        let pushed = self.revocations.pushed.as_ref().map(|l| {
            json!({
                "entries": l.count,
                "bytes": bytes(&l.names),
                "generation": l.gen.gen,
            })
        });
        let pulled: Vec<Value> = self
            .cfg
            .providers
            .iter()
            .zip(&self.revocations.pulled)
            .filter_map(|(p, l)| {
                let src = p.revocation.as_ref()?;
                let (list, _) = l.as_ref()?;
                let st = layout::read_state(store, &list.names).unwrap_or_default();
                let fresh = pull::fresh(src, &st, now_ms);
                Some(json!({
                    "provider": p.name,
                    "uri": src.endpoint.uri,
                    "entries": list.count,
                    "bytes": bytes(&list.names),
                    "generation": list.gen.gen,
                    "fetched_at": st.fetched_at_ms / 1000,
                    "age": (st.fetched_at_ms != 0).then(|| now_ms.saturating_sub(st.fetched_at_ms) / 1000),
                    "next_pull_at": st.refresh_at_ms.max(st.next_attempt_ms) / 1000,
                    "state": if fresh { "fresh" } else if st.fetched_at_ms == 0 { "never_fetched" } else { "stale" },
                    "revocation_fail": if src.fail_closed { "closed" } else { "open" },
                    "refusing_all": src.fail_closed && !fresh,
                    "fetch_success": st.fetch_success,
                    "fetch_failure": st.fetch_failure,
                    "last_error": st.last_error,
                }))
            })
            .collect();
        json!({
            "enabled": self.revocations.enabled(),
            "indexed_entries": self.revocations.index.len(),
            "max_revocation_entries": self.cfg.max_revocation_entries,
            "pushed": pushed,
            "pulled": pulled,
            "status_lists": self.status_info(store, now_ms),
        })
    }

    /// `POST {prefix}/revocations`.
    pub fn revocations_add(
        &mut self,
        store: &dyn SharedStore,
        body: &[u8],
        now_ms: u64,
    ) -> Result<Value, push::PushError> {
        let r = push::add(store, body, self.cfg.max_revocation_entries, now_ms / 1000)?;
        let _ = self.revocations.sync(store, now_ms / 1000, true);
        Ok(r)
    }

    /// `GET {prefix}/revocations`.
    pub fn revocations_list(
        &self,
        store: &dyn SharedStore,
        offset: usize,
        limit: usize,
        now_ms: u64,
    ) -> Result<Value, StoreError> {
        push::list(store, offset, limit, now_ms / 1000)
    }

    /// `DELETE {prefix}/revocations/{id}`.
    pub fn revocations_delete(
        &mut self,
        store: &dyn SharedStore,
        id: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let deleted = push::delete(store, id)?;
        let _ = self.revocations.sync(store, now_ms / 1000, true);
        Ok(deleted)
    }
}
