//! Fetching one status list: its entries in shared data (the layout of
//! `keys::layout`: the list under `keys`, a generation, markers, and the
//! fetch state), who fetches (a lease by compare-and-swap, as for key
//! sets), when, and what an answer does.
//!
//! - A list is kept for its `ttl` (the provider's `status_list_ttl` when it
//!   has none), never less than [`MIN_TTL_S`]: at most one fetch per list
//!   per that time on success, whatever the tokens or the server say.
//! - Failures keep the last list and retry after 1, 2, 4 ... seconds, at
//!   most [`MAX_RETRY_MS`] apart, never sooner than a second.
//! - A list serves until `max(ttl, max_staleness)` after its last good
//!   fetch, and never past its own `exp`; then it counts as failed, and
//!   `revocation_fail` decides.
#![forbid(unsafe_code)]

use crate::config::status_list::MIN_TTL_S;
use crate::config::{Endpoint, StatusListSettings};
use crate::keys::layout::{self, FetchState, Names};
use crate::keys::refresh::{Acquire, Answer};
use crate::revoke::status::Accepted;
use crate::store::{SharedStore, StoreError};

/// Extra time a lease lives beyond the callout timeout.
const LEASE_MARGIN_MS: u64 = 1000;
const RETRY_BASE_MS: u64 = 1000;
/// The longest wait between two attempts after failures.
pub const MAX_RETRY_MS: u64 = 30_000;

/// The shared-data names of the list at `uri` as provider `tag` reads it
/// (`tag`: a digest of the settings that decide what is accepted).
pub fn names(tag: &str, uri: &str) -> Names {
    Names::for_uri(&format!("status/{tag}/{uri}"))
}

/// The largest answer read for a list of at most `max_size` bytes once
/// inflated (zlib can grow incompressible data a little, base64 by a
/// third, and the token has a header and claims).
pub fn max_body(max_size: usize) -> usize {
    max_size.saturating_mul(2).saturating_add(64 << 10)
}

/// Until when (ms) a list serves; 0 when there is none.
pub fn usable_until(settings: &StatusListSettings, s: &FetchState) -> u64 {
    if s.fetched_at_ms == 0 {
        return 0;
    }
    let stale = s.fetched_at_ms + settings.max_staleness_s * 1000;
    let until = s.refresh_at_ms.max(stale);
    match s.expires_at_ms {
        0 => until,
        exp => until.min(exp),
    }
}

/// Takes the lease to fetch. `cold`: a request needs the list now (it has
/// none it may use); else the tick's scheduled refresh, due once the
/// list's `ttl` has passed.
pub fn try_acquire(
    store: &dyn SharedStore,
    names: &Names,
    settings: &StatusListSettings,
    timeout_ms: u64,
    owner: &str,
    now_ms: u64,
    cold: bool,
) -> Result<Acquire, StoreError> {
    let mut answer = Acquire::NotDue;
    layout::update_state(store, names, |s| {
        answer = if s.lease_held(now_ms) {
            Acquire::Busy
        } else if now_ms < s.next_attempt_ms
            || (cold && now_ms < usable_until(settings, s))
            || (!cold && now_ms < s.refresh_at_ms)
        {
            Acquire::NotDue
        } else {
            Acquire::Acquired
        };
        if answer != Acquire::Acquired {
            return false;
        }
        s.take_lease(owner, now_ms + timeout_ms + LEASE_MARGIN_MS);
        true
    })?;
    Ok(answer)
}

/// The request headers of a list fetch.
pub fn request_headers(endpoint: &Endpoint, s: &FetchState) -> Vec<(String, String)> {
    crate::keys::refresh::get_headers(
        endpoint,
        "application/statuslist+jwt",
        s.etag.as_ref(),
        None,
    )
}

/// What a fetch ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new list is in place, at this generation.
    Stored(u64),
    NotModified,
    /// Kept the list; why.
    Failed(String),
}

