//! The world: every node's real sans-IO core in one thread on simulated time, wired exactly
//! like the tokio shell wires one (`node/src/node/shell.rs`): calls to itself go straight
//! back in as peer requests, `Respond { sync: true }` waits for a store sync (group commit),
//! a failed or timed-out call comes back as `PeerReply(Err(..))` after the transport's
//! timeout.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ringkv::config::CoreConfig;
use ringkv::core::replication::msg::ReplRequest;
use ringkv::core::{CallError, CallId, Input, NodeCore, Timer};
use ringkv::proto::{ClientError, ClientRequest, ClientResponse, PeerReply, PeerRequest};
use ringkv::store::Store;
use ringkv_gossip::{GossipConfig, GossipError, Membership, NodeId};

use super::checker::Violation;
use super::config::NetConfig;
use super::logwatch::LogWatch;
use super::network::Network;
use super::node::{addr_of, name_of, AfterSync, ClientSlot, NodeState, Process, ReplyTo, SimNode};
use super::queue::{Event, EventQueue};
use super::rng::{SimRng, Stream};
use super::trace::{fnv_of, DropReason, Trace, What};

/// What a client finally learns about its request.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// The coordinator answered with success.
    Ok(ClientResponse),
    /// The coordinator answered with an error (a write may still have reached replicas).
    Refused(ClientError),
    /// No coordinator process took the request: it had no effect.
    Unreachable,
    /// The coordinator went away before answering: it may have taken effect.
    Lost,
}

/// What runs on every node of a world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The whole node core.
    Full,
    /// Membership alone (scale mode).
    Gossip,
}

/// Why the world could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A node's identity or gossip settings were refused.
    #[error("cannot start a node: {0}")]
    Gossip(#[from] GossipError),
    /// The node core refused to start.
    #[error("cannot start a node: {0}")]
    Core(#[from] ringkv::Error),
    /// The run needed more events than its bound.
    #[error("event budget of {0} exhausted")]
    EventBudget(u64),
}

/// What [`World::step`] hands the driver.
#[derive(Debug)]
pub enum Wake {
    /// An internal event was handled.
    Nothing,
    /// A wake-up the driver scheduled with [`World::wake_at`].
    External(u64),
    /// A client got its answer.
    Client {
        /// The workload's tag.
        tag: u64,
        /// The answer.
        answer: Answer,
        /// The key's preference list as the coordinator saw it, when one took the request.
        preference: Option<Vec<String>>,
    },
}

/// Counters of a run.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Events handled.
    pub events: u64,
    /// Gossip datagrams sent (before loss).
    pub datagrams: u64,
    /// Bytes of those datagrams.
    pub datagram_bytes: u64,
    /// Peer calls made over the network.
    pub calls: u64,
    /// Peer replies fed to a coordinator as failures (transport error or `Failed`).
    pub failed_calls: u64,
    /// `Down` membership events seen on any node.
    pub downs: u64,
    /// Appends a replica passed on to the next one (chain topology).
    pub relayed_appends: u64,
    /// How many times each value was taken by a write leader (a retried leader can give
    /// one value two dots).
    pub leader_writes: BTreeMap<Vec<u8>, u32>,
    /// `(time, observer, name)` of every `Down` event, when recording is on.
    pub down_log: Option<Vec<(u64, usize, String)>>,
}

/// Settings of a world.
#[derive(Clone, Debug)]
pub struct WorldConfig {
    /// Core settings of every node.
    pub core: CoreConfig,
    /// Gossip settings of every node.
    pub gossip: GossipConfig,
    /// Network behaviour.
    pub net: NetConfig,
    /// Full nodes, or membership alone.
    pub mode: Mode,
    /// Recent events kept for failure reports (0: none, the hash is still kept).
    pub trace_tail: usize,
    /// Hash gossip payloads into the trace (costly at scale).
    pub hash_payloads: bool,
    /// A range table every node's store holds before the node first starts.
    pub table: Option<ringkv::RangeTable>,
}

pub(crate) struct PendingCall {
    pub(crate) caller: usize,
    pub(crate) inc: u32,
    pub(crate) call: CallId,
}

/// Every node, the network and the event queue, on simulated time.
pub struct World {
    pub(crate) now: u64,
    pub(crate) rng: SimRng,
    node_rng: SimRng,
    pub(crate) queue: EventQueue,
    pub(crate) nodes: Vec<SimNode>,
    pub(crate) by_addr: BTreeMap<SocketAddr, usize>,
    /// The network: switch faults on and off through it.
    pub net: Network,
    pub(crate) calls: BTreeMap<u64, PendingCall>,
    pub(crate) next_call: u64,
    pub(crate) trace: Trace,
    pub(crate) stats: Stats,
    pub(crate) config: WorldConfig,
    /// Primary mode watched after every input, when the cores record their logs.
    pub(crate) watch: Option<LogWatch>,
}

