//! A per-worker cache of verified tokens, so a token seen again skips the
//! signature check. Keyed by the token itself: a slot is chosen by a
//! multiply-xor hash with a per-VM random seed of the token's length and
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
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
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
    pub grant: Rc<Grant>,
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

/// Whether two byte strings are equal, compared eight bytes at a time
/// and without stopping at the first difference. `==` on slices is
/// `memcmp`, which wasi-libc implements one byte at a time: for a
/// 700-byte token that was a fifth of a cache hit's work in wasm.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let rest = wa
        .remainder()
        .iter()
        .zip(wb.remainder())
        .fold(0u8, |d, (x, y)| d | (x ^ y));
    let words = wa.zip(wb).fold(0u64, |d, (x, y)| d | (word(x) ^ word(y)));
    words == 0 && rest == 0
}

/// Bytes of a token's end that choose its slot: signature bytes, which no
/// one can steer for a token that verified (only verified tokens are
/// stored; a lookup that lands on another token's slot is a miss).
const TAIL: usize = 32;

/// The map's own hasher: its keys are already keyed hashes (slots), so
/// hashing them again (SipHash, the map's default) would only cost time.
#[derive(Debug, Default)]
struct SlotHasher(u64);

impl Hasher for SlotHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A token's place in the cache, found by [`TokenCache::lookup`].
#[derive(Debug, Clone, Copy)]
pub struct Hit {
    slot: u64,
    pub provider: usize,
}

#[derive(Debug, Default)]
pub struct TokenCache {
    /// Slot -> (token, entry). The slot is a keyed hash of the token's
    /// length and last bytes; the whole token is compared on a hit.
    map: HashMap<u64, (Rc<str>, Entry), BuildHasherDefault<SlotHasher>>,
    /// Insertion order, for eviction.
    order: VecDeque<u64>,
    /// The slot hash's per-VM random seed.
    seed: u64,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl TokenCache {
    pub fn new(max_entries: usize, max_bytes: usize) -> TokenCache {
        TokenCache {
            max_entries,
            max_bytes,
            seed: RandomState::new().hash_one(0x6a77_745f_6361_6368_u64),
            ..TokenCache::default()
        }
    }

    fn slot(&self, b: &[u8]) -> u64 {
        // Only verified tokens are kept, and no one steers a verified
        // token's signature bytes: the slot needs spreading, not a keyed
        // cryptographic hash (SipHash cost several hundred instructions
        // a hit in wasm). A lookup that lands on another token's slot is a
        // miss.
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let tail = b.get(b.len().saturating_sub(TAIL)..).unwrap_or(b);
        let mut h = self.seed ^ (b.len() as u64).wrapping_mul(K);
        for chunk in tail.chunks(8) {
            let mut w = [0u8; 8];
            for (d, s) in w.iter_mut().zip(chunk) {
                *d = *s;
            }
            h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K);
            h ^= h >> 29;
        }
        h ^ (h >> 32)
    }

    /// The entry of exactly this token.
    fn find(&self, token: &[u8]) -> Option<(u64, &Entry)> {
        let slot = self.slot(token);
        match self.map.get(&slot) {
            Some((t, e)) if same(t.as_bytes(), token) => Some((slot, e)),
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

    /// Where this exact token is held, and its provider: looked up once,
    /// then [`TokenCache::take`] answers from the same place.
    pub fn lookup(&self, token: &[u8]) -> Option<Hit> {
        self.find(token).map(|(slot, e)| Hit {
            slot,
            provider: e.provider,
        })
    }

    /// The grant for a token seen before on the same rule, if still valid:
    /// `current_gen` gives a provider's key-set generation now (the tests'
    /// shorthand for `lookup` then `take`).
    #[cfg(test)]
    pub fn get(
        &mut self,
        token: &str,
        rule: Option<usize>,
        now_ms: u64,
        current_gen: impl FnOnce(usize) -> u64,
    ) -> Option<Grant> {
        let hit = self.lookup(token.as_bytes())?;
        self.take(hit, rule, now_ms, |e| current_gen(e.provider) == e.gen)
            .map(|(g, _)| Grant::clone(&g))
    }

    /// The grant and revocation subject of a token found by `lookup`, if
    /// still valid on this rule; a stale entry is dropped.
    pub fn take(
        &mut self,
        hit: Hit,
        rule: Option<usize>,
        now_ms: u64,
        still_valid: impl FnOnce(&Entry) -> bool,
    ) -> Option<(Rc<Grant>, Option<Rc<Subject>>)> {
        let (_, e) = self.map.get(&hit.slot)?;
        if now_ms >= e.valid_until_ms || !still_valid(e) {
            self.remove(hit.slot);
            return None;
        }
        (e.rule == rule).then(|| (e.grant.clone(), e.subject.clone()))
    }

    /// Keeps a verified token's verdict. A token with a comma is not kept:
    /// a hit stands for every check of `token::find`, and a header's token
    /// with a comma is refused there (a folded header).
    pub fn insert(&mut self, token: &str, entry: Entry) {
        let size = entry.size() + token.len();
        if !self.enabled() || size > self.max_bytes || token.contains(',') {
            return;
        }
        let slot = self.slot(token.as_bytes());
        match self.map.get(&slot) {
            // The same token again: replaced in place.
            Some((t, old)) if same(t.as_bytes(), token.as_bytes()) => {
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
            grant: Rc::new(Grant {
                headers: vec![("x-jwt-sub".into(), "alice".into())],
                identity: None,
                strip_token: false,
            }),
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
        assert_eq!(
            c.slot(a.as_bytes()),
            c.slot(b.as_bytes()),
            "same length and tail: same slot"
        );
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
    fn equal_bytes_only() {
        let a: Vec<u8> = (0..=255u8).cycle().take(701).collect();
        assert!(same(&a, &a.clone()));
        for i in [0, 7, 8, 63, 695, 696, 700] {
            let mut b = a.clone();
            b[i] ^= 0x10;
            assert!(!same(&a, &b), "byte {i}");
        }
        assert!(!same(&a, &a[..700]));
        assert!(same(b"", b""));
        assert!(!same(b"abc", b"abd"));
    }

    #[test]
    fn distinct_tokens_get_distinct_slots() {
        let mut c = TokenCache::new(5000, 1 << 24);
        for i in 0..4000u32 {
            // Same length, tails differing in one word only.
            c.insert(
                &format!("h.p.{:040}", i.wrapping_mul(2_654_435_761)),
                entry(1, 9),
            );
        }
        assert_eq!(c.len(), 4000, "no two of them share a slot");
    }

    #[test]
    fn a_token_with_a_comma_is_not_kept() {
        let mut c = TokenCache::new(10, 1 << 20);
        c.insert("a,b", entry(1, u64::MAX));
        assert!(c.is_empty());
    }

    #[test]
    fn disabled_cache_keeps_nothing() {
        let mut c = TokenCache::new(0, 1 << 20);
        c.insert("x", entry(1, u64::MAX));
        assert!(c.is_empty());
    }
}
