//! Membership changes as the core sees them: gossip output, the ring rebuilt from members,
//! a joiner's way to `Up`, and keys dropped once other replicas hold them.

use std::collections::BTreeMap;
use std::time::Duration;

/// How often a node re-sends its status record.
pub(super) const STATUS_REFRESH: Duration = Duration::from_secs(5);

use ringkv_gossip::{GossipOutput, MemberEvent, MemberState, NodeStatus};
use ringkv_ring::{Ring, RingNode};

use super::peers::Peer;
use super::replica::Change;
use super::{Effect, NodeCore, Timer};
use crate::proto::PeerRequest;

impl NodeCore {
    /// Remove the tombstones the collector cleared, keeping the Merkle trees in step.
    pub(super) fn drop_reaped(&mut self) {
        let drops = self.gc.take_drops();
        let keys: Vec<(u64, Vec<u8>, Vec<u8>)> = drops
            .iter()
            .map(|(t, k, v, _)| (*t, k.clone(), v.clone()))
            .collect();
        let dropped = self.drop_keys(&keys);
        self.gc
            .count_reaped(dropped.iter().filter(|d| **d).count() as u64);
        for ((token, _, _, hash), gone) in drops.into_iter().zip(dropped) {
            if gone {
                let change = Change {
                    token,
                    old: Some(hash),
                    new: None,
                };
                self.ae.on_change(&self.shared.ring, &change);
            }
        }
    }

    /// Delete keys that still hold the given bytes, marking the actor first (a dropped key
    /// must not let a later dot be reused). Says which were deleted.
    pub(super) fn drop_keys(&mut self, keys: &[(u64, Vec<u8>, Vec<u8>)]) -> Vec<bool> {
        if keys.is_empty() {
            return Vec::new();
        }
        let store = self.shared.store.as_ref();
        if let Err(e) = self.actor.before_drop(store) {
            tracing::warn!("keeping keys: cannot mark the actor: {e}");
            return vec![false; keys.len()];
        }
        keys.iter()
            .map(|(token, key, expected)| {
                let unchanged = matches!(store.get(*token, key), Ok(Some(v)) if v == *expected);
                unchanged
                    && match store.delete(*token, key) {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!("cannot drop a key: {e}");
                            false
                        }
                    }
            })
            .collect()
    }

    /// A joining node pulls its ranges with one anti-entropy round once it has peers, then
    /// announces itself `Up`.
    pub(super) fn advance_joining(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        match self.joining {
            Joining::Done => {}
            Joining::WaitingForPeers => {
                let has_peers = self
                    .shared
                    .membership
                    .members()
                    .iter()
                    .any(|m| m.state != MemberState::Down);
                if has_peers {
                    let ctx = self.shared.view(now_ms);
                    self.ae.pull(&ctx);
                    // Learn the cluster's rules before serving a key (see `TableSync`).
                    self.table
                        .exchange_next(&ctx, super::table::UNSYNCED_FANOUT, out);
                    self.joining = Joining::Pulling { since_ms: now_ms };
                }
            }
            Joining::Pulling { since_ms } => {
                let ctx = self.shared.view(now_ms);
                // The sweep goes on finishing what a slow pull left; `Up` is not held hostage.
                let overdue = now_ms.saturating_sub(since_ms) > JOIN_PULL_LIMIT_MS;
                if !self.ae.status(&ctx).repair.running || overdue {
                    self.joining = Joining::Done;
                    if self.shared.membership.status() == NodeStatus::Joining {
                        let outputs = self.shared.membership.set_status(NodeStatus::Up);
                        self.gossip(outputs, out);
                    }
                }
            }
        }
    }

    pub(super) fn gossip(&mut self, outputs: Vec<GossipOutput>, out: &mut Vec<Effect>) {
        let mut changed = false;
        for output in outputs {
            out.push(match output {
                GossipOutput::Send { to, data } => Effect::Datagram { to, data },
                GossipOutput::Schedule { after, timer } => Effect::Schedule {
                    after,
                    timer: Timer::Gossip(timer),
                },
                GossipOutput::Event(event) => {
                    if let MemberEvent::Down(id) = &event {
                        self.forwards.peer_down(&id.name);
                    }
                    changed |= matches!(
                        event,
                        MemberEvent::Up(_)
                            | MemberEvent::Down(_)
                            | MemberEvent::Forgotten(_)
                            | MemberEvent::StatusChanged(..)
                            | MemberEvent::Rejoined(_)
                    );
                    Effect::Member(event)
                }
            });
        }
        if changed {
            self.rebuild_ring();
        }
    }

    /// The ring holds every known member that is not leaving: a node that crashed keeps its
    /// place (its replicas are expected back), one leaving or gone gracefully does not. A
    /// leaving node drops itself too, so its data flows to the remaining replicas.
    pub(super) fn rebuild_ring(&mut self) {
        let me = self.shared.membership.me().clone();
        let mut addrs = BTreeMap::from([(me.name.clone(), me.addr)]);
        let mut nodes = Vec::new();
        if self.shared.membership.status() != NodeStatus::Leaving {
            nodes.push(RingNode {
                name: me.name.clone(),
                zone: me.zone.clone(),
            });
        }
        for m in self.shared.membership.members() {
            if m.id.name == me.name {
                continue;
            }
            self.peers.confirm(&m.id.name);
            addrs.insert(m.id.name.clone(), m.id.addr);
            if m.status != NodeStatus::Leaving {
                nodes.push(RingNode {
                    name: m.id.name,
                    zone: m.id.zone,
                });
            }
        }
        // Members from before a restart keep their place until gossip speaks of them.
        for p in self.peers.remembered() {
            if p.name != me.name {
                addrs.insert(p.name.clone(), p.addr);
                nodes.push(RingNode {
                    name: p.name.clone(),
                    zone: p.zone.clone(),
                });
            }
        }
        nodes.sort();
        let saved = nodes
            .iter()
            .filter(|n| n.name != me.name)
            .filter_map(|n| {
                let addr = *addrs.get(&n.name)?;
                Some(Peer {
                    name: n.name.clone(),
                    addr,
                    zone: n.zone.clone(),
                })
            })
            .collect();
        self.peers.save(self.shared.store.as_ref(), saved);
        if nodes.as_slice() != self.shared.ring.nodes() {
            self.shared.ring = Ring::new(nodes, self.shared.ring.config());
            self.shared.ring_id = ring_id(&self.shared.ring);
            self.ae.reset();
            self.transfer.reset();
            self.gc.reset();
        }
        self.shared.addrs = addrs;
    }
}