impl World {
    /// An empty world whose every random choice comes from `seed`.
    pub fn new(seed: u64, config: WorldConfig) -> Self {
        Self {
            now: 0,
            rng: SimRng::new(seed, Stream::Network),
            node_rng: SimRng::new(seed, Stream::Nodes),
            queue: EventQueue::new(),
            nodes: Vec::new(),
            by_addr: BTreeMap::new(),
            net: Network::new(config.net.clone()),
            calls: BTreeMap::new(),
            next_call: 0,
            trace: Trace::new(config.trace_tail),
            stats: Stats::default(),
            watch: (config.mode == Mode::Full && config.core.replication.audit_log)
                .then(LogWatch::default),
            config,
        }
    }

    /// Simulated time, microseconds.
    pub fn now_us(&self) -> u64 {
        self.now
    }

    /// Every node ever added, by index.
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// The trace so far.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Counters, mutable (to switch on the `Down` log).
    pub fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }

    /// The world's settings.
    pub fn config(&self) -> &WorldConfig {
        &self.config
    }

    /// Adds a node (not started) that joins through `seeds`; returns its index.
    pub fn add_node(&mut self, seeds: Vec<SocketAddr>) -> usize {
        let index = self.nodes.len();
        let node = SimNode::new(name_of(index), addr_of(index), seeds);
        self.by_addr.insert(node.addr, index);
        let kept = match &self.config.table {
            Some(table) => table
                .save(node.store.as_ref())
                .map_err(|e| e.to_string())
                .and_then(|()| node.store.sync().map_err(|e| e.to_string())),
            None => Ok(()),
        };
        self.nodes.push(node);
        if let Err(e) = kept {
            self.note(Some(index), format!("cannot store the range table: {e}"));
        }
        index
    }

    /// What the primary-mode watch found since the last call.
    pub fn take_findings(&mut self) -> Vec<Violation> {
        self.watch
            .as_mut()
            .map_or_else(Vec::new, LogWatch::take_findings)
    }

    /// The primary-mode watch, when the cores record their logs.
    pub fn log_watch(&self) -> Option<&LogWatch> {
        self.watch.as_ref()
    }

    /// Notes a fault or phase change in the trace.
    pub fn note(&mut self, node: Option<usize>, text: String) {
        self.trace.record(self.now, node, What::Fault(text));
    }

    /// Starts (or restarts, after a crash) `node`'s process from its store.
    pub fn start(&mut self, node: usize) -> Result<(), SimError> {
        let seed = self.node_rng.seed();
        let n = &mut self.nodes[node];
        let id = NodeId::new(n.name.clone(), n.addr).with_bump(n.bump);
        let gossip = self.config.gossip.clone();
        let mut process = match self.config.mode {
            Mode::Full => Process::Full(Box::new(NodeCore::new(
                id,
                n.seeds.clone(),
                self.config.core.clone(),
                gossip,
                n.store.clone(),
                seed,
            )?)),
            Mode::Gossip => Process::Gossip(Box::new(Membership::new(
                id,
                n.seeds.clone(),
                gossip,
                seed,
            )?)),
        };
        n.state = NodeState::Running;
        let started = match &mut process {
            Process::Full(core) => Started::Full(core.start()),
            Process::Gossip(m) => Started::Gossip(m.start()),
        };
        n.process = Some(process);
        match started {
            Started::Full(effects) => {
                self.apply(node, effects);
                self.drain(node);
            }
            Started::Gossip(outputs) => self.apply_gossip(node, outputs),
        }
        Ok(())
    }

    /// Kills `node` as power loss would: its process and everything not synced is gone.
    pub fn crash(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        if !n.is_live() {
            return;
        }
        n.bump = current_bump(n).max(n.bump);
        n.store.crash();
        n.state = NodeState::Crashed;
        self.drop_process(node);
        if let Some(watch) = self.watch.as_mut() {
            watch.forget(node);
        }
    }

    /// Restarts a crashed node with the next bump, from what its store kept.
    pub fn restart(&mut self, node: usize) -> Result<(), SimError> {
        if self.nodes[node].state != NodeState::Crashed {
            return Ok(());
        }
        self.nodes[node].bump += 1;
        self.start(node)
    }

    /// Starts `node`'s graceful leave, as the shell does on SIGTERM: it announces `Leaving`
    /// and hands its data off while it keeps running; [`Self::leave`] ends it.
    pub fn begin_leave(&mut self, node: usize) {
        if self.nodes[node].state != NodeState::Running {
            return;
        }
        let effects = match self.nodes[node].process.as_mut() {
            Some(Process::Full(core)) => core.begin_leave(),
            _ => return,
        };
        self.apply(node, effects);
        self.drain(node);
    }

    /// Makes `node` leave gracefully: its goodbye gossip goes out, its store is synced, and
    /// it never handles another event (as the shell does on shutdown).
    pub fn leave(&mut self, node: usize) {
        if self.nodes[node].state != NodeState::Running {
            return;
        }
        let left = match self.nodes[node].process.as_mut() {
            Some(Process::Full(core)) => Started::Full(core.leave()),
            Some(Process::Gossip(m)) => Started::Gossip(m.leave()),
            None => Started::Full(Vec::new()),
        };
        match left {
            Started::Full(effects) => self.apply(node, effects),
            Started::Gossip(outputs) => self.apply_gossip(node, outputs),
        }
        let n = &mut self.nodes[node];
        if let Err(e) = n.store.sync() {
            self.note(Some(node), format!("final sync failed: {e}"));
        }
        self.nodes[node].state = NodeState::Left;
        self.drop_process(node);
    }

    /// Freezes `node`: its timers and messages wait until [`Self::resume`].
    pub fn pause(&mut self, node: usize) {
        if self.nodes[node].state == NodeState::Running {
            self.nodes[node].state = NodeState::Paused;
        }
    }

    /// Thaws `node`: everything that waited is handled now, in arrival order.
    pub fn resume(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        if n.state != NodeState::Paused {
            return;
        }
        n.state = NodeState::Running;
        for event in std::mem::take(&mut n.deferred) {
            self.queue.push(self.now, event);
        }
    }

    /// Sets `node`'s wall clock offset from simulated time.
    pub fn set_clock(&mut self, node: usize, offset_ms: i64) {
        self.nodes[node].clock_offset_ms = offset_ms;
    }

    /// Sends a client request to `node`, tagged `tag` for the answer.
    pub fn submit(&mut self, tag: u64, node: usize, req: ClientRequest, what: String) {
        let delay = self.net.delay(&mut self.rng);
        self.trace
            .record(self.now, Some(node), What::ClientSent(what));
        self.queue
            .push(self.now + delay, Event::ClientArrive { tag, node, req });
    }

    /// Schedules a [`Wake::External`] at `at_us`.
    pub fn wake_at(&mut self, at_us: u64, tag: u64) {
        self.queue.push(at_us.max(self.now), Event::External(tag));
    }

    /// Peer calls still waiting for an answer or their timeout.
    pub fn calls_in_flight(&self) -> usize {
        self.calls.len()
    }

    /// Moves simulated time forward to `at_us` when nothing is scheduled before it.
    pub fn advance_to(&mut self, at_us: u64) {
        if self.queue.peek_time().is_none_or(|t| t >= at_us) {
            self.now = self.now.max(at_us);
        }
    }

    /// When the next event happens, if any.
    pub fn next_event_at(&self) -> Option<u64> {
        self.queue.peek_time()
    }

    /// Handles the next event.
    pub fn step(&mut self) -> Option<Wake> {
        let (at, event) = self.queue.pop()?;
        self.now = self.now.max(at);
        self.stats.events += 1;
        if let Some(target) = self.target_of(&event) {
            if self.nodes[target].state == NodeState::Paused {
                self.defer(target, event);
                return Some(Wake::Nothing);
            }
        }
        Some(self.dispatch(event))
    }

    fn target_of(&self, event: &Event) -> Option<usize> {
        match event {
            Event::Datagram { to, .. } | Event::CallArrive { to, .. } => Some(*to),
            Event::Timer { node, .. }
            | Event::SyncDone { node, .. }
            | Event::ClientArrive { node, .. } => Some(*node),
            Event::CallReply { key, .. } | Event::CallTimeout { key } => {
                self.calls.get(key).map(|c| c.caller)
            }
            Event::ClientReply { .. } | Event::External(_) => None,
        }
    }

    fn defer(&mut self, node: usize, event: Event) {
        let limit = self.config.net.pause_buffer;
        let n = &mut self.nodes[node];
        if n.deferred.len() >= limit {
            if let Event::Datagram { from, .. } = event {
                let what = What::Dropped {
                    from,
                    kind: "datagram",
                    why: DropReason::Overflow,
                };
                self.trace.record(self.now, Some(node), what);
                return;
            }
        }
        n.deferred.push(event);
    }

    fn valid(&self, node: usize, inc: u32) -> bool {
        let n = &self.nodes[node];
        n.state == NodeState::Running && n.incarnation == inc
    }

    fn dispatch(&mut self, event: Event) -> Wake {
        match event {
            Event::Datagram { to, from, data } => {
                if self.nodes[to].state != NodeState::Running {
                    let what = What::Dropped {
                        from,
                        kind: "datagram",
                        why: DropReason::NoNode,
                    };
                    self.trace.record(self.now, Some(to), what);
                    return Wake::Nothing;
                }
                let payload = if self.config.hash_payloads {
                    fnv_of(&data)
                } else {
                    0
                };
                let len = data.len();
                self.trace
                    .record(self.now, Some(to), What::Datagram { from, len, payload });
                self.datagram_in(to, data);
            }
            Event::Timer { node, inc, timer } => {
                if self.valid(node, inc) {
                    let kind = match timer {
                        Timer::Gossip(_) => "gossip",
                        Timer::Deadline(_) => "deadline",
                        Timer::AntiEntropy | Timer::AntiEntropyStep => "anti-entropy",
                        Timer::Hints => "hints",
                        // Timers of core features newer than this simulator.
                        #[allow(unreachable_patterns)]
                        _ => "core",
                    };
                    self.trace.record(self.now, Some(node), What::Timer(kind));
                    self.timer_in(node, timer);
                }
            }
            Event::CallArrive {
                key,
                to,
                to_inc,
                from,
                req,
            } => self.call_arrive(key, to, to_inc, from, req),
            Event::CallReply { key, reply } => self.call_done(key, Ok(reply)),
            Event::CallTimeout { key } => {
                self.call_done(key, Err(CallError::Timeout("timed out".into())))
            }
            Event::SyncDone { node, inc } => self.sync_done(node, inc),
            Event::ClientArrive { tag, node, req } => self.client_arrive(tag, node, req),
            Event::ClientReply {
                tag,
                answer,
                preference,
            } => {
                let text = format!("op{tag} {}", summarize(&answer));
                self.trace.record(self.now, None, What::ClientDone(text));
                return Wake::Client {
                    tag,
                    answer,
                    preference,
                };
            }
            Event::External(tag) => return Wake::External(tag),
        }
        Wake::Nothing
    }

    fn call_arrive(&mut self, key: u64, to: usize, to_inc: u32, from: usize, req: PeerRequest) {
        let why = if !self.valid(to, to_inc) {
            Some(DropReason::NoNode)
        } else if self.net.blocked(from, to) {
            Some(DropReason::Partition)
        } else {
            None
        };
        if let Some(why) = why {
            let what = What::Dropped {
                from,
                kind: "call",
                why,
            };
            self.trace.record(self.now, Some(to), what);
            return;
        }
        let kind = match &req {
            PeerRequest::Write { .. } => "write",
            PeerRequest::Replicate { .. } => "replicate",
            PeerRequest::Read { .. } => "read",
            PeerRequest::Exchange { .. } => "exchange",
            PeerRequest::Hint { .. } => "hint",
            PeerRequest::Forward(_) => "forward",
            PeerRequest::Members => "members",
            PeerRequest::Repl(r, _) => repl_kind(r),
            // Requests of core features newer than this simulator.
            #[allow(unreachable_patterns)]
            _ => "other",
        };
        self.trace.record(
            self.now,
            Some(to),
            What::CallIn {
                call: key,
                from,
                req: kind,
            },
        );
        if let PeerRequest::Repl(
            ReplRequest::Vote {
                shard,
                epoch,
                log_epoch,
                offset,
            },
            _,
        ) = &req
        {
            let text =
                format!("asked a vote in {shard:?} for epoch {epoch} at {log_epoch}:{offset}");
            self.trace.record(self.now, Some(to), What::Replica(text));
        }
        let from_name = self.nodes[from].name.clone();
        if let PeerRequest::Repl(
            ReplRequest::Append {
                relay: Some(relay), ..
            },
            _,
        ) = &req
        {
            if relay.primary != from_name {
                self.stats.relayed_appends += 1;
            }
        }
        let id = self.nodes[to].inbound_id(ReplyTo::Remote { key, caller: from });
        self.input(
            to,
            Input::PeerRequest {
                id,
                from: from_name,
                req,
            },
        );
    }

    fn call_done(&mut self, key: u64, reply: Result<PeerReply, CallError>) {
        let Some(call) = self.calls.remove(&key) else {
            return; // answered or timed out already
        };
        if !self.valid(call.caller, call.inc) {
            return;
        }
        let ok = matches!(reply, Ok(ref r) if !matches!(r, PeerReply::Failed(_)));
        self.trace.record(
            self.now,
            Some(call.caller),
            What::CallDone { call: key, ok },
        );
        self.input(
            call.caller,
            Input::PeerReply {
                call: call.call,
                reply,
            },
        );
    }

    fn sync_done(&mut self, node: usize, inc: u32) {
        if !self.valid(node, inc) {
            return;
        }
        let n = &mut self.nodes[node];
        n.sync_armed = false;
        let synced = n.store.sync().map_err(|e| format!("sync failed: {e}"));
        let pending = std::mem::take(&mut n.pending_sync);
        self.trace
            .record(self.now, Some(node), What::Synced(pending.len()));
        for item in pending {
            match (item, &synced) {
                (AfterSync::Respond(to, reply), Ok(())) => self.deliver(node, to, reply),
                (AfterSync::Respond(to, _), Err(e)) => {
                    self.deliver(
                        node,
                        to,
                        PeerReply::Failed(ringkv::proto::Refusal::Storage(e.clone())),
                    );
                }
                (AfterSync::Push(to, req), Ok(())) => self.push(node, to, req),
                (AfterSync::Push(..), Err(_)) => {} // nothing durable to push
            }
        }
        self.drain(node);
    }

    fn client_arrive(&mut self, tag: u64, node: usize, req: ClientRequest) {
        let n = &mut self.nodes[node];
        let preference = match (&req, n.core()) {
            (
                ClientRequest::Get { key, .. }
                | ClientRequest::Put { key, .. }
                | ClientRequest::Delete { key, .. },
                Some(core),
            ) => core.ring().preference_list(key).to_vec(),
            _ => Vec::new(),
        };
        if n.state != NodeState::Running || n.core().is_none() {
            self.reply_client(tag, Answer::Unreachable, None);
            return;
        }
        let id = n.client_id(ClientSlot { tag, preference });
        self.input(node, Input::Client { id, req });
    }

    pub(crate) fn reply_client(&mut self, tag: u64, answer: Answer, pref: Option<Vec<String>>) {
        let delay = self.net.delay(&mut self.rng);
        self.queue.push(
            self.now + delay,
            Event::ClientReply {
                tag,
                answer,
                preference: pref,
            },
        );
    }

    /// Ends `node`'s process: pending client requests are lost, its calls forgotten.
    fn drop_process(&mut self, node: usize) {
        let clients = std::mem::take(&mut self.nodes[node].clients);
        for slot in clients.into_values() {
            self.reply_client(slot.tag, Answer::Lost, Some(slot.preference));
        }
        self.nodes[node].forget_process();
        self.calls.retain(|_, c| c.caller != node);
    }
}

