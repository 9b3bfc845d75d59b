//! A per-worker cache of verified tokens, so a token seen again skips the
//! signature check. Keyed by the SHA-256 of the token (the token itself is
//! not kept); bounded in entries and bytes (oldest out first); an entry
//! never outlives the token's `exp` (nor `iat + max_token_age`), and is
//! void as soon as its provider's key set changes (a new JWKS, a clear, a
//! cleared kid), since the generation it was verified under is recorded.
#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};

use crate::engine::Grant;

pub type Digest = [u8; 32];

pub fn digest(token: &str) -> Digest {
    hmac_sha256::Hash::hash(token.as_bytes())
}

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
    map: HashMap<Digest, Entry>,
    order: VecDeque<Digest>,
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
    pub fn provider_of(&self, key: &Digest) -> Option<usize> {
        self.map.get(key).map(|e| e.provider)
    }

    /// The grant for a token seen before on the same rule, if still valid:
    /// `current_gen` gives a provider's key-set generation now.
    pub fn get(
        &mut self,
        key: &Digest,
        rule: Option<usize>,
        now_ms: u64,
        current_gen: impl FnOnce(usize) -> u64,
    ) -> Option<Grant> {
        let e = self.map.get(key)?;
        if now_ms >= e.valid_until_ms || current_gen(e.provider) != e.gen {
            self.remove(key);
            return None;
        }
        (e.rule == rule).then(|| e.grant.clone())
    }

    pub fn insert(&mut self, key: Digest, entry: Entry) {
        let size = entry.size();
        if !self.enabled() || size > self.max_bytes {
            return;
        }
        if let Some(old) = self.map.get(&key) {
            self.bytes = self.bytes.saturating_sub(old.size());
        } else {
            self.order.push_back(key);
        }
        self.bytes += size;
        self.map.insert(key, entry);
        while self.map.len() > self.max_entries || self.bytes > self.max_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.remove(&oldest);
        }
    }

    fn remove(&mut self, key: &Digest) {
        if let Some(old) = self.map.remove(key) {
            self.bytes = self.bytes.saturating_sub(old.size());
            self.order.retain(|k| k != key);
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
        let k = digest("a.b.c");
        c.insert(k, entry(3, 1000));
        assert!(c.get(&k, None, 999, |_| 3).is_some());
        assert!(c.get(&k, Some(1), 999, |_| 3).is_none(), "another rule");
        assert!(c.get(&k, None, 999, |_| 4).is_none(), "keys changed");
        assert!(c.is_empty(), "a stale entry is dropped");
        c.insert(k, entry(3, 1000));
        assert!(c.get(&k, None, 1000, |_| 3).is_none(), "expired");
        assert_eq!((c.len(), c.bytes()), (0, 0));
    }

    #[test]
    fn bounded_in_entries_and_bytes_oldest_out_first() {
        let mut c = TokenCache::new(3, 1 << 20);
        let keys: Vec<Digest> = (0..5).map(|i| digest(&format!("t{i}"))).collect();
        for k in &keys {
            c.insert(*k, entry(1, u64::MAX));
        }
        assert_eq!(c.len(), 3);
        assert!(c.get(&keys[0], None, 0, |_| 1).is_none());
        assert!(c.get(&keys[4], None, 0, |_| 1).is_some());
        let one = entry(1, u64::MAX).size();
        let mut c = TokenCache::new(100, one * 2);
        for k in &keys {
            c.insert(*k, entry(1, u64::MAX));
        }
        assert_eq!(c.len(), 2);
        assert!(c.bytes() <= one * 2);
        // Re-inserting a key does not count it twice.
        c.insert(keys[4], entry(1, u64::MAX));
        assert_eq!((c.len(), c.bytes()), (2, one * 2));
    }

    #[test]
    fn disabled_cache_keeps_nothing() {
        let mut c = TokenCache::new(0, 1 << 20);
        c.insert(digest("x"), entry(1, u64::MAX));
        assert!(c.is_empty());
    }
}
