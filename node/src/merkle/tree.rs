//! The Merkle tree of one token range: fixed shape, incremental leaves, lazy inner nodes.

use super::Hash;

/// The shallowest tree: two leaves.
pub const MIN_DEPTH: u8 = 1;

/// The deepest tree: 2^20 leaves, 64 MiB of node hashes.
pub const MAX_DEPTH: u8 = 20;

/// The depth a node uses unless configured otherwise: 4096 leaves, 256 KiB of node hashes.
pub const DEFAULT_DEPTH: u8 = 12;

/// The hash of a subtree holding no item.
const EMPTY: Hash = [0; 32];

/// Why a tree could not be built or updated (the caller's mistake, never a peer's).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// A depth outside [`MIN_DEPTH`]`..=`[`MAX_DEPTH`].
    #[error("tree depth {depth} is outside {MIN_DEPTH}..={MAX_DEPTH}")]
    BadDepth {
        /// The depth asked for.
        depth: u8,
    },
    /// A token the tree's range does not contain.
    #[error("token {token} is outside the range ({start}, {end}]")]
    TokenOutOfRange {
        /// The token.
        token: u64,
        /// The range's exclusive start.
        start: u64,
        /// The range's inclusive end.
        end: u64,
    },
}

/// The Merkle tree of one token range `(start, end]` (wrapping when `start >= end`, so
/// `start == end` is the whole ring).
///
/// The range is cut into `2^depth` equal leaf buckets by token. A leaf's hash is the XOR of
/// the [`item_hash`](super::item_hash)es in its bucket, so inserting, replacing or removing an
/// item is O(1) and independent of the order items arrive in. An inner node is
/// `blake3(left ‖ right)`, or all zeros when both children are (empty subtrees cost
/// nothing); inner nodes are recomputed lazily, only along paths an update dirtied, when a
/// hash is read. Two trees of the same range and depth holding the same items have the same
/// hashes everywhere.
///
/// Memory is fixed by the depth: `2^(depth+1)` hashes of 32 bytes plus one flag per inner
/// node (see [`RangeTree::memory_bytes`]).
///
/// ```
/// use ringkv::merkle::RangeTree;
///
/// let mut a = RangeTree::new(u64::MAX - 100, 100, 4)?; // wraps past u64::MAX
/// let mut b = RangeTree::new(u64::MAX - 100, 100, 4)?;
/// a.update(5, None, Some([1; 32]))?;
/// a.update(u64::MAX, None, Some([2; 32]))?;
/// b.update(u64::MAX, None, Some([2; 32]))?;
/// assert_ne!(a.root(), b.root());
/// b.update(5, None, Some([1; 32]))?;
/// assert_eq!(a.root(), b.root());
/// a.update(5, Some([1; 32]), None)?; // removed
/// assert_eq!(a.len(), 1);
/// # Ok::<(), ringkv::merkle::TreeError>(())
/// ```
#[derive(Clone, Debug)]
pub struct RangeTree {
    start: u64,
    end: u64,
    depth: u8,
    /// Tokens in the range, from 1 up to 2^64.
    span: u128,
    /// Heap layout: node `(level, i)` is at `(1 << level) + i`; index 0 is unused.
    nodes: Vec<Hash>,
    /// Per inner node (index below `1 << depth`): its hash is stale. A dirty node's
    /// ancestors are all dirty, so marking stops at the first dirty one.
    dirty: Vec<bool>,
    /// Items held, as counted from updates.
    len: u64,
}

impl RangeTree {
    /// An empty tree over `(start, end]` with `2^depth` leaves.
    ///
    /// # Errors
    /// [`TreeError::BadDepth`] outside [`MIN_DEPTH`]`..=`[`MAX_DEPTH`].
    pub fn new(start: u64, end: u64, depth: u8) -> Result<Self, TreeError> {
        if !(MIN_DEPTH..=MAX_DEPTH).contains(&depth) {
            return Err(TreeError::BadDepth { depth });
        }
        let leaves = 1usize << depth;
        Ok(RangeTree {
            start,
            end,
            depth,
            span: span(start, end),
            nodes: vec![EMPTY; 2 * leaves],
            dirty: vec![false; leaves],
            len: 0,
        })
    }

