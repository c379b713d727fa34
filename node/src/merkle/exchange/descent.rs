//! The top-down comparison of node hashes, one level at a time.

use super::leaves::{Compare, Offer};
use super::{Exchange, State};
use crate::merkle::msg::{ExchangeError, ExchangeMsg};
use crate::merkle::tree::RangeTree;
use crate::merkle::Hash;

/// The candidates of one level: the children of the nodes that differed one level up.
#[derive(Debug)]
pub(super) struct Descent {
    pub(super) level: u8,
    pub(super) candidates: Vec<u32>,
    /// Candidates compared so far.
    pub(super) pos: usize,
    /// Initiator: hashes sent and not yet answered.
    pub(super) in_flight: usize,
    pub(super) differing: Vec<u32>,
}

impl Descent {
    pub(super) fn new(level: u8, candidates: Vec<u32>) -> Self {
        Descent {
            level,
            candidates,
            pos: 0,
            in_flight: 0,
            differing: Vec::new(),
        }
    }
}

/// What follows a finished level.
enum Next {
    Descend(Descent),
    Leaves(Vec<u32>),
    Finished,
}

impl Exchange {
    /// Responder: compares a batch of the initiator's hashes with its own and answers.
    pub(super) fn compare_hashes(
        &mut self,
        tree: &mut RangeTree,
        level: u8,
        from: usize,
        hashes: Vec<Hash>,
    ) -> Result<(), ExchangeError> {
        let State::Descend(d) = &mut self.state else {
            return Err(ExchangeError::Unexpected {
                got: "Hashes",
                state: self.state.name(),
            });
        };
        if level != d.level || from != d.pos {
            return Err(ExchangeError::OutOfStep {
                level: d.level,
                from: d.pos,
                got_level: level,
                got_from: from,
            });
        }
        let room = (d.candidates.len() - d.pos).min(self.limits.max_hashes);
        if hashes.is_empty() {
            return Err(ExchangeError::Malformed("empty Hashes"));
        }
        if hashes.len() > room {
            return Err(ExchangeError::TooMany {
                what: "hashes in a message",
                len: hashes.len(),
                max: room,
            });
        }
        let mut bits = vec![0u8; hashes.len().div_ceil(8)];
        for (i, theirs) in hashes.iter().enumerate() {
            let index = d.candidates[d.pos + i];
            if tree.node(level, index as usize) != Some(*theirs) {
                bits[i / 8] |= 1 << (i % 8);
                d.differing.push(index);
            }
        }
        d.pos += hashes.len();
        let done = d.pos == d.candidates.len();
        self.send(ExchangeMsg::Differ {
            level,
            from: from as u32,
            bits,
        });
        if done {
            self.next_level();
        }
        Ok(())
    }

    /// Initiator: takes the responder's verdict on the hashes in flight.
    pub(super) fn take_differ(
        &mut self,
        tree: &mut RangeTree,
        level: u8,
        from: usize,
        bits: &[u8],
    ) -> Result<(), ExchangeError> {
        let State::Descend(d) = &mut self.state else {
            return Err(ExchangeError::Unexpected {
                got: "Differ",
                state: self.state.name(),
            });
        };
        if level != d.level || from != d.pos || d.in_flight == 0 {
            return Err(ExchangeError::OutOfStep {
                level: d.level,
                from: d.pos,
                got_level: level,
                got_from: from,
            });
        }
        let n = d.in_flight;
        if bits.len() != n.div_ceil(8) || (n % 8 != 0 && bits[n / 8] >> (n % 8) != 0) {
            return Err(ExchangeError::Malformed("Differ bitmap"));
        }
        for i in 0..n {
            if bits[i / 8] & (1 << (i % 8)) != 0 {
                d.differing.push(d.candidates[d.pos + i]);
            }
        }
        d.pos += n;
        d.in_flight = 0;
        if d.pos < d.candidates.len() {
            self.send_hashes(tree);
            return Ok(());
        }
        self.next_level();
        match &self.state {
            State::Descend(_) => self.send_hashes(tree),
            State::Offer(_) => return self.fill_offer(),
            _ => {}
        }
        Ok(())
    }

    /// Initiator: sends the next batch of candidate hashes of the current level.
    pub(super) fn send_hashes(&mut self, tree: &mut RangeTree) {
        let State::Descend(d) = &mut self.state else {
            return;
        };
        let n = (d.candidates.len() - d.pos).min(self.limits.max_hashes);
        let hashes: Vec<Hash> = d.candidates[d.pos..d.pos + n]
            .iter()
            .map(|&i| tree.node(d.level, i as usize).unwrap_or([0; 32]))
            .collect();
        d.in_flight = n;
        let msg = ExchangeMsg::Hashes {
            level: d.level,
            from: d.pos as u32,
            hashes,
        };
        self.stats.hashes_sent += n as u64;
        self.send(msg);
    }

    /// After a level is fully compared: descend, start on the leaves, or finish.
    pub(super) fn next_level(&mut self) {
        let State::Descend(d) = std::mem::replace(&mut self.state, State::Failed) else {
            return;
        };
        let next = if d.level == self.shape.depth {
            Next::Leaves(d.differing)
        } else if d.differing.is_empty() {
            Next::Finished
        } else {
            let children = d
                .differing
                .iter()
                .flat_map(|&i| [2 * i, 2 * i + 1])
                .collect();
            Next::Descend(Descent::new(d.level + 1, children))
        };
        self.state = match next {
            Next::Descend(d) => State::Descend(d),
            Next::Leaves(leaves) if leaves.is_empty() => State::Finished,
            Next::Leaves(leaves) => {
                self.stats.differing_leaves = leaves.len() as u64;
                if self.initiator {
                    State::Offer(Offer {
                        leaves,
                        ..Offer::default()
                    })
                } else {
                    State::Compare(Compare {
                        leaves,
                        ..Compare::default()
                    })
                }
            }
            Next::Finished => State::Finished,
        };
    }
}
