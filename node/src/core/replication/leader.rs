//! The primary side: order writes in the shard's log, stream them to every replica, resync
//! replicas partially from the backlog or fully from a snapshot, and answer clients once the
//! replicas they asked for hold their write.

use crate::core::CallError;
use crate::proto::Unavailable;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::election::ms;
use super::follower::shard_ranges;
use super::handover::{closed_logs, covering};
use super::log::AsOf;
use super::msg::{
    ClosedLog, Cursor, LogEntry, Position, Relay, ReplReply, ReplRequest, SnapshotSpan,
};
use super::{majority, CallKind, Ctx, Replication, Role, Shard};
use crate::core::coordinator::ClientId;
use crate::core::replica::load;
use crate::core::Effect;
use crate::proto::{ClientError, ClientResponse, ReadResult, Session, Value, WriteResult};
use crate::store::StoreError;
use crate::version::{
    apply_policy, decode_record, encode_record, live_values, Context, DvvSet, Record, Sibling,
};

/// Keys per snapshot page.
const SNAPSHOT_PAGE: usize = 256;

/// Where a snapshot goes next: a range index and the last key sent in it.
pub(super) type SnapshotCursor = (usize, Option<(u64, Vec<u8>)>);

/// How far one replica is, as its primary sees it.
#[derive(Debug)]
pub(super) enum SyncState {
    /// Not known yet: the next append is empty and asks where it stands.
    Probe,
    /// Following the log from `acked`.
    Stream,
    /// Collecting what the replica held before the shard had a primary.
    Collect(Cursor),
    /// A full resync standing for the log at `at`.
    Snapshot {
        /// Offset the snapshot stands for.
        at: u64,
        /// Epoch of that entry.
        at_epoch: u64,
        /// Index into the shard's token ranges.
        range: usize,
        /// The last key sent in that range.
        after: Option<(u64, Vec<u8>)>,
        /// Where the page in flight ends: the next cursor, `None` after the last page.
        next: Option<SnapshotCursor>,
    },
}

/// One replica of a primary's shard.
#[derive(Debug)]
pub(super) struct Follower {
    pub state: SyncState,
    /// Offset the replica confirmed.
    pub acked: u64,
    /// When it last answered.
    pub heard_ms: u64,
    /// When the call it last answered was sent (the lease counts from there).
    pub lease_ms: u64,
    /// When the call in flight was sent, if one is.
    pub in_flight: Option<u64>,
    /// Latest heartbeat round it answered.
    pub round: u64,
    /// Round of the call in flight.
    pub sent_round: u64,
    /// Chain topology: the replica its last acknowledgement came through (`None`: direct).
    pub via: Option<String>,
    /// No call goes to it before this time: a call that failed (a refusal comes back at once,
    /// say while the two rings differ) is sent again a beat after the last, not at once.
    pub retry_ms: u64,
}

/// A write waiting for its replicas.
#[derive(Debug)]
pub(super) struct Waiting {
    pub offset: u64,
    pub client: ClientId,
    pub need: usize,
    pub deadline_ms: u64,
    pub result: WriteResult,
}

/// A linearizable read waiting for the primary to confirm it still leads.
#[derive(Debug)]
pub(super) struct PendingRead {
    pub client: ClientId,
    pub token: u64,
    pub key: Vec<u8>,
    /// The log offset when the read arrived: it must be committed first.
    pub index: u64,
    /// A heartbeat round sent after the read arrived.
    pub round: u64,
    pub deadline_ms: u64,
}

/// A shard's primary.
#[derive(Debug)]
pub(super) struct Leader {
    pub epoch: u64,
    pub followers: BTreeMap<String, Follower>,
    pub waiting: VecDeque<Waiting>,
    pub reads: Vec<PendingRead>,
    /// The current heartbeat round.
    pub round: u64,
    /// This epoch's first entry.
    pub barrier: u64,
    /// Offset this node's store has synced.
    pub durable: u64,
    /// A flush of this node's store is in flight.
    pub flushing: bool,
    /// Replicas whose pre-primary keys were collected.
    pub collected: BTreeSet<String>,
    /// Chain topology: the append in flight down the chain.
    pub chain: Option<super::chain::ChainCall>,
    /// The keys the replicas hold come first: this node's log was empty (a first lineage),
    /// or a replica answered with an empty log (closed by a ring change, or new).
    pub first: bool,
    /// Replicas whose keys are in the log (collected, or following it).
    pub ready: BTreeSet<String>,
    /// The closed logs each gathered replica named: what its keys are worth.
    pub ranks: BTreeMap<String, Vec<ClosedLog>>,
    /// Live leaving members a first lineage still gathers from (see `leaving.rs`).
    pub leavers: BTreeMap<String, super::leaving::LeaverGather>,
}

