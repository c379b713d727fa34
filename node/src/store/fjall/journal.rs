//! Fsyncing fjall's journal without holding its writer lock.
//!
//! fjall's `Database::persist(SyncAll)` fsyncs the journal while holding the journal writer's
//! mutex, which every write takes too, so a write made during a sync waited for the whole
//! fsync. [`FjallStore::sync`](super::FjallStore) instead has fjall move its buffer into the
//! file under that mutex (`PersistMode::Buffer`: one `write`, no fsync), then fsyncs the
//! active journal through a handle of its own, outside the mutex. An fsync covers the file,
//! whichever handle wrote it.
//!
//! Why the active journal is enough: fjall's journals are `<db>/<id>.jnl`, and the one with
//! the highest id is the one being written (fjall's recovery assumes the same). fjall fsyncs a
//! journal when it seals it, before creating the next one, and deletes a sealed journal only
//! once its writes are in fsynced tables. So a write flushed before we look is either in the
//! journal that is the newest when we look, or in one fsynced already.
//!
//! Looking need not list the directory each time (an `opendir`, `getdents` and `close` per
//! group commit, a few per cent of a node's CPU at low load). fjall names the next journal
//! `<id + 1>.jnl` when it seals `<id>`, and deletes sealed journals oldest first. So when
//! `<id>.jnl` still exists and, looked at after it, `<id + 1>.jnl` does not, `<id>` was not yet
//! sealed when we looked: it is the newest, and no newer one can have come and gone (it
//! would be deleted only after `<id>`). Two `stat`s then replace the listing.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::store::StoreError;

const JOURNAL_EXT: &str = ".jnl";

/// The journal fjall writes to, fsynced on demand.
pub(super) struct ActiveJournal {
    /// fjall's directory, where its journals are.
    dir: PathBuf,
    /// The newest journal synced and a handle on it, reused until fjall rotates it.
    handle: Mutex<Option<(u64, Arc<File>)>>,
}

impl ActiveJournal {
    pub(super) fn new(dir: PathBuf) -> Self {
        ActiveJournal {
            dir,
            handle: Mutex::new(None),
        }
    }

    /// Fsyncs the newest journal: call it after fjall flushed its buffer, and every write
    /// made before that flush is durable once this returns `Ok`.
    ///
    /// # Errors
    /// [`StoreError::Io`] if the directory cannot be read, holds no journal, or the fsync
    /// fails.
    pub(super) fn sync(&self) -> Result<(), StoreError> {
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        if let Some((id, file)) = self.still_newest() {
            let path = self.dir.join(format!("{id}{JOURNAL_EXT}"));
            return file.sync_all().map_err(io_error(&path));
        }
        let names = std::fs::read_dir(&self.dir)
            .and_then(|entries| {
                entries
                    .map(|entry| entry.map(|e| e.file_name()))
                    .collect::<io::Result<Vec<_>>>()
            })
            .map_err(io_error(&self.dir))?;
        let Some(id) = newest_journal(names.iter().filter_map(|n| n.to_str())) else {
            return Err(io_error(&self.dir)(io::Error::new(
                io::ErrorKind::NotFound,
                "no fjall journal to sync",
            )));
        };
        let path = self.dir.join(format!("{id}{JOURNAL_EXT}"));
        let file = match self.handle(id, &path) {
            Ok(file) => file,
            // Sealed and deleted since we looked: fjall fsynced it when it sealed it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(&path)(e)),
        };
        file.sync_all().map_err(io_error(&path))
    }

    /// The journal held and its handle, if it is still the newest (see the module comment).
    fn still_newest(&self) -> Option<(u64, Arc<File>)> {
        let (id, file) = self
            .handle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        let exists = |id: u64| {
            self.dir
                .join(format!("{id}{JOURNAL_EXT}"))
                .try_exists()
                .ok()
        };
        (exists(id)? && !exists(id.checked_add(1)?)?).then_some((id, file))
    }

    /// A handle on journal `id`, opened once; the lock is not held across the fsync, so
    /// concurrent syncs fsync at once rather than one after the other.
    fn handle(&self, id: u64, path: &Path) -> io::Result<Arc<File>> {
        // Nothing panics while the lock is held, so a poisoned lock still holds a valid entry.
        let mut handle = self.handle.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((open_id, file)) = handle.as_ref() {
            if *open_id == id {
                return Ok(file.clone());
            }
        }
        // Write access, which some platforms need to fsync; nothing is written through it.
        let file = Arc::new(OpenOptions::new().write(true).open(path)?);
        *handle = Some((id, file.clone()));
        Ok(file)
    }
}

/// The highest journal id among directory entry names (`<id>.jnl`; others are ignored).
fn newest_journal<'a>(names: impl Iterator<Item = &'a str>) -> Option<u64> {
    names
        .filter_map(|name| name.strip_suffix(JOURNAL_EXT)?.parse::<u64>().ok())
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_journal_has_the_highest_id_and_other_names_are_ignored() {
        let names = [
            "9.jnl",
            "10.jnl",
            "keyspaces",
            "version",
            "lock",
            "11.jnl.tmp",
            "x.jnl",
        ];
        assert_eq!(newest_journal(names.into_iter()), Some(10));
        assert_eq!(newest_journal(["lock", "version"].into_iter()), None);
    }

    #[test]
    fn a_directory_without_journals_cannot_be_synced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("version"), b"3").unwrap();
        let err = ActiveJournal::new(dir.path().to_path_buf())
            .sync()
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound),
            "{err}"
        );
    }

    #[test]
    fn a_handle_is_reused_until_the_journal_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let journal = ActiveJournal::new(dir.path().to_path_buf());
        std::fs::write(dir.path().join("0.jnl"), b"").unwrap();
        journal.sync().unwrap();
        let first = journal.handle(0, &dir.path().join("0.jnl")).unwrap();
        assert!(Arc::ptr_eq(
            &first,
            &journal.handle(0, &dir.path().join("0.jnl")).unwrap()
        ));
        assert_eq!(journal.still_newest().map(|(id, _)| id), Some(0));
        std::fs::write(dir.path().join("1.jnl"), b"").unwrap();
        assert!(journal.still_newest().is_none(), "0 was sealed: 1 exists");
        journal.sync().unwrap();
        let (id, _) = journal.handle.lock().unwrap().clone().unwrap();
        assert_eq!(id, 1);
        // Sealed and deleted oldest first: 1 went after 2 was made; the listing finds 2.
        std::fs::write(dir.path().join("2.jnl"), b"").unwrap();
        std::fs::remove_file(dir.path().join("1.jnl")).unwrap();
        assert!(journal.still_newest().is_none());
        journal.sync().unwrap();
        let (id, _) = journal.handle.lock().unwrap().clone().unwrap();
        assert_eq!(id, 2);
        assert_eq!(journal.still_newest().map(|(id, _)| id), Some(2));
    }
}
