//! A pulled revocation list: who fetches it (a lease by compare-and-swap,
//! as for key sets), when (every `revocation_refresh_interval`, less up to
//! a tenth of jitter so that a fleet's gateways spread out; retries after a
//! failure at 1, 2, 4 ... seconds, never more often than once a second and
//! never later than the interval), what is sent (`If-None-Match` /
//! `If-Modified-Since` from the last good answer) and what an answer does:
//! a good document replaces the list (a new generation), `304` keeps it,
//! anything else keeps it too and only records the failure. The list counts
//! as failed once no good answer came for `max_staleness` seconds.
#![forbid(unsafe_code)]

use crate::config::RevocationSource;
use crate::keys::layout::{self, FetchState, Names};
use crate::keys::refresh::Answer;
use crate::revoke::entry::{self, Entry};
use crate::store::{SharedStore, StoreError};

/// Extra time a lease lives beyond the callout timeout.
const LEASE_MARGIN_MS: u64 = 1000;
/// The first retry delay after a failure (doubling from there).
const RETRY_BASE_MS: u64 = 1000;

/// The shared-data names of a provider's pulled list.
pub fn names(src: &RevocationSource) -> Names {
    Names::for_uri(&format!("revocations/pulled/{}", src.endpoint.uri))
}

/// The largest document read: room for `max_entries` entries of a few
/// hundred bytes.
pub fn max_body(max_entries: usize) -> usize {
    max_entries
        .saturating_mul(512)
        .saturating_add(4096)
        .min(64 << 20)
}

/// Takes the lease when a pull is due. `true`: the caller must send the
/// callout.
pub fn try_acquire(
    store: &dyn SharedStore,
    names: &Names,
    timeout_ms: u64,
    owner: &str,
    now_ms: u64,
) -> Result<bool, StoreError> {
    let (_, took) = layout::update_state(store, names, |s| {
        if s.lease_held(now_ms) || now_ms < s.refresh_at_ms || now_ms < s.next_attempt_ms {
            return false;
        }
        s.take_lease(owner, now_ms + timeout_ms + LEASE_MARGIN_MS);
        true
    })?;
    Ok(took)
}

/// The request headers of a pull (validators of the last good answer).
pub fn request_headers(src: &RevocationSource, s: &FetchState) -> Vec<(String, String)> {
    crate::keys::refresh::get_headers(
        &src.endpoint,
        "application/json",
        s.etag.as_ref(),
        s.last_modified.as_ref(),
    )
}

/// A pseudo-random share of a tenth of the interval, so that gateways
/// started together do not pull together.
fn jitter_ms(src: &RevocationSource, owner: &str, now_ms: u64) -> u64 {
    let tenth = src.interval_s * 100;
    if tenth == 0 {
        return 0;
    }
    let seed = hmac_sha256::Hash::hash(format!("{owner}/{now_ms}").as_bytes());
    let n = u64::from_le_bytes([
        seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7],
    ]);
    n % tenth
}

/// What a pull ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new list is in place: its entry count and generation.
    Stored {
        entries: usize,
        gen: u64,
    },
    NotModified,
    /// Kept the list; why.
    Failed(String),
}

/// Records an answer (the caller held the lease).
pub fn complete(
    store: &dyn SharedStore,
    names: &Names,
    src: &RevocationSource,
    max_entries: usize,
    owner: &str,
    now_ms: u64,
    answer: &Answer,
) -> Result<Outcome, StoreError> {
    let parsed: Result<Option<Vec<Entry>>, String> = match (answer.status, answer.body) {
        (Some(304), _) => Ok(None),
        (Some(200), Some(body)) => entry::parse_document(body, max_entries)
            .map(Some)
            .map_err(|e| format!("bad revocation list: {e}")),
        (Some(200), None) if answer.body_size > max_body(max_entries) => Err(format!(
            "answer of {} bytes is larger than the {} allowed",
            answer.body_size,
            max_body(max_entries)
        )),
        (Some(200), None) => Err("empty answer".to_string()),
        (Some(code), _) => Err(format!("HTTP {code}")),
        (None, _) => Err(format!(
            "no answer ({})",
            answer
                .dispatch_status
                .as_deref()
                .unwrap_or("callout failed")
        )),
    };
    let outcome = match parsed {
        Ok(Some(list)) => {
            let now_s = now_ms / 1000;
            let live: Vec<Entry> = list.into_iter().filter(|e| e.live(now_s)).collect();
            let count = live.len();
            let (gen, _) = layout::store_record(store, names, |_, gen| {
                entry::write_stored(&live, gen)
                    .map(Some)
                    .map_err(StoreError::Host)
            })?;
            Outcome::Stored {
                entries: count,
                gen,
            }
        }
        Ok(None) => Outcome::NotModified,
        Err(e) => Outcome::Failed(e),
    };
    let next_ms = now_ms + src.interval_s * 1000 - jitter_ms(src, owner, now_ms);
    layout::update_state(store, names, |s| {
        if s.lease_owner == owner {
            s.lease_owner.clear();
            s.lease_until_ms = 0;
        }
        match &outcome {
            Outcome::Stored { .. } | Outcome::NotModified => {
                s.fetched_at_ms = now_ms;
                s.last_success_ms = now_ms;
                s.refresh_at_ms = next_ms;
                s.attempt = 0;
                s.next_attempt_ms = 0;
                s.fetch_success += 1;
                if matches!(outcome, Outcome::NotModified) {
                    s.not_modified += 1;
                } else {
                    s.etag = answer.etag.clone();
                    s.last_modified = answer.last_modified.clone();
                }
            }
            Outcome::Failed(e) => {
                s.fetch_failure += 1;
                s.last_error = Some(e.clone());
                s.last_error_at_ms = now_ms;
                s.back_off(now_ms, RETRY_BASE_MS, src.interval_s * 1000);
            }
        }
        true
    })?;
    Ok(outcome)
}