impl Leader {
    pub fn new(epoch: u64, followers: Vec<String>, now_ms: u64) -> Self {
        let followers = followers
            .into_iter()
            .map(|n| {
                let f = Follower {
                    state: SyncState::Probe,
                    acked: 0,
                    heard_ms: 0,
                    // The votes just won count as the lease until the first answers.
                    lease_ms: now_ms,
                    in_flight: None,
                    round: 0,
                    sent_round: 0,
                    via: None,
                    retry_ms: 0,
                };
                (n, f)
            })
            .collect();
        Self {
            epoch,
            followers,
            waiting: VecDeque::new(),
            reads: Vec::new(),
            round: 0,
            barrier: u64::MAX,
            durable: 0,
            flushing: false,
            collected: BTreeSet::new(),
            chain: None,
            first: false,
            ready: BTreeSet::new(),
            ranks: BTreeMap::new(),
            leavers: BTreeMap::new(),
        }
    }

    /// Whether this primary still waits for replicas' keys before serving: every replica's,
    /// however long it takes, and every live leaving member's. A write acknowledged before a
    /// ring change sits on a majority of the old preference list, and only every node the two
    /// lists share, with the nodes leaving, is sure to hold one copy (see ARCHITECTURE.md,
    /// "Handover between preference lists").
    pub fn gathering(&self) -> bool {
        self.first && (self.ready.len() < self.followers.len() || !self.leavers.is_empty())
    }

    /// Whether a majority of the shard (this node included) answered within `lease` ms.
    pub fn holds_lease(&self, now: u64, lease: u64, n: usize) -> bool {
        let fresh = self
            .followers
            .values()
            .filter(|f| now.saturating_sub(f.lease_ms) < lease)
            .count();
        fresh + 1 >= majority(n)
    }

    /// Replicas following the log that answered within `timeout` ms.
    pub fn online(&self, now: u64, timeout: u64) -> usize {
        self.followers
            .values()
            .filter(|f| matches!(f.state, SyncState::Stream))
            .filter(|f| now.saturating_sub(f.heard_ms) < timeout)
            .count()
    }

    /// Replicas that answered within `timeout` ms but do not follow the stream yet.
    pub fn syncing(&self, now: u64, timeout: u64) -> usize {
        self.followers
            .values()
            .filter(|f| !matches!(f.state, SyncState::Stream))
            .filter(|f| now.saturating_sub(f.heard_ms) < timeout)
            .count()
    }

    /// The offset a majority (this node's synced log included) holds.
    pub fn commit(&self, n: usize) -> u64 {
        let mut held: Vec<u64> = self.followers.values().map(|f| f.acked).collect();
        held.push(self.durable);
        held.sort_unstable_by(|a, b| b.cmp(a));
        held.get(majority(n) - 1).copied().unwrap_or(0)
    }
}

impl Shard {
    /// Stop leading or standing: clients waiting on this node are answered by the caller.
    pub(super) fn step_down(&mut self, reason: &str) {
        let old = std::mem::replace(&mut self.role, Role::Replica);
        if let Role::Primary(mut leader) = old {
            tracing::info!("stepping down as primary: {reason}");
            let err = || {
                ClientError::Unavailable(Unavailable::SteppedDown {
                    why: reason.to_string(),
                })
            };
            let waiting: Vec<ClientId> = leader.waiting.drain(..).map(|w| w.client).collect();
            let reads: Vec<ClientId> = leader.reads.drain(..).map(|r| r.client).collect();
            self.abandoned
                .extend(waiting.into_iter().chain(reads).map(|c| (c, err())));
        }
    }
}

impl Replication {
    /// Whether this node may take a write for `key` now; why not otherwise.
    pub fn admit_write(
        &mut self,
        ctx: &Ctx<'_>,
        key: &[u8],
        need: usize,
    ) -> Result<(), ClientError> {
        let id = Self::shard_of(ctx.view.ring, key);
        let config = self.config.clone();
        let st = self.shard(ctx, &id)?;
        match &st.role {
            Role::Primary(leader) => {
                let now = ctx.now();
                if leader.gathering() {
                    return Err(ClientError::Gathering);
                }
                if !leader.holds_lease(now, ms(config.lease), id.len()) {
                    return Err(ClientError::LeaseExpired);
                }
                let online = leader.online(now, ms(config.replica_timeout));
                if online < need {
                    return Err(ClientError::NoReplicas {
                        needed: need,
                        online,
                        syncing: leader.syncing(now, ms(config.replica_timeout)),
                    });
                }
                if leader.waiting.len() >= config.max_waiting {
                    let in_flight = leader.waiting.len();
                    count_waiting(&mut self.limit_counts, now, "writes", in_flight);
                    return Err(ClientError::Overloaded { in_flight });
                }
                Ok(())
            }
            Role::Candidate(_) => Err(ClientError::Electing),
            Role::Replica => {
                // Asked as the first live replica: stand now rather than after the timeout,
                // unless a recent candidacy failed (another node may be winning).
                if ctx.now() >= st.retry_ms {
                    let mut out = Vec::new();
                    self.run(ctx, &id, &mut out);
                    self.pending_effects.extend(out);
                }
                Err(ClientError::Electing)
            }
        }
    }