    /// A tree over `(start, end]` holding `items` (`(token, item hash)`, one per key, in any
    /// order): the rebuild from a store scan at start-up.
    ///
    /// # Errors
    /// [`TreeError::BadDepth`], or [`TreeError::TokenOutOfRange`] for an item outside the
    /// range.
    pub fn from_items(
        start: u64,
        end: u64,
        depth: u8,
        items: impl IntoIterator<Item = (u64, Hash)>,
    ) -> Result<Self, TreeError> {
        let mut tree = Self::new(start, end, depth)?;
        tree.rebuild(items)?;
        Ok(tree)
    }

    /// Forgets every item and loads `items` instead (`(token, item hash)`, one per key).
    /// Inner nodes are recomputed once, on the next read.
    ///
    /// # Errors
    /// [`TreeError::TokenOutOfRange`] for an item outside the range; the tree then holds the
    /// items before it.
    pub fn rebuild(
        &mut self,
        items: impl IntoIterator<Item = (u64, Hash)>,
    ) -> Result<(), TreeError> {
        self.nodes.fill(EMPTY);
        self.len = 0;
        let base = self.leaves();
        for (token, hash) in items {
            let leaf = self.leaf_or_err(token)?;
            xor_into(&mut self.nodes[base + leaf], &hash);
            self.len += 1;
        }
        // Everything above the leaves is stale; index 0 is unused.
        self.dirty.fill(true);
        Ok(())
    }

    /// Records that the item at `token` changed from `old` to `new` (`None`: absent before /
    /// removed now). O(1): one leaf XOR and, at most, marking the path to the root stale.
    ///
    /// `old` must be the hash of what the tree holds for that key, else the tree no longer
    /// matches the store (a later [`rebuild`](Self::rebuild) repairs that).
    ///
    /// # Errors
    /// [`TreeError::TokenOutOfRange`]; the tree is unchanged.
    pub fn update(
        &mut self,
        token: u64,
        old: Option<Hash>,
        new: Option<Hash>,
    ) -> Result<(), TreeError> {
        let leaf = self.leaf_or_err(token)?;
        match (old, new) {
            (None, None) => return Ok(()),
            (Some(o), Some(n)) if o == n => return Ok(()),
            (None, Some(_)) => self.len += 1,
            (Some(_), None) => self.len = self.len.saturating_sub(1),
            (Some(_), Some(_)) => {}
        }
        let index = self.leaves() + leaf;
        for hash in [old, new].into_iter().flatten() {
            xor_into(&mut self.nodes[index], &hash);
        }
        let mut parent = index / 2;
        while parent >= 1 && !self.dirty[parent] {
            self.dirty[parent] = true;
            parent /= 2;
        }
        Ok(())
    }

    /// The root hash (all zeros for an empty tree), recomputing only stale nodes.
    pub fn root(&mut self) -> Hash {
        self.node(0, 0).unwrap_or(EMPTY)
    }

    /// The hash of node `index` at `level` (0 = root, [`depth`](Self::depth) = leaves), or
    /// `None` when there is no such node.
    pub fn node(&mut self, level: u8, index: usize) -> Option<Hash> {
        if level > self.depth || index >= 1usize << level {
            return None;
        }
        let at = (1usize << level) + index;
        self.clean(at);
        Some(self.nodes[at])
    }

    /// The hashes of up to `count` nodes at `level`, from index `from` on: fewer (possibly
    /// none) when the level ends first or does not exist.
    pub fn level(&mut self, level: u8, from: usize, count: usize) -> Vec<Hash> {
        if level > self.depth {
            return Vec::new();
        }
        let width = 1usize << level;
        let upto = from.saturating_add(count).min(width);
        (from..upto)
            .map(|i| {
                self.clean(width + i);
                self.nodes[width + i]
            })
            .collect()
    }

