//! Merkle trees for anti-entropy: find and repair the keys two replicas of a range disagree
//! on, exchanging little more than those keys.
//!
//! Everything here is pure: callers feed items from their store; nothing reads a clock,
//! touches storage or the network.
//!
//! # The pieces
//! - [`item_hash`]: the hash of one key's causal identity (key, version vector, each
//!   sibling's dot, timestamp and tombstone flag), equal on replicas holding the same record.
//! - [`RangeTree`]: per ring range a node replicates, a fixed-shape tree: `2^depth` leaf
//!   buckets of equal token width, leaf = XOR of its items' hashes (O(1) incremental insert,
//!   replace, remove on every write), inner node = `blake3(left ‖ right)` recomputed lazily.
//!   Rebuilt from a store scan at start-up ([`RangeTree::from_items`]).
//! - [`Exchange`]: the sans-IO state machine each replica runs to compare its tree with a
//!   peer's, driven by [`ExchangeMsg`]s and yielding [`Action`]s.
//!
//! # The exchange
//! Two replicas of one range, same range bounds and same depth; the *initiator* `I` (the
//! side whose anti-entropy timer fired) and the *responder* `R`. The protocol is lock-step:
//! each side has at most one message unanswered.
//!
//! ```text
//! I → R  Open { start, end, depth, root }          R checks the shape, compares the root
//! R → I  Differ { level: 0, from: 0, bits }        one bit per hash: 1 = differs
//!        -- for each level 1..=depth, while some node differs --
//! I → R  Hashes { level, from, hashes }            children of the nodes that differed one
//! R → I  Differ { level, from, bits }              level up, at most max_hashes per message
//!        -- both sides now know the differing leaves D, in index order --
//! I      ScanLeaf(leaf) → caller → leaf_items()    I lists its (key, item hash) per leaf
//! I → R  Items { leaves: [LeafItems] }             many leaves per message, keys ascending,
//!                                                  a big leaf continued (`more`) in the next
//! R      ScanLeaf(leaf) → caller → leaf_items()    R merges both sorted lists:
//!        Push(keys)                                  keys I lacks or holds differently: R
//!                                                    sends its records
//! R → I  Want { keys }                             keys R lacks or holds differently
//! I      Push(keys)                                I sends its records
//!        -- until every leaf in D is listed; both sides are then finished --
//! ```
//! Both directions are repaired in one exchange: a key one side lacks is pushed by the other,
//! a key with two versions is pushed both ways and each side merges (`DvvSet::sync`), so
//! both end with the same record. The `Push` and the records themselves travel outside this
//! module (the node's repair path). What the caller does around it: choose a peer and range
//! on an interval, pace messages and pushes under the I/O budget (bytes/s), time an
//! exchange out, and close the stream on any [`ExchangeError`].
//!
//! Cost: with `d` differing keys spread over distinct leaves, the descent sends about
//! `2 · d · 32` bytes per level below `log2(d)` (all nodes above), then the items of `d`
//! leaves. Pick the depth so a leaf holds a few keys (`2^depth ≈ keys in the range`) for the
//! fewest bytes; memory is `2^(depth+1) · 32` bytes per tree ([`RangeTree::memory_bytes`]).
//!
//! # Example
//! ```
//! use ringkv::merkle::{Action, Exchange, ExchangeLimits, RangeTree};
//!
//! // Two replicas of (0, 1000]; `b` lacks the item at token 7.
//! let items_a = vec![(7u64, b"x".to_vec(), [1u8; 32]), (500, b"y".to_vec(), [2; 32])];
//! let items_b = vec![(500u64, b"y".to_vec(), [2u8; 32])];
//! let tree_of = |items: &[(u64, Vec<u8>, [u8; 32])]| {
//!     RangeTree::from_items(0, 1000, 4, items.iter().map(|(t, _, h)| (*t, *h)))
//! };
//! let (mut tree_a, mut tree_b) = (tree_of(&items_a)?, tree_of(&items_b)?);
//! let scan = |items: &[(u64, Vec<u8>, [u8; 32])], lo: u64, hi: u64| -> Vec<(Vec<u8>, [u8; 32])> {
//!     items.iter().filter(|(t, _, _)| lo < *t && *t <= hi).map(|(_, k, h)| (k.clone(), *h)).collect()
//! };
//!
//! let mut a = Exchange::initiate(&mut tree_a, ExchangeLimits::default())?;
//! let mut b = Exchange::respond(&tree_b, ExchangeLimits::default())?;
//! let (mut pushed_by_a, mut pushed_by_b) = (Vec::new(), Vec::new());
//! while !(a.is_finished() && b.is_finished()) {
//!     let mut progress = false;
//!     while let Some(action) = a.poll() {
//!         progress = true;
//!         match action {
//!             Action::Send(msg) => b.handle(&mut tree_b, msg)?,
//!             Action::ScanLeaf { leaf, start, end } => a.leaf_items(leaf, scan(&items_a, start, end))?,
//!             Action::Push(keys) => pushed_by_a.extend(keys),
//!         }
//!     }
//!     while let Some(action) = b.poll() {
//!         progress = true;
//!         match action {
//!             Action::Send(msg) => a.handle(&mut tree_a, msg)?,
//!             Action::ScanLeaf { leaf, start, end } => b.leaf_items(leaf, scan(&items_b, start, end))?,
//!             Action::Push(keys) => pushed_by_b.extend(keys),
//!         }
//!     }
//!     assert!(progress);
//! }
//! assert_eq!(pushed_by_a, [b"x".to_vec()]); // b lacks it
//! assert!(pushed_by_b.is_empty()); // a lacks nothing
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod exchange;
mod item;
mod msg;
mod tree;

pub use exchange::{Exchange, ExchangeStats};
pub use item::item_hash;
pub use msg::{Action, ExchangeError, ExchangeLimits, ExchangeMsg, Item, LeafItems};
pub use tree::{RangeTree, TreeError, DEFAULT_DEPTH, MAX_DEPTH, MIN_DEPTH};

/// A blake3 hash: of an item, a leaf or an inner node.
pub type Hash = [u8; 32];
