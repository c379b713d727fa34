//! Spreading the range table (see [`crate::table`]) between nodes.
//!
//! Every tick the node push-pulls its table with one live peer, taking the peers in turn:
//! the peer merges what it was sent and answers with its own table when that still differs,
//! and the node merges the answer. Tables thus converge epidemically, like gossip, without
//! any randomness. A rule set through this node is kept in the store (synced under
//! `Durability::Sync` before the client is answered) and pushed to every live peer at once.
//! A table from a peer that breaks this node's bounds is refused whole and logged.
//!
//! A node that joined through seeds does not know its table holds the cluster's rules until
//! it has exchanged tables with a settled peer (one not itself joining): until then it cannot
//! tell a primary-mode key from a quorum one, and serving one as the other would leave a value
//! outside its shard's log. [`TableSync::synced`] says when it knows; it exchanges with a few
//! live peers (`UNSYNCED_FANOUT`) as soon as it has one, and on every tick until it knows, so
//! the wait is about one round trip. Keyed requests that arrive meanwhile wait here ([`TableSync::wait`]), at
//! most `max_in_flight` of them and each at most the request timeout, then are served; a
//! request that cannot wait gets the retryable [`Unavailable::TableUnknown`].

use super::calls::{CallError, CallId};
use crate::proto::{Refusal, Unavailable};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use super::calls::{Calls, Owner};
use super::{ClientId, Effect};
use crate::proto::{ClientError, ClientRequest, PeerReply, PeerRequest, RuleRow};
use crate::store::Store;
use crate::table::{Mode, RangeTable, TableError, TableLimits};

/// What this mechanism sees of the node for one step.
pub type Ctx<'a> = super::View<'a>;

/// The node's range table and its exchanges with peers.
pub struct TableSync {
    table: RangeTable,
    limits: TableLimits,
    /// Sync the store before a set is answered (`Durability::Sync`).
    durable: bool,
    calls: Calls,
    /// Which live peer the next tick exchanges with.
    turn: usize,
    /// This node holds the cluster's rules: it started without seeds (the first node), or
    /// exchanged tables with a settled peer since it started.
    synced: bool,
    /// Exchanges in flight, by call sequence: the peer asked (at most [`MAX_ASKED`]).
    asked: BTreeMap<u64, String>,
    /// Keyed requests that arrived before this node was synced, oldest first.
    waiting: VecDeque<Waiting>,
}

/// A keyed client or forwarded request held until the node knows the cluster's rules.
#[derive(Debug)]
pub struct Waiting {
    /// When it arrived.
    pub since_ms: u64,
    /// Whom to answer.
    pub id: ClientId,
    /// The request as it arrived.
    pub req: ClientRequest,
    /// Another node sent it here as to the key's primary.
    pub forwarded: bool,
}

/// Most exchanges remembered in flight; the oldest is forgotten first (its answer then only
/// merges, without counting as the first sync).
const MAX_ASKED: usize = 256;

/// Peers a node that does not yet know the cluster's rules asks at once: a few, so one slow
/// or joining peer does not hold it, and not every member of a large cluster.
pub(super) const UNSYNCED_FANOUT: usize = 4;

impl TableSync {
    /// Time between two push-pulls with a peer.
    pub(super) const INTERVAL: Duration = Duration::from_secs(1);

    /// The table the store holds, or an empty one; `synced` when it is surely the cluster's
    /// (a node started without seeds).
    ///
    /// # Errors
    /// The store fails or holds a table that does not decode.
    pub fn load(
        store: &dyn Store,
        limits: TableLimits,
        durable: bool,
        synced: bool,
    ) -> Result<Self, TableError> {
        let table = RangeTable::load(store)?;
        if let Err(e) = table.check(&limits) {
            // It was accepted under other settings: keep it, peers hold it too.
            tracing::warn!("the stored range table breaks this node's bounds: {e}");
        }
        Ok(Self {
            table,
            limits,
            durable,
            calls: Calls::new(Owner::Table),
            turn: 0,
            synced,
            asked: BTreeMap::new(),
            waiting: VecDeque::new(),
        })
    }

    /// Hold a keyed request until this node is synced, unless `max` already wait: then it
    /// is handed back, to be refused.
    ///
    /// # Errors
    /// The request back when the queue is full.
    pub fn wait(&mut self, request: Waiting, max: usize) -> Result<(), Box<Waiting>> {
        if self.waiting.len() >= max {
            return Err(Box::new(request));
        }
        self.waiting.push_back(request);
        Ok(())
    }

    /// The requests that waited, once this node is synced (none before).
    pub fn released(&mut self) -> VecDeque<Waiting> {
        if self.synced {
            std::mem::take(&mut self.waiting)
        } else {
            VecDeque::new()
        }
    }

    /// The requests that have waited `timeout_ms` or longer by `now_ms`, taken out.
    pub fn expired(&mut self, now_ms: u64, timeout_ms: u64) -> Vec<Waiting> {
        let mut gone = Vec::new();
        while self
            .waiting
            .front()
            .is_some_and(|w| now_ms.saturating_sub(w.since_ms) >= timeout_ms)
        {
            gone.extend(self.waiting.pop_front());
        }
        gone
    }

    /// Whether this node knows the cluster's rules (see the module documentation).
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Exchange with every live peer at once (a rule just set here).
    fn exchange_all(&mut self, ctx: &Ctx<'_>, out: &mut Vec<Effect>) {
        for (name, to) in live_peers(ctx) {
            self.call(name, to, out);
        }
    }