/// Until when (ms) the list serves: `max_staleness` after the last good
/// answer; 0 when it was never fetched.
pub fn fresh_until(src: &RevocationSource, s: &FetchState) -> u64 {
    match s.fetched_at_ms {
        0 => 0,
        at => at + src.max_staleness_s * 1000,
    }
}

/// Whether the list is fresh enough to serve with at `now_ms`.
pub fn fresh(src: &RevocationSource, s: &FetchState, now_ms: u64) -> bool {
    now_ms < fresh_until(src, s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_endpoint;
    use crate::store::MemoryStore;

    fn src() -> RevocationSource {
        RevocationSource {
            endpoint: parse_endpoint("http://lists:8080/revoked.json").unwrap(),
            upstream: "lists:8080".into(),
            interval_s: 10,
            max_staleness_s: 30,
            fail_closed: true,
        }
    }

    fn ok(body: &str) -> Answer<'_> {
        Answer {
            status: Some(200),
            body_size: body.len(),
            body: Some(body.as_bytes()),
            etag: Some("\"v1\"".into()),
            ..Answer::default()
        }
    }

    const DOC: &str = r#"{"entries": [{"type": "sub", "value": "alice", "exp": 4000000000}, {"type": "sub", "value": "gone", "exp": 1000}]}"#;

    #[test]
    fn one_worker_pulls_per_interval_and_a_good_list_replaces_the_old() {
        let (s, src) = (MemoryStore::default(), src());
        let n = names(&src);
        let t = 1_800_000_000_000;
        assert!(try_acquire(&s, &n, 1000, "a", t).unwrap());
        assert!(!try_acquire(&s, &n, 1000, "b", t).unwrap(), "lease held");
        let out = complete(&s, &n, &src, 100, "a", t + 5, &ok(DOC)).unwrap();
        assert_eq!(
            out,
            Outcome::Stored { entries: 1, gen: 1 },
            "the expired entry is dropped"
        );
        let st = layout::read_state(&s, &n).unwrap();
        assert!(fresh(&src, &st, t + 29_000));
        assert!(!fresh(&src, &st, t + 30_006));
        // next pull: within the last tenth of the interval before t + 10 s
        assert!(
            (t + 9_005..=t + 10_005).contains(&st.refresh_at_ms),
            "{}",
            st.refresh_at_ms
        );
        assert!(!try_acquire(&s, &n, 1000, "b", t + 8_000).unwrap());
        assert!(try_acquire(&s, &n, 1000, "b", t + 10_005).unwrap());
        let h = request_headers(&src, &layout::read_state(&s, &n).unwrap());
        assert!(h.contains(&("if-none-match".into(), "\"v1\"".into())));
        let not_modified = Answer {
            status: Some(304),
            ..Answer::default()
        };
        assert_eq!(
            complete(&s, &n, &src, 100, "b", t + 10_010, &not_modified).unwrap(),
            Outcome::NotModified
        );
        assert_eq!(
            layout::read_keys(&s, &n).unwrap().gen,
            1,
            "304 keeps the generation"
        );
    }

    #[test]
    fn failures_keep_the_list_and_retry_with_a_bounded_backoff() {
        let (s, src) = (MemoryStore::default(), src());
        let n = names(&src);
        let t = 1_800_000_000_000;
        assert!(try_acquire(&s, &n, 1000, "a", t).unwrap());
        complete(&s, &n, &src, 100, "a", t, &ok(DOC)).unwrap();
        let mut at = t + 10_000;
        let mut delays = Vec::new();
        for bad in [
            Answer {
                status: Some(500),
                ..Answer::default()
            },
            ok("{\"entries\": [{\"type\": \"sub\"}]}"),
            ok("not json"),
            Answer::default(),
            Answer {
                status: Some(200),
                body_size: 1 << 30,
                ..Answer::default()
            },
            Answer {
                status: Some(503),
                ..Answer::default()
            },
        ] {
            assert!(try_acquire(&s, &n, 1000, "a", at).unwrap(), "due at {at}");
            assert!(matches!(
                complete(&s, &n, &src, 100, "a", at, &bad).unwrap(),
                Outcome::Failed(_)
            ));
            let st = layout::read_state(&s, &n).unwrap();
            delays.push(st.next_attempt_ms - at);
            assert!(
                !try_acquire(&s, &n, 1000, "a", at + 999).unwrap(),
                "never sooner than 1 s"
            );
            at = st.next_attempt_ms;
        }
        assert_eq!(delays, vec![1000, 2000, 4000, 8000, 10_000, 10_000]);
        let rec = layout::read_keys(&s, &n).unwrap();
        assert_eq!((rec.gen, rec.keys.len()), (1, 1), "the good list stays");
        let st = layout::read_state(&s, &n).unwrap();
        assert!(!fresh(&src, &st, t + 30_001), "past max_staleness");
        assert!(st.last_error.is_some());
    }

    #[test]
    fn never_fetched_is_not_fresh() {
        assert!(!fresh(&src(), &FetchState::default(), 1));
    }
}
