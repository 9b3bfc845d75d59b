//! The key-set refresh state machine: who fetches (a lease taken by
//! compare-and-swap, with an expiry so a dead holder blocks nobody for
//! long), when (cold start, the schedule of `freshness`, retries with
//! doubling delay, unknown `kid`s within `kid_budget`), what is fetched
//! (the OpenID Provider metadata first when it is due, then the JWKS, with
//! the validators of the current set), and what an answer does to the
//! shared key set (a bad answer never evicts good keys; `304 Not Modified`
//! keeps the set and its generation).
#![forbid(unsafe_code)]

use crate::config::{parse_endpoint, Endpoint, Provider};
use crate::crypto::alg::AlgSet;
use crate::keys::freshness::{self, CacheHeaders};
use crate::keys::layout::{self, FetchState, Names, SkippedKey};
use crate::keys::{discovery, jwks, kid_budget};
use crate::store::{SharedStore, StoreError};

/// Why a refresh is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger<'a> {
    /// The periodic check (cold start, or the scheduled refresh).
    Scheduled,
    /// A request found no key at all and waits.
    Cold,
    /// A request carries a `kid` the set does not have (`None`: a token
    /// without `kid` that no key verified).
    UnknownKid(Option<&'a str>),
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
    /// The unknown-`kid` budget is spent.
    RateLimited,
    /// A refresh proved this `kid` absent less than an interval ago.
    KnownAbsent,
}

/// Extra time a lease lives beyond the callout timeout.
const LEASE_MARGIN_MS: u64 = 1000;

/// No two attempts of the schedule (a first fetch and its retries) start
/// closer than this, whatever `retry_delay` says.
pub const MIN_RETRY_DELAY_MS: u64 = 1000;