impl NodeCore {
    /// While saved members gossip has not confirmed are in the ring, ask one live peer a
    /// second whether they still are in its ring.
    pub(super) fn ask_members(&mut self, out: &mut Vec<Effect>) {
        if !self.peers.unsettled() {
            return;
        }
        let me = self.shared.membership.me().name.clone();
        let live: Vec<_> = self
            .shared
            .membership
            .members()
            .into_iter()
            .filter(|m| m.id.name != me && self.shared.membership.is_alive(&m.id.name))
            .map(|m| m.id.addr)
            .collect();
        if live.is_empty() {
            return;
        }
        let (call, turn) = self.peers.next_call();
        let to = live[(turn as usize) % live.len()];
        out.push(Effect::Call {
            call,
            to,
            req: PeerRequest::Members,
        });
    }

    /// Whether the member `name` is live and not itself joining: its range table is the
    /// cluster's (see [`TableSync::synced`]).
    pub(super) fn settled_peer(&self, name: &str) -> bool {
        settled(&self.shared.membership.members(), name)
    }

    /// This node's ring members, if its view is settled enough to refute another's memory.
    pub(super) fn settled_ring(&self) -> Option<Vec<String>> {
        let settled = self.joining == Joining::Done
            && self.shared.membership.status() == NodeStatus::Up
            && !self.peers.unsettled();
        settled.then(|| {
            self.shared
                .ring
                .nodes()
                .iter()
                .map(|n| n.name.clone())
                .collect()
        })
    }
}

/// Where a starting node is on its way to `Up`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Joining {
    /// Announced `Joining`, no peer yet.
    WaitingForPeers,
    /// Pulling its ranges with an anti-entropy round, since this time.
    Pulling { since_ms: u64 },
    /// `Up` (or started alone, a new cluster).
    Done,
}

/// Longest a joiner stays `Joining` while it pulls its ranges.
pub(super) const JOIN_PULL_LIMIT_MS: u64 = 15_000;

/// A digest of a ring's members (names and zones), equal on nodes whose rings agree.
pub(super) fn ring_id(ring: &Ring) -> u64 {
    let mut h = blake3::Hasher::new();
    for n in ring.nodes() {
        h.update(&(n.name.len() as u64).to_be_bytes());
        h.update(n.name.as_bytes());
        h.update(n.zone.as_deref().unwrap_or("").as_bytes());
        h.update(&[0]);
    }
    let bytes = h.finalize();
    u64::from_be_bytes(bytes.as_bytes()[..8].try_into().unwrap_or([0; 8]))
}

/// Whether `name` is among `members` and not joining.
pub(super) fn settled(members: &[ringkv_gossip::MemberInfo], name: &str) -> bool {
    members
        .iter()
        .any(|m| m.id.name == name && m.status != NodeStatus::Joining)
}
