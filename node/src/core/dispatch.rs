//! Routing of inputs to the mechanism that owns them: one line per peer request kind, per
//! call owner and per timer.
//!
//! The cross-cutting guards live here, checked in this order before any handler runs:
//! 1. A leaving node takes no new data (anything but a read or a Merkle exchange is refused):
//!    what it accepted after its last handoff pass would leave with it.
//! 2. A quorum-path write (replica write or replicate) of a key under a primary prefix is
//!    refused: its writes go through the shard's primary. Hints are kept regardless (they were
//!    accepted as quorum writes before the prefix changed mode). A handoff page keeps only its
//!    keys outside primary prefixes (those move with their shard's log).

use super::calls::CallError;
use super::calls::{CallId, Owner};
use super::members::STATUS_REFRESH;
use super::replication::Replication;
use super::{arm, Effect, InboundId, NodeCore, Replica, Timer};
use super::{Gc, TableSync, Transfer};
use crate::proto::{PeerReply, PeerRequest, Refusal};
use crate::store::Durability;
use ringkv_gossip::NodeStatus;

impl NodeCore {
    /// A request from a peer: guards first (see the module's docs), then its handler.
    pub(super) fn peer_request(
        &mut self,
        now_ms: u64,
        (id, from): (InboundId, String),
        req: PeerRequest,
        out: &mut Vec<Effect>,
    ) {
        if self.shared.membership.status() == NodeStatus::Leaving
            && !matches!(
                req,
                PeerRequest::Read { .. }
                    | PeerRequest::Exchange { .. }
                    | PeerRequest::Repl(crate::proto::repl::ReplRequest::Gather { .. }, _)
            )
        {
            return refuse(id, Refusal::Leaving, out);
        }
        match req {
            PeerRequest::Exchange {
                session,
                start,
                end,
                msg,
            } => self.on_exchange(now_ms, (id, &from), session, (start, end), msg, out),
            PeerRequest::Hint {
                owner,
                token,
                key,
                record,
            } => self.on_hint(now_ms, id, &owner, (token, &key), &record, out),
            PeerRequest::Table { table } => self.on_table(now_ms, id, &from, &table, out),
            PeerRequest::Members => self.on_members(id, out),
            PeerRequest::Keys { from, upto, limit } => {
                self.on_keys_request(now_ms, id, (from, upto, limit), out)
            }
            PeerRequest::Forward(req) => self.on_forwarded(now_ms, id, req, out),
            PeerRequest::Repl(req, ring) => self.on_repl(now_ms, (id, &from), (req, ring), out),
            PeerRequest::Handoff { entries } => {
                // Keys under a primary prefix move with their shard (its next primary gathers
                // them from the replicas the old and new lists share), not by handoff: a
                // leaving node may hold a write its primary logged but never committed, which
                // merged here would stand beside the committed one as a sibling.
                let table = self.table.current();
                let entries = entries
                    .into_iter()
                    .filter(|(_, key, _)| table.lookup(key).is_none())
                    .collect();
                self.on_replica_request(now_ms, id, PeerRequest::Handoff { entries }, out);
            }
            req if self.quorum_write_refused(&req) => refuse(id, Refusal::PrimaryPrefix, out),
            req => self.on_replica_request(now_ms, id, req, out),
        }
    }

    /// A reply to a call, handed to the mechanism that made it.
    pub(super) fn peer_reply(
        &mut self,
        now_ms: u64,
        call: CallId,
        reply: Result<PeerReply, CallError>,
        out: &mut Vec<Effect>,
    ) {
        match call.owner {
            Owner::Coordinator => self.on_coordinator_reply(call, reply, out),
            Owner::AntiEntropy => self.on_ae_reply(now_ms, call, reply, out),
            Owner::Hints => self.hints.on_reply(self.shared.store.as_ref(), call, reply),
            Owner::Transfer => self.on_transfer_reply(now_ms, call, reply, out),
            Owner::Gc => self.on_gc_reply(call, reply),
            Owner::Table => self.on_table_reply(now_ms, call, reply, out),
            Owner::Replication => self.on_repl_reply(now_ms, call, reply, out),
            Owner::Forward => self.on_forward_reply(now_ms, call, reply, out),
            Owner::Members => self.on_members_reply(reply),
            Owner::Scan => self.on_keys_reply(call, reply, out),
        }
    }

    /// A gossip datagram.
    pub(super) fn datagram(&mut self, data: &[u8], out: &mut Vec<Effect>) {
        match self.shared.membership.handle_datagram(data) {
            Ok(outputs) => self.gossip(outputs, out),
            Err(e) => {
                // A datagram can be partly applied before it is rejected: keep its effects.
                tracing::debug!("refused gossip datagram: {e}");
                let outputs = self.shared.membership.take_pending_outputs();
                self.gossip(outputs, out);
            }
        }
    }

