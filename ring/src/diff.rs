//! Ring diffs: which parts of the key space change replicas between two rings.

use crate::range::span;
use crate::ring::Ring;
use crate::token::{Token, TOKEN_SPACE};

/// A piece `(start, end]` of the key space whose replica set differs between two rings.
///
/// Like [`TokenRange`](crate::TokenRange), `start >= end` means the piece wraps past
/// `u64::MAX`. A piece never crosses a range boundary of either ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeMove {
    /// Exclusive lower bound.
    pub start: Token,
    /// Inclusive upper bound.
    pub end: Token,
    /// Replicas in the older ring that are not replicas in the newer one: they lose the piece.
    pub from: Vec<String>,
    /// Replicas in the newer ring that were not replicas in the older one: they gain the piece.
    pub to: Vec<String>,
}

impl RangeMove {
    /// Number of tokens in the piece, from 1 up to 2^64.
    #[allow(clippy::len_without_is_empty)] // a piece always holds at least one token
    pub fn len(&self) -> u128 {
        span(self.start, self.end)
    }
}

impl Ring {
    /// What changes from `self` to `newer`: over the union of both rings' cut points, every
    /// piece whose replica set changed, with the nodes that lose it (`from`, in the older
    /// list's order) and gain it (`to`, in the newer list's order). Pieces are sorted by end
    /// token. A reorder of the same replicas is not a move.
    ///
    /// ```
    /// use ringkv_ring::{Ring, RingConfig, RingNode};
    /// let config = RingConfig { vnodes: 32, replicas: 2 };
    /// let before = Ring::new(["a", "b", "c"].map(RingNode::new), config);
    /// let after = before.with_node(RingNode::new("d"));
    /// let moves = before.diff(&after);
    /// assert!(!moves.is_empty());
    /// assert!(moves.iter().all(|m| m.to == ["d"] && m.from.len() == 1));
    /// assert!(before.diff(&before).is_empty());
    /// ```
    pub fn diff(&self, newer: &Ring) -> Vec<RangeMove> {
        let mut moves = Vec::new();
        for (start, end) in pieces(self.ends(), newer.ends()) {
            let old = self.preference_list_for(end);
            let new = newer.preference_list_for(end);
            let from: Vec<String> = old.iter().filter(|n| !new.contains(n)).cloned().collect();
            let to: Vec<String> = new.iter().filter(|n| !old.contains(n)).cloned().collect();
            if !from.is_empty() || !to.is_empty() {
                moves.push(RangeMove {
                    start,
                    end,
                    from,
                    to,
                });
            }
        }
        moves
    }

    /// Fraction of the key space whose coordinator (first replica) differs in `newer`.
    ///
    /// With consistent hashing, one join into `n` members ideally moves `1 / (n + 1)`.
    pub fn primary_moved_fraction(&self, newer: &Ring) -> f64 {
        let moved: u128 = pieces(self.ends(), newer.ends())
            .filter(|&(_, end)| {
                self.preference_list_for(end).first() != newer.preference_list_for(end).first()
            })
            .map(|(start, end)| span(start, end))
            .sum();
        moved as f64 / TOKEN_SPACE as f64
    }
}

