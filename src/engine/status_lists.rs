//! The engine's side of Token Status Lists: the check of a token that
//! names a list (fresh or from the token cache), the wait while a list is
//! fetched, the list token's verification with the provider's keys when it
//! arrives, the tick's refreshes, and `cache/info`'s part.
#![forbid(unsafe_code)]

use serde_json::{json, Value};

use crate::authz::refusal::Refusal;
use crate::config::StatusListSettings;
use crate::engine::verdict::{Callout, Verdict};
use crate::engine::Engine;
use crate::keys::layout;
use crate::keys::refresh::{Acquire, Answer, Doc};
use crate::metrics::{Metric, Metrics};
use crate::revoke::status::{self, Accepted, Reference, StatusList};
use crate::revoke::status_fetch::{self, Outcome};
use crate::revoke::status_held::SlotError;
use crate::store::SharedStore;
use crate::token::jose;

/// A token's status in `list`: 0 passes, anything else is refused, and an
/// index past the end is an invalid reference.
fn verdict_in(list: &StatusList, idx: u64) -> Result<Option<Verdict>, Refusal> {
    match list.get(idx) {
        Some(0) => Ok(None),
        Some(_) => Err(Refusal::Revoked("status")),
        None => Err(Refusal::StatusReference),
    }
}

impl Engine {
    /// The status-list check of a verified token of provider `idx`: `None`
    /// when it passes, a `Wait` when its list must be fetched first.
    pub(super) fn check_status(
        &mut self,
        store: &dyn SharedStore,
        idx: usize,
        r: &Reference,
        now_ms: u64,
        may_wait: bool,
    ) -> Result<Option<Verdict>, Refusal> {
        let Some(p) = self.cfg.providers.get(idx) else {
            return Ok(None);
        };
        let Some(settings) = p.status_list.as_ref() else {
            return Ok(None);
        };
        let allowed = self.cfg.allowed_algorithms;
        let tag = || {
            let own = json!([settings.upstream, settings.max_size]).to_string();
            format!("{}{}", layout::settings_tag(p, allowed), short_digest(&own))
        };
        let slot_i = match self.status.slot(idx, &r.uri, settings.max_lists, tag) {
            Ok(i) => i,
            Err(SlotError::BadUri) => return Err(Refusal::StatusReference),
            Err(SlotError::Full) => {
                log::warn!(
                    "jwt_jwks: provider {} tokens name more than max_status_lists ({}) lists; \
                     {} counts as unavailable",
                    p.name,
                    settings.max_lists,
                    r.uri
                );
                return unavailable(settings, None, r.idx);
            }
        };
        let Some(slot) = self.status.slots.get_mut(slot_i) else {
            return Ok(None);
        };
        slot.used = true;
        if let Err(e) = slot.sync(store, false) {
            log::warn!("jwt_jwks: reading a status list failed: {e}");
        }
        if now_ms >= slot.usable_until_ms {
            // Another worker may have fetched it since this one last looked.
            let _ = slot.read_freshness(store, settings);
            let _ = slot.sync(store, true);
        }
        if now_ms < slot.usable_until_ms {
            if let Some(list) = &slot.list {
                return verdict_in(list, r.idx);
            }
        }
        if may_wait {
            let doc = Doc::StatusList(slot_i as u32);
            let took = status_fetch::try_acquire(
                store,
                &slot.names,
                settings,
                p.timeout_ms,
                &self.owner,
                now_ms,
                true,
            );
            let wait = |dispatch| {
                Ok(Some(Verdict::Wait {
                    provider: idx,
                    dispatch,
                    doc,
                }))
            };
            match took {
                Ok(Acquire::Acquired) => return wait(true),
                Ok(Acquire::Busy) if self.shared_wake => return wait(false),
                // Nobody could wake this request but its own callout.
                Ok(Acquire::Busy) => return wait(true),
                Ok(_) => {}
                Err(e) => log::warn!("jwt_jwks: status list lease: {e}"),
            }
        }
        unavailable(settings, slot.list.as_ref(), r.idx)
    }