    /// A timer fired: its mechanism's step, and the periodic ones armed again.
    pub(super) fn timer(&mut self, now_ms: u64, timer: Timer, out: &mut Vec<Effect>) {
        match timer {
            Timer::Gossip(t) => {
                let outputs = self.shared.membership.handle_timer(t);
                self.gossip(outputs, out);
            }
            Timer::AntiEntropy => self.on_ae_tick(now_ms, out),
            Timer::AntiEntropyStep => self.on_ae_step(now_ms, out),
            Timer::StatusRefresh => self.on_status_refresh(out),
            Timer::Gc => self.on_gc_tick(now_ms, out),
            Timer::Transfer => self.on_transfer_tick(now_ms, out),
            Timer::Hints => self.on_hints_tick(now_ms, out),
            Timer::Table => self.on_table_tick(now_ms, out),
            Timer::Replication => self.on_repl_tick(now_ms, out),
            Timer::Forward(call) => self.on_forward_timer(now_ms, call, out),
            Timer::Deadline(op) => {
                let mut actions = Vec::new();
                self.coordinator.on_deadline(op, &mut actions);
                self.act(actions, out);
            }
        }
    }

    // Peer requests.

    fn on_exchange(
        &mut self,
        now_ms: u64,
        (id, from): (InboundId, &str),
        session: u64,
        range: (u64, u64),
        msg: crate::merkle::ExchangeMsg,
        out: &mut Vec<Effect>,
    ) {
        let mut effects = Vec::new();
        let reply = self.ae.on_request(
            &self.shared.view(now_ms),
            from,
            session,
            range,
            msg,
            &mut effects,
        );
        self.pushes(effects, out);
        out.push(Effect::Respond {
            id,
            reply,
            sync: false,
        });
    }

    fn on_hint(
        &mut self,
        now_ms: u64,
        id: InboundId,
        owner: &str,
        (token, key): (u64, &[u8]),
        record: &crate::version::Record,
        out: &mut Vec<Effect>,
    ) {
        let store = self.shared.store.as_ref();
        let reply = self.hints.keep(store, owner, token, key, record, now_ms);
        let sync = self.shared.config.durability == Durability::Sync
            && matches!(reply, PeerReply::Replicated);
        out.push(Effect::Respond { id, reply, sync });
    }

    fn on_table(
        &mut self,
        now_ms: u64,
        id: InboundId,
        from: &str,
        table: &crate::table::RangeTable,
        out: &mut Vec<Effect>,
    ) {
        let settled = self.settled_peer(from);
        let (reply, changed) =
            self.table
                .on_request(self.shared.store.as_ref(), (from, settled), table);
        let sync = changed && self.shared.config.durability == Durability::Sync;
        out.push(Effect::Respond { id, reply, sync });
        if changed {
            self.table_changed();
        }
        self.release_waiting(now_ms, out);
    }

    fn on_members(&mut self, id: InboundId, out: &mut Vec<Effect>) {
        let reply = PeerReply::Members(self.settled_ring());
        out.push(Effect::Respond {
            id,
            reply,
            sync: false,
        });
    }

    fn on_forwarded(
        &mut self,
        now_ms: u64,
        id: InboundId,
        req: crate::proto::ClientRequest,
        out: &mut Vec<Effect>,
    ) {
        let client = self.forwards.accept(id);
        self.client_from(now_ms, client, req, true, out);
    }

    fn on_repl(
        &mut self,
        now_ms: u64,
        (id, from): (InboundId, &str),
        msg: (super::replication::msg::ReplRequest, u64),
        out: &mut Vec<Effect>,
    ) {
        let ctx = self.shared.repl_ctx(self.table.current(), now_ms);
        let answer = self.repl.on_request(&ctx, (from, id), msg, out);
        if let Some((reply, sync)) = answer {
            out.push(Effect::Respond { id, reply, sync });
        }
    }

    /// A replica's read or write on the quorum path.
    fn on_replica_request(
        &mut self,
        now_ms: u64,
        id: InboundId,
        req: PeerRequest,
        out: &mut Vec<Effect>,
    ) {
        // Under `Sync` nothing unsynced may leave a replica, reads included: a dot a client
        // saw and a crash then erased could be issued again to another write.
        let must_sync = self.shared.config.durability == Durability::Sync;
        let is_read = matches!(req, PeerRequest::Read { .. });
        if matches!(req, PeerRequest::Write { .. }) {
            if let Err(e) = self.actor.before_dot(self.shared.store.as_ref()) {
                let reply =
                    PeerReply::Failed(Refusal::Storage(format!("cannot record the actor: {e}")));
                return out.push(Effect::Respond {
                    id,
                    reply,
                    sync: false,
                });
            }
        }
        let mut replica = Replica {
            me: self.actor.name(),
            store: self.shared.store.as_ref(),
            hlc: &mut self.shared.hlc,
            policy: self.shared.config.conflict_policy,
            max_siblings: self.shared.config.limits.max_siblings,
            changes: Vec::new(),
        };
        let (reply, wrote) = replica.handle(now_ms, req);
        for change in &replica.changes {
            self.ae.on_change(&self.shared.ring, change);
        }
        let sync = must_sync && (wrote || is_read);
        out.push(Effect::Respond { id, reply, sync });
    }

