//! The record of every client operation: what was invoked, when, through which node, and
//! what came back. The checker reads only this (plus a few facts about the run).

use std::collections::BTreeSet;

use ringkv::version::Context;

/// What an operation asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Read at quorum `r`.
    Get {
        /// Replies waited for.
        r: u8,
    },
    /// Write the operation's unique value at quorum `w`.
    Put {
        /// Acknowledgements waited for.
        w: u8,
        /// The read whose context the write carried (`None`: a blind write).
        ctx_from: Option<u64>,
    },
    /// Delete at quorum `w`.
    Delete {
        /// Acknowledgements waited for.
        w: u8,
        /// The read whose context the delete carried.
        ctx_from: Option<u64>,
    },
}

impl OpKind {
    /// The write quorum, for puts and deletes.
    pub fn w(&self) -> Option<u8> {
        match self {
            OpKind::Put { w, .. } | OpKind::Delete { w, .. } => Some(*w),
            OpKind::Get { .. } => None,
        }
    }

    /// The read whose context a put or delete carried.
    pub fn ctx_from(&self) -> Option<u64> {
        match self {
            OpKind::Put { ctx_from, .. } | OpKind::Delete { ctx_from, .. } => *ctx_from,
            OpKind::Get { .. } => None,
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No answer yet.
    Pending,
    /// A read succeeded: the operations whose values it returned, and its context.
    Read {
        /// Ids of the puts whose values came back.
        values: BTreeSet<u64>,
        /// Values that are no put's (corruption); kept for the report.
        unknown: Vec<Vec<u8>>,
        /// The causal context returned.
        context: Context,
    },
    /// A put or delete reached its quorum.
    Written,
    /// Refused before any replica was asked (bad request, overload, unreachable node).
    NoEffect,
    /// Failed or unanswered: it may or may not have reached replicas.
    Maybe(String),
}

/// One client operation.
#[derive(Clone, Debug)]
pub struct Op {
    /// Unique id; a put's value is `v{id}`.
    pub id: u64,
    /// The client that issued it.
    pub client: usize,
    /// Key index (the key is `key{index}`).
    pub key: usize,
    /// What it asked.
    pub kind: OpKind,
    /// The node it went to.
    pub coordinator: usize,
    /// When the client sent it, microseconds.
    pub invoked_us: u64,
    /// When the client got the answer (or gave up).
    pub completed_us: Option<u64>,
    /// The key's replicas as the coordinator saw them, sorted.
    pub preference: Option<Vec<String>>,
    /// The result.
    pub outcome: Outcome,
    /// Puts this one overwrote for sure (the values its context's read returned, and
    /// transitively what those overwrote).
    pub covers_lo: BTreeSet<u64>,
    /// Puts and deletes this one may have overwritten (also hidden tombstones and what they
    /// covered).
    pub covers_hi: BTreeSet<u64>,
}

impl Op {
    /// Whether this is a put or a delete.
    pub fn is_write(&self) -> bool {
        !matches!(self.kind, OpKind::Get { .. })
    }

    /// Whether it finished before `t`.
    pub fn done_before(&self, t: u64) -> bool {
        self.completed_us.is_some_and(|c| c < t)
    }
}

/// The value a put writes.
pub fn value_of(id: u64) -> Vec<u8> {
    format!("v{id}").into_bytes()
}

/// The put a value came from, if it is one of ours.
pub fn op_of_value(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value.strip_prefix(b"v")?)
        .ok()?
        .parse()
        .ok()
}

/// The bytes of key `index`.
pub fn key_bytes(index: usize) -> Vec<u8> {
    format!("key{index}").into_bytes()
}

/// Every operation of a run, by id (ids are dense from 0).
#[derive(Clone, Debug, Default)]
pub struct History {
    ops: Vec<Op>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a new operation at `now`; returns its id. Its cover sets are computed here,
    /// from the history so far.
    pub fn invoke(
        &mut self,
        client: usize,
        key: usize,
        kind: OpKind,
        node: usize,
        now: u64,
    ) -> u64 {
        let id = self.ops.len() as u64;
        let (covers_lo, covers_hi) = self.covers(key, &kind);
        self.ops.push(Op {
            id,
            client,
            key,
            kind,
            coordinator: node,
            invoked_us: now,
            completed_us: None,
            preference: None,
            outcome: Outcome::Pending,
            covers_lo,
            covers_hi,
        });
        id
    }