    /// The leaf bucket holding `token`, or `None` outside the range.
    #[must_use]
    pub fn leaf_of(&self, token: u64) -> Option<usize> {
        if !self.contains(token) {
            return None;
        }
        let offset = u128::from(token.wrapping_sub(self.start).wrapping_sub(1));
        // offset < span <= 2^64 and depth <= 20: no overflow, and the result is a leaf.
        usize::try_from((offset << self.depth) / self.span).ok()
    }

    /// The tokens of leaf `leaf` as `(exclusive start, inclusive end)`, the bounds a store
    /// scan of that bucket takes; `None` for a leaf past the end or one no token maps to (a
    /// range of fewer tokens than leaves), which must not be scanned: `(a, a]` would read as
    /// the whole ring.
    #[must_use]
    pub fn bucket_bounds(&self, leaf: usize) -> Option<(u64, u64)> {
        bucket_bounds(self.start, self.end, self.depth, leaf)
    }

    /// Whether `token` lies in the range.
    #[must_use]
    pub fn contains(&self, token: u64) -> bool {
        if self.start < self.end {
            self.start < token && token <= self.end
        } else {
            token > self.start || token <= self.end
        }
    }

    /// The range's exclusive start.
    #[must_use]
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The range's inclusive end.
    #[must_use]
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Levels below the root; the tree has `2^depth` leaves.
    #[must_use]
    pub fn depth(&self) -> u8 {
        self.depth
    }

    /// The number of leaf buckets, `2^depth`.
    #[must_use]
    pub fn leaves(&self) -> usize {
        1usize << self.depth
    }

    /// Items held, as counted by updates (inserts minus removals).
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no item is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap bytes a tree of `depth` takes: its node hashes and stale flags.
    #[must_use]
    pub fn memory_bytes(depth: u8) -> usize {
        let leaves = 1usize << depth.min(MAX_DEPTH);
        2 * leaves * std::mem::size_of::<Hash>() + leaves
    }

    fn leaf_or_err(&self, token: u64) -> Result<usize, TreeError> {
        self.leaf_of(token).ok_or(TreeError::TokenOutOfRange {
            token,
            start: self.start,
            end: self.end,
        })
    }

    /// Recomputes node `at` and its stale descendants (recursion at most `depth` deep).
    fn clean(&mut self, at: usize) {
        if at >= self.leaves() || !self.dirty[at] {
            return;
        }
        self.clean(2 * at);
        self.clean(2 * at + 1);
        self.nodes[at] = inner_hash(&self.nodes[2 * at], &self.nodes[2 * at + 1]);
        self.dirty[at] = false;
    }
}

/// `blake3(left ‖ right)`, except that two empty children make an empty node.
fn inner_hash(left: &Hash, right: &Hash) -> Hash {
    if *left == EMPTY && *right == EMPTY {
        return EMPTY;
    }
    let mut h = blake3::Hasher::new();
    h.update(left);
    h.update(right);
    *h.finalize().as_bytes()
}

fn xor_into(acc: &mut Hash, hash: &Hash) {
    for (a, b) in acc.iter_mut().zip(hash) {
        *a ^= b;
    }
}

/// Tokens in `(start, end]`, wrapping when `start >= end`: 1 up to 2^64.
fn span(start: u64, end: u64) -> u128 {
    if start < end {
        u128::from(end - start)
    } else {
        (1u128 << 64) - u128::from(start) + u128::from(end)
    }
}

/// [`RangeTree::bucket_bounds`] from the tree's shape alone.
pub(super) fn bucket_bounds(start: u64, end: u64, depth: u8, leaf: usize) -> Option<(u64, u64)> {
    let leaves = 1u128 << depth.min(MAX_DEPTH);
    let leaf = leaf as u128;
    if leaf >= leaves {
        return None;
    }
    let span = span(start, end);
    // Leaf i holds the offsets o with floor(o * leaves / span) == i, i.e. [first, past).
    let first = (leaf * span).div_ceil(leaves);
    let past = ((leaf + 1) * span).div_ceil(leaves);
    if first == past {
        return None;
    }
    // Offset o is token start + 1 + o, so the bucket is (start + first, start + past],
    // all modulo 2^64.
    let at = |offset: u128| (u128::from(start) + offset) as u64;
    Some((at(first), at(past)))
}

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tests;
