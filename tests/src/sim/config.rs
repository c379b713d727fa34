//! What a run looks like: cluster size, quorums, network, which faults may strike, and the
//! capabilities of the core under test (which decide which invariants are true claims).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use ringkv::config::{Quorum, Sabotage};
use ringkv::store::Durability;
use ringkv::version::ConflictPolicy;
use ringkv::SyncReplicas;

/// A fault kind that can be switched on or off for a batch of runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// Crash a node (unsynced writes lost) and restart it from its store later.
    Crash,
    /// Split the cluster in two, both ways, then heal.
    Partition,
    /// Block one direction between two groups, then heal.
    OneWay,
    /// Freeze a node's timers and messages, then resume it.
    Pause,
    /// Skew a node's wall clock and make it jump.
    Clock,
    /// Add a new node to the cluster.
    Join,
    /// Make a node leave gracefully.
    Leave,
    /// Lose gossip datagrams at random.
    Loss,
    /// Duplicate gossip datagrams at random.
    Dup,
    /// Fail peer calls at random (a connection reset: request or reply lost).
    CallLoss,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 10] = [
        FaultKind::Crash,
        FaultKind::Partition,
        FaultKind::OneWay,
        FaultKind::Pause,
        FaultKind::Clock,
        FaultKind::Join,
        FaultKind::Leave,
        FaultKind::Loss,
        FaultKind::Dup,
        FaultKind::CallLoss,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::Partition => "partition",
            FaultKind::OneWay => "one-way",
            FaultKind::Pause => "pause",
            FaultKind::Clock => "clock",
            FaultKind::Join => "join",
            FaultKind::Leave => "leave",
            FaultKind::Loss => "loss",
            FaultKind::Dup => "dup",
            FaultKind::CallLoss => "call-loss",
        }
    }
}

/// A fault name that does not exist.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault {0:?} (known: crash, partition, one-way, pause, clock, join, leave, loss, dup, call-loss, all, none)")]
pub struct UnknownFault(pub String);

/// A set of fault kinds.
///
/// ```
/// use ringkv_tests::sim::config::{FaultKind, FaultKinds};
/// let kinds: FaultKinds = "crash,partition".parse().unwrap();
/// assert!(kinds.has(FaultKind::Crash) && !kinds.has(FaultKind::Pause));
/// assert_eq!(kinds.to_string(), "crash,partition");
/// assert_eq!("none".parse::<FaultKinds>().unwrap(), FaultKinds::none());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FaultKinds(u16);

impl FaultKinds {
    /// No fault at all.
    pub fn none() -> Self {
        Self(0)
    }

    /// Every fault kind.
    pub fn all() -> Self {
        FaultKind::ALL.iter().fold(Self::none(), |s, k| s.with(*k))
    }

    /// What `--faults` defaults to: every kind.
    pub fn default_set() -> Self {
        Self::all()
    }

    /// The same set plus `kind`.
    #[must_use]
    pub fn with(self, kind: FaultKind) -> Self {
        Self(self.0 | 1 << kind as u16)
    }

    /// The same set without `kind`.
    #[must_use]
    pub fn without(self, kind: FaultKind) -> Self {
        Self(self.0 & !(1 << kind as u16))
    }

    /// Whether `kind` is in the set.
    pub fn has(self, kind: FaultKind) -> bool {
        self.0 & (1 << kind as u16) != 0
    }

    /// The kinds in the set, in [`FaultKind::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = FaultKind> {
        FaultKind::ALL.into_iter().filter(move |k| self.has(*k))
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromStr for FaultKinds {
    type Err = UnknownFault;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut set = Self::none();
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            set = match word {
                "all" => Self::all(),
                "none" => set,
                _ => {
                    let kind = FaultKind::ALL
                        .into_iter()
                        .find(|k| k.name() == word)
                        .ok_or_else(|| UnknownFault(word.to_string()))?;
                    set.with(kind)
                }
            };
        }
        Ok(set)
    }
}

