//! A per-worker cache of verified tokens, so a token seen again skips the
//! signature check. Keyed by the token itself: a slot is chosen by the
//! standard library's SipHash (per-VM random key) of the token's length and
//! last 32 bytes (signature bytes), and a hit compares the whole token, so
//! no two tokens can ever share an entry (a SHA-256 digest of the whole
//! token as the key cost about 4 µs a request in wasm, more than the rest
//! of a hit). Bounded in entries and bytes, the tokens' own bytes included
//! (oldest out first); an entry never outlives the token's `exp` (nor
//! `iat + max_token_age`), and is void as soon as its provider's key set
//! changes (a new JWKS, a clear, a cleared kid), since the generation it was
//! verified under is recorded.
#![forbid(unsafe_code)]

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::rc::Rc;

use crate::engine::verdict::Grant;
use crate::revoke::index::Subject;

/// What a cache hit needs to answer without verifying again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub provider: usize,
    /// The provider's key-set generation when the token was verified.
    pub gen: u64,
    /// The rule the grant was computed for (requirements and headers
    /// depend on it).
    pub rule: Option<usize>,
    /// Not served at or after this time (ms since the epoch).
    pub valid_until_ms: u64,
    pub grant: Grant,
    /// The claims deny entries can match, checked again on every hit
    /// (`None` when revocation is off).
    pub subject: Option<Rc<Subject>>,
    /// For a verdict that rests on an introspection answer: the epoch of
    /// the provider's introspection cache (an admin clear voids it).
    pub epoch: Option<u64>,
}

impl Entry {
    /// Bytes held for this entry, its token (key) not included.
    fn size(&self) -> usize {
        const FIXED: usize = 32 + 96;
        FIXED
            + self
                .grant
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 48)
                .sum::<usize>()
            + self.grant.identity.as_ref().map_or(0, String::len)
            + self.subject.as_ref().map_or(0, |s| s.size() + 16)
    }
}

/// Bytes of a token's end that choose its slot: signature bytes, which no
/// one can steer for a token that verified (only verified tokens are
/// stored; a lookup that lands on another token's slot is a miss).
const TAIL: usize = 32;