    /// A write this primary stored (`record`, already in the store): log it and answer `client`
    /// once `need` replicas hold it.
    #[allow(clippy::too_many_arguments)]
    pub fn logged_write(
        &mut self,
        ctx: &Ctx<'_>,
        client: ClientId,
        token: u64,
        key: Vec<u8>,
        record: Record,
        need: usize,
        deadline_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let id = Self::shard_of(ctx.view.ring, &key);
        let mut result = WriteResult {
            context: Context(record.join()),
            acked: 0,
            session: None,
        };
        match self.log_local(ctx, &id, token, key, Some(record), out) {
            Ok(offset) => {
                result.session = self.shards.get(&id).map(|st| Session {
                    replid: st.meta.replid.clone(),
                    offset,
                });
                if let Some(Role::Primary(leader)) = self.shards.get_mut(&id).map(|s| &mut s.role) {
                    leader.waiting.push_back(Waiting {
                        offset,
                        client,
                        need,
                        deadline_ms,
                        result,
                    });
                }
                self.pump(ctx, &id, out);
                self.settle(ctx, &id, out);
            }
            Err(e) => out.push(Effect::Reply {
                id: client,
                result: Err(ClientError::Unavailable(Unavailable::Storage(format!(
                    "cannot log the write: {e}"
                )))),
            }),
        }
    }

    /// Read `key` as the primary: at once, or (linearizable) once a majority confirmed this
    /// node still leads and everything logged before the read is committed.
    pub fn primary_read(
        &mut self,
        ctx: &Ctx<'_>,
        client: ClientId,
        key: Vec<u8>,
        deadline_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let id = Self::shard_of(ctx.view.ring, &key);
        let token = ringkv_ring::token(&key);
        let Some(Shard {
            role: Role::Primary(leader),
            meta,
            ..
        }) = self.shards.get_mut(&id)
        else {
            out.push(Effect::Reply {
                id: client,
                result: Err(ClientError::Unavailable(Unavailable::NotLeading)),
            });
            return;
        };
        if leader.gathering() {
            out.push(Effect::Reply {
                id: client,
                result: Err(ClientError::Gathering),
            });
            return;
        }
        leader.round += 1;
        leader.reads.push(PendingRead {
            client,
            token,
            key,
            index: meta.offset,
            round: leader.round,
            deadline_ms,
        });
        self.pump(ctx, &id, out);
        self.settle(ctx, &id, out);
    }

    /// Append an entry to this primary's log (`record: None` is an empty entry).
    pub(super) fn log_local(
        &mut self,
        ctx: &Ctx<'_>,
        id: &[String],
        token: u64,
        key: Vec<u8>,
        record: Option<Record>,
        out: &mut Vec<Effect>,
    ) -> Result<u64, StoreError> {
        let Some(st) = self.shards.get_mut(id) else {
            return Err(StoreError::Corrupt("no such shard".into()));
        };
        let Role::Primary(leader) = &mut st.role else {
            return Err(StoreError::Corrupt("not the primary".into()));
        };
        let offset = st.meta.offset + 1;
        let entry = LogEntry {
            offset,
            epoch: leader.epoch,
            token,
            key,
            record: record.unwrap_or_else(DvvSet::empty),
        };
        self.audit
            .entry(id, &st.meta.replid, st.meta.offset, &entry, true);
        st.meta.offset = offset;
        st.meta.log_epoch = leader.epoch;
        st.meta.save(ctx.view.store, id)?;
        if leader.barrier == u64::MAX {
            leader.barrier = offset;
        }
        st.backlog.push(entry);
        self.flush(ctx, id, out);
        Ok(offset)
    }