impl fmt::Display for FaultKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.iter().map(FaultKind::name).collect();
        f.write_str(&names.join(","))
    }
}

/// What the core under test can do; each capability makes more invariants true claims.
///
/// The default is what this release does. The invariants of capabilities it lacks are
/// registered anyway (see [`crate::sim::checker`]) and can be forced on to see them fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Replicas repair each other in the background (anti-entropy, hinted handoff): every
    /// range converges to identical contents after the faults heal, whatever a replica
    /// missed, without anyone reading it.
    pub anti_entropy: bool,
    /// A read that every replica answered repairs the stale ones: once it and its repairs
    /// are done, the replicas of that key agree. In this release.
    pub read_repair: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            anti_entropy: true,
            read_repair: true,
        }
    }
}

/// How messages travel.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    /// Shortest one-way delay, microseconds.
    pub min_delay_us: u64,
    /// Longest one-way delay, microseconds (delays are uniform in between, so messages
    /// overtake each other).
    pub max_delay_us: u64,
    /// Probability that a gossip datagram is lost (when [`FaultKind::Loss`] is on).
    pub loss: f64,
    /// Probability that a gossip datagram is delivered twice (when [`FaultKind::Dup`] is on).
    pub dup: f64,
    /// Probability that a peer call's request or reply is lost (when
    /// [`FaultKind::CallLoss`] is on); the caller sees the transport time out.
    pub call_loss: f64,
    /// How long a peer call may take before the transport gives up (the shell's 5 s).
    pub call_timeout: Duration,
    /// Shortest time an fsync takes, microseconds.
    pub fsync_min_us: u64,
    /// Longest time an fsync takes, microseconds (uniform in between; group commit covers
    /// whatever queued meanwhile). Long syncs widen the window where a replica serves
    /// writes it has not made durable yet.
    pub fsync_max_us: u64,
    /// Datagrams and calls a paused node buffers before dropping datagrams.
    pub pause_buffer: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            min_delay_us: 100,
            max_delay_us: 4_000,
            loss: 0.05,
            dup: 0.03,
            call_loss: 0.01,
            call_timeout: Duration::from_secs(5),
            fsync_min_us: 500,
            fsync_max_us: 20_000,
            pause_buffer: 4_096,
        }
    }
}

/// The shape of one run. Fields left as ranges are drawn from the run's seed.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Initial cluster size: drawn from this range (3 to 9).
    pub nodes: (usize, usize),
    /// N, and the default R and W.
    pub quorum: Quorum,
    /// Conflict policy; `None` draws one per run (mostly `siblings`).
    pub policy: Option<ConflictPolicy>,
    /// Durability of replica acknowledgements.
    pub durability: Durability,
    /// Vnodes per node (kept small: ring builds are cheap then).
    pub vnodes: u32,
    /// Which faults may strike.
    pub faults: FaultKinds,
    /// How many fault episodes a run gets, at most.
    pub max_faults: usize,
    /// What the core can do (gates invariants).
    pub capabilities: Capabilities,
    /// Deliberate core bugs (for the tests that prove the checker catches them).
    pub sabotage: Sabotage,
    /// Concurrent clients.
    pub clients: usize,
    /// Distinct keys (few, so that operations collide).
    pub keys: usize,
    /// Operations the workload issues (before the final reads).
    pub ops: usize,
    /// Simulated time the workload and the faults run for.
    pub workload: Duration,
    /// Simulated time given to membership to converge after the last fault heals.
    pub settle: Duration,
    /// Simulated time replicas are given to converge once the cluster settled, when
    /// [`Capabilities::anti_entropy`] is on (checked every second).
    pub convergence_bound: Duration,
    /// Hard bound on processed events; a run that needs more fails.
    pub max_events: u64,
    /// Hard bound on simulated time; a run that gets past it fails (whatever kept it going).
    pub max_sim: Duration,
    /// Network behaviour.
    pub net: NetConfig,
    /// How many recent events a failure report shows.
    pub trace_tail: usize,
    /// Applied to every node's core settings last (tests use it to switch a core feature
    /// off, to show the invariant that relies on it failing).
    pub core_overrides: Option<fn(&mut ringkv::config::CoreConfig)>,
    /// Primary mode: every workload key falls under a primary prefix with these sync
    /// replicas (reads from the primary); `None` runs the masterless quorum path.
    pub primary: Option<SyncReplicas>,
    /// Primary mode: how the primary streams its log (star, or chain through the replicas).
    pub topology: ringkv::Topology,
    /// Primary mode: draw joins and leaves too (the default).
    pub primary_membership: bool,
}

