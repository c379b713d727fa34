//! Primary mode: one primary per shard orders every write to keys under a primary prefix and
//! streams them to the shard's other replicas (Redis replication; with `majority`, ZooKeeper's
//! commit).
//!
//! A *shard* is an ordered preference list: every ring range with that list shares one log,
//! one primary and one epoch, the way a Redis Cluster master serves many slots. The primary is
//! the list's first live node, elected under a new epoch by a majority of the list; a voter
//! refuses any candidate whose log is behind its own, so the elected primary holds every entry
//! a majority held. Logs carry a replication id and offset; a replica that reconnects inside
//! the primary's backlog resyncs partially, otherwise from a snapshot.
//!
//! Safety rests on epochs and majorities, never on clocks: a primary deposed by a newer epoch
//! cannot get a majority to acknowledge anything. Clocks only time heartbeats, failover and the
//! write lease that stops a cut-off primary within one lease period.

mod audit;
mod chain;
#[cfg(test)]
mod chain_tests;
mod election;
mod follower;
mod handover;
mod info;
mod leader;
#[cfg(test)]
mod leader_tests;
mod leaving;
mod log;
pub use crate::proto::repl as msg;
mod session;
#[cfg(test)]
mod tests;

use crate::core::CallError;
use crate::proto::{Refusal, Unavailable};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use ringkv_gossip::NodeStatus;
use ringkv_ring::Ring;

use super::calls::{CallId, Calls, Owner};
use super::coordinator::ClientId;
use super::{Effect, InboundId, View};
pub use crate::config::ReplConfig;
use crate::config::Sabotage;
pub use crate::proto::shard::{ReplicaInfo, ShardInfo};
use crate::proto::{ClientError, PeerReply, PeerRequest};
use crate::version::ConflictPolicy;
#[doc(hidden)]
pub use audit::LogEvent;
pub use election::ms as millis;
use election::Candidacy;
pub use leader::read_result;
use leader::Leader;
pub use log::{Backlog, ShardMeta};
use msg::{ReplReply, ReplRequest};

/// What replication sees of the node for one step.
pub struct Ctx<'a> {
    /// The node.
    pub view: View<'a>,
    /// Whether a key falls under a primary prefix.
    pub primary_key: &'a dyn PrimaryKeys,
    /// Replies must wait for the store's sync (`Durability::Sync`).
    pub durable: bool,
    /// A digest of this node's ring members (see [`crate::proto::PeerRequest::Repl`]).
    pub ring_id: u64,
    /// Shards stream appends by chain rather than star (see [`crate::table::Topology`]).
    pub chain: bool,
}

/// Which keys fall under a primary prefix: the range table on a node, any predicate in tests.
pub trait PrimaryKeys {
    /// Whether `key` is under a primary prefix.
    fn covers(&self, key: &[u8]) -> bool;
}

impl<F: Fn(&[u8]) -> bool> PrimaryKeys for F {
    fn covers(&self, key: &[u8]) -> bool {
        self(key)
    }
}

impl PrimaryKeys for crate::table::RangeTable {
    fn covers(&self, key: &[u8]) -> bool {
        self.lookup(key).is_some()
    }
}

impl Ctx<'_> {
    fn now(&self) -> u64 {
        self.view.now_ms
    }
}

/// A shard's role on this node.
#[derive(Debug)]
enum Role {
    /// Following `primary` (when known) under `meta.promised`.
    Replica,
    /// Asking for votes.
    Candidate(Candidacy),
    /// Taking writes.
    Primary(Box<Leader>),
}

