//! The shared-data layout: what every worker sees of one JWKS.
//!
//! Entries per key set, under `jwt_jwks/v2/<uri>/<settings>/`, where
//! `<settings>` is a digest of every setting that shapes the set or its
//! schedule ([`Names::for_provider`]): a configuration update that keeps
//! them finds the set in place and fetches nothing; one that changes them
//! gets a set of its own, fetched at once.
//! - `gen`: a decimal generation, bumped whenever the key set changes.
//! - `gen/<N>`: a marker written once generation N is in place. A worker at
//!   generation N looks up `gen/<N+1>` on every request: while it is absent
//!   (the usual answer) the host copies nothing into the VM, which costs far
//!   less than reading `gen` itself. So a clear or a new key set is still
//!   seen by every worker on its next request. Markers are never removed
//!   (the ABI cannot): a few dozen bytes per key-set change. Each worker's
//!   tick also reads `gen` itself, in case a marker could not be written.
//! - `keys`: `{"gen":N,"keys":[<accepted JWKs>]}`, re-parsed once per worker
//!   per generation.
//! - `state`: the fetch state (lease, timings, counters, last error), small
//!   JSON updated by compare-and-swap.
//!
//! Every write passes the `cas` read with the value (Kong's host refuses a
//! write without it on an existing key); conflicts are retried.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Provider;
use crate::crypto::alg::AlgSet;
use crate::store::{SharedStore, StoreError};

/// How many times a compare-and-swap is retried before giving up.
const CAS_ATTEMPTS: usize = 16;

/// The entry names of one JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    base: String,
    pub gen: String,
    pub keys: String,
    pub state: String,
}

impl Names {
    /// The entries of a provider's key set (`uri`: its `jwks_uri` or
    /// `discovery_uri`) read with the global `allowed` algorithms.
    pub fn for_provider(uri: &str, p: &Provider, allowed: AlgSet) -> Names {
        Names::for_uri(&format!("{uri}/{}", settings_tag(p, allowed)))
    }

    /// The entries under `jwt_jwks/v2/<name>/`.
    pub fn for_uri(name: &str) -> Names {
        let base = format!("jwt_jwks/v2/{name}/");
        Names {
            gen: format!("{base}gen"),
            keys: format!("{base}keys"),
            state: format!("{base}state"),
            base,
        }
    }

    /// The marker that generation `gen` is in place.
    pub fn marker(&self, gen: u64) -> String {
        format!("{}gen/{gen}", self.base)
    }
}

