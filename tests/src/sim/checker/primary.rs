//! Primary mode's promises over the history and the settled world.
//!
//! A primary orders every write to a key and each write replaces the key's value (client
//! contexts play no part), so a key is a register whose history is its log.
//! - [`PrimaryReads`]: a read returns one value at most. Under `majority` (reads served by the
//!   primary with a read index) a read never returns a value that an acknowledged write, or a
//!   value an earlier read returned, had replaced before the read began: it returns that
//!   write or a later one. When the sync replicas and the primary make a majority but reads
//!   take no read index, the same holds for the reads made once the run settled (no
//!   acknowledged write was lost). With fewer (asynchronous replication) an acknowledged write
//!   may be lost in a failover, and only "never a value nobody wrote" (in
//!   [`super::DurableReads`]) is claimed.
//! - [`ReplicasCatchUp`]: once the run settled, every running replica of a shard that has a
//!   running primary holds the primary's lineage up to its offset.
//!
//! Writes that failed or timed out are indeterminate: they may land, at any time after they
//! were sent, or never.

use ringkv::core::replication::ShardMeta;
use ringkv::{SyncReplicas, TableLimits};

use super::{End, Invariant, RunFacts, Violation};
use crate::sim::history::{History, Op, OpKind, Outcome};
use crate::sim::node::NodeState;
use crate::sim::world::World;

/// Reads see acknowledged writes in the primary's order.
pub struct PrimaryReads;

/// Replicas hold their primary's log once the run settled.
pub struct ReplicasCatchUp;

const READS: &str = "primary-reads";
const CATCH_UP: &str = "replicas-catch-up";

/// Whether acknowledged writes survive a failover: the primary and the replicas a write waits
/// for make a majority of the `n` copies.
pub fn durable_sync(sync: SyncReplicas, n: usize) -> bool {
    let copies = match sync {
        SyncReplicas::None => 1,
        SyncReplicas::Count(k) => usize::from(k) + 1,
        SyncReplicas::Majority => return true,
    };
    copies >= ringkv::core::replication::majority(n)
}

/// Where a read's answer may have come from: a put, or nothing (no write yet, or a delete).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Nothing,
    Op(u64),
}

impl Invariant for PrimaryReads {
    fn name(&self) -> &'static str {
        READS
    }

    fn on_complete(
        &mut self,
        _world: &World,
        history: &History,
        op: u64,
        facts: &RunFacts,
        out: &mut Vec<Violation>,
    ) {
        let Some(sync) = facts.primary else { return };
        let Some(read) = history.get(op) else { return };
        let Outcome::Read { values, .. } = &read.outcome else {
            return;
        };
        let mut fail = |detail: String| {
            out.push(Violation {
                invariant: READS,
                at_us: read.completed_us.unwrap_or(0),
                detail: format!(
                    "op{} (get key{} via n{}): {detail}",
                    read.id, read.key, read.coordinator
                ),
            });
        };
        if values.len() > 1 {
            fail(format!(
                "returned {} values {values:?}: a primary's key holds one",
                values.len()
            ));
            return;
        }
        let linearizable = sync == SyncReplicas::Majority;
        let settled = facts.settled_at.is_some_and(|t| read.invoked_us >= t);
        if !facts.durable_acks || !(linearizable || durable_sync(sync, facts.n) && settled) {
            return;
        }
        let on_key: Vec<&Op> = history.on_key(read.key).collect();
        let done = read.completed_us.unwrap_or(u64::MAX);
        // Writes known to have taken effect before the read began.
        let mut known: Vec<&Op> = on_key
            .iter()
            .filter(|w| {
                w.is_write() && w.outcome == Outcome::Written && w.done_before(read.invoked_us)
            })
            .copied()
            .collect();
        if linearizable {
            for r in on_key.iter().filter(|r| r.done_before(read.invoked_us)) {
                if let Outcome::Read { values, .. } = &r.outcome {
                    known.extend(values.iter().filter_map(|v| history.get(*v)));
                }
            }
        }
        let sources: Vec<Source> = match values.iter().next() {
            Some(v) => vec![Source::Op(*v)],
            None => std::iter::once(Source::Nothing)
                .chain(
                    on_key
                        .iter()
                        .filter(|d| {
                            matches!(d.kind, OpKind::Delete { .. })
                                && d.invoked_us < done
                                && d.outcome != Outcome::NoEffect
                        })
                        .map(|d| Source::Op(d.id)),
                )
                .collect(),
        };
        // A source is stale when a known write surely came after it.
        let replaced_by = |s: Source| -> Option<&Op> {
            known.iter().copied().find(|z| match s {
                Source::Nothing => true,
                Source::Op(id) => {
                    z.id != id
                        && history.get(id).is_some_and(|w| {
                            w.outcome == Outcome::Written
                                && w.completed_us.is_some_and(|c| c < z.invoked_us)
                        })
                }
            })
        };
        let mut witness = None;
        for s in &sources {
            match replaced_by(*s) {
                Some(z) => witness = witness.or(Some(z)),
                None => return,
            }
        }
        if let Some(z) = witness {
            let what = match sources.first() {
                Some(Source::Op(v)) => format!("v{v}"),
                _ => "nothing".into(),
            };
            let how = match z.outcome {
                Outcome::Written => "acknowledged",
                _ => "seen by an earlier read",
            };
            fail(format!(
                "returned {what}, yet op{} ({:?}) {how} at {:.6}s, before the read began, \
                 came after it",
                z.id,
                z.kind,
                z.completed_us.unwrap_or(0) as f64 / 1e6
            ));
        }
    }
}

