//! Settings of a node and of the cluster it belongs to.

use std::time::Duration;

use crate::store::Durability;
use crate::version::ConflictPolicy;

/// Bounds on what clients may send and on the work a node takes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted key, in bytes (default 4 KiB).
    pub max_key: usize,
    /// Largest accepted value, in bytes (default 4 MiB).
    pub max_value: usize,
    /// Client requests a node coordinates at once; beyond this a request is refused as overloaded.
    pub max_in_flight: usize,
    /// Concurrent versions one key may hold under the `siblings` policy; a blind write beyond
    /// this is refused until a client resolves them (a write carrying the read's context).
    pub max_siblings: usize,
    /// Rules the range table may hold (primary-mode prefixes and the quorum rules that undo
    /// them); a rule beyond is refused, and so is a peer's table that would pass it.
    pub max_table_rules: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_key: 4 * 1024,
            max_value: 4 * 1024 * 1024,
            max_in_flight: 4096,
            max_siblings: 100,
            max_table_rules: 1024,
        }
    }
}

/// Replication and consistency settings.
///
/// `n` is a cluster-wide setting (every node must use the same, like the vnode count);
/// `r` and `w` are defaults a request may override.
///
/// ```
/// let q = ringkv::config::Quorum::default();
/// assert_eq!((q.n, q.r, q.w), (3, 2, 2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quorum {
    /// Replicas per key.
    pub n: usize,
    /// Replies a read waits for.
    pub r: usize,
    /// Acknowledgements a write waits for.
    pub w: usize,
}

impl Default for Quorum {
    fn default() -> Self {
        Self { n: 3, r: 2, w: 2 }
    }
}

/// Everything the sans-IO core needs to know besides its identity.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Replication factor and default quorums.
    pub quorum: Quorum,
    /// Virtual nodes per physical node (cluster-wide).
    pub vnodes: u32,
    /// How concurrent writes are resolved (cluster-wide).
    pub conflict_policy: ConflictPolicy,
    /// Whether a replica syncs to disk before acknowledging a write.
    pub durability: Durability,
    /// Size and work limits.
    pub limits: Limits,
    /// How long a client request may take before it fails with the replies it has.
    pub request_timeout: Duration,
    /// Largest clock step a remote timestamp may be ahead of ours and still be trusted.
    pub max_clock_drift: Duration,
    /// Merkle-tree anti-entropy.
    pub anti_entropy: AeConfig,
    /// Sloppy quorum and hinted handoff.
    pub hints: HintConfig,
    /// A tombstone is removed only when every replica holds it and it is this old. Must
    /// exceed `hints.max_age`, so no hint can carry a deleted value back after its tombstone
    /// is gone.
    pub tombstone_grace: Duration,
    /// Primary mode: heartbeats, leases, failover and backlog.
    pub replication: ReplConfig,
    /// Deliberate bugs, so tests can prove the simulator's checker catches them. Present only
    /// in builds with the `sabotage` feature, which only the test crate enables: a production
    /// build cannot switch them on.
    #[cfg(feature = "sabotage")]
    #[doc(hidden)]
    pub sabotage: Sabotage,
}

impl CoreConfig {
    /// The deliberate bugs switched on: none in a build without the `sabotage` feature.
    pub(crate) fn sabotage(&self) -> Sabotage {
        #[cfg(feature = "sabotage")]
        return self.sabotage;
        #[cfg(not(feature = "sabotage"))]
        return Sabotage::default();
    }
}

/// Bugs a test may switch on to check that the checker notices them (through
/// `CoreConfig::sabotage`, which exists only with the `sabotage` feature).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sabotage {
    /// Answer a write after the first acknowledgement, whatever W is.
    pub ack_after_one: bool,
    /// Answer a read with the first replica's record instead of merging all replies.
    pub skip_read_merge: bool,
    /// Forget hints for live owners instead of delivering them, counting them nowhere.
    pub drop_hints: bool,
    /// Primary mode: a voter grants every vote, even for an epoch it already promised, to a
    /// candidate behind it, or while it hears a primary.
    pub grant_every_vote: bool,
    /// Primary mode: acknowledge a write once the primary's store holds it, whatever the
    /// replicas it asked for confirmed.
    pub ack_before_replicas: bool,
    /// Primary mode: a new primary goes on with the replication id it followed instead of
    /// starting its own, so replicas holding entries it never had take its log as theirs.
    pub keep_replid: bool,
    /// Primary mode: a node that forwarded a request neither learns from nor follows an
    /// answer naming another primary, so a stale guess is never corrected.
    pub ignore_not_primary: bool,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            quorum: Quorum::default(),
            vnodes: 256,
            conflict_policy: ConflictPolicy::default(),
            durability: Durability::default(),
            limits: Limits::default(),
            request_timeout: Duration::from_secs(5),
            max_clock_drift: Duration::from_secs(60),
            anti_entropy: AeConfig::default(),
            hints: HintConfig::default(),
            tombstone_grace: Duration::from_secs(24 * 3600),
            replication: ReplConfig::default(),
            #[cfg(feature = "sabotage")]
            sabotage: Sabotage::default(),
        }
    }
}

