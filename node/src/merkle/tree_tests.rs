use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

/// The token at `offset` (taken modulo the range's size) inside `(start, end]`.
fn token_in(start: u64, end: u64, offset: u64) -> u64 {
    let offset = (u128::from(offset) % span(start, end)) as u64;
    start.wrapping_add(1).wrapping_add(offset)
}

fn hash_of(seed: u64) -> Hash {
    *blake3::hash(&seed.to_le_bytes()).as_bytes()
}

/// Every hash of the tree, level by level.
fn all_levels(tree: &mut RangeTree) -> Vec<Vec<Hash>> {
    (0..=tree.depth())
        .map(|l| tree.level(l, 0, usize::MAX))
        .collect()
}

#[derive(Clone, Debug)]
enum Op {
    /// Write key `k` (token offset `t`) with version seed `v`.
    Put { k: u8, t: u64, v: u64 },
    /// Remove key `k` if present.
    Remove { k: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<u8>(), any::<u64>(), any::<u64>()).prop_map(|(k, t, v)| Op::Put { k, t, v }),
        1 => any::<u8>().prop_map(|k| Op::Remove { k }),
    ]
}

proptest! {
    #[test]
    fn incremental_updates_match_a_rebuild(
        start in any::<u64>(),
        end in any::<u64>(),
        depth in 1u8..=8,
        ops in prop::collection::vec(op(), 0..200),
        read_every in 1usize..20,
    ) {
        let mut tree = RangeTree::new(start, end, depth).unwrap();
        // key -> (token, hash): what the store holds.
        let mut store: HashMap<u8, (u64, Hash)> = HashMap::new();
        for (i, op) in ops.iter().enumerate() {
            match *op {
                Op::Put { k, t, v } => {
                    // A key keeps its token across versions, as a real key does.
                    let token = store.get(&k).map_or(token_in(start, end, t), |&(tok, _)| tok);
                    let new = hash_of(v);
                    let old = store.insert(k, (token, new)).map(|(_, h)| h);
                    tree.update(token, old, Some(new)).unwrap();
                }
                Op::Remove { k } => {
                    if let Some((token, old)) = store.remove(&k) {
                        tree.update(token, Some(old), None).unwrap();
                    }
                }
            }
            // Reading part-way cleans some paths; later updates must re-dirty them.
            if i % read_every == 0 {
                tree.root();
            }
        }
        let mut rebuilt = RangeTree::from_items(start, end, depth, store.values().copied()).unwrap();
        prop_assert_eq!(tree.len(), store.len() as u64);
        prop_assert_eq!(tree.root(), rebuilt.root());
        prop_assert_eq!(all_levels(&mut tree), all_levels(&mut rebuilt));
    }

    #[test]
    fn same_items_in_any_order_give_the_same_root(
        start in any::<u64>(),
        end in any::<u64>(),
        depth in 1u8..=10,
        items in prop::collection::vec((any::<u64>(), any::<u64>()), 0..100),
        shuffle_seed in any::<u64>(),
    ) {
        let items: Vec<(u64, Hash)> =
            items.iter().map(|&(t, v)| (token_in(start, end, t), hash_of(v))).collect();
        let mut shuffled = items.clone();
        // A deterministic shuffle: sort by a seeded hash of the position.
        let mut keyed: Vec<(Hash, (u64, Hash))> = shuffled
            .drain(..)
            .enumerate()
            .map(|(i, it)| (hash_of(shuffle_seed ^ i as u64), it))
            .collect();
        keyed.sort_by_key(|e| e.0);
        let shuffled: Vec<_> = keyed.into_iter().map(|e| e.1).collect();
        let mut a = RangeTree::new(start, end, depth).unwrap();
        for &(t, h) in &items {
            a.update(t, None, Some(h)).unwrap();
        }
        let mut b = RangeTree::new(start, end, depth).unwrap();
        for &(t, h) in &shuffled {
            b.update(t, None, Some(h)).unwrap();
            b.root();
        }
        prop_assert_eq!(a.root(), b.root());
        prop_assert_eq!(all_levels(&mut a), all_levels(&mut b));
    }

    #[test]
    fn a_token_lies_in_the_bounds_of_its_leaf(
        start in any::<u64>(),
        end in any::<u64>(),
        depth in 1u8..=20,
        offset in any::<u64>(),
    ) {
        let tree = RangeTree::new(start, end, depth).unwrap();
        let token = token_in(start, end, offset);
        let leaf = tree.leaf_of(token).unwrap();
        prop_assert!(leaf < tree.leaves());
        let (lo, hi) = tree.bucket_bounds(leaf).unwrap();
        prop_assert!(in_range(lo, hi, token), "{token} not in ({lo}, {hi}] of leaf {leaf}");
    }

    #[test]
    fn buckets_tile_the_range_in_order(
        start in any::<u64>(),
        end in any::<u64>(),
        depth in 1u8..=8,
    ) {
        let tree = RangeTree::new(start, end, depth).unwrap();
        let mut at = start;
        let mut covered = 0u128;
        for leaf in 0..tree.leaves() {
            if let Some((lo, hi)) = tree.bucket_bounds(leaf) {
                prop_assert_eq!(lo, at, "leaf {} starts where the previous ended", leaf);
                prop_assert_eq!(tree.leaf_of(lo.wrapping_add(1)), Some(leaf));
                prop_assert_eq!(tree.leaf_of(hi), Some(leaf));
                covered += span(lo, hi);
                at = hi;
            }
        }
        prop_assert_eq!(at, end);
        prop_assert_eq!(covered, span(start, end));
    }
}

