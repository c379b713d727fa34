//! Primary mode watched from outside, after every input a node handles: which node leads
//! which shard in which epoch, and every entry appended or applied to a shard's log.
//!
//! Two promises are checked here, over the whole run, crashes included:
//! - [`LEADERS`]: at most one node ever leads a shard in a given epoch.
//! - [`LOGS`]: an entry is named by its lineage and offset; every node that holds the same
//!   name holds the same entry (so every replica's log is a prefix of its primary's), and a
//!   node applies the offsets of its log one after the other, none skipped. A lineage that
//!   continues another up to some offset names the other's entries up to there.

use std::collections::{BTreeMap, HashMap};

use ringkv::core::replication::LogEvent;
use ringkv::core::NodeCore;

use super::checker::Violation;

/// At most one primary per shard and epoch.
pub const LEADERS: &str = "one-primary-per-epoch";
/// Replicas' logs are prefixes of their primary's.
pub const LOGS: &str = "logs-are-prefixes";

/// Findings kept per run (the first ones tell the story).
const MAX_FINDINGS: usize = 20;
/// Longest chain of lineages followed to name an entry.
const MAX_CHAIN: usize = 10_000;

/// The first node seen holding an entry.
struct Seen {
    hash: u64,
    node: String,
}

/// What the watch learned so far, and what broke.
#[derive(Default)]
pub struct LogWatch {
    /// Per shard and epoch, the node seen leading it.
    leaders: HashMap<Vec<String>, BTreeMap<u64, String>>,
    /// Per entry name (lineage and offset, as early a lineage as known), who held it first.
    entries: HashMap<(String, u64), Seen>,
    /// Lineage -> the lineage it continues and up to which offset.
    lineages: HashMap<String, (String, u64)>,
    /// Per node and shard, the offset of its log since the process started.
    offsets: HashMap<(usize, Vec<String>), u64>,
    findings: Vec<Violation>,
    found: usize,
    /// Log entries seen appended or applied (a run that saw none checked nothing).
    pub entries_seen: u64,
}

impl LogWatch {
    /// Looks at `core` (node `node`, named `name`) right after it handled an input at `now_us`;
    /// returns what is worth a line in the trace (new primaries, lineages, resyncs).
    pub fn observe(
        &mut self,
        node: usize,
        name: &str,
        core: &mut NodeCore,
        now_us: u64,
    ) -> Vec<String> {
        let mut notes = Vec::new();
        for (shard, epoch) in core.primaries() {
            let by_epoch = match self.leaders.get_mut(shard) {
                Some(m) => m,
                None => self.leaders.entry(shard.to_vec()).or_default(),
            };
            match by_epoch.get(&epoch) {
                Some(first) if first != name => {
                    let detail = format!(
                        "{name} leads shard {shard:?} in epoch {epoch}, which {first} led already"
                    );
                    by_epoch.insert(epoch, name.to_string());
                    self.find(LEADERS, now_us, detail);
                }
                Some(_) => {}
                None => {
                    by_epoch.insert(epoch, name.to_string());
                    notes.push(format!("leads {shard:?} in epoch {epoch}"));
                }
            }
        }
        let (events, dropped) = core.take_log_events();
        if dropped > 0 {
            self.find(LOGS, now_us, format!("{name} dropped {dropped} log events"));
        }
        for event in events {
            match &event {
                LogEvent::Lineage {
                    shard,
                    replid,
                    prev_replid,
                    prev_end,
                } => notes.push(format!(
                    "lineage {} of {shard:?} continues {}:{prev_end}",
                    short(replid),
                    short(prev_replid)
                )),
                LogEvent::Reset { shard, replid, at } => {
                    notes.push(format!("log of {shard:?} reset to {}:{at}", short(replid)))
                }
                LogEvent::Entry {
                    shard,
                    replid,
                    offset,
                    hash,
                    primary,
                    ..
                } => notes.push(format!(
                    "{} {}:{offset} of {shard:?} (#{:04x})",
                    if *primary { "appended" } else { "applied" },
                    short(replid),
                    hash >> 48
                )),
            }
            self.event(node, name, event, now_us);
        }
        notes
    }

    /// Node `node` crashed: what its process held is gone.
    pub fn forget(&mut self, node: usize) {
        self.offsets.retain(|(n, _), _| *n != node);
    }

    /// Takes what was found since the last call.
    pub fn take_findings(&mut self) -> Vec<Violation> {
        std::mem::take(&mut self.findings)
    }

    fn event(&mut self, node: usize, name: &str, event: LogEvent, now_us: u64) {
        match event {
            LogEvent::Lineage {
                replid,
                prev_replid,
                prev_end,
                ..
            } => {
                if prev_replid.is_empty() {
                    return;
                }
                let link = (prev_replid, prev_end);
                match self.lineages.get(&replid) {
                    Some(known) if *known != link => {
                        let detail = format!(
                            "{name} started lineage {replid} continuing {link:?}, which \
                             already continued {known:?}"
                        );
                        self.find(LOGS, now_us, detail);
                    }
                    Some(_) => {}
                    None => {
                        self.lineages.insert(replid, link);
                    }
                }
            }
            LogEvent::Reset { shard, at, .. } => {
                self.offsets.insert((node, shard), at);
            }
            LogEvent::Entry {
                shard,
                replid,
                offset,
                after,
                hash,
                primary,
            } => {
                self.entries_seen += 1;
                let how = if primary { "appended" } else { "applied" };
                if offset != after.saturating_add(1) {
                    let detail =
                        format!("{name} {how} offset {offset} of {replid} while at offset {after}");
                    self.find(LOGS, now_us, detail);
                }
                let key = (node, shard);
                if let Some(held) = self.offsets.get(&key).filter(|o| **o != after) {
                    let detail = format!(
                        "{name} {how} offset {offset} of {replid} after {after}, but its log \
                         was at {held} (shard {:?})",
                        key.1
                    );
                    self.find(LOGS, now_us, detail);
                }
                self.offsets.insert(key, offset);
                let id = self.canonical(&replid, offset);
                match self.entries.get(&id) {
                    Some(seen) if seen.hash != hash => {
                        let detail = format!(
                            "{name} {how} entry {offset} of {replid} (as {}:{}) unlike the one \
                             {} holds under that name",
                            id.0, id.1, seen.node
                        );
                        self.find(LOGS, now_us, detail);
                    }
                    Some(_) => {}
                    None => {
                        let seen = Seen {
                            hash,
                            node: name.to_string(),
                        };
                        self.entries.insert(id, seen);
                    }
                }
            }
        }
    }

    /// The earliest name of entry `offset` of `replid`: lineages name the entries they
    /// continued by the lineage those came from.
    fn canonical(&self, replid: &str, offset: u64) -> (String, u64) {
        let mut at = replid;
        for _ in 0..MAX_CHAIN {
            match self.lineages.get(at) {
                Some((prev, end)) if offset <= *end && prev != at => at = prev,
                _ => break,
            }
        }
        (at.to_string(), offset)
    }

    fn find(&mut self, invariant: &'static str, at_us: u64, detail: String) {
        self.found += 1;
        if self.found <= MAX_FINDINGS {
            self.findings.push(Violation {
                invariant,
                at_us,
                detail,
            });
        }
    }
}

/// The first characters of a replication id, enough to tell lineages apart in a trace.
fn short(replid: &str) -> &str {
    replid.get(..8).unwrap_or(replid)
}
