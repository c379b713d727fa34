//! The sans-IO state machine one side runs to compare its range tree with a peer's: the
//! shared state and the public API here, the tree descent in `descent`, the leaf listings in
//! `leaves`.

mod descent;
mod leaves;

use std::collections::VecDeque;

use self::descent::Descent;
use self::leaves::{check_items, is_subsequence, Compare, Offer};
use super::msg::{Action, ExchangeError, ExchangeLimits, ExchangeMsg, Item};
use super::tree::RangeTree;

/// Counters of one side of an exchange.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExchangeStats {
    /// Messages this side produced.
    pub messages_sent: u64,
    /// Messages this side accepted.
    pub messages_received: u64,
    /// Node hashes this side sent.
    pub hashes_sent: u64,
    /// `(key, hash)` items this side sent.
    pub items_sent: u64,
    /// Leaves found to differ.
    pub differing_leaves: u64,
    /// Keys this side was told to push to the peer.
    pub keys_pushed: u64,
}

/// One side of the comparison of two replicas' trees of the same range: see the
/// [module documentation](super) for the flow and an example.
///
/// Feed it the peer's messages with [`handle`](Self::handle) and the local leaf listings it
/// asks for with [`leaf_items`](Self::leaf_items); after each call drain
/// [`poll`](Self::poll). It never reads a clock or does I/O. Every error ends it.
#[derive(Debug)]
pub struct Exchange {
    initiator: bool,
    shape: Shape,
    limits: ExchangeLimits,
    state: State,
    actions: VecDeque<Action>,
    stats: ExchangeStats,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shape {
    start: u64,
    end: u64,
    depth: u8,
}

impl Shape {
    fn of(tree: &RangeTree) -> Self {
        Shape {
            start: tree.start(),
            end: tree.end(),
            depth: tree.depth(),
        }
    }
}

#[derive(Debug)]
enum State {
    /// Responder, before the initiator's `Open`.
    AwaitOpen,
    /// Comparing inner nodes, one level at a time.
    Descend(Descent),
    /// Initiator: listing its items of the differing leaves.
    Offer(Offer),
    /// Responder: comparing the initiator's listings with its own.
    Compare(Compare),
    Finished,
    Failed,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::AwaitOpen => "awaiting Open",
            State::Descend(_) => "comparing node hashes",
            State::Offer(_) => "offering leaf items",
            State::Compare(_) => "comparing leaf items",
            State::Finished => "finished",
            State::Failed => "failed",
        }
    }
}

impl Exchange {
    /// Starts an exchange as the initiator: [`poll`](Self::poll) yields the `Open` to send.
    ///
    /// # Errors
    /// [`ExchangeError::BadLimits`].
    pub fn initiate(tree: &mut RangeTree, limits: ExchangeLimits) -> Result<Self, ExchangeError> {
        limits.validate()?;
        let shape = Shape::of(tree);
        let mut descent = Descent::new(0, vec![0]);
        descent.in_flight = 1;
        let mut ex = Exchange {
            initiator: true,
            shape,
            limits,
            state: State::Descend(descent),
            actions: VecDeque::new(),
            stats: ExchangeStats::default(),
        };
        ex.send(ExchangeMsg::Open {
            start: shape.start,
            end: shape.end,
            depth: shape.depth,
            root: tree.root(),
        });
        ex.stats.hashes_sent = 1;
        Ok(ex)
    }

    /// Readies the responder side for `tree`; it waits for the initiator's `Open`.
    ///
    /// # Errors
    /// [`ExchangeError::BadLimits`].
    pub fn respond(tree: &RangeTree, limits: ExchangeLimits) -> Result<Self, ExchangeError> {
        limits.validate()?;
        Ok(Exchange {
            initiator: false,
            shape: Shape::of(tree),
            limits,
            state: State::AwaitOpen,
            actions: VecDeque::new(),
            stats: ExchangeStats::default(),
        })
    }

    /// The next thing to do, `None` when the exchange waits for a message or is over.
    pub fn poll(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Whether this side is done: the comparison is over and [`poll`](Self::poll) has
    /// nothing left.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished) && self.actions.is_empty()
    }

    /// This side's counters.
    #[must_use]
    pub fn stats(&self) -> ExchangeStats {
        self.stats
    }

