//! Placement: vnode tokens from `hashring`, and the clockwise walk that turns them into
//! preference lists.

use crate::node::RingNode;
use crate::token::Token;
use hashring::{DefaultHashBuilder, HashRing};
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hash, Hasher};

/// Steps the zone pass walks clockwise before it switches to per-zone binary searches.
///
/// Balanced zones finish within a few steps; the switch keeps lopsided layouts (one node
/// alone in its zone among hundreds) from walking a large part of the ring for every range.
const WALK_BUDGET: usize = 64;

/// The `index`-th virtual node of the physical node `name`.
///
/// `owner` (the node's position in the sorted member list) rides along so the walk needs no
/// name lookups; it is not hashed. Kept to 24 bytes: hashring sorts a vector of these.
struct VNode<'a> {
    name: &'a str,
    index: u32,
    owner: u32,
}

impl Hash for VNode<'_> {
    /// The bytes `#[derive(Hash)]` on `{ name: &str, index: u32 }` feeds SipHash on a
    /// little-endian machine, written out by hand so that no platform or Rust release
    /// can move a token.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.name.as_bytes());
        state.write(&[0xff]);
        state.write(&self.index.to_le_bytes());
    }
}

/// Token of a vnode: exactly the key `hashring` sorts it by.
fn vnode_token(vnode: &VNode<'_>) -> Token {
    DefaultHashBuilder.hash_one(vnode)
}

/// Vnode tokens in ring order, each with the node that owns it.
pub(crate) struct Placement {
    /// Strictly increasing vnode tokens.
    pub(crate) tokens: Vec<Token>,
    /// `owners[i]` is the index (into the sorted member list) of the node owning `tokens[i]`.
    pub(crate) owners: Vec<usize>,
}

/// Places `vnodes` tokens per node; `nodes` must be sorted by name and free of duplicates.
///
/// When two vnodes hash to the same token (about 2 chances in 10^9 for 256k vnodes) the
/// first in (name, index) order keeps it; hashring's stable sort keeps insertion order.
pub(crate) fn place(nodes: &[RingNode], vnodes: u32) -> Placement {
    let total = nodes.len().saturating_mul(vnodes as usize);
    let mut all = Vec::with_capacity(total);
    // A u32 owner caps the ring at 2^32 members, far beyond what fits in memory.
    for (owner, node) in (0..=u32::MAX).zip(nodes) {
        all.extend((0..vnodes).map(|index| VNode {
            name: &node.name,
            index,
            owner,
        }));
    }
    let mut ring = HashRing::new();
    ring.batch_add(all);

    let mut tokens: Vec<Token> = Vec::with_capacity(total);
    let mut owners = Vec::with_capacity(total);
    for vnode in ring {
        let t = vnode_token(&vnode);
        if tokens.last() == Some(&t) {
            continue;
        }
        tokens.push(t);
        owners.push(vnode.owner as usize);
    }
    Placement { tokens, owners }
}

/// Computes preference lists (as member indices) from vnode positions.
///
/// Pass 1 walks clockwise picking the first node of each zone not yet used, up to
/// `min(N, zones)` nodes; pass 2 walks clockwise again and fills up to `min(N, nodes)` with
/// nodes not yet picked. Without zones (a single zone) pass 1 is skipped.
pub(crate) struct Walker<'a> {
    owners: &'a [usize],
    zone_of: Vec<usize>,
    /// Vnode positions of each zone, ascending; filled only when there are several zones.
    zone_positions: Vec<Vec<usize>>,
    want: usize,
    zone_target: usize,
    budget: usize,
}

impl<'a> Walker<'a> {
    /// A walker for `placement` over `nodes` (the sorted member list), picking `replicas`.
    pub(crate) fn new(placement: &'a Placement, nodes: &[RingNode], replicas: usize) -> Self {
        Self::with_budget(placement, nodes, replicas, WALK_BUDGET)
    }

