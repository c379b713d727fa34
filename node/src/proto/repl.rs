//! Messages of the per-shard replication protocol.
//!
//! A shard is the ordered preference list a set of ring ranges shares; its first live node is
//! the primary. Every message names the shard by that list and carries the sender's epoch, so a
//! node that promised a newer epoch refuses it (fencing).

use serde::{Deserialize, Serialize};

use crate::version::Record;

/// One write in a shard's replication log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the log: the first write of a lineage follows the offset it started at.
    pub offset: u64,
    /// Epoch of the primary that ordered it.
    pub epoch: u64,
    /// The key's token.
    pub token: u64,
    /// The key.
    pub key: Vec<u8>,
    /// The whole record after the write: applying it replaces what a replica held.
    pub record: Record,
}

impl LogEntry {
    /// Bytes it weighs in a backlog or a batch.
    pub fn weight(&self) -> usize {
        let values: usize = self
            .record
            .values()
            .iter()
            .map(|s| s.value.as_ref().map_or(0, Vec::len) + s.origin.len() + 16)
            .sum();
        self.key.len() + values + 48
    }
}

/// Where a node stands in a shard's log (Redis: replication id and offset).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Lineage of the log it holds; empty when it never followed a primary.
    pub replid: String,
    /// Offset of the last entry it applied.
    pub offset: u64,
}

/// A node asks another about one shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplRequest {
    /// A candidate asks for a vote for `epoch`; `log_epoch`/`offset` say how complete its log
    /// is (a voter refuses a candidate behind itself).
    Vote {
        /// The shard.
        shard: Vec<String>,
        /// The epoch the candidate wants.
        epoch: u64,
        /// Epoch of the candidate's last entry.
        log_epoch: u64,
        /// Offset of the candidate's last entry.
        offset: u64,
    },
    /// The primary sends entries following `from` (none: a heartbeat or a probe).
    Append {
        /// The shard.
        shard: Vec<String>,
        /// The primary's epoch.
        epoch: u64,
        /// The primary's lineage and the one it continued (PSYNC2's second id), with the offset
        /// where that one ended.
        replid: String,
        /// The lineage before this primary.
        prev_replid: String,
        /// Where the previous lineage ended.
        prev_end: u64,
        /// The offset the receiver must be at to apply `entries`.
        from: u64,
        /// Entries `from + 1 ..`.
        entries: Vec<LogEntry>,
        /// Offset known to be held by a majority.
        commit: u64,
        /// Chain topology: the primary, and the replicas the receiver passes the append on to
        /// (`None`: sent by the primary to this replica alone).
        relay: Option<Relay>,
    },
    /// One page of a full resync: the receiver's keys of the shard's ranges are replaced.
    Snapshot {
        /// The shard.
        shard: Vec<String>,
        /// The primary's epoch.
        epoch: u64,
        /// The primary's lineage.
        replid: String,
        /// The snapshot stands for the log up to this offset (the entries after it follow).
        at: u64,
        /// Epoch of the entry at `at`.
        at_epoch: u64,
        /// The token interval `(start, end]` and the key span this page covers: the receiver
        /// drops its primary-mode keys there that the page does not hold.
        span: SnapshotSpan,
        /// The page's keys.
        items: Vec<(u64, Vec<u8>, Record)>,
        /// The last page.
        done: bool,
    },
    /// A primary asks itself: answered once its store synced the log up to `offset`.
    Flush {
        /// The shard.
        shard: Vec<String>,
        /// The log offset to make durable.
        offset: u64,
    },
    /// A new lineage's primary collects what the receiver held before the shard had a primary
    /// (writes made in quorum mode), to merge them into its log.
    Collect {
        /// The shard.
        shard: Vec<String>,
        /// The primary's epoch.
        epoch: u64,
        /// Where the page starts.
        cursor: Cursor,
    },
    /// Would the receiver vote for `epoch`? Asked before standing, promising nothing, so a
    /// node that cannot win (its log is behind, or the primary is heard) never raises the
    /// epoch and so never fences a working primary (Raft's pre-vote).
    PreVote {
        /// The shard.
        shard: Vec<String>,
        /// The epoch the candidate would ask for.
        epoch: u64,
        /// Epoch of the candidate's last entry.
        log_epoch: u64,
        /// Offset of the candidate's last entry.
        offset: u64,
    },
    /// A [`ReplRequest::Collect`] whose answer also names the logs the receiver's keys were
    /// last written under (`ReplReply::Gathered`), so that of two values of a key the one an
    /// old list may have committed is kept (see ARCHITECTURE.md, "Handover between
    /// preference lists").
    Gather {
        /// The shard.
        shard: Vec<String>,
        /// The primary's epoch.
        epoch: u64,
        /// Where the page starts.
        cursor: Cursor,
    },
}

