//! The ring: members, vnode ranges and their precomputed preference lists.

use crate::config::RingConfig;
use crate::lists::PreferenceLists;
use crate::node::RingNode;
use crate::placement::place;
use crate::range::{span, TokenRange};
use crate::token::{token, Token, TOKEN_SPACE};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

/// A consistent-hash ring: a pure function of the set of members and the [`RingConfig`].
///
/// Every member places `vnodes` tokens; the tokens cut the `u64` space into
/// [`TokenRange`]s, each owned by the vnode at its end. A key with token `t` belongs to the
/// range whose end is the first vnode token `>= t` (wrapping to the first token). The range's
/// preference list holds the first N distinct physical nodes clockwise from that vnode,
/// preferring zones not used yet. All lists are computed when the ring is built, so a lookup
/// is one binary search.
///
/// ```
/// use ringkv_ring::{Ring, RingConfig, RingNode};
/// let ring = Ring::new(
///     ["a", "b", "c", "d"].map(RingNode::new),
///     RingConfig { vnodes: 64, replicas: 3 },
/// );
/// let replicas = ring.preference_list(b"user:42");
/// assert_eq!(replicas.len(), 3);
/// assert!(replicas.iter().all(|name| ring.contains(name)));
/// ```
#[derive(Clone)]
pub struct Ring {
    config: RingConfig,
    nodes: Vec<RingNode>,
    /// End token of every range, ascending: the vnode tokens.
    ends: Vec<Token>,
    lists: PreferenceLists,
    /// [`Ring::ranges`], materialized on first use: it costs about N + 1 allocations per
    /// range, which lookups and diffs never need.
    ranges: OnceLock<Vec<TokenRange>>,
}

impl Ring {
    /// Builds the ring of `nodes`.
    ///
    /// Nodes are deduplicated by name (the last occurrence wins); otherwise the input order
    /// does not matter, so every member computes the same ring from the same membership.
    /// `config` is [clamped](RingConfig::clamped) into its bounds; [`Ring::config`] returns
    /// the values used.
    pub fn new(nodes: impl IntoIterator<Item = RingNode>, config: RingConfig) -> Ring {
        let config = config.clamped();
        let mut by_name: BTreeMap<String, RingNode> = BTreeMap::new();
        for node in nodes {
            by_name.insert(node.name.clone(), node);
        }
        let nodes: Vec<RingNode> = by_name.into_values().collect();
        let placement = place(&nodes, config.vnodes);
        let lists = PreferenceLists::build(&placement, &nodes, config.replicas);
        Ring {
            config,
            nodes,
            ends: placement.tokens,
            lists,
            ranges: OnceLock::new(),
        }
    }

    /// A ring without members: every preference list is empty.
    pub fn empty(config: RingConfig) -> Ring {
        Ring::new(std::iter::empty(), config)
    }

    /// A new ring with `node` added (or replaced, when its name is already a member).
    pub fn with_node(&self, node: RingNode) -> Ring {
        Ring::new(self.nodes.iter().cloned().chain([node]), self.config)
    }

    /// A new ring without the member called `name`.
    pub fn without_node(&self, name: &str) -> Ring {
        let rest = self.nodes.iter().filter(|node| node.name != name).cloned();
        Ring::new(rest, self.config)
    }

    /// The configuration in effect (after clamping).
    pub fn config(&self) -> RingConfig {
        self.config
    }

    /// The members, sorted by name.
    pub fn nodes(&self) -> &[RingNode] {
        &self.nodes
    }

