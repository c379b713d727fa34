//! Active anti-entropy: per ring range a Merkle tree kept current on every write, and
//! exchanges with the range's other replicas that find and repair what differs.
//!
//! One outbound exchange runs at a time: the periodic sweep walks this node's ranges one per
//! tick; `ringctl repair` queues every (range, peer) pair to run back to back. Messages and
//! pushed records are paced under a bytes-per-second budget so repair never starves
//! foreground traffic. Trees are built from the store the first time a range needs one and
//! dropped when the ring changes (ranges move).

use super::calls::CallError;
use crate::proto::Refusal;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use ringkv_ring::Ring;

use super::calls::{CallId, Calls, Owner};
use super::replica::{load, Change};
use super::{Effect, Timer};
use crate::config::AeConfig;
use crate::limits::{Limit, LimitCounts};
use crate::merkle::{item_hash, Action, Exchange, ExchangeError, ExchangeMsg, Item, RangeTree};
use crate::proto::{self, PeerReply, PeerRequest, RangeStatus, RepairProgress, StatusReport};
use crate::store::Store;

/// Keys read from the store per scan page.
const SCAN_PAGE: usize = 1024;
/// A responder forgets a session idle this long (the initiator gave up or crashed).
const INBOUND_IDLE_MS: u64 = 60_000;
/// Most responder sessions kept at once.
const MAX_INBOUND: usize = 64;

/// What this mechanism sees of the node for one step.
pub type Ctx<'a> = super::View<'a>;

struct Outbound {
    session: u64,
    range: usize,
    bounds: (u64, u64),
    peer: String,
    addr: SocketAddr,
    exchange: Exchange,
    /// The step sent and not yet answered.
    call: Option<CallId>,
    /// A step waiting for the budget.
    held: Option<ExchangeMsg>,
    started_ms: u64,
}

struct Inbound {
    range: usize,
    exchange: Exchange,
    touched_ms: u64,
}

#[derive(Default)]
struct RangeStats {
    last_exchange_ms: Option<u64>,
    keys_repaired: u64,
}

/// The node's anti-entropy state.
pub struct AntiEntropy {
    config: AeConfig,
    trees: HashMap<usize, RangeTree>,
    outbound: Option<Outbound>,
    inbound: HashMap<(String, u64), Inbound>,
    stats: BTreeMap<usize, RangeStats>,
    /// (range, peer) pairs of a repair round still to run.
    round: VecDeque<(usize, String)>,
    progress: RepairProgress,
    cursor: usize,
    next_session: u64,
    calls: Calls,
    /// No step is sent before this time: the bytes already sent are paid off.
    paused_until_ms: u64,
    exchanges: u64,
    failures: u64,
    /// Peers' messages past the exchange limits.
    limit_counts: LimitCounts,
}

impl AntiEntropy {
    /// Anti-entropy with no tree built yet.
    pub fn new(config: AeConfig) -> Self {
        Self {
            config,
            trees: HashMap::new(),
            outbound: None,
            inbound: HashMap::new(),
            stats: BTreeMap::new(),
            round: VecDeque::new(),
            progress: RepairProgress::default(),
            cursor: 0,
            next_session: 0,
            calls: Calls::new(Owner::AntiEntropy),
            paused_until_ms: 0,
            exchanges: 0,
            failures: 0,
            limit_counts: LimitCounts::default(),
        }
    }

    /// Hits of the exchange limits by peers' messages.
    pub fn limit_counts(&self) -> &LimitCounts {
        &self.limit_counts
    }

    /// The sweep interval, for the core to arm its timer.
    pub fn interval(&self) -> Duration {
        self.config.interval
    }

    /// The ring changed: ranges moved, so every tree and session is void.
    pub fn reset(&mut self) {
        self.trees.clear();
        self.inbound.clear();
        self.stats.clear();
        if self.outbound.take().is_some() {
            self.failures += 1;
        }
        let dropped = self.round.len() as u64;
        self.round.clear();
        self.progress.done += dropped;
        self.progress.running = false;
    }

    /// A replica changed a key: keep the tree of its range current.
    pub fn on_change(&mut self, ring: &Ring, change: &Change) {
        let Some(idx) = ring.range_index(change.token) else {
            return;
        };
        if let Some(tree) = self.trees.get_mut(&idx) {
            if let Err(e) = tree.update(change.token, change.old, change.new) {
                tracing::warn!("merkle tree of range {idx} out of step, rebuilding: {e}");
                self.trees.remove(&idx);
            }
        }
    }

