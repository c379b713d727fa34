//! An in-memory store with an explicit crash: what the simulator runs nodes on.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::hints::{
    decode_hint, hint_key, hint_value, owner_range, record_len, split_hint_key, HintTallies,
};
use super::{
    check_len, data_key, scan_ranges, split_data_key, Entry, Hint, HintOwner, Store, StoreError,
    StoreUsage, MAX_KEY_LEN, MAX_VALUE_LEN,
};

/// Which map a key lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Space {
    Data,
    Meta,
    Hints,
}

#[derive(Debug, Default)]
struct Inner {
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    meta: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Stored hint keys and values, encoded as [`FjallStore`](super::FjallStore) stores them
    /// so both engines order them alike.
    hints: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Counts and bytes of `hints` per owner, kept in step by [`set`](Self::set).
    tallies: HintTallies,
    /// For every key written since the last sync, its value at that sync: what a crash
    /// restores.
    undo: HashMap<(Space, Vec<u8>), Option<Vec<u8>>>,
}

impl Inner {
    fn map(&mut self, space: Space) -> &mut BTreeMap<Vec<u8>, Vec<u8>> {
        match space {
            Space::Data => &mut self.data,
            Space::Meta => &mut self.meta,
            Space::Hints => &mut self.hints,
        }
    }

    /// Writes (or with `None` removes) `key`, recording its synced value for a crash.
    fn write(&mut self, space: Space, key: Vec<u8>, value: Option<Vec<u8>>) {
        let before = self.map(space).get(&key).cloned();
        self.undo.entry((space, key.clone())).or_insert(before);
        self.set(space, key, value);
    }

    /// Writes (or with `None` removes) `key`, keeping the hint tallies in step.
    fn set(&mut self, space: Space, key: Vec<u8>, value: Option<Vec<u8>>) {
        let new_len = value.as_ref().map(Vec::len);
        let old = match value {
            Some(v) => self.map(space).insert(key.clone(), v),
            None => self.map(space).remove(&key),
        };
        if space != Space::Hints {
            return;
        }
        // This store encoded every hint key and value itself, so they always decode; the
        // fallbacks only keep a broken invariant from panicking.
        let Ok((owner, _, _)) = split_hint_key(&key) else {
            return;
        };
        if let Some(old) = old {
            self.tallies
                .remove(owner, record_len(old.len()).unwrap_or_default());
        }
        if let Some(len) = new_len {
            self.tallies.add(owner, record_len(len).unwrap_or_default());
        }
    }
}

