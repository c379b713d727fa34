//! The sans-IO node: membership, ring, coordinator and replica in one state machine.
//!
//! [`NodeCore`] is handed [`Input`]s, each with the caller's wall-clock milliseconds, and
//! returns [`Effect`]s. It never reads a clock, opens a socket or spawns a task, so the tokio
//! shell and the deterministic simulator drive the very same logic.

mod actor;
mod antientropy;
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

pub use antientropy::AE_CALL_BIT;
pub use client::status_name;
pub use coordinator::{CallId, ClientId, OpId};
pub use effects::{Effect, InboundId, Input, Timer};
pub use gc::GC_CALL_BIT;
pub use hints::{HintTally, HINT_CALL_BIT};
pub use peers::MEMBERS_CALL_BIT;
pub use primary::FORWARD_CALL_BIT;
pub use replica::{load, Change, Replica, ReplicaError};
pub use replication::REPL_CALL_BIT;
pub use table::TABLE_CALL_BIT;
pub use transfer::TRANSFER_CALL_BIT;

use crate::config::CoreConfig;
use crate::hlc::Hlc;
use crate::proto::{PeerReply, PeerRequest};
use crate::store::{Durability, Store};
use crate::table::{RangeTable, TableLimits};
use antientropy::AntiEntropy;
use coordinator::{Action, Coordinator};
use gc::Gc;
use hints::Hints;
use members::Joining;
use table::{TableSync, TABLE_INTERVAL};
use transfer::Transfer;

/// The node as the background mechanisms see it for one step. A macro rather than a method:
/// the mechanisms themselves are fields of the core, borrowed mutably alongside.
macro_rules! view {
    ($core:ident, $now_ms:expr) => {
        $crate::core::view(
            &$core.membership,
            &$core.ring,
            &$core.store,
            &$core.addrs,
            $now_ms,
        )
    };
}

/// Bind `$ctx`, what primary mode sees of the node for one step (a macro for the same reason
/// as [`view!`]).
macro_rules! repl_ctx {
    ($core:ident, $now_ms:expr, $ctx:ident) => {
        let table = $core.table.current();
        let primary_key = |k: &[u8]| table.lookup(k).is_some();
        let $ctx = $crate::core::replication::Ctx {
            view: view!($core, $now_ms),
            primary_key: &primary_key,
            durable: $core.config.durability == $crate::store::Durability::Sync,
            ring_id: $core.ring_id,
            chain: table.topology() == $crate::table::Topology::Chain,
        };
    };
}

mod client;
mod members;
mod peers;
mod primary;

/// Arm `timer` to fire after `after`.
fn arm(out: &mut Vec<Effect>, after: Duration, timer: Timer) {
    out.push(Effect::Schedule { after, timer });
}