    /// Queue an exchange with every other replica of every range this node replicates.
    pub fn repair(&mut self, ctx: &Ctx<'_>) -> RepairProgress {
        self.start_round(ctx, false)
    }

    /// A joiner's pull: every range it replicates, each with one live peer (rotating), which
    /// is enough to receive what it lacks.
    pub fn pull(&mut self, ctx: &Ctx<'_>) -> RepairProgress {
        self.start_round(ctx, true)
    }

    fn start_round(&mut self, ctx: &Ctx<'_>, one_peer: bool) -> RepairProgress {
        if !self.progress.running {
            self.round = self
                .my_ranges(ctx)
                .flat_map(|(idx, peers)| {
                    let take = if one_peer { 1 } else { peers.len() };
                    let skip = if one_peer {
                        idx % peers.len().max(1)
                    } else {
                        0
                    };
                    peers
                        .into_iter()
                        .cycle()
                        .skip(skip)
                        .take(take)
                        .map(move |p| (idx, p))
                })
                .collect();
            self.progress = RepairProgress {
                total: self.round.len() as u64,
                done: 0,
                running: !self.round.is_empty(),
            };
        }
        self.progress.clone()
    }

    /// The periodic tick: expire idle sessions, start the next exchange if none runs.
    pub fn on_tick(&mut self, ctx: &Ctx<'_>, out: &mut Vec<Effect>) {
        let now = ctx.now_ms;
        self.inbound
            .retain(|_, s| now.saturating_sub(s.touched_ms) < INBOUND_IDLE_MS);
        let timeout = u64::try_from(self.config.session_timeout.as_millis()).unwrap_or(u64::MAX);
        if self
            .outbound
            .as_ref()
            .is_some_and(|o| now.saturating_sub(o.started_ms) > timeout)
        {
            tracing::debug!("anti-entropy exchange timed out");
            self.finish(false, now);
        }
        if self.outbound.is_none() {
            self.start_next(ctx, out);
        }
    }

    /// A held step may go now that the budget allows.
    pub fn on_step(&mut self, ctx: &Ctx<'_>, out: &mut Vec<Effect>) {
        self.drive(ctx, out);
    }

