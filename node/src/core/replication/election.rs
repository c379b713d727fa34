//! Choosing a shard's primary: the first live replica stands first, the others later by rank,
//! and a voter whose log is ahead of a candidate stands at once. A majority of the shard's
//! replicas must vote for the new epoch, each promising it durably before answering.

use super::leader::Leader;
use super::msg::ReplRequest;
use super::{majority, CallKind, Ctx, Replication, Role};
use crate::core::Effect;
use std::collections::BTreeSet;

/// A candidacy in progress.
#[derive(Debug)]
pub(super) struct Candidacy {
    /// The epoch asked for.
    pub epoch: u64,
    /// Who granted it (this node too, once its own promise is durable).
    pub votes: BTreeSet<String>,
    /// When the candidacy is given up.
    pub deadline_ms: u64,
    /// Still asking whether a majority would vote (pre-vote): nothing promised yet.
    pub pre: bool,
}

impl Replication {
    /// Stand for election when the shard has no live primary and it is this node's turn.
    pub(super) fn maybe_run(&mut self, ctx: &Ctx<'_>, id: &[String], out: &mut Vec<Effect>) {
        let me = ctx.view.me;
        let now = ctx.now();
        let Some(st) = self.shards.get_mut(id) else {
            return;
        };
        // A voter ahead of a candidate stands at once, whatever its own last try.
        if !matches!(st.role, Role::Replica) || (now < st.retry_ms && !st.run_now) {
            return;
        }
        let alive = |n: &str| n == me || ctx.view.membership.is_alive(n);
        let silent = now.saturating_sub(st.heard_ms);
        let timeout = ms(self.config.failover_timeout);
        let primary_ok = st
            .primary
            .as_deref()
            .is_some_and(|p| p != me && alive(p) && silent < timeout);
        if primary_ok {
            st.run_now = false;
            return;
        }
        let rank = id
            .iter()
            .filter(|n| alive(n) && st.primary.as_deref() != Some(n.as_str()))
            .position(|n| n == me)
            .unwrap_or(id.len()) as u64;
        let turn = silent >= timeout + rank * ms(self.config.stagger);
        if st.run_now || turn {
            self.run(ctx, id, out);
        }
    }

    /// Stand now (the first live replica asked to serve a shard without a primary).
    pub(super) fn run(&mut self, ctx: &Ctx<'_>, id: &[String], out: &mut Vec<Effect>) {
        let Some(st) = self.shards.get_mut(id) else {
            return;
        };
        if !matches!(st.role, Role::Replica) {
            return;
        }
        st.run_now = false;
        let epoch = st.meta.promised.max(st.outbid) + 1;
        let (log_epoch, offset) = (st.meta.log_epoch, st.meta.offset);
        // First ask whether a majority would vote, promising nothing: a node that cannot win
        // must not raise the epoch, or it fences a primary that works.
        st.role = Role::Candidate(Candidacy {
            epoch,
            votes: BTreeSet::from([ctx.view.me.to_string()]),
            deadline_ms: ctx.now() + ms(self.config.failover_timeout),
            pre: true,
        });
        if majority(id.len()) <= 1 {
            return self.stand(ctx, id, out);
        }
        for peer in id.iter().filter(|p| *p != ctx.view.me) {
            let req = ReplRequest::PreVote {
                shard: id.to_vec(),
                epoch,
                log_epoch,
                offset,
            };
            self.send(ctx, id, peer, CallKind::PreVote { epoch }, req, out);
        }
    }

    /// A majority would vote: stand for the next epoch.
    fn stand(&mut self, ctx: &Ctx<'_>, id: &[String], out: &mut Vec<Effect>) {
        let Some(st) = self.shards.get_mut(id) else {
            return;
        };
        let epoch = st.meta.promised + 1;
        let (log_epoch, offset) = (st.meta.log_epoch, st.meta.offset);
        st.role = Role::Candidate(Candidacy {
            epoch,
            votes: BTreeSet::new(),
            deadline_ms: ctx.now() + ms(self.config.failover_timeout),
            pre: false,
        });
        tracing::debug!(shard = ?id, epoch, "standing for primary");
        // This node asks itself too: its vote counts once its promise is synced like anyone's.
        for peer in id {
            let req = ReplRequest::Vote {
                shard: id.to_vec(),
                epoch,
                log_epoch,
                offset,
            };
            let kind = CallKind::Vote { epoch };
            if peer == ctx.view.me {
                if let Some(to) = ctx.view.addrs.get(peer).copied() {
                    let call = self.call(id, peer, kind);
                    out.push(Effect::Call {
                        call,
                        to,
                        req: crate::proto::PeerRequest::Repl(req, ctx.ring_id),
                    });
                }
            } else {
                self.send(ctx, id, peer, kind, req, out);
            }
        }
    }

