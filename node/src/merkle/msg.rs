//! What an exchange sends, asks its caller for, and the limits and errors around it.

use super::Hash;

/// One key and its [`item_hash`](super::item_hash), as listed for a leaf bucket.
pub type Item = (Vec<u8>, Hash);

/// A message between the two sides of an exchange (serialised by the caller, e.g. with
/// postcard). See the [module documentation](super) for the flow.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExchangeMsg {
    /// Initiator → responder: opens the exchange of one range's trees.
    Open {
        /// The range's exclusive start.
        start: u64,
        /// The range's inclusive end.
        end: u64,
        /// The tree depth; the responder's must match.
        depth: u8,
        /// The initiator's root hash.
        root: Hash,
    },
    /// Initiator → responder: hashes of the next candidate nodes at `level` (the children of
    /// the nodes found differing one level up, in index order), from position `from` of that
    /// candidate list.
    Hashes {
        /// The tree level (1 = the root's children).
        level: u8,
        /// Position in the level's candidate list of the first hash.
        from: u32,
        /// The hashes, at most [`ExchangeLimits::max_hashes`].
        hashes: Vec<Hash>,
    },
    /// Responder → initiator: which of the hashes just received differ from the responder's,
    /// one bit per hash (bit `i % 8` of byte `i / 8`), unused bits zero.
    Differ {
        /// The level the answer is about.
        level: u8,
        /// The `from` of the message answered.
        from: u32,
        /// The bitmap.
        bits: Vec<u8>,
    },
    /// Initiator → responder: its items in the next differing leaves, in leaf order.
    Items {
        /// Leaf lists, at most [`ExchangeLimits::max_items`] of them.
        leaves: Vec<LeafItems>,
    },
    /// Responder → initiator: the keys of the last [`ExchangeMsg::Items`] the responder lacks
    /// or holds another version of, in the order they were listed: the initiator sends
    /// them. (The keys it lacks the responder sends without asking.)
    Want {
        /// The keys.
        keys: Vec<Vec<u8>>,
    },
}

impl ExchangeMsg {
    /// The variant's name, for errors and logs.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            ExchangeMsg::Open { .. } => "Open",
            ExchangeMsg::Hashes { .. } => "Hashes",
            ExchangeMsg::Differ { .. } => "Differ",
            ExchangeMsg::Items { .. } => "Items",
            ExchangeMsg::Want { .. } => "Want",
        }
    }
}

/// The initiator's items in one leaf bucket, or a part of them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeafItems {
    /// The leaf index.
    pub leaf: u32,
    /// `(key, item hash)` pairs, in any order, no key twice.
    pub items: Vec<Item>,
    /// More items of this leaf follow in the next message (only on a message's last leaf).
    pub more: bool,
}

/// What the caller of an exchange must do next, from [`Exchange::poll`](super::Exchange::poll).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this message to the peer.
    Send(ExchangeMsg),
    /// List the local `(key, item hash)` pairs with token in `(start, end]` (a store scan of
    /// leaf `leaf`'s bucket) and hand them to
    /// [`Exchange::leaf_items`](super::Exchange::leaf_items); the exchange waits for them.
    ScanLeaf {
        /// The leaf.
        leaf: u32,
        /// Exclusive start token of the bucket.
        start: u64,
        /// Inclusive end token of the bucket.
        end: u64,
    },
    /// Send the peer the local records of these keys (they differ or the peer lacks them).
    /// A key the store no longer holds needs nothing sent.
    Push(Vec<Vec<u8>>),
}

/// Bounds on one exchange. Both sides should use the same; a side rejects what exceeds its
/// own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExchangeLimits {
    /// Hashes per [`ExchangeMsg::Hashes`] (32 bytes each).
    pub max_hashes: usize,
    /// Leaf lists, and separately items, per [`ExchangeMsg::Items`].
    pub max_items: usize,
    /// Bytes of items per [`ExchangeMsg::Items`], counting each as its key length plus 32.
    /// No key longer than `max_item_bytes - 32` can be exchanged.
    pub max_item_bytes: usize,
    /// Items of one leaf bucket, in a side's own listing (held in memory) and in what the
    /// initiator lists for it; a bucket with more makes the exchange fail (a deeper tree
    /// fixes that).
    pub max_leaf_items: usize,
}