    /// The member called `name`, if any.
    pub fn node(&self, name: &str) -> Option<&RingNode> {
        self.nodes
            .binary_search_by(|node| node.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }

    /// Whether the ring has no members.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Whether `name` is a member.
    pub fn contains(&self, name: &str) -> bool {
        self.node(name).is_some()
    }

    /// Replicas of `key`, coordinator first: `min(N, members)` distinct names, empty when the
    /// ring is empty.
    pub fn preference_list(&self, key: &[u8]) -> &[String] {
        self.preference_list_for(token(key))
    }

    /// Replicas of the range holding `token`, coordinator first.
    pub fn preference_list_for(&self, token: Token) -> &[String] {
        match self.range_index(token) {
            Some(index) => self.lists.get(index),
            None => &[],
        }
    }

    /// Index into [`Ring::ranges`] of the range holding `token`; `None` when the ring is empty.
    pub fn range_index(&self, token: Token) -> Option<usize> {
        if self.ends.is_empty() {
            return None;
        }
        let i = self.ends.partition_point(|&end| end < token);
        Some(if i == self.ends.len() { 0 } else { i })
    }

    /// Bounds `(start, end]` of range `index`, without materializing [`Ring::ranges`].
    pub fn range_bounds(&self, index: usize) -> Option<(Token, Token)> {
        let end = *self.ends.get(index)?;
        let before = index.checked_sub(1).unwrap_or(self.ends.len() - 1);
        Some((self.ends[before], end))
    }

    /// Preference list of range `index` (empty when out of bounds), without materializing
    /// [`Ring::ranges`].
    pub fn preference_list_at(&self, index: usize) -> &[String] {
        self.lists.get(index)
    }

    /// All ranges, sorted by end token; together they cover the `u64` space exactly once.
    /// The first range is the one that wraps past `u64::MAX`.
    ///
    /// Built on first call and cached: about as costly as building the ring, so hot paths
    /// should prefer [`Ring::range_bounds`] and [`Ring::preference_list_at`].
    pub fn ranges(&self) -> &[TokenRange] {
        self.ranges.get_or_init(|| {
            (0..self.ends.len())
                .filter_map(|i| {
                    let (start, end) = self.range_bounds(i)?;
                    Some(TokenRange {
                        start,
                        end,
                        preference_list: self.lists.get(i).to_vec(),
                    })
                })
                .collect()
        })
    }

    /// End tokens of all ranges, ascending: the ring's cut points.
    pub(crate) fn ends(&self) -> &[Token] {
        &self.ends
    }

    /// Number of vnodes on the ring (equal to the number of ranges).
    pub fn vnode_count(&self) -> usize {
        self.ends.len()
    }

    /// Fraction of the key space for which each member is first in the preference list
    /// (the coordinator). Values sum to 1; empty for an empty ring.
    pub fn ownership(&self) -> BTreeMap<String, f64> {
        self.shares(1)
    }

    /// Fraction of the key space each member holds a replica of. Values sum to
    /// `min(N, members)`; empty for an empty ring.
    pub fn replica_share(&self) -> BTreeMap<String, f64> {
        self.shares(self.config.replicas)
    }

    /// Fraction of the key space held by each member among the first `depth` replicas.
    fn shares(&self, depth: usize) -> BTreeMap<String, f64> {
        let mut tokens: BTreeMap<&str, u128> = self
            .nodes
            .iter()
            .map(|node| (node.name.as_str(), 0))
            .collect();
        for index in 0..self.ends.len() {
            let Some((start, end)) = self.range_bounds(index) else {
                continue;
            };
            for name in self.lists.get(index).iter().take(depth) {
                if let Some(held) = tokens.get_mut(name.as_str()) {
                    *held += span(start, end);
                }
            }
        }
        tokens
            .into_iter()
            .map(|(name, held)| (name.to_owned(), held as f64 / TOKEN_SPACE as f64))
            .collect()
    }
}

/// Rings are equal when they have the same configuration, members, ranges and lists;
/// whether [`Ring::ranges`] was materialized does not matter.
impl PartialEq for Ring {
    fn eq(&self, other: &Ring) -> bool {
        self.config == other.config
            && self.nodes == other.nodes
            && self.ends == other.ends
            && (0..self.ends.len()).all(|i| self.lists.get(i) == other.lists.get(i))
    }
}

impl Eq for Ring {}

/// A summary: a ring holds hundreds of thousands of ranges.
impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("config", &self.config)
            .field("nodes", &self.nodes)
            .field("vnodes", &self.ends.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn config(vnodes: u32, replicas: usize) -> RingConfig {
        RingConfig { vnodes, replicas }
    }

    fn plain(n: usize) -> Vec<RingNode> {
        (0..n).map(|i| RingNode::new(format!("node-{i}"))).collect()
    }

    /// Three-zone members: `sizes[z]` nodes in zone `z`.
    fn zoned(sizes: &[usize]) -> Vec<RingNode> {
        let mut nodes = Vec::new();
        for (zone, &size) in sizes.iter().enumerate() {
            for i in 0..size {
                nodes.push(RingNode::new(format!("z{zone}-{i}")).in_zone(format!("zone-{zone}")));
            }
        }
        nodes
    }

    #[test]
    fn empty_ring_has_no_ranges_and_empty_lists() {
        let ring = Ring::empty(RingConfig::default());
        assert!(ring.is_empty());
        assert!(ring.ranges().is_empty());
        assert_eq!(ring.range_index(42), None);
        assert!(ring.preference_list(b"k").is_empty());
        assert!(ring.ownership().is_empty());
        assert!(ring.replica_share().is_empty());
    }

    #[test]
    fn single_vnode_ring_owns_everything_with_one_wrapping_range() {
        let ring = Ring::new([RingNode::new("solo")], config(1, 3));
        assert_eq!(ring.ranges().len(), 1);
        let only = &ring.ranges()[0];
        assert_eq!(only.start, only.end);
        assert_eq!(only.len(), TOKEN_SPACE);
        assert_eq!(ring.preference_list(b"anything"), ["solo"]);
        assert_eq!(ring.ownership()["solo"], 1.0);
    }

    #[test]
    fn config_is_clamped() {
        let ring = Ring::new(plain(2), config(0, 0));
        assert_eq!(ring.config(), config(1, 1));
        assert_eq!(ring.vnode_count(), 2);
    }

    #[test]
    fn duplicate_names_are_merged_and_the_last_wins() {
        let ring = Ring::new(
            [
                RingNode::new("b").in_zone("old"),
                RingNode::new("a"),
                RingNode::new("b").in_zone("new"),
            ],
            config(8, 3),
        );
        let names: Vec<&str> = ring.nodes().iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(ring.node("b").and_then(|n| n.zone.as_deref()), Some("new"));
        assert_eq!(ring.vnode_count(), 16);
        assert!(ring.contains("a") && !ring.contains("c"));
    }

    #[test]
    fn with_and_without_node_equal_a_fresh_build() {
        let base = Ring::new(plain(5), config(32, 3));
        let joined = base.with_node(RingNode::new("node-9"));
        let mut members = plain(5);
        members.push(RingNode::new("node-9"));
        assert_eq!(joined, Ring::new(members, config(32, 3)));
        assert_eq!(joined.without_node("node-9"), base);
    }

    #[test]
    fn materialized_ranges_match_the_cheap_accessors_and_do_not_affect_equality() {
        let fresh = Ring::new(zoned(&[2, 3, 2]), config(16, 3));
        let used = fresh.clone();
        let ranges = used.ranges();
        assert_eq!(ranges.len(), used.vnode_count());
        for (i, range) in ranges.iter().enumerate() {
            assert_eq!(used.range_bounds(i), Some((range.start, range.end)));
            assert_eq!(used.preference_list_at(i), range.preference_list.as_slice());
        }
        assert_eq!(used.range_bounds(ranges.len()), None);
        assert!(used.preference_list_at(ranges.len()).is_empty());
        assert_eq!(fresh, used);
        assert_ne!(fresh, fresh.without_node("z0-0"));
        assert!(format!("{fresh:?}").contains("vnodes: 112"));
    }

    #[test]
    fn key_lookup_goes_to_the_range_of_its_token() {
        let ring = Ring::new(plain(4), config(16, 2));
        for key in [&b"a"[..], b"user:1", b"user:2", b""] {
            let range = &ring.ranges()[ring.range_index(token(key)).unwrap()];
            assert!(range.contains(token(key)));
            assert_eq!(ring.preference_list(key), range.preference_list.as_slice());
        }
    }

    #[test]
    fn tokens_on_a_cut_point_belong_to_the_range_ending_there() {
        let ring = Ring::new(plain(3), config(8, 1));
        let ranges = ring.ranges();
        for (i, range) in ranges.iter().enumerate() {
            assert_eq!(ring.range_index(range.end), Some(i));
            let after = range.end.wrapping_add(1);
            if ranges.iter().all(|r| r.end != after) {
                assert_eq!(ring.range_index(after), Some((i + 1) % ranges.len()));
            }
        }
        let last = ranges[ranges.len() - 1].end;
        if last != u64::MAX {
            assert_eq!(ring.range_index(u64::MAX), Some(0));
        }
    }

    /// Join `n` -> `n + 1` at 256 vnodes; ideal moved fraction is 1 / (n + 1).
    #[test]
    fn a_join_moves_about_one_share_and_only_to_the_joiner() {
        for n in [4, 8, 16, 32, 64] {
            let before = Ring::new(plain(n), config(256, 1));
            let after = before.with_node(RingNode::new("joiner"));
            let moved = before.primary_moved_fraction(&after);
            let ideal = 1.0 / (n as f64 + 1.0);
            assert!(moved <= 2.0 * ideal, "n={n}: moved {moved}, ideal {ideal}");
            assert!(moved >= 0.5 * ideal, "n={n}: moved {moved}, ideal {ideal}");
            assert!((moved - after.ownership()["joiner"]).abs() < 1e-9);
            assert!(before.diff(&after).iter().all(|m| m.to == ["joiner"]));
        }
    }

    #[test]
    fn ownership_is_balanced_at_256_vnodes() {
        let ring = Ring::new(plain(16), RingConfig::default());
        let ownership = ring.ownership();
        let max = ownership.values().copied().fold(0.0, f64::max);
        let mean = 1.0 / 16.0;
        assert!(max / mean < 1.25, "max/mean {}", max / mean);
    }

    #[test]
    fn zone_preference_falls_back_to_distinct_nodes_when_zones_run_out() {
        let ring = Ring::new(zoned(&[3, 3]), config(32, 3));
        for range in ring.ranges() {
            let zones: BTreeSet<_> = range
                .preference_list
                .iter()
                .map(|n| ring.node(n).unwrap().zone.clone())
                .collect();
            assert_eq!(range.preference_list.len(), 3);
            assert_eq!(zones.len(), 2, "{range:?}");
        }
    }

    proptest! {
        #[test]
        fn preference_lists_hold_min_n_members_distinct_nodes(
            n in 1usize..20,
            vnodes in 1u32..48,
            replicas in 1usize..6,
        ) {
            let ring = Ring::new(plain(n), config(vnodes, replicas));
            for range in ring.ranges() {
                let list = &range.preference_list;
                let distinct: BTreeSet<&String> = list.iter().collect();
                prop_assert_eq!(list.len(), replicas.min(n));
                prop_assert_eq!(distinct.len(), list.len());
                prop_assert!(list.iter().all(|name| ring.contains(name)));
            }
        }

        #[test]
        fn input_order_does_not_change_the_ring(
            nodes in Just(zoned(&[3, 2, 4])).prop_shuffle(),
            vnodes in 1u32..32,
            replicas in 1usize..5,
        ) {
            let reference = Ring::new(zoned(&[3, 2, 4]), config(vnodes, replicas));
            let shuffled = Ring::new(nodes, config(vnodes, replicas));
            prop_assert_eq!(shuffled.ranges(), reference.ranges());
            prop_assert_eq!(shuffled, reference);
        }

        #[test]
        fn ranges_cover_the_whole_space_exactly_once(
            n in 1usize..10,
            vnodes in 1u32..32,
            probes in proptest::collection::vec(any::<u64>(), 32),
        ) {
            let ring = Ring::new(plain(n), config(vnodes, 3));
            let ranges = ring.ranges();
            prop_assert!(ranges.windows(2).all(|w| w[0].end < w[1].end && w[1].start == w[0].end));
            prop_assert_eq!(ranges[0].start, ranges[ranges.len() - 1].end);
            prop_assert_eq!(ranges.iter().map(TokenRange::len).sum::<u128>(), TOKEN_SPACE);
            let edges = ranges.iter().flat_map(|r| [r.end, r.end.wrapping_add(1)]);
            for t in probes.into_iter().chain([0, u64::MAX]).chain(edges) {
                let holders: Vec<usize> = (0..ranges.len()).filter(|&i| ranges[i].contains(t)).collect();
                prop_assert_eq!(holders.len(), 1, "token {}", t);
                prop_assert_eq!(ring.range_index(t), Some(holders[0]));
            }
        }

        #[test]
        fn shares_sum_to_one_and_to_the_replica_count(
            n in 1usize..12,
            vnodes in 1u32..32,
            replicas in 1usize..5,
        ) {
            let ring = Ring::new(plain(n), config(vnodes, replicas));
            let ownership = ring.ownership();
            let share = ring.replica_share();
            prop_assert_eq!(ownership.len(), n);
            prop_assert_eq!(share.len(), n);
            prop_assert!((ownership.values().sum::<f64>() - 1.0).abs() < 1e-9);
            let expected = replicas.min(n) as f64;
            prop_assert!((share.values().sum::<f64>() - expected).abs() < 1e-9);
            for (name, owned) in &ownership {
                prop_assert!(share[name] >= *owned);
            }
        }

        #[test]
        fn with_three_zones_every_list_spans_three_zones(
            sizes in proptest::collection::vec(1usize..6, 3),
            vnodes in 1u32..32,
        ) {
            let ring = Ring::new(zoned(&sizes), config(vnodes, 3));
            for range in ring.ranges() {
                let zones: BTreeSet<_> = range
                    .preference_list
                    .iter()
                    .filter_map(|n| ring.node(n).and_then(|node| node.zone.clone()))
                    .collect();
                prop_assert_eq!(range.preference_list.len(), 3);
                prop_assert_eq!(zones.len(), 3);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn a_join_moves_at_most_twice_the_ideal_share(
            n in 4usize..24,
            prefix in "[a-z]{1,8}",
        ) {
            let members = (0..n).map(|i| RingNode::new(format!("{prefix}-{i}")));
            let before = Ring::new(members, RingConfig::default());
            let after = before.with_node(RingNode::new(format!("{prefix}-joiner")));
            let moved = before.primary_moved_fraction(&after);
            prop_assert!(moved > 0.0);
            prop_assert!(moved <= 2.0 / (n as f64 + 1.0), "moved {}", moved);
        }
    }
}
