//! The sans-IO node: membership, ring, coordinator and replica in one state machine.
//!
//! [`NodeCore`] is handed [`Input`]s, each with the caller's wall-clock milliseconds, and
//! returns [`Effect`]s. It never reads a clock, opens a socket or spawns a task, so the tokio
//! shell and the deterministic simulator drive the very same logic.

mod actor;
mod antientropy;
mod calls;
mod coordinator;
mod effects;
mod gc;
mod hints;
mod replica;
pub mod replication;
mod table;
mod transfer;
pub mod update;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ringkv_gossip::{GossipConfig, Membership, NodeId, NodeStatus};
use ringkv_ring::{Ring, RingConfig};

pub use calls::{CallError, CallId, Calls, Owner};
pub use client::status_name;
pub use coordinator::{ClientId, OpId};
pub use effects::{Effect, InboundId, Input, Timer};
pub use hints::HintTally;
pub use replica::{load, Change, Replica, ReplicaError};

use crate::config::CoreConfig;
use crate::hlc::Hlc;
use crate::limits::{Limit, LimitCounts};
use crate::store::{Durability, Store};
use crate::table::{RangeTable, TableLimits};
use antientropy::AntiEntropy;
use coordinator::{Action, Coordinator};
use gc::Gc;
use hints::Hints;
use members::{Joining, STATUS_REFRESH};
use table::TableSync;
use transfer::Transfer;

mod client;
mod dispatch;
mod forward;
mod members;
mod peers;
mod primary;
mod scan;

#[cfg(test)]
mod limits_tests;

/// Arm `timer` to fire after `after`.
fn arm(out: &mut Vec<Effect>, after: Duration, timer: Timer) {
    out.push(Effect::Schedule { after, timer });
}

/// What every mechanism reads and the core alone changes: the node's identity and settings,
/// membership and the ring it gives, peer addresses, the store and the clock.
pub(crate) struct Shared {
    config: CoreConfig,
    membership: Membership,
    ring: Ring,
    addrs: BTreeMap<String, SocketAddr>,
    store: Arc<dyn Store>,
    hlc: Hlc,
    /// A digest of the ring's members: replication runs only between nodes that agree on it.
    ring_id: u64,
}

impl Shared {
    /// The node as the background mechanisms see it at `now_ms`.
    fn view(&self, now_ms: u64) -> View<'_> {
        View {
            me: &self.membership.me().name,
            ring: &self.ring,
            store: self.store.as_ref(),
            membership: &self.membership,
            addrs: &self.addrs,
            now_ms,
        }
    }

    /// What primary mode sees of the node at `now_ms`, with the range table `table`.
    fn repl_ctx<'a>(&'a self, table: &'a RangeTable, now_ms: u64) -> replication::Ctx<'a> {
        replication::Ctx {
            view: self.view(now_ms),
            primary_key: table,
            durable: self.durable(),
            ring_id: self.ring_id,
            chain: table.topology() == crate::table::Topology::Chain,
        }
    }

    /// Whether replies wait for the store's sync.
    fn durable(&self) -> bool {
        self.config.durability == Durability::Sync
    }
}

/// The node's whole protocol state: the [`Shared`] part, and one owner per mechanism, each
/// reached only through its own methods (see `dispatch.rs` for who owns which input).
pub struct NodeCore {
    shared: Shared,
    coordinator: Coordinator,
    ae: AntiEntropy,
    hints: Hints,
    transfer: Transfer,
    gc: Gc,
    /// The range table: which key prefixes run in primary mode.
    table: TableSync,
    /// Joining: set `Up` once the first anti-entropy round after joining is done.
    joining: Joining,
    /// The actor of the dots this node makes (see [`actor`]).
    actor: actor::Actor,
    /// Primary mode's shards.
    repl: replication::Replication,
    /// Primary-mode requests forwarded to a primary, or from another node.
    forwards: forward::Forwards,
    /// Ring members saved for the next start.
    peers: peers::Peers,
    /// Key listings (`SCAN`) waiting for replicas.
    scans: scan::Scans,
    /// Hits of the bounds the core itself enforces on clients (the mechanisms count their
    /// own; see [`NodeCore::limit_hits`]).
    limit_counts: LimitCounts,
}