/// 16 hex digits of SHA-256 over the settings that decide what a key set
/// holds (where it comes from, which keys are accepted, how big it may be)
/// and when it is fetched. The claims policy, rules and forwarding are left
/// out: they change nothing in the set.
pub fn settings_tag(p: &Provider, allowed: AlgSet) -> String {
    let endpoint = |e: &Option<crate::config::Endpoint>| e.as_ref().map(|e| e.uri.clone());
    let discovery_issuers = match p.discovery {
        Some(_) => p.claims.issuers.join(" "),
        None => String::new(),
    };
    let settings = serde_json::json!([
        endpoint(&p.jwks),
        p.upstream,
        endpoint(&p.discovery),
        p.discovery_upstream,
        discovery_issuers,
        allowed.iter().map(|a| a.name()).collect::<Vec<_>>(),
        p.require_jwk_alg,
        p.max_cache_size,
        p.max_jwks_size,
        p.cache_ttl_s,
        p.refresh_ahead_s,
        p.min_refresh_interval_s,
        p.retry_count,
        p.retry_delay_ms,
        p.timeout_ms,
    ]);
    let digest = hmac_sha256::Hash::hash(settings.to_string().as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The settings tag of a provider's introspection cache: its key-set tag
/// (phantom JWTs are verified with those keys) and every introspection
/// setting that shapes a result. The secret is not in it.
pub fn introspection_tag(
    p: &Provider,
    s: &crate::config::IntrospectionSettings,
    allowed: AlgSet,
) -> String {
    let mode = match &s.mode {
        crate::config::introspection::Mode::Introspection(f) => format!("introspection {f:?}"),
        crate::config::introspection::Mode::TokenExchange { audience, scope } => format!(
            "token_exchange {} {}",
            audience.as_deref().unwrap_or("-"),
            scope.as_deref().unwrap_or("-")
        ),
    };
    let settings = [
        p.name.as_str(),
        &settings_tag(p, allowed),
        s.endpoint.as_ref().map_or("-", |e| e.uri.as_str()),
        s.upstream.as_deref().unwrap_or("-"),
        &s.client_id,
        &mode,
        s.jwt_member.as_deref().unwrap_or("-"),
        &format!(
            "{} {} {}",
            s.cache_ttl_s, s.negative_cache_ttl_s, s.max_entries
        ),
    ]
    .join("\n");
    let digest = hmac_sha256::Hash::hash(settings.to_string().as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A key left out of the last good fetch, for `cache/info`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedKey {
    pub kid: Option<String>,
    pub reason: String,
}

/// The fetch state shared by all workers for one JWKS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FetchState {
    /// Who holds the refresh lease, and until when (ms since the epoch).
    pub lease_owner: String,
    pub lease_until_ms: u64,
    /// When the current key set was fetched and when it goes stale; 0 when
    /// there is none (cold start or after a clear).
    pub fetched_at_ms: u64,
    pub expires_at_ms: u64,
    /// When the next scheduled fetch is due (see `keys::freshness`).
    pub refresh_at_ms: u64,
    /// What set the current set's freshness (see [`FetchState::fresh_s`]).
    pub fresh_from: String,
    /// The current set's validators, sent back as `If-None-Match` and
    /// `If-Modified-Since`.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Retry bookkeeping.
    pub next_attempt_ms: u64,
    pub attempt: u32,
    /// The unknown-`kid` refresh budget and the `kid`s proved absent (see
    /// `keys::kid_budget`).
    pub kid_tokens: u32,
    pub kid_refill_ms: u64,
    pub asked_kids: Vec<String>,
    pub absent_kids: Vec<AbsentKid>,
    pub fetch_success: u64,
    pub fetch_failure: u64,
    /// Answers `304 Not Modified` (counted in `fetch_success` too).
    pub not_modified: u64,
    pub last_error: Option<String>,
    pub last_error_at_ms: u64,
    /// When a fetch last succeeded (a clear keeps it): an error older than
    /// this is history, not the current state.
    pub last_success_ms: u64,
    pub skipped: Vec<SkippedKey>,
    /// Set by an admin clear: no scheduled refetch until a request needs
    /// keys (the next request fetches, as on a cold start).
    pub cleared: bool,
    /// OpenID Provider metadata, for a provider with `discovery_uri`.
    pub discovery: DiscoveryState,
}

/// A `kid` a refresh proved absent, until when.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbsentKid {
    pub tag: String,
    pub until_ms: u64,
}

/// What the last metadata fetch found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiscoveryState {
    /// The `jwks_uri` it named (kept when a later fetch fails).
    pub jwks_uri: Option<String>,
    pub issuer: Option<String>,
    pub introspection_endpoint: Option<String>,
    pub fetched_at_ms: u64,
    /// Fetched again with the keys once this has passed.
    pub fresh_until_ms: u64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub last_error: Option<String>,
}

impl FetchState {
    pub fn lease_held(&self, now_ms: u64) -> bool {
        !self.lease_owner.is_empty() && self.lease_until_ms > now_ms
    }

    /// Takes the fetch lease for `owner` until `until_ms`.
    pub fn take_lease(&mut self, owner: &str, until_ms: u64) {
        self.lease_owner = owner.to_string();
        self.lease_until_ms = until_ms;
    }

    /// Records a failed attempt: the next one waits `first_ms`, doubling
    /// with each failure in a row, at most `max_ms`.
    pub fn back_off(&mut self, now_ms: u64, first_ms: u64, max_ms: u64) {
        let delay = first_ms
            .saturating_mul(1 << self.attempt.min(20))
            .min(max_ms);
        self.attempt = self.attempt.saturating_add(1);
        self.next_attempt_ms = now_ms + delay;
    }

    pub fn has_keys(&self) -> bool {
        self.expires_at_ms != 0
    }

    /// The freshness of the current set, in seconds.
    pub fn fresh_s(&self) -> u64 {
        self.expires_at_ms.saturating_sub(self.fetched_at_ms) / 1000
    }
}

/// A worker's view of one shared record's generation, kept in step by its
/// markers: while the next generation's marker is absent (one lookup that
/// copies nothing into the VM), the generation has not moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generation {
    pub gen: u64,
    next: String,
    loaded: bool,
}