    /// A reply to one of our calls; pushes' replies need nothing.
    pub fn on_reply(
        &mut self,
        ctx: &Ctx<'_>,
        call: CallId,
        reply: Result<PeerReply, CallError>,
        out: &mut Vec<Effect>,
    ) {
        let Some(o) = self.outbound.as_mut().filter(|o| o.call == Some(call)) else {
            return;
        };
        o.call = None;
        let step = match reply {
            Ok(PeerReply::Exchange(Some(msg))) => match self.trees.get_mut(&o.range) {
                Some(tree) => o.exchange.handle(tree, msg).map_err(|e| {
                    count_past_limits(&mut self.limit_counts, &e, &o.peer, ctx.now_ms);
                    e.to_string()
                }),
                None => Err("tree dropped".into()),
            },
            Ok(PeerReply::Exchange(None)) => Ok(()),
            Ok(PeerReply::Failed(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
            Ok(other) => Err(format!("unexpected reply {other:?}")),
        };
        match step {
            Ok(()) => self.drive(ctx, out),
            Err(e) => {
                tracing::debug!(peer = %o.peer, "anti-entropy exchange failed: {e}");
                self.finish_and_continue(false, ctx, out);
            }
        }
    }

    /// A peer's exchange step for a range we replicate: handle it, answer with ours.
    pub fn on_request(
        &mut self,
        ctx: &Ctx<'_>,
        from: &str,
        session: u64,
        (start, end): (u64, u64),
        msg: ExchangeMsg,
        out: &mut Vec<Effect>,
    ) -> PeerReply {
        match self.respond(ctx, from, session, (start, end), msg, out) {
            Ok(reply) => PeerReply::Exchange(reply),
            Err(e) => {
                self.inbound.remove(&(from.to_string(), session));
                PeerReply::Failed(Refusal::AntiEntropy(e.to_string()))
            }
        }
    }

    fn respond(
        &mut self,
        ctx: &Ctx<'_>,
        from: &str,
        session: u64,
        (start, end): (u64, u64),
        msg: ExchangeMsg,
        out: &mut Vec<Effect>,
    ) -> Result<Option<ExchangeMsg>, String> {
        let key = (from.to_string(), session);
        if !self.inbound.contains_key(&key) {
            let idx = ctx
                .ring
                .range_index(end)
                .filter(|&i| ctx.ring.range_bounds(i) == Some((start, end)));
            let idx = idx.ok_or("no such range in this node's ring (rings differ)")?;
            if !ctx.ring.preference_list_at(idx).iter().any(|n| n == ctx.me) {
                return Err("this node does not replicate that range".into());
            }
            if self.inbound.len() >= MAX_INBOUND {
                return Err("too many exchanges at once".into());
            }
            let limits = self.config.limits;
            let tree = self.tree(ctx, idx)?;
            let exchange = Exchange::respond(tree, limits).map_err(|e| e.to_string())?;
            self.inbound.insert(
                key.clone(),
                Inbound {
                    range: idx,
                    exchange,
                    touched_ms: ctx.now_ms,
                },
            );
        }
        let peer = ctx.peer_addr(from);
        let Some(s) = self.inbound.get_mut(&key) else {
            return Err("session lost".into());
        };
        s.touched_ms = ctx.now_ms;
        let tree = self.trees.get_mut(&s.range).ok_or("tree dropped")?;
        s.exchange.handle(tree, msg).map_err(|e| {
            count_past_limits(&mut self.limit_counts, &e, from, ctx.now_ms);
            e.to_string()
        })?;
        let mut reply = None;
        while let Some(action) = s.exchange.poll() {
            match action {
                Action::Send(m) => reply = Some(m),
                Action::ScanLeaf { leaf, start, end } => {
                    let items =
                        scan_items(ctx.store, start, end, self.config.limits.max_leaf_items)?;
                    s.exchange
                        .leaf_items(leaf, items)
                        .map_err(|e| e.to_string())?;
                }
                Action::Push(keys) => {
                    let to = peer.ok_or("the initiator is not reachable")?;
                    let (pushed, bytes) = push(ctx, to, &keys, out);
                    self.stats.entry(s.range).or_default().keys_repaired += pushed;
                    pay(
                        &mut self.paused_until_ms,
                        bytes,
                        self.config.bytes_per_sec,
                        ctx.now_ms,
                    );
                }
            }
        }
        if s.exchange.is_finished() {
            let range = s.range;
            self.inbound.remove(&key);
            self.stats.entry(range).or_default().last_exchange_ms = Some(ctx.now_ms);
        }
        Ok(reply)
    }

    /// The node's anti-entropy state, as `ringctl status` shows it.
    pub fn status(&self, ctx: &Ctx<'_>) -> StatusReport {
        let ranges = (0..ctx.ring.vnode_count())
            .filter(|&i| ctx.ring.preference_list_at(i).iter().any(|n| n == ctx.me))
            .filter_map(|i| {
                let (start, end) = ctx.ring.range_bounds(i)?;
                let s = self.stats.get(&i);
                Some(RangeStatus {
                    start,
                    end,
                    replica: true,
                    last_exchange_ms: s.and_then(|s| s.last_exchange_ms),
                    keys_repaired: s.map_or(0, |s| s.keys_repaired),
                    hints_pending: 0,
                })
            })
            .collect();
        StatusReport {
            node: ctx.me.to_string(),
            ranges,
            repair: self.progress.clone(),
            exchanges: self.exchanges,
            exchange_failures: self.failures,
            ..StatusReport::default()
        }
    }

    /// Ranges this node replicates, each with its other live replicas.
    fn my_ranges<'a>(&self, ctx: &'a Ctx<'_>) -> impl Iterator<Item = (usize, Vec<String>)> + 'a {
        (0..ctx.ring.vnode_count()).filter_map(move |i| {
            let list = ctx.ring.preference_list_at(i);
            if !list.iter().any(|n| n == ctx.me) {
                return None;
            }
            let peers: Vec<String> = list
                .iter()
                .filter(|n| ctx.peer_addr(n).is_some())
                .cloned()
                .collect();
            (!peers.is_empty()).then_some((i, peers))
        })
    }

    /// Start the next exchange: a repair round's pairs back to back, else the sweep's next.
    fn start_next(&mut self, ctx: &Ctx<'_>, out: &mut Vec<Effect>) {
        let mut from_sweep = false;
        while self.outbound.is_none() && !from_sweep {
            let next = match self.round.pop_front() {
                Some(pair) => Some(pair),
                None => {
                    from_sweep = true;
                    self.sweep_next(ctx)
                }
            };
            let Some((range, peer)) = next else { return };
            self.start(ctx, range, peer, out);
        }
    }

    fn start(&mut self, ctx: &Ctx<'_>, range: usize, peer: String, out: &mut Vec<Effect>) {
        let Some(addr) = ctx.peer_addr(&peer) else {
            self.count_round_step();
            return;
        };
        let Some(bounds) = ctx.ring.range_bounds(range) else {
            return self.count_round_step();
        };
        let limits = self.config.limits;
        let tree = match self.tree(ctx, range) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("anti-entropy cannot build the tree of range {range}: {e}");
                self.count_round_step();
                return;
            }
        };
        match Exchange::initiate(tree, limits) {
            Ok(exchange) => {
                self.next_session += 1;
                self.outbound = Some(Outbound {
                    session: self.next_session,
                    range,
                    bounds,
                    peer,
                    addr,
                    exchange,
                    call: None,
                    held: None,
                    started_ms: ctx.now_ms,
                });
                self.drive(ctx, out);
            }
            Err(e) => {
                tracing::warn!("anti-entropy cannot start on range {range}: {e}");
                self.count_round_step();
            }
        }
    }