/// Tries to take the refresh lease for `trigger`.
pub fn try_acquire(
    store: &dyn SharedStore,
    names: &Names,
    p: &Provider,
    owner: &str,
    now_ms: u64,
    trigger: Trigger,
) -> Result<Acquire, StoreError> {
    let tag = match trigger {
        Trigger::UnknownKid(Some(kid)) => Some(kid_budget::tag(kid)),
        _ => None,
    };
    let mut answer = Acquire::NotDue;
    layout::update_state(store, names, |s| {
        if let Some(t) = &tag {
            if kid_budget::is_absent(s, t, now_ms) {
                answer = Acquire::KnownAbsent;
                return false;
            }
        }
        if s.lease_held(now_ms) {
            answer = Acquire::Busy;
            // The fetch under way settles whether this kid exists.
            return match &tag {
                Some(t) if !s.asked_kids.contains(t) => {
                    kid_budget::note_asked(s, t);
                    true
                }
                _ => false,
            };
        }
        let due = match trigger {
            Trigger::Scheduled => {
                !s.cleared
                    && (!s.has_keys() || now_ms >= s.refresh_at_ms)
                    && now_ms >= s.next_attempt_ms
            }
            Trigger::Cold => now_ms >= s.next_attempt_ms,
            Trigger::UnknownKid(_) => {
                if !kid_budget::take(s, p, now_ms) {
                    answer = Acquire::RateLimited;
                    return false;
                }
                true
            }
        };
        if !due {
            answer = Acquire::NotDue;
            return false;
        }
        s.asked_kids.clear();
        if let Some(t) = &tag {
            kid_budget::note_asked(s, t);
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
    p: &Provider,
    owner: &str,
    now_ms: u64,
    error: &str,
) -> Result<(), StoreError> {
    layout::update_state(store, names, |s| {
        fail(s, p, owner, now_ms, error);
        true
    })?;
    Ok(())
}

/// Which document a callout fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doc {
    /// The OpenID Provider metadata (`discovery_uri`).
    Discovery,
    /// The JWKS.
    Jwks,
    /// A provider's revocation list (`revoke::pull`; the engine routes it).
    Revocations,
    /// A status list, by its place in the worker's table
    /// (`revoke::status_held`; the engine routes it).
    StatusList(u32),
    /// An introspection (or token exchange) call this VM sent, by its id
    /// (`u32::MAX` in a paused request that waits for another's call).
    Introspection(u32),
}

/// A callout to send: where, and its request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub doc: Doc,
    /// Envoy cluster name, or Kong `host:port`.
    pub upstream: String,
    pub headers: Vec<(String, String)>,
}

/// The JWKS endpoint: configured, or named by the last good metadata.
fn jwks_endpoint(p: &Provider, s: &FetchState) -> Option<Endpoint> {
    match &p.jwks {
        Some(e) => Some(e.clone()),
        None => parse_endpoint(s.discovery.jwks_uri.as_deref()?).ok(),
    }
}

/// The callout the lease holder sends next: the metadata when the provider
/// uses discovery and it is missing or due, else the JWKS. `None` for a
/// provider with nothing to fetch.
pub fn next_request(p: &Provider, s: &FetchState, now_ms: u64) -> Option<Request> {
    let metadata_due = s.discovery.jwks_uri.is_none() || now_ms >= s.discovery.fresh_until_ms;
    if let (Some(d), true) = (&p.discovery, metadata_due) {
        let known = s.discovery.jwks_uri.is_some();
        return Some(Request {
            doc: Doc::Discovery,
            upstream: p.discovery_upstream.clone(),
            headers: get_headers(
                d,
                "application/json",
                known.then_some(&s.discovery.etag).and_then(Option::as_ref),
                known
                    .then_some(&s.discovery.last_modified)
                    .and_then(Option::as_ref),
            ),
        });
    }
    let e = jwks_endpoint(p, s)?;
    // Validators only for a set this host still holds (not after a clear).
    let cached = s.has_keys() && !s.cleared;
    Some(Request {
        doc: Doc::Jwks,
        upstream: if p.upstream.is_empty() {
            e.authority.clone()
        } else {
            p.upstream.clone()
        },
        headers: get_headers(
            &e,
            "application/jwk-set+json, application/json",
            cached.then_some(&s.etag).and_then(Option::as_ref),
            cached.then_some(&s.last_modified).and_then(Option::as_ref),
        ),
    })
}

/// The headers of a GET of `e`: pseudo-headers, `accept`, the user agent,
/// and the validators of the last good answer (also the revocation and
/// status list fetches').
pub fn get_headers(
    e: &Endpoint,
    accept: &str,
    etag: Option<&String>,
    last_modified: Option<&String>,
) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = vec![
        (":method".into(), "GET".into()),
        (":path".into(), e.path.clone()),
        (":authority".into(), e.authority.clone()),
        (":scheme".into(), e.scheme.clone()),
        ("accept".into(), accept.into()),
        (
            "user-agent".into(),
            concat!("jwt-jwks/", env!("CARGO_PKG_VERSION")).into(),
        ),
    ];
    if let Some(v) = etag {
        h.push(("if-none-match".into(), v.clone()));
    }
    if let Some(v) = last_modified {
        h.push(("if-modified-since".into(), v.clone()));
    }
    h
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
    pub cache: CacheHeaders,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
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
    /// `304 Not Modified`: the set, its generation and its tables stay.
    NotModified {
        gen: u64,
    },
    /// Good metadata: the JWKS callout comes next (the lease is kept).
    Discovered {
        jwks_uri: String,
    },
    /// Metadata that could not be used while an earlier `jwks_uri` is
    /// known: the JWKS is fetched from that one (the lease is kept).
    DiscoveryFailedKept(String),
    Failed(String),
}

impl Outcome {
    /// Whether the lease holder must now send the JWKS callout.
    pub fn follow_up(&self) -> bool {
        matches!(
            self,
            Outcome::Discovered { .. } | Outcome::DiscoveryFailedKept(_)
        )
    }
}

/// What a good answer held.
#[derive(Debug)]
pub enum Fetched {
    Keys(jwks::Parsed),
    NotModified,
}

/// Whether a body of `size` bytes may be copied into the VM.
pub fn body_allowed(p: &Provider, size: usize) -> bool {
    size <= p.max_jwks_size
}

fn check_status(answer: &Answer, p: &Provider, what: &str) -> Result<bool, String> {
    let Some(status) = answer.status else {
        return Err(match &answer.dispatch_status {
            Some(d) if !d.is_empty() => format!("{what} callout failed: {d}"),
            _ => format!("{what} callout failed (no response: unreachable, reset or timed out)"),
        });
    };
    if status == 304 {
        return Ok(false);
    }
    if status != 200 {
        return Err(format!("{what} endpoint answered HTTP {status}"));
    }
    if !body_allowed(p, answer.body_size) {
        return Err(format!(
            "{what} body of {} bytes is over max_jwks_size ({})",
            answer.body_size, p.max_jwks_size
        ));
    }
    Ok(true)
}