    /// The tick's share: re-reads each list's freshness; the lists in use
    /// whose `ttl` has passed and whose fetch this VM must now send.
    pub fn status_tick(&mut self, store: &dyn SharedStore, now_ms: u64) -> Vec<(usize, Doc)> {
        let mut due = Vec::new();
        for (i, slot) in self.status.slots.iter_mut().enumerate() {
            let Some(p) = self.cfg.providers.get(slot.provider) else {
                continue;
            };
            let Some(settings) = p.status_list.as_ref() else {
                continue;
            };
            if let Err(e) = slot.read_freshness(store, settings) {
                log::warn!("jwt_jwks: reading a status list's state failed: {e}");
            }
            if !slot.used {
                continue;
            }
            let took = status_fetch::try_acquire(
                store,
                &slot.names,
                settings,
                p.timeout_ms,
                &self.owner,
                now_ms,
                false,
            );
            match took {
                Ok(Acquire::Acquired) => {
                    slot.used = false;
                    due.push((slot.provider, Doc::StatusList(i as u32)));
                }
                Ok(_) => {}
                Err(e) => log::warn!("jwt_jwks: status list lease: {e}"),
            }
        }
        due
    }

    /// The generation of status list `slot` and whether its fetch is under
    /// way (for paused requests).
    pub(super) fn status_progress(
        &mut self,
        store: &dyn SharedStore,
        slot: u32,
        now_ms: u64,
    ) -> (u64, bool) {
        let Some(s) = self.status.get_mut(slot) else {
            return (0, false);
        };
        let _ = s.sync(store, true);
        let busy = layout::read_state(store, &s.names).is_ok_and(|st| st.lease_held(now_ms));
        (s.gen.gen, busy)
    }

    pub(super) fn status_callout(&self, store: &dyn SharedStore, slot: u32) -> Option<Callout> {
        let s = self.status.get(slot)?;
        let p = self.cfg.providers.get(s.provider)?;
        let settings = p.status_list.as_ref()?;
        let state = layout::read_state(store, &s.names).unwrap_or_default();
        Some(Callout {
            doc: Doc::StatusList(slot),
            upstream: settings
                .upstream
                .clone()
                .unwrap_or_else(|| s.endpoint.authority.clone()),
            headers: status_fetch::request_headers(&s.endpoint, &state),
            timeout_ms: p.timeout_ms,
            body: None,
        })
    }

    pub(super) fn status_body_allowed(&self, slot: u32, size: usize) -> bool {
        self.status
            .get(slot)
            .and_then(|s| self.cfg.providers.get(s.provider))
            .and_then(|p| p.status_list.as_ref())
            .is_some_and(|st| size <= status_fetch::max_body(st.max_size))
    }

    /// Records a list fetch's answer (or that it could not be sent).
    pub(super) fn status_done(
        &mut self,
        store: &dyn SharedStore,
        metrics: &dyn Metrics,
        now_ms: u64,
        slot: u32,
        answer: &Answer,
    ) {
        let Some(s) = self.status.get(slot) else {
            return;
        };
        let provider = s.provider;
        let checked = match (answer.status, answer.body) {
            (Some(200), Some(body)) => Some(self.check_list_token(store, slot, body, now_ms)),
            _ => None,
        };
        let (Some(s), Some(settings)) = (
            self.status.get(slot),
            self.cfg
                .providers
                .get(provider)
                .and_then(|p| p.status_list.as_ref()),
        ) else {
            return;
        };
        let uri = s.endpoint.uri.clone();
        match status_fetch::complete(
            store,
            &s.names,
            settings,
            &self.owner,
            now_ms,
            answer,
            checked,
        ) {
            Ok(Outcome::Stored(_) | Outcome::NotModified) => {
                metrics.incr(Metric::StatusListFetchSuccess);
            }
            Ok(Outcome::Failed(e)) => {
                metrics.incr(Metric::StatusListFetchFailure);
                log::warn!("jwt_jwks: status list {uri} failed: {e}; keeping the last list");
            }
            Err(e) => log::error!("jwt_jwks: storing a status list failed: {e}"),
        }
        if let Some(s) = self.status.get_mut(slot) {
            let _ = s.sync(store, true);
            let _ = s.read_freshness(store, settings);
        }
    }