    fn with_budget(
        placement: &'a Placement,
        nodes: &[RingNode],
        replicas: usize,
        budget: usize,
    ) -> Self {
        let mut zone_ids: BTreeMap<Option<&str>, usize> = BTreeMap::new();
        let zone_of: Vec<usize> = nodes
            .iter()
            .map(|node| {
                let next = zone_ids.len();
                *zone_ids.entry(node.zone.as_deref()).or_insert(next)
            })
            .collect();

        // Count only what actually holds a vnode: a node can lose its only token to a
        // collision, and it must not be waited for.
        let mut node_present = vec![false; nodes.len()];
        for &owner in &placement.owners {
            node_present[owner] = true;
        }
        let present_nodes = node_present.iter().filter(|&&p| p).count();
        let mut zone_present = vec![false; zone_ids.len()];
        for (node, &present) in node_present.iter().enumerate() {
            if present {
                zone_present[zone_of[node]] = true;
            }
        }
        let present_zones = zone_present.iter().filter(|&&p| p).count();

        let want = replicas.min(present_nodes);
        let zone_target = want.min(present_zones);
        let mut zone_positions = Vec::new();
        if zone_target > 1 {
            zone_positions = vec![Vec::new(); zone_ids.len()];
            for (pos, &owner) in placement.owners.iter().enumerate() {
                zone_positions[zone_of[owner]].push(pos);
            }
        }
        Walker {
            owners: &placement.owners,
            zone_of,
            zone_positions,
            want,
            zone_target,
            budget,
        }
    }

    /// Length of every list this walker fills: `min(N, members holding a vnode)`.
    pub(crate) fn list_len(&self) -> usize {
        self.want
    }

    /// Writes the preference list of the range ending at vnode position `pos` into `out`.
    pub(crate) fn fill(&self, pos: usize, out: &mut Vec<usize>) {
        out.clear();
        let len = self.owners.len();
        if len == 0 {
            return;
        }
        if self.zone_target > 1 {
            self.pick_zones(pos, out);
        }
        let mut p = pos;
        for _ in 0..len {
            if out.len() >= self.want {
                break;
            }
            let node = self.owners[p];
            if !out.contains(&node) {
                out.push(node);
            }
            p = self.next(p);
        }
    }

    /// Pass 1: the first node of each new zone clockwise from `pos`.
    fn pick_zones(&self, pos: usize, out: &mut Vec<usize>) {
        let mut p = pos;
        for _ in 0..self.budget {
            if out.len() >= self.zone_target {
                return;
            }
            let node = self.owners[p];
            if !self.zone_used(out, self.zone_of[node]) {
                out.push(node);
            }
            p = self.next(p);
        }
        // Every position in [pos, p) is now in a used zone, so the nearest vnode of an unused
        // zone at or after `p` is also the nearest one clockwise from `pos`.
        while out.len() < self.zone_target {
            let Some(q) = self.nearest_unused_zone(p, out) else {
                return;
            };
            out.push(self.owners[q]);
            p = self.next(q);
        }
    }

    /// Position of the first vnode at or after `p` (clockwise) whose zone is unused.
    fn nearest_unused_zone(&self, p: usize, out: &[usize]) -> Option<usize> {
        let len = self.owners.len();
        let mut best: Option<(usize, usize)> = None;
        for (zone, positions) in self.zone_positions.iter().enumerate() {
            if self.zone_used(out, zone) {
                continue;
            }
            let i = positions.partition_point(|&q| q < p);
            let Some(&q) = positions.get(i).or(positions.first()) else {
                continue;
            };
            let distance = if q >= p { q - p } else { q + len - p };
            if best.is_none_or(|(d, _)| distance < d) {
                best = Some((distance, q));
            }
        }
        best.map(|(_, q)| q)
    }

    fn zone_used(&self, out: &[usize], zone: usize) -> bool {
        out.iter().any(|&n| self.zone_of[n] == zone)
    }

    fn next(&self, p: usize) -> usize {
        if p + 1 == self.owners.len() {
            0
        } else {
            p + 1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Hash)]
    struct DerivedVNode<'a> {
        name: &'a str,
        index: u32,
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn vnode_hash_equals_the_derived_hash() {
        for (name, index) in [("", 0), ("n1", 7), ("a-much-longer-node-name", u32::MAX)] {
            let vnode = VNode {
                name,
                index,
                owner: 3,
            };
            let derived = DefaultHashBuilder.hash_one(DerivedVNode { name, index });
            assert_eq!(vnode_token(&vnode), derived);
        }
    }

