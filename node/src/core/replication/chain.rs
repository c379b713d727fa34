//! Chain topology: the primary sends each append to the first replica of the chain only; every
//! replica applies it, passes it on to the next replica it can reach and answers upstream with
//! its own offset and those it learned downstream (Redis's sub-replicas, with acknowledgements
//! flowing back so `sync-replicas`, majority commit and `info replication` keep working).
//!
//! Only appends (entries and heartbeats) travel the chain. Probes, resyncs, votes and collect
//! stay direct: a replica the chain did not report back goes back to a direct probe at the
//! primary, and rejoins the chain once it follows the log again.

use super::election::ms;
use super::leader::SyncState;
use super::msg::{Relay, ReplReply, ReplRequest};
use super::{CallKind, Ctx, Replication, Role, Shard};
use crate::core::coordinator::CallId;
use crate::core::CallError;
use crate::core::{Effect, InboundId};
use crate::proto::PeerReply;

/// Relayed appends a node waits on at once; past this it answers without relaying (the
/// primary then reaches the rest directly).
const MAX_RELAYS: usize = 1024;

/// The chain append a primary has in flight for one shard.
#[derive(Debug)]
pub(super) struct ChainCall {
    /// The call to the chain's head.
    pub call: CallId,
    /// The replicas it went to, head first.
    pub members: Vec<String>,
    /// When it was sent (the lease of every replica that answers counts from there).
    pub sent_ms: u64,
    /// When the primary stops waiting for it.
    pub deadline_ms: u64,
}

/// An append this replica applied and passed on, its answer upstream held back.
#[derive(Debug)]
pub(super) struct PendingRelay {
    shard: Vec<String>,
    /// The request to answer.
    inbound: InboundId,
    /// This node's offset after applying it, and whether the answer waits for a sync.
    offset: u64,
    sync: bool,
    /// The replica asked now, and the append as sent to it.
    target: String,
    req: ReplRequest,
    /// When to answer with what is known.
    deadline_ms: u64,
}

/// The shard's replicas in chain order: the list order, starting after `me` and wrapping.
pub(super) fn chain_order(id: &[String], me: &str) -> Vec<String> {
    let at = id.iter().position(|n| n == me).map_or(0, |p| p + 1);
    id[at..]
        .iter()
        .chain(&id[..at])
        .filter(|n| *n != me)
        .cloned()
        .collect()
}

/// Whether a relayed append's route is one this shard allows: a primary of the shard other
/// than this node, and a list of distinct other replicas, shorter than the shard.
pub(super) fn valid_route(relay: &Relay, id: &[String], me: &str) -> bool {
    let member = |n: &String| id.contains(n);
    let mut seen = std::collections::BTreeSet::new();
    member(&relay.primary)
        && relay.primary != me
        && relay.next.len() < id.len()
        && relay
            .next
            .iter()
            .all(|n| member(n) && n != me && *n != relay.primary && seen.insert(n.as_str()))
}

/// Counts an append batch cut short by `ReplConfig::max_batch_bytes`.
pub(super) fn count_batch_cut(
    counts: &mut crate::limits::LimitCounts,
    now_ms: u64,
    entries: usize,
    max_bytes: usize,
) {
    counts.hit(
        crate::limits::Limit::ReplBatchBytes,
        now_ms,
        format_args!("an append batch cut at {entries} entries by max_batch_bytes ({max_bytes})"),
    );
}