    /// Have this node's store synced up to its log's head (a call to itself, answered after
    /// the group commit).
    fn flush(&mut self, ctx: &Ctx<'_>, id: &[String], out: &mut Vec<Effect>) {
        let me = ctx.view.me;
        let Some(st) = self.shards.get_mut(id) else {
            return;
        };
        let offset = st.meta.offset;
        let Role::Primary(leader) = &mut st.role else {
            return;
        };
        if leader.flushing || leader.durable >= offset {
            return;
        }
        let Some(to) = ctx.view.addrs.get(me).copied() else {
            return;
        };
        leader.flushing = true;
        let epoch = leader.epoch;
        let call = self.call(id, me, CallKind::Flush { epoch, offset });
        out.push(Effect::Call {
            call,
            to,
            req: crate::proto::PeerRequest::Repl(
                ReplRequest::Flush {
                    shard: id.to_vec(),
                    offset,
                },
                ctx.ring_id,
            ),
        });
    }

    /// This node's store synced the log up to `offset`.
    pub(super) fn on_flushed(
        &mut self,
        ctx: &Ctx<'_>,
        id: &[String],
        epoch: u64,
        offset: u64,
        ok: bool,
        out: &mut Vec<Effect>,
    ) {
        if let Some(Role::Primary(leader)) = self.shards.get_mut(id).map(|s| &mut s.role) {
            if leader.epoch == epoch {
                leader.flushing = false;
                if ok {
                    leader.durable = leader.durable.max(offset);
                }
            }
        }
        self.flush(ctx, id, out);
        self.settle(ctx, id, out);
    }

    /// Heartbeats and deadlines of a shard this node leads.
    pub(super) fn lead(&mut self, ctx: &Ctx<'_>, id: &[String], out: &mut Vec<Effect>) {
        let now = ctx.now();
        if let Some(Role::Primary(leader)) = self.shards.get_mut(id).map(|s| &mut s.role) {
            let n = id.len();
            let late: Vec<Waiting> = {
                let (late, keep): (Vec<_>, Vec<_>) =
                    leader.waiting.drain(..).partition(|w| now >= w.deadline_ms);
                leader.waiting = keep.into();
                late
            };
            for w in late {
                let ok = leader
                    .followers
                    .values()
                    .filter(|f| f.acked >= w.offset)
                    .count();
                out.push(Effect::Reply {
                    id: w.client,
                    result: Err(ClientError::QuorumFailed {
                        op: "write".into(),
                        needed: u8::try_from(w.need).unwrap_or(u8::MAX),
                        replicas: u8::try_from(n).unwrap_or(u8::MAX),
                        ok: u8::try_from(ok).unwrap_or(u8::MAX),
                        detail: "the primary logged it; replicas did not confirm in time, so it may or may not survive a failover".into(),
                    }),
                });
            }
            let (late, keep): (Vec<_>, Vec<_>) =
                leader.reads.drain(..).partition(|r| now >= r.deadline_ms);
            leader.reads = keep;
            for r in late {
                out.push(Effect::Reply {
                    id: r.client,
                    result: Err(ClientError::Unavailable(Unavailable::LeadUnconfirmed)),
                });
            }
        }
        self.expire_chain(ctx, id);
        self.flush(ctx, id, out);
        self.pump(ctx, id, out);
    }

    /// Send each idle replica what it needs next: a probe, entries, a heartbeat, a snapshot
    /// page or a collect request. By chain, replicas that follow the log get their appends
    /// through the chain instead ([`Self::pump_chain`]).
    pub(super) fn pump(&mut self, ctx: &Ctx<'_>, id: &[String], out: &mut Vec<Effect>) {
        let now = ctx.now();
        let beat = ms(self.config.beat_interval);
        let (max_entries, max_bytes) = (self.config.max_batch_entries, self.config.max_batch_bytes);
        let Some(Shard {
            meta,
            backlog,
            role: Role::Primary(leader),
            ..
        }) = self.shards.get_mut(id)
        else {
            return;
        };
        let mut sends = Vec::new();
        let commit = leader.commit(id.len());
        for (name, f) in &mut leader.followers {
            if f.in_flight.is_some() || now < f.retry_ms || ctx.view.peer_addr(name).is_none() {
                continue;
            }
            if matches!(f.state, SyncState::Stream) && !backlog.covers(f.acked, meta.offset) {
                count_backlog_miss(&mut self.limit_counts, now, name, f.acked);
                f.state = snapshot_start(meta);
            }
            if ctx.chain && matches!(f.state, SyncState::Stream) {
                continue;
            }
            let req = match &f.state {
                SyncState::Probe => Some(append(
                    meta,
                    leader.epoch,
                    meta.offset,
                    Vec::new(),
                    commit,
                    id,
                    None,
                )),
                SyncState::Stream => {
                    let due = f.acked < meta.offset
                        || f.round < leader.round
                        || now.saturating_sub(f.lease_ms) >= beat;
                    due.then(|| {
                        let (entries, cut) = backlog.since_bounded(f.acked, max_entries, max_bytes);
                        if cut {
                            let counts = &mut self.limit_counts;
                            super::chain::count_batch_cut(counts, now, entries.len(), max_bytes);
                        }
                        append(meta, leader.epoch, f.acked, entries, commit, id, None)
                    })
                }
                SyncState::Collect(cursor) => Some(ReplRequest::Gather {
                    shard: id.to_vec(),
                    epoch: leader.epoch,
                    cursor: cursor.clone(),
                }),
                SyncState::Snapshot { .. } => {
                    match snapshot_page(ctx, meta, leader.epoch, &mut f.state, id) {
                        Ok(req) => Some(req),
                        Err(e) => {
                            tracing::warn!("cannot read a snapshot page: {e}");
                            None
                        }
                    }
                }
            };
            if let Some(req) = req {
                f.in_flight = Some(now);
                f.sent_round = leader.round;
                let kind = match req {
                    ReplRequest::Gather { .. } => CallKind::Collect {
                        epoch: leader.epoch,
                    },
                    ReplRequest::Snapshot { .. } => CallKind::Snapshot {
                        epoch: leader.epoch,
                    },
                    _ => CallKind::Append {
                        epoch: leader.epoch,
                        round: leader.round,
                    },
                };
                sends.push((name.clone(), kind, req));
            }
        }
        for (peer, kind, req) in sends {
            if self.send(ctx, id, &peer, kind, req, out).is_none() {
                if let Some(f) = self.follower(id, &peer) {
                    f.in_flight = None;
                }
            }
        }
        if ctx.chain {
            self.pump_chain(ctx, id, out);
        }
        self.pump_leavers(ctx, id, out);
    }