impl Invariant for ReplicasCatchUp {
    fn name(&self) -> &'static str {
        CATCH_UP
    }

    fn at_settled(&mut self, end: &End<'_>, out: &mut Vec<Violation>) {
        if end.facts.primary.is_none() {
            return;
        }
        if let Err(detail) = replicas_caught_up(end.world) {
            out.push(Violation {
                invariant: CATCH_UP,
                at_us: end.world.now_us(),
                detail,
            });
        }
    }
}

/// Whether every running replica of each shard led by a running primary holds that
/// primary's lineage and offset; says which does not.
pub fn replicas_caught_up(world: &World) -> Result<(), String> {
    let running = |name: &str| {
        world
            .nodes()
            .iter()
            .find(|n| n.name == name && n.state == NodeState::Running)
    };
    for node in world
        .nodes()
        .iter()
        .filter(|n| n.state == NodeState::Running)
    {
        let Some(core) = node.core() else { continue };
        for (shard, epoch) in core.primaries() {
            let ours = ShardMeta::load(node.store.as_ref(), shard).map_err(|e| e.to_string())?;
            for name in shard.iter().filter(|n| **n != node.name) {
                let Some(replica) = running(name) else {
                    continue;
                };
                let theirs =
                    ShardMeta::load(replica.store.as_ref(), shard).map_err(|e| e.to_string())?;
                if (&theirs.replid, theirs.offset) != (&ours.replid, ours.offset) {
                    return Err(format!(
                        "{name} holds {}:{} of shard {shard:?}, whose primary {} (epoch {epoch}) \
                         is at {}:{}",
                        theirs.replid, theirs.offset, node.name, ours.replid, ours.offset
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The range table that puts every workload key under a primary prefix with `sync`.
pub fn primary_table(
    sync: SyncReplicas,
    topology: ringkv::Topology,
    limits: &TableLimits,
) -> Result<ringkv::RangeTable, ringkv::TableError> {
    let mut table = ringkv::RangeTable::new();
    let options = ringkv::PrimaryOptions {
        sync,
        read_from: ringkv::ReadFrom::Primary,
        topology,
    };
    table.set(
        crate::sim::config::KEY_PREFIX.to_vec(),
        ringkv::Mode::Primary(options),
        "n0",
        limits,
    )?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledged_writes_are_durable_when_they_reach_a_majority() {
        assert!(durable_sync(SyncReplicas::Majority, 3));
        assert!(durable_sync(SyncReplicas::Count(1), 3));
        assert!(!durable_sync(SyncReplicas::Count(1), 5));
        assert!(!durable_sync(SyncReplicas::None, 3));
    }

    #[test]
    fn the_table_covers_every_workload_key() {
        let limits = TableLimits {
            max_rules: 8,
            max_prefix: 64,
            replicas: 3,
        };
        let table = primary_table(SyncReplicas::Majority, ringkv::Topology::Star, &limits).unwrap();
        for k in 0..100 {
            let key = crate::sim::history::key_bytes(k);
            assert_eq!(
                table.lookup(&key).map(|o| o.sync),
                Some(SyncReplicas::Majority)
            );
        }
    }
}
