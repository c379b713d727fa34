//! The Merkle exchange state machine against a peer that follows the protocol until the
//! fuzzer makes it lie. The first step sets up both sides' items; each later step delivers
//! the honest peer's next message, a message of the fuzzer's (postcard, as a frame carries
//! it), or a wrong answer to a leaf scan. Honest runs must repair every difference.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::{merkle_item, MerkleSetup, Steps};
use ringkv::merkle::{Action, Exchange, ExchangeLimits, ExchangeMsg, Item, RangeTree};

/// One side: its items by token, its tree, its exchange and the keys it pushed.
struct Side {
    items: BTreeMap<u64, Item>,
    tree: RangeTree,
    ex: Exchange,
    pushed: BTreeSet<Vec<u8>>,
    failed: bool,
}

impl Side {
    /// Runs the side's actions: scans answered from its items, messages queued for the other.
    fn drive(&mut self, outbox: &mut VecDeque<ExchangeMsg>) {
        while let Some(action) = self.ex.poll() {
            match action {
                Action::Send(msg) => outbox.push_back(msg),
                Action::Push(keys) => self.pushed.extend(keys),
                Action::ScanLeaf { leaf, start, end } => {
                    let items = scan(&self.items, start, end);
                    if self.ex.leaf_items(leaf, items).is_err() {
                        self.failed = true;
                    }
                }
            }
        }
    }

    fn take(&mut self, msg: ExchangeMsg) {
        if self.ex.handle(&mut self.tree, msg).is_err() {
            self.failed = true;
        }
    }
}

/// Items with token in `(start, end]`, wrapping when `start >= end`.
fn scan(items: &BTreeMap<u64, Item>, start: u64, end: u64) -> Vec<Item> {
    items
        .iter()
        .filter(|(t, _)| {
            if start < end {
                start < **t && **t <= end
            } else {
                start < **t || **t <= end
            }
        })
        .map(|(_, item)| item.clone())
        .collect()
}

fn side(
    start: u64,
    end: u64,
    depth: u8,
    keys: &BTreeMap<u8, u8>,
    initiator: bool,
    limits: ExchangeLimits,
) -> Side {
    let items: BTreeMap<u64, Item> = keys
        .iter()
        .map(|(&k, &h)| merkle_item(start, end, k, h))
        .collect();
    let mut tree =
        RangeTree::from_items(start, end, depth, items.iter().map(|(t, (_, h))| (*t, *h)))
            .expect("items are inside the range");
    let ex = if initiator {
        Exchange::initiate(&mut tree, limits)
    } else {
        Exchange::respond(&tree, limits)
    }
    .expect("valid limits");
    Side {
        items,
        tree,
        ex,
        pushed: BTreeSet::new(),
        failed: false,
    }
}

/// Feeds one fuzz input; panics on a broken promise of the code under test.
pub fn run(data: &[u8]) {
    let mut steps = Steps::new(data);
    let Some((_, setup)) = steps.next() else {
        return;
    };
    let Ok(case) = postcard::from_bytes::<MerkleSetup>(setup) else {
        return;
    };
    // Distinct tokens need at least 257 tokens in the range.
    let (start, end) = (case.start, case.end);
    if end.wrapping_sub(start) != 0 && end.wrapping_sub(start) < 257 * 2 {
        return;
    }
    let depth = 1 + case.depth % 8;
    let limits = if case.small_limits {
        ExchangeLimits {
            max_hashes: 3,
            max_items: 3,
            max_item_bytes: 120,
            max_leaf_items: 64,
        }
    } else {
        ExchangeLimits::default()
    };
    let ours: BTreeMap<u8, u8> = case.ours.iter().copied().collect();
    let theirs: BTreeMap<u8, u8> = case.theirs.iter().copied().collect();
    let mut us = side(start, end, depth, &ours, case.initiator, limits);
    let mut peer = side(start, end, depth, &theirs, !case.initiator, limits);
    let (mut to_peer, mut to_us) = (VecDeque::new(), VecDeque::new());
    let mut honest = true;
    let mut steps = steps.take(256);
    for _ in 0..4096 {
        us.drive(&mut to_peer);
        while let Some(msg) = to_peer.pop_front() {
            if !peer.failed {
                peer.take(msg);
            }
        }
        peer.drive(&mut to_us);
        let Some((kind, body)) = steps.next() else {
            break;
        };
        match kind % 3 {
            // The honest peer's next message, if it has one.
            0 => {
                if let Some(msg) = to_us.pop_front() {
                    us.take(msg);
                }
            }
            // A message of the fuzzer's, as a peer's frame carries it.
            1 => {
                if let Ok(msg) = postcard::from_bytes::<ExchangeMsg>(body) {
                    honest = false;
                    us.take(msg);
                }
            }
            // A wrong answer to the side's own leaf scan.
            _ => {
                if let Ok((leaf, items)) = postcard::from_bytes::<(u32, Vec<Item>)>(body) {
                    honest = false;
                    if us.ex.leaf_items(leaf, items).is_err() {
                        us.failed = true;
                    }
                }
            }
        }
    }
    if honest && us.ex.is_finished() && peer.ex.is_finished() {
        // Both sides done without a lie: every key they disagree on was pushed by the side
        // holding it.
        for k in 0..=u8::MAX {
            let (a, b) = (ours.get(&k), theirs.get(&k));
            if a != b {
                let key = vec![k];
                if a.is_some() {
                    assert!(
                        us.pushed.contains(&key),
                        "key {k} not pushed by the side under test"
                    );
                }
                if b.is_some() {
                    assert!(peer.pushed.contains(&key), "key {k} not pushed by the peer");
                }
            }
        }
    }
}