/// A [`Store`] held in memory. Writes are visible at once; [`crash`](Self::crash) forgets
/// every write since the last [`sync`](Store::sync), as power loss would.
///
/// It is deliberately not `Clone`: share it behind an `Arc`, so that a crash is always an
/// explicit call on the one store.
///
/// ```
/// use ringkv::store::{MemoryStore, Store};
///
/// let store = MemoryStore::new();
/// store.put(1, b"kept", b"v")?;
/// store.sync()?;
/// store.put(1, b"lost", b"v")?;
/// store.crash();
/// assert!(store.get(1, b"kept")?.is_some());
/// assert!(store.get(1, b"lost")?.is_none());
/// # Ok::<(), ringkv::store::StoreError>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates power loss: every write since the last successful sync (data, meta and
    /// hints) is undone.
    pub fn crash(&self) {
        let mut inner = self.lock();
        let undo = std::mem::take(&mut inner.undo);
        for ((space, key), before) in undo {
            inner.set(space, key, before);
        }
    }

    /// How many keys have writes not yet made durable by a sync.
    #[must_use]
    pub fn unsynced_keys(&self) -> usize {
        self.lock().undo.len()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the maps consistent (every change is one
        // map operation), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemoryStore {
    fn get(&self, token: u64, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let stored = data_key(token, key)?;
        Ok(self.lock().data.get(&stored).cloned())
    }

    fn put(&self, token: u64, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let stored = data_key(token, key)?;
        check_len("value", value.len(), MAX_VALUE_LEN)?;
        self.lock().write(Space::Data, stored, Some(value.to_vec()));
        Ok(())
    }

    fn delete(&self, token: u64, key: &[u8]) -> Result<(), StoreError> {
        let stored = data_key(token, key)?;
        self.lock().write(Space::Data, stored, None);
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.lock().undo.clear();
        Ok(())
    }

    fn scan(
        &self,
        start: u64,
        end: u64,
        after: Option<(u64, Vec<u8>)>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let inner = self.lock();
        let mut out = Vec::with_capacity(limit.min(1024));
        for range in scan_ranges(start, end, after.as_ref()) {
            for (stored, value) in inner.data.range(range) {
                if out.len() >= limit {
                    return Ok(out);
                }
                let (token, key) = split_data_key(stored)?;
                out.push(Entry {
                    token,
                    key: key.to_vec(),
                    value: value.clone(),
                });
            }
        }
        Ok(out)
    }

    fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().meta.get(name.as_bytes()).cloned())
    }

    fn meta_put(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        check_len("meta name", name.len(), MAX_KEY_LEN)?;
        check_len("value", value.len(), MAX_VALUE_LEN)?;
        self.lock()
            .write(Space::Meta, name.as_bytes().to_vec(), Some(value.to_vec()));
        Ok(())
    }

    fn hint_get(&self, owner: &str, token: u64, key: &[u8]) -> Result<Option<Hint>, StoreError> {
        let stored = hint_key(owner, token, key)?;
        match self.lock().hints.get(&stored) {
            Some(value) => decode_hint(&stored, value).map(Some),
            None => Ok(None),
        }
    }

    fn hint_put(&self, hint: &Hint) -> Result<(), StoreError> {
        let stored = hint_key(&hint.owner, hint.token, &hint.key)?;
        let value = hint_value(hint.stored_ms, &hint.value)?;
        self.lock().write(Space::Hints, stored, Some(value));
        Ok(())
    }

    fn hint_delete(&self, owner: &str, token: u64, key: &[u8]) -> Result<(), StoreError> {
        let stored = hint_key(owner, token, key)?;
        let mut inner = self.lock();
        // Deleting nothing writes nothing: no undo entry, no tally change.
        if inner.hints.contains_key(&stored) {
            inner.write(Space::Hints, stored, None);
        }
        Ok(())
    }

    fn hint_scan(
        &self,
        owner: &str,
        after: Option<(u64, Vec<u8>)>,
        limit: usize,
    ) -> Result<Vec<Hint>, StoreError> {
        let range = owner_range(owner, after.as_ref())?;
        let inner = self.lock();
        inner
            .hints
            .range(range)
            .take(limit)
            .map(|(k, v)| decode_hint(k, v))
            .collect()
    }

    fn hint_owners(&self, limit: usize) -> Result<Vec<HintOwner>, StoreError> {
        Ok(self.lock().tallies.list(limit))
    }

    fn usage(&self) -> StoreUsage {
        StoreUsage {
            keys: u64::try_from(self.lock().data.len()).ok(),
            disk_bytes: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_loses_exactly_the_unsynced_writes() {
        let s = MemoryStore::new();
        s.put(1, b"a", b"a1").unwrap();
        s.put(2, b"b", b"b1").unwrap();
        s.put(3, b"c", b"c1").unwrap();
        s.meta_put("epoch", b"1").unwrap();
        s.sync().unwrap();
        assert_eq!(s.unsynced_keys(), 0);

        s.put(1, b"a", b"a2").unwrap(); // overwrite
        s.put(1, b"a", b"a3").unwrap(); // twice: the synced value must still come back
        s.delete(2, b"b").unwrap(); // delete
        s.put(4, b"d", b"d1").unwrap(); // new key
        s.delete(4, b"d").unwrap();
        s.put(5, b"e", b"e1").unwrap();
        s.meta_put("epoch", b"2").unwrap();
        assert_eq!(s.get(1, b"a").unwrap(), Some(b"a3".to_vec()));
        assert_eq!(s.unsynced_keys(), 5);

        s.crash();
        assert_eq!(s.get(1, b"a").unwrap(), Some(b"a1".to_vec()));
        assert_eq!(s.get(2, b"b").unwrap(), Some(b"b1".to_vec()));
        assert_eq!(s.get(3, b"c").unwrap(), Some(b"c1".to_vec()));
        assert_eq!(s.get(4, b"d").unwrap(), None);
        assert_eq!(s.get(5, b"e").unwrap(), None);
        assert_eq!(s.meta_get("epoch").unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.scan(0, 0, None, 100).unwrap().len(), 3);
        assert_eq!(s.unsynced_keys(), 0);
    }

    fn hint(owner: &str, key: &str, value: &str) -> Hint {
        Hint {
            owner: owner.into(),
            token: 7,
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            stored_ms: 1,
        }
    }

    #[test]
    fn crash_forgets_unsynced_hints_and_their_tallies() {
        let s = MemoryStore::new();
        s.hint_put(&hint("n1", "kept", "1")).unwrap();
        s.hint_put(&hint("n1", "gone", "22")).unwrap();
        s.sync().unwrap();

        s.hint_put(&hint("n1", "kept", "replaced")).unwrap();
        s.hint_delete("n1", 7, b"gone").unwrap();
        s.hint_put(&hint("n2", "new", "333")).unwrap();
        s.hint_delete("n2", 7, b"never-written").unwrap();
        assert_eq!(s.unsynced_keys(), 3);
        assert_eq!(s.hint_owners(10).unwrap().len(), 2);

        s.crash();
        assert_eq!(
            s.hint_get("n1", 7, b"kept").unwrap(),
            Some(hint("n1", "kept", "1"))
        );
        assert_eq!(
            s.hint_get("n1", 7, b"gone").unwrap(),
            Some(hint("n1", "gone", "22"))
        );
        assert_eq!(s.hint_get("n2", 7, b"new").unwrap(), None);
        assert_eq!(
            s.hint_owners(10).unwrap(),
            [HintOwner {
                owner: "n1".into(),
                count: 2,
                bytes: 3
            }]
        );
        assert_eq!(s.unsynced_keys(), 0);
    }

    #[test]
    fn crash_after_sync_loses_nothing() {
        let s = MemoryStore::new();
        s.put(9, b"k", b"v").unwrap();
        s.sync().unwrap();
        s.crash();
        assert_eq!(s.get(9, b"k").unwrap(), Some(b"v".to_vec()));
    }
}
