//! The leaf phase: the initiator lists its items of each differing leaf, the responder
//! merges them with its own and says who sends what.

use super::{Exchange, State};
use crate::merkle::msg::{
    Action, ExchangeError, ExchangeLimits, ExchangeMsg, Item, LeafItems, ITEM_OVERHEAD,
};
use crate::merkle::tree::bucket_bounds;

/// Initiator's leaf phase.
#[derive(Debug, Default)]
pub(super) struct Offer {
    pub(super) leaves: Vec<u32>,
    /// Index in `leaves` of the next leaf to list.
    pub(super) next: usize,
    /// The leaf being sent: its sorted items and how many went out.
    pub(super) current: Option<(u32, Vec<Item>, usize)>,
    /// The message being built.
    pub(super) batch: Vec<LeafItems>,
    pub(super) batch_items: usize,
    pub(super) batch_bytes: usize,
    /// The leaf asked for with `ScanLeaf`.
    pub(super) scanning: Option<u32>,
    /// Keys of the `Items` sent and not yet answered.
    pub(super) offered: Option<Vec<Vec<u8>>>,
}

/// Responder's leaf phase.
#[derive(Debug, Default)]
pub(super) struct Compare {
    pub(super) leaves: Vec<u32>,
    /// Index in `leaves` of the leaf expected (being compared if `current` is set).
    pub(super) next: usize,
    /// The leaf being compared.
    pub(super) current: Option<LeafMerge>,
    /// The `Items` message being processed and the index of its next leaf list.
    pub(super) pending: Option<(Vec<LeafItems>, usize)>,
    pub(super) scanning: Option<u32>,
    pub(super) want: Vec<Vec<u8>>,
    pub(super) push: Vec<Vec<u8>>,
}

/// The responder's side of one leaf: its items, merged with the initiator's as they come.
#[derive(Debug, Default)]
pub(super) struct LeafMerge {
    /// Local items, sorted by key.
    local: Vec<Item>,
    /// Local items already passed in the merge.
    matched: usize,
    /// The last key the initiator listed (its keys must ascend across messages).
    last: Option<Vec<u8>>,
    /// Keys the initiator listed for this leaf so far.
    listed: usize,
}

impl LeafMerge {
    pub(super) fn new(local: Vec<Item>) -> Self {
        LeafMerge {
            local,
            ..LeafMerge::default()
        }
    }

    /// Merges a part of the initiator's (ascending) listing: keys it lacks or holds
    /// differently go to `want`, keys it lacks or holds differently here go to `push`.
    fn merge(
        &mut self,
        theirs: Vec<Item>,
        max_leaf_items: usize,
        want: &mut Vec<Vec<u8>>,
        push: &mut Vec<Vec<u8>>,
    ) -> Result<(), ExchangeError> {
        self.listed = self.listed.saturating_add(theirs.len());
        if self.listed > max_leaf_items {
            return Err(ExchangeError::TooMany {
                what: "items listed for a leaf",
                len: self.listed,
                max: max_leaf_items,
            });
        }
        for (key, hash) in theirs {
            if self.last.as_ref().is_some_and(|l| *l >= key) {
                return Err(ExchangeError::Malformed(
                    "leaf keys not in strictly ascending order",
                ));
            }
            // Local keys before this one are missing on the initiator.
            while let Some((mine, _)) = self.local.get(self.matched).filter(|(k, _)| *k < key) {
                push.push(mine.clone());
                self.matched += 1;
            }
            match self.local.get(self.matched) {
                Some((mine, ours)) if *mine == key => {
                    if *ours != hash {
                        push.push(key.clone());
                        want.push(key.clone());
                    }
                    self.matched += 1;
                }
                _ => want.push(key.clone()),
            }
            self.last = Some(key);
        }
        Ok(())
    }

    /// The initiator's listing is complete: every local key left is missing there.
    fn finish(self, push: &mut Vec<Vec<u8>>) {
        push.extend(self.local.into_iter().skip(self.matched).map(|(k, _)| k));
    }
}