/// One shard on this node.
#[derive(Debug)]
struct Shard {
    meta: ShardMeta,
    backlog: Backlog,
    role: Role,
    /// The primary of `meta.promised`, once heard from.
    primary: Option<String>,
    /// When the primary was last heard (or, before any, when this shard was first seen).
    heard_ms: u64,
    /// Offset a majority holds, as the primary last said.
    commit: u64,
    /// A voter whose log is ahead of a candidate runs itself, without waiting its turn.
    run_now: bool,
    /// The newest epoch a candidate behind this node asked for: this node's own candidacy
    /// goes past it, so the two do not keep asking for the same epoch.
    outbid: u64,
    /// Earliest time of the next candidacy (after a failed one).
    retry_ms: u64,
    /// Resyncs served or taken, for `info replication`.
    partial_syncs: u64,
    full_syncs: u64,
    /// Clients left waiting by a primary that stepped down, to be answered.
    abandoned: Vec<(ClientId, ClientError)>,
    /// Reads waiting for this replica to hold a session's write.
    session_reads: Vec<session::SessionRead>,
    /// Chain topology: the replica this node last passed appends to, and when.
    relays_to: Option<(String, u64)>,
}

impl Shard {
    /// A shard as the store left it, following nobody yet, first seen at `now_ms`.
    fn new(meta: ShardMeta, backlog_bytes: usize, now_ms: u64) -> Self {
        Self {
            meta,
            backlog: Backlog::new(backlog_bytes),
            role: Role::Replica,
            primary: None,
            heard_ms: now_ms,
            commit: 0,
            run_now: false,
            outbid: 0,
            retry_ms: 0,
            partial_syncs: 0,
            full_syncs: 0,
            abandoned: Vec::new(),
            session_reads: Vec::new(),
            relays_to: None,
        }
    }
}

/// What a pending call was for.
#[derive(Debug)]
struct Call {
    shard: Vec<String>,
    peer: String,
    kind: CallKind,
}

#[derive(Debug, Clone, Copy)]
enum CallKind {
    Vote {
        epoch: u64,
    },
    PreVote {
        epoch: u64,
    },
    Append {
        epoch: u64,
        round: u64,
    },
    /// An append sent down the chain, to its head.
    Chain {
        epoch: u64,
        round: u64,
    },
    /// An append this replica passes on to the next one.
    Relay,
    Snapshot {
        epoch: u64,
    },
    Collect {
        epoch: u64,
    },
    Flush {
        epoch: u64,
        offset: u64,
    },
}

/// Where a primary-mode request should go.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// This node is (or is about to be) the shard's primary.
    Local,
    /// Another node is, or is the best guess.
    Forward {
        /// The node to ask.
        to: String,
        /// Its address.
        addr: SocketAddr,
        /// The epoch in which `to` was heard of as the primary; `None` when it is only the
        /// shard's first live node (no primary is known).
        epoch: Option<u64>,
    },
}

/// Most shards whose primary a node remembers from answers (there are at most as many shards
/// as ring ranges; this bounds the map whatever peers say).
const MAX_GUESSES: usize = 1 << 16;

/// Every shard this node replicates in primary mode.
pub struct Replication {
    config: ReplConfig,
    shards: BTreeMap<Vec<String>, Shard>,
    calls: HashMap<CallId, Call>,
    call_ids: Calls,
    /// Relayed appends waiting for the next replica's answer.
    relays: HashMap<CallId, chain::PendingRelay>,
    /// Effects made where no effect list was at hand, sent with the next step's.
    pending_effects: Vec<Effect>,
    /// Log changes, when [`ReplConfig::audit_log`] is on.
    audit: audit::Audit,
    /// Deliberate bugs (tests of the simulator's checker).
    sabotage: Sabotage,
    /// The ring (by [`Ctx::ring_id`]) last searched for shards with a durable log.
    scanned_ring: Option<u64>,
    /// The ring (by [`Ctx::ring_id`]) the shards held were last bound to (see `handover.rs`).
    handed_over: Option<u64>,
    /// A ring change closed a log here: the next search takes up every shard of the ring
    /// this node is in, not only those with a log.
    take_up_all: bool,
    /// The logs ring changes closed here (see `handover.rs`), loaded when first needed.
    closed: Option<Vec<msg::ClosedLog>>,
    /// A shard's primary and its epoch as another node answered them: how a node outside the
    /// shard (which keeps no shard state) or a member that missed a failover finds the
    /// primary. The newer epoch wins; pruned to the ring's shards when the ring changes.
    guesses: BTreeMap<Vec<String>, (String, u64)>,
    /// Hits of the backlog, batch and waiting bounds.
    limit_counts: crate::limits::LimitCounts,
    /// How concurrent values gathered from replicas are resolved (the node's conflict policy).
    policy: ConflictPolicy,
    /// Leaving: the ranges whose next lists have still to gather from this node.
    owed: leaving::Owed,
}

