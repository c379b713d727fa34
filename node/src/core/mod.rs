//! The sans-IO node: membership, ring, coordinator and replica in one state machine.
//!
//! [`NodeCore`] is handed [`Input`]s, each with the caller's wall-clock milliseconds, and
//! returns [`Effect`]s. It never reads a clock, opens a socket or spawns a task, so the tokio
//! shell and the deterministic simulator drive the very same logic.

mod actor;
mod antientropy;
mod coordinator;
mod gc;
mod hints;
mod replica;
pub mod replication;
mod table;
mod transfer;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringkv_gossip::{
    GossipConfig, GossipOutput, GossipTimer, MemberEvent, MemberState, Membership, NodeId,
    NodeStatus,
};
use ringkv_ring::{Ring, RingConfig, RingNode};

pub use antientropy::AE_CALL_BIT;
pub use coordinator::{CallId, ClientId, OpId};
pub use gc::GC_CALL_BIT;
pub use hints::{HintTally, HINT_CALL_BIT};
pub use primary::FORWARD_CALL_BIT;
pub use replica::{load, Change, Replica, ReplicaError};
pub use replication::REPL_CALL_BIT;
pub use table::TABLE_CALL_BIT;
pub use transfer::TRANSFER_CALL_BIT;

use crate::config::CoreConfig;
use crate::hlc::Hlc;
use crate::proto::{
    ClientError, ClientRequest, ClientResponse, InspectResult, MemberRow, PeerReply, PeerRequest,
    RingInfo,
};
use crate::store::{Durability, Store};
use crate::table::{RangeTable, TableLimits};
use antientropy::AntiEntropy;
use coordinator::{Action, Coordinator, ReadSpec, Target, WriteSpec};
use gc::Gc;
use hints::Hints;
use table::{TableSync, TABLE_INTERVAL};
use transfer::Transfer;

/// Identifies a request from a peer; its response carries the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InboundId(pub u64);

/// Something that happened to the node.
#[derive(Debug)]
pub enum Input {
    /// A client asked this node to coordinate.
    Client {
        /// Correlates the answer.
        id: ClientId,
        /// The request.
        req: ClientRequest,
    },
    /// A peer (or this node itself) asked this node as a replica.
    PeerRequest {
        /// Correlates the response.
        id: InboundId,
        /// The asking node.
        from: String,
        /// The request.
        req: PeerRequest,
    },
    /// The answer to an [`Effect::Call`], or why the call failed.
    PeerReply {
        /// The call.
        call: CallId,
        /// The reply, or the transport's error.
        reply: Result<PeerReply, String>,
    },
    /// A gossip datagram arrived.
    Datagram(Bytes),
    /// A timer armed by [`Effect::Schedule`] fired.
    Timer(Timer),
}

/// Timers the core arms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Timer {
    /// A membership timer.
    Gossip(GossipTimer),
    /// A client request's deadline.
    Deadline(OpId),
    /// The anti-entropy sweep's next step.
    AntiEntropy,
    /// An anti-entropy exchange held back by the I/O budget may go on.
    AntiEntropyStep,
    /// Deliver hints to owners that are back.
    Hints,
    /// Hand data of ranges this node no longer replicates to their replicas.
    Transfer,
    /// Look at the next tombstone that may be removed.
    Gc,
    /// Re-send this node's status, in case a member missed its broadcast.
    StatusRefresh,
    /// Primary mode: heartbeats, elections, deadlines.
    Replication,
    /// A request forwarded to a key's primary is overdue.
    Forward(CallId),
    /// Push-pull the range table with the next live peer.
    Table,
}

