//! An opt-in record of every change to a node's shard logs, for the simulator's checker: each
//! entry appended or applied, each lineage started, each snapshot taken. Off by default, and
//! then nothing is recorded or hashed.

use std::collections::VecDeque;

use super::msg::LogEntry;

/// Most events held until drained; past it new ones are counted and dropped.
pub const MAX_EVENTS: usize = 1 << 16;

/// One change to a shard's log on this node.
#[doc(hidden)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogEvent {
    /// An entry appended (by the primary) or applied (by a replica) under `replid`.
    Entry {
        /// The shard.
        shard: Vec<String>,
        /// The lineage the node holds the entry under.
        replid: String,
        /// The entry's offset.
        offset: u64,
        /// The node's offset just before.
        after: u64,
        /// A hash of the whole entry.
        hash: u64,
        /// Appended as primary (else applied as a replica).
        primary: bool,
    },
    /// A new primary's lineage `replid` continues `prev_replid` up to `prev_end`.
    Lineage {
        /// The shard.
        shard: Vec<String>,
        /// The new lineage.
        replid: String,
        /// The lineage it continues (empty: none).
        prev_replid: String,
        /// Last offset taken from `prev_replid`.
        prev_end: u64,
    },
    /// The node's log was replaced: by nothing while a full resync runs (`replid` empty), or
    /// by a snapshot standing for `replid` up to `at`.
    Reset {
        /// The shard.
        shard: Vec<String>,
        /// The lineage now held (empty: none).
        replid: String,
        /// The offset now held.
        at: u64,
    },
}

/// The bounded buffer of [`LogEvent`]s.
#[derive(Debug, Default)]
pub(super) struct Audit {
    on: bool,
    events: VecDeque<LogEvent>,
    dropped: u64,
}

impl Audit {
    pub fn new(on: bool) -> Self {
        Self {
            on,
            ..Self::default()
        }
    }

    pub fn push(&mut self, event: impl FnOnce() -> LogEvent) {
        if !self.on {
            return;
        }
        if self.events.len() >= MAX_EVENTS {
            self.dropped += 1;
            return;
        }
        self.events.push_back(event());
    }

    /// An entry appended or applied.
    pub fn entry(
        &mut self,
        shard: &[String],
        replid: &str,
        after: u64,
        e: &LogEntry,
        primary: bool,
    ) {
        self.push(|| LogEvent::Entry {
            shard: shard.to_vec(),
            replid: replid.to_string(),
            offset: e.offset,
            after,
            hash: hash(e),
            primary,
        });
    }

    /// Everything recorded since the last call, and how many events were dropped meanwhile.
    pub fn take(&mut self) -> (Vec<LogEvent>, u64) {
        let dropped = std::mem::take(&mut self.dropped);
        (self.events.drain(..).collect(), dropped)
    }
}

/// A hash of an entry's encoding (an unencodable entry hashes as its debug text).
fn hash(e: &LogEntry) -> u64 {
    let bytes = postcard::to_stdvec(e).unwrap_or_else(|_| format!("{e:?}").into_bytes());
    let digest = blake3::hash(&bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    u64::from_be_bytes(first)
}