/// A log a ring change closed on the node that reports it: that node's keys in `ranges` were
/// last written under the log of preference list `list` (a digest of it), which stood at
/// `(log_epoch, offset)` when it closed. Of two such logs of one list, the one ahead (compared
/// as in an election) holds every write that list committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedLog {
    /// Digest of the preference list whose log it was.
    pub list: u64,
    /// Epoch of its last entry.
    pub log_epoch: u64,
    /// Offset of its last entry.
    pub offset: u64,
    /// The token ranges `(start, end]` it was kept for.
    pub ranges: Vec<(u64, u64)>,
}

impl ClosedLog {
    /// Whether it was kept for `token`.
    pub fn covers(&self, token: u64) -> bool {
        self.ranges.iter().any(|&(start, end)| {
            if start < end {
                start < token && token <= end
            } else {
                token > start || token <= end
            }
        })
    }
}

/// The route of an append streamed by chain: the receiver applies it, then passes it to the
/// first of `next` it can reach (with the rest of the list) and answers with what it learned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relay {
    /// The primary that ordered the entries (the sender may be another replica).
    pub primary: String,
    /// Replicas after the receiver, in chain order.
    pub next: Vec<String>,
}

/// Where a scan over a shard's token ranges is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Index into the shard's token ranges, as the primary lists them.
    pub range: u32,
    /// The last key returned in that range.
    pub after: Option<(u64, Vec<u8>)>,
}

/// What one snapshot page covers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSpan {
    /// Token interval start (exclusive).
    pub start: u64,
    /// Token interval end (inclusive).
    pub end: u64,
    /// Keys after this one (all when `None`)...
    pub after: Option<(u64, Vec<u8>)>,
    /// ...up to and including this one (to the interval's end when `None`).
    pub upto: Option<(u64, Vec<u8>)>,
}

/// The answer to a [`ReplRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplReply {
    /// The vote is given; the voter follows nobody older from now on.
    Granted,
    /// The vote is refused.
    Refused {
        /// The newest epoch the voter promised.
        promised: u64,
        /// The voter's log is ahead of the candidate's (it will run itself).
        ahead: bool,
        /// Why, for logs.
        reason: String,
    },
    /// Entries (or a snapshot page) applied; the receiver is at `offset`.
    Acked {
        /// The receiver's offset now.
        offset: u64,
        /// Chain topology: offsets the replicas after the receiver acknowledged for the same
        /// append (at most the shard's size; empty otherwise).
        downstream: Vec<(String, u64)>,
    },
    /// The receiver cannot apply from there: here is where it stands (PSYNC).
    Behind(Position),
    /// The sender's epoch is older than one the receiver promised.
    Fenced {
        /// The receiver's promised epoch.
        promised: u64,
    },
    /// One page of the receiver's keys.
    Collected {
        /// The keys.
        items: Vec<(u64, Vec<u8>, Record)>,
        /// Where the next page starts; `None` when done.
        next: Option<Cursor>,
    },
    /// One page of the receiver's keys (the answer to [`ReplRequest::Gather`]), with the
    /// closed logs they were last written under (on the first page only).
    Gathered {
        /// The keys.
        items: Vec<(u64, Vec<u8>, Record)>,
        /// The receiver's closed logs of the shard's ranges, newest last.
        closed: Vec<ClosedLog>,
        /// Where the next page starts; `None` when done.
        next: Option<Cursor>,
    },
}

impl ReplReply {
    /// `Acked` at `offset`, with nothing learned from other replicas.
    pub fn acked(offset: u64) -> Self {
        Self::Acked {
            offset,
            downstream: Vec::new(),
        }
    }
}