impl Generation {
    /// Re-reads the generation if it may have moved (`full`: read it
    /// whatever the marker says); `true` when it changed, or was read for
    /// the first time.
    pub fn sync(
        &mut self,
        store: &dyn SharedStore,
        names: &Names,
        full: bool,
    ) -> Result<bool, StoreError> {
        if self.loaded && !full && !has_marker(store, &self.next)? {
            return Ok(false);
        }
        let gen = read_gen(store, names)?;
        if self.loaded && gen == self.gen {
            return Ok(false);
        }
        self.gen = gen;
        self.next = names.marker(gen + 1);
        self.loaded = true;
        Ok(true)
    }
}

/// The shared key set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeysRecord {
    pub gen: u64,
    pub keys: Vec<Value>,
}

fn parse_u64(bytes: Option<Vec<u8>>) -> u64 {
    bytes
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether the marker `name` (see [`Names::marker`]) exists.
pub fn has_marker(store: &dyn SharedStore, name: &str) -> Result<bool, StoreError> {
    Ok(store.get(name)?.0.is_some())
}

/// The current generation (0 before anything was stored).
pub fn read_gen(store: &dyn SharedStore, names: &Names) -> Result<u64, StoreError> {
    Ok(parse_u64(store.get(&names.gen)?.0))
}

pub fn read_state(store: &dyn SharedStore, names: &Names) -> Result<FetchState, StoreError> {
    Ok(read_state_cas(store, names)?.0)
}

fn read_state_cas(store: &dyn SharedStore, names: &Names) -> Result<(FetchState, u32), StoreError> {
    let (bytes, cas) = store.get(&names.state)?;
    let state = bytes
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    Ok((state, cas))
}

/// Writes an empty state when there is none, so that every later write of
/// it carries a `cas`. A write with `cas` 0 is a true "create if absent" on
/// Kong's host but an unconditional write on Envoy's: two workers that both
/// found no state would both take the refresh lease. So the state is
/// created once, up front (Envoy configures the filter on its main thread
/// before the workers), and a lease is only ever taken by compare-and-swap.
pub fn ensure_state(store: &dyn SharedStore, names: &Names) -> Result<(), StoreError> {
    if store.get(&names.state)?.0.is_some() {
        return Ok(());
    }
    let empty =
        serde_json::to_vec(&FetchState::default()).map_err(|e| StoreError::Host(e.to_string()))?;
    match store.set(&names.state, &empty, 0) {
        Ok(()) | Err(StoreError::CasMismatch) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Read-modify-write of the state. `f` returns `false` to leave it as is.
/// Returns the state as written (or as found, when `f` declined).
pub fn update_state(
    store: &dyn SharedStore,
    names: &Names,
    mut f: impl FnMut(&mut FetchState) -> bool,
) -> Result<(FetchState, bool), StoreError> {
    for _ in 0..CAS_ATTEMPTS {
        let (mut state, cas) = read_state_cas(store, names)?;
        if cas == 0 {
            // No state yet: create it, then change it by compare-and-swap.
            ensure_state(store, names)?;
            continue;
        }
        if !f(&mut state) {
            return Ok((state, false));
        }
        let bytes = serde_json::to_vec(&state).map_err(|e| StoreError::Host(e.to_string()))?;
        match store.set(&names.state, &bytes, cas) {
            Ok(()) => return Ok((state, true)),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::CasMismatch)
}

pub fn read_keys(store: &dyn SharedStore, names: &Names) -> Result<KeysRecord, StoreError> {
    let (bytes, _) = store.get(&names.keys)?;
    Ok(bytes
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default())
}

/// Replaces the key set and bumps the generation; returns the new one.
pub fn write_keys(
    store: &dyn SharedStore,
    names: &Names,
    keys: Vec<Value>,
) -> Result<u64, StoreError> {
    store_list(store, names, |_| Some(keys.clone())).map(|(gen, _)| gen)
}

/// Read-modify-write of the list under `names.keys` (a key set, or any
/// list of JSON values kept the same way): `f` edits the current list and
/// returns whether to write it. A write bumps the generation. Returns the
/// generation and whether it wrote.
pub fn update_keys(
    store: &dyn SharedStore,
    names: &Names,
    mut f: impl FnMut(&mut Vec<Value>) -> bool,
) -> Result<(u64, bool), StoreError> {
    store_list(store, names, |bytes| {
        let mut list = bytes
            .and_then(|b| serde_json::from_slice::<KeysRecord>(b).ok())
            .map(|r| r.keys)
            .unwrap_or_default();
        f(&mut list).then_some(list)
    })
}

/// Writes the list `f` makes of the stored record's bytes (`None`: leave
/// it), by compare-and-swap, and bumps the generation.
fn store_list(
    store: &dyn SharedStore,
    names: &Names,
    mut f: impl FnMut(Option<&[u8]>) -> Option<Vec<Value>>,
) -> Result<(u64, bool), StoreError> {
    store_record(store, names, |bytes, gen| {
        let Some(list) = f(bytes) else {
            return Ok(None);
        };
        let record = KeysRecord { gen, keys: list };
        serde_json::to_vec(&record)
            .map(Some)
            .map_err(|e| StoreError::Host(e.to_string()))
    })
}

/// The lowest level of [`store_list`]: `f` gets the stored record's bytes
/// and the generation the new record will have, and returns the record to
/// write (`None`: leave it). The record must be `{"gen": N, "keys": [...]}`
/// (what [`read_keys`] reads).
pub fn store_record(
    store: &dyn SharedStore,
    names: &Names,
    mut f: impl FnMut(Option<&[u8]>, u64) -> Result<Option<Vec<u8>>, StoreError>,
) -> Result<(u64, bool), StoreError> {
    for _ in 0..CAS_ATTEMPTS {
        let (gen_bytes, gen_cas) = store.get(&names.gen)?;
        let current = parse_u64(gen_bytes);
        let (bytes, keys_cas) = store.get(&names.keys)?;
        let gen = current + 1;
        let Some(bytes) = f(bytes.as_deref(), gen)? else {
            return Ok((current, false));
        };
        match store.set(&names.keys, &bytes, keys_cas) {
            Ok(()) => {}
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
        match store.set(&names.gen, gen.to_string().as_bytes(), gen_cas) {
            Ok(()) => {
                // A marker already there is as good as a new one. Failing to
                // write it only delays the other workers to their next tick.
                match store.set(&names.marker(gen), b"1", 0) {
                    Ok(()) | Err(StoreError::CasMismatch) => {}
                    Err(e) => log::warn!("jwt_jwks: marking generation {gen} failed: {e}"),
                }
                return Ok((gen, true));
            }
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::CasMismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    /// Envoy's shared data: a write with `cas` 0 replaces whatever is there.
    #[derive(Default)]
    struct EnvoyStore(RefCell<HashMap<String, (Vec<u8>, u32)>>, Cell<u32>);

    impl SharedStore for EnvoyStore {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), StoreError> {
            Ok(match self.0.borrow().get(key) {
                Some((v, cas)) => (Some(v.clone()), *cas),
                None => (None, 0),
            })
        }
        fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
            let mut map = self.0.borrow_mut();
            if cas != 0 && map.get(key).map(|e| e.1) != Some(cas) {
                return Err(StoreError::CasMismatch);
            }
            self.1.set(self.1.get() + 1);
            map.insert(key.to_string(), (value.to_vec(), self.1.get()));
            Ok(())
        }
    }

    /// What another worker does between this one's read and write.
    type Other<'a> = RefCell<Option<Box<dyn FnOnce(&EnvoyStore) + 'a>>>;

    /// A store that lets `other` run right after this worker's first read,
    /// so that the read is stale by the time the worker writes.
    struct Interleaved<'a> {
        inner: &'a EnvoyStore,
        other: Other<'a>,
    }

    impl SharedStore for Interleaved<'_> {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), StoreError> {
            let r = self.inner.get(key);
            if let Some(f) = self.other.borrow_mut().take() {
                f(self.inner);
            }
            r
        }
        fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
            self.inner.set(key, value, cas)
        }
    }

    fn take_lease(store: &dyn SharedStore, n: &Names, owner: &str) -> bool {
        update_state(store, n, |s| {
            if !s.lease_owner.is_empty() {
                return false;
            }
            s.lease_owner = owner.into();
            true
        })
        .unwrap()
        .1
    }

    #[test]
    fn on_envoy_two_workers_racing_for_a_new_state_get_one_lease() {
        let n = Names::for_uri("u");
        let envoy = EnvoyStore::default();
        // B reads "no state"; A takes the lease in between; B writes.
        let a_won = Cell::new(false);
        let b = Interleaved {
            inner: &envoy,
            other: RefCell::new(Some(Box::new(|s: &EnvoyStore| {
                a_won.set(take_lease(s, &n, "a"));
            }))),
        };
        let b_won = take_lease(&b, &n, "b");
        assert!(a_won.get());
        assert!(!b_won, "B's stale read of an absent state cost A its lease");
        assert_eq!(read_state(&envoy, &n).unwrap().lease_owner, "a");
    }

    #[test]
    fn ensure_state_creates_once_and_never_overwrites() {
        let n = Names::for_uri("u");
        let envoy = EnvoyStore::default();
        ensure_state(&envoy, &n).unwrap();
        assert!(take_lease(&envoy, &n, "a"));
        ensure_state(&envoy, &n).unwrap();
        assert_eq!(read_state(&envoy, &n).unwrap().lease_owner, "a");
        assert!(!take_lease(&envoy, &n, "b"));
    }

    #[test]
    fn each_generation_leaves_a_marker_and_only_its_own() {
        let s = MemoryStore::default();
        let n = Names::for_uri("http://idp/jwks");
        assert!(!has_marker(&s, &n.marker(1)).unwrap());
        assert_eq!(write_keys(&s, &n, vec![]).unwrap(), 1);
        assert!(has_marker(&s, &n.marker(1)).unwrap());
        assert!(!has_marker(&s, &n.marker(2)).unwrap());
        assert_eq!(write_keys(&s, &n, vec![]).unwrap(), 2);
        assert!(has_marker(&s, &n.marker(2)).unwrap());
        assert_ne!(
            n.marker(2),
            Names::for_uri("http://other/jwks").marker(2),
            "markers are per JWKS URI"
        );
    }

    #[test]
    fn memory_store_is_strict_about_cas() {
        let s = MemoryStore::default();
        s.set("k", b"1", 0).unwrap();
        let (_, cas) = s.get("k").unwrap();
        assert_eq!(s.set("k", b"2", 0), Err(StoreError::CasMismatch));
        assert_eq!(s.set("k", b"2", cas + 1), Err(StoreError::CasMismatch));
        s.set("k", b"2", cas).unwrap();
        assert_eq!(s.get("k").unwrap().0.as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn writing_keys_bumps_the_generation() {
        let s = MemoryStore::default();
        let n = Names::for_uri("http://idp/jwks");
        assert_eq!(read_gen(&s, &n).unwrap(), 0);
        assert_eq!(
            write_keys(&s, &n, vec![serde_json::json!({"kid":"a"})]).unwrap(),
            1
        );
        assert_eq!(write_keys(&s, &n, vec![]).unwrap(), 2);
        assert_eq!(read_gen(&s, &n).unwrap(), 2);
        let rec = read_keys(&s, &n).unwrap();
        assert_eq!((rec.gen, rec.keys.len()), (2, 0));
    }

    #[test]
    fn state_updates_are_read_modify_write() {
        let s = MemoryStore::default();
        let n = Names::for_uri("u");
        update_state(&s, &n, |st| {
            st.fetch_success += 1;
            true
        })
        .unwrap();
        let (st, written) = update_state(&s, &n, |st| {
            st.fetch_success += 1;
            true
        })
        .unwrap();
        assert!(written);
        assert_eq!(st.fetch_success, 2);
        let (_, written) = update_state(&s, &n, |_| false).unwrap();
        assert!(!written);
        assert_eq!(read_state(&s, &n).unwrap().fetch_success, 2);
    }

    #[test]
    fn a_garbled_state_reads_as_empty_and_is_overwritten() {
        let s = MemoryStore::default();
        let n = Names::for_uri("u");
        s.set(&n.state, b"{not json", 0).unwrap();
        assert_eq!(read_state(&s, &n).unwrap(), FetchState::default());
        update_state(&s, &n, |st| {
            st.attempt = 1;
            true
        })
        .unwrap();
        assert_eq!(read_state(&s, &n).unwrap().attempt, 1);
    }
}