#[derive(Debug, Default)]
pub struct TokenCache {
    /// Slot -> (token, entry). The slot is a keyed hash of the token's
    /// length and last bytes; the whole token is compared on a hit.
    map: HashMap<u64, (Rc<str>, Entry)>,
    /// Insertion order, for eviction.
    order: VecDeque<u64>,
    hasher: RandomState,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl TokenCache {
    pub fn new(max_entries: usize, max_bytes: usize) -> TokenCache {
        TokenCache {
            max_entries,
            max_bytes,
            ..TokenCache::default()
        }
    }

    fn slot(&self, token: &str) -> u64 {
        let b = token.as_bytes();
        let tail = b.get(b.len().saturating_sub(TAIL)..).unwrap_or(b);
        self.hasher.hash_one((b.len(), tail))
    }

    /// The entry of exactly this token.
    fn find(&self, token: &str) -> Option<(u64, &Entry)> {
        let slot = self.slot(token);
        match self.map.get(&slot) {
            Some((t, e)) if &**t == token => Some((slot, e)),
            _ => None,
        }
    }

    pub fn enabled(&self) -> bool {
        self.max_entries > 0
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The provider a cached token belongs to.
    pub fn provider_of(&self, token: &str) -> Option<usize> {
        self.find(token).map(|(_, e)| e.provider)
    }

    /// The grant for a token seen before on the same rule, if still valid:
    /// `current_gen` gives a provider's key-set generation now.
    pub fn get(
        &mut self,
        token: &str,
        rule: Option<usize>,
        now_ms: u64,
        current_gen: impl FnOnce(usize) -> u64,
    ) -> Option<Grant> {
        self.get_with_subject(token, rule, now_ms, |e| current_gen(e.provider) == e.gen)
            .map(|(g, _)| g)
    }

    /// [`TokenCache::get`], with the revocation subject kept with the token.
    pub fn get_with_subject(
        &mut self,
        token: &str,
        rule: Option<usize>,
        now_ms: u64,
        still_valid: impl FnOnce(&Entry) -> bool,
    ) -> Option<(Grant, Option<Rc<Subject>>)> {
        let (slot, e) = self.find(token)?;
        if now_ms >= e.valid_until_ms || !still_valid(e) {
            self.remove(slot);
            return None;
        }
        (e.rule == rule).then(|| (e.grant.clone(), e.subject.clone()))
    }

    pub fn insert(&mut self, token: &str, entry: Entry) {
        let size = entry.size() + token.len();
        if !self.enabled() || size > self.max_bytes {
            return;
        }
        let slot = self.slot(token);
        match self.map.get(&slot) {
            // The same token again: replaced in place.
            Some((t, old)) if &**t == token => {
                self.bytes = self.bytes.saturating_sub(old.size() + t.len());
            }
            // Another token in this slot: it goes.
            Some(_) => self.remove(slot),
            None => {}
        }
        if !self.map.contains_key(&slot) {
            self.order.push_back(slot);
        }
        self.bytes += size;
        self.map.insert(slot, (Rc::from(token), entry));
        while self.map.len() > self.max_entries || self.bytes > self.max_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.remove(oldest);
        }
    }

    fn remove(&mut self, slot: u64) {
        if let Some((t, old)) = self.map.remove(&slot) {
            self.bytes = self.bytes.saturating_sub(old.size() + t.len());
            if let Some(pos) = self.order.iter().position(|o| *o == slot) {
                self.order.remove(pos);
            }
        }
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(gen: u64, until: u64) -> Entry {
        Entry {
            provider: 0,
            gen,
            rule: None,
            valid_until_ms: until,
            grant: Grant {
                headers: vec![("x-jwt-sub".into(), "alice".into())],
                identity: None,
                strip_token: false,
            },
            subject: None,
            epoch: None,
        }
    }

    #[test]
    fn hits_only_while_valid_on_the_same_rule_and_generation() {
        let mut c = TokenCache::new(10, 1 << 20);
        let k = "a.b.c";
        c.insert(k, entry(3, 1000));
        assert!(c.get(k, None, 999, |_| 3).is_some());
        assert!(c.get("a.b.d", None, 999, |_| 3).is_none(), "another token");
        assert!(c.get(k, Some(1), 999, |_| 3).is_none(), "another rule");
        assert!(c.get(k, None, 999, |_| 4).is_none(), "keys changed");
        assert!(c.is_empty(), "a stale entry is dropped");
        c.insert(k, entry(3, 1000));
        assert!(c.get(k, None, 1000, |_| 3).is_none(), "expired");
        assert_eq!((c.len(), c.bytes()), (0, 0));
    }

    #[test]
    fn bounded_in_entries_and_bytes_oldest_out_first() {
        let mut c = TokenCache::new(3, 1 << 20);
        let keys: Vec<String> = (0..5).map(|i| format!("t{i}")).collect();
        for k in &keys {
            c.insert(k, entry(1, u64::MAX));
        }
        assert_eq!(c.len(), 3);
        assert!(c.get(&keys[0], None, 0, |_| 1).is_none());
        assert!(c.get(&keys[4], None, 0, |_| 1).is_some());
        // The tokens' bytes count: each entry is its grant plus its token.
        let one = entry(1, u64::MAX).size() + 2;
        let mut c = TokenCache::new(100, one * 2);
        for k in &keys {
            c.insert(k, entry(1, u64::MAX));
        }
        assert_eq!(c.len(), 2);
        assert_eq!(c.bytes(), one * 2);
        // Re-inserting a key does not count it twice.
        c.insert(&keys[4], entry(1, u64::MAX));
        assert_eq!((c.len(), c.bytes()), (2, one * 2));
        // An evicted or expired entry gives its bytes back.
        c.clear();
        c.insert("long-token", entry(1, 5));
        assert!(c.get("long-token", None, 5, |_| 1).is_none());
        assert_eq!((c.len(), c.bytes()), (0, 0));
    }

    #[test]
    fn tokens_with_the_same_ending_never_share_an_entry() {
        let mut c = TokenCache::new(10, 1 << 20);
        let tail = "x".repeat(TAIL);
        let (a, b) = (format!("a.b.{tail}"), format!("c.d.{tail}"));
        assert_eq!(c.slot(&a), c.slot(&b), "same length and tail: same slot");
        c.insert(&a, entry(1, u64::MAX));
        assert!(c.get(&b, None, 0, |_| 1).is_none(), "b is not a");
        assert!(c.get(&a, None, 0, |_| 1).is_some(), "a miss on b leaves a");
        // The later token takes the slot; the bytes stay exact.
        c.insert(&b, entry(1, u64::MAX));
        assert_eq!(c.len(), 1);
        assert!(c.get(&a, None, 0, |_| 1).is_none());
        assert!(c.get(&b, None, 0, |_| 1).is_some());
        assert_eq!(c.bytes(), entry(1, u64::MAX).size() + b.len());
        // Short tokens (under the tail length) work too.
        c.insert("t", entry(1, u64::MAX));
        assert!(c.get("t", None, 0, |_| 1).is_some());
    }

    #[test]
    fn disabled_cache_keeps_nothing() {
        let mut c = TokenCache::new(0, 1 << 20);
        c.insert("x", entry(1, u64::MAX));
        assert!(c.is_empty());
    }
}
