//! The checker: invariants over the history and the world, run continuously (as operations
//! complete) and once the faults healed and the cluster settled.
//!
//! Each invariant is a small type implementing [`Invariant`], registered in
//! [`Checker::new`]. An invariant that only holds with a capability the core does not have
//! yet (anti-entropy, hinted handoff, per-range primaries) checks [`RunFacts::capabilities`]
//! and stays silent without it; forcing the capability on shows what it would catch.

mod convergence;
pub mod hints;
mod membership;
pub mod primary;
mod reads;

use std::fmt;

use ringkv::version::ConflictPolicy;

pub use convergence::{replicas_agree, written_keys, ReadRepairConverges, ReplicasConverge};
pub use hints::{hint_accounting, HintsAccounted};
pub use membership::{membership_converged, MembershipConverges};
pub use primary::{replicas_caught_up, PrimaryReads, ReplicasCatchUp};
pub use reads::DurableReads;

use super::config::Capabilities;
use super::history::History;
use super::world::World;

/// Facts about a run that decide what the invariants may claim.
#[derive(Clone, Debug)]
pub struct RunFacts {
    /// Replicas per key.
    pub n: usize,
    /// Conflict policy of the cluster.
    pub policy: ConflictPolicy,
    /// Acknowledged writes survive crashes (`Durability::Sync`, or no crash happened).
    pub durable_acks: bool,
    /// What the core can do.
    pub capabilities: Capabilities,
    /// Writes may be acknowledged by fallback nodes holding hints (sloppy quorum): until
    /// the hints are handed off, a read of the preference list need not see them, so reads
    /// are held to acknowledged writes only once the run settled.
    pub sloppy_quorum: bool,
    /// When the faults had healed, membership settled and hints had time to be handed off.
    pub settled_at: Option<u64>,
    /// Primary mode, with these sync replicas, for every workload key.
    pub primary: Option<ringkv::SyncReplicas>,
}

/// What an invariant sees after the run healed and settled.
pub struct End<'a> {
    /// Keys the final audit read at R = N (every replica answered), when called after it.
    pub audited: &'a [usize],
    /// The world, every node restarted.
    pub world: &'a World,
    /// Every operation.
    pub history: &'a History,
    /// Facts about the run.
    pub facts: &'a RunFacts,
    /// No replica missed a write: no peer call failed, nobody was seen down, no node
    /// crashed, paused, joined or left once the workload began.
    pub clean: bool,
}

/// One broken promise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's name.
    pub invariant: &'static str,
    /// Simulated time it was detected at, microseconds.
    pub at_us: u64,
    /// What exactly went wrong.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.at_us as f64 / 1e6;
        write!(f, "[{}] at {secs:.6}s: {}", self.invariant, self.detail)
    }
}

/// A property of every run.
pub trait Invariant {
    /// Short name, shown in reports.
    fn name(&self) -> &'static str;

    /// Operation `op` just completed (continuous checking; keep it cheap).
    fn on_complete(
        &mut self,
        _world: &World,
        _history: &History,
        _op: u64,
        _facts: &RunFacts,
        _out: &mut Vec<Violation>,
    ) {
    }

    /// The faults healed, membership settled and every operation finished: before the
    /// final audit reads (which repair what they read).
    fn at_settled(&mut self, _end: &End<'_>, _out: &mut Vec<Violation>) {}

    /// The final audit reads finished and their repairs landed.
    fn at_end(&mut self, _end: &End<'_>, _out: &mut Vec<Violation>) {}
}

/// Every registered invariant and what they found.
pub struct Checker {
    facts: RunFacts,
    invariants: Vec<Box<dyn Invariant>>,
    violations: Vec<Violation>,
}

impl Checker {
    /// The invariants of this release.
    pub fn new(facts: RunFacts) -> Self {
        let invariants: Vec<Box<dyn Invariant>> = vec![
            Box::new(DurableReads),
            Box::new(MembershipConverges),
            Box::new(ReplicasConverge),
            Box::new(ReadRepairConverges),
            Box::new(HintsAccounted),
            // Primary mode (one primary per shard and epoch, and logs that are prefixes of
            // the primary's, are watched step by step: see `logwatch`).
            Box::new(PrimaryReads),
            Box::new(ReplicasCatchUp),
        ];
        Self {
            facts,
            invariants,
            violations: Vec::new(),
        }
    }

    /// Facts the invariants work with.
    pub fn facts(&self) -> &RunFacts {
        &self.facts
    }

    /// Runs the continuous checks for a completed operation.
    pub fn on_complete(&mut self, world: &World, history: &History, op: u64) {
        for inv in &mut self.invariants {
            inv.on_complete(world, history, op, &self.facts, &mut self.violations);
        }
    }

    /// Runs the checks of a settled run, before the final reads; from now on reads are held
    /// to every acknowledged write even under a sloppy quorum.
    pub fn at_settled(&mut self, world: &World, history: &History, clean: bool) {
        self.facts.settled_at = Some(world.now_us());
        let end = End {
            audited: &[],
            world,
            history,
            facts: &self.facts,
            clean,
        };
        for inv in &mut self.invariants {
            inv.at_settled(&end, &mut self.violations);
        }
    }

    /// Runs the end-of-run checks, after the final reads of `audited` keys.
    pub fn at_end(&mut self, world: &World, history: &History, clean: bool, audited: &[usize]) {
        let end = End {
            audited,
            world,
            history,
            facts: &self.facts,
            clean,
        };
        for inv in &mut self.invariants {
            inv.at_end(&end, &mut self.violations);
        }
    }

    /// Adds a violation found outside the invariants (the driver's own bounds).
    pub fn report(&mut self, violation: Violation) {
        self.violations.push(violation);
    }

    /// Everything found so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }
}
