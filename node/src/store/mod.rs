//! Storage: the [`Store`] trait and its two engines, [`FjallStore`] (durable, on disk) and
//! [`MemoryStore`] (tests and the simulator, with explicit crashes).
//!
//! Data keys are laid out as `token (u64 big-endian) ‖ user key`, so the keys of one ring
//! range `(start, end]` are one contiguous scan (what anti-entropy and handoff need). Small
//! named metadata values live apart from the data, and so do [`Hint`]s (records kept for
//! a replica that was down, until they can be handed off to it).
//!
//! Writes are visible at once and durable after the next [`Store::sync`]; the caller decides
//! when to sync (after every batch for [`Durability::Sync`], never for
//! [`Durability::Buffered`]), which lets one fsync cover many writes (group commit).

mod fjall;
mod hints;
mod memory;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod hint_conformance;

use std::fmt;
use std::ops::Bound;
use std::path::PathBuf;
use std::str::FromStr;

pub use self::fjall::FjallStore;
pub use self::hints::{Hint, HintOwner, MAX_OWNER_LEN};
pub use self::memory::MemoryStore;

/// The stored layouts' decoders, reached by the fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::hints::decode_hint;
    pub use super::split_data_key;
}

/// The longest user key a store accepts: the engine's 65535-byte key limit minus the token
/// and the longest hint owner prefix, so that every key a store holds can also be hinted.
pub const MAX_KEY_LEN: usize = u16::MAX as usize - TOKEN_LEN - hints::MAX_OWNER_PREFIX_LEN;

/// The longest value a store accepts: the engine's limit minus a hint's `stored_ms` stamp, so
/// that every value a store holds can also be hinted.
pub const MAX_VALUE_LEN: usize = u32::MAX as usize - hints::STAMP_LEN;

/// Bytes of the token prefix of every data key.
const TOKEN_LEN: usize = 8;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The operating system refused a file operation.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Another process (or another store in this one) holds the data directory.
    #[error("data directory {} is in use by another ringkv process", path.display())]
    Locked {
        /// The data directory.
        path: PathBuf,
    },
    /// Stored bytes that this code never writes.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The store cannot be opened: a file of it is damaged (or was written by another
    /// version). Nothing was changed; the node does not start on it.
    #[error(
        "cannot open the store: {} is damaged or was not written by this version of ringkv ({detail})",
        if *exact { path.display().to_string() } else { format!("a file in {}", path.display()) }
    )]
    Damaged {
        /// The damaged file, or the narrowest directory holding it that the error points at.
        path: PathBuf,
        /// Whether `path` is the damaged file itself (not a directory holding it).
        exact: bool,
        /// What the storage engine reported.
        detail: String,
    },
    /// A hint owner (node) name that is empty or longer than [`MAX_OWNER_LEN`] bytes.
    #[error("hint owner name is {len} bytes: expected 1 to {MAX_OWNER_LEN}")]
    HintOwner {
        /// The name's length in bytes.
        len: usize,
    },
    /// A key or value over the engine's limits.
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// `"key"`, `"value"` or `"meta name"`.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The storage engine failed (for fjall after a failed fsync every later write fails
    /// too: restart the node).
    #[error("storage engine error: {0}")]
    Engine(String),
}

/// When a write is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Durability {
    /// After an fsync that covers it (group commit): survives power loss.
    #[default]
    Sync,
    /// Once it is in the operating system's buffers: survives a process crash, not power
    /// loss.
    Buffered,
}

/// A durability name that is neither `sync` nor `buffered`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown durability {0:?}: expected \"sync\" or \"buffered\"")]
pub struct UnknownDurability(pub String);

impl FromStr for Durability {
    type Err = UnknownDurability;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sync" => Ok(Durability::Sync),
            "buffered" => Ok(Durability::Buffered),
            other => Err(UnknownDurability(other.to_owned())),
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Durability::Sync => "sync",
            Durability::Buffered => "buffered",
        })
    }
}

/// One stored key, as returned by [`Store::scan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The key's ring token.
    pub token: u64,
    /// The user key.
    pub key: Vec<u8>,
    /// The stored bytes (an encoded record).
    pub value: Vec<u8>,
}