    fn follower(&mut self, id: &[String], peer: &str) -> Option<&mut Follower> {
        match &mut self.shards.get_mut(id)?.role {
            Role::Primary(leader) => leader.followers.get_mut(peer),
            _ => None,
        }
    }

    /// An append (or probe, or heartbeat) was answered.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_append_reply(
        &mut self,
        ctx: &Ctx<'_>,
        id: &[String],
        peer: &str,
        epoch: u64,
        round: u64,
        reply: Result<ReplReply, CallError>,
        out: &mut Vec<Effect>,
    ) {
        let now = ctx.now();
        let Some(st) = self.shards.get_mut(id) else {
            return;
        };
        let Role::Primary(leader) = &mut st.role else {
            return;
        };
        if leader.epoch != epoch {
            return;
        }
        let Some(f) = leader.followers.get_mut(peer) else {
            return;
        };
        let sent = f.in_flight.take().unwrap_or(now);
        match reply {
            Ok(ReplReply::Acked { offset, .. }) => {
                leader.ready.insert(peer.to_string());
                f.acked = offset;
                f.via = None;
                f.heard_ms = now;
                f.lease_ms = sent;
                f.round = f.round.max(round);
                if !matches!(f.state, SyncState::Stream) {
                    f.state = SyncState::Stream;
                }
            }
            Ok(ReplReply::Behind(pos)) => {
                if pos.replid.is_empty() && !leader.collected.contains(peer) {
                    // An empty log: the replica's keys may hold writes this log lacks (a ring
                    // change closed its log). Serve nothing until every replica's are in.
                    leader.first = true;
                    leader.ready.remove(peer);
                    for (name, g) in super::leaving::leaving_members(ctx, id) {
                        leader.leavers.entry(name).or_insert(g);
                    }
                }
                f.heard_ms = now;
                f.lease_ms = sent;
                f.round = f.round.max(round);
                if st.meta.continues(&pos) && !st.backlog.covers(pos.offset, st.meta.offset) {
                    count_backlog_miss(&mut self.limit_counts, now, peer, pos.offset);
                }
                f.state = resync(&st.meta, &st.backlog, &pos, &leader.collected, peer);
                match f.state {
                    SyncState::Stream => {
                        f.acked = pos.offset;
                        st.partial_syncs += 1;
                    }
                    SyncState::Collect(_) => {
                        leader.collected.insert(peer.to_string());
                    }
                    _ => {}
                }
            }
            Ok(ReplReply::Fenced { promised }) => {
                self.deposed(ctx, id, promised);
                return self.drain_abandoned(id, out);
            }
            Ok(other) => {
                tracing::debug!("unexpected append answer {other:?}");
                f.state = SyncState::Probe;
            }
            Err(e) => {
                tracing::debug!("append to {peer} failed: {e}");
                f.state = SyncState::Probe;
                f.retry_ms = sent.saturating_add(ms(self.config.beat_interval));
            }
        }
        self.settle(ctx, id, out);
        self.pump(ctx, id, out);
    }

    /// A snapshot page or collect request was answered.
    pub(super) fn on_sync_reply(
        &mut self,
        ctx: &Ctx<'_>,
        id: &[String],
        peer: &str,
        epoch: u64,
        reply: Result<ReplReply, CallError>,
        out: &mut Vec<Effect>,
    ) {
        let now = ctx.now();
        let mut merges = Vec::new();
        {
            let Some(st) = self.shards.get_mut(id) else {
                return;
            };
            let Role::Primary(leader) = &mut st.role else {
                return;
            };
            if leader.epoch != epoch {
                return;
            }
            let Some(f) = leader.followers.get_mut(peer) else {
                return;
            };
            let sent = f.in_flight.take().unwrap_or(now);
            match (reply, &mut f.state) {
                (
                    Ok(ReplReply::Acked { offset, .. }),
                    SyncState::Snapshot {
                        at,
                        range,
                        after,
                        next,
                        ..
                    },
                ) => {
                    f.heard_ms = now;
                    f.lease_ms = sent;
                    match next.take() {
                        Some((r, a)) => {
                            *range = r;
                            *after = a;
                        }
                        None => {
                            f.acked = offset.max(*at);
                            f.state = SyncState::Stream;
                            st.full_syncs += 1;
                        }
                    }
                }
                (
                    Ok(ReplReply::Gathered {
                        items,
                        closed,
                        next,
                    }),
                    SyncState::Collect(cursor),
                ) => {
                    f.heard_ms = now;
                    f.lease_ms = sent;
                    if *cursor == Cursor::default() {
                        leader.ranks.insert(peer.to_string(), closed);
                    }
                    merges = items;
                    f.state = match next {
                        Some(cursor) => SyncState::Collect(cursor),
                        None => {
                            leader.ready.insert(peer.to_string());
                            snapshot_start(&st.meta)
                        }
                    };
                }
                (Ok(ReplReply::Fenced { promised }), _) => {
                    self.deposed(ctx, id, promised);
                    return self.drain_abandoned(id, out);
                }
                (other, _) => {
                    tracing::debug!("resync of {peer} interrupted: {other:?}");
                    f.state = SyncState::Probe;
                    if other.is_err() {
                        f.retry_ms = sent.saturating_add(ms(self.config.beat_interval));
                    }
                }
            }
        }
        self.merge_gathered(ctx, id, peer, merges, out);
    }

    /// A page of every key `peer` holds in the shard's ranges: fold in those of primary mode,
    /// then go on.
    pub(super) fn merge_gathered(
        &mut self,
        ctx: &Ctx<'_>,
        id: &[String],
        peer: &str,
        items: Vec<super::follower::KeyRecord>,
        out: &mut Vec<Effect>,
    ) {
        for (token, key, theirs) in items
            .into_iter()
            .filter(|(_, k, _)| ctx.primary_key.covers(k))
        {
            if let Err(e) = self.merge_collected(ctx, id, (peer, token), key, &theirs, out) {
                tracing::warn!("cannot merge a key gathered from {peer}: {e}");
            }
        }
        self.settle(ctx, id, out);
        self.pump(ctx, id, out);
    }

    /// Fold a key replica `peer` holds into the log, so nothing written in quorum mode, or
    /// committed by an old preference list, is lost. Where its value and this node's are
    /// concurrent and both were last written under logs of one old list, the value of the log
    /// ahead wins: that log holds every write the list committed, so the other value is a
    /// write it never committed, which merged in would stand beside the committed one.
    fn merge_collected(
        &mut self,
        ctx: &Ctx<'_>,
        id: &[String],
        (peer, token): (&str, u64),
        key: Vec<u8>,
        theirs: &Record,
        out: &mut Vec<Effect>,
    ) -> Result<(), StoreError> {
        let store = ctx.view.store;
        let ours = load(store, token, &key).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let merged = match &ours {
            Some(o) => o.sync(theirs),
            None => theirs.clone(),
        };
        if ours.as_ref() == Some(&merged) {
            return Ok(());
        }
        // The loser's value goes, its dot stays in the history: a later write never reuses
        // that dot, which a replica outside the list may still hold.
        let keep = |winner: &Record| {
            let won: Vec<&Sibling> = winner.values();
            merged.lww(|v| won.contains(&v))
        };
        let merged = if merged == *theirs {
            merged
        } else {
            match self.rank_against_ours(store, id, peer, token)? {
                Some(std::cmp::Ordering::Greater) => keep(theirs),
                Some(std::cmp::Ordering::Less) => match &ours {
                    Some(o) => keep(o),
                    None => merged,
                },
                _ => merged,
            }
        };
        // Values the ranking cannot order are resolved as any merge is: under `lww` a primary's
        // key keeps one.
        let merged = apply_policy(&merged, self.policy);
        if ours.as_ref() == Some(&merged) {
            return Ok(());
        }
        let bytes = encode_record(&merged).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        store.put(token, &key, &bytes)?;
        self.log_local(ctx, id, token, key, Some(merged), out)?;
        Ok(())
    }

    /// How the log `peer`'s keys at `token` were last written under compares with the best
    /// of those under which this node's value there was (its own closed log, and those of the
    /// replicas gathered so far); `None` when no two logs of one list can be compared.
    fn rank_against_ours(
        &mut self,
        store: &dyn crate::store::Store,
        id: &[String],
        peer: &str,
        token: u64,
    ) -> Result<Option<std::cmp::Ordering>, StoreError> {
        let own = closed_logs(store, &mut self.closed)?;
        let Some(Role::Primary(leader)) = self.shards.get(id).map(|s| &s.role) else {
            return Ok(None);
        };
        let Some(theirs) = leader.ranks.get(peer).and_then(|l| covering(l, token)) else {
            return Ok(None);
        };
        let at = |l: &ClosedLog| (l.log_epoch, l.offset);
        let best = leader
            .ranks
            .iter()
            .filter(|(n, _)| n.as_str() != peer)
            .filter_map(|(_, logs)| covering(logs, token))
            .chain(covering(own, token))
            .filter(|l| l.list == theirs.list)
            .map(at)
            .max();
        Ok(best.map(|b| at(theirs).cmp(&b)))
    }

    /// A replica promised a newer epoch: this node is no longer primary.
    fn deposed(&mut self, ctx: &Ctx<'_>, id: &[String], promised: u64) {
        if let Some(st) = self.shards.get_mut(id) {
            st.meta.promised = st.meta.promised.max(promised);
            if let Err(e) = st.meta.save(ctx.view.store, id) {
                tracing::warn!("cannot record a promised epoch: {e}");
            }
            st.step_down("a newer primary was elected");
            st.primary = None;
            st.heard_ms = ctx.now();
        }
    }

    /// Answer the writes and reads whose replicas are in.
    pub(super) fn settle(&mut self, ctx: &Ctx<'_>, id: &[String], out: &mut Vec<Effect>) {
        let n = id.len();
        let Some(st) = self.shards.get_mut(id) else {
            return;
        };
        let Role::Primary(leader) = &mut st.role else {
            return;
        };
        let commit = leader.commit(n);
        st.commit = commit;
        while let Some(w) = leader.waiting.front() {
            let acks = leader
                .followers
                .values()
                .filter(|f| f.acked >= w.offset)
                .count();
            let enough = acks >= w.need || self.sabotage.ack_before_replicas;
            if leader.durable < w.offset || !enough {
                // Later writes wait behind it: answers go out in log order.
                break;
            }
            if let Some(mut w) = leader.waiting.pop_front() {
                w.result.acked = u8::try_from(acks + 1).unwrap_or(u8::MAX);
                out.push(Effect::Reply {
                    id: w.client,
                    result: Ok(ClientResponse::Written(w.result)),
                });
            }
        }
        let confirmed = |round: u64| {
            leader
                .followers
                .values()
                .filter(|f| f.round >= round)
                .count()
                + 1
                >= majority(n)
        };
        // No read is served while replicas' keys are gathered (one of them may hold a later
        // write): those waiting are refused at once, retryably, rather than held.
        if leader.gathering() {
            for r in leader.reads.drain(..) {
                out.push(Effect::Reply {
                    id: r.client,
                    result: Err(ClientError::Gathering),
                });
            }
        }
        let ready: Vec<usize> = (0..leader.reads.len())
            .filter(|&i| {
                let r = &leader.reads[i];
                confirmed(r.round) && commit >= r.index.max(leader.barrier)
            })
            .collect();
        for i in ready.into_iter().rev() {
            let r = &mut leader.reads[i];
            // The store may already hold a later write no majority has yet: not that one.
            let record = match st.backlog.as_of(st.meta.offset, commit, r.token, &r.key) {
                AsOf::Stored => load(ctx.view.store, r.token, &r.key),
                AsOf::Logged(record) => Ok(Some(record)),
                AsOf::After(offset) => {
                    r.index = offset;
                    continue;
                }
            };
            let r = leader.reads.swap_remove(i);
            let result = record
                .map(|rec| ClientResponse::Got(read_result(rec, n)))
                .map_err(|e| ClientError::Unavailable(Unavailable::Storage(e.to_string())));
            out.push(Effect::Reply {
                id: r.client,
                result,
            });
        }
    }

    /// Move clients a stepped-down primary left to `out`.
    pub(super) fn drain_abandoned(&mut self, id: &[String], out: &mut Vec<Effect>) {
        if let Some(st) = self.shards.get_mut(id) {
            for (id, e) in st.abandoned.drain(..) {
                out.push(Effect::Reply { id, result: Err(e) });
            }
        }
    }
}

