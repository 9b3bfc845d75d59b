//! A worker's copy of the deny entries: the pushed list and each
//! provider's pulled list, kept in step with shared data by generation as
//! the key sets are, and the index built from all of them.
#![forbid(unsafe_code)]

use crate::config::Config;
use crate::keys::layout::{self, Names};
use crate::revoke::entry::{self, Entry};
use crate::revoke::index::Index;
use crate::revoke::{pull, push};
use crate::store::{SharedStore, StoreError};

/// The least time between two rebuilds of the index for expired entries.
pub const EXPIRY_SWEEP_S: u64 = 60;

/// One list in shared data and this VM's copy of it.
#[derive(Debug)]
pub struct List {
    pub names: Names,
    pub gen: layout::Generation,
    /// Live entries when last read (the index holds them).
    pub count: usize,
    /// When a pulled list was last fetched or confirmed (ms; 0: never), as
    /// the tick last read it.
    pub fetched_at_ms: u64,
}

impl List {
    fn new(names: Names) -> List {
        List {
            names,
            gen: layout::Generation::default(),
            count: 0,
            fetched_at_ms: 0,
        }
    }

    /// Re-reads the list if its generation moved (`full`: read the
    /// generation itself); `true` when it changed.
    fn sync(&mut self, store: &dyn SharedStore, full: bool) -> Result<bool, StoreError> {
        self.gen.sync(store, &self.names, full)
    }
}

#[derive(Debug, Default)]
pub struct Revocations {
    /// The admin push's list (when the admin path is on).
    pub pushed: Option<List>,
    /// Per provider: its pulled list, and until when it counts as fresh
    /// (ms since the epoch; read from the shared state on every tick).
    pub pulled: Vec<Option<(List, u64)>>,
    pub index: Index,
    /// When the next entry expires (s): the index is rebuilt then, so
    /// memory does not hold dead entries.
    next_expiry_s: u64,
    /// Whether this VM has checked a token. Until then the tick keeps the
    /// lists unread: a VM that serves no request (Envoy's main thread)
    /// never holds them.
    pub active: bool,
}

impl Revocations {
    pub fn new(cfg: &Config) -> Revocations {
        Revocations {
            pushed: cfg.admin.as_ref().map(|_| List::new(push::names())),
            pulled: cfg
                .providers
                .iter()
                .map(|p| {
                    p.revocation
                        .as_ref()
                        .map(|s| (List::new(pull::names(s)), 0))
                })
                .collect(),
            ..Revocations::default()
        }
    }

    /// When the least recently fetched pulled list was fetched (ms), if
    /// every pulled list has been fetched at least once.
    pub fn oldest_fetch_ms(&self) -> Option<u64> {
        let times: Vec<u64> = self
            .pulled
            .iter()
            .flatten()
            .map(|(l, _)| l.fetched_at_ms)
            .collect();
        match times.iter().min() {
            Some(0) | None => None,
            Some(t) => Some(*t),
        }
    }

    /// Whether any source exists (else nothing is checked at all).
    pub fn enabled(&self) -> bool {
        self.pushed.is_some() || self.pulled.iter().any(Option::is_some)
    }

    fn lists_mut(&mut self) -> impl Iterator<Item = &mut List> {
        self.pushed
            .iter_mut()
            .chain(self.pulled.iter_mut().flatten().map(|(l, _)| l))
    }

    /// Reads every list again and indexes them (the lists are not kept
    /// besides the index: one copy of each entry per worker).
    fn rebuild(&mut self, store: &dyn SharedStore, now_s: u64) -> Result<(), StoreError> {
        let mut all: Vec<Entry> = Vec::new();
        for l in self.lists_mut() {
            let entries = entry::read_stored(store.get(&l.names.keys)?.0.as_deref());
            l.count = entries.iter().filter(|e| e.live(now_s)).count();
            all.extend(entries);
        }
        self.index = Index::build(&all, now_s);
        // An expired entry already stops counting (the check compares its
        // exp); the rebuild only frees its memory, so entries expiring every
        // second cost at most one rebuild a minute.
        self.next_expiry_s = all
            .iter()
            .filter(|e| e.live(now_s))
            .map(|e| e.exp.max(now_s + EXPIRY_SWEEP_S))
            .min()
            .unwrap_or(u64::MAX);
        Ok(())
    }

    /// Brings every list up to date; rebuilds the index on a change.
    pub fn sync(
        &mut self,
        store: &dyn SharedStore,
        now_s: u64,
        full: bool,
    ) -> Result<(), StoreError> {
        let mut changed = false;
        for l in self.lists_mut() {
            changed |= l.sync(store, full)?;
        }
        if changed || now_s >= self.next_expiry_s {
            self.rebuild(store, now_s)?;
        }
        Ok(())
    }
}
