//! One VM's share of introspection: each provider's cache handle with the
//! epoch this VM last saw, and the calls it sent and awaits.
#![forbid(unsafe_code)]

use crate::config::IntrospectionSettings;
use crate::introspect::cache::Cache;
use crate::keys::layout;
use crate::store::SharedStore;

/// One provider's introspection as this VM holds it.
pub struct Introspector {
    pub cache: Cache,
    /// The cache's epoch as last read, and the marker of the next one.
    epoch: u64,
    next: String,
    loaded: bool,
}

/// A call this VM sent.
pub struct Call {
    pub id: u32,
    pub provider: usize,
    pub token: String,
    pub digest: String,
    pub key: String,
    pub epoch: u64,
}

impl Introspector {
    pub fn new(tag: &str, s: &IntrospectionSettings) -> Introspector {
        Introspector {
            cache: Cache::new(tag, s.max_entries),
            epoch: 0,
            next: String::new(),
            loaded: false,
        }
    }

    /// The cache's epoch (one marker lookup while it has not moved).
    pub fn sync(&mut self, store: &dyn SharedStore) -> u64 {
        let moved = !self.loaded || layout::has_marker(store, &self.next).unwrap_or(true);
        if moved {
            if let Ok(e) = self.cache.epoch(store) {
                self.epoch = e;
                self.next = self.cache.names.marker(e + 1);
                self.loaded = true;
            }
        }
        self.epoch
    }
}