/// The read answer for a stored record.
pub fn read_result(record: Option<Record>, replied: usize) -> ReadResult {
    let Some(record) = record else {
        return ReadResult {
            replied: u8::try_from(replied).unwrap_or(u8::MAX),
            ..ReadResult::default()
        };
    };
    ReadResult {
        values: live_values(&record)
            .into_iter()
            .filter_map(|s| s.value.clone().map(|data| Value { data, ts: s.ts }))
            .collect(),
        context: Context(record.join()),
        replied: u8::try_from(replied).unwrap_or(u8::MAX),
        repaired: 0,
    }
}

pub(super) fn append(
    meta: &super::ShardMeta,
    epoch: u64,
    from: u64,
    entries: Vec<LogEntry>,
    commit: u64,
    id: &[String],
    relay: Option<Relay>,
) -> ReplRequest {
    ReplRequest::Append {
        shard: id.to_vec(),
        epoch,
        replid: meta.replid.clone(),
        prev_replid: meta.prev_replid.clone(),
        prev_end: meta.prev_end,
        from,
        entries,
        commit,
        relay,
    }
}

/// Counts a write or session read refused because `ReplConfig::max_waiting` of them wait.
pub(super) fn count_waiting(
    counts: &mut crate::limits::LimitCounts,
    now_ms: u64,
    what: &str,
    waiting: usize,
) {
    counts.hit(
        crate::limits::Limit::ReplWaiting,
        now_ms,
        format_args!("{waiting} {what} wait for replicas in a shard; refused as overloaded"),
    );
}