/// An answer in a few words, for the trace.
fn summarize(answer: &Answer) -> String {
    match answer {
        Answer::Ok(ClientResponse::Got(read)) => {
            let values: Vec<String> = read
                .values
                .iter()
                .map(|v| String::from_utf8_lossy(&v.data).into_owned())
                .collect();
            format!("got [{}] from {} replicas", values.join(","), read.replied)
        }
        Answer::Ok(ClientResponse::Written(w)) => format!("written, {} acks", w.acked),
        Answer::Ok(other) => format!("{other:?}"),
        Answer::Refused(e) => format!("refused: {e}"),
        Answer::Unreachable => "unreachable".into(),
        Answer::Lost => "lost".into(),
    }
}

/// A replication request's kind, for the trace.
fn repl_kind(req: &ReplRequest) -> &'static str {
    match req {
        ReplRequest::Vote { .. } => "vote",
        ReplRequest::PreVote { .. } => "pre-vote",
        ReplRequest::Append {
            relay: Some(_),
            entries,
            ..
        } if entries.is_empty() => "chain heartbeat",
        ReplRequest::Append { relay: Some(_), .. } => "chain append",
        ReplRequest::Append { entries, .. } if entries.is_empty() => "heartbeat",
        ReplRequest::Append { .. } => "append",
        ReplRequest::Snapshot { .. } => "snapshot",
        ReplRequest::Flush { .. } => "flush",
        ReplRequest::Collect { .. } | ReplRequest::Gather { .. } => "collect",
    }
}

/// Effects of starting or leaving, by process kind.
enum Started {
    Full(Vec<ringkv::core::Effect>),
    Gossip(Vec<ringkv_gossip::GossipOutput>),
}

fn current_bump(n: &SimNode) -> u64 {
    match &n.process {
        Some(Process::Full(core)) => core.me().bump,
        Some(Process::Gossip(m)) => m.me().bump,
        None => n.bump,
    }
}