impl SimConfig {
    /// The fault kinds a run draws from: in primary mode without joins and leaves when
    /// `primary_membership` is off. An explicit schedule may still hold them.
    pub fn drawn_faults(&self) -> FaultKinds {
        match self.primary.filter(|_| !self.primary_membership) {
            Some(_) => self
                .faults
                .without(FaultKind::Join)
                .without(FaultKind::Leave),
            None => self.faults,
        }
    }
}

/// The prefix every workload key starts with (see [`crate::sim::history::key_bytes`]).
pub const KEY_PREFIX: &[u8] = b"key";

/// Parses a `--primary` value: `none`, a replica count or `majority`.
///
/// ```
/// use ringkv::SyncReplicas;
/// use ringkv_tests::sim::config::parse_sync;
/// assert_eq!(parse_sync("majority"), Ok(SyncReplicas::Majority));
/// assert_eq!(parse_sync("1"), Ok(SyncReplicas::Count(1)));
/// assert!(parse_sync("most").is_err());
/// ```
pub fn parse_sync(s: &str) -> Result<SyncReplicas, String> {
    match s {
        "none" => Ok(SyncReplicas::None),
        "majority" => Ok(SyncReplicas::Majority),
        k => k
            .parse::<u8>()
            .ok()
            .filter(|k| *k >= 1)
            .map(SyncReplicas::Count)
            .ok_or_else(|| format!("{s:?} is not none, a replica count or majority")),
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: (3, 9),
            quorum: Quorum { n: 3, r: 2, w: 2 },
            policy: None,
            durability: Durability::Sync,
            vnodes: 16,
            faults: FaultKinds::default_set(),
            max_faults: 4,
            capabilities: Capabilities::default(),
            sabotage: Sabotage::default(),
            clients: 5,
            keys: 6,
            ops: 200,
            workload: Duration::from_secs(20),
            settle: Duration::from_secs(30),
            convergence_bound: Duration::from_secs(60),
            max_events: 500_000,
            max_sim: Duration::from_secs(900),
            net: NetConfig::default(),
            trace_tail: 60,
            core_overrides: None,
            primary: None,
            topology: ringkv::Topology::Star,
            primary_membership: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fault_names_round_trip_and_reject_unknown_ones() {
        for kind in FaultKind::ALL {
            let set: FaultKinds = kind.name().parse().unwrap();
            assert_eq!(set.iter().collect::<Vec<_>>(), [kind]);
        }
        assert_eq!("all".parse::<FaultKinds>().unwrap(), FaultKinds::all());
        assert_eq!(
            "crash,bogus".parse::<FaultKinds>(),
            Err(UnknownFault("bogus".into()))
        );
        assert_eq!(FaultKinds::none().to_string(), "none");
    }

    proptest! {
        #[test]
        fn any_set_prints_and_parses_back(bits in 0u16..(1 << 10)) {
            let set = FaultKind::ALL
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .fold(FaultKinds::none(), |s, (_, k)| s.with(*k));
            prop_assert_eq!(set.to_string().parse::<FaultKinds>().unwrap(), set);
        }
    }
}
