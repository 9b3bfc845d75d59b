//! proxy-wasm shared data, as the logic sees it: one small trait the host
//! glue implements with the real host calls, and an in-memory store with
//! the strictest host's semantics for tests. Key sets (and later lists and
//! caches) keep their own layouts on top of it.
#![forbid(unsafe_code)]

/// Why a shared-data operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    CasMismatch,
    Host(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::CasMismatch => f.write_str("shared data changed concurrently"),
            StoreError::Host(m) => write!(f, "shared data: {m}"),
        }
    }
}

/// proxy-wasm shared data, as the logic needs it.
pub trait SharedStore {
    /// The value and its `cas` (0 when absent).
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), StoreError>;
    /// Writes if `cas` still matches (0: the key must be new or unchecked).
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError>;
}

/// An in-memory store with the strictest host's semantics (Kong's: a write
/// to an existing key must carry its current `cas`).
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: std::cell::RefCell<std::collections::HashMap<String, (Vec<u8>, u32)>>,
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, u32), StoreError> {
        Ok(match self.map.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), *cas),
            None => (None, 0),
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        let mut map = self.map.borrow_mut();
        let current = map.get(key).map(|(_, c)| *c);
        match current {
            Some(c) if c != cas => return Err(StoreError::CasMismatch),
            None if cas != 0 => return Err(StoreError::CasMismatch),
            _ => {}
        }
        let next = current.unwrap_or(0).wrapping_add(1).max(1);
        map.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }
}