impl NodeCore {
    /// A node that will join through `seeds`; `rng_seed` drives every random choice.
    pub fn new(
        me: NodeId,
        seeds: Vec<SocketAddr>,
        config: CoreConfig,
        gossip: GossipConfig,
        store: Arc<dyn Store>,
        rng_seed: u64,
    ) -> Result<Self, crate::Error> {
        // Under `Sync` a dot is on disk before anyone sees it, so the name is enough; under
        // `Buffered` a crash can forget one, so every start takes a fresh actor.
        let base = match config.durability {
            Durability::Sync => me.name.clone(),
            Durability::Buffered => format!("{}@{}", me.name, me.bump),
        };
        let actor = actor::Actor::load(base, store.as_ref())?;
        let durable = config.durability == Durability::Sync;
        let seeded = !seeds.is_empty();
        let table = TableSync::load(store.as_ref(), TableLimits::of(&config), durable, !seeded)?;
        let keep_ms = u64::try_from(gossip.remove_down_after.as_millis()).unwrap_or(u64::MAX);
        let peers = peers::Peers::load(store.as_ref(), &me.name, keep_ms);
        let membership = Membership::new(me, seeds, gossip, rng_seed)?;
        let ring_config = RingConfig {
            vnodes: config.vnodes,
            replicas: config.quorum.n,
        };
        let max_drift = u64::try_from(config.max_clock_drift.as_millis()).unwrap_or(u64::MAX);
        let mut core = Self {
            ae: AntiEntropy::new(config.anti_entropy.clone()),
            hints: Hints::load(config.hints.clone(), config.sabotage(), store.as_ref()),
            transfer: Transfer::default(),
            gc: Gc::new(u64::try_from(config.tombstone_grace.as_millis()).unwrap_or(u64::MAX)),
            table,
            joining: if seeded {
                Joining::WaitingForPeers
            } else {
                Joining::Done
            },
            actor,
            repl: replication::Replication::new(config.replication.clone())
                .with_policy(config.conflict_policy)
                .sabotaged(config.sabotage()),
            forwards: forward::Forwards::default(),
            peers,
            scans: scan::Scans::default(),
            limit_counts: LimitCounts::default(),
            coordinator: Coordinator::new(config.conflict_policy, config.sabotage()),
            shared: Shared {
                hlc: Hlc::new(max_drift),
                ring: Ring::empty(ring_config),
                addrs: BTreeMap::new(),
                ring_id: 0,
                membership,
                store,
                config,
            },
        };
        core.rebuild_ring();
        Ok(core)
    }

    /// Announce to the seeds and start the failure detector.
    pub fn start(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        let outputs = self.shared.membership.start();
        self.gossip(outputs, &mut out);
        if self.joining != Joining::Done {
            let outputs = self.shared.membership.set_status(NodeStatus::Joining);
            self.gossip(outputs, &mut out);
        }
        arm(&mut out, self.ae.interval(), Timer::AntiEntropy);
        arm(&mut out, Transfer::INTERVAL, Timer::Transfer);
        arm(&mut out, self.hints.interval(), Timer::Hints);
        arm(&mut out, Gc::INTERVAL, Timer::Gc);
        arm(&mut out, STATUS_REFRESH, Timer::StatusRefresh);
        arm(&mut out, TableSync::INTERVAL, Timer::Table);
        arm(&mut out, replication::Replication::TICK, Timer::Replication);
        out
    }

    /// Start leaving: announce `Leaving`, which takes this node out of every ring, so its
    /// data flows to the ranges' remaining replicas (see [`NodeCore::handed_off`]).
    pub fn begin_leave(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        let outputs = self.shared.membership.set_status(NodeStatus::Leaving);
        self.gossip(outputs, &mut out);
        self.rebuild_ring();
        out
    }

    /// Whether a leaving node has handed every key to the ranges' new replicas, every
    /// primary-mode range it logged for to a first primary of its next list (see
    /// `replication/leaving.rs`), and every hint it keeps to its owner when that owner is
    /// alive (a hint for a down owner leaves with it: the owner's peers repair it by
    /// anti-entropy).
    pub fn handed_off(&self) -> bool {
        let keys = self.shared.ring.is_empty() || self.transfer.is_idle(&self.shared.ring);
        let deliverable = |owner: &str| {
            self.shared.ring.contains(owner) && self.shared.membership.is_alive(owner)
        };
        keys && !self.repl.owes_gather(&self.shared.ring)
            && !self
                .hints
                .holds_for(self.shared.store.as_ref(), deliverable)
    }

    /// Whether this node announced it is leaving.
    pub fn is_leaving(&self) -> bool {
        self.shared.membership.status() == NodeStatus::Leaving
    }

    /// What became of hints since this process started.
    pub fn hint_tally(&self) -> HintTally {
        self.hints.tally()
    }

