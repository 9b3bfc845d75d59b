//! The pushed list (`POST`/`GET`/`DELETE {admin_path_prefix}/revocations`):
//! one list per host, in shared data, edited by compare-and-swap so that two
//! workers pushing at once both land.
#![forbid(unsafe_code)]

use serde_json::{json, Value};

use crate::keys::layout::{self, Names};
use crate::revoke::entry::{self, Entry, EntryError};
use crate::store::{SharedStore, StoreError};

/// The shared-data names of the pushed list.
pub fn names() -> Names {
    Names::for_uri("revocations/pushed")
}

/// Why a push was refused.
#[derive(Debug)]
pub enum PushError {
    /// The body is not a valid document (400).
    Invalid(EntryError),
    /// The list would exceed `max_revocation_entries` (409).
    Full {
        would_hold: usize,
        max: usize,
    },
    Store(StoreError),
}

/// Adds (or replaces, by id) the entries of `body`; entries past their
/// `exp` are dropped from the list at the same time. Returns the body of
/// the answer.
pub fn add(
    store: &dyn SharedStore,
    body: &[u8],
    max: usize,
    now_s: u64,
) -> Result<Value, PushError> {
    let new = entry::parse_document(body, max).map_err(PushError::Invalid)?;
    let new_ids: Vec<String> = new.iter().map(Entry::id).collect();
    let mut full = None;
    let mut total = 0;
    let (gen, _) = layout::store_record(store, &names(), |bytes, gen| {
        let mut kept: Vec<Entry> = entry::read_stored(bytes)
            .into_iter()
            .filter(|e| e.live(now_s) && !new_ids.contains(&e.id()))
            .collect();
        kept.extend(new.iter().filter(|e| e.live(now_s)).cloned());
        if kept.len() > max {
            full = Some(kept.len());
            return Ok(None);
        }
        total = kept.len();
        entry::write_stored(&kept, gen)
            .map(Some)
            .map_err(StoreError::Host)
    })
    .map_err(PushError::Store)?;
    if let Some(would_hold) = full {
        return Err(PushError::Full { would_hold, max });
    }
    Ok(json!({"added": new_ids, "entries": total, "generation": gen}))
}

/// A page of the pushed list (live entries, oldest first).
pub fn list(
    store: &dyn SharedStore,
    offset: usize,
    limit: usize,
    now_s: u64,
) -> Result<Value, StoreError> {
    let all: Vec<Entry> = read(store)?.into_iter().filter(|e| e.live(now_s)).collect();
    let page: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(Entry::to_json)
        .collect();
    Ok(json!({"total": all.len(), "offset": offset, "limit": limit, "entries": page}))
}

/// Removes the entry `id`; `false` when there is none.
pub fn delete(store: &dyn SharedStore, id: &str) -> Result<bool, StoreError> {
    let (_, wrote) = layout::store_record(store, &names(), |bytes, gen| {
        let mut list = entry::read_stored(bytes);
        let before = list.len();
        list.retain(|e| e.id() != id);
        if list.len() == before {
            return Ok(None);
        }
        entry::write_stored(&list, gen)
            .map(Some)
            .map_err(StoreError::Host)
    })?;
    Ok(wrote)
}

/// The pushed entries, as stored.
fn read(store: &dyn SharedStore) -> Result<Vec<Entry>, StoreError> {
    Ok(entry::read_stored(store.get(&names().keys)?.0.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    const NOW: u64 = 1_800_000_000;

    fn doc(entries: Value) -> Vec<u8> {
        json!({ "entries": entries }).to_string().into_bytes()
    }

    #[test]
    fn add_replaces_by_id_list_pages_and_delete_removes() {
        let s = MemoryStore::default();
        let a = json!({"type": "sub", "value": "alice", "exp": NOW + 60});
        let b = json!({"type": "jti", "value": "j", "iss": "i", "exp": NOW + 60});
        let r = add(&s, &doc(json!([a, b])), 10, NOW).unwrap();
        assert_eq!(r["entries"], json!(2));
        // the same target again: replaced, not added
        let a2 = json!({"type": "sub", "value": "alice", "exp": NOW + 120});
        assert_eq!(
            add(&s, &doc(json!([a2])), 10, NOW).unwrap()["entries"],
            json!(2)
        );
        let page = list(&s, 0, 1, NOW).unwrap();
        assert_eq!(
            (
                page["total"].clone(),
                page["entries"].as_array().unwrap().len()
            ),
            (json!(2), 1)
        );
        let all = list(&s, 0, 10, NOW).unwrap();
        let alice = all["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["value"] == "alice")
            .unwrap()
            .clone();
        assert_eq!(alice["exp"], json!(NOW + 120));
        assert!(delete(&s, alice["id"].as_str().unwrap()).unwrap());
        assert!(!delete(&s, alice["id"].as_str().unwrap()).unwrap());
        assert_eq!(list(&s, 0, 10, NOW).unwrap()["total"], json!(1));
    }

    #[test]
    fn the_list_is_bounded_and_expired_entries_make_room() {
        let s = MemoryStore::default();
        let e = |v: &str, exp: u64| json!({"type": "sub", "value": v, "exp": exp});
        add(&s, &doc(json!([e("a", NOW + 5), e("b", NOW + 60)])), 2, NOW).unwrap();
        let full = add(&s, &doc(json!([e("c", NOW + 60)])), 2, NOW).unwrap_err();
        assert!(matches!(
            full,
            PushError::Full {
                would_hold: 3,
                max: 2
            }
        ));
        // once "a" expired, "c" fits
        assert_eq!(
            add(&s, &doc(json!([e("c", NOW + 60)])), 2, NOW + 5).unwrap()["entries"],
            json!(2)
        );
        assert!(matches!(add(&s, b"{}", 2, NOW), Err(PushError::Invalid(_))));
    }
}