/// Checks a JWKS answer and turns it into keys, a 304, or an error.
pub fn evaluate(answer: &Answer, p: &Provider, allowed: AlgSet) -> Result<Fetched, String> {
    if !check_status(answer, p, "JWKS")? {
        return Ok(Fetched::NotModified);
    }
    let body = answer.body.unwrap_or_default();
    let rules = jwks::Rules {
        allowed,
        max_keys: p.max_cache_size,
        require_alg: p.require_jwk_alg,
    };
    jwks::parse_with(body, rules)
        .map(Fetched::Keys)
        .map_err(|e| e.to_string())
}

/// Records a JWKS fetch's result in shared data. Good keys replace the set
/// (only if they differ, so unchanged keys cost no re-parse anywhere); a 304
/// extends the current set; an error leaves the set as it is and schedules
/// the next attempt.
pub fn complete(
    store: &dyn SharedStore,
    names: &Names,
    p: &Provider,
    owner: &str,
    now_ms: u64,
    answer: &Answer,
    result: Result<Fetched, String>,
) -> Result<Outcome, StoreError> {
    let current = layout::read_keys(store, names)?;
    let result = match result {
        Ok(Fetched::NotModified) if current.keys.is_empty() => {
            Err("JWKS endpoint answered 304 but this host holds no key set".to_string())
        }
        other => other,
    };
    let parsed = match result {
        Ok(f) => f,
        Err(error) => {
            layout::update_state(store, names, |s| {
                fail(s, p, owner, now_ms, &error);
                true
            })?;
            return Ok(Outcome::Failed(error));
        }
    };
    let (outcome, present, skipped) = match &parsed {
        Fetched::Keys(parsed) => {
            let docs: Vec<serde_json::Value> =
                parsed.set.entries.iter().map(|e| e.jwk.clone()).collect();
            let gen = if current.keys == docs && current.gen != 0 {
                current.gen
            } else {
                layout::write_keys(store, names, docs)?
            };
            let present: Vec<String> = parsed
                .set
                .entries
                .iter()
                .filter_map(|e| e.kid.as_deref().map(kid_budget::tag))
                .collect();
            let skipped: Vec<SkippedKey> = parsed
                .skipped
                .iter()
                .take(32)
                .map(|s| SkippedKey {
                    kid: s.kid.clone(),
                    reason: s.reason.clone(),
                })
                .collect();
            let outcome = Outcome::Stored {
                gen,
                keys: parsed.set.len(),
                skipped: parsed.skipped.len(),
            };
            (outcome, present, Some(skipped))
        }
        Fetched::NotModified => {
            let present = current
                .keys
                .iter()
                .filter_map(|k| k.get("kid").and_then(serde_json::Value::as_str))
                .map(kid_budget::tag)
                .collect();
            (Outcome::NotModified { gen: current.gen }, present, None)
        }
    };
    let (fresh_s, source) = freshness::fresh_s(p, &answer.cache, now_ms);
    let not_modified = matches!(outcome, Outcome::NotModified { .. });
    layout::update_state(store, names, |s| {
        release(s, owner);
        s.fetched_at_ms = now_ms;
        s.fresh_from = source.name().to_string();
        s.expires_at_ms = now_ms + fresh_s * 1000;
        s.refresh_at_ms = freshness::refresh_at_ms(p, now_ms, fresh_s);
        s.attempt = 0;
        s.next_attempt_ms = 0;
        s.fetch_success += 1;
        s.last_success_ms = now_ms;
        if not_modified {
            s.not_modified += 1;
            // A 304 may carry new validators (RFC 9110 section 15.4.5).
            if answer.etag.is_some() {
                s.etag = answer.etag.clone();
            }
            if answer.last_modified.is_some() {
                s.last_modified = answer.last_modified.clone();
            }
        } else {
            s.etag = answer.etag.clone();
            s.last_modified = answer.last_modified.clone();
        }
        if let Some(sk) = &skipped {
            s.skipped = sk.clone();
        }
        s.cleared = false;
        kid_budget::settle(s, p, now_ms, &|t| present.iter().any(|x| x == t));
        true
    })?;
    Ok(outcome)
}