/// Records an answer: `checked` is the list token's verdict when the
/// answer was a 200 with a body (the caller verifies it: it holds the
/// keys). The caller held the lease.
pub fn complete(
    store: &dyn SharedStore,
    names: &Names,
    settings: &StatusListSettings,
    owner: &str,
    now_ms: u64,
    answer: &Answer,
    checked: Option<Result<Accepted, String>>,
) -> Result<Outcome, StoreError> {
    let mut ttl_s = None;
    let mut exp_s = None;
    let outcome = match (answer.status, checked) {
        (Some(304), _) => Outcome::NotModified,
        (Some(200), Some(Ok(a))) => {
            ttl_s = Some(a.ttl_s.unwrap_or(settings.default_ttl_s));
            exp_s = a.exp_s;
            let stored = a.list.to_stored();
            let (gen, _) = layout::store_record(store, names, |_, _| Ok(Some(stored.clone())))?;
            Outcome::Stored(gen)
        }
        (Some(200), Some(Err(e))) => Outcome::Failed(e),
        (Some(200), None) if answer.body_size > max_body(settings.max_size) => {
            Outcome::Failed(format!("answer of {} bytes is too large", answer.body_size))
        }
        (Some(200), None) => Outcome::Failed("empty answer".to_string()),
        (Some(code), _) => Outcome::Failed(format!("HTTP {code}")),
        (None, _) => Outcome::Failed(format!(
            "no answer ({})",
            answer
                .dispatch_status
                .as_deref()
                .unwrap_or("callout failed")
        )),
    };
    layout::update_state(store, names, |s| {
        if s.lease_owner == owner {
            s.lease_owner.clear();
            s.lease_until_ms = 0;
        }
        match &outcome {
            Outcome::Stored(_) | Outcome::NotModified => {
                // A 304 keeps the list's own ttl.
                let kept_ms = s.refresh_at_ms.saturating_sub(s.fetched_at_ms);
                let ttl_ms = match ttl_s {
                    Some(t) => t.max(MIN_TTL_S) * 1000,
                    None if kept_ms > 0 => kept_ms,
                    None => settings.default_ttl_s * 1000,
                };
                if let Outcome::Stored(_) = outcome {
                    s.expires_at_ms = exp_s.map_or(0, |e| e.saturating_mul(1000));
                    s.etag = answer.etag.clone();
                } else {
                    s.not_modified += 1;
                }
                s.fetched_at_ms = now_ms;
                s.last_success_ms = now_ms;
                s.refresh_at_ms = now_ms + ttl_ms;
                s.attempt = 0;
                s.next_attempt_ms = 0;
                s.fetch_success += 1;
            }
            Outcome::Failed(e) => {
                s.fetch_failure += 1;
                s.last_error = Some(e.clone());
                s.last_error_at_ms = now_ms;
                s.back_off(now_ms, RETRY_BASE_MS, MAX_RETRY_MS);
            }
        }
        true
    })?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revoke::status::StatusList;
    use crate::store::MemoryStore;

    fn settings() -> StatusListSettings {
        StatusListSettings {
            upstream: None,
            default_ttl_s: 300,
            max_size: 1024,
            max_lists: 4,
            max_staleness_s: 60,
            fail_closed: false,
        }
    }

    fn ok(ttl_s: Option<u64>) -> (Answer<'static>, Option<Result<Accepted, String>>) {
        let a = Accepted {
            list: StatusList {
                bits: 1,
                bytes: vec![0b10],
            },
            ttl_s,
            exp_s: None,
        };
        let answer = Answer {
            status: Some(200),
            body_size: 10,
            ..Answer::default()
        };
        (answer, Some(Ok(a)))
    }

    #[test]
    fn one_fetch_per_ttl_with_a_floor_and_the_list_serves_past_it_while_refreshes_fail() {
        let (s, st) = (MemoryStore::default(), settings());
        let n = names("tag", "https://l/1");
        let t = 1_800_000_000_000;
        let take = |at, cold| try_acquire(&s, &n, &st, 1000, "a", at, cold).unwrap();
        assert_eq!(take(t, true), Acquire::Acquired);
        assert_eq!(take(t, true), Acquire::Busy);
        // A ttl of 1 second is held to the floor of 2.
        let (answer, checked) = ok(Some(1));
        let out = complete(&s, &n, &st, "a", t + 10, &answer, checked).unwrap();
        assert_eq!(out, Outcome::Stored(1));
        let state = layout::read_state(&s, &n).unwrap();
        assert_eq!(state.refresh_at_ms, t + 10 + MIN_TTL_S * 1000);
        assert_eq!(
            take(t + 1000, true),
            Acquire::NotDue,
            "usable: no cold fetch"
        );
        assert_eq!(take(t + 1000, false), Acquire::NotDue, "within its ttl");
        assert_eq!(take(t + 2010, false), Acquire::Acquired);
        let failed = Answer {
            status: Some(500),
            ..Answer::default()
        };
        assert!(matches!(
            complete(&s, &n, &st, "a", t + 2020, &failed, None).unwrap(),
            Outcome::Failed(_)
        ));
        let state = layout::read_state(&s, &n).unwrap();
        assert_eq!(state.next_attempt_ms, t + 3020);
        assert_eq!(
            take(t + 3019, false),
            Acquire::NotDue,
            "a second between tries"
        );
        // Serves until max_staleness (60 s) after the good fetch.
        assert_eq!(usable_until(&st, &state), t + 10 + 60_000);
        assert_eq!(layout::read_gen(&s, &n).unwrap(), 1, "the list stays");
    }

    #[test]
    fn the_lists_ttl_or_the_default_and_its_exp_bound_its_use() {
        let (s, st) = (MemoryStore::default(), settings());
        let n = names("tag", "https://l/2");
        let t = 1_800_000_000_000;
        try_acquire(&s, &n, &st, 1000, "a", t, true).unwrap();
        let (answer, mut checked) = ok(None);
        if let Some(Ok(a)) = checked.as_mut() {
            a.exp_s = Some(1_800_000_030);
        }
        complete(&s, &n, &st, "a", t, &answer, checked).unwrap();
        let state = layout::read_state(&s, &n).unwrap();
        assert_eq!(state.refresh_at_ms, t + 300_000, "status_list_ttl");
        assert_eq!(usable_until(&st, &state), t + 30_000, "never past exp");
        // A 304 keeps the list's ttl.
        try_acquire(&s, &n, &st, 1000, "a", t + 300_000, false).unwrap();
        let not_modified = Answer {
            status: Some(304),
            ..Answer::default()
        };
        complete(&s, &n, &st, "a", t + 300_000, &not_modified, None).unwrap();
        let state = layout::read_state(&s, &n).unwrap();
        assert_eq!(state.refresh_at_ms, t + 600_000);
        assert_eq!(usable_until(&st, &FetchState::default()), 0);
    }

    #[test]
    fn retries_back_off_to_a_bound() {
        let (s, st) = (MemoryStore::default(), settings());
        let n = names("tag", "https://l/3");
        let mut at = 1_800_000_000_000;
        let mut delays = Vec::new();
        for _ in 0..8 {
            assert_eq!(
                try_acquire(&s, &n, &st, 1000, "a", at, true).unwrap(),
                Acquire::Acquired
            );
            complete(&s, &n, &st, "a", at, &Answer::default(), None).unwrap();
            let next = layout::read_state(&s, &n).unwrap().next_attempt_ms;
            delays.push(next - at);
            at = next;
        }
        assert_eq!(
            delays,
            [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]
        );
    }
}