    #[test]
    fn vnode_token_is_pinned() {
        // SipHash-2-4 (zero key) of b"node-0" ++ 0xff ++ 7u32 little-endian, computed by an
        // independent implementation. Changing it moves every vnode: a breaking change.
        let vnode = VNode {
            name: "node-0",
            index: 7,
            owner: 0,
        };
        assert_eq!(vnode_token(&vnode), 0xee1b_d391_1e13_58ee);
    }

    #[test]
    fn vnode_token_ignores_the_owner_and_depends_on_name_and_index() {
        let a = VNode {
            name: "n1",
            index: 1,
            owner: 0,
        };
        let same = VNode { owner: 9, ..a };
        let other_index = VNode { index: 2, ..a };
        let other_name = VNode { name: "n2", ..a };
        assert_eq!(vnode_token(&a), vnode_token(&same));
        assert_ne!(vnode_token(&a), vnode_token(&other_index));
        assert_ne!(vnode_token(&a), vnode_token(&other_name));
    }

    #[test]
    fn place_yields_increasing_tokens_owned_per_node() {
        let nodes: Vec<RingNode> = (0..5).map(|i| RingNode::new(format!("n{i}"))).collect();
        let placement = place(&nodes, 16);
        assert_eq!(placement.tokens.len(), 80);
        assert!(placement.tokens.windows(2).all(|w| w[0] < w[1]));
        for owner in 0..5 {
            assert_eq!(placement.owners.iter().filter(|&&o| o == owner).count(), 16);
        }
    }

    /// The definition, walked without shortcuts: full circles for both passes.
    fn reference(placement: &Placement, nodes: &[RingNode], n: usize, pos: usize) -> Vec<usize> {
        let len = placement.owners.len();
        let circle = || (0..len).map(move |k| placement.owners[(pos + k) % len]);
        let zone = |node: usize| nodes[node].zone.as_deref();
        let mut present: Vec<usize> = placement.owners.clone();
        present.sort_unstable();
        present.dedup();
        let mut zones: Vec<_> = present.iter().map(|&node| zone(node)).collect();
        zones.sort_unstable();
        zones.dedup();
        let want = n.min(present.len());
        let mut out: Vec<usize> = Vec::new();
        if zones.len() > 1 {
            for node in circle() {
                if out.len() < want.min(zones.len()) && out.iter().all(|&m| zone(m) != zone(node)) {
                    out.push(node);
                }
            }
        }
        for node in circle() {
            if out.len() < want && !out.contains(&node) {
                out.push(node);
            }
        }
        out
    }

    fn zoned_nodes(zone_sizes: &[usize]) -> Vec<RingNode> {
        let mut nodes = Vec::new();
        for (zone, &size) in zone_sizes.iter().enumerate() {
            for i in 0..size {
                let node = RingNode::new(format!("z{zone}-n{i}"));
                // The last "zone" stands for nodes without a zone.
                nodes.push(if zone + 1 == zone_sizes.len() {
                    node
                } else {
                    node.in_zone(format!("zone-{zone}"))
                });
            }
        }
        nodes.sort();
        nodes
    }

    proptest! {
        #[test]
        fn walker_matches_the_reference_walk(
            zone_sizes in proptest::collection::vec(0usize..6, 1..5),
            lopsided in 0usize..40,
            vnodes in 1u32..24,
            n in 1usize..6,
            budget in prop_oneof![Just(0usize), Just(1), Just(3), Just(WALK_BUDGET)],
        ) {
            let mut zone_sizes = zone_sizes;
            zone_sizes[0] += lopsided;
            let nodes = zoned_nodes(&zone_sizes);
            let placement = place(&nodes, vnodes);
            let walker = Walker::with_budget(&placement, &nodes, n, budget);
            let mut out = Vec::new();
            for pos in 0..placement.owners.len() {
                walker.fill(pos, &mut out);
                prop_assert_eq!(&out, &reference(&placement, &nodes, n, pos), "pos {}", pos);
            }
        }
    }
}
