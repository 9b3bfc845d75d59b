//! The shared result cache of one provider's introspection: in proxy-wasm
//! shared data, so every worker of a host sees every answer.
//!
//! - **Keys.** A token is known by 16 bytes of SHA-256 over the settings
//!   tag and the token: never the token itself, and never shared between
//!   providers or settings (a verdict of a lenient provider is not one of a
//!   strict one). Its slot is that digest modulo `max_entries`: a fixed
//!   table of `max_entries` shared-data entries
//!   (`jwt_jwks/v2/introspect/<tag>/s/<n>`), so the number of entries is
//!   bounded whatever the traffic (Envoy's shared data never evicts
//!   anything). A new token in an occupied slot replaces what was there.
//! - **Entries.** Pending (a call under way, its owner and lease), active
//!   (claims or a verified phantom JWT, until when), inactive (until when:
//!   `negative_cache_ttl`), or failed (no call until when: transport
//!   errors are never a verdict, only a back-off).
//! - **Epoch.** A clear bumps the generation under
//!   `jwt_jwks/v2/introspect/<tag>/`; entries of an older epoch are misses.
//! - **Sweep.** Each tick, the worker holding the sweep lease empties the
//!   expired entries of the next [`SWEEP_SLOTS`] slots (a value of zero
//!   bytes: the proxy-wasm ABI cannot delete a key), so memory follows
//!   the live entries and a full pass over 100,000 slots takes under 2
//!   minutes.
#![forbid(unsafe_code)]

use serde_json::{json, Value};

use crate::keys::layout::{self, Names};
use crate::store::{SharedStore, StoreError};

/// Slots looked at by one sweep step (one step per second per host).
pub const SWEEP_SLOTS: u64 = 1000;
/// How often a sweep step runs (per host).
const SWEEP_EVERY_MS: u64 = 1000;
/// The back-off after a failed call: the first, and the longest.
const BACKOFF_FIRST_MS: u64 = 1000;
pub const BACKOFF_MAX_MS: u64 = 30_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Active,
    Inactive,
    /// A call failed: 503 (`unavailable`) or 502 until `until_ms`.
    Failed,
}

/// One slot's entry (stored as a small JSON object; read and written
/// through `Value`, whose code the filter has anyway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The token's digest (hex).
    pub d: String,
    /// The epoch it belongs to.
    pub e: u64,
    pub st: State,
    /// Pending: the lease's end; else: served (or backed off) until.
    pub until_ms: u64,
    pub owner: Option<String>,
    /// Active: RFC 7662 claims (JSON object text), when no JWT.
    pub claims: Option<String>,
    /// Active: the verified phantom JWT.
    pub jwt: Option<String>,
    /// Failed: the refusal's kind (`unavailable`, `status`, ...).
    pub kind: Option<String>,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Active => "active",
            State::Inactive => "inactive",
            State::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<State> {
        [
            State::Pending,
            State::Active,
            State::Inactive,
            State::Failed,
        ]
        .into_iter()
        .find(|x| x.name() == s)
    }
}

impl Entry {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v =
            json!({"d": self.d, "e": self.e, "st": self.st.name(), "until_ms": self.until_ms});
        for (k, x) in [
            ("owner", &self.owner),
            ("claims", &self.claims),
            ("jwt", &self.jwt),
            ("kind", &self.kind),
        ] {
            if let (Some(x), Some(o)) = (x, v.as_object_mut()) {
                o.insert(k.to_string(), Value::String(x.clone()));
            }
        }
        v.to_string().into_bytes()
    }

    pub fn from_bytes(b: &[u8]) -> Option<Entry> {
        let v: Value = serde_json::from_slice(b).ok()?;
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Some(Entry {
            d: text("d")?,
            e: v.get("e")?.as_u64()?,
            st: State::parse(v.get("st")?.as_str()?)?,
            until_ms: v.get("until_ms")?.as_u64()?,
            owner: text("owner"),
            claims: text("claims"),
            jwt: text("jwt"),
            kind: text("kind"),
        })
    }
}