fn in_range(start: u64, end: u64, t: u64) -> bool {
    if start < end {
        start < t && t <= end
    } else {
        t > start || t <= end
    }
}

#[test]
fn wrapping_range_buckets_straddle_zero() {
    // (MAX - 7, 8]: 16 tokens, 4 leaves of 4 tokens: MAX-6..=MAX-3, MAX-2..=0, 1..=4, 5..=8.
    let tree = RangeTree::new(u64::MAX - 7, 8, 2).unwrap();
    assert_eq!(tree.leaf_of(u64::MAX - 6), Some(0));
    assert_eq!(tree.leaf_of(u64::MAX - 3), Some(0));
    assert_eq!(tree.leaf_of(u64::MAX - 2), Some(1));
    assert_eq!(tree.leaf_of(0), Some(1));
    assert_eq!(tree.leaf_of(1), Some(2));
    assert_eq!(tree.leaf_of(8), Some(3));
    assert_eq!(tree.leaf_of(9), None);
    assert_eq!(tree.leaf_of(u64::MAX - 7), None);
    assert_eq!(tree.bucket_bounds(1), Some((u64::MAX - 3, 0)));
    assert_eq!(tree.bucket_bounds(3), Some((4, 8)));
    assert_eq!(tree.bucket_bounds(4), None);
}

#[test]
fn whole_ring_halves_at_depth_one() {
    let tree = RangeTree::new(5, 5, 1).unwrap();
    assert_eq!(tree.bucket_bounds(0), Some((5, 5 + (1 << 63))));
    assert_eq!(tree.bucket_bounds(1), Some((5 + (1 << 63), 5)));
    assert_eq!(tree.leaf_of(5), Some(1));
    assert_eq!(tree.leaf_of(6), Some(0));
}

#[test]
fn a_range_smaller_than_its_leaves_has_empty_buckets() {
    let tree = RangeTree::new(10, 12, 3).unwrap(); // 2 tokens, 8 leaves
    let bounded: Vec<_> = (0..8).filter_map(|l| tree.bucket_bounds(l)).collect();
    assert_eq!(bounded.len(), 2);
    assert_eq!(bounded, [(10, 11), (11, 12)]);
}

#[test]
fn depth_and_tokens_are_checked() {
    assert_eq!(
        RangeTree::new(0, 1, 0).unwrap_err(),
        TreeError::BadDepth { depth: 0 }
    );
    assert!(RangeTree::new(0, 1, MAX_DEPTH + 1).is_err());
    let mut tree = RangeTree::new(10, 20, 2).unwrap();
    let err = tree.update(10, None, Some([1; 32])).unwrap_err();
    assert!(matches!(err, TreeError::TokenOutOfRange { token: 10, .. }));
    assert!(tree.is_empty());
    assert_eq!(tree.root(), [0; 32]);
    assert!(RangeTree::from_items(10, 20, 2, [(21, [1; 32])]).is_err());
}

#[test]
fn out_of_range_reads_are_empty() {
    let mut tree = RangeTree::new(0, 100, 3).unwrap();
    assert_eq!(tree.node(4, 0), None);
    assert_eq!(tree.node(3, 8), None);
    assert!(tree.level(9, 0, 10).is_empty());
    assert_eq!(tree.level(3, 6, 10).len(), 2);
    assert!(tree.level(3, usize::MAX, usize::MAX).is_empty());
}

#[test]
fn a_leaf_is_the_xor_of_its_items_and_parents_hash_children() {
    let mut tree = RangeTree::new(0, 4, 1).unwrap(); // leaves: 1..=2 and 3..=4
    tree.update(1, None, Some([0b01; 32])).unwrap();
    tree.update(2, None, Some([0b10; 32])).unwrap();
    assert_eq!(tree.node(1, 0), Some([0b11; 32]));
    assert_eq!(tree.node(1, 1), Some([0; 32]));
    let expected = blake3::hash(&[[0b11u8; 32], [0; 32]].concat());
    assert_eq!(tree.root(), *expected.as_bytes());
}