    /// Hits of each bound the core enforces, in [`Limit::ALL`] order (hint storage's are in
    /// [`NodeCore::hint_tally`]); the shell adds them to its own when it exports
    /// `ringkv_limit_hits_total`.
    pub fn limit_hits(&self) -> Vec<(Limit, u64)> {
        let mut total: Vec<(Limit, u64)> = Limit::ALL.iter().map(|&l| (l, 0)).collect();
        for counts in [
            &self.limit_counts,
            self.ae.limit_counts(),
            self.transfer.limit_counts(),
            self.repl.limit_counts(),
        ] {
            counts.add_to(&mut total);
        }
        total
    }

    /// Leave the cluster: peers see this node gone at once rather than by failure detection.
    pub fn leave(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        let outputs = self.shared.membership.leave();
        self.gossip(outputs, &mut out);
        out
    }

    /// Handle one input at wall-clock time `now_ms`.
    pub fn handle(&mut self, now_ms: u64, input: Input) -> Vec<Effect> {
        if self.peers.expire(now_ms) {
            self.rebuild_ring();
        }
        let mut out = self.step(now_ms, input);
        self.reroute_forwards(now_ms, &mut out);
        self.forwards.route_replies(&mut out);
        out
    }

    /// One input, routed to its handler: one line per input kind (see `dispatch.rs` for the
    /// routing of peer requests, replies and timers to their owners).
    fn step(&mut self, now_ms: u64, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        match input {
            Input::Client { id, req } => self.client(now_ms, id, req, &mut out),
            Input::PeerRequest { id, from, req } => {
                self.peer_request(now_ms, (id, from), req, &mut out)
            }
            Input::PeerReply { call, reply } => self.peer_reply(now_ms, call, reply, &mut out),
            Input::Datagram(data) => self.datagram(&data, &mut out),
            Input::Timer(timer) => self.timer(now_ms, timer, &mut out),
        }
        out
    }

    /// This node's identity.
    pub fn me(&self) -> &NodeId {
        self.shared.membership.me()
    }

    /// The ring as this node computes it now.
    pub fn ring(&self) -> &Ring {
        &self.shared.ring
    }

    /// The range table as this node holds it.
    pub fn table(&self) -> &RangeTable {
        self.table.current()
    }

    /// The primary-mode shards this node leads now, with their epochs (the simulator's
    /// checker looks after every step).
    #[doc(hidden)]
    pub fn primaries(&self) -> impl Iterator<Item = (&[String], u64)> {
        self.repl.primaries()
    }

    /// Changes to this node's shard logs since the last call, when
    /// `ReplConfig::audit_log` is on, and how many were dropped undrained.
    #[doc(hidden)]
    pub fn take_log_events(&mut self) -> (Vec<replication::LogEvent>, u64) {
        self.repl.take_log_events()
    }

    /// Requests this node coordinates right now.
    pub fn in_flight(&self) -> usize {
        self.coordinator.in_flight()
    }

    /// The range table changed (a rule set here, or a peer's table merged): the mechanisms
    /// that depend on which prefixes run in primary mode react here.
    fn table_changed(&mut self) {
        // Nothing depends on the table yet.
    }

    /// Anti-entropy's effects, its pushes marked for sync under `Durability::Sync`.
    fn pushes(&self, effects: Vec<Effect>, out: &mut Vec<Effect>) {
        let sync = self.shared.config.durability == Durability::Sync;
        out.extend(effects.into_iter().map(|e| match e {
            Effect::Push { to, req, .. } => Effect::Push { to, req, sync },
            other => other,
        }));
    }

    fn act(&mut self, actions: Vec<Action>, out: &mut Vec<Effect>) {
        for action in actions {
            out.push(match action {
                Action::Call { call, to, req } => Effect::Call { call, to, req },
                Action::Reply { id, result } => Effect::Reply { id, result },
            });
        }
    }
}

/// What the background mechanisms (anti-entropy, hints, transfer, GC) see of the node for
/// one step.
pub struct View<'a> {
    /// This node's name.
    pub me: &'a str,
    /// The current ring.
    pub ring: &'a Ring,
    /// The node's store.
    pub store: &'a dyn Store,
    /// Membership, for liveness.
    pub membership: &'a Membership,
    /// Addresses of ring members.
    pub addrs: &'a BTreeMap<String, SocketAddr>,
    /// Wall-clock milliseconds.
    pub now_ms: u64,
}

impl View<'_> {
    /// The address of `name` if it is another node and alive.
    pub fn peer_addr(&self, name: &str) -> Option<SocketAddr> {
        let live = name != self.me && self.membership.is_alive(name);
        self.addrs.get(name).copied().filter(|_| live)
    }
}