/// The shared names of one provider's cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    pub names: Names,
    prefix: String,
    pub slots: u64,
}

/// What a token's slot holds for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Miss,
    Found(Entry),
}

impl Cache {
    /// `tag`: a digest of the provider's settings that decide a verdict.
    pub fn new(tag: &str, slots: usize) -> Cache {
        let names = Names::for_uri(&format!("introspect/{tag}"));
        Cache {
            prefix: format!("jwt_jwks/v2/introspect/{tag}/s/"),
            names,
            slots: slots.max(1) as u64,
        }
    }

    /// The token's digest (hex) and slot key.
    pub fn locate(&self, token: &str) -> (String, String) {
        let mut h = hmac_sha256::Hash::new();
        h.update(self.prefix.as_bytes());
        h.update(token.as_bytes());
        let d = h.finalize();
        let n = u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
        (hex, self.slot_key(n % self.slots))
    }

    fn slot_key(&self, n: u64) -> String {
        format!("{}{n}", self.prefix)
    }

    /// Creates every slot, empty, if absent (Envoy: on its main thread, at
    /// configure time, so that every later write is a compare-and-swap;
    /// see `layout::ensure_state`).
    pub fn prepare(&self, store: &dyn SharedStore) -> Result<(), StoreError> {
        layout::ensure_state(store, &self.names)?;
        for n in 0..self.slots {
            let key = self.slot_key(n);
            if store.get(&key)?.0.is_none() {
                match store.set(&key, b"", 0) {
                    Ok(()) | Err(StoreError::CasMismatch) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// The current epoch.
    pub fn epoch(&self, store: &dyn SharedStore) -> Result<u64, StoreError> {
        layout::read_gen(store, &self.names)
    }

    /// Voids every entry (a new epoch).
    pub fn clear(&self, store: &dyn SharedStore) -> Result<u64, StoreError> {
        layout::store_record(store, &self.names, |_, gen| {
            Ok(Some(gen.to_string().into_bytes()))
        })
        .map(|(gen, _)| gen)
    }

    /// What the slot holds for this digest and epoch (and the slot's cas).
    fn read(
        &self,
        store: &dyn SharedStore,
        key: &str,
        digest: &str,
        epoch: u64,
    ) -> Result<(Lookup, u32), StoreError> {
        let (bytes, cas) = store.get(key)?;
        let entry = bytes
            .filter(|b| !b.is_empty())
            .and_then(|b| Entry::from_bytes(&b))
            .filter(|e| e.d == digest && e.e == epoch);
        Ok((entry.map_or(Lookup::Miss, Lookup::Found), cas))
    }

    pub fn lookup(
        &self,
        store: &dyn SharedStore,
        key: &str,
        digest: &str,
        epoch: u64,
    ) -> Result<Lookup, StoreError> {
        Ok(self.read(store, key, digest, epoch)?.0)
    }

    /// Takes the call for a token whose slot holds nothing usable for it
    /// at `now_ms`: `true` when the caller must now send it.
    #[allow(clippy::too_many_arguments)]
    pub fn lease(
        &self,
        store: &dyn SharedStore,
        key: &str,
        digest: &str,
        epoch: u64,
        owner: &str,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        for _ in 0..8 {
            let (found, cas) = self.read(store, key, digest, epoch)?;
            if let Lookup::Found(e) = &found {
                if now_ms < e.until_ms {
                    return Ok(false); // pending, known, or backed off
                }
            }
            let entry = Entry {
                d: digest.to_string(),
                e: epoch,
                st: State::Pending,
                until_ms: now_ms + lease_ms,
                owner: Some(owner.to_string()),
                claims: None,
                jwt: None,
                kind: None,
            };
            let bytes = entry.to_bytes();
            match store.set(key, &bytes, cas) {
                Ok(()) => return Ok(true),
                Err(StoreError::CasMismatch) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Writes a call's result for the token (`None`: nothing to keep, the
    /// slot is emptied if it still holds the token's lease).
    pub fn store(
        &self,
        store: &dyn SharedStore,
        key: &str,
        digest: &str,
        epoch: u64,
        entry: Option<Entry>,
    ) -> Result<(), StoreError> {
        for _ in 0..8 {
            let (found, cas) = self.read(store, key, digest, epoch)?;
            let bytes = match &entry {
                Some(e) => e.to_bytes(),
                None if matches!(found, Lookup::Found(ref e) if e.st == State::Pending) => {
                    Vec::new()
                }
                None => return Ok(()),
            };
            match store.set(key, &bytes, cas) {
                Ok(()) => return Ok(()),
                Err(StoreError::CasMismatch) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::CasMismatch)
    }

    /// The provider-wide back-off after failed calls: until when no call
    /// is made (ms).
    pub fn backoff_until(&self, store: &dyn SharedStore) -> u64 {
        layout::read_state(store, &self.names).map_or(0, |s| s.next_attempt_ms)
    }

    /// Records a call's success or failure for the provider-wide back-off
    /// (1, 2, 4 ... seconds after consecutive transport failures, at most
    /// [`BACKOFF_MAX_MS`]); returns the failure's back-off end.
    pub fn record(
        &self,
        store: &dyn SharedStore,
        ok: bool,
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        let (s, _) = layout::update_state(store, &self.names, |s| {
            if ok {
                if s.attempt == 0 {
                    return false;
                }
                s.attempt = 0;
                s.next_attempt_ms = 0;
            } else {
                s.back_off(now_ms, BACKOFF_FIRST_MS, BACKOFF_MAX_MS);
            }
            true
        })?;
        Ok(s.next_attempt_ms)
    }

    /// One sweep step, when due and this worker takes it: empties expired
    /// or stale-epoch entries of the next [`SWEEP_SLOTS`] slots. Returns
    /// how many it emptied.
    pub fn sweep(
        &self,
        store: &dyn SharedStore,
        owner: &str,
        now_ms: u64,
    ) -> Result<usize, StoreError> {
        let mut from = 0;
        let (_, took) = layout::update_state(store, &self.names, |s| {
            if now_ms < s.refresh_at_ms {
                return false;
            }
            s.refresh_at_ms = now_ms + SWEEP_EVERY_MS;
            s.lease_owner = owner.to_string();
            from = s.fetch_success % self.slots;
            s.fetch_success = (from + SWEEP_SLOTS) % self.slots;
            true
        })?;
        if !took {
            return Ok(0);
        }
        let epoch = self.epoch(store)?;
        let mut emptied = 0;
        for i in 0..SWEEP_SLOTS.min(self.slots) {
            let key = self.slot_key((from + i) % self.slots);
            let (bytes, cas) = store.get(&key)?;
            let Some(b) = bytes.filter(|b| !b.is_empty()) else {
                continue;
            };
            let dead = Entry::from_bytes(&b).is_none_or(|e| e.e != epoch || now_ms >= e.until_ms);
            if dead && store.set(&key, b"", cas).is_ok() {
                emptied += 1;
            }
        }
        Ok(emptied)
    }

    /// Live entries and their bytes (for `cache/info`: reads every slot).
    pub fn census(&self, store: &dyn SharedStore, now_ms: u64) -> (usize, usize) {
        let epoch = self.epoch(store).unwrap_or(0);
        let (mut n, mut bytes) = (0, 0);
        for i in 0..self.slots {
            if let Ok((Some(b), _)) = store.get(&self.slot_key(i)) {
                let live =
                    Entry::from_bytes(&b).is_some_and(|e| e.e == epoch && now_ms < e.until_ms);
                if live {
                    n += 1;
                    bytes += b.len();
                }
            }
        }
        (n, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn active(d: &str, e: u64, until_ms: u64) -> Entry {
        Entry {
            d: d.into(),
            e,
            st: State::Active,
            until_ms,
            owner: None,
            claims: Some("{}".into()),
            jwt: None,
            kind: None,
        }
    }

    #[test]
    fn digests_are_scoped_and_slots_bounded() {
        let (a, b) = (Cache::new("tag-a", 16), Cache::new("tag-b", 16));
        let (da, ka) = a.locate("opaque-1");
        let (db, _) = b.locate("opaque-1");
        assert_ne!(da, db, "another provider's settings: another digest");
        assert!(!da.contains("opaque") && !ka.contains("opaque"));
        let keys: std::collections::HashSet<String> =
            (0..1000).map(|i| a.locate(&format!("t{i}")).1).collect();
        assert!(keys.len() <= 16);
    }

    #[test]
    fn one_lease_per_token_then_the_result_serves_until_it_ends() {
        let s = MemoryStore::default();
        let c = Cache::new("t", 64);
        c.prepare(&s).unwrap();
        let (d, k) = c.locate("tok");
        let now = 1_000_000;
        assert!(c.lease(&s, &k, &d, 0, "w1", 500, now).unwrap());
        assert!(
            !c.lease(&s, &k, &d, 0, "w2", 500, now + 10).unwrap(),
            "one call"
        );
        c.store(&s, &k, &d, 0, Some(active(&d, 0, now + 5000)))
            .unwrap();
        assert!(
            matches!(c.lookup(&s, &k, &d, 0).unwrap(), Lookup::Found(e) if e.st == State::Active)
        );
        assert!(!c.lease(&s, &k, &d, 0, "w2", 500, now + 4999).unwrap());
        assert!(
            c.lease(&s, &k, &d, 0, "w2", 500, now + 5000).unwrap(),
            "expired"
        );
        // A clear: the entry is of an old epoch, a miss.
        let epoch = c.clear(&s).unwrap();
        assert_eq!(epoch, 1);
        assert_eq!(c.lookup(&s, &k, &d, epoch).unwrap(), Lookup::Miss);
        // A lapsed lease (the caller vanished) can be taken again.
        assert!(c.lease(&s, &k, &d, epoch, "w1", 500, now).unwrap());
        assert!(c.lease(&s, &k, &d, epoch, "w2", 500, now + 501).unwrap());
        // Nothing to keep: the lease is released.
        c.store(&s, &k, &d, epoch, None).unwrap();
        assert_eq!(c.lookup(&s, &k, &d, epoch).unwrap(), Lookup::Miss);
    }

    #[test]
    fn the_sweep_empties_dead_entries_a_step_a_second_and_backoff_doubles() {
        let s = MemoryStore::default();
        let c = Cache::new("t", 2500);
        c.prepare(&s).unwrap();
        let now = 1_000_000;
        for i in 0..200 {
            let (d, k) = c.locate(&format!("t{i}"));
            let until = if i % 2 == 0 { now - 1 } else { now + 60_000 };
            c.store(&s, &k, &d, 0, Some(active(&d, 0, until))).ok();
        }
        let (live, _) = c.census(&s, now);
        let mut emptied = 0;
        for step in 0..3 {
            emptied += c.sweep(&s, "w", now + step * 1000).unwrap();
            assert_eq!(
                c.sweep(&s, "w2", now + step * 1000 + 999).unwrap(),
                0,
                "one step a second"
            );
        }
        assert_eq!(c.census(&s, now).0, live, "live entries stay");
        assert!(emptied >= 90, "{emptied}");
        let backoffs: Vec<u64> = (0..7)
            .map(|_| c.record(&s, false, now).unwrap() - now)
            .collect();
        assert_eq!(backoffs, [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
        c.record(&s, true, now).unwrap();
        assert_eq!(c.backoff_until(&s), 0);
    }
}