/// Records a metadata fetch: good metadata names the `jwks_uri` (the lease
/// is kept for the JWKS callout); bad metadata keeps an earlier `jwks_uri`
/// if there is one, else it is a failed fetch.
pub fn complete_discovery(
    store: &dyn SharedStore,
    names: &Names,
    p: &Provider,
    owner: &str,
    now_ms: u64,
    answer: &Answer,
) -> Result<Outcome, StoreError> {
    let result = check_status(answer, p, "discovery").and_then(|full| {
        if full {
            discovery::parse(answer.body.unwrap_or_default(), p).map(Some)
        } else {
            Ok(None)
        }
    });
    let (fresh_s, _) = freshness::fresh_s(p, &answer.cache, now_ms);
    let mut outcome = Outcome::Failed(String::new());
    layout::update_state(store, names, |s| {
        let d = &mut s.discovery;
        outcome = match &result {
            Ok(Some(m)) => {
                d.jwks_uri = Some(m.jwks_uri.uri.clone());
                d.issuer = Some(m.issuer.clone());
                d.introspection_endpoint = m.introspection_endpoint.clone();
                d.etag = answer.etag.clone();
                d.last_modified = answer.last_modified.clone();
                d.last_error = None;
                d.fetched_at_ms = now_ms;
                d.fresh_until_ms = now_ms + fresh_s * 1000;
                Outcome::Discovered {
                    jwks_uri: m.jwks_uri.uri.clone(),
                }
            }
            Ok(None) if d.jwks_uri.is_some() => {
                d.last_error = None;
                d.fetched_at_ms = now_ms;
                d.fresh_until_ms = now_ms + fresh_s * 1000;
                Outcome::Discovered {
                    jwks_uri: d.jwks_uri.clone().unwrap_or_default(),
                }
            }
            Ok(None) => Outcome::Failed(
                "discovery endpoint answered 304 but this host holds no metadata".to_string(),
            ),
            Err(e) if d.jwks_uri.is_some() => {
                d.last_error = Some(e.clone());
                // Tried again with the next refresh of the keys.
                d.fresh_until_ms = now_ms + p.min_interval_s() * 1000;
                Outcome::DiscoveryFailedKept(e.clone())
            }
            Err(e) => {
                d.last_error = Some(e.clone());
                Outcome::Failed(e.clone())
            }
        };
        match &outcome {
            Outcome::Failed(e) => fail(s, p, owner, now_ms, e),
            // The JWKS callout follows under the same lease.
            _ if s.lease_owner == owner => {
                s.lease_until_ms = now_ms + p.timeout_ms + LEASE_MARGIN_MS;
            }
            _ => {}
        }
        true
    })?;
    Ok(outcome)
}

/// A failed attempt: the lease back, the error kept, the next attempt after
/// the retry delay (doubling, at least `MIN_RETRY_DELAY_MS`), or, once the
/// retries are spent, after the minimum interval.
fn fail(s: &mut FetchState, p: &Provider, owner: &str, now_ms: u64, error: &str) {
    release(s, owner);
    s.asked_kids.clear();
    s.fetch_failure += 1;
    s.last_error = Some(error.to_string());
    s.last_error_at_ms = now_ms;
    s.attempt += 1;
    if s.attempt <= p.retry_count {
        let factor = 1u64 << (s.attempt - 1).min(16);
        let delay = p.retry_delay_ms.saturating_mul(factor);
        s.next_attempt_ms = now_ms + delay.max(MIN_RETRY_DELAY_MS);
    } else {
        // Retries exhausted: rest, then start a new round.
        s.attempt = 0;
        s.next_attempt_ms = now_ms + p.min_interval_s() * 1000;
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
        s.refresh_at_ms = 0;
        s.next_attempt_ms = 0;
        s.attempt = 0;
        s.etag = None;
        s.last_modified = None;
        s.discovery.fresh_until_ms = 0;
        kid_budget::reset(s);
        s.cleared = true;
        true
    })?;
    Ok(dropped)
}