/// Something the node must do.
#[derive(Debug)]
pub enum Effect {
    /// Answer a client.
    Reply {
        /// The request answered.
        id: ClientId,
        /// The answer.
        result: Result<ClientResponse, ClientError>,
    },
    /// Answer a peer; when `sync` is set, only after the store is durably synced.
    Respond {
        /// The request answered.
        id: InboundId,
        /// The answer.
        reply: PeerReply,
        /// Sync the store first (group commit: one sync may cover many responses).
        sync: bool,
    },
    /// Call a replica (maybe this very node); feed the answer back as [`Input::PeerReply`].
    Call {
        /// Correlates the reply.
        call: CallId,
        /// The replica's address.
        to: SocketAddr,
        /// The request.
        req: PeerRequest,
    },
    /// Send a replica a record to merge, nobody waiting for the answer (anti-entropy's
    /// repairs). Under `Durability::Sync` only after the store is synced, so nothing a crash
    /// could erase leaves the node.
    Push {
        /// The replica's address.
        to: SocketAddr,
        /// The request (a `Replicate`).
        req: PeerRequest,
        /// Sync the store first.
        sync: bool,
    },
    /// Send a gossip datagram.
    Datagram {
        /// Destination.
        to: SocketAddr,
        /// Payload.
        data: Bytes,
    },
    /// Feed `timer` back as [`Input::Timer`] after `after`.
    Schedule {
        /// Delay.
        after: Duration,
        /// What fires.
        timer: Timer,
    },
    /// Membership changed (for logs and watchers; the core already acted on it).
    Member(MemberEvent),
}

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
        };
    };
}

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
    /// Primary-mode requests forwarded to a primary, or from another node.
    forwards: primary::Forwards,
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
            forwards: primary::Forwards::default(),
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
                req: PeerRequest::Forward(req),
                ..
            } => {
                let client = self.forwards.accept(id);
                self.client(
                    now_ms,
                    client,
                    ClientRequest::Direct(Box::new(req)),
                    &mut out,
                );
            }
            Input::PeerRequest {
                id,
                from,
                req: PeerRequest::Repl(req),
            } => {
                repl_ctx!(self, now_ms, ctx);
                let (reply, sync) = self.repl.on_request(&ctx, &from, req, &mut out);
                out.push(Effect::Respond { id, reply, sync });
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
                self.forwards.on_reply(call, reply, &mut out);
            }
            Input::PeerReply { call, reply } if call.0 & HINT_CALL_BIT != 0 => {
                self.hints.on_reply(self.store.as_ref(), call, reply);
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

    /// Every node this node knows, itself first.
    pub fn members(&self) -> Vec<MemberRow> {
        let me = self.membership.me();
        let mut rows = vec![MemberRow {
            name: me.name.clone(),
            addr: me.addr.to_string(),
            state: "alive".into(),
            status: status_name(self.membership.status()).into(),
            zone: me.zone.clone(),
        }];
        rows.extend(self.membership.members().into_iter().map(|m| {
            MemberRow {
                name: m.id.name.clone(),
                addr: m.id.addr.to_string(),
                state: match m.state {
                    MemberState::Alive => "alive",
                    MemberState::Suspect => "suspect",
                    MemberState::Down => "down",
                }
                .into(),
                status: status_name(m.status).into(),
                zone: m.id.zone.clone(),
            }
        }));
        rows
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

    fn client(&mut self, now_ms: u64, id: ClientId, req: ClientRequest, out: &mut Vec<Effect>) {
        let (mut req, mut direct, mut after) = (req, false, None);
        // Peel the modifiers (serve here, read after a session), each at most once.
        for _ in 0..2 {
            req = match req {
                ClientRequest::Direct(inner) if !direct => {
                    direct = true;
                    *inner
                }
                ClientRequest::After { after: a, req } if after.is_none() => {
                    after = Some(a);
                    *req
                }
                other => other,
            };
        }
        if matches!(req, ClientRequest::Direct(_) | ClientRequest::After { .. }) {
            let e = ClientError::Unavailable("a request modifier may appear once".into());
            return reply(out, id, Err(e));
        }
        let primary = match &req {
            ClientRequest::Get { key, .. }
            | ClientRequest::Put { key, .. }
            | ClientRequest::Delete { key, .. } => self.table.current().lookup(key).cloned(),
            _ => None,
        };
        if let Some(opts) = primary {
            if let Err(e) = self.admit(&DataOp::of(&req)) {
                return reply(out, id, Err(e));
            }
            return self.primary_op(now_ms, id, req, opts, (direct, after), out);
        }
        let op = match req {
            ClientRequest::Direct(_) | ClientRequest::After { .. } => return,
            ClientRequest::Replication { key } => {
                repl_ctx!(self, now_ms, ctx);
                let shard = key.map(|k| self.ring.preference_list(&k).to_vec());
                let mut rows = self.repl.info(&ctx);
                rows.retain(|r| shard.as_ref().is_none_or(|s| *s == r.shard));
                return reply(out, id, Ok(ClientResponse::Replication(rows)));
            }
            ClientRequest::Members => {
                let rows = self.members();
                return reply(out, id, Ok(ClientResponse::Members(rows)));
            }
            ClientRequest::Ring => {
                let info = self.ring_info();
                return reply(out, id, Ok(ClientResponse::Ring(info)));
            }
            ClientRequest::Inspect { key } => {
                let result = self.inspect(key);
                return reply(out, id, result.map(ClientResponse::Inspect));
            }
            ClientRequest::Status => {
                let ctx = view!(self, now_ms);
                let mut status = self.ae.status(&ctx);
                status.ranges = self.hints.range_status(&self.ring, status.ranges);
                (status.hints, status.hints_delivered, status.hints_dropped) =
                    self.hints.report(self.store.as_ref());
                status.keys_handed_off = self.transfer.moved();
                status.tombstones_reaped = self.gc.reaped();
                return reply(out, id, Ok(ClientResponse::Status(status)));
            }
            ClientRequest::Repair => {
                let ctx = view!(self, now_ms);
                let progress = self.ae.repair(&ctx);
                return reply(out, id, Ok(ClientResponse::Repair(progress)));
            }
            ClientRequest::RangeSet { prefix, mode } => {
                let ctx = view!(self, now_ms);
                let result = self.table.set(&ctx, prefix, mode, out);
                if result.is_ok() {
                    self.table_changed();
                }
                return reply(out, id, result.map(ClientResponse::RangeTable));
            }
            ClientRequest::RangeList => {
                let rows = self.table.current().rows();
                return reply(out, id, Ok(ClientResponse::RangeTable(rows)));
            }
            ClientRequest::Get {
                key,
                r,
                wait_repair,
            } => DataOp::Read {
                key,
                r,
                wait_repair,
            },
            ClientRequest::Put {
                key,
                value,
                context,
                w,
            } => DataOp::Write {
                key,
                value: Some(value),
                context,
                w,
            },
            ClientRequest::Delete { key, context, w } => DataOp::Write {
                key,
                value: None,
                context,
                w,
            },
        };
        if let Err(e) = self.admit(&op) {
            return reply(out, id, Err(e));
        }
        let mut actions = Vec::new();
        let q = self.config.quorum;
        let op_id = match op {
            DataOp::Read {
                key,
                r,
                wait_repair,
            } => {
                let targets = self.targets(&key, false);
                let spec = ReadSpec {
                    key,
                    r: r.map_or(q.r, usize::from),
                    wait_repair,
                };
                self.coordinator.read(id, targets, spec, &mut actions)
            }
            DataOp::Write {
                key,
                value,
                context,
                w,
            } => {
                let targets = self.targets(&key, true);
                let spec = WriteSpec {
                    key,
                    value,
                    context: context.map(|c| c.0),
                    ts: self.hlc.now(now_ms),
                    w: w.map_or(q.w, usize::from),
                };
                self.coordinator.write(id, targets, spec, &mut actions)
            }
        };
        self.act(actions, out);
        out.push(Effect::Schedule {
            after: self.config.request_timeout,
            timer: Timer::Deadline(op_id),
        });
    }

    /// Whether a replica request is a quorum-path write to a key under a primary prefix: those
    /// go through the key's primary only, so the log stays the key's one history.
    fn quorum_write_refused(&self, req: &PeerRequest) -> bool {
        let key = match req {
            PeerRequest::Write { key, .. }
            | PeerRequest::Replicate { key, .. }
            | PeerRequest::Hint { key, .. } => key,
            _ => return false,
        };
        self.table.current().lookup(key).is_some()
    }

    /// What this node alone holds for a key.
    fn inspect(&self, key: Vec<u8>) -> Result<InspectResult, ClientError> {
        let max = self.config.limits.max_key;
        if key.is_empty() || key.len() > max {
            return Err(ClientError::BadKey {
                size: key.len(),
                max,
            });
        }
        let token = ringkv_ring::token(&key);
        let record = load(self.store.as_ref(), token, &key)
            .map_err(|e| ClientError::Unavailable(e.to_string()))?
            .unwrap_or_default();
        let hints = hints::held_for(self.store.as_ref(), token, &key)
            .map_err(|e| ClientError::Unavailable(format!("cannot read hints: {e}")))?;
        let me = &self.membership.me().name;
        Ok(InspectResult {
            node: me.clone(),
            replica: self.ring.preference_list(&key).contains(me),
            token,
            siblings: hints::siblings(&record),
            context: crate::version::Context(record.join()),
            hints,
        })
    }

    /// Check a data request against the limits before any replica is bothered.
    fn admit(&self, op: &DataOp) -> Result<(), ClientError> {
        let limits = &self.config.limits;
        if self.coordinator.in_flight() >= limits.max_in_flight {
            return Err(ClientError::Overloaded {
                in_flight: self.coordinator.in_flight(),
            });
        }
        let (key, value, quorum) = match op {
            DataOp::Read { key, r, .. } => (key, None, r.map(|r| ("r", r))),
            DataOp::Write { key, value, w, .. } => (key, value.as_ref(), w.map(|w| ("w", w))),
        };
        if key.is_empty() || key.len() > limits.max_key {
            return Err(ClientError::BadKey {
                size: key.len(),
                max: limits.max_key,
            });
        }
        if let Some(v) = value.filter(|v| v.len() > limits.max_value) {
            return Err(ClientError::ValueTooLarge {
                size: v.len(),
                max: limits.max_value,
            });
        }
        let n = self.config.quorum.n;
        if let Some((which, asked)) = quorum.filter(|(_, q)| *q == 0 || usize::from(*q) > n) {
            return Err(ClientError::BadQuorum {
                which: which.into(),
                asked,
                n: u8::try_from(n).unwrap_or(u8::MAX),
            });
        }
        Ok(())
    }

    /// The key's preference list, this node first when it is a replica (it leads the write
    /// without a network hop), unreachable replicas without an address. For a write under
    /// sloppy quorum, each unreachable replica gets a live fallback past the list that keeps
    /// a hint for it.
    fn targets(&self, key: &[u8], write: bool) -> Vec<Target> {
        let me = &self.membership.me().name;
        let live = |name: &str| name == me || self.membership.is_alive(name);
        let list = self.ring.preference_list(key);
        let mut names: Vec<&String> = list.iter().collect();
        if let Some(pos) = names.iter().position(|n| *n == me) {
            names[..=pos].rotate_right(1);
        }
        let mut targets: Vec<Target> = names
            .into_iter()
            .map(|name| {
                let addr = self.addrs.get(name).copied().filter(|_| live(name));
                Target::new(name.clone(), addr)
            })
            .collect();
        if write && self.hints.sloppy() {
            let down: Vec<String> = targets
                .iter()
                .filter(|t| t.addr.is_none())
                .map(|t| t.name.clone())
                .collect();
            let token = ringkv_ring::token(key);
            let stand_ins = hints::fallbacks(&self.ring, token, list, live, down.len());
            for (owner, name) in down.into_iter().zip(stand_ins) {
                if let Some(addr) = self.addrs.get(&name).copied() {
                    targets.push(Target::fallback(name, addr, owner));
                }
            }
        }
        targets
    }

    /// The range table changed (a rule set here, or a peer's table merged): the mechanisms
    /// that depend on which prefixes run in primary mode react here.
    fn table_changed(&mut self) {
        // Nothing depends on the table yet.
    }

    /// Remove the tombstones the collector cleared, keeping the Merkle trees in step.
    fn drop_reaped(&mut self) {
        let drops = self.gc.take_drops();
        let keys: Vec<(u64, Vec<u8>, Vec<u8>)> = drops
            .iter()
            .map(|(t, k, v, _)| (*t, k.clone(), v.clone()))
            .collect();
        let dropped = self.drop_keys(&keys);
        self.gc
            .count_reaped(dropped.iter().filter(|d| **d).count() as u64);
        for ((token, _, _, hash), gone) in drops.into_iter().zip(dropped) {
            if gone {
                let change = Change {
                    token,
                    old: Some(hash),
                    new: None,
                };
                self.ae.on_change(&self.ring, &change);
            }
        }
    }

    /// Delete keys that still hold the given bytes, marking the actor first (a dropped key
    /// must not let a later dot be reused). Says which were deleted.
    fn drop_keys(&mut self, keys: &[(u64, Vec<u8>, Vec<u8>)]) -> Vec<bool> {
        if keys.is_empty() {
            return Vec::new();
        }
        let store = self.store.as_ref();
        if let Err(e) = self.actor.before_drop(store) {
            tracing::warn!("keeping keys: cannot mark the actor: {e}");
            return vec![false; keys.len()];
        }
        keys.iter()
            .map(|(token, key, expected)| {
                let unchanged = matches!(store.get(*token, key), Ok(Some(v)) if v == *expected);
                unchanged
                    && match store.delete(*token, key) {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!("cannot drop a key: {e}");
                            false
                        }
                    }
            })
            .collect()
    }

    /// A joining node pulls its ranges with one anti-entropy round once it has peers, then
    /// announces itself `Up`.
    fn advance_joining(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        match self.joining {
            Joining::Done => {}
            Joining::WaitingForPeers => {
                let has_peers = self
                    .membership
                    .members()
                    .iter()
                    .any(|m| m.state != MemberState::Down);
                if has_peers {
                    let ctx = view!(self, now_ms);
                    self.ae.pull(&ctx);
                    self.joining = Joining::Pulling { since_ms: now_ms };
                }
            }
            Joining::Pulling { since_ms } => {
                let ctx = view!(self, now_ms);
                // The sweep goes on finishing what a slow pull left; `Up` is not held hostage.
                let overdue = now_ms.saturating_sub(since_ms) > JOIN_PULL_LIMIT_MS;
                if !self.ae.status(&ctx).repair.running || overdue {
                    self.joining = Joining::Done;
                    if self.membership.status() == NodeStatus::Joining {
                        let outputs = self.membership.set_status(NodeStatus::Up);
                        self.gossip(outputs, out);
                    }
                }
            }
        }
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

    fn gossip(&mut self, outputs: Vec<GossipOutput>, out: &mut Vec<Effect>) {
        let mut changed = false;
        for output in outputs {
            out.push(match output {
                GossipOutput::Send { to, data } => Effect::Datagram { to, data },
                GossipOutput::Schedule { after, timer } => Effect::Schedule {
                    after,
                    timer: Timer::Gossip(timer),
                },
                GossipOutput::Event(event) => {
                    changed |= matches!(
                        event,
                        MemberEvent::Up(_)
                            | MemberEvent::Down(_)
                            | MemberEvent::StatusChanged(..)
                            | MemberEvent::Rejoined(_)
                    );
                    Effect::Member(event)
                }
            });
        }
        if changed {
            self.rebuild_ring();
        }
    }

    /// The ring holds every known member that is not leaving: a node that crashed keeps its
    /// place (its replicas are expected back), one leaving or gone gracefully does not. A
    /// leaving node drops itself too, so its data flows to the remaining replicas.
    fn rebuild_ring(&mut self) {
        let me = self.membership.me().clone();
        let mut addrs = BTreeMap::from([(me.name.clone(), me.addr)]);
        let mut nodes = Vec::new();
        if self.membership.status() != NodeStatus::Leaving {
            nodes.push(RingNode {
                name: me.name.clone(),
                zone: me.zone.clone(),
            });
        }
        for m in self.membership.members() {
            if m.id.name == me.name {
                continue;
            }
            addrs.insert(m.id.name.clone(), m.id.addr);
            if m.status != NodeStatus::Leaving {
                nodes.push(RingNode {
                    name: m.id.name,
                    zone: m.id.zone,
                });
            }
        }
        nodes.sort();
        if nodes.as_slice() != self.ring.nodes() {
            self.ring = Ring::new(nodes, self.ring.config());
            self.ae.reset();
            self.transfer.reset();
            self.gc.reset();
        }
        self.addrs = addrs;
    }

    fn ring_info(&self) -> RingInfo {
        let owned = self.ring.ownership();
        let share = self.ring.replica_share();
        RingInfo {
            n: u8::try_from(self.config.quorum.n).unwrap_or(u8::MAX),
            vnodes: self.config.vnodes,
            nodes: self
                .ring
                .nodes()
                .iter()
                .map(|n| {
                    let first = owned.get(&n.name).copied().unwrap_or(0.0);
                    let any = share.get(&n.name).copied().unwrap_or(0.0);
                    (n.name.clone(), first, any)
                })
                .collect(),
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

fn reply(out: &mut Vec<Effect>, id: ClientId, result: Result<ClientResponse, ClientError>) {
    out.push(Effect::Reply { id, result });
}

/// How often primary mode checks heartbeats, elections and deadlines.
const REPL_TICK: Duration = Duration::from_millis(50);

/// How often a node re-sends its status record.
const STATUS_REFRESH: Duration = Duration::from_secs(5);

/// How often the tombstone collector takes its next step.
const GC_INTERVAL: Duration = Duration::from_millis(100);

/// How often ownership transfer looks for data to move.
const TRANSFER_INTERVAL: Duration = Duration::from_millis(200);

/// Longest a joiner stays `Joining` while it pulls its ranges.
const JOIN_PULL_LIMIT_MS: u64 = 15_000;

/// Where a starting node is on its way to `Up`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Joining {
    /// Announced `Joining`, no peer yet.
    WaitingForPeers,
    /// Pulling its ranges with an anti-entropy round, since this time.
    Pulling { since_ms: u64 },
    /// `Up` (or started alone, a new cluster).
    Done,
}

/// A data request, once admin requests are answered.
#[derive(Clone)]
enum DataOp {
    Read {
        key: Vec<u8>,
        r: Option<u8>,
        wait_repair: bool,
    },
    Write {
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        context: Option<crate::version::Context>,
        w: Option<u8>,
    },
}

/// The name `ringctl members` shows for a status.
pub fn status_name(status: NodeStatus) -> &'static str {
    match status {
        NodeStatus::Joining => "joining",
        NodeStatus::Up => "up",
        NodeStatus::Leaving => "leaving",
    }
}

impl DataOp {
    /// The data operation of a `Get`, `Put` or `Delete` (an empty read for anything else, which
    /// callers never pass).
    fn of(req: &ClientRequest) -> Self {
        match req {
            ClientRequest::Get {
                key,
                r,
                wait_repair,
            } => DataOp::Read {
                key: key.clone(),
                r: *r,
                wait_repair: *wait_repair,
            },
            ClientRequest::Put {
                key,
                value,
                context,
                w,
            } => DataOp::Write {
                key: key.clone(),
                value: Some(value.clone()),
                context: context.clone(),
                w: *w,
            },
            ClientRequest::Delete { key, context, w } => DataOp::Write {
                key: key.clone(),
                value: None,
                context: context.clone(),
                w: *w,
            },
            _ => DataOp::Read {
                key: Vec::new(),
                r: None,
                wait_repair: false,
            },
        }
    }
}
