//! A worker's status lists: one slot per list its providers' tokens have
//! named (at most `max_status_lists` per provider), each a copy of the
//! list in shared data kept in step by generation, as key sets are.
#![forbid(unsafe_code)]

use crate::config::{parse_endpoint, Endpoint, StatusListSettings};
use crate::keys::layout::{self, Names};
use crate::revoke::status::StatusList;
use crate::revoke::status_fetch;
use crate::store::{SharedStore, StoreError};

/// One list and this worker's copy of it.
#[derive(Debug)]
pub struct Slot {
    pub provider: usize,
    pub endpoint: Endpoint,
    pub names: Names,
    pub gen: layout::Generation,
    pub list: Option<StatusList>,
    /// Until when (ms) the list serves, as the shared state last said.
    pub usable_until_ms: u64,
    /// Whether a token named it since its last scheduled fetch: the tick
    /// only refreshes lists in use.
    pub used: bool,
}

impl Slot {
    /// Re-reads the list if its generation moved (`full`: read the
    /// generation itself); `true` when it changed.
    pub fn sync(&mut self, store: &dyn SharedStore, full: bool) -> Result<bool, StoreError> {
        if !self.gen.sync(store, &self.names, full)? {
            return Ok(false);
        }
        let (bytes, _) = store.get(&self.names.keys)?;
        // A record that does not read back keeps the copy this worker has.
        if let Some(list) = bytes.as_deref().and_then(StatusList::from_stored) {
            self.list = Some(list);
        }
        Ok(true)
    }

    /// Re-reads until when the list serves.
    pub fn read_freshness(
        &mut self,
        store: &dyn SharedStore,
        settings: &StatusListSettings,
    ) -> Result<(), StoreError> {
        let state = layout::read_state(store, &self.names)?;
        self.usable_until_ms = status_fetch::usable_until(settings, &state);
        Ok(())
    }
}

/// Why a list got no slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotError {
    /// The URI is not an http(s) URL.
    BadUri,
    /// The provider's tokens already named `max_status_lists` lists.
    Full,
}

#[derive(Debug, Default)]
pub struct StatusLists {
    pub slots: Vec<Slot>,
}

impl StatusLists {
    /// The slot of provider `provider`'s list at `uri`, made if new.
    /// `tag` names the provider's settings in shared data.
    pub fn slot(
        &mut self,
        provider: usize,
        uri: &str,
        max_lists: usize,
        tag: impl FnOnce() -> String,
    ) -> Result<usize, SlotError> {
        let named = |s: &Slot| s.provider == provider && s.endpoint.uri == uri;
        if let Some(i) = self.slots.iter().position(named) {
            return Ok(i);
        }
        if self.slots.iter().filter(|s| s.provider == provider).count() >= max_lists {
            return Err(SlotError::Full);
        }
        let endpoint = parse_endpoint(uri).map_err(|_| SlotError::BadUri)?;
        self.slots.push(Slot {
            provider,
            names: status_fetch::names(&tag(), uri),
            endpoint,
            gen: layout::Generation::default(),
            list: None,
            usable_until_ms: 0,
            used: false,
        });
        Ok(self.slots.len() - 1)
    }

    pub fn get_mut(&mut self, i: u32) -> Option<&mut Slot> {
        self.slots.get_mut(usize::try_from(i).ok()?)
    }

    pub fn get(&self, i: u32) -> Option<&Slot> {
        self.slots.get(usize::try_from(i).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_slot_per_list_and_a_bound_per_provider() {
        let mut l = StatusLists::default();
        let tag = || "t".to_string();
        assert_eq!(l.slot(0, "https://a/1", 2, tag), Ok(0));
        assert_eq!(l.slot(0, "https://a/1", 2, tag), Ok(0));
        assert_eq!(l.slot(1, "https://a/1", 2, tag), Ok(1), "per provider");
        assert_eq!(l.slot(0, "https://a/2", 2, tag), Ok(2));
        assert_eq!(l.slot(0, "https://a/3", 2, tag), Err(SlotError::Full));
        assert_eq!(l.slot(0, "https://a/2", 2, tag), Ok(2));
        assert_eq!(l.slot(1, "ftp://x/", 2, tag), Err(SlotError::BadUri));
    }
}