impl Exchange {
    pub(super) fn take_leaf_items(
        &mut self,
        leaf: u32,
        mut items: Vec<Item>,
    ) -> Result<(), ExchangeError> {
        let scanning = match &mut self.state {
            State::Offer(o) => &mut o.scanning,
            State::Compare(c) => &mut c.scanning,
            State::Finished | State::Failed => return Err(ExchangeError::Over),
            _ => return Err(ExchangeError::NotAwaitingLeaf { leaf }),
        };
        if *scanning != Some(leaf) {
            return Err(ExchangeError::NotAwaitingLeaf { leaf });
        }
        check_leaf(leaf, &mut items, &self.limits)?;
        match &mut self.state {
            State::Offer(o) => {
                o.scanning = None;
                o.current = Some((leaf, items, 0));
                self.fill_offer()
            }
            State::Compare(c) => {
                c.scanning = None;
                c.current = Some(LeafMerge::new(items));
                self.process_items()
            }
            _ => Err(ExchangeError::NotAwaitingLeaf { leaf }),
        }
    }

    /// Initiator: fills the next `Items` message, asking for leaf scans as needed, and sends
    /// it; finishes when every differing leaf went out and was answered.
    pub(super) fn fill_offer(&mut self) -> Result<(), ExchangeError> {
        let shape = self.shape;
        let limits = self.limits;
        let State::Offer(o) = &mut self.state else {
            return Ok(());
        };
        loop {
            if o.batch.len() >= limits.max_items {
                break;
            }
            if o.current.is_none() {
                let Some(&leaf) = o.leaves.get(o.next) else {
                    break;
                };
                o.next += 1;
                match bucket_bounds(shape.start, shape.end, shape.depth, leaf as usize) {
                    Some((start, end)) => {
                        o.scanning = Some(leaf);
                        self.actions
                            .push_back(Action::ScanLeaf { leaf, start, end });
                        return Ok(());
                    }
                    None => o.current = Some((leaf, Vec::new(), 0)),
                }
            }
            let Some((leaf, items, pos)) = &mut o.current else {
                break;
            };
            let mut chunk = Vec::new();
            while let Some(item) = items.get_mut(*pos) {
                let cost = item.0.len() + ITEM_OVERHEAD;
                if o.batch_items >= limits.max_items || o.batch_bytes + cost > limits.max_item_bytes
                {
                    break;
                }
                chunk.push(std::mem::take(item));
                *pos += 1;
                o.batch_items += 1;
                o.batch_bytes += cost;
            }
            let more = *pos < items.len();
            if more && chunk.is_empty() && !o.batch.is_empty() {
                break; // no room left: this leaf starts the next message
            }
            o.batch.push(LeafItems {
                leaf: *leaf,
                items: chunk,
                more,
            });
            if more {
                break;
            }
            o.current = None;
        }
        if o.batch.is_empty() {
            self.state = State::Finished;
            return Ok(());
        }
        let leaves = std::mem::take(&mut o.batch);
        o.batch_items = 0;
        o.batch_bytes = 0;
        let offered: Vec<Vec<u8>> = leaves
            .iter()
            .flat_map(|l| l.items.iter().map(|(k, _)| k.clone()))
            .collect();
        self.stats.items_sent += offered.len() as u64;
        o.offered = Some(offered);
        self.send(ExchangeMsg::Items { leaves });
        Ok(())
    }