impl Replication {
    /// Primary side: send the next append down the chain of replicas that follow the log,
    /// unless one is in flight or none is due.
    pub(super) fn pump_chain(&mut self, ctx: &Ctx<'_>, id: &[String], out: &mut Vec<Effect>) {
        let now = ctx.now();
        let beat = ms(self.config.beat_interval);
        let wait = ms(self.config.relay_timeout);
        let (max_entries, max_bytes) = (self.config.max_batch_entries, self.config.max_batch_bytes);
        let me = ctx.view.me;
        let Some(Shard {
            meta,
            backlog,
            role: Role::Primary(leader),
            ..
        }) = self.shards.get_mut(id)
        else {
            return;
        };
        if leader.chain.is_some() {
            return;
        }
        let members: Vec<String> =
            chain_order(id, me)
                .into_iter()
                .filter(|n| {
                    leader.followers.get(n).is_some_and(|f| {
                        matches!(f.state, SyncState::Stream) && f.in_flight.is_none()
                    }) && ctx.view.peer_addr(n).is_some()
                })
                .collect();
        let in_chain = || members.iter().filter_map(|n| leader.followers.get(n));
        let due = in_chain().any(|f| {
            f.acked < meta.offset
                || f.round < leader.round
                || now.saturating_sub(f.lease_ms) >= beat
        });
        let Some(from) = in_chain().map(|f| f.acked).min().filter(|_| due) else {
            return;
        };
        let Some(head) = members.first().cloned() else {
            return;
        };
        // Replicas ahead of the slowest one skip the entries they hold.
        let (entries, cut) = backlog.since_bounded(from, max_entries, max_bytes);
        if cut {
            count_batch_cut(&mut self.limit_counts, now, entries.len(), max_bytes);
        }
        let relay = Relay {
            primary: me.to_string(),
            next: members[1..].to_vec(),
        };
        let req = super::leader::append(
            meta,
            leader.epoch,
            from,
            entries,
            leader.commit(id.len()),
            id,
            Some(relay),
        );
        let kind = CallKind::Chain {
            epoch: leader.epoch,
            round: leader.round,
        };
        for n in &members {
            if let Some(f) = leader.followers.get_mut(n) {
                f.in_flight = Some(now);
                f.sent_round = leader.round;
            }
        }
        let hops = u64::try_from(members.len()).unwrap_or(u64::MAX);
        let deadline_ms = now.saturating_add(wait.saturating_mul(hops));
        match self.send(ctx, id, &head, kind, req, out) {
            Some(call) => {
                if let Some(Role::Primary(leader)) = self.shards.get_mut(id).map(|s| &mut s.role) {
                    leader.chain = Some(ChainCall {
                        call,
                        members,
                        sent_ms: now,
                        deadline_ms,
                    });
                }
                if let Some(st) = self.shards.get_mut(id) {
                    st.relays_to = Some((head, now));
                }
            }
            None => self.end_chain(id, &members),
        }
    }

    /// Primary side: forget a chain append nobody answered in time. Its head goes back to a
    /// direct probe, so the next chain starts past it.
    pub(super) fn expire_chain(&mut self, ctx: &Ctx<'_>, id: &[String]) {
        let Some(Role::Primary(leader)) = self.shards.get_mut(id).map(|s| &mut s.role) else {
            return;
        };
        let Some(chain) = leader.chain.take_if(|c| ctx.now() >= c.deadline_ms) else {
            return;
        };
        self.calls.remove(&chain.call);
        if let Some(f) = chain
            .members
            .first()
            .and_then(|h| leader.followers.get_mut(h))
        {
            f.state = SyncState::Probe;
        }
        self.end_chain(id, &chain.members);
    }

    fn end_chain(&mut self, id: &[String], members: &[String]) {
        if let Some(Role::Primary(leader)) = self.shards.get_mut(id).map(|s| &mut s.role) {
            for n in members {
                if let Some(f) = leader.followers.get_mut(n) {
                    f.in_flight = None;
                }
            }
        }
    }