/// A key-value store partitioned by ring token.
///
/// ```
/// use ringkv::store::{MemoryStore, Store};
///
/// let store = MemoryStore::new();
/// store.put(42, b"k", b"v")?;
/// store.sync()?;
/// assert_eq!(store.get(42, b"k")?, Some(b"v".to_vec()));
/// let all = store.scan(0, 0, None, 10)?; // (0, 0] wraps: the whole ring
/// assert_eq!(all.len(), 1);
/// # Ok::<(), ringkv::store::StoreError>(())
/// ```
pub trait Store: Send + Sync + 'static {
    /// The value of `key` (whose token is `token`), if any.
    ///
    /// # Errors
    /// Engine or I/O failures.
    fn get(&self, token: u64, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores `value` under `key`: visible at once, durable after the next [`sync`](Self::sync).
    ///
    /// # Errors
    /// [`StoreError::TooLarge`] over [`MAX_KEY_LEN`] / [`MAX_VALUE_LEN`], engine or I/O failures.
    fn put(&self, token: u64, key: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// Removes `key`: visible at once, durable after the next [`sync`](Self::sync).
    ///
    /// # Errors
    /// [`StoreError::TooLarge`] over [`MAX_KEY_LEN`], engine or I/O failures.
    fn delete(&self, token: u64, key: &[u8]) -> Result<(), StoreError>;

    /// Makes everything written before the call durable (fsync) before returning. A
    /// group-commit loop calls it once for many writes.
    ///
    /// # Errors
    /// Engine or I/O failures; nothing written since the last successful sync is then durable.
    fn sync(&self) -> Result<(), StoreError>;

    /// Whether every write made before the call is already durable, so a
    /// [`sync`](Self::sync) now would have nothing to do. `false` when the store cannot tell.
    fn is_synced(&self) -> bool {
        false
    }

    /// Entries with token in `(start, end]` (wrapping past `u64::MAX` when `start >= end`, so
    /// `start == end` is the whole ring), in ring order from `start` and then key order,
    /// resuming strictly after `after`, at most `limit` of them.
    ///
    /// # Errors
    /// Engine or I/O failures, [`StoreError::Corrupt`] for a malformed stored key.
    fn scan(
        &self,
        start: u64,
        end: u64,
        after: Option<(u64, Vec<u8>)>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError>;

    /// A named metadata value, if set.
    ///
    /// # Errors
    /// Engine or I/O failures.
    fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Sets a named metadata value (durable after the next [`sync`](Self::sync)).
    ///
    /// # Errors
    /// [`StoreError::TooLarge`], engine or I/O failures.
    fn meta_put(&self, name: &str, value: &[u8]) -> Result<(), StoreError>;

    /// The hint for `owner` under `key` (whose token is `token`), if any.
    ///
    /// # Errors
    /// [`StoreError::HintOwner`], [`StoreError::TooLarge`] over [`MAX_KEY_LEN`],
    /// [`StoreError::Corrupt`] for a malformed stored hint, engine or I/O failures.
    fn hint_get(&self, owner: &str, token: u64, key: &[u8]) -> Result<Option<Hint>, StoreError>;

    /// Stores `hint`, replacing any hint for the same (owner, token, key): visible at once,
    /// durable after the next [`sync`](Self::sync). Hints live apart from data and meta.
    ///
    /// # Errors
    /// [`StoreError::HintOwner`], [`StoreError::TooLarge`] over [`MAX_KEY_LEN`] /
    /// [`MAX_VALUE_LEN`], [`StoreError::Corrupt`] if the hint it replaces is malformed,
    /// engine or I/O failures.
    fn hint_put(&self, hint: &Hint) -> Result<(), StoreError>;

    /// Removes the hint for `owner` under `key` (once delivered or expired); removing a hint
    /// that is not there is not an error.
    ///
    /// # Errors
    /// As [`hint_put`](Self::hint_put).
    fn hint_delete(&self, owner: &str, token: u64, key: &[u8]) -> Result<(), StoreError>;

    /// Hints for `owner` in (token, key) order, strictly after `after`, at most `limit` of
    /// them: one contiguous read, so handoff can page through an owner's hints.
    ///
    /// # Errors
    /// [`StoreError::HintOwner`], [`StoreError::TooLarge`] for an `after` key over
    /// [`MAX_KEY_LEN`], [`StoreError::Corrupt`] for a malformed stored hint, engine or I/O
    /// failures.
    fn hint_scan(
        &self,
        owner: &str,
        after: Option<(u64, Vec<u8>)>,
        limit: usize,
    ) -> Result<Vec<Hint>, StoreError>;

    /// At most `limit` owners that have hints, in byte order of their names, each with how
    /// many hints it has and their total record bytes. Served from counters kept in memory:
    /// O(owners listed), whatever the number of hints.
    ///
    /// # Errors
    /// Engine failures (none for the engines here, which keep the counters in memory).
    fn hint_owners(&self, limit: usize) -> Result<Vec<HintOwner>, StoreError>;

    /// Keys and bytes this store holds, for metrics and `ringctl cluster status`; cheap (no
    /// scan). `None` where the engine cannot tell.
    fn usage(&self) -> StoreUsage {
        StoreUsage::default()
    }
}

/// What a store holds, as cheaply as the engine can tell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreUsage {
    /// Data keys (tombstones included), approximate: fjall counts a key deleted but not yet
    /// compacted away.
    pub keys: Option<u64>,
    /// Bytes on disk (journals and tables); `None` for a store kept in memory.
    pub disk_bytes: Option<u64>,
}

/// The stored data key: `token (big-endian) ‖ key`.
fn data_key(token: u64, key: &[u8]) -> Result<Vec<u8>, StoreError> {
    check_len("key", key.len(), MAX_KEY_LEN)?;
    let mut out = Vec::with_capacity(TOKEN_LEN + key.len());
    out.extend_from_slice(&token.to_be_bytes());
    out.extend_from_slice(key);
    Ok(out)
}

/// Splits a stored data key back into token and user key.
pub fn split_data_key(stored: &[u8]) -> Result<(u64, &[u8]), StoreError> {
    match stored.split_first_chunk::<TOKEN_LEN>() {
        Some((token, key)) => Ok((u64::from_be_bytes(*token), key)),
        None => Err(StoreError::Corrupt(format!(
            "data key of {} bytes is shorter than its {TOKEN_LEN}-byte token",
            stored.len()
        ))),
    }
}

fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), StoreError> {
    if len > max {
        return Err(StoreError::TooLarge { what, len, max });
    }
    Ok(())
}