    /// The table as this node holds it.
    pub fn current(&self) -> &RangeTable {
        &self.table
    }

    /// Push-pull with the next live peer, if any; with the next [`UNSYNCED_FANOUT`] while
    /// not synced.
    pub fn on_tick(&mut self, ctx: &Ctx<'_>, out: &mut Vec<Effect>) {
        let count = if self.synced { 1 } else { UNSYNCED_FANOUT };
        self.exchange_next(ctx, count, out);
    }

    /// Push-pull with the next `count` live peers in turn (each at most once).
    pub fn exchange_next(&mut self, ctx: &Ctx<'_>, count: usize, out: &mut Vec<Effect>) {
        let peers = live_peers(ctx);
        for _ in 0..count.min(peers.len()) {
            let (name, to) = peers[self.turn % peers.len()];
            self.turn = self.turn.wrapping_add(1);
            self.call(name, to, out);
        }
    }

    /// Set `prefix` to `mode`, keep the table, push it to every live peer, and give the
    /// table's rows. Nothing changes when the rule is refused or cannot be kept.
    ///
    /// # Errors
    /// [`ClientError::BadRange`] for a rule outside the bounds, [`ClientError::Unavailable`]
    /// when the store fails.
    pub fn set(
        &mut self,
        ctx: &Ctx<'_>,
        prefix: Vec<u8>,
        mode: Mode,
        out: &mut Vec<Effect>,
    ) -> Result<Vec<RuleRow>, ClientError> {
        let mut next = self.table.clone();
        next.set(prefix, mode, ctx.me, &self.limits)
            .map_err(|e| ClientError::BadRange(e.to_string()))?;
        let unavailable =
            |e: String| ClientError::Unavailable(Unavailable::Storage(format!("range table: {e}")));
        next.save(ctx.store)
            .map_err(|e| unavailable(e.to_string()))?;
        // A rare operator command: one sync here is simpler than a synced-reply effect.
        if self.durable {
            ctx.store.sync().map_err(|e| unavailable(e.to_string()))?;
        }
        self.table = next;
        self.exchange_all(ctx, out);
        Ok(self.table.rows())
    }

    /// A peer's table: merge it and answer with ours when it still differs. Says whether
    /// ours changed (and was saved; under `Durability::Sync` the answer waits for a sync).
    /// The table of a `settled` peer makes this node synced.
    pub fn on_request(
        &mut self,
        store: &dyn Store,
        (from, settled): (&str, bool),
        theirs: &RangeTable,
    ) -> (PeerReply, bool) {
        match self.merge(store, from, theirs) {
            Ok(changed) => {
                self.synced |= settled;
                let ours = (self.table != *theirs).then(|| self.table.clone());
                (PeerReply::Table(ours), changed)
            }
            Err(e) => (PeerReply::Failed(Refusal::RangeTable(e.to_string())), false),
        }
    }

    /// A peer's answer to an exchange: merge its table if it sent one. Says whether ours
    /// changed. An answer from a peer `settled` says is settled makes this node synced.
    pub fn on_reply(
        &mut self,
        store: &dyn Store,
        call: CallId,
        reply: Result<PeerReply, CallError>,
        settled: impl Fn(&str) -> bool,
    ) -> bool {
        let peer = self.asked.remove(&call.seq);
        let from_settled = || peer.as_deref().is_some_and(&settled);
        match reply {
            Ok(PeerReply::Table(Some(theirs))) => {
                let merged = self.merge(store, "a peer", &theirs);
                self.synced |= merged.is_ok() && from_settled();
                merged.unwrap_or(false)
            }
            Ok(PeerReply::Table(None)) => {
                self.synced |= from_settled();
                false
            }
            Ok(other) => {
                tracing::debug!("range table exchange answered {other:?}");
                false
            }
            Err(e) => {
                tracing::debug!("range table exchange failed: {e}");
                false
            }
        }
    }

    /// Merge within the bounds and keep the result; a refused table is logged.
    fn merge(
        &mut self,
        store: &dyn Store,
        from: &str,
        theirs: &RangeTable,
    ) -> Result<bool, TableError> {
        let changed = self
            .table
            .merge_within(theirs, &self.limits)
            .inspect_err(|e| tracing::warn!("refused the range table of {from}: {e}"))?;
        if changed {
            // Lost on a crash at worst, and learned again from the peers.
            if let Err(e) = self.table.save(store) {
                tracing::warn!("cannot keep the range table: {e}");
            }
        }
        Ok(changed)
    }

    fn call(&mut self, name: &str, to: SocketAddr, out: &mut Vec<Effect>) {
        let call = self.calls.next_id();
        self.asked.insert(call.seq, name.to_string());
        while self.asked.len() > MAX_ASKED {
            self.asked.pop_first();
        }
        out.push(Effect::Call {
            call,
            to,
            req: PeerRequest::Table {
                table: self.table.clone(),
            },
        });
    }
}

/// Every other live member and its address, in name order.
fn live_peers<'a>(ctx: &Ctx<'a>) -> Vec<(&'a str, SocketAddr)> {
    ctx.addrs
        .keys()
        .filter_map(|name| Some((name.as_str(), ctx.peer_addr(name)?)))
        .collect()
}

#[cfg(test)]
pub(super) mod tests;
