//! An in-memory store with an explicit crash: what the simulator runs nodes on.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::{
    check_len, data_key, scan_ranges, split_data_key, Entry, Store, StoreError, MAX_KEY_LEN,
    MAX_VALUE_LEN,
};

/// Which map a key lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Space {
    Data,
    Meta,
}

#[derive(Debug, Default)]
struct Inner {
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    meta: BTreeMap<Vec<u8>, Vec<u8>>,
    /// For every key written since the last sync, its value at that sync: what a crash
    /// restores.
    undo: HashMap<(Space, Vec<u8>), Option<Vec<u8>>>,
}

impl Inner {
    fn map(&mut self, space: Space) -> &mut BTreeMap<Vec<u8>, Vec<u8>> {
        match space {
            Space::Data => &mut self.data,
            Space::Meta => &mut self.meta,
        }
    }

    fn write(&mut self, space: Space, key: Vec<u8>, value: Option<Vec<u8>>) {
        let before = self.map(space).get(&key).cloned();
        self.undo.entry((space, key.clone())).or_insert(before);
        match value {
            Some(v) => self.map(space).insert(key, v),
            None => self.map(space).remove(&key),
        };
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

    /// Simulates power loss: every write since the last successful sync is undone.
    pub fn crash(&self) {
        let mut inner = self.lock();
        let undo = std::mem::take(&mut inner.undo);
        for ((space, key), before) in undo {
            match before {
                Some(v) => inner.map(space).insert(key, v),
                None => inner.map(space).remove(&key),
            };
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

    #[test]
    fn crash_after_sync_loses_nothing() {
        let s = MemoryStore::new();
        s.put(9, b"k", b"v").unwrap();
        s.sync().unwrap();
        s.crash();
        assert_eq!(s.get(9, b"k").unwrap(), Some(b"v".to_vec()));
    }
}
