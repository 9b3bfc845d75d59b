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
    /// The cache's epoch as this VM last saw it.
    epoch: layout::Generation,
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
            epoch: layout::Generation::default(),
        }
    }

    /// The cache's epoch (one marker lookup while it has not moved).
    pub fn sync(&mut self, store: &dyn SharedStore) -> u64 {
        if let Err(e) = self.epoch.sync(store, &self.cache.names, false) {
            log::warn!("jwt_jwks: reading the introspection cache's epoch failed: {e}");
        }
        self.epoch.gen
    }
}