impl Replication {
    /// How often primary mode checks heartbeats, elections and deadlines.
    pub const TICK: Duration = Duration::from_millis(50);

    /// No shard yet: shards appear with their first primary-mode request or message.
    pub fn new(config: ReplConfig) -> Self {
        Self {
            audit: audit::Audit::new(config.audit_log),
            config,
            shards: BTreeMap::new(),
            calls: HashMap::new(),
            call_ids: Calls::new(Owner::Replication),
            relays: HashMap::new(),
            pending_effects: Vec::new(),
            sabotage: Sabotage::default(),
            scanned_ring: None,
            handed_over: None,
            take_up_all: false,
            closed: None,
            guesses: BTreeMap::new(),
            limit_counts: Default::default(),
            policy: ConflictPolicy::default(),
            owed: leaving::Owed::default(),
        }
    }

    /// The same, resolving concurrent values gathered from replicas by `policy`, as reads and
    /// quorum-mode merges do.
    #[must_use]
    pub fn with_policy(mut self, policy: ConflictPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Hits of the backlog, batch and waiting bounds.
    pub fn limit_counts(&self) -> &crate::limits::LimitCounts {
        &self.limit_counts
    }

    /// The same, with deliberate bugs switched on (tests of the simulator's checker only).
    #[doc(hidden)]
    #[must_use]
    pub fn sabotaged(mut self, sabotage: Sabotage) -> Self {
        self.sabotage = sabotage;
        self
    }

    /// The shard (ordered preference list) of a key.
    pub fn shard_of(ring: &Ring, key: &[u8]) -> Vec<String> {
        ring.preference_list(key).to_vec()
    }

    /// Where a request for `key` should go: the primary this node knows of with the newest
    /// epoch (its own shard state, or what an answer told it) when that node is alive, else
    /// the shard's first live node (which stands for election when asked).
    pub fn route(&mut self, ctx: &Ctx<'_>, key: &[u8]) -> Result<Route, ClientError> {
        let shard = Self::shard_of(ctx.view.ring, key);
        if shard.is_empty() {
            return Err(ClientError::Unavailable(Unavailable::RingEmpty));
        }
        let n = ctx.view.ring.config().replicas;
        if shard.len() < n {
            return Err(ClientError::Unavailable(Unavailable::Rejoining {
                known: shard.len(),
                n,
            }));
        }
        let me = ctx.view.me;
        let live = |n: &str| n == me || ctx.view.membership.is_alive(n);
        // Only members keep shard state: a node outside the shard would load and drop it on
        // every request.
        let mut known = None;
        if shard.iter().any(|n| n == me) {
            let st = self.shard(ctx, &shard)?;
            if matches!(st.role, Role::Primary(_)) {
                return Ok(Route::Local);
            }
            known = st.primary.clone().map(|p| (p, st.meta.promised));
        }
        if let Some((p, epoch)) = self.guesses.get(&shard) {
            if known.as_ref().is_none_or(|(_, e)| epoch > e) {
                known = Some((p.clone(), *epoch));
            }
        }
        let (target, epoch) = match known.filter(|(p, _)| live(p)) {
            Some((p, epoch)) => (p, Some(epoch)),
            None => match shard.iter().find(|n| live(n)) {
                Some(n) => (n.clone(), None),
                None => return Err(ClientError::Unavailable(Unavailable::NoReplicaUp)),
            },
        };
        if target == me {
            return Ok(Route::Local);
        }
        match ctx.view.addrs.get(&target) {
            Some(addr) => Ok(Route::Forward {
                to: target,
                addr: *addr,
                epoch,
            }),
            None => Err(ClientError::Unavailable(Unavailable::NoAddress(target))),
        }
    }

    /// Node `from` answered that `primary` leads `key`'s shard in `epoch`: remember it
    /// unless something newer is known. Says whether it was taken.
    pub fn learn_primary(
        &mut self,
        ctx: &Ctx<'_>,
        key: &[u8],
        from: &str,
        (primary, epoch): (&str, u64),
    ) -> bool {
        let shard = Self::shard_of(ctx.view.ring, key);
        // A peer cannot make up shards or primaries outside them.
        if !shard.iter().any(|n| n == primary) || !full_shard(ctx.view.ring, &shard) {
            return false;
        }
        // A guess that `from` leads is wrong whatever its epoch: `from` just said it does not.
        // Kept, it would send every request back to `from` until a newer epoch is heard.
        if self.guesses.get(&shard).is_some_and(|(p, _)| p == from) {
            self.guesses.remove(&shard);
        }
        let own = self.shards.get(&shard).map_or(0, |st| st.meta.promised);
        let guessed = self.guesses.get(&shard).map_or(0, |(_, e)| *e);
        if epoch < own.max(guessed) {
            return false;
        }
        if self.guesses.len() >= MAX_GUESSES && !self.guesses.contains_key(&shard) {
            self.guesses.pop_first();
        }
        self.guesses.insert(shard, (primary.to_string(), epoch));
        true
    }

    /// The shard's state, loaded from the store the first time.
    fn shard(&mut self, ctx: &Ctx<'_>, id: &[String]) -> Result<&mut Shard, ClientError> {
        self.ring_moved(ctx);
        if !self.shards.contains_key(id) {
            // A list shorter than N is a ring that lacks nodes (this node just started and
            // has not heard of them yet): its majority could be this node alone.
            let n = ctx.view.ring.config().replicas;
            if id.len() < n {
                return Err(ClientError::Unavailable(Unavailable::ShortShard {
                    known: id.len(),
                    n,
                }));
            }
            // Only preference lists of this node's ring: a peer cannot make up shards.
            if follower::shard_ranges(ctx.view.ring, id).is_empty() {
                return Err(ClientError::Unavailable(Unavailable::RingChanging));
            }
            let (meta, closed) =
                ShardMeta::load_bound(ctx.view.store, ctx.view.ring, id, &mut self.closed)
                    .map_err(|e| {
                        ClientError::Unavailable(Unavailable::Storage(format!(
                            "replication state: {e}"
                        )))
                    })?;
            if closed {
                self.audit.push(|| audit::LogEvent::Reset {
                    shard: id.to_vec(),
                    replid: String::new(),
                    at: 0,
                });
            }
            let shard = Shard::new(meta, self.config.backlog_bytes, ctx.now());
            self.shards.insert(id.to_vec(), shard);
        }
        self.shards
            .get_mut(id)
            .ok_or(ClientError::Unavailable(Unavailable::ShardVanished))
    }

    /// A request from another node of a shard: the answer and whether it waits for a sync,
    /// or `None` when it is held back (a relayed append waits for the next replica) and
    /// comes later as an [`Effect::Respond`] to `inbound`.
    pub fn on_request(
        &mut self,
        ctx: &Ctx<'_>,
        (from, inbound): (&str, InboundId),
        (req, ring_id): (ReplRequest, u64),
        out: &mut Vec<Effect>,
    ) -> Option<(PeerReply, bool)> {
        self.hand_over(ctx, out);
        if ring_id != ctx.ring_id && !matches!(req, ReplRequest::Flush { .. }) {
            // Rings that differ could map a key to different shards: a node that restarted
            // while others were down knows fewer members and must not take part until it
            // learned them (or they left).
            return Some((PeerReply::Failed(Refusal::RingDiffers), false));
        }
        let shard = match &req {
            ReplRequest::Vote { shard, .. }
            | ReplRequest::PreVote { shard, .. }
            | ReplRequest::Append { shard, .. }
            | ReplRequest::Snapshot { shard, .. }
            | ReplRequest::Collect { shard, .. }
            | ReplRequest::Gather { shard, .. }
            | ReplRequest::Flush { shard, .. } => shard.clone(),
        };
        if let ReplRequest::Gather { shard, cursor, .. } = &req {
            let leaving = ctx.view.membership.status() == NodeStatus::Leaving;
            let outside = !shard.iter().any(|n| n == ctx.view.me);
            if leaving && outside && shard.len() <= 16 && full_shard(ctx.view.ring, shard) {
                return Some(self.answer_leaving_gather(ctx, shard, cursor.clone()));
            }
        }
        if !shard.iter().any(|n| n == ctx.view.me) || shard.len() > 16 {
            let reason = "this node is not a replica of that shard".to_string();
            return Some((PeerReply::Failed(Refusal::Replication(reason)), false));
        }
        if !full_shard(ctx.view.ring, &shard) {
            // Another view of the ring (a node that just restarted knows fewer nodes): taking
            // part would let two lists of one key's replicas each elect a primary.
            let reason = "that shard is not a full preference list of this node's ring".to_string();
            return Some((PeerReply::Failed(Refusal::Replication(reason)), false));
        }
        // Chain topology: a relayed append is checked, and kept to pass on after it applied.
        let onward = match &req {
            ReplRequest::Append { relay: Some(r), .. } => {
                if !chain::valid_route(r, &shard, ctx.view.me) {
                    let reason = "a relayed append with a route outside the shard".to_string();
                    return Some((PeerReply::Failed(Refusal::Replication(reason)), false));
                }
                (!r.next.is_empty()).then(|| req.clone())
            }
            _ => None,
        };
        if let Err(e) = self.shard(ctx, &shard) {
            return Some((
                PeerReply::Failed(Refusal::Replication(e.to_string())),
                false,
            ));
        }
        let closed = match &req {
            ReplRequest::Gather { cursor, .. } if *cursor == msg::Cursor::default() => {
                match handover::closed_logs(ctx.view.store, &mut self.closed) {
                    Ok(logs) => handover::closed_within(
                        logs,
                        &follower::shard_ranges(ctx.view.ring, &shard),
                    ),
                    Err(e) => {
                        let reason = format!("replication: {e}");
                        return Some((PeerReply::Failed(Refusal::Replication(reason)), false));
                    }
                }
            }
            _ => Vec::new(),
        };
        let Some(st) = self.shards.get_mut(&shard) else {
            return Some((
                PeerReply::Failed(Refusal::Replication("shard vanished".into())),
                false,
            ));
        };
        let env = follower::Env {
            config: &self.config,
            sabotage: self.sabotage,
            audit: &mut self.audit,
            closed,
        };
        let result = follower::handle(st, env, ctx, &shard, from, req);
        let run_now = st.run_now;
        self.drain_abandoned(&shard, out);
        self.release_reads(ctx, &shard, out);
        if run_now {
            self.maybe_run(ctx, &shard, out);
        }
        match (result, onward) {
            (Ok((ReplReply::Acked { offset, .. }, sync)), Some(req)) => self.relay(
                ctx,
                &shard,
                inbound,
                req,
                (offset, sync && ctx.durable),
                out,
            ),
            (Ok((reply, sync)), _) => Some((PeerReply::Repl(reply), sync && ctx.durable)),
            (Err(e), _) => Some((
                PeerReply::Failed(Refusal::Replication(format!("replication: {e}"))),
                false,
            )),
        }
    }

    /// The answer to one of this mechanism's calls.
    pub fn on_reply(
        &mut self,
        ctx: &Ctx<'_>,
        call: CallId,
        reply: Result<PeerReply, CallError>,
        out: &mut Vec<Effect>,
    ) {
        self.hand_over(ctx, out);
        let call_id = call;
        let Some(call) = self.calls.remove(&call) else {
            return;
        };
        let reply = match reply {
            Ok(PeerReply::Repl(r)) => Ok(r),
            Ok(PeerReply::Failed(r)) => Err(CallError::Refused(r)),
            Err(e) => Err(e),
            Ok(other) => Err(CallError::BadAnswer(format!("unexpected reply {other:?}"))),
        };
        let (id, peer) = (&call.shard, call.peer.as_str());
        match call.kind {
            CallKind::Vote { epoch } => self.on_vote(ctx, peer, id, (epoch, false), reply, out),
            CallKind::PreVote { epoch } => self.on_vote(ctx, peer, id, (epoch, true), reply, out),
            CallKind::Append { epoch, round } => {
                self.on_append_reply(ctx, id, peer, epoch, round, reply, out);
            }
            CallKind::Chain { epoch, round } => {
                self.on_chain_reply(ctx, id, call_id, (epoch, round), reply, out);
            }
            CallKind::Relay => self.on_relay_reply(ctx, call_id, reply, out),
            CallKind::Collect { epoch }
                if self.on_leaver_reply(ctx, id, peer, epoch, &reply, out) => {}
            CallKind::Snapshot { epoch } | CallKind::Collect { epoch } => {
                self.on_sync_reply(ctx, id, peer, epoch, reply, out);
            }
            CallKind::Flush { epoch, offset } => {
                let ok = matches!(reply, Ok(ReplReply::Acked { .. }));
                self.on_flushed(ctx, id, epoch, offset, ok, out);
            }
        }
    }

    /// Heartbeats, failovers, deadlines and leases: called every `tick`.
    pub fn on_tick(&mut self, ctx: &Ctx<'_>, out: &mut Vec<Effect>) {
        self.hand_over(ctx, out);
        out.append(&mut self.pending_effects);
        self.load_logged_shards(ctx);
        self.expire_relays(ctx, out);
        let ids: Vec<Vec<String>> = self.shards.keys().cloned().collect();
        for id in ids {
            self.tick_shard(ctx, &id, out);
        }
    }

    /// After a start or a ring change, take up every shard of the ring this node holds a log
    /// for. Without it, a shard whose nodes all restarted would wait for its next request to
    /// elect a primary, and its replicas would stay behind until then.
    fn load_logged_shards(&mut self, ctx: &Ctx<'_>) {
        let n = ctx.view.ring.config().replicas;
        if self.scanned_ring == Some(ctx.ring_id) || ctx.view.ring.vnode_count() == 0 {
            return;
        }
        self.scanned_ring = Some(ctx.ring_id);
        let ring = ctx.view.ring;
        self.guesses.retain(|id, _| full_shard(ring, id));
        let me = ctx.view.me;
        let all = std::mem::take(&mut self.take_up_all);
        let ids: BTreeSet<&[String]> = (0..ctx.view.ring.vnode_count())
            .map(|i| ctx.view.ring.preference_list_at(i))
            .filter(|id| id.len() == n && id.iter().any(|m| m == me))
            .collect();
        for id in ids {
            if self.shards.contains_key(id) {
                continue;
            }
            match ShardMeta::load_bound(ctx.view.store, ring, id, &mut self.closed) {
                Ok((meta, closed)) if all || closed || meta.promised > 0 || meta.offset > 0 => {
                    if closed {
                        self.audit.push(|| audit::LogEvent::Reset {
                            shard: id.to_vec(),
                            replid: String::new(),
                            at: 0,
                        });
                    }
                    let shard = Shard::new(meta, self.config.backlog_bytes, ctx.now());
                    self.shards.insert(id.to_vec(), shard);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(shard = ?id, error = %e, "replication state unreadable"),
            }
        }
    }

    fn tick_shard(&mut self, ctx: &Ctx<'_>, id: &[String], out: &mut Vec<Effect>) {
        let still_replica = id.iter().any(|n| n == ctx.view.me);
        let Some(st) = self.shards.get_mut(id) else {
            return;
        };
        if !still_replica {
            // The ring moved on: this node no longer replicates the shard.
            st.step_down("this node no longer replicates the key's range");
            self.drain_abandoned(id, out);
            self.shards.remove(id);
            return;
        }
        if ctx.view.ring.vnode_count() > 0 && follower::shard_ranges(ctx.view.ring, id).is_empty() {
            // No range has this preference list any more.
            st.step_down("the key's range moved to other replicas");
            self.drain_abandoned(id, out);
            self.shards.remove(id);
            return;
        }
        self.release_reads(ctx, id, out);
        let Some(st) = self.shards.get_mut(id) else {
            return;
        };
        match &st.role {
            Role::Primary(_) => self.lead(ctx, id, out),
            Role::Candidate(c) if ctx.now() >= c.deadline_ms => self.give_up(ctx, id),
            Role::Candidate(_) => {}
            Role::Replica => self.maybe_run(ctx, id, out),
        }
    }

    /// A fresh call id.
    fn call(&mut self, shard: &[String], peer: &str, kind: CallKind) -> CallId {
        let id = self.call_ids.next_id();
        self.calls.insert(
            id,
            Call {
                shard: shard.to_vec(),
                peer: peer.to_string(),
                kind,
            },
        );
        id
    }

    /// Send `req` to `peer` of `shard`: the call, or `None` when it has no live address.
    fn send(
        &mut self,
        ctx: &Ctx<'_>,
        shard: &[String],
        peer: &str,
        kind: CallKind,
        req: ReplRequest,
        out: &mut Vec<Effect>,
    ) -> Option<CallId> {
        let to = ctx.view.peer_addr(peer)?;
        let call = self.call(shard, peer, kind);
        out.push(Effect::Call {
            call,
            to,
            req: PeerRequest::Repl(req, ctx.ring_id),
        });
        Some(call)
    }

    /// Effects made outside a step (an election started by a refused write).
    pub fn take_effects(&mut self, out: &mut Vec<Effect>) {
        out.append(&mut self.pending_effects);
    }

    /// The shards this node leads now, with their epochs.
    #[doc(hidden)]
    pub fn primaries(&self) -> impl Iterator<Item = (&[String], u64)> {
        self.shards.iter().filter_map(|(id, st)| match &st.role {
            Role::Primary(leader) => Some((id.as_slice(), leader.epoch)),
            _ => None,
        })
    }

    /// Log changes recorded since the last call (with [`ReplConfig::audit_log`]), and how
    /// many were dropped because nobody drained them in time.
    #[doc(hidden)]
    pub fn take_log_events(&mut self) -> (Vec<LogEvent>, u64) {
        self.audit.take()
    }

    /// Whether this node is the primary of `key`'s shard now.
    pub fn is_primary(&self, ring: &Ring, key: &[u8]) -> bool {
        self.shards
            .get(ring.preference_list(key))
            .is_some_and(|s| matches!(s.role, Role::Primary(_)))
    }
}

/// Whether `shard` is the whole preference list (N nodes) of some range of `ring`.
fn full_shard(ring: &Ring, shard: &[String]) -> bool {
    shard.len() == ring.config().replicas
        && (0..ring.vnode_count()).any(|i| ring.preference_list_at(i) == shard)
}

/// Votes a shard of `n` replicas needs (its majority).
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// The replication id of a new lineage: unique per shard, epoch and node.
fn new_replid(shard: &[String], epoch: u64, me: &str) -> String {
    let mut h = blake3::Hasher::new();
    for n in shard {
        h.update(n.as_bytes());
        h.update(&[0]);
    }
    h.update(&epoch.to_be_bytes());
    h.update(me.as_bytes());
    h.finalize().to_hex()[..40].to_string()
}