    /// A vote came back.
    pub(super) fn on_vote(
        &mut self,
        ctx: &Ctx<'_>,
        peer: &str,
        id: &[String],
        (epoch, pre): (u64, bool),
        reply: Result<super::msg::ReplReply, crate::core::CallError>,
        out: &mut Vec<Effect>,
    ) {
        let Some(st) = self.shards.get_mut(id) else {
            return;
        };
        let Role::Candidate(c) = &mut st.role else {
            return;
        };
        if c.epoch != epoch || c.pre != pre {
            return;
        }
        match reply {
            Ok(super::msg::ReplReply::Granted) => {
                c.votes.insert(peer.to_string());
                if c.votes.len() >= majority(id.len()) {
                    if pre {
                        self.stand(ctx, id, out);
                    } else {
                        self.become_primary(ctx, id, epoch, out);
                    }
                }
            }
            Ok(super::msg::ReplReply::Refused {
                promised, ahead, ..
            }) => {
                if promised > st.meta.promised {
                    st.meta.promised = promised;
                    if let Err(e) = st.meta.save(ctx.view.store, id) {
                        tracing::warn!("cannot record a promised epoch: {e}");
                    }
                }
                if ahead || promised >= epoch {
                    self.give_up(ctx, id);
                }
                if ahead {
                    // That voter stands now and needs this node's vote: stay out of its way
                    // for a failover period rather than compete for the next epoch.
                    let back_off = ctx.now() + ms(self.config.failover_timeout);
                    if let Some(st) = self.shards.get_mut(id) {
                        st.retry_ms = st.retry_ms.max(back_off);
                    }
                }
            }
            Ok(other) => tracing::debug!("unexpected vote answer {other:?}"),
            Err(e) => tracing::debug!("vote call to {peer} failed: {e}"),
        }
    }

    /// The candidacy failed: follow whoever wins, or try again after a pause.
    pub(super) fn give_up(&mut self, ctx: &Ctx<'_>, id: &[String]) {
        let Some(st) = self.shards.get_mut(id) else {
            return;
        };
        if matches!(st.role, Role::Candidate(_)) {
            st.role = Role::Replica;
            let rank = id.iter().position(|n| n == ctx.view.me).unwrap_or(0) as u64;
            st.retry_ms = ctx.now() + ms(self.config.stagger) * (rank + 1);
        }
    }

    /// Won `epoch`: start a new lineage that continues this node's log.
    fn become_primary(&mut self, ctx: &Ctx<'_>, id: &[String], epoch: u64, out: &mut Vec<Effect>) {
        let me = ctx.view.me.to_string();
        let Some(st) = self.shards.get_mut(id) else {
            return;
        };
        let keep = self.sabotage.keep_replid && !st.meta.replid.is_empty();
        if !keep {
            if !st.meta.replid.is_empty() {
                st.meta.prev_replid = std::mem::take(&mut st.meta.replid);
                st.meta.prev_end = st.meta.offset;
            }
            st.meta.replid = super::new_replid(id, epoch, &me);
        }
        self.audit.push(|| super::audit::LogEvent::Lineage {
            shard: id.to_vec(),
            replid: st.meta.replid.clone(),
            prev_replid: st.meta.prev_replid.clone(),
            prev_end: st.meta.prev_end,
        });
        let followers = id.iter().filter(|n| **n != me).cloned().collect();
        let mut leader = Leader::new(epoch, followers, ctx.now());
        leader.first = st.meta.offset == 0;
        if leader.first {
            leader.leavers = super::leaving::leaving_members(ctx, id);
        }
        st.role = Role::Primary(Box::new(leader));
        st.primary = Some(me);
        tracing::info!(shard = ?id, epoch, replid = %st.meta.replid, "became primary");
        // A first entry of this epoch: reads and commits count only once it is on a majority,
        // so nothing an older epoch left uncommitted is ever taken as committed by mistake.
        if let Err(e) = self.log_local(ctx, id, 0, Vec::new(), None, out) {
            tracing::warn!("cannot start the new epoch's log: {e}");
        }
        self.pump(ctx, id, out);
    }
}

/// Milliseconds of a duration, saturating.
pub fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