    /// Verifies a list token with its provider's keys and reads it.
    fn check_list_token(
        &mut self,
        store: &dyn SharedStore,
        slot: u32,
        body: &[u8],
        now_ms: u64,
    ) -> Result<Accepted, String> {
        let (provider, uri) = self
            .status
            .get(slot)
            .map(|s| (s.provider, s.endpoint.uri.clone()))
            .ok_or("no such list")?;
        let max_size = self
            .cfg
            .providers
            .get(provider)
            .and_then(|p| p.status_list.as_ref())
            .ok_or("status lists are off")?
            .max_size;
        let text = std::str::from_utf8(body).map_err(|_| "the answer is not text")?;
        let mut scratch = jose::Scratch::default();
        let d = jose::decode(text.trim(), &mut scratch)
            .map_err(|e| format!("not a JWT: {}", e.describe()))?;
        self.verify_fetched(store, provider, &d)
            .map_err(|e| status::ListError::Signature(e).to_string())?;
        status::accept(&d, &uri, now_ms / 1000, max_size).map_err(|e| e.to_string())
    }

    /// `cache/info`'s status-list part: the lists this worker holds.
    pub(super) fn status_info(&self, store: &dyn SharedStore, now_ms: u64) -> Vec<Value> {
        self.status
            .slots
            .iter()
            .map(|s| {
                let st = layout::read_state(store, &s.names).unwrap_or_default();
                let p = self.cfg.providers.get(s.provider);
                let usable = p
                    .and_then(|p| p.status_list.as_ref())
                    .map_or(0, |set| status_fetch::usable_until(set, &st));
                json!({
                    "provider": p.map(|p| p.name.as_str()),
                    "uri": s.endpoint.uri,
                    "bits": s.list.as_ref().map(|l| l.bits),
                    "statuses": s.list.as_ref().map(StatusList::len),
                    "bytes": s.list.as_ref().map(|l| l.bytes.len()),
                    "generation": s.gen.gen,
                    "fetched_at": st.fetched_at_ms / 1000,
                    "age": (st.fetched_at_ms != 0).then(|| now_ms.saturating_sub(st.fetched_at_ms) / 1000),
                    "refresh_at": st.refresh_at_ms / 1000,
                    "expires_at": (st.expires_at_ms != 0).then_some(st.expires_at_ms / 1000),
                    "state": if now_ms < usable { "fresh" } else if st.fetched_at_ms == 0 { "never_fetched" } else { "stale" },
                    "fetch_success": st.fetch_success,
                    "fetch_failure": st.fetch_failure,
                    "last_error": st.last_error,
                })
            })
            .collect()
    }
}

/// A list that cannot be used: `revocation_fail: closed` refuses (503);
/// `open` serves with the last list this worker holds, or without one.
fn unavailable(
    settings: &StatusListSettings,
    last: Option<&StatusList>,
    idx: u64,
) -> Result<Option<Verdict>, Refusal> {
    if settings.fail_closed {
        return Err(Refusal::RevocationUnavailable);
    }
    match last {
        Some(list) => verdict_in(list, idx),
        None => Ok(None),
    }
}

/// 8 hex digits of SHA-256.
fn short_digest(text: &str) -> String {
    let d = hmac_sha256::Hash::hash(text.as_bytes());
    d[..4].iter().map(|b| format!("{b:02x}")).collect()
}
