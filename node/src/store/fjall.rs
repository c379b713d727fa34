//! The durable store on fjall (an LSM-tree engine).
//!
//! Directory layout: `<dir>/LOCK` (held exclusively while the store is open) and `<dir>/db/`
//! (fjall's files), with one fjall keyspace per kind of data: `data`, `meta`, `hints`.

mod journal;

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use ::fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use self::journal::ActiveJournal;
use super::hints::{
    decode_hint, hint_key, hint_value, owner_range, record_len, split_hint_key, HintTallies,
};
use super::{
    check_len, data_key, scan_ranges, split_data_key, Entry, Hint, HintOwner, Store, StoreError,
    StoreUsage, MAX_KEY_LEN, MAX_VALUE_LEN,
};

const LOCK_FILE: &str = "LOCK";
const DB_DIR: &str = "db";
const DATA_KEYSPACE: &str = "data";
const META_KEYSPACE: &str = "meta";
const HINTS_KEYSPACE: &str = "hints";

/// A [`Store`] on disk, in one data directory that only one process may open at a time.
///
/// Each write goes to fjall's journal in the operating system's buffers (no fsync);
/// [`sync`](Store::sync) fsyncs the journal, making every earlier write durable. Writes do
/// not wait for a sync in progress: the fsync runs outside fjall's journal lock (see
/// `journal.rs`). After a failed sync every later write and sync fails.
///
/// Hint counts per owner are kept in memory and rebuilt at [`open`](Self::open) by one scan
/// of the stored hints (O(hints stored), bounded by the caller's hint storage limit).
///
/// ```
/// use ringkv::store::{FjallStore, Store};
///
/// let dir = tempfile::tempdir()?;
/// let store = FjallStore::open(dir.path())?;
/// store.put(7, b"key", b"value")?;
/// store.sync()?;
/// assert_eq!(store.get(7, b"key")?, Some(b"value".to_vec()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FjallStore {
    db: Database,
    data: Keyspace,
    meta: Keyspace,
    hints: Keyspace,
    /// fjall's active journal, fsynced outside fjall's writer lock.
    journal: ActiveJournal,
    /// Set once a sync failed: what it should have made durable may be lost, so no later
    /// sync may report success (the operating system reports a failed writeback only once).
    sync_failed: AtomicBool,
    /// Writes made (counted after each reached the journal) and the count the last
    /// successful sync covered: equal means nothing waits for an fsync.
    writes: AtomicU64,
    synced: AtomicU64,
    /// Per-owner counts of `hints`. Held across each hint write's read-then-write, so
    /// concurrent writes of one hint cannot miscount.
    tallies: Mutex<HintTallies>,
    dir: PathBuf,
    /// Held (locked) for the store's lifetime; declared last so it is released only after
    /// the database above has shut down.
    _lock: File,
}

impl std::fmt::Debug for FjallStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallStore")
            .field("dir", &self.dir)
            .finish()
    }
}