    // Replies.

    fn on_coordinator_reply(
        &mut self,
        call: CallId,
        reply: Result<PeerReply, CallError>,
        out: &mut Vec<Effect>,
    ) {
        let mut actions = Vec::new();
        self.coordinator.on_reply(call, reply, &mut actions);
        self.act(actions, out);
    }

    fn on_ae_reply(
        &mut self,
        now_ms: u64,
        call: CallId,
        reply: Result<PeerReply, CallError>,
        out: &mut Vec<Effect>,
    ) {
        let mut effects = Vec::new();
        let ctx = self.shared.view(now_ms);
        self.ae.on_reply(&ctx, call, reply, &mut effects);
        self.pushes(effects, out);
    }

    fn on_transfer_reply(
        &mut self,
        now_ms: u64,
        call: CallId,
        reply: Result<PeerReply, CallError>,
        out: &mut Vec<Effect>,
    ) {
        self.transfer.on_reply(call, reply);
        let drops = self.transfer.take_drops();
        if !drops.is_empty() {
            let moved = self.drop_keys(&drops).into_iter().filter(|d| *d).count();
            self.transfer.count_moved(moved as u64);
            let ctx = self.shared.view(now_ms);
            self.transfer.on_tick(&ctx, out);
        }
    }

    fn on_gc_reply(&mut self, call: CallId, reply: Result<PeerReply, CallError>) {
        self.gc.on_reply(call, reply);
        self.drop_reaped();
    }

    fn on_table_reply(
        &mut self,
        now_ms: u64,
        call: CallId,
        reply: Result<PeerReply, CallError>,
        out: &mut Vec<Effect>,
    ) {
        let members = self.shared.membership.members();
        let settled = |name: &str| super::members::settled(&members, name);
        if self
            .table
            .on_reply(self.shared.store.as_ref(), call, reply, settled)
        {
            self.table_changed();
        }
        self.release_waiting(now_ms, out);
    }

    fn on_repl_reply(
        &mut self,
        now_ms: u64,
        call: CallId,
        reply: Result<PeerReply, CallError>,
        out: &mut Vec<Effect>,
    ) {
        let ctx = self.shared.repl_ctx(self.table.current(), now_ms);
        self.repl.on_reply(&ctx, call, reply, out);
    }

    fn on_members_reply(&mut self, reply: Result<PeerReply, CallError>) {
        if let Ok(PeerReply::Members(Some(ring))) = reply {
            if self.peers.refute(&ring) {
                self.rebuild_ring();
            }
        }
    }

    // Timers.

    fn on_ae_tick(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        let mut effects = Vec::new();
        let ctx = self.shared.view(now_ms);
        self.ae.on_tick(&ctx, &mut effects);
        self.pushes(effects, out);
        arm(out, self.ae.interval(), Timer::AntiEntropy);
    }

    fn on_ae_step(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        let mut effects = Vec::new();
        let ctx = self.shared.view(now_ms);
        self.ae.on_step(&ctx, &mut effects);
        self.pushes(effects, out);
    }

    fn on_status_refresh(&mut self, out: &mut Vec<Effect>) {
        let outputs = self.shared.membership.refresh_status();
        self.gossip(outputs, out);
        arm(out, STATUS_REFRESH, Timer::StatusRefresh);
    }

    fn on_gc_tick(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        let ctx = self.shared.view(now_ms);
        self.gc.on_tick(&ctx, out);
        self.drop_reaped();
        arm(out, Gc::INTERVAL, Timer::Gc);
    }

    fn on_transfer_tick(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        let ctx = self.shared.view(now_ms);
        let mut effects = Vec::new();
        self.transfer.on_tick(&ctx, &mut effects);
        out.extend(effects);
        self.advance_joining(now_ms, out);
        arm(out, Transfer::INTERVAL, Timer::Transfer);
    }

    fn on_hints_tick(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        let ctx = self.shared.view(now_ms);
        self.hints.on_tick(&ctx, out);
        arm(out, self.hints.interval(), Timer::Hints);
    }

    fn on_table_tick(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        let ctx = self.shared.view(now_ms);
        self.table.on_tick(&ctx, out);
        self.expire_waiting(now_ms, out);
        self.ask_members(out);
        arm(out, TableSync::INTERVAL, Timer::Table);
    }

    fn on_repl_tick(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        let ctx = self.shared.repl_ctx(self.table.current(), now_ms);
        self.repl.on_tick(&ctx, out);
        arm(out, Replication::TICK, Timer::Replication);
    }
}

/// Answer `id` with a refusal.
fn refuse(id: InboundId, why: Refusal, out: &mut Vec<Effect>) {
    out.push(Effect::Respond {
        id,
        reply: PeerReply::Failed(why),
        sync: false,
    });
}
