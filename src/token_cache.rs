//! A per-worker cache of verified tokens, so a token seen again skips the
//! signature check. Keyed by the token itself: the map hashes it with the
//! standard library's SipHash under a per-VM random key, and a hit compares
//! the whole token, so no two tokens can ever share an entry (a SHA-256
//! digest as the key cost about 4 µs a request in wasm, more than the rest
//! of a hit). Bounded in entries and bytes, the tokens' own bytes included
//! (oldest out first); an entry never outlives the token's `exp` (nor
//! `iat + max_token_age`), and is void as soon as its provider's key set
//! changes (a new JWKS, a clear, a cleared kid), since the generation it was
//! verified under is recorded.
#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use crate::engine::Grant;

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
    }
}

#[derive(Debug, Default)]
pub struct TokenCache {
    map: HashMap<Rc<str>, Entry>,
    /// Insertion order, for eviction; shares the map's key allocations.
    order: VecDeque<Rc<str>>,
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
        self.map.get(token).map(|e| e.provider)
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
        let e = self.map.get(token)?;
        if now_ms >= e.valid_until_ms || current_gen(e.provider) != e.gen {
            self.remove(token);
            return None;
        }
        (e.rule == rule).then(|| e.grant.clone())
    }

    pub fn insert(&mut self, token: &str, entry: Entry) {
        let size = entry.size() + token.len();
        if !self.enabled() || size > self.max_bytes {
            return;
        }
        let key: Rc<str> = match self.map.get_key_value(token) {
            Some((k, old)) => {
                self.bytes = self.bytes.saturating_sub(old.size() + k.len());
                k.clone()
            }
            None => {
                let k: Rc<str> = Rc::from(token);
                self.order.push_back(k.clone());
                k
            }
        };
        self.bytes += size;
        self.map.insert(key, entry);
        while self.map.len() > self.max_entries || self.bytes > self.max_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.remove(&oldest);
        }
    }

    fn remove(&mut self, token: &str) {
        if let Some((k, old)) = self.map.remove_entry(token) {
            self.bytes = self.bytes.saturating_sub(old.size() + k.len());
            self.order.retain(|o| !Rc::ptr_eq(o, &k));
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
            },
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
    fn disabled_cache_keeps_nothing() {
        let mut c = TokenCache::new(0, 1 << 20);
        c.insert("x", entry(1, u64::MAX));
        assert!(c.is_empty());
    }
}
