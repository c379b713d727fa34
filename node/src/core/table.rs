//! Spreading the range table (see [`crate::table`]) between nodes.
//!
//! Every tick the node push-pulls its table with one live peer, taking the peers in turn:
//! the peer merges what it was sent and answers with its own table when that still differs,
//! and the node merges the answer. Tables thus converge epidemically, like gossip, without
//! any randomness. A rule set through this node is kept in the store (synced under
//! `Durability::Sync` before the client is answered) and pushed to every live peer at once.
//! A table from a peer that breaks this node's bounds is refused whole and logged.

use super::calls::CallError;
use crate::proto::{Refusal, Unavailable};
use std::net::SocketAddr;
use std::time::Duration;

use super::calls::{Calls, Owner};
use super::Effect;
use crate::proto::{ClientError, PeerReply, PeerRequest, RuleRow};
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
}

impl TableSync {
    /// Time between two push-pulls with a peer.
    pub(super) const INTERVAL: Duration = Duration::from_secs(1);

    /// The table the store holds, or an empty one.
    ///
    /// # Errors
    /// The store fails or holds a table that does not decode.
    pub fn load(store: &dyn Store, limits: TableLimits, durable: bool) -> Result<Self, TableError> {
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
        })
    }

    /// The table as this node holds it.
    pub fn current(&self) -> &RangeTable {
        &self.table
    }

    /// Push-pull with the next live peer, if any.
    pub fn on_tick(&mut self, ctx: &Ctx<'_>, out: &mut Vec<Effect>) {
        let peers = live_peers(ctx);
        if peers.is_empty() {
            return;
        }
        let to = peers[self.turn % peers.len()];
        self.turn = self.turn.wrapping_add(1);
        self.call(to, out);
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
        for to in live_peers(ctx) {
            self.call(to, out);
        }
        Ok(self.table.rows())
    }

    /// A peer's table: merge it and answer with ours when it still differs. Says whether
    /// ours changed (and was saved; under `Durability::Sync` the answer waits for a sync).
    pub fn on_request(
        &mut self,
        store: &dyn Store,
        from: &str,
        theirs: &RangeTable,
    ) -> (PeerReply, bool) {
        match self.merge(store, from, theirs) {
            Ok(changed) => {
                let ours = (self.table != *theirs).then(|| self.table.clone());
                (PeerReply::Table(ours), changed)
            }
            Err(e) => (PeerReply::Failed(Refusal::RangeTable(e.to_string())), false),
        }
    }

    /// A peer's answer to an exchange: merge its table if it sent one. Says whether ours
    /// changed.
    pub fn on_reply(&mut self, store: &dyn Store, reply: Result<PeerReply, CallError>) -> bool {
        match reply {
            Ok(PeerReply::Table(Some(theirs))) => {
                self.merge(store, "a peer", &theirs).unwrap_or(false)
            }
            Ok(PeerReply::Table(None)) => false,
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

    fn call(&mut self, to: SocketAddr, out: &mut Vec<Effect>) {
        out.push(Effect::Call {
            call: self.calls.next_id(),
            to,
            req: PeerRequest::Table {
                table: self.table.clone(),
            },
        });
    }
}

/// Every other live member's address, in name order.
fn live_peers(ctx: &Ctx<'_>) -> Vec<SocketAddr> {
    ctx.addrs
        .keys()
        .filter_map(|name| ctx.peer_addr(name))
        .collect()
}

#[cfg(test)]
pub(super) mod tests;
