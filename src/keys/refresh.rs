//! The JWKS refresh state machine: who fetches (a lease taken by
//! compare-and-swap, with an expiry so a dead holder blocks nobody for
//! long), when (cold start, ahead of expiry, retries with doubling delay,
//! unknown `kid` at most once per `min_refresh_interval`), and what a
//! callout's answer does to the shared key set (a bad answer never evicts
//! good keys).
#![forbid(unsafe_code)]

use crate::config::Provider;
use crate::crypto::alg::AlgSet;
use crate::keys::jwks;
use crate::keys::layout::{self, FetchState, Names, SkippedKey};
use crate::store::{SharedStore, StoreError};

/// Why a refresh is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The periodic check (cold start, or `refresh_ahead_time` before expiry).
    Scheduled,
    /// A request found no key at all and waits.
    Cold,
    /// A request carries a `kid` the set does not have.
    UnknownKid,
}

/// The answer to "may I fetch now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// The caller holds the lease and must dispatch the callout.
    Acquired,
    /// Someone else is fetching; wait for the new generation.
    Busy,
    /// Nothing to do yet (keys fresh, or a retry delay is running).
    NotDue,
    /// An unknown-`kid` refresh happened less than `min_refresh_interval` ago.
    RateLimited,
}

/// Extra time a lease lives beyond the callout timeout.
const LEASE_MARGIN_MS: u64 = 1000;

/// Tries to take the refresh lease for `trigger`.
pub fn try_acquire(
    store: &dyn SharedStore,
    names: &Names,
    p: &Provider,
    owner: &str,
    now_ms: u64,
    trigger: Trigger,
) -> Result<Acquire, StoreError> {
    let mut answer = Acquire::NotDue;
    layout::update_state(store, names, |s| {
        if s.lease_held(now_ms) {
            answer = Acquire::Busy;
            return false;
        }
        let due = match trigger {
            Trigger::Scheduled => {
                !s.cleared
                    && (!s.has_keys() || now_ms + p.refresh_ahead_s * 1000 >= s.expires_at_ms)
                    && now_ms >= s.next_attempt_ms
            }
            Trigger::Cold => now_ms >= s.next_attempt_ms,
            Trigger::UnknownKid => {
                let limited = s.last_kid_refresh_ms != 0
                    && now_ms < s.last_kid_refresh_ms + p.min_refresh_interval_s * 1000;
                if limited {
                    answer = Acquire::RateLimited;
                    return false;
                }
                s.last_kid_refresh_ms = now_ms;
                true
            }
        };
        if !due {
            answer = Acquire::NotDue;
            return false;
        }
        s.lease_owner = owner.to_string();
        s.lease_until_ms = now_ms + p.timeout_ms + LEASE_MARGIN_MS;
        answer = Acquire::Acquired;
        true
    })?;
    Ok(answer)
}

/// Gives the lease back without a result (the callout could not be sent).
pub fn abandon(
    store: &dyn SharedStore,
    names: &Names,
    owner: &str,
    now_ms: u64,
    error: &str,
) -> Result<(), StoreError> {
    layout::update_state(store, names, |s| {
        if s.lease_owner == owner {
            s.lease_owner.clear();
            s.lease_until_ms = 0;
        }
        s.fetch_failure += 1;
        s.last_error = Some(error.to_string());
        s.last_error_at_ms = now_ms;
        true
    })?;
    Ok(())
}

/// What came back from the callout, as the host reported it.
#[derive(Debug, Clone, Default)]
pub struct Answer<'a> {
    /// `:status`, absent when the callout itself failed.
    pub status: Option<u16>,
    /// Kong's `:dispatch_status` (timeout, broken connection, ...).
    pub dispatch_status: Option<String>,
    pub body_size: usize,
    /// The body, only read when `body_size` is within the limit.
    pub body: Option<&'a [u8]>,
}

/// The outcome of one fetch, for logs, metrics and waiters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// New keys stored under this generation (unchanged keys keep theirs).
    Stored {
        gen: u64,
        keys: usize,
        skipped: usize,
    },
    Failed(String),
}

/// Whether a body of `size` bytes may be copied into the VM.
pub fn body_allowed(p: &Provider, size: usize) -> bool {
    size <= p.max_jwks_size
}

/// Checks an answer and turns it into keys or an error.
pub fn evaluate(answer: &Answer, p: &Provider, allowed: AlgSet) -> Result<jwks::Parsed, String> {
    let Some(status) = answer.status else {
        return Err(match &answer.dispatch_status {
            Some(d) if !d.is_empty() => format!("JWKS callout failed: {d}"),
            _ => "JWKS callout failed (no response: unreachable, reset or timed out)".to_string(),
        });
    };
    if status != 200 {
        return Err(format!("JWKS endpoint answered HTTP {status}"));
    }
    if !body_allowed(p, answer.body_size) {
        return Err(format!(
            "JWKS body of {} bytes is over max_jwks_size ({})",
            answer.body_size, p.max_jwks_size
        ));
    }
    let body = answer.body.unwrap_or_default();
    jwks::parse(body, allowed, p.max_cache_size).map_err(|e| e.to_string())
}