impl FjallStore {
    /// Opens (creating if needed) the store in `dir`.
    ///
    /// # Errors
    /// [`StoreError::Locked`] if another process (or another `FjallStore` in this one) has
    /// `dir` open; [`StoreError::Io`] if the directory or lock file cannot be created;
    /// [`StoreError::Engine`] if fjall cannot open or recover its files;
    /// [`StoreError::Corrupt`] if a stored hint does not follow the hint layout.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        let locked = || StoreError::Locked {
            path: dir.to_path_buf(),
        };
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(locked()),
            Err(TryLockError::Error(source)) => return Err(io(&lock_path)(source)),
        }

        let db_dir = dir.join(DB_DIR);
        let db = Database::builder(&db_dir).open().map_err(|e| match e {
            ::fjall::Error::Locked => locked(),
            other => damaged(&db_dir, other),
        })?;
        let keyspace = |name| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(|e| damaged(&db_dir, e))
        };
        let (data, meta, hints) = (
            keyspace(DATA_KEYSPACE)?,
            keyspace(META_KEYSPACE)?,
            keyspace(HINTS_KEYSPACE)?,
        );
        let tallies = count_hints(&hints)?;
        tracing::debug!(dir = %dir.display(), "opened fjall store");
        Ok(FjallStore {
            db,
            data,
            meta,
            hints,
            journal: ActiveJournal::new(db_dir),
            sync_failed: AtomicBool::new(false),
            writes: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            tallies: Mutex::new(tallies),
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// The data directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Refuses writes and syncs after a failed sync, as fjall does after a failed fsync.
    fn check_writable(&self) -> Result<(), StoreError> {
        if self.sync_failed.load(Ordering::Acquire) {
            return Err(StoreError::Engine(
                "an earlier sync failed; restart the node".into(),
            ));
        }
        Ok(())
    }

    /// Counts a write attempt once it is in the journal's buffer (or failed), so a sync
    /// that reads the count afterwards covers it.
    fn wrote<T>(&self, result: Result<T, ::fjall::Error>) -> Result<T, StoreError> {
        self.writes.fetch_add(1, Ordering::AcqRel);
        result.map_err(engine)
    }

    fn tallies(&self) -> MutexGuard<'_, HintTallies> {
        // Nothing that updates the tallies can panic half-way, so a poisoned lock still
        // holds consistent counts.
        self.tallies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The record bytes of the stored hint under `stored`, if there is one.
    fn stored_hint_len(&self, stored: &[u8]) -> Result<Option<u64>, StoreError> {
        match self.hints.size_of(stored).map_err(engine)? {
            Some(len) => record_len(len as usize).map(Some),
            None => Ok(None),
        }
    }
}

/// The per-owner tallies of every stored hint: one scan, checking the layout as it goes.
fn count_hints(hints: &Keyspace) -> Result<HintTallies, StoreError> {
    let mut tallies = HintTallies::default();
    for guard in hints.iter() {
        let (stored, value) = guard.into_inner().map_err(engine)?;
        let (owner, _, _) = split_hint_key(&stored)?;
        tallies.add(owner, record_len(value.len())?);
    }
    Ok(tallies)
}

/// An error opening the engine in `db_dir`, naming the file (or the narrowest directory) the
/// kind of error points at: the format version file, the keyspaces' trees, or the journals.
fn damaged(db_dir: &Path, e: ::fjall::Error) -> StoreError {
    use ::fjall::Error as E;
    let (path, exact) = match &e {
        E::InvalidVersion(_) => (db_dir.join("version"), true),
        E::Storage(_) | E::Decompress(_) => (db_dir.join("keyspaces"), false),
        // The journals, and anything else, live in the engine's directory itself.
        _ => (db_dir.to_path_buf(), false),
    };
    StoreError::Damaged {
        path,
        exact,
        detail: format!("{e:?}"),
    }
}

fn engine(e: ::fjall::Error) -> StoreError {
    StoreError::Engine(format!("{e:?}"))
}

impl Store for FjallStore {
    fn get(&self, token: u64, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let stored = data_key(token, key)?;
        Ok(self.data.get(stored).map_err(engine)?.map(|v| v.to_vec()))
    }

    fn put(&self, token: u64, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let stored = data_key(token, key)?;
        check_len("value", value.len(), MAX_VALUE_LEN)?;
        self.check_writable()?;
        self.wrote(self.data.insert(stored, value))
    }

    fn delete(&self, token: u64, key: &[u8]) -> Result<(), StoreError> {
        let stored = data_key(token, key)?;
        self.check_writable()?;
        self.wrote(self.data.remove(stored))
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.check_writable()?;
        // Read before the flush below, so every write counted here is in what it flushes.
        let upto = self.writes.load(Ordering::Acquire);
        if upto == self.synced.load(Ordering::Acquire) {
            return Ok(());
        }
        // Under fjall's journal lock only long enough to write out its buffer; the fsync,
        // outside it, covers every write made before this point.
        self.db.persist(PersistMode::Buffer).map_err(engine)?;
        self.journal.sync().inspect_err(|e| {
            tracing::error!(dir = %self.dir.display(), "sync failed, refusing writes: {e}");
            self.sync_failed.store(true, Ordering::Release);
        })?;
        self.synced.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }

    fn is_synced(&self) -> bool {
        !self.sync_failed.load(Ordering::Acquire)
            && self.writes.load(Ordering::Acquire) == self.synced.load(Ordering::Acquire)
    }

    fn scan(
        &self,
        start: u64,
        end: u64,
        after: Option<(u64, Vec<u8>)>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::with_capacity(limit.min(1024));
        for range in scan_ranges(start, end, after.as_ref()) {
            for guard in self.data.range::<Vec<u8>, _>(range) {
                if out.len() >= limit {
                    return Ok(out);
                }
                let (stored, value) = guard.into_inner().map_err(engine)?;
                let (token, key) = split_data_key(&stored)?;
                out.push(Entry {
                    token,
                    key: key.to_vec(),
                    value: value.to_vec(),
                });
            }
        }
        Ok(out)
    }

    fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_len("meta name", name.len(), MAX_KEY_LEN)?;
        Ok(self
            .meta
            .get(name.as_bytes())
            .map_err(engine)?
            .map(|v| v.to_vec()))
    }

    fn meta_put(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        check_len("meta name", name.len(), MAX_KEY_LEN)?;
        check_len("value", value.len(), MAX_VALUE_LEN)?;
        self.check_writable()?;
        self.wrote(self.meta.insert(name.as_bytes(), value))
    }

    fn hint_get(&self, owner: &str, token: u64, key: &[u8]) -> Result<Option<Hint>, StoreError> {
        let stored = hint_key(owner, token, key)?;
        match self.hints.get(&stored).map_err(engine)? {
            Some(value) => decode_hint(&stored, &value).map(Some),
            None => Ok(None),
        }
    }

    fn hint_put(&self, hint: &Hint) -> Result<(), StoreError> {
        let stored = hint_key(&hint.owner, hint.token, &hint.key)?;
        let value = hint_value(hint.stored_ms, &hint.value)?;
        self.check_writable()?;
        let mut tallies = self.tallies();
        let replaced = self.stored_hint_len(&stored)?;
        self.wrote(self.hints.insert(stored, value))?;
        if let Some(old) = replaced {
            tallies.remove(&hint.owner, old);
        }
        tallies.add(&hint.owner, hint.value.len() as u64);
        Ok(())
    }

    fn hint_delete(&self, owner: &str, token: u64, key: &[u8]) -> Result<(), StoreError> {
        let stored = hint_key(owner, token, key)?;
        self.check_writable()?;
        let mut tallies = self.tallies();
        // Deleting nothing writes nothing (no tombstone).
        if let Some(old) = self.stored_hint_len(&stored)? {
            self.wrote(self.hints.remove(stored))?;
            tallies.remove(owner, old);
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
        let mut out = Vec::with_capacity(limit.min(1024));
        for guard in self.hints.range::<Vec<u8>, _>(range).take(limit) {
            let (stored, value) = guard.into_inner().map_err(engine)?;
            out.push(decode_hint(&stored, &value)?);
        }
        Ok(out)
    }

    fn hint_owners(&self, limit: usize) -> Result<Vec<HintOwner>, StoreError> {
        Ok(self.tallies().list(limit))
    }

    fn usage(&self) -> StoreUsage {
        StoreUsage {
            keys: u64::try_from(self.data.approximate_len()).ok(),
            disk_bytes: self.db.disk_space().ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synced_writes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = FjallStore::open(dir.path()).unwrap();
            s.put(1, b"a", b"1").unwrap();
            s.put(u64::MAX, b"z", b"2").unwrap();
            s.delete(1, b"a").unwrap();
            s.put(2, b"b", b"3").unwrap();
            s.meta_put("ring", b"epoch-7").unwrap();
            s.sync().unwrap();
        }
        let s = FjallStore::open(dir.path()).unwrap();
        assert_eq!(s.get(1, b"a").unwrap(), None);
        assert_eq!(s.get(2, b"b").unwrap(), Some(b"3".to_vec()));
        assert_eq!(s.meta_get("ring").unwrap(), Some(b"epoch-7".to_vec()));
        let all: Vec<_> = s
            .scan(0, 0, None, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.token)
            .collect();
        assert_eq!(all, [2, u64::MAX]);
    }

    /// A damaged file in the data directory stops the store from opening with an error that
    /// names it; nothing panics.
    #[test]
    fn a_damaged_store_is_refused_naming_the_damaged_file() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = FjallStore::open(dir.path()).unwrap();
            s.put(1, b"a", b"1").unwrap();
            s.sync().unwrap();
        }
        let version = dir.path().join(DB_DIR).join("version");
        let good = std::fs::read(&version).unwrap();
        std::fs::write(&version, b"garbage").unwrap();
        let Err(err) = FjallStore::open(dir.path()) else {
            panic!("opened a damaged store");
        };
        assert!(
            matches!(&err, StoreError::Damaged { path, .. } if *path == version),
            "{err}"
        );
        assert!(err.to_string().contains("db/version is damaged"), "{err}");

        // A keyspace's manifest pointer cut short.
        std::fs::write(&version, good).unwrap();
        let keyspaces = dir.path().join(DB_DIR).join("keyspaces");
        let mut damaged = 0;
        for entry in std::fs::read_dir(&keyspaces).unwrap() {
            let current = entry.unwrap().path().join("current");
            if current.exists() {
                std::fs::write(&current, b"x").unwrap();
                damaged += 1;
            }
        }
        assert!(
            damaged > 0,
            "no keyspace manifests in {}",
            keyspaces.display()
        );
        let Err(err) = FjallStore::open(dir.path()) else {
            panic!("opened a damaged store");
        };
        assert!(
            matches!(&err, StoreError::Damaged { path, .. } if *path == keyspaces),
            "{err}"
        );
        assert!(err.to_string().contains("a file in "), "{err}");
    }

    #[test]
    fn after_a_failed_sync_every_write_and_sync_fails() {
        let dir = tempfile::tempdir().unwrap();
        let s = FjallStore::open(dir.path()).unwrap();
        s.put(1, b"a", b"1").unwrap();
        s.sync().unwrap();
        // With its journal gone the store cannot make the next write durable.
        for entry in std::fs::read_dir(dir.path().join(DB_DIR)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "jnl") {
                std::fs::remove_file(path).unwrap();
            }
        }
        s.put(2, b"b", b"2").unwrap();
        assert!(matches!(s.sync(), Err(StoreError::Io { .. })));
        for err in [
            s.sync().unwrap_err(),
            s.put(3, b"c", b"3").unwrap_err(),
            s.delete(1, b"a").unwrap_err(),
            s.meta_put("ring", b"x").unwrap_err(),
            s.hint_put(&hint("n1", 1, "k", "v")).unwrap_err(),
            s.hint_delete("n1", 1, b"k").unwrap_err(),
        ] {
            assert!(err.to_string().contains("an earlier sync failed"), "{err}");
        }
        // Reads still answer.
        assert_eq!(s.get(1, b"a").unwrap(), Some(b"1".to_vec()));
    }

    #[test]
    fn is_synced_until_a_write_and_again_after_a_sync() {
        let dir = tempfile::tempdir().unwrap();
        let s = FjallStore::open(dir.path()).unwrap();
        assert!(s.is_synced(), "nothing written yet");
        s.put(1, b"a", b"1").unwrap();
        assert!(!s.is_synced());
        s.sync().unwrap();
        assert!(s.is_synced());
        for write in [
            |s: &FjallStore| s.delete(1, b"a"),
            |s: &FjallStore| s.meta_put("ring", b"x"),
            |s: &FjallStore| s.hint_put(&hint("n1", 1, "k", "v")),
            |s: &FjallStore| s.hint_delete("n1", 1, b"k"),
        ] {
            write(&s).unwrap();
            assert!(!s.is_synced());
            s.sync().unwrap();
            assert!(s.is_synced());
        }
        // A failed sync may have lost writes: the store never reports itself synced again.
        for entry in std::fs::read_dir(dir.path().join(DB_DIR)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "jnl") {
                std::fs::remove_file(path).unwrap();
            }
        }
        s.put(2, b"b", b"2").unwrap();
        assert!(s.sync().is_err());
        assert!(!s.is_synced(), "a failed store is never synced");
    }

    fn hint(owner: &str, token: u64, key: &str, value: &str) -> Hint {
        Hint {
            owner: owner.into(),
            token,
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            stored_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn synced_hints_and_their_tallies_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = FjallStore::open(dir.path()).unwrap();
            s.hint_put(&hint("n1", 9, "b", "12345")).unwrap();
            s.hint_put(&hint("n1", 2, "a", "x")).unwrap();
            s.hint_put(&hint("n2", 2, "a", "yy")).unwrap();
            s.hint_put(&hint("n3", 1, "z", "gone")).unwrap();
            s.hint_delete("n3", 1, b"z").unwrap();
            s.put(2, b"a", b"data").unwrap();
            s.sync().unwrap();
        }
        let s = FjallStore::open(dir.path()).unwrap();
        assert_eq!(
            s.hint_scan("n1", None, 10).unwrap(),
            [hint("n1", 2, "a", "x"), hint("n1", 9, "b", "12345")]
        );
        assert_eq!(
            s.hint_owners(10).unwrap(),
            [
                HintOwner {
                    owner: "n1".into(),
                    count: 2,
                    bytes: 6
                },
                HintOwner {
                    owner: "n2".into(),
                    count: 1,
                    bytes: 2
                },
            ]
        );
        assert_eq!(s.get(2, b"a").unwrap(), Some(b"data".to_vec()));
        assert_eq!(s.hint_get("n3", 1, b"z").unwrap(), None);
    }

    #[test]
    fn garbage_in_the_hints_keyspace_is_corrupt_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = FjallStore::open(dir.path()).unwrap();
            // A hint value shorter than its stamp, under a well-formed key.
            let short = hint_key("n1", 1, b"k").unwrap();
            s.hints.insert(short, &b"1234567"[..]).unwrap();
            for err in [
                s.hint_get("n1", 1, b"k").unwrap_err(),
                s.hint_scan("n1", None, 10).unwrap_err(),
                s.hint_put(&hint("n1", 1, "k", "v")).unwrap_err(),
                s.hint_delete("n1", 1, b"k").unwrap_err(),
            ] {
                assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
            }
            s.sync().unwrap();
        }
        let err = FjallStore::open(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("shorter than its 8-byte stamp"),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        {
            let s = FjallStore::open(dir.path()).unwrap();
            // A key that is not in the layout (owner length 0).
            s.hints.insert(&b"\x00junk"[..], &[0u8; 8][..]).unwrap();
            s.sync().unwrap();
        }
        let err = FjallStore::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let first = FjallStore::open(dir.path()).unwrap();
        let err = FjallStore::open(dir.path()).unwrap_err();
        match &err {
            StoreError::Locked { path } => assert_eq!(path, dir.path()),
            other => panic!("expected Locked, got {other:?}"),
        }
        assert!(err
            .to_string()
            .contains("is in use by another ringkv process"));
        drop(first);
        // Released with the store.
        assert!(FjallStore::open(dir.path()).is_ok());
    }

    #[test]
    fn open_reports_an_unusable_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let err = FjallStore::open(&file).unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }), "{err}");
    }
}