    fn covers(&self, key: usize, kind: &OpKind) -> (BTreeSet<u64>, BTreeSet<u64>) {
        let mut lo = BTreeSet::new();
        let mut hi = BTreeSet::new();
        let Some(read) = kind.ctx_from().and_then(|r| self.get(r)) else {
            return (lo, hi);
        };
        if let Outcome::Read { values, .. } = &read.outcome {
            for &v in values {
                lo.insert(v);
                hi.insert(v);
                if let Some(put) = self.get(v) {
                    lo.extend(put.covers_lo.iter().copied());
                    hi.extend(put.covers_hi.iter().copied());
                }
            }
        }
        // Tombstones never show in a read, yet its context covers those it merged.
        let read_done = read.completed_us.unwrap_or(u64::MAX);
        for d in self.ops.iter().filter(|o| {
            o.key == key && matches!(o.kind, OpKind::Delete { .. }) && o.invoked_us < read_done
        }) {
            hi.insert(d.id);
            hi.extend(d.covers_hi.iter().copied());
        }
        (lo, hi)
    }

    /// Records how operation `id` ended (the first answer wins).
    pub fn complete(
        &mut self,
        id: u64,
        now: u64,
        outcome: Outcome,
        preference: Option<Vec<String>>,
    ) -> bool {
        let Some(op) = self.ops.get_mut(usize::try_from(id).unwrap_or(usize::MAX)) else {
            return false;
        };
        if op.outcome != Outcome::Pending {
            return false;
        }
        op.outcome = outcome;
        op.completed_us = Some(now);
        op.preference = preference.map(|mut p| {
            p.sort();
            p
        });
        true
    }

    /// Operation `id`.
    pub fn get(&self, id: u64) -> Option<&Op> {
        self.ops.get(usize::try_from(id).ok()?)
    }

    /// Every operation, in invocation order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Operations on `key`.
    pub fn on_key(&self, key: usize) -> impl Iterator<Item = &Op> {
        self.ops.iter().filter(move |o| o.key == key)
    }

    /// Operations still waiting for an answer.
    pub fn pending(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| o.outcome == Outcome::Pending)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_of(values: &[u64]) -> Outcome {
        Outcome::Read {
            values: values.iter().copied().collect(),
            unknown: vec![],
            context: Context::default(),
        }
    }

    #[test]
    fn values_map_back_to_their_puts() {
        assert_eq!(op_of_value(&value_of(42)), Some(42));
        assert_eq!(op_of_value(b"x42"), None);
        assert_eq!(op_of_value(b"v"), None);
    }

    #[test]
    fn covers_follow_contexts_transitively() {
        let mut h = History::new();
        let p0 = h.invoke(
            0,
            0,
            OpKind::Put {
                w: 2,
                ctx_from: None,
            },
            0,
            0,
        );
        h.complete(p0, 1, Outcome::Written, None);
        let r1 = h.invoke(0, 0, OpKind::Get { r: 2 }, 0, 2);
        h.complete(r1, 3, read_of(&[p0]), None);
        let p2 = h.invoke(
            0,
            0,
            OpKind::Put {
                w: 2,
                ctx_from: Some(r1),
            },
            0,
            4,
        );
        h.complete(p2, 5, Outcome::Written, None);
        let r3 = h.invoke(1, 0, OpKind::Get { r: 2 }, 1, 6);
        h.complete(r3, 7, read_of(&[p2]), None);
        let d4 = h.invoke(
            1,
            0,
            OpKind::Delete {
                w: 2,
                ctx_from: Some(r3),
            },
            1,
            8,
        );
        let d = h.get(d4).unwrap();
        assert_eq!(d.covers_lo, BTreeSet::from([p0, p2]));
        // A blind put covers nothing, and only the first answer counts.
        let p5 = h.invoke(
            1,
            0,
            OpKind::Put {
                w: 1,
                ctx_from: None,
            },
            1,
            9,
        );
        assert!(h.get(p5).unwrap().covers_hi.is_empty());
        assert!(h.complete(d4, 10, Outcome::Written, None));
        assert!(!h.complete(d4, 11, Outcome::NoEffect, None));
        assert_eq!(h.pending(), 1);
    }

    #[test]
    fn a_read_context_may_cover_deletes_it_cannot_show() {
        let mut h = History::new();
        let p0 = h.invoke(
            0,
            0,
            OpKind::Put {
                w: 2,
                ctx_from: None,
            },
            0,
            0,
        );
        h.complete(p0, 1, Outcome::Written, None);
        let r1 = h.invoke(0, 0, OpKind::Get { r: 2 }, 0, 2);
        h.complete(r1, 3, read_of(&[p0]), None);
        let d2 = h.invoke(
            0,
            0,
            OpKind::Delete {
                w: 2,
                ctx_from: Some(r1),
            },
            0,
            4,
        );
        h.complete(d2, 5, Outcome::Written, None);
        let r3 = h.invoke(1, 0, OpKind::Get { r: 2 }, 1, 6);
        h.complete(r3, 7, read_of(&[]), None);
        let p4 = h.invoke(
            1,
            0,
            OpKind::Put {
                w: 2,
                ctx_from: Some(r3),
            },
            1,
            8,
        );
        let p = h.get(p4).unwrap();
        assert!(p.covers_lo.is_empty());
        assert_eq!(p.covers_hi, BTreeSet::from([p0, d2]));
    }
}