    /// Primary side: the chain's head answered for itself and for the replicas after it. Each
    /// replica it reports counts as if it had acknowledged directly; one it does not report
    /// goes back to a direct probe.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_chain_reply(
        &mut self,
        ctx: &Ctx<'_>,
        id: &[String],
        call: CallId,
        (epoch, round): (u64, u64),
        reply: Result<ReplReply, CallError>,
        out: &mut Vec<Effect>,
    ) {
        let now = ctx.now();
        let Some(Role::Primary(leader)) = self.shards.get_mut(id).map(|s| &mut s.role) else {
            return;
        };
        let Some(chain) = leader
            .chain
            .take_if(|c| c.call == call && leader.epoch == epoch)
        else {
            return;
        };
        let Some((head, rest)) = chain.members.split_first() else {
            return;
        };
        let reply = match reply {
            Ok(ReplReply::Acked { downstream, .. }) if downstream.len() > id.len() => {
                Err(CallError::BadAnswer(format!(
                    "{} downstream offsets for a shard of {}",
                    downstream.len(),
                    id.len()
                )))
            }
            other => other,
        };
        let reported: &[(String, u64)] = match &reply {
            Ok(ReplReply::Acked { downstream, .. }) => downstream,
            _ => &[],
        };
        for name in rest {
            let Some(f) = leader.followers.get_mut(name) else {
                continue;
            };
            f.in_flight = None;
            match reported.iter().find(|(n, _)| n == name) {
                Some(&(_, offset)) => {
                    // Its keys are in as surely as a direct acknowledgement's: a gathering
                    // primary must not wait on it for ever.
                    leader.ready.insert(name.clone());
                    f.acked = offset;
                    f.via = Some(head.clone());
                    f.heard_ms = now;
                    f.lease_ms = chain.sent_ms;
                    f.round = f.round.max(round);
                }
                None => f.state = SyncState::Probe,
            }
        }
        self.on_append_reply(ctx, id, head, epoch, round, reply, out);
    }

    /// Replica side: after applying a relayed append (answered `Acked` at `offset`), pass it to
    /// the first replica of its route this node can reach. `None` when the answer upstream now
    /// waits for that replica (or the deadline); otherwise the answer to send at once.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn relay(
        &mut self,
        ctx: &Ctx<'_>,
        id: &[String],
        inbound: InboundId,
        req: ReplRequest,
        (offset, sync): (u64, bool),
        out: &mut Vec<Effect>,
    ) -> Option<(PeerReply, bool)> {
        let hops = match &req {
            ReplRequest::Append { relay: Some(r), .. } => r.next.len(),
            _ => 0,
        };
        let wait = ms(self.config.relay_timeout);
        let deadline_ms = ctx
            .now()
            .saturating_add(wait.saturating_mul(u64::try_from(hops).unwrap_or(u64::MAX)));
        let pending = PendingRelay {
            shard: id.to_vec(),
            inbound,
            offset,
            sync,
            target: String::new(),
            req,
            deadline_ms,
        };
        if self.relays.len() >= MAX_RELAYS {
            return Some((PeerReply::Repl(ReplReply::acked(offset)), sync));
        }
        self.relay_next(ctx, pending, out)
            .map(|p| (PeerReply::Repl(ReplReply::acked(p.offset)), p.sync))
    }

    /// Send `p`'s append to the first reachable replica of its route, with the route past
    /// it; gives `p` back when none is left (to answer upstream at once).
    fn relay_next(
        &mut self,
        ctx: &Ctx<'_>,
        mut p: PendingRelay,
        out: &mut Vec<Effect>,
    ) -> Option<PendingRelay> {
        let ReplRequest::Append {
            relay: Some(route), ..
        } = &mut p.req
        else {
            return Some(p);
        };
        let Some(at) = route
            .next
            .iter()
            .position(|n| ctx.view.peer_addr(n).is_some())
        else {
            return Some(p);
        };
        let target = route.next[at].clone();
        route.next.drain(..=at);
        let shard = p.shard.clone();
        let Some(call) = self.send(ctx, &shard, &target, CallKind::Relay, p.req.clone(), out)
        else {
            return Some(p);
        };
        if let Some(st) = self.shards.get_mut(&shard) {
            st.relays_to = Some((target.clone(), ctx.now()));
        }
        p.target = target;
        self.relays.insert(call, p);
        None
    }

    /// Replica side: the next replica answered a relayed append (or the call failed).
    pub(super) fn on_relay_reply(
        &mut self,
        ctx: &Ctx<'_>,
        call: CallId,
        reply: Result<ReplReply, CallError>,
        out: &mut Vec<Effect>,
    ) {
        let Some(mut p) = self.relays.remove(&call) else {
            return;
        };
        let n = p.shard.len();
        let reply = match reply {
            Ok(ReplReply::Acked { offset, downstream }) if downstream.len() < n => {
                let mut learned = vec![(p.target.clone(), offset)];
                for (name, offset) in downstream {
                    if p.shard.contains(&name) && !learned.iter().any(|(l, _)| *l == name) {
                        learned.push((name, offset));
                    }
                }
                ReplReply::Acked {
                    offset: p.offset,
                    downstream: learned,
                }
            }
            // A newer epoch downstream: the primary must learn it, as if it had asked there.
            Ok(fenced @ ReplReply::Fenced { .. }) => fenced,
            Err(e) if ctx.now() < p.deadline_ms => {
                tracing::debug!("relay to {} failed: {e}", p.target);
                p = match self.relay_next(ctx, p, out) {
                    None => return,
                    Some(p) => p,
                };
                ReplReply::acked(p.offset)
            }
            // Behind (the primary resyncs it directly), a bad answer, or too late.
            _ => ReplReply::acked(p.offset),
        };
        out.push(Effect::Respond {
            id: p.inbound,
            reply: PeerReply::Repl(reply),
            sync: p.sync,
        });
    }

    /// Replica side: answer upstream for relays whose next replica is overdue.
    pub(super) fn expire_relays(&mut self, ctx: &Ctx<'_>, out: &mut Vec<Effect>) {
        let now = ctx.now();
        let late: Vec<CallId> = self
            .relays
            .iter()
            .filter(|(_, p)| now >= p.deadline_ms)
            .map(|(c, _)| *c)
            .collect();
        for call in late {
            self.calls.remove(&call);
            if let Some(p) = self.relays.remove(&call) {
                out.push(Effect::Respond {
                    id: p.inbound,
                    reply: PeerReply::Repl(ReplReply::acked(p.offset)),
                    sync: p.sync,
                });
            }
        }
    }
}