    /// Takes a message from the peer. `tree` is the local tree of the range (it may have
    /// changed since the exchange began: the comparison is then of a moving target, which
    /// is harmless, and the next exchange catches what this one missed).
    ///
    /// # Errors
    /// Anything the peer got wrong (see [`ExchangeError`]), or `tree` not of the exchange's
    /// shape; the exchange is then over.
    pub fn handle(&mut self, tree: &mut RangeTree, msg: ExchangeMsg) -> Result<(), ExchangeError> {
        if matches!(self.state, State::Failed | State::Finished) {
            return Err(ExchangeError::Over);
        }
        let result = self.dispatch(tree, msg);
        match result {
            Ok(()) => self.stats.messages_received += 1,
            Err(_) => self.state = State::Failed,
        }
        result
    }

    /// Hands over the local items of `leaf` (every key with token in its bucket, with its
    /// [`item_hash`](super::item_hash)) after an [`Action::ScanLeaf`].
    ///
    /// # Errors
    /// [`ExchangeError::NotAwaitingLeaf`], [`ExchangeError::TooMany`] over
    /// [`ExchangeLimits::max_leaf_items`], [`ExchangeError::KeyTooLong`] or
    /// [`ExchangeError::DuplicateKey`]; the exchange is then over.
    pub fn leaf_items(&mut self, leaf: u32, items: Vec<Item>) -> Result<(), ExchangeError> {
        let result = self.take_leaf_items(leaf, items);
        if result.is_err() && !matches!(result, Err(ExchangeError::Over)) {
            self.state = State::Failed;
        }
        result
    }

    fn dispatch(&mut self, tree: &mut RangeTree, msg: ExchangeMsg) -> Result<(), ExchangeError> {
        if Shape::of(tree) != self.shape {
            return Err(ExchangeError::TreeMismatch);
        }
        let kind = msg.kind();
        let unexpected = |state: &State| ExchangeError::Unexpected {
            got: kind,
            state: state.name(),
        };
        match (self.initiator, msg) {
            (
                false,
                ExchangeMsg::Open {
                    start,
                    end,
                    depth,
                    root,
                },
            ) => {
                if !matches!(self.state, State::AwaitOpen) {
                    return Err(unexpected(&self.state));
                }
                let theirs = Shape { start, end, depth };
                if theirs != self.shape {
                    return Err(ExchangeError::ShapeMismatch {
                        ours_start: self.shape.start,
                        ours_end: self.shape.end,
                        ours_depth: self.shape.depth,
                        theirs_start: start,
                        theirs_end: end,
                        theirs_depth: depth,
                    });
                }
                self.state = State::Descend(Descent::new(0, vec![0]));
                self.compare_hashes(tree, 0, 0, vec![root])
            }
            (
                false,
                ExchangeMsg::Hashes {
                    level,
                    from,
                    hashes,
                },
            ) => self.compare_hashes(tree, level, from as usize, hashes),
            (false, ExchangeMsg::Items { leaves }) => {
                let State::Compare(compare) = &mut self.state else {
                    return Err(unexpected(&self.state));
                };
                if compare.pending.is_some() {
                    return Err(unexpected(&self.state));
                }
                check_items(compare, &leaves, &self.limits)?;
                compare.pending = Some((leaves, 0));
                self.process_items()
            }
            (true, ExchangeMsg::Differ { level, from, bits }) => {
                self.take_differ(tree, level, from as usize, &bits)
            }
            (true, ExchangeMsg::Want { keys }) => {
                let State::Offer(offer) = &mut self.state else {
                    return Err(unexpected(&self.state));
                };
                let Some(offered) = offer.offered.take() else {
                    return Err(unexpected(&self.state));
                };
                if !is_subsequence(&keys, &offered) {
                    return Err(ExchangeError::UnofferedKey);
                }
                self.push(keys);
                self.fill_offer()
            }
            (_, _) => Err(unexpected(&self.state)),
        }
    }

    fn send(&mut self, msg: ExchangeMsg) {
        self.stats.messages_sent += 1;
        self.actions.push_back(Action::Send(msg));
    }

    fn push(&mut self, keys: Vec<Vec<u8>>) {
        if !keys.is_empty() {
            self.stats.keys_pushed += keys.len() as u64;
            self.actions.push_back(Action::Push(keys));
        }
    }
}

#[cfg(test)]
mod tests;
