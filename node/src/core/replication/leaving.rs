//! Handover from leaving nodes: a node that leaves may hold the only copies, among the nodes
//! still reachable, of writes its old preference lists committed (the other node of a
//! committing majority left before it, or is cut off). A first primary therefore gathers from
//! every live leaving member too, as it does from its own replicas, and a leaving node does not
//! finish leaving (bounded by the shell's hand-off limit) until every list now holding the
//! ranges it logged for has gathered from it. See ARCHITECTURE.md, "Handover between
//! preference lists".

use std::collections::{BTreeMap, BTreeSet};

use ringkv_gossip::{MemberState, NodeStatus};
use ringkv_ring::Ring;

use super::election::ms;
use super::follower::{collect, shard_ranges};
use super::handover::{closed_logs, closed_within, overlap};
use super::msg::{Cursor, ReplReply};
use super::{CallKind, Ctx, Replication, Role};
use crate::core::calls::CallError;
use crate::core::Effect;
use crate::proto::{PeerReply, Refusal};

/// A gather from one leaving member, as its first primary sees it.
#[derive(Debug, Default)]
pub(super) struct LeaverGather {
    /// Where the next page starts.
    pub cursor: Cursor,
    /// A page is asked for.
    pub in_flight: bool,
    /// Not asked again before this time: the last ask failed.
    pub retry_ms: u64,
}

/// What a leaving node still owes: the token ranges of the logs it closed when it left the
/// ring, and of those the last ring change before closed (a list whose other nodes left just
/// before this one may have committed a write only these two held), until a first primary of
/// each list now holding them has gathered from it.
#[derive(Debug, Default)]
pub(super) struct Owed {
    ranges: Vec<(u64, u64)>,
    /// Lists whose gather read every page from this node.
    gathered: BTreeSet<Vec<String>>,
    /// Not leaving yet: the ranges of the logs the last ring change that closed any closed.
    latest: Vec<(u64, u64)>,
    /// This node is leaving: `ranges` counts.
    leaving: bool,
}

/// Most ranges a leaving node keeps owing (a ring change closes at most the shards this node
/// is in, each with at most its vnodes' ranges).
const MAX_OWED: usize = 65_536;

impl Owed {
    /// A ring change closed the logs kept for `closed`: owed if this node is `leaving` (with
    /// the latest closed before it began to), else remembered as the latest.
    pub(super) fn ring_changed(&mut self, closed: &[(u64, u64)], leaving: bool) {
        if leaving {
            if !self.leaving {
                self.leaving = true;
                let latest = std::mem::take(&mut self.latest);
                self.add(&latest);
            }
            self.add(closed);
        } else if !closed.is_empty() {
            self.latest = closed.iter().take(MAX_OWED).copied().collect();
        }
    }

    fn add(&mut self, ranges: &[(u64, u64)]) {
        let room = MAX_OWED.saturating_sub(self.ranges.len());
        self.ranges.extend(ranges.iter().take(room));
    }

    /// Whether some list of `ring` holding an owed range has not gathered from this node.
    pub(super) fn pending(&self, ring: &Ring) -> bool {
        if self.ranges.is_empty() {
            return false;
        }
        let n = ring.config().replicas;
        (0..ring.vnode_count()).any(|i| {
            let list = ring.preference_list_at(i);
            list.len() == n
                && !self.gathered.contains(list)
                && ring
                    .range_bounds(i)
                    .is_some_and(|r| self.ranges.iter().any(|o| overlap(r, *o)))
        })
    }
}

/// Live members that announced they are leaving, other than this node and `shard`'s nodes.
pub(super) fn leaving_members(ctx: &Ctx<'_>, shard: &[String]) -> BTreeMap<String, LeaverGather> {
    ctx.view
        .membership
        .members()
        .into_iter()
        .filter(|m| m.status == NodeStatus::Leaving && m.state != MemberState::Down)
        .filter(|m| m.id.name != ctx.view.me && !shard.contains(&m.id.name))
        .map(|m| (m.id.name, LeaverGather::default()))
        .collect()
}