/// The node's whole protocol state.
pub struct NodeCore {
    config: CoreConfig,
    membership: Membership,
    ring: Ring,
    addrs: BTreeMap<String, SocketAddr>,
    store: Arc<dyn Store>,
    hlc: Hlc,
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
    /// A digest of the ring's members: replication runs only between nodes that agree on it.
    ring_id: u64,
    /// Primary-mode requests forwarded to a primary, or from another node.
    forwards: primary::Forwards,
    /// Ring members saved for the next start.
    peers: peers::Peers,
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
        let table = TableSync::load(store.as_ref(), TableLimits::of(&config), durable)?;
        let seeded = !seeds.is_empty();
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
            hints: Hints::load(config.hints.clone(), config.sabotage, store.as_ref()),
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
                .sabotaged(config.sabotage),
            ring_id: 0,
            forwards: primary::Forwards::default(),
            peers,
            coordinator: Coordinator::new(config.conflict_policy, config.sabotage),
            hlc: Hlc::new(max_drift),
            ring: Ring::empty(ring_config),
            addrs: BTreeMap::new(),
            membership,
            store,
            config,
        };
        core.rebuild_ring();
        Ok(core)
    }

    /// Announce to the seeds and start the failure detector.
    pub fn start(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        let outputs = self.membership.start();
        self.gossip(outputs, &mut out);
        if self.joining != Joining::Done {
            let outputs = self.membership.set_status(NodeStatus::Joining);
            self.gossip(outputs, &mut out);
        }
        arm(&mut out, self.ae.interval(), Timer::AntiEntropy);
        arm(&mut out, TRANSFER_INTERVAL, Timer::Transfer);
        arm(&mut out, self.hints.interval(), Timer::Hints);
        arm(&mut out, GC_INTERVAL, Timer::Gc);
        arm(&mut out, STATUS_REFRESH, Timer::StatusRefresh);
        arm(&mut out, TABLE_INTERVAL, Timer::Table);
        arm(&mut out, REPL_TICK, Timer::Replication);
        out
    }

    /// Start leaving: announce `Leaving`, which takes this node out of every ring, so its
    /// data flows to the ranges' remaining replicas (see [`NodeCore::handed_off`]).
    pub fn begin_leave(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        let outputs = self.membership.set_status(NodeStatus::Leaving);
        self.gossip(outputs, &mut out);
        self.rebuild_ring();
        out
    }

    /// Whether a leaving node has handed every key to the ranges' new replicas, and every
    /// hint it keeps to its owner when that owner is alive (a hint for a down owner leaves
    /// with it: the owner's peers repair it by anti-entropy).
    pub fn handed_off(&self) -> bool {
        let keys = self.ring.is_empty() || self.transfer.is_idle(&self.ring);
        let deliverable =
            |owner: &str| self.ring.contains(owner) && self.membership.is_alive(owner);
        keys && !self.hints.holds_for(self.store.as_ref(), deliverable)
    }

    /// Whether this node announced it is leaving.
    pub fn is_leaving(&self) -> bool {
        self.membership.status() == NodeStatus::Leaving
    }

    /// What became of hints since this process started.
    pub fn hint_tally(&self) -> HintTally {
        self.hints.tally()
    }

    /// Leave the cluster: peers see this node gone at once rather than by failure detection.
    pub fn leave(&mut self) -> Vec<Effect> {
        let mut out = Vec::new();
        let outputs = self.membership.leave();
        self.gossip(outputs, &mut out);
        out
    }

    /// Handle one input at wall-clock time `now_ms`.
    pub fn handle(&mut self, now_ms: u64, input: Input) -> Vec<Effect> {
        if self.peers.expire(now_ms) {
            self.rebuild_ring();
        }
        let mut out = self.step(now_ms, input);
        self.forwards.route_replies(&mut out);
        out
    }

    fn step(&mut self, now_ms: u64, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        match input {
            Input::Client { id, req } => self.client(now_ms, id, req, &mut out),
            // A leaving node takes no new data: what it accepted after its last handoff pass
            // would leave with it.
            Input::PeerRequest { id, req, .. }
                if self.membership.status() == NodeStatus::Leaving
                    && !matches!(req, PeerRequest::Read { .. } | PeerRequest::Exchange { .. }) =>
            {
                out.push(Effect::Respond {
                    id,
                    reply: PeerReply::Failed("this node is leaving the cluster".into()),
                    sync: false,
                });
            }
            Input::PeerRequest {
                id,
                from,
                req:
                    PeerRequest::Exchange {
                        session,
                        start,
                        end,
                        msg,
                    },
            } => {
                let mut effects = Vec::new();
                let reply = self.ae.on_request(
                    &view!(self, now_ms),
                    &from,
                    session,
                    (start, end),
                    msg,
                    &mut effects,
                );
                self.pushes(effects, &mut out);
                out.push(Effect::Respond {
                    id,
                    reply,
                    sync: false,
                });
            }
            Input::PeerRequest {
                id,
                req:
                    PeerRequest::Hint {
                        owner,
                        token,
                        key,
                        record,
                    },
                ..
            } => {
                let store = self.store.as_ref();
                let reply = self.hints.keep(store, &owner, token, &key, &record, now_ms);
                let sync = self.config.durability == Durability::Sync
                    && matches!(reply, PeerReply::Replicated);
                out.push(Effect::Respond { id, reply, sync });
            }
            Input::PeerRequest {
                id,
                from,
                req: PeerRequest::Table { table },
            } => {
                let (reply, changed) = self.table.on_request(self.store.as_ref(), &from, &table);
                let sync = changed && self.config.durability == Durability::Sync;
                out.push(Effect::Respond { id, reply, sync });
                if changed {
                    self.table_changed();
                }
            }
            Input::PeerRequest {
                id,
                req: PeerRequest::Members,
                ..
            } => {
                let reply = PeerReply::Members(self.settled_ring());
                out.push(Effect::Respond {
                    id,
                    reply,
                    sync: false,
                });
            }
            Input::PeerRequest {
                id,
                req: PeerRequest::Forward(req),
                ..
            } => {
                let client = self.forwards.accept(id);
                self.client_from(now_ms, client, req, true, &mut out);
            }
            Input::PeerRequest {
                id,
                from,
                req: PeerRequest::Repl(req, ring),
            } => {
                repl_ctx!(self, now_ms, ctx);
                let answer = self
                    .repl
                    .on_request(&ctx, (&from, id), (req, ring), &mut out);
                if let Some((reply, sync)) = answer {
                    out.push(Effect::Respond { id, reply, sync });
                }
            }
            Input::PeerRequest { id, req, .. } if self.quorum_write_refused(&req) => {
                out.push(Effect::Respond {
                    id,
                    reply: PeerReply::Failed(
                        "the key is under a primary prefix: its writes go through the primary"
                            .into(),
                    ),
                    sync: false,
                });
            }
            Input::PeerRequest { id, req, .. } => {
                // Under `Sync` nothing unsynced may leave a replica, reads included: a dot a
                // client saw and a crash then erased could be issued again to another write.
                let must_sync = self.config.durability == Durability::Sync;
                let is_read = matches!(req, PeerRequest::Read { .. });
                if matches!(req, PeerRequest::Write { .. }) {
                    if let Err(e) = self.actor.before_dot(self.store.as_ref()) {
                        let reply = PeerReply::Failed(format!("cannot record the actor: {e}"));
                        out.push(Effect::Respond {
                            id,
                            reply,
                            sync: false,
                        });
                        return out;
                    }
                }
                let mut replica = Replica {
                    me: self.actor.name(),
                    store: self.store.as_ref(),
                    hlc: &mut self.hlc,
                    policy: self.config.conflict_policy,
                    max_siblings: self.config.limits.max_siblings,
                    changes: Vec::new(),
                };
                let (reply, wrote) = replica.handle(now_ms, req);
                for change in &replica.changes {
                    self.ae.on_change(&self.ring, change);
                }
                let sync = must_sync && (wrote || is_read);
                out.push(Effect::Respond { id, reply, sync });
            }
            Input::PeerReply { call, reply } if call.0 & AE_CALL_BIT != 0 => {
                let mut effects = Vec::new();
                let ctx = view!(self, now_ms);
                self.ae.on_reply(&ctx, call, reply, &mut effects);
                self.pushes(effects, &mut out);
            }
            Input::PeerReply { call, reply } if call.0 & GC_CALL_BIT != 0 => {
                self.gc.on_reply(call, reply);
                self.drop_reaped();
            }
            Input::PeerReply { call, reply } if call.0 & TRANSFER_CALL_BIT != 0 => {
                self.transfer.on_reply(call, reply);
                let drops = self.transfer.take_drops();
                if !drops.is_empty() {
                    let moved = self.drop_keys(&drops).into_iter().filter(|d| *d).count();
                    self.transfer.count_moved(moved as u64);
                    let ctx = view!(self, now_ms);
                    self.transfer.on_tick(&ctx, &mut out);
                }
            }
            Input::PeerReply { call, reply } if call.0 & REPL_CALL_BIT != 0 => {
                repl_ctx!(self, now_ms, ctx);
                self.repl.on_reply(&ctx, call, reply, &mut out);
            }
            Input::PeerReply { call, reply } if call.0 & FORWARD_CALL_BIT != 0 => {
                self.on_forward_reply(now_ms, call, reply, &mut out);
            }
            Input::PeerReply { call, reply } if call.0 & HINT_CALL_BIT != 0 => {
                self.hints.on_reply(self.store.as_ref(), call, reply);
            }
            Input::PeerReply { call, reply } if call.0 & MEMBERS_CALL_BIT != 0 => {
                if let Ok(PeerReply::Members(Some(ring))) = reply {
                    if self.peers.refute(&ring) {
                        self.rebuild_ring();
                    }
                }
            }
            Input::PeerReply { call, reply } if call.0 & TABLE_CALL_BIT != 0 => {
                if self.table.on_reply(self.store.as_ref(), reply) {
                    self.table_changed();
                }
            }
            Input::PeerReply { call, reply } => {
                let mut actions = Vec::new();
                self.coordinator.on_reply(call, reply, &mut actions);
                self.act(actions, &mut out);
            }
            Input::Datagram(data) => match self.membership.handle_datagram(&data) {
                Ok(outputs) => self.gossip(outputs, &mut out),
                Err(e) => {
                    // A datagram can be partly applied before it is rejected: keep its effects.
                    tracing::debug!("refused gossip datagram: {e}");
                    let outputs = self.membership.take_pending_outputs();
                    self.gossip(outputs, &mut out);
                }
            },
            Input::Timer(Timer::Gossip(t)) => {
                let outputs = self.membership.handle_timer(t);
                self.gossip(outputs, &mut out);
            }
            Input::Timer(Timer::AntiEntropy) => {
                let mut effects = Vec::new();
                let ctx = view!(self, now_ms);
                self.ae.on_tick(&ctx, &mut effects);
                self.pushes(effects, &mut out);
                arm(&mut out, self.ae.interval(), Timer::AntiEntropy);
            }
            Input::Timer(Timer::AntiEntropyStep) => {
                let mut effects = Vec::new();
                let ctx = view!(self, now_ms);
                self.ae.on_step(&ctx, &mut effects);
                self.pushes(effects, &mut out);
            }
            Input::Timer(Timer::StatusRefresh) => {
                let outputs = self.membership.refresh_status();
                self.gossip(outputs, &mut out);
                arm(&mut out, STATUS_REFRESH, Timer::StatusRefresh);
            }
            Input::Timer(Timer::Gc) => {
                let ctx = view!(self, now_ms);
                self.gc.on_tick(&ctx, &mut out);
                self.drop_reaped();
                arm(&mut out, GC_INTERVAL, Timer::Gc);
            }
            Input::Timer(Timer::Transfer) => {
                let ctx = view!(self, now_ms);
                let mut effects = Vec::new();
                self.transfer.on_tick(&ctx, &mut effects);
                out.extend(effects);
                self.advance_joining(now_ms, &mut out);
                arm(&mut out, TRANSFER_INTERVAL, Timer::Transfer);
            }
            Input::Timer(Timer::Hints) => {
                let ctx = view!(self, now_ms);
                self.hints.on_tick(&ctx, &mut out);
                arm(&mut out, self.hints.interval(), Timer::Hints);
            }
            Input::Timer(Timer::Table) => {
                let ctx = view!(self, now_ms);
                self.table.on_tick(&ctx, &mut out);
                self.ask_members(&mut out);
                arm(&mut out, TABLE_INTERVAL, Timer::Table);
            }
            Input::Timer(Timer::Replication) => {
                repl_ctx!(self, now_ms, ctx);
                self.repl.on_tick(&ctx, &mut out);
                arm(&mut out, REPL_TICK, Timer::Replication);
            }
            Input::Timer(Timer::Forward(call)) => self.forwards.on_deadline(call, &mut out),
            Input::Timer(Timer::Deadline(op)) => {
                let mut actions = Vec::new();
                self.coordinator.on_deadline(op, &mut actions);
                self.act(actions, &mut out);
            }
        }
        out
    }

    /// This node's identity.
    pub fn me(&self) -> &NodeId {
        self.membership.me()
    }

    /// The ring as this node computes it now.
    pub fn ring(&self) -> &Ring {
        &self.ring
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
        let sync = self.config.durability == Durability::Sync;
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

/// The node as the background mechanisms see it for one step.
fn view<'a>(
    membership: &'a Membership,
    ring: &'a Ring,
    store: &'a Arc<dyn Store>,
    addrs: &'a BTreeMap<String, SocketAddr>,
    now_ms: u64,
) -> View<'a> {
    View {
        me: &membership.me().name,
        ring,
        store: store.as_ref(),
        membership,
        addrs,
        now_ms,
    }
}

/// How often primary mode checks heartbeats, elections and deadlines.
const REPL_TICK: Duration = Duration::from_millis(50);

/// How often a node re-sends its status record.
const STATUS_REFRESH: Duration = Duration::from_secs(5);

/// How often the tombstone collector takes its next step.
const GC_INTERVAL: Duration = Duration::from_millis(100);

/// How often ownership transfer looks for data to move.
const TRANSFER_INTERVAL: Duration = Duration::from_millis(200);