    /// Responder: compares the pending `Items` leaf by leaf, asking for local scans as
    /// needed; answers `Want` once the whole message is compared.
    pub(super) fn process_items(&mut self) -> Result<(), ExchangeError> {
        let shape = self.shape;
        let limits = self.limits;
        let State::Compare(c) = &mut self.state else {
            return Ok(());
        };
        let Some((mut lists, mut idx)) = c.pending.take() else {
            return Ok(());
        };
        while let Some(leaf) = lists.get(idx).map(|l| l.leaf) {
            if c.current.is_none() {
                match bucket_bounds(shape.start, shape.end, shape.depth, leaf as usize) {
                    Some((start, end)) => {
                        c.scanning = Some(leaf);
                        c.pending = Some((lists, idx));
                        self.actions
                            .push_back(Action::ScanLeaf { leaf, start, end });
                        return Ok(());
                    }
                    None => c.current = Some(LeafMerge::default()),
                }
            }
            let (Some(list), Some(merge)) = (lists.get_mut(idx), &mut c.current) else {
                break;
            };
            merge.merge(
                std::mem::take(&mut list.items),
                limits.max_leaf_items,
                &mut c.want,
                &mut c.push,
            )?;
            if !list.more {
                if let Some(merge) = c.current.take() {
                    merge.finish(&mut c.push);
                }
                c.next += 1;
            }
            idx += 1;
        }
        let want = std::mem::take(&mut c.want);
        let push = std::mem::take(&mut c.push);
        let finished = c.next == c.leaves.len();
        self.send(ExchangeMsg::Want { keys: want });
        self.push(push);
        if finished {
            self.state = State::Finished;
        }
        Ok(())
    }
}

/// Checks an `Items` message against the limits and the leaves expected next.
pub(super) fn check_items(
    c: &Compare,
    lists: &[LeafItems],
    limits: &ExchangeLimits,
) -> Result<(), ExchangeError> {
    if lists.is_empty() {
        return Err(ExchangeError::Malformed("empty Items"));
    }
    if lists.len() > limits.max_items {
        return Err(ExchangeError::TooMany {
            what: "leaf lists in a message",
            len: lists.len(),
            max: limits.max_items,
        });
    }
    let items: usize = lists.iter().map(|l| l.items.len()).sum();
    if items > limits.max_items {
        return Err(ExchangeError::TooMany {
            what: "items in a message",
            len: items,
            max: limits.max_items,
        });
    }
    let bytes = lists
        .iter()
        .flat_map(|l| &l.items)
        .fold(0usize, |sum, (k, _)| {
            sum.saturating_add(k.len() + ITEM_OVERHEAD)
        });
    if bytes > limits.max_item_bytes {
        return Err(ExchangeError::TooMany {
            what: "item bytes in a message",
            len: bytes,
            max: limits.max_item_bytes,
        });
    }
    let mut expected = c.next;
    for (i, list) in lists.iter().enumerate() {
        let want = c.leaves.get(expected).copied();
        if want != Some(list.leaf) {
            return Err(ExchangeError::WrongLeaf {
                expected: want,
                got: list.leaf,
            });
        }
        if list.more {
            if i + 1 != lists.len() {
                return Err(ExchangeError::Malformed("a continued leaf before the last"));
            }
            // Each part of a continued leaf carries items, so a leaf ends after at most
            // `max_leaf_items` of them.
            if list.items.is_empty() {
                return Err(ExchangeError::Malformed("a continued leaf with no items"));
            }
        } else {
            expected += 1;
        }
    }
    Ok(())
}

/// Checks and sorts a local leaf listing.
fn check_leaf(leaf: u32, items: &mut [Item], limits: &ExchangeLimits) -> Result<(), ExchangeError> {
    if items.len() > limits.max_leaf_items {
        return Err(ExchangeError::TooMany {
            what: "items in a leaf",
            len: items.len(),
            max: limits.max_leaf_items,
        });
    }
    let max = limits.max_item_bytes - ITEM_OVERHEAD;
    if let Some((key, _)) = items.iter().find(|(k, _)| k.len() > max) {
        return Err(ExchangeError::KeyTooLong {
            len: key.len(),
            max,
        });
    }
    items.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if items.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(ExchangeError::DuplicateKey { leaf });
    }
    Ok(())
}

/// Whether `sub` lists some of `all`'s keys, in `all`'s order, none twice.
pub(super) fn is_subsequence(sub: &[Vec<u8>], all: &[Vec<u8>]) -> bool {
    let mut rest = all.iter();
    sub.iter().all(|k| rest.any(|a| a == k))
}