impl Replication {
    /// Whether this leaving node still owes a gather to a list of its ring.
    pub fn owes_gather(&self, ring: &Ring) -> bool {
        self.owed.pending(ring)
    }

    /// A first primary asks this leaving node for its keys of `shard`'s ranges: one page, the
    /// first with the logs it closed over them. Nothing is promised: a leaving node takes part
    /// in no list.
    pub(super) fn answer_leaving_gather(
        &mut self,
        ctx: &Ctx<'_>,
        shard: &[String],
        cursor: Cursor,
    ) -> (PeerReply, bool) {
        let failed = |e: String| {
            let reason = format!("replication: {e}");
            (PeerReply::Failed(Refusal::Replication(reason)), false)
        };
        let ring = ctx.view.ring;
        let closed = if cursor == Cursor::default() {
            match closed_logs(ctx.view.store, &mut self.closed) {
                Ok(logs) => closed_within(logs, &shard_ranges(ring, shard)),
                Err(e) => return failed(e.to_string()),
            }
        } else {
            Vec::new()
        };
        let max = self.config.max_batch_bytes;
        match collect(ring, ctx.view.store, shard, cursor, max) {
            Ok((items, next)) => {
                if next.is_none() {
                    self.owed.gathered.insert(shard.to_vec());
                }
                let reply = ReplReply::Gathered {
                    items,
                    closed,
                    next,
                };
                (PeerReply::Repl(reply), false)
            }
            Err(e) => failed(e.to_string()),
        }
    }

    /// Ask each leaving member a first primary still gathers from for its next page; forget
    /// one that is gone (it left, or is down: what it held is lost to this gather).
    pub(super) fn pump_leavers(&mut self, ctx: &Ctx<'_>, id: &[String], out: &mut Vec<Effect>) {
        let Some(Role::Primary(leader)) = self.shards.get_mut(id).map(|st| &mut st.role) else {
            return;
        };
        if !leader.first {
            return;
        }
        let epoch = leader.epoch;
        let live = |name: &str| {
            ctx.view.peer_addr(name).is_some()
                && ctx.view.membership.members().iter().any(|m| {
                    m.id.name == name
                        && m.status == NodeStatus::Leaving
                        && m.state != MemberState::Down
                })
        };
        leader.leavers.retain(|name, _| live(name));
        let mut sends = Vec::new();
        let now = ctx.now();
        for (name, g) in &mut leader.leavers {
            if !g.in_flight && g.retry_ms <= now {
                g.in_flight = true;
                let req = super::msg::ReplRequest::Gather {
                    shard: id.to_vec(),
                    epoch,
                    cursor: g.cursor.clone(),
                };
                sends.push((name.clone(), req));
            }
        }
        for (peer, req) in sends {
            let kind = CallKind::Collect { epoch };
            if self.send(ctx, id, &peer, kind, req, out).is_none() {
                if let Some(Role::Primary(leader)) = self.shards.get_mut(id).map(|s| &mut s.role) {
                    leader.leavers.remove(&peer);
                }
            }
        }
    }