/// Records a fetch's result in shared data. Good keys replace the set (only
/// if they differ, so unchanged keys cost no re-parse anywhere); an error
/// leaves the set as it is and schedules the next attempt.
pub fn complete(
    store: &dyn SharedStore,
    names: &Names,
    p: &Provider,
    owner: &str,
    now_ms: u64,
    result: Result<jwks::Parsed, String>,
) -> Result<Outcome, StoreError> {
    match result {
        Ok(parsed) => {
            let docs: Vec<serde_json::Value> =
                parsed.set.entries.iter().map(|e| e.jwk.clone()).collect();
            let current = layout::read_keys(store, names)?;
            let gen = if current.keys == docs && current.gen != 0 {
                current.gen
            } else {
                layout::write_keys(store, names, docs)?
            };
            let skipped: Vec<SkippedKey> = parsed
                .skipped
                .iter()
                .take(32)
                .map(|s| SkippedKey {
                    kid: s.kid.clone(),
                    reason: s.reason.clone(),
                })
                .collect();
            layout::update_state(store, names, |s| {
                release(s, owner);
                s.fetched_at_ms = now_ms;
                s.expires_at_ms = now_ms + p.cache_ttl_s * 1000;
                s.attempt = 0;
                s.next_attempt_ms = 0;
                s.fetch_success += 1;
                s.skipped = skipped.clone();
                s.cleared = false;
                true
            })?;
            Ok(Outcome::Stored {
                gen,
                keys: parsed.set.len(),
                skipped: parsed.skipped.len(),
            })
        }
        Err(error) => {
            layout::update_state(store, names, |s| {
                release(s, owner);
                s.fetch_failure += 1;
                s.last_error = Some(error.clone());
                s.last_error_at_ms = now_ms;
                s.attempt += 1;
                if s.attempt <= p.retry_count {
                    let factor = 1u64 << (s.attempt - 1).min(16);
                    s.next_attempt_ms = now_ms + p.retry_delay_ms.saturating_mul(factor);
                } else {
                    // Retries exhausted: rest, then start a new round.
                    s.attempt = 0;
                    s.next_attempt_ms = now_ms + p.min_refresh_interval_s.max(1) * 1000;
                }
                true
            })?;
            Ok(Outcome::Failed(error))
        }
    }
}

fn release(s: &mut FetchState, owner: &str) {
    if s.lease_owner == owner {
        s.lease_owner.clear();
        s.lease_until_ms = 0;
    }
}

/// Empties the key set for every worker; the next request refetches and
/// waits, as on a cold start. Returns how many keys were dropped.
pub fn clear_all(store: &dyn SharedStore, names: &Names) -> Result<usize, StoreError> {
    let dropped = layout::read_keys(store, names)?.keys.len();
    layout::write_keys(store, names, Vec::new())?;
    layout::update_state(store, names, |s| {
        s.fetched_at_ms = 0;
        s.expires_at_ms = 0;
        s.next_attempt_ms = 0;
        s.attempt = 0;
        s.last_kid_refresh_ms = 0;
        s.cleared = true;
        true
    })?;
    Ok(dropped)
}

/// Drops one key for every worker; a request with that `kid` may refetch at
/// once. Returns whether the key was there.
pub fn clear_kid(store: &dyn SharedStore, names: &Names, kid: &str) -> Result<bool, StoreError> {
    let mut rec = layout::read_keys(store, names)?;
    let before = rec.keys.len();
    rec.keys
        .retain(|k| k.get("kid").and_then(serde_json::Value::as_str) != Some(kid));
    if rec.keys.len() == before {
        return Ok(false);
    }
    layout::write_keys(store, names, rec.keys)?;
    layout::update_state(store, names, |s| {
        s.last_kid_refresh_ms = 0;
        true
    })?;
    Ok(true)
}