/// Anti-entropy settings.
#[derive(Clone, Debug)]
pub struct AeConfig {
    /// Time between two sweep steps (one range exchange each).
    pub interval: Duration,
    /// Merkle tree depth per range (`2^depth` leaves).
    pub depth: u8,
    /// Bytes per second exchanges and repairs may send.
    pub bytes_per_sec: u64,
    /// Bounds on one exchange's messages.
    pub limits: crate::merkle::ExchangeLimits,
    /// An exchange taking longer is abandoned.
    pub session_timeout: Duration,
}

impl Default for AeConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(200),
            depth: 8,
            bytes_per_sec: 4 * 1024 * 1024,
            limits: crate::merkle::ExchangeLimits::default(),
            session_timeout: Duration::from_secs(30),
        }
    }
}

/// Sloppy quorum and hinted handoff settings.
#[derive(Clone, Debug)]
pub struct HintConfig {
    /// Write to fallback nodes, with a hint, when preference-list replicas are down, and count
    /// their acknowledgements toward W. `false` is a strict quorum: only the preference list.
    pub sloppy_quorum: bool,
    /// Most bytes of hints a node keeps; beyond, a hint is refused (and counted).
    pub max_bytes: u64,
    /// Hints older than this are dropped (and counted); anti-entropy repairs what they held.
    pub max_age: Duration,
    /// Time between delivery rounds.
    pub deliver_interval: Duration,
    /// Most deliveries in flight per owner (throttle).
    pub batch: usize,
}

impl Default for HintConfig {
    fn default() -> Self {
        Self {
            sloppy_quorum: true,
            max_bytes: 256 * 1024 * 1024,
            max_age: Duration::from_secs(3 * 3600),
            deliver_interval: Duration::from_millis(100),
            batch: 64,
        }
    }
}

/// Timing and bounds of primary mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplConfig {
    /// How often a primary heartbeats an idle replica.
    pub beat_interval: Duration,
    /// A primary that heard no majority for this long stops taking writes; a replica that heard
    /// its primary this recently refuses to vote for another.
    pub lease: Duration,
    /// A replica that heard nothing from its primary this long (or membership says it is down)
    /// stands for election, later by `stagger` per live node ahead of it in the shard.
    pub failover_timeout: Duration,
    /// Delay per rank between candidacies of the shard's replicas.
    pub stagger: Duration,
    /// A replica silent this long is shown `offline` and does not count for `sync-replicas`.
    pub replica_timeout: Duration,
    /// Chain topology: how long a replica waits for the next one to answer a relayed append,
    /// per replica left in the chain, before it answers upstream with what it has.
    pub relay_timeout: Duration,
    /// Backlog bytes per shard (Redis `repl-backlog-size`).
    pub backlog_bytes: usize,
    /// Most entries per append.
    pub max_batch_entries: usize,
    /// About the most bytes per append or snapshot page.
    pub max_batch_bytes: usize,
    /// Most writes waiting for replicas per shard.
    pub max_waiting: usize,
    /// Record every log change for [`Replication::take_log_events`] (the simulator's checker).
    #[doc(hidden)]
    pub audit_log: bool,
}

impl Default for ReplConfig {
    fn default() -> Self {
        Self {
            beat_interval: Duration::from_millis(200),
            lease: Duration::from_millis(1000),
            failover_timeout: Duration::from_millis(1000),
            stagger: Duration::from_millis(300),
            replica_timeout: Duration::from_millis(2000),
            relay_timeout: Duration::from_millis(200),
            backlog_bytes: 1 << 20,
            max_batch_entries: 256,
            max_batch_bytes: 256 << 10,
            max_waiting: 10_000,
            audit_log: false,
        }
    }
}