impl Default for ExchangeLimits {
    /// 4096 hashes (128 KiB) or 4096 items / 1 MiB per message; 256 Ki items per leaf.
    fn default() -> Self {
        ExchangeLimits {
            max_hashes: 4096,
            max_items: 4096,
            max_item_bytes: 1 << 20,
            max_leaf_items: 1 << 18,
        }
    }
}

impl ExchangeLimits {
    /// Checks that every limit lets the exchange make progress.
    ///
    /// # Errors
    /// [`ExchangeError::BadLimits`] for a zero limit or `max_item_bytes` of 32 or less.
    pub fn validate(&self) -> Result<(), ExchangeError> {
        if self.max_hashes == 0 || self.max_items == 0 || self.max_leaf_items == 0 {
            return Err(ExchangeError::BadLimits("a limit is zero"));
        }
        if self.max_item_bytes <= ITEM_OVERHEAD {
            return Err(ExchangeError::BadLimits(
                "max_item_bytes leaves no room for a key",
            ));
        }
        Ok(())
    }
}

/// Bytes an item counts beyond its key: its hash.
pub(super) const ITEM_OVERHEAD: usize = 32;

/// Why an exchange failed. Every error ends the exchange: drop it (and, for a peer's
/// error, count it and close that stream).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// Limits that would let nothing through.
    #[error("invalid exchange limits: {0}")]
    BadLimits(&'static str),
    /// The peer's tree covers another range or has another depth.
    #[error("peer tree is ({theirs_start}, {theirs_end}] at depth {theirs_depth}, ours is ({ours_start}, {ours_end}] at depth {ours_depth}")]
    ShapeMismatch {
        /// Our range start.
        ours_start: u64,
        /// Our range end.
        ours_end: u64,
        /// Our depth.
        ours_depth: u8,
        /// The peer's range start.
        theirs_start: u64,
        /// The peer's range end.
        theirs_end: u64,
        /// The peer's depth.
        theirs_depth: u8,
    },
    /// The caller passed a tree of another shape than the exchange started with.
    #[error("the tree passed is not the one this exchange compares")]
    TreeMismatch,
    /// A message this side does not expect now.
    #[error("unexpected {got} message while {state}")]
    Unexpected {
        /// The message kind.
        got: &'static str,
        /// What the exchange was doing.
        state: &'static str,
    },
    /// A message about another level or position than the one in progress.
    #[error("message is about level {got_level} position {got_from}, expected level {level} position {from}")]
    OutOfStep {
        /// The level in progress.
        level: u8,
        /// The position expected.
        from: usize,
        /// The level in the message.
        got_level: u8,
        /// The position in the message.
        got_from: usize,
    },
    /// A message carrying more than the limits allow, or more than there is to say.
    #[error("{what}: {len} is over the limit of {max}")]
    TooMany {
        /// What was counted.
        what: &'static str,
        /// How many there were.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// A message that says too little, or a bitmap of the wrong size or with stray bits.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// Items for a leaf other than the next differing one.
    #[error("items for leaf {got}, expected {expected:?}")]
    WrongLeaf {
        /// The leaf expected next (`None`: no more leaves).
        expected: Option<u32>,
        /// The leaf in the message.
        got: u32,
    },
    /// The same key listed twice in one leaf.
    #[error("key listed twice in leaf {leaf}")]
    DuplicateKey {
        /// The leaf.
        leaf: u32,
    },
    /// A key too long for [`ExchangeLimits::max_item_bytes`].
    #[error("key of {len} bytes is over the exchange limit of {max}")]
    KeyTooLong {
        /// Its length.
        len: usize,
        /// The longest allowed.
        max: usize,
    },
    /// A [`ExchangeMsg::Want`] naming a key that was not offered, or out of order.
    #[error("peer wants a key that was not offered (or out of order)")]
    UnofferedKey,
    /// Leaf items handed in that the exchange did not ask for.
    #[error("leaf {leaf} items were not asked for")]
    NotAwaitingLeaf {
        /// The leaf handed in.
        leaf: u32,
    },
    /// The exchange already failed or finished.
    #[error("the exchange is over")]
    Over,
}