    /// The sweep's next (range, peer): ranges in turn, peers rotating with the cursor.
    fn sweep_next(&mut self, ctx: &Ctx<'_>) -> Option<(usize, String)> {
        let n = ctx.ring.vnode_count();
        for _ in 0..n {
            let idx = self.cursor % n.max(1);
            self.cursor = self.cursor.wrapping_add(1);
            let list = ctx.ring.preference_list_at(idx);
            if !list.iter().any(|x| x == ctx.me) {
                continue;
            }
            let peers: Vec<&String> = list.iter().filter(|p| ctx.peer_addr(p).is_some()).collect();
            if let Some(peer) = peers.get(self.cursor / n.max(1) % peers.len().max(1)) {
                return Some((idx, (*peer).clone()));
            }
        }
        None
    }

    /// Run the outbound exchange until it waits for the peer, the budget, or ends.
    fn drive(&mut self, ctx: &Ctx<'_>, out: &mut Vec<Effect>) {
        let Some(mut o) = self.outbound.take() else {
            return;
        };
        if o.call.is_some() {
            self.outbound = Some(o);
            return;
        }
        let msg = loop {
            if let Some(m) = o.held.take() {
                break m;
            }
            match o.exchange.poll() {
                Some(Action::Send(m)) => break m,
                Some(Action::ScanLeaf { leaf, start, end }) => {
                    let max = self.config.limits.max_leaf_items;
                    let listed = scan_items(ctx.store, start, end, max).and_then(|items| {
                        o.exchange
                            .leaf_items(leaf, items)
                            .map_err(|e| e.to_string())
                    });
                    if let Err(e) = listed {
                        tracing::debug!("anti-entropy scan failed: {e}");
                        self.outbound = Some(o);
                        return self.finish_and_continue(false, ctx, out);
                    }
                }
                Some(Action::Push(keys)) => {
                    let (pushed, bytes) = push(ctx, o.addr, &keys, out);
                    self.stats.entry(o.range).or_default().keys_repaired += pushed;
                    pay(
                        &mut self.paused_until_ms,
                        bytes,
                        self.config.bytes_per_sec,
                        ctx.now_ms,
                    );
                }
                None => {
                    let done = o.exchange.is_finished();
                    self.outbound = Some(o);
                    return self.finish_and_continue(done, ctx, out);
                }
            }
        };
        if ctx.now_ms < self.paused_until_ms {
            o.held = Some(msg);
            out.push(Effect::Schedule {
                after: Duration::from_millis(self.paused_until_ms - ctx.now_ms),
                timer: Timer::AntiEntropyStep,
            });
        } else {
            let (start, end) = o.bounds;
            let req = PeerRequest::Exchange {
                session: o.session,
                start,
                end,
                msg,
            };
            let bytes = proto::encode(&req).map_or(0, |f| f.len() as u64);
            pay(
                &mut self.paused_until_ms,
                bytes,
                self.config.bytes_per_sec,
                ctx.now_ms,
            );
            let call = self.calls.next_id();
            o.call = Some(call);
            out.push(Effect::Call {
                call,
                to: o.addr,
                req,
            });
        }
        self.outbound = Some(o);
    }