/// Counts a replica that follows the log but is further behind than the backlog reaches: it
/// resyncs from a snapshot.
fn count_backlog_miss(counts: &mut crate::limits::LimitCounts, now_ms: u64, peer: &str, at: u64) {
    counts.hit(
        crate::limits::Limit::ReplBacklog,
        now_ms,
        format_args!(
            "replica {peer} at offset {at} is behind the backlog; resyncing from a snapshot"
        ),
    );
}

/// What a replica at `pos` needs: the log from there, its old keys first, or a snapshot.
fn resync(
    meta: &super::ShardMeta,
    backlog: &super::Backlog,
    pos: &Position,
    collected: &BTreeSet<String>,
    peer: &str,
) -> SyncState {
    if meta.continues(pos) && backlog.covers(pos.offset, meta.offset) {
        SyncState::Stream
    } else if pos.replid.is_empty() && !collected.contains(peer) {
        SyncState::Collect(Cursor::default())
    } else {
        snapshot_start(meta)
    }
}

fn snapshot_start(meta: &super::ShardMeta) -> SyncState {
    SyncState::Snapshot {
        at: meta.offset,
        at_epoch: meta.log_epoch,
        range: 0,
        after: None,
        next: None,
    }
}

/// The snapshot page at a follower's cursor.
fn snapshot_page(
    ctx: &Ctx<'_>,
    meta: &super::ShardMeta,
    epoch: u64,
    state: &mut SyncState,
    id: &[String],
) -> Result<ReplRequest, StoreError> {
    let SyncState::Snapshot {
        at,
        at_epoch,
        range,
        after,
        next,
    } = state
    else {
        return Err(StoreError::Corrupt("not a snapshot".into()));
    };
    let ranges = shard_ranges(ctx.view.ring, id);
    let (items, span, done) = match ranges.get(*range) {
        Some(&(start, end)) => {
            let page = ctx
                .view
                .store
                .scan(start, end, after.clone(), SNAPSHOT_PAGE)?;
            let full = page.len() == SNAPSHOT_PAGE;
            let upto = if full {
                page.last().map(|e| (e.token, e.key.clone()))
            } else {
                None
            };
            let mut items = Vec::new();
            for e in page {
                if ctx.primary_key.covers(&e.key) {
                    let record =
                        decode_record(&e.value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    items.push((e.token, e.key, record));
                }
            }
            let done = !full && *range + 1 >= ranges.len();
            *next = match (&upto, done) {
                (Some(u), _) => Some((*range, Some(u.clone()))),
                (None, false) => Some((*range + 1, None)),
                (None, true) => None,
            };
            let span = SnapshotSpan {
                start,
                end,
                after: after.clone(),
                upto,
            };
            (items, span, done)
        }
        None => {
            *next = None;
            (Vec::new(), SnapshotSpan::default(), true)
        }
    };
    Ok(ReplRequest::Snapshot {
        shard: id.to_vec(),
        epoch,
        replid: meta.replid.clone(),
        at: *at,
        at_epoch: *at_epoch,
        span,
        items,
        done,
    })
}