/// The pieces `(start, end]` cut by the union of two ascending lists of cut points.
fn pieces<'a>(a: &'a [Token], b: &'a [Token]) -> impl Iterator<Item = (Token, Token)> + 'a {
    let mut cuts = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) if x <= y => {
                i += 1;
                if x == y {
                    j += 1;
                }
                x
            }
            (_, Some(&y)) => {
                j += 1;
                y
            }
            (Some(&x), None) => {
                i += 1;
                x
            }
            (None, None) => break,
        };
        cuts.push(next);
    }
    let mut start = cuts.last().copied().unwrap_or_default();
    cuts.into_iter().map(move |end| {
        let piece = (start, end);
        start = end;
        piece
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RingConfig, RingNode};
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn ring(names: &[String], vnodes: u32, replicas: usize) -> Ring {
        Ring::new(
            names.iter().map(|n| RingNode::new(n.clone())),
            RingConfig { vnodes, replicas },
        )
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn pieces_cut_at_the_union_and_wrap() {
        let got: Vec<_> = pieces(&[10, 30], &[20, 30, 40]).collect();
        assert_eq!(got, vec![(40, 10), (10, 20), (20, 30), (30, 40)]);
        assert_eq!(pieces(&[], &[]).count(), 0);
        assert_eq!(pieces(&[5], &[]).collect::<Vec<_>>(), vec![(5, 5)]);
    }

    #[test]
    fn diff_of_identical_rings_is_empty() {
        let a = ring(&names(8), 64, 3);
        let b = ring(&names(8), 64, 3);
        assert!(a.diff(&b).is_empty());
        assert_eq!(a.primary_moved_fraction(&b), 0.0);
    }

    #[test]
    fn diff_from_empty_ring_gives_everything_to_the_new_replicas() {
        let empty = Ring::empty(RingConfig::default());
        let full = ring(&names(4), 16, 2);
        let moves = empty.diff(&full);
        assert_eq!(moves.iter().map(RangeMove::len).sum::<u128>(), TOKEN_SPACE);
        for m in &moves {
            assert!(m.from.is_empty());
            assert_eq!(m.to, full.preference_list_for(m.end));
        }
        assert!(empty.diff(&empty).is_empty());
    }

    #[test]
    fn diff_after_a_leave_lists_only_the_leaver_in_from() {
        let all = names(6);
        let before = ring(&all, 64, 3);
        let after = before.without_node("node-2");
        let moves = before.diff(&after);
        assert!(!moves.is_empty());
        for m in &moves {
            assert_eq!(m.from, ["node-2"]);
            assert_eq!(m.to.len(), 1);
        }
    }

    proptest! {
        #[test]
        fn diff_after_a_join_lists_only_the_new_node_in_to(
            n in 1usize..12,
            vnodes in 1u32..64,
            replicas in 1usize..5,
        ) {
            let before = ring(&names(n), vnodes, replicas);
            let after = before.with_node(RingNode::new("joiner"));
            let moves = before.diff(&after);
            prop_assert!(!moves.is_empty());
            for m in &moves {
                prop_assert_eq!(&m.to, &["joiner".to_string()]);
                prop_assert!(!m.from.contains(&"joiner".to_string()));
            }
        }

        #[test]
        fn applying_the_moves_turns_old_replica_sets_into_new_ones(
            old_members in proptest::collection::btree_set(0usize..12, 0..8),
            new_members in proptest::collection::btree_set(0usize..12, 0..8),
            vnodes in 1u32..16,
            replicas in 1usize..4,
        ) {
            let to_names = |set: &BTreeSet<usize>| -> Vec<String> {
                set.iter().map(|i| format!("node-{i}")).collect()
            };
            let old = ring(&to_names(&old_members), vnodes, replicas);
            let new = ring(&to_names(&new_members), vnodes, replicas);
            let moves = old.diff(&new);
            prop_assert!(moves.windows(2).all(|w| w[0].end < w[1].end));
            // Every cut point of either ring: moved pieces must match exactly, others not move.
            for (start, end) in pieces(old.ends(), new.ends()) {
                let mut replicas: BTreeSet<&String> = old.preference_list_for(end).iter().collect();
                let wanted: BTreeSet<&String> = new.preference_list_for(end).iter().collect();
                match moves.iter().find(|m| m.end == end) {
                    Some(m) => {
                        prop_assert_eq!(m.start, start);
                        for gone in &m.from {
                            prop_assert!(replicas.remove(gone));
                        }
                        for gained in &m.to {
                            prop_assert!(replicas.insert(gained));
                        }
                        prop_assert_eq!(replicas, wanted);
                    }
                    None => prop_assert_eq!(replicas, wanted),
                }
            }
        }
    }
}
