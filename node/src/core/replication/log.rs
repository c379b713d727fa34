//! What a node keeps of a shard's log: its durable position and an in-memory backlog.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::msg::{LogEntry, Position};
use crate::store::{Store, StoreError};
use crate::version::Record;

/// A shard's replication state that must survive a restart, kept in the store's metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    /// The newest epoch this node voted in or followed: it refuses anything older.
    pub promised: u64,
    /// Epoch of the last entry applied (compared in elections).
    pub log_epoch: u64,
    /// Offset of the last entry applied.
    pub offset: u64,
    /// Lineage of the log held; empty before the node followed any primary, or while a full
    /// resync is half done.
    pub replid: String,
    /// The lineage this one continued, and where it ended (PSYNC2).
    pub prev_replid: String,
    /// Last offset of `prev_replid`.
    pub prev_end: u64,
    /// A digest of the shard's token ranges in the ring this log was kept under (0: not
    /// recorded): a log kept under other ranges is closed before use (see `handover.rs`).
    pub ranges: u64,
}

/// A shard's state as written before `ranges` was recorded.
#[derive(Deserialize)]
struct Unbound {
    promised: u64,
    log_epoch: u64,
    offset: u64,
    replid: String,
    prev_replid: String,
    prev_end: u64,
}

impl ShardMeta {
    /// The store metadata name of a shard's state.
    fn name(shard: &[String]) -> String {
        Self::named("ranged", shard)
    }

    /// The name a shard's state had before ranges were recorded (read, never written).
    pub(super) fn unbound_name(shard: &[String]) -> String {
        Self::named("repl", shard)
    }

    pub(super) fn named(prefix: &str, shard: &[String]) -> String {
        let mut h = blake3::Hasher::new();
        for n in shard {
            h.update(&(n.len() as u64).to_be_bytes());
            h.update(n.as_bytes());
        }
        format!("{prefix}-{}", &h.finalize().to_hex()[..32])
    }

    /// What the store holds for `shard`, or a fresh state.
    ///
    /// A stored state that does not decode is an error, never a fresh state: starting over
    /// would forget the epoch this node promised and let it vote twice in that epoch.
    pub fn load(store: &dyn Store, shard: &[String]) -> Result<Self, StoreError> {
        let name = Self::name(shard);
        if let Some(bytes) = store.meta_get(&name)? {
            return postcard::from_bytes(&bytes).map_err(|e| {
                StoreError::Corrupt(format!("replication state {name} does not decode: {e}"))
            });
        }
        // Written before ranges were recorded (under its own name, so a damaged state of
        // either layout is never taken for the other): kept, and closed when first bound.
        let name = Self::unbound_name(shard);
        let Some(bytes) = store.meta_get(&name)? else {
            return Ok(Self::default());
        };
        postcard::from_bytes::<Unbound>(&bytes)
            .map(|u| Self {
                promised: u.promised,
                log_epoch: u.log_epoch,
                offset: u.offset,
                replid: u.replid,
                prev_replid: u.prev_replid,
                prev_end: u.prev_end,
                ranges: 0,
            })
            .map_err(|e| {
                StoreError::Corrupt(format!("replication state {name} does not decode: {e}"))
            })
    }

    /// Write it (synced with the next group commit).
    pub fn save(&self, store: &dyn Store, shard: &[String]) -> Result<(), StoreError> {
        let bytes = postcard::to_stdvec(self).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        store.meta_put(&Self::name(shard), &bytes)
    }

    /// Where this node stands.
    pub fn position(&self) -> Position {
        Position {
            replid: self.replid.clone(),
            offset: self.offset,
        }
    }

    /// Whether a node at `pos` holds a prefix of this log (so it can resync partially).
    pub fn continues(&self, pos: &Position) -> bool {
        !pos.replid.is_empty()
            && ((pos.replid == self.replid && pos.offset <= self.offset)
                || (pos.replid == self.prev_replid && pos.offset <= self.prev_end))
    }
}

/// What a key held when the log stood at a commit point, as a primary's backlog tells it.
#[derive(Debug, PartialEq, Eq)]
pub enum AsOf {
    /// No entry past the commit point touches the key: the store holds its committed record.
    Stored,
    /// The key's record at the commit point (the store already holds a later, uncommitted one).
    Logged(Record),
    /// Unknown until the log is committed up to this offset.
    After(u64),
}