    /// End the exchange; a repair round goes straight on with its next pair.
    fn finish_and_continue(&mut self, ok: bool, ctx: &Ctx<'_>, out: &mut Vec<Effect>) {
        self.finish(ok, ctx.now_ms);
        if !self.round.is_empty() {
            self.start_next(ctx, out);
        }
    }

    fn finish(&mut self, ok: bool, now_ms: u64) {
        let Some(o) = self.outbound.take() else {
            return;
        };
        if ok {
            self.exchanges += 1;
            self.stats.entry(o.range).or_default().last_exchange_ms = Some(now_ms);
        } else {
            self.failures += 1;
        }
        self.count_round_step();
    }

    fn count_round_step(&mut self) {
        if self.progress.running {
            self.progress.done = (self.progress.done + 1).min(self.progress.total);
            if self.round.is_empty() && self.outbound.is_none() {
                self.progress.running = false;
                self.progress.done = self.progress.total;
            }
        }
    }

    /// The tree of a range, built from the store on first use.
    fn tree(&mut self, ctx: &Ctx<'_>, idx: usize) -> Result<&mut RangeTree, String> {
        if !self.trees.contains_key(&idx) {
            let (start, end) = ctx.ring.range_bounds(idx).ok_or("no such range")?;
            let mut items = Vec::new();
            let mut after = None;
            loop {
                let page = ctx
                    .store
                    .scan(start, end, after.take(), SCAN_PAGE)
                    .map_err(|e| e.to_string())?;
                let full = page.len() == SCAN_PAGE;
                for e in page {
                    let record =
                        crate::version::decode_record(&e.value).map_err(|e| e.to_string())?;
                    items.push((e.token, item_hash(&e.key, &record)));
                    after = Some((e.token, e.key));
                }
                if !full {
                    break;
                }
            }
            let tree = RangeTree::from_items(start, end, self.config.depth, items)
                .map_err(|e| e.to_string())?;
            self.trees.insert(idx, tree);
        }
        self.trees
            .get_mut(&idx)
            .ok_or_else(|| "tree missing".into())
    }
}

/// Add the cost of `bytes` to the pacing deadline.
/// Counts a peer's exchange message that broke [`ExchangeLimits`](crate::merkle::ExchangeLimits)
/// (it fails the exchange like any other error).
fn count_past_limits(counts: &mut LimitCounts, e: &ExchangeError, peer: &str, now_ms: u64) {
    if matches!(
        e,
        ExchangeError::TooMany { .. } | ExchangeError::KeyTooLong { .. }
    ) {
        counts.hit(
            Limit::MerkleExchange,
            now_ms,
            format_args!("anti-entropy message from {peer}: {e}; exchange failed"),
        );
    }
}

fn pay(paused_until_ms: &mut u64, bytes: u64, bytes_per_sec: u64, now_ms: u64) {
    let cost_ms = bytes.saturating_mul(1000) / bytes_per_sec.max(1);
    *paused_until_ms = (*paused_until_ms).max(now_ms).saturating_add(cost_ms);
}

/// Send our records for `keys` to `to`; returns how many went and their encoded size.
fn push(ctx: &Ctx<'_>, to: SocketAddr, keys: &[Vec<u8>], out: &mut Vec<Effect>) -> (u64, u64) {
    let (mut pushed, mut bytes) = (0, 0);
    for key in keys {
        let token = ringkv_ring::token(key);
        match load(ctx.store, token, key) {
            Ok(Some(record)) => {
                let req = PeerRequest::Replicate {
                    token,
                    key: key.clone(),
                    record,
                };
                bytes += proto::encode(&req).map_or(0, |f| f.len() as u64);
                out.push(Effect::Push {
                    to,
                    req,
                    sync: true,
                });
                pushed += 1;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("anti-entropy cannot read a key to push: {e}"),
        }
    }
    (pushed, bytes)
}

/// (key, item hash) of every stored key with a token in `(start, end]`, at most `max`.
fn scan_items(store: &dyn Store, start: u64, end: u64, max: usize) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let mut after = None;
    while items.len() < max {
        let page = store
            .scan(start, end, after.take(), SCAN_PAGE.min(max - items.len()))
            .map_err(|e| e.to_string())?;
        let full = page.len() == SCAN_PAGE;
        for e in page {
            let record = crate::version::decode_record(&e.value).map_err(|e| e.to_string())?;
            items.push((e.key.clone(), item_hash(&e.key, &record)));
            after = Some((e.token, e.key));
        }
        if !full {
            break;
        }
    }
    Ok(items)
}