/// The request headers of the JWKS callout.
pub fn request_headers(p: &Provider) -> Vec<(String, String)> {
    let Some(uri) = &p.jwks else {
        return Vec::new();
    };
    vec![
        (":method".into(), "GET".into()),
        (":path".into(), uri.path.clone()),
        (":authority".into(), uri.authority.clone()),
        (":scheme".into(), uri.scheme.clone()),
        (
            "accept".into(),
            "application/jwk-set+json, application/json".into(),
        ),
        (
            "user-agent".into(),
            concat!("jwt-jwks/", env!("CARGO_PKG_VERSION")).into(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::crypto::alg::Alg;
    use crate::keys::layout::{read_gen, read_state};
    use crate::store::MemoryStore;

    const RSA_JWK: &str = r#"{"kty":"RSA","kid":"k1","e":"AQAB","n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"}"#;

    fn provider(extra: &str) -> Provider {
        Config::parse(format!(r#"{{"jwks_uri":"http://idp:8080/jwks?v=1"{extra}}}"#).as_bytes())
            .unwrap()
            .providers
            .remove(0)
    }

    fn ok_answer(body: &str) -> Answer<'_> {
        Answer {
            status: Some(200),
            dispatch_status: None,
            body_size: body.len(),
            body: Some(body.as_bytes()),
        }
    }

    fn good() -> String {
        format!(r#"{{"keys":[{RSA_JWK}]}}"#)
    }

    fn fetch_ok(s: &MemoryStore, n: &Names, p: &Provider, now: u64) -> Outcome {
        let body = good();
        let parsed = evaluate(&ok_answer(&body), p, AlgSet::of(&[Alg::RS256]));
        complete(s, n, p, "me", now, parsed).unwrap()
    }

    #[test]
    fn one_lease_at_a_time_and_a_dead_holder_expires() {
        let (s, n, p) = (
            MemoryStore::default(),
            Names::for_uri("u"),
            provider(r#","timeout":2000"#),
        );
        assert_eq!(
            try_acquire(&s, &n, &p, "a", 1000, Trigger::Scheduled).unwrap(),
            Acquire::Acquired
        );
        assert_eq!(
            try_acquire(&s, &n, &p, "b", 1001, Trigger::Scheduled).unwrap(),
            Acquire::Busy
        );
        assert_eq!(
            try_acquire(&s, &n, &p, "b", 1001, Trigger::UnknownKid).unwrap(),
            Acquire::Busy
        );
        // timeout 2000 + margin 1000: at 4000 the lease is gone.
        assert_eq!(
            try_acquire(&s, &n, &p, "b", 4000, Trigger::Cold).unwrap(),
            Acquire::Acquired
        );
        assert_eq!(read_state(&s, &n).unwrap().lease_owner, "b");
    }

    #[test]
    fn scheduled_refresh_is_due_cold_and_ahead_of_expiry_only() {
        let (s, n, p) = (
            MemoryStore::default(),
            Names::for_uri("u"),
            provider(r#","cache_ttl":600,"refresh_ahead_time":60"#),
        );
        assert_eq!(
            try_acquire(&s, &n, &p, "me", 0, Trigger::Scheduled).unwrap(),
            Acquire::Acquired
        );
        assert!(matches!(
            fetch_ok(&s, &n, &p, 0),
            Outcome::Stored {
                gen: 1,
                keys: 1,
                skipped: 0
            }
        ));
        assert_eq!(
            try_acquire(&s, &n, &p, "me", 539_000, Trigger::Scheduled).unwrap(),
            Acquire::NotDue
        );
        assert_eq!(
            try_acquire(&s, &n, &p, "me", 540_000, Trigger::Scheduled).unwrap(),
            Acquire::Acquired
        );
    }

    #[test]
    fn failures_back_off_doubling_then_rest() {
        let (s, n, p) = (
            MemoryStore::default(),
            Names::for_uri("u"),
            provider(r#","retry_count":2,"retry_delay":100,"min_refresh_interval":7"#),
        );
        let fail = |now| {
            assert_eq!(
                try_acquire(&s, &n, &p, "me", now, Trigger::Scheduled).unwrap(),
                Acquire::Acquired,
                "at {now}"
            );
            complete(&s, &n, &p, "me", now, Err("down".into())).unwrap();
            read_state(&s, &n).unwrap().next_attempt_ms
        };
        assert_eq!(fail(0), 100);
        assert_eq!(
            try_acquire(&s, &n, &p, "me", 99, Trigger::Scheduled).unwrap(),
            Acquire::NotDue
        );
        assert_eq!(
            try_acquire(&s, &n, &p, "me", 99, Trigger::Cold).unwrap(),
            Acquire::NotDue
        );
        assert_eq!(fail(100), 300, "second retry waits twice as long");
        assert_eq!(
            fail(300),
            7300,
            "retries exhausted: rest min_refresh_interval"
        );
        let st = read_state(&s, &n).unwrap();
        assert_eq!((st.fetch_failure, st.attempt), (3, 0));
        assert_eq!(st.last_error.as_deref(), Some("down"));
    }

    #[test]
    fn unknown_kid_refresh_is_rate_limited_and_a_clear_resets_it() {
        let (s, n, p) = (
            MemoryStore::default(),
            Names::for_uri("u"),
            provider(r#","min_refresh_interval":30"#),
        );
        assert_eq!(
            try_acquire(&s, &n, &p, "me", 1000, Trigger::UnknownKid).unwrap(),
            Acquire::Acquired
        );
        fetch_ok(&s, &n, &p, 1100);
        assert_eq!(
            try_acquire(&s, &n, &p, "me", 20_000, Trigger::UnknownKid).unwrap(),
            Acquire::RateLimited
        );
        assert_eq!(
            try_acquire(&s, &n, &p, "me", 31_000, Trigger::UnknownKid).unwrap(),
            Acquire::Acquired
        );
        fetch_ok(&s, &n, &p, 31_100);
        assert_eq!(
            try_acquire(&s, &n, &p, "me", 32_000, Trigger::UnknownKid).unwrap(),
            Acquire::RateLimited
        );
        assert!(clear_kid(&s, &n, "k1").unwrap());
        assert!(!clear_kid(&s, &n, "k1").unwrap(), "already gone");
        assert_eq!(
            try_acquire(&s, &n, &p, "me", 32_001, Trigger::UnknownKid).unwrap(),
            Acquire::Acquired
        );
    }

    #[test]
    fn bad_answers_never_evict_good_keys() {
        let (s, n, p) = (
            MemoryStore::default(),
            Names::for_uri("u"),
            provider(r#","max_jwks_size":1000"#),
        );
        fetch_ok(&s, &n, &p, 0);
        let gen = read_gen(&s, &n).unwrap();
        let big = "x".repeat(1001);
        let answers = [
            Answer {
                status: None,
                dispatch_status: Some("timeout".into()),
                ..Answer::default()
            },
            Answer {
                status: None,
                ..Answer::default()
            },
            Answer {
                status: Some(500),
                body_size: 2,
                body: Some(b"{}"),
                ..Answer::default()
            },
            Answer {
                status: Some(302),
                ..Answer::default()
            },
            ok_answer("{not json"),
            ok_answer(r#"{"keys":[]}"#),
            ok_answer(r#"{"keys":[{"kty":"RSA","use":"enc"}]}"#),
            Answer {
                status: Some(200),
                body_size: big.len(),
                body: None,
                ..Answer::default()
            },
        ];
        let mut errors = Vec::new();
        for a in &answers {
            let r = evaluate(a, &p, AlgSet::of(&[Alg::RS256]));
            assert!(r.is_err());
            match complete(&s, &n, &p, "me", 10, r).unwrap() {
                Outcome::Failed(e) => errors.push(e),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(read_gen(&s, &n).unwrap(), gen, "key set untouched");
        assert_eq!(layout::read_keys(&s, &n).unwrap().keys.len(), 1);
        assert!(errors[0].contains("timeout"), "{errors:?}");
        assert!(errors[2].contains("HTTP 500"), "{errors:?}");
        assert!(errors[4].contains("not valid JSON"), "{errors:?}");
        assert!(errors[7].contains("max_jwks_size"), "{errors:?}");
        assert!(read_state(&s, &n).unwrap().has_keys());
    }

    #[test]
    fn unchanged_keys_keep_their_generation() {
        let (s, n, p) = (MemoryStore::default(), Names::for_uri("u"), provider(""));
        fetch_ok(&s, &n, &p, 0);
        fetch_ok(&s, &n, &p, 5);
        assert_eq!(read_gen(&s, &n).unwrap(), 1);
        assert_eq!(read_state(&s, &n).unwrap().fetch_success, 2);
    }

    #[test]
    fn clear_all_empties_for_everyone() {
        let (s, n, p) = (MemoryStore::default(), Names::for_uri("u"), provider(""));
        fetch_ok(&s, &n, &p, 0);
        assert_eq!(clear_all(&s, &n).unwrap(), 1);
        assert_eq!(layout::read_keys(&s, &n).unwrap().keys.len(), 0);
        assert!(!read_state(&s, &n).unwrap().has_keys());
        // No refetch by itself: the next request that needs keys fetches.
        assert_eq!(
            try_acquire(&s, &n, &p, "me", 1, Trigger::Scheduled).unwrap(),
            Acquire::NotDue
        );
        assert_eq!(
            try_acquire(&s, &n, &p, "me", 1, Trigger::Cold).unwrap(),
            Acquire::Acquired
        );
        fetch_ok(&s, &n, &p, 2);
        assert!(!read_state(&s, &n).unwrap().cleared);
    }

    #[test]
    fn callout_headers_come_from_the_uri() {
        let h = request_headers(&provider(""));
        assert!(h.contains(&(":path".into(), "/jwks?v=1".into())));
        assert!(h.contains(&(":authority".into(), "idp:8080".into())));
        assert!(h.contains(&(":method".into(), "GET".into())));
    }
}