/// The most recent entries, bounded in bytes, for partial resyncs.
#[derive(Debug)]
pub struct Backlog {
    entries: VecDeque<LogEntry>,
    bytes: usize,
    max_bytes: usize,
}

impl Backlog {
    /// An empty backlog of at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Add the next entry, evicting the oldest past the bound. Entries must follow the last
    /// one; anything else restarts the backlog at `entry`.
    pub fn push(&mut self, entry: LogEntry) {
        if self.last().is_some_and(|last| last + 1 != entry.offset) {
            self.clear();
        }
        self.bytes += entry.weight();
        self.entries.push_back(entry);
        while self.bytes > self.max_bytes && self.entries.len() > 1 {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= old.weight();
            }
        }
    }

    /// Forget everything (the log was replaced by a snapshot).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Offset of the oldest entry held.
    pub fn first(&self) -> Option<u64> {
        self.entries.front().map(|e| e.offset)
    }

    /// Offset of the newest entry held.
    pub fn last(&self) -> Option<u64> {
        self.entries.back().map(|e| e.offset)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether a node at `offset` can be sent what follows from here (`head` is the log's
    /// last offset).
    pub fn covers(&self, offset: u64, head: u64) -> bool {
        offset == head
            || self
                .first()
                .is_some_and(|f| offset + 1 >= f && offset <= head)
    }

    /// What `key` held when the log (whose last offset is `head`) stood at `commit`. A primary
    /// stores a write before a majority holds it; a linearizable read must not show it until
    /// then, since a failover may still drop it.
    pub fn as_of(&self, head: u64, commit: u64, token: u64, key: &[u8]) -> AsOf {
        if commit >= head {
            return AsOf::Stored;
        }
        if self.first().is_none_or(|f| f > commit + 1) {
            // Part of the uncommitted tail left the backlog: it may touch the key.
            return AsOf::After(head);
        }
        let mut newer = None;
        for e in self.entries.iter().rev() {
            let same = e.token == token && e.key == key;
            if e.offset > commit {
                if same && newer.is_none() {
                    newer = Some(e.offset);
                }
                continue;
            }
            match newer {
                None => return AsOf::Stored,
                Some(_) if same => return AsOf::Logged(e.record.clone()),
                Some(_) => {}
            }
        }
        newer.map_or(AsOf::Stored, AsOf::After)
    }

    /// Entries after `offset`, at most `max_entries` and about `max_bytes`.
    pub fn since(&self, offset: u64, max_entries: usize, max_bytes: usize) -> Vec<LogEntry> {
        self.since_bounded(offset, max_entries, max_bytes).0
    }

    /// [`Backlog::since`], and whether `max_bytes` cut the batch short (entries that would
    /// fit `max_entries` were left for the next).
    pub fn since_bounded(
        &self,
        offset: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> (Vec<LogEntry>, bool) {
        let mut out = Vec::new();
        let mut bytes = 0;
        let Some(first) = self.first() else {
            return (out, false);
        };
        let skip = usize::try_from((offset + 1).saturating_sub(first)).unwrap_or(usize::MAX);
        for e in self.entries.iter().skip(skip) {
            if out.len() >= max_entries {
                break;
            }
            if bytes > 0 && bytes + e.weight() > max_bytes {
                return (out, true);
            }
            bytes += e.weight();
            out.push(e.clone());
        }
        (out, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Timestamp;
    use crate::version::{DvvSet, Sibling};

    fn entry(offset: u64, size: usize) -> LogEntry {
        LogEntry {
            offset,
            epoch: 1,
            token: 0,
            key: b"k".to_vec(),
            record: DvvSet::new(Sibling {
                value: Some(vec![0; size]),
                ts: Timestamp::default(),
                origin: "n".into(),
            }),
        }
    }

    #[test]
    fn backlog_evicts_oldest_past_its_bound_and_serves_what_it_holds() {
        let w = entry(1, 100).weight();
        let mut b = Backlog::new(w * 3);
        for o in 1..=5 {
            b.push(entry(o, 100));
        }
        assert_eq!((b.first(), b.last()), (Some(3), Some(5)));
        assert!(b.covers(2, 5), "a node at 2 needs 3.. which is held");
        assert!(!b.covers(1, 5), "a node at 1 needs 2, evicted");
        assert!(b.covers(5, 5));
        let got: Vec<u64> = b
            .since(3, 10, usize::MAX)
            .iter()
            .map(|e| e.offset)
            .collect();
        assert_eq!(got, vec![4, 5]);
        assert_eq!(b.since(2, 1, usize::MAX).len(), 1, "bounded by count");
        assert_eq!(b.since(2, 10, 1).len(), 1, "bounded by bytes, at least one");
        assert!(b.since_bounded(2, 10, 1).1, "cut by bytes");
        assert!(
            !b.since_bounded(2, 1, usize::MAX).1,
            "cut by count, not bytes"
        );
        assert!(!b.since_bounded(2, 10, usize::MAX).1, "all of it");
    }

    #[test]
    fn a_key_as_of_the_commit_point_never_shows_an_uncommitted_write() {
        let keyed = |offset, key: &str, size| LogEntry {
            key: key.as_bytes().to_vec(),
            ..entry(offset, size)
        };
        let mut b = Backlog::new(1 << 20);
        b.push(keyed(1, "x", 1));
        b.push(keyed(2, "y", 1));
        b.push(keyed(3, "x", 2));
        b.push(keyed(4, "y", 3));
        let t = entry(0, 0).token;
        assert_eq!(b.as_of(4, 4, t, b"x"), AsOf::Stored, "all committed");
        assert_eq!(
            b.as_of(4, 3, t, b"x"),
            AsOf::Stored,
            "x untouched past the commit point"
        );
        assert_eq!(
            b.as_of(4, 2, t, b"x"),
            AsOf::Logged(keyed(1, "x", 1).record),
            "x's committed record comes from the backlog"
        );
        assert_eq!(
            b.as_of(4, 1, t, b"y"),
            AsOf::After(4),
            "y's committed record is older than the backlog: wait for its newest write"
        );
        let mut short = Backlog::new(keyed(1, "x", 1).weight() * 2);
        for o in 1..=4 {
            short.push(keyed(o, "z", 1));
        }
        assert_eq!(
            short.as_of(4, 1, t, b"x"),
            AsOf::After(4),
            "an uncommitted entry left the backlog: wait for the whole log"
        );
    }

    #[test]
    fn a_gap_restarts_the_backlog() {
        let mut b = Backlog::new(1 << 20);
        b.push(entry(1, 1));
        b.push(entry(5, 1));
        assert_eq!(b.first(), Some(5));
    }

    #[test]
    fn positions_continue_this_log_or_the_one_before() {
        let meta = ShardMeta {
            replid: "b".into(),
            offset: 10,
            prev_replid: "a".into(),
            prev_end: 6,
            ..ShardMeta::default()
        };
        let at = |r: &str, o| Position {
            replid: r.into(),
            offset: o,
        };
        assert!(meta.continues(&at("b", 8)));
        assert!(meta.continues(&at("a", 6)));
        assert!(
            !meta.continues(&at("a", 7)),
            "past the old lineage's end: diverged"
        );
        assert!(!meta.continues(&at("b", 11)));
        assert!(!meta.continues(&at("", 0)), "never followed: full resync");
    }

    #[test]
    fn meta_round_trips_through_the_store() {
        let store = crate::store::MemoryStore::new();
        let shard = vec!["a".to_string(), "b".to_string()];
        let meta = ShardMeta {
            promised: 3,
            offset: 9,
            replid: "x".into(),
            ..ShardMeta::default()
        };
        meta.save(&store, &shard).unwrap();
        assert_eq!(ShardMeta::load(&store, &shard).unwrap(), meta);
        let other = vec!["b".to_string(), "a".to_string()];
        assert_eq!(
            ShardMeta::load(&store, &other).unwrap(),
            ShardMeta::default()
        );
    }

    #[test]
    fn a_damaged_meta_is_an_error_not_a_fresh_state() {
        let store = crate::store::MemoryStore::new();
        let shard = vec!["a".to_string(), "b".to_string()];
        ShardMeta {
            promised: 7,
            ..ShardMeta::default()
        }
        .save(&store, &shard)
        .unwrap();
        // Cut the stored state short: the promised epoch must not read back as 0.
        let name = ShardMeta::name(&shard);
        let bytes = store.meta_get(&name).unwrap().unwrap();
        store.meta_put(&name, &bytes[..bytes.len() - 1]).unwrap();
        let err = ShardMeta::load(&store, &shard).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains(&name)),
            "{err}"
        );
    }
}