/// Drops one key for every worker; a request with that `kid` may refetch at
/// once (in full: the validators go too, so the answer cannot be a 304).
/// Returns whether the key was there.
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
        s.etag = None;
        s.last_modified = None;
        kid_budget::reset(s);
        true
    })?;
    Ok(true)
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

    /// An empty store, the names of one key set, and a provider.
    fn setup(extra: &str) -> (MemoryStore, Names, Provider) {
        (MemoryStore::default(), Names::for_uri("u"), provider(extra))
    }

    fn ok_answer(body: &str) -> Answer<'_> {
        Answer {
            status: Some(200),
            body_size: body.len(),
            body: Some(body.as_bytes()),
            ..Answer::default()
        }
    }

    fn good() -> String {
        format!(r#"{{"keys":[{RSA_JWK}]}}"#)
    }

    fn finish(s: &MemoryStore, n: &Names, p: &Provider, now: u64, a: &Answer) -> Outcome {
        let parsed = evaluate(a, p, AlgSet::of(&[Alg::RS256]));
        complete(s, n, p, "me", now, a, parsed).unwrap()
    }

    fn fetch_ok(s: &MemoryStore, n: &Names, p: &Provider, now: u64) -> Outcome {
        let body = good();
        finish(s, n, p, now, &ok_answer(&body))
    }

    fn fail_at(s: &MemoryStore, n: &Names, p: &Provider, now: u64) {
        let r = Err("down".to_string());
        complete(s, n, p, "me", now, &Answer::default(), r).unwrap();
    }

    fn acquire(s: &MemoryStore, n: &Names, p: &Provider, now: u64, t: Trigger) -> Acquire {
        try_acquire(s, n, p, "me", now, t).unwrap()
    }

    #[test]
    fn one_lease_at_a_time_and_a_dead_holder_expires() {
        let (s, n, p) = setup(r#","timeout":2000"#);
        let take = |who, now, t| try_acquire(&s, &n, &p, who, now, t).unwrap();
        assert_eq!(take("a", 1000, Trigger::Scheduled), Acquire::Acquired);
        assert_eq!(take("b", 1001, Trigger::Scheduled), Acquire::Busy);
        assert_eq!(
            take("b", 1001, Trigger::UnknownKid(Some("x"))),
            Acquire::Busy
        );
        // timeout 2000 + margin 1000: at 4000 the lease is gone.
        assert_eq!(take("b", 4000, Trigger::Cold), Acquire::Acquired);
        assert_eq!(read_state(&s, &n).unwrap().lease_owner, "b");
    }

    #[test]
    fn scheduled_refresh_is_due_cold_and_ahead_of_expiry_only() {
        let (s, n, p) = setup(r#","cache_ttl":600,"refresh_ahead_time":60"#);
        assert_eq!(
            acquire(&s, &n, &p, 0, Trigger::Scheduled),
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
            acquire(&s, &n, &p, 539_000, Trigger::Scheduled),
            Acquire::NotDue
        );
        assert_eq!(
            acquire(&s, &n, &p, 540_000, Trigger::Scheduled),
            Acquire::Acquired
        );
    }

    /// Ticks every 100 ms for ten minutes with keys that always arrive, and
    /// counts the scheduled fetches: never more than one per minimum
    /// interval, whatever the configuration and the answer's caching say.
    #[test]
    fn no_configuration_or_answer_makes_the_schedule_hammer() {
        let configs = [
            r#","cache_ttl":300"#,
            r#","cache_ttl":1,"min_refresh_interval":0"#,
            r#","cache_ttl":2,"refresh_ahead_time":1,"min_refresh_interval":1"#,
            r#","cache_ttl":3600,"refresh_ahead_time":3599,"min_refresh_interval":0"#,
            r#","cache_ttl":60,"refresh_ahead_time":59,"min_refresh_interval":30"#,
            r#","cache_ttl":10,"min_refresh_interval":3600"#,
            r#","retry_count":20,"retry_delay":0,"min_refresh_interval":0"#,
        ];
        let body = good();
        for cfg in configs {
            for cc in [
                None,
                Some("no-store"),
                Some("max-age=0"),
                Some("max-age=86400"),
            ] {
                let (s, n, p) = setup(cfg);
                let mut answer = ok_answer(&body);
                answer.cache.cache_control = cc.map(str::to_string);
                let mut fetches = 0u64;
                for tick in 0..6_000u64 {
                    let now = 1_000_000 + tick * 100;
                    if acquire(&s, &n, &p, now, Trigger::Scheduled) == Acquire::Acquired {
                        fetches += 1;
                        finish(&s, &n, &p, now, &answer);
                    }
                }
                let bound = 1 + 600 / p.min_interval_s();
                assert!(
                    fetches <= bound,
                    "{cfg} {cc:?}: {fetches} fetches, bound {bound}"
                );
                assert!(fetches >= 1);
            }
        }
        // The seed's own configuration: one fetch in ten minutes.
        let (s, n, p) = setup("");
        let mut fetches = 0;
        for tick in 0..6_000u64 {
            if acquire(&s, &n, &p, 1 + tick * 100, Trigger::Scheduled) == Acquire::Acquired {
                fetches += 1;
                fetch_ok(&s, &n, &p, 1 + tick * 100);
            }
        }
        assert_eq!(fetches, 1);
    }

    #[test]
    fn failures_back_off_doubling_then_rest() {
        let (s, n, p) = setup(r#","retry_count":2,"retry_delay":1000,"min_refresh_interval":7"#);
        let fail = |now| {
            assert_eq!(
                acquire(&s, &n, &p, now, Trigger::Scheduled),
                Acquire::Acquired,
                "at {now}"
            );
            fail_at(&s, &n, &p, now);
            read_state(&s, &n).unwrap().next_attempt_ms
        };
        assert_eq!(fail(0), 1000);
        assert_eq!(
            acquire(&s, &n, &p, 999, Trigger::Scheduled),
            Acquire::NotDue
        );
        assert_eq!(acquire(&s, &n, &p, 999, Trigger::Cold), Acquire::NotDue);
        assert_eq!(fail(1000), 3000, "second retry waits twice as long");
        assert_eq!(
            fail(3000),
            10_000,
            "retries exhausted: rest min_refresh_interval"
        );
        let st = read_state(&s, &n).unwrap();
        assert_eq!((st.fetch_failure, st.attempt), (3, 0));
        assert_eq!(st.last_error.as_deref(), Some("down"));
    }

    #[test]
    fn retries_are_at_least_a_second_apart() {
        let (s, n, p) = setup(r#","retry_count":3,"retry_delay":0,"min_refresh_interval":0"#);
        fail_at(&s, &n, &p, 0);
        assert_eq!(
            read_state(&s, &n).unwrap().next_attempt_ms,
            MIN_RETRY_DELAY_MS
        );
    }

    #[test]
    fn unknown_kids_spend_a_budget_and_absent_kids_cost_nothing() {
        let (s, n, p) = setup(r#","min_refresh_interval":30"#);
        fetch_ok(&s, &n, &p, 0);
        let ask = |at: u64, kid: &str| acquire(&s, &n, &p, at, Trigger::UnknownKid(Some(kid)));
        let junk = |i: u32| format!("junk-{i}");
        // a handful of junk kids, each refreshed once then known absent
        for i in 0..5 {
            let kid = junk(i);
            let t = 1000 + u64::from(i) * 100;
            assert_eq!(ask(t, &kid), Acquire::Acquired);
            fetch_ok(&s, &n, &p, t + 10);
            assert_eq!(ask(t + 20, &kid), Acquire::KnownAbsent);
        }
        // the rotation's first token still gets its refresh
        assert_eq!(ask(2000, "k1"), Acquire::Acquired);
        fetch_ok(&s, &n, &p, 2010);
        assert_eq!(
            ask(2020, "k1"),
            Acquire::Acquired,
            "a kid the set has is never remembered as absent"
        );
        fetch_ok(&s, &n, &p, 2030);
        // the budget runs out, refills after an interval
        assert_eq!(ask(3000, "j6"), Acquire::Acquired);
        fetch_ok(&s, &n, &p, 3010);
        assert_eq!(ask(3020, "j7"), Acquire::RateLimited);
        assert_eq!(ask(31_020, "j7"), Acquire::Acquired);
        fetch_ok(&s, &n, &p, 31_030);
        // absent for one interval only
        assert_eq!(ask(31_040, "j7"), Acquire::KnownAbsent);
        // a clear gives the budget back
        assert!(clear_kid(&s, &n, "k1").unwrap());
        assert!(!clear_kid(&s, &n, "k1").unwrap(), "already gone");
        assert_eq!(ask(31_050, "j7"), Acquire::Acquired);
    }

    #[test]
    fn kids_waiting_on_a_fetch_are_settled_by_it() {
        let (s, n, p) = setup("");
        fetch_ok(&s, &n, &p, 0);
        assert_eq!(
            acquire(&s, &n, &p, 100, Trigger::UnknownKid(Some("a"))),
            Acquire::Acquired
        );
        let other = try_acquire(&s, &n, &p, "w2", 110, Trigger::UnknownKid(Some("b"))).unwrap();
        assert_eq!(other, Acquire::Busy);
        fetch_ok(&s, &n, &p, 120);
        for kid in ["a", "b"] {
            assert_eq!(
                acquire(&s, &n, &p, 130, Trigger::UnknownKid(Some(kid))),
                Acquire::KnownAbsent,
                "{kid}"
            );
        }
        // a failed fetch proves nothing
        assert_eq!(
            acquire(&s, &n, &p, 140, Trigger::UnknownKid(Some("c"))),
            Acquire::Acquired
        );
        fail_at(&s, &n, &p, 150);
        assert!(read_state(&s, &n)
            .unwrap()
            .absent_kids
            .iter()
            .all(|a| a.tag != kid_budget::tag("c")));
    }

    #[test]
    fn bad_answers_never_evict_good_keys() {
        let (s, n, p) = setup(r#","max_jwks_size":1000"#);
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
            assert!(evaluate(a, &p, AlgSet::of(&[Alg::RS256])).is_err());
            match finish(&s, &n, &p, 10, a) {
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
        let (s, n, p) = setup("");
        fetch_ok(&s, &n, &p, 0);
        fetch_ok(&s, &n, &p, 5);
        assert_eq!(read_gen(&s, &n).unwrap(), 1);
        assert_eq!(read_state(&s, &n).unwrap().fetch_success, 2);
    }

    #[test]
    fn validators_go_back_and_a_304_extends_the_set_without_a_new_generation() {
        let (s, n, p) = setup(r#","cache_ttl":3600,"min_refresh_interval":30"#);
        // no validators on a cold start
        let st = read_state(&s, &n).unwrap();
        let r = next_request(&p, &st, 0).unwrap();
        assert!(!r.headers.iter().any(|(k, _)| k.starts_with("if-")));
        let body = good();
        let mut a = ok_answer(&body);
        a.etag = Some("\"v1\"".into());
        a.last_modified = Some("Sun, 06 Nov 1994 08:49:37 GMT".into());
        a.cache.cache_control = Some("public, max-age=600".into());
        finish(&s, &n, &p, 1_000, &a);
        let st = read_state(&s, &n).unwrap();
        assert_eq!((st.fresh_s(), st.fresh_from.as_str()), (600, "max-age"));
        assert_eq!(st.expires_at_ms, 601_000);
        assert_eq!(st.refresh_at_ms, 1_000 + 300_000);
        let r = next_request(&p, &st, 2_000).unwrap();
        assert!(r
            .headers
            .contains(&("if-none-match".into(), "\"v1\"".into())));
        assert!(r.headers.contains(&(
            "if-modified-since".into(),
            "Sun, 06 Nov 1994 08:49:37 GMT".into()
        )));
        // 304: same generation, new freshness, validators kept
        let not_modified = Answer {
            status: Some(304),
            cache: CacheHeaders {
                cache_control: Some("max-age=120".into()),
                ..CacheHeaders::default()
            },
            ..Answer::default()
        };
        assert_eq!(
            finish(&s, &n, &p, 400_000, &not_modified),
            Outcome::NotModified { gen: 1 }
        );
        assert_eq!(read_gen(&s, &n).unwrap(), 1);
        let st = read_state(&s, &n).unwrap();
        assert_eq!(
            (st.fresh_s(), st.not_modified, st.fetch_success),
            (120, 1, 2)
        );
        assert_eq!(st.etag.as_deref(), Some("\"v1\""));
        assert_eq!(st.fetched_at_ms, 400_000);
        // a clear drops the validators: the refetch gets the whole set
        clear_all(&s, &n).unwrap();
        let st = read_state(&s, &n).unwrap();
        let r = next_request(&p, &st, 500_000).unwrap();
        assert!(!r.headers.iter().any(|(k, _)| k.starts_with("if-")));
        // and a 304 with nothing cached is a failure, not an empty set
        assert!(matches!(
            finish(&s, &n, &p, 500_000, &not_modified),
            Outcome::Failed(_)
        ));
    }

    #[test]
    fn clear_all_empties_for_everyone() {
        let (s, n, p) = setup("");
        fetch_ok(&s, &n, &p, 0);
        assert_eq!(clear_all(&s, &n).unwrap(), 1);
        assert_eq!(layout::read_keys(&s, &n).unwrap().keys.len(), 0);
        assert!(!read_state(&s, &n).unwrap().has_keys());
        // No refetch by itself: the next request that needs keys fetches.
        assert_eq!(acquire(&s, &n, &p, 1, Trigger::Scheduled), Acquire::NotDue);
        assert_eq!(acquire(&s, &n, &p, 1, Trigger::Cold), Acquire::Acquired);
        fetch_ok(&s, &n, &p, 2);
        assert!(!read_state(&s, &n).unwrap().cleared);
        assert_eq!(acquire(&s, &n, &p, 3, Trigger::Scheduled), Acquire::NotDue);
    }

    #[test]
    fn callout_headers_come_from_the_uri() {
        let p = provider("");
        let r = next_request(&p, &FetchState::default(), 0).unwrap();
        assert_eq!((r.doc, r.upstream.as_str()), (Doc::Jwks, "idp:8080"));
        assert!(r.headers.contains(&(":path".into(), "/jwks?v=1".into())));
        assert!(r
            .headers
            .contains(&(":authority".into(), "idp:8080".into())));
        assert!(r.headers.contains(&(":method".into(), "GET".into())));
    }

    fn discovery_provider(extra: &str) -> Provider {
        Config::parse(
            format!(
                r#"{{"discovery_uri":"https://idp/realms/a/.well-known/openid-configuration",
                    "issuers":["https://idp/realms/a"]{extra}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
        .providers
        .remove(0)
    }

    #[test]
    fn discovery_names_the_jwks_then_the_jwks_is_fetched_under_the_same_lease() {
        let s = MemoryStore::default();
        let p = discovery_provider(r#","timeout":2000"#);
        let n = Names::for_uri(p.key_set_uri().unwrap());
        assert_eq!(
            acquire(&s, &n, &p, 0, Trigger::Scheduled),
            Acquire::Acquired
        );
        let r = next_request(&p, &read_state(&s, &n).unwrap(), 0).unwrap();
        assert_eq!((r.doc, r.upstream.as_str()), (Doc::Discovery, "idp"));
        assert!(r.headers.contains(&(
            ":path".into(),
            "/realms/a/.well-known/openid-configuration".into()
        )));
        let meta = r#"{"issuer":"https://idp/realms/a","jwks_uri":"http://keys:8081/certs"}"#;
        let mut a = ok_answer(meta);
        a.etag = Some("m1".into());
        let o = complete_discovery(&s, &n, &p, "me", 1500, &a).unwrap();
        assert!(o.follow_up(), "{o:?}");
        let st = read_state(&s, &n).unwrap();
        assert_eq!(st.lease_owner, "me");
        assert_eq!(st.lease_until_ms, 1500 + 2000 + LEASE_MARGIN_MS);
        let r = next_request(&p, &st, 1600).unwrap();
        assert_eq!((r.doc, r.upstream.as_str()), (Doc::Jwks, "keys:8081"));
        assert!(r.headers.contains(&(":path".into(), "/certs".into())));
        fetch_ok(&s, &n, &p, 1700);
        let st = read_state(&s, &n).unwrap();
        assert!(st.has_keys() && st.lease_owner.is_empty());
        // the metadata is fresh: an unknown kid fetches the JWKS alone
        assert_eq!(next_request(&p, &st, 60_000).unwrap().doc, Doc::Jwks);
        // once stale, the metadata comes first again, with its validator
        let r = next_request(&p, &st, 1500 + 3_600_000).unwrap();
        assert_eq!(r.doc, Doc::Discovery);
        assert!(r.headers.contains(&("if-none-match".into(), "m1".into())));
    }

    #[test]
    fn metadata_of_another_issuer_is_refused_and_an_earlier_jwks_uri_kept() {
        let s = MemoryStore::default();
        let p = discovery_provider(r#","jwks_upstream":"keys-cluster","retry_count":0"#);
        let n = Names::for_uri(p.key_set_uri().unwrap());
        let evil = r#"{"issuer":"https://evil","jwks_uri":"http://evil/certs"}"#;
        acquire(&s, &n, &p, 0, Trigger::Cold);
        let o = complete_discovery(&s, &n, &p, "me", 10, &ok_answer(evil)).unwrap();
        let Outcome::Failed(e) = o else {
            panic!("{o:?}")
        };
        assert!(e.contains("issuer"), "{e}");
        let st = read_state(&s, &n).unwrap();
        assert!(st.lease_owner.is_empty() && st.next_attempt_ms > 10);
        assert_eq!(st.discovery.last_error.as_deref(), Some(e.as_str()));
        assert_eq!(st.discovery.jwks_uri, None);
        // good metadata, keys; then a bad document later keeps the old jwks_uri
        let meta = r#"{"issuer":"https://idp/realms/a","jwks_uri":"https://idp/certs"}"#;
        acquire(&s, &n, &p, 40_000, Trigger::Cold);
        complete_discovery(&s, &n, &p, "me", 40_010, &ok_answer(meta)).unwrap();
        let r = next_request(&p, &read_state(&s, &n).unwrap(), 40_020).unwrap();
        assert_eq!(
            r.upstream, "keys-cluster",
            "jwks_upstream names the JWKS callout's upstream"
        );
        fetch_ok(&s, &n, &p, 40_030);
        let o = complete_discovery(&s, &n, &p, "me", 9_000_000, &ok_answer(evil)).unwrap();
        assert!(matches!(o, Outcome::DiscoveryFailedKept(_)), "{o:?}");
        let st = read_state(&s, &n).unwrap();
        assert_eq!(st.discovery.jwks_uri.as_deref(), Some("https://idp/certs"));
        assert_eq!(next_request(&p, &st, 9_000_001).unwrap().doc, Doc::Jwks);
    }
}