/// A range of stored data keys.
type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The stored-key ranges to read, in order, for a [`Store::scan`]: the token range
/// `(start, end]` split where it wraps, starting strictly after `after`.
fn scan_ranges(start: u64, end: u64, after: Option<&(u64, Vec<u8>)>) -> Vec<KeyRange> {
    // Inclusive token intervals in ring order.
    let mut segments = Vec::with_capacity(2);
    if start < end {
        segments.push((start + 1, end));
    } else {
        if start < u64::MAX {
            segments.push((start + 1, u64::MAX));
        }
        segments.push((0, end));
    }
    let mut ranges = Vec::with_capacity(2);
    let mut resumed = after.is_none();
    for (lo, hi) in segments {
        let upper = match hi.checked_add(1) {
            Some(next) => Bound::Excluded(next.to_be_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        let lower = match after {
            Some((token, key)) if !resumed => {
                if !(lo..=hi).contains(token) {
                    // `after` is in a later segment (or outside the range): skip this one.
                    continue;
                }
                resumed = true;
                let mut stored = token.to_be_bytes().to_vec();
                stored.extend_from_slice(key);
                Bound::Excluded(stored)
            }
            _ => Bound::Included(lo.to_be_bytes().to_vec()),
        };
        ranges.push((lower, upper));
    }
    // An `after` outside `(start, end]` skipped every segment: nothing comes after it.
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_parses_and_prints() {
        for d in [Durability::Sync, Durability::Buffered] {
            assert_eq!(d.to_string().parse::<Durability>(), Ok(d));
        }
        let err = "fsync".parse::<Durability>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown durability \"fsync\": expected \"sync\" or \"buffered\""
        );
    }

    #[test]
    fn data_keys_round_trip_and_sort_by_token() {
        let a = data_key(1, b"zzz").unwrap();
        let b = data_key(256, b"a").unwrap();
        assert!(a < b);
        assert_eq!(split_data_key(&b).unwrap(), (256, &b"a"[..]));
        assert!(matches!(
            split_data_key(b"short"),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            data_key(0, &vec![0; MAX_KEY_LEN + 1]),
            Err(StoreError::TooLarge { what: "key", .. })
        ));
    }

    #[test]
    fn locked_error_names_the_directory() {
        let err = StoreError::Locked { path: "/x".into() };
        assert_eq!(
            err.to_string(),
            "data directory /x is in use by another ringkv process"
        );
    }

    #[test]
    fn scan_ranges_skip_segments_before_after_and_end_outside() {
        // Wrapping range, resuming in the second segment: one range left.
        assert_eq!(scan_ranges(10, 5, Some(&(3, b"k".to_vec()))).len(), 1);
        assert_eq!(scan_ranges(10, 5, Some(&(11, b"k".to_vec()))).len(), 2);
        // `after` outside (10, 5]: nothing.
        assert!(scan_ranges(10, 5, Some(&(7, Vec::new()))).is_empty());
        assert!(scan_ranges(1, 5, Some(&(9, Vec::new()))).is_empty());
        // (MAX, x] is only the low segment.
        assert_eq!(scan_ranges(u64::MAX, 5, None).len(), 1);
    }
}
