//! Reads against acknowledged writes: with R + W > N over the same replicas, a read that
//! starts after a write's acknowledgement returns that write's value unless something that
//! overwrote it (directly or through earlier overwrites) may have landed; it never returns
//! a value that an acknowledged write or delete overwrote (a deleted key never comes back);
//! and it never returns a value nobody wrote.
//!
//! "Overwrote" follows causal contexts: a write carrying the context of a read overwrote
//! the puts that read returned (for sure) and whatever their own contexts overwrote. A blind
//! write overwrote nothing: it is a sibling of everything. Reads that overlap a write in
//! time may or may not see it. Under last-writer-wins, a write may also lose to any write it
//! did not overwrite; only the first and third checks are exact there.
//!
//! Under a sloppy quorum a write may be acknowledged by fallback nodes that hold it as a hint
//! for a replica that is down; until the hint is handed off, the preference list need not
//! have it. The first two checks then apply to reads that start once the run settled (the
//! final audit), and continuously only under a strict quorum.
//!
//! In primary mode only the last check (and that a value comes from an earlier put of the key)
//! applies here: contexts play no part there, see [`super::PrimaryReads`].

use ringkv::version::ConflictPolicy;

use super::{Invariant, RunFacts, Violation};
use crate::sim::history::{value_of, History, Op, OpKind, Outcome};
use crate::sim::world::World;

/// Acknowledged writes are seen; overwritten and deleted values stay gone.
pub struct DurableReads;

const NAME: &str = "durable-reads";

impl Invariant for DurableReads {
    fn name(&self) -> &'static str {
        NAME
    }

    fn on_complete(
        &mut self,
        world: &World,
        history: &History,
        op: u64,
        facts: &RunFacts,
        out: &mut Vec<Violation>,
    ) {
        let Some(read) = history.get(op) else { return };
        let (
            OpKind::Get { r },
            Outcome::Read {
                values, unknown, ..
            },
        ) = (&read.kind, &read.outcome)
        else {
            return;
        };
        let at = read.completed_us.unwrap_or(0);
        let done = read.completed_us.unwrap_or(u64::MAX);
        let mut fail = |detail: String| {
            out.push(Violation {
                invariant: NAME,
                at_us: at,
                detail: format!(
                    "op{} (get key{} r={r} via n{}): {detail}",
                    read.id, read.key, read.coordinator
                ),
            });
        };
        for u in unknown {
            fail(format!(
                "returned a value nobody wrote: {:?}",
                String::from_utf8_lossy(u)
            ));
        }
        for &v in values {
            let ok = history.get(v).is_some_and(|p| {
                p.key == read.key && matches!(p.kind, OpKind::Put { .. }) && p.invoked_us < done
            });
            if !ok {
                fail(format!(
                    "returned v{v}, which no earlier put of this key wrote"
                ));
            }
        }
        if !facts.durable_acks || facts.primary.is_some() {
            return; // primary mode: see `PrimaryReads`
        }
        if facts.sloppy_quorum && facts.settled_at.is_none_or(|t| read.invoked_us < t) {
            return; // acknowledgements may sit in hints on fallback nodes for now
        }
        let quorum_with = |w: &Op| {
            w.kind
                .w()
                .is_some_and(|w| usize::from(w) + usize::from(*r) > facts.n)
                && w.outcome == Outcome::Written
                && w.done_before(read.invoked_us)
                && w.preference.is_some()
                && w.preference == read.preference
        };
        let on_key: Vec<&Op> = history.on_key(read.key).collect();
        // Must see: acknowledged puts nothing may have overwritten before the read ended.
        for w in on_key
            .iter()
            .filter(|w| matches!(w.kind, OpKind::Put { .. }) && quorum_with(w))
        {
            if values.contains(&w.id) {
                continue;
            }
            let overwritten = on_key
                .iter()
                .any(|x| x.is_write() && x.invoked_us < done && x.covers_hi.contains(&w.id));
            let may_lose = facts.policy == ConflictPolicy::Lww
                && on_key.iter().any(|x| {
                    x.is_write()
                        && x.id != w.id
                        && x.invoked_us < done
                        && !w.covers_lo.contains(&x.id)
                });
            if !overwritten && !may_lose {
                fail(format!(
                    "misses v{} acknowledged by op{} (w={}) at {:.6}s over {:?}",
                    w.id,
                    w.id,
                    w.kind.w().unwrap_or(0),
                    w.completed_us.unwrap_or(0) as f64 / 1e6,
                    w.preference.as_deref().unwrap_or_default(),
                ));
            }
        }
        // Must not see: values an acknowledged write overwrote for sure.
        for &v in values {
            let single_dot = world
                .stats()
                .leader_writes
                .get(&value_of(v))
                .is_none_or(|n| *n <= 1);
            if !single_dot {
                continue; // a retried leader gave it a second dot that may survive
            }
            if let Some(x) = on_key
                .iter()
                .find(|x| x.is_write() && quorum_with(x) && x.covers_lo.contains(&v))
            {
                let what = if matches!(x.kind, OpKind::Delete { .. }) {
                    "deleted"
                } else {
                    "overwritten"
                };
                fail(format!(
                    "returned v{v}, {what} by op{} acknowledged at {:.6}s",
                    x.id,
                    x.completed_us.unwrap_or(0) as f64 / 1e6
                ));
            }
        }
    }
}