    /// A leaving member answered a gather page: merge its primary-mode keys as a replica's,
    /// ranked by the logs it closed. Says whether `peer` was a leaving member gathered from.
    pub(super) fn on_leaver_reply(
        &mut self,
        ctx: &Ctx<'_>,
        id: &[String],
        peer: &str,
        epoch: u64,
        reply: &Result<ReplReply, CallError>,
        out: &mut Vec<Effect>,
    ) -> bool {
        let Some(Role::Primary(leader)) = self.shards.get_mut(id).map(|st| &mut st.role) else {
            return false;
        };
        if leader.epoch != epoch {
            return false;
        }
        let Some(g) = leader.leavers.get_mut(peer) else {
            return false;
        };
        g.in_flight = false;
        let items = match reply {
            Ok(ReplReply::Gathered {
                items,
                closed,
                next,
            }) => {
                if g.cursor == Cursor::default() {
                    leader.ranks.insert(peer.to_string(), closed.clone());
                }
                match next {
                    Some(cursor) => g.cursor = cursor.clone(),
                    None => {
                        leader.leavers.remove(peer);
                    }
                }
                items.clone()
            }
            other => {
                // Refused (its ring differs for now, or it does not know this request) or
                // lost: asked again a beat later while it is a live leaving member.
                tracing::debug!("gather from leaving {peer}: {other:?}");
                g.retry_ms = ctx.now() + ms(self.config.beat_interval);
                return true;
            }
        };
        self.merge_gathered(ctx, id, peer, items, out);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::msg::{Cursor, ReplReply, ReplRequest};
    use super::super::tests::{ctx, node, record, RING_ID};
    use super::super::{ReplConfig, Replication};
    use crate::core::InboundId;
    use crate::proto::PeerReply;
    use crate::store::Store;
    use ringkv_gossip::NodeStatus;
    use ringkv_ring::{Ring, RingConfig, RingNode};

    /// A gather page from node `b` for `list`: the keys it sent and whether it was the last.
    fn gather(
        repl: &mut Replication,
        n: &super::super::tests::Node,
        list: &[String],
    ) -> Option<(Vec<Vec<u8>>, bool)> {
        let req = ReplRequest::Gather {
            shard: list.to_vec(),
            epoch: 3,
            cursor: Cursor::default(),
        };
        let mut out = Vec::new();
        let answer = repl.on_request(&ctx(n, 1), ("a", InboundId(1)), (req, RING_ID), &mut out);
        match answer {
            Some((PeerReply::Repl(ReplReply::Gathered { items, next, .. }), _)) => Some((
                items.into_iter().map(|(_, k, _)| k).collect(),
                next.is_none(),
            )),
            _ => None,
        }
    }

    /// A node that left the ring (its ring holds a, c and d) answers a first primary's gather
    /// with the keys it still holds of the list's ranges, and owes nothing once every list
    /// holding the ranges it logged for has read its last page; a node that is not leaving
    /// refuses a gather for a list it is not in.
    #[test]
    fn a_leaving_node_hands_its_keys_to_each_next_lists_gather_then_owes_nothing() {
        let mut n = node();
        n.ring = Ring::new(
            ["a", "c", "d"].map(RingNode::new),
            RingConfig::new(4, 3).unwrap(),
        );
        let key = b"p/x".to_vec();
        let bytes = crate::version::encode_record(&record("v")).unwrap();
        n.store.put(ringkv_ring::token(&key), &key, &bytes).unwrap();
        let list = n.ring.preference_list(&key).to_vec();
        let mut repl = Replication::new(ReplConfig::default());
        assert_eq!(gather(&mut repl, &n, &list), None, "b is not leaving yet");

        let _ = n.membership.set_status(NodeStatus::Leaving);
        let logged: Vec<(u64, u64)> = (0..n.ring.vnode_count())
            .filter_map(|i| n.ring.range_bounds(i))
            .collect();
        repl.owed.ring_changed(&logged, true);
        assert!(repl.owes_gather(&n.ring));
        assert_eq!(gather(&mut repl, &n, &list), Some((vec![key], true)));

        let lists: std::collections::BTreeSet<Vec<String>> = (0..n.ring.vnode_count())
            .map(|i| n.ring.preference_list_at(i).to_vec())
            .collect();
        for other in lists.iter().filter(|l| **l != list) {
            assert!(repl.owes_gather(&n.ring), "{other:?} has not gathered yet");
            assert!(gather(&mut repl, &n, other).is_some_and(|(_, last)| last));
        }
        assert!(!repl.owes_gather(&n.ring));
    }
}
