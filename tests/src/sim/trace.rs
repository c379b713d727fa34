//! The event trace: a running hash of every event (the run's fingerprint) and the last
//! events in readable form, printed when a run fails.

use std::collections::VecDeque;
use std::fmt;

/// How many recent events a trace keeps by default.
pub const DEFAULT_TAIL: usize = 300;

/// Why a message never arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Random loss.
    Loss,
    /// A partition blocks the link.
    Partition,
    /// Nobody runs at the destination.
    NoNode,
    /// The destination's receive buffer was full while it was paused.
    Overflow,
}

/// One thing that happened in the world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    /// A gossip datagram was delivered (`payload` is a hash of its bytes).
    Datagram {
        /// Sender.
        from: usize,
        /// Payload size in bytes.
        len: usize,
        /// Hash of the payload.
        payload: u64,
    },
    /// A message was lost on the way to the traced node.
    Dropped {
        /// Sender.
        from: usize,
        /// `datagram`, `call` or `reply`.
        kind: &'static str,
        /// Why.
        why: DropReason,
    },
    /// A timer of the node fired (`gossip` or `deadline`).
    Timer(&'static str),
    /// A peer call reached the traced node.
    CallIn {
        /// The world's id of the call.
        call: u64,
        /// Caller.
        from: usize,
        /// `write`, `replicate` or `read`.
        req: &'static str,
    },
    /// The answer to a call (or its failure) reached the traced caller.
    CallDone {
        /// The world's id of the call.
        call: u64,
        /// Whether it succeeded.
        ok: bool,
    },
    /// The node's store was synced, releasing this many responses.
    Synced(usize),
    /// A client sent a request to the traced coordinator.
    ClientSent(String),
    /// A client got its answer.
    ClientDone(String),
    /// The node's membership changed.
    Member(String),
    /// A fault or phase change of the run.
    Fault(String),
    /// What a replica did with a write (the dot it made, the context it got).
    Replica(String),
}

/// One trace line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Simulated time in microseconds.
    pub at_us: u64,
    /// The node it happened on, if any.
    pub node: Option<usize>,
    /// What happened.
    pub what: What,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.at_us / 1_000_000;
        let micros = self.at_us % 1_000_000;
        write!(f, "{secs:>4}.{micros:06}s ")?;
        match self.node {
            Some(n) => write!(f, "n{n:<3} ")?,
            None => write!(f, "---- ")?,
        }
        match &self.what {
            What::Datagram { from, len, payload } => {
                write!(f, "datagram from n{from} ({len} B, #{payload:016x})")
            }
            What::Dropped { from, kind, why } => {
                write!(f, "{kind} from n{from} lost ({why:?})")
            }
            What::Timer(kind) => write!(f, "timer {kind}"),
            What::CallIn { call, from, req } => write!(f, "call #{call} {req} from n{from}"),
            What::CallDone { call, ok } => {
                write!(
                    f,
                    "call #{call} {}",
                    if *ok { "answered" } else { "failed" }
                )
            }
            What::Synced(n) => write!(f, "store synced, {n} response(s) released"),
            What::ClientSent(s) => write!(f, "client -> {s}"),
            What::ClientDone(s) => write!(f, "client <- {s}"),
            What::Member(s) => write!(f, "membership: {s}"),
            What::Fault(s) => write!(f, "** {s}"),
            What::Replica(s) => write!(f, "replica: {s}"),
        }
    }
}

/// A running FNV-1a hash of every event plus the last events kept for printing.
///
/// ```
/// use ringkv_tests::sim::trace::{Trace, What};
/// let mut a = Trace::new(10);
/// let mut b = Trace::new(10);
/// for t in [&mut a, &mut b] {
///     t.record(5, Some(1), What::Timer("gossip"));
/// }
/// assert_eq!(a.hash(), b.hash());
/// ```
#[derive(Clone, Debug)]
pub struct Trace {
    hash: u64,
    events: u64,
    tail: VecDeque<Entry>,
    capacity: usize,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a of `bytes`, continuing from `hash`: stable across platforms and Rust releases.
pub fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// FNV-1a of `bytes` from the standard offset.
pub fn fnv_of(bytes: &[u8]) -> u64 {
    fnv(FNV_OFFSET, bytes)
}

impl Trace {
    /// An empty trace keeping the last `capacity` events.
    pub fn new(capacity: usize) -> Self {
        Self {
            hash: FNV_OFFSET,
            events: 0,
            tail: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
        }
    }

    /// Adds one event.
    pub fn record(&mut self, at_us: u64, node: Option<usize>, what: What) {
        self.events += 1;
        let mut h = fnv(self.hash, &at_us.to_le_bytes());
        let node_code = node.map_or(u64::MAX, |n| n as u64);
        h = fnv(h, &node_code.to_le_bytes());
        h = match &what {
            What::Datagram { from, len, payload } => {
                let h = fnv(h, &[1]);
                let h = fnv(h, &(*from as u64).to_le_bytes());
                let h = fnv(h, &(*len as u64).to_le_bytes());
                fnv(h, &payload.to_le_bytes())
            }
            What::Dropped { from, kind, why } => {
                let h = fnv(h, &[2, *why as u8]);
                let h = fnv(h, kind.as_bytes());
                fnv(h, &(*from as u64).to_le_bytes())
            }
            What::Timer(kind) => fnv(fnv(h, &[3]), kind.as_bytes()),
            What::CallIn { call, from, req } => {
                let h = fnv(h, &[4]);
                let h = fnv(h, &call.to_le_bytes());
                let h = fnv(h, &(*from as u64).to_le_bytes());
                fnv(h, req.as_bytes())
            }
            What::CallDone { call, ok } => fnv(fnv(h, &[5, u8::from(*ok)]), &call.to_le_bytes()),
            What::Synced(n) => fnv(fnv(h, &[6]), &(*n as u64).to_le_bytes()),
            What::ClientSent(s) => fnv(fnv(h, &[7]), s.as_bytes()),
            What::ClientDone(s) => fnv(fnv(h, &[8]), s.as_bytes()),
            What::Member(s) => fnv(fnv(h, &[9]), s.as_bytes()),
            What::Fault(s) => fnv(fnv(h, &[10]), s.as_bytes()),
            What::Replica(s) => fnv(fnv(h, &[11]), s.as_bytes()),
        };
        self.hash = h;
        if self.capacity > 0 {
            if self.tail.len() == self.capacity {
                self.tail.pop_front();
            }
            self.tail.push_back(Entry { at_us, node, what });
        }
    }

    /// The hash of every event so far: equal for equal runs.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// How many events were recorded.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The last events, oldest first.
    pub fn tail(&self) -> impl Iterator<Item = &Entry> {
        self.tail.iter()
    }

    /// The last `n` events as text, one per line.
    pub fn render_tail(&self, n: usize) -> String {
        let skip = self.tail.len().saturating_sub(n);
        let mut out = String::new();
        for e in self.tail.iter().skip(skip) {
            out.push_str(&e.to_string());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_depends_on_every_field_and_the_order() {
        let run = |events: &[(u64, Option<usize>, What)]| {
            let mut t = Trace::new(4);
            for (at, node, what) in events {
                t.record(*at, *node, what.clone());
            }
            t.hash()
        };
        let a = (1, Some(0), What::Timer("gossip"));
        let b = (2, Some(1), What::Synced(3));
        let base = run(&[a.clone(), b.clone()]);
        assert_eq!(base, run(&[a.clone(), b.clone()]));
        assert_ne!(base, run(&[b.clone(), a.clone()]));
        assert_ne!(base, run(&[a.clone(), (2, Some(1), What::Synced(4))]));
        assert_ne!(base, run(&[a, (2, Some(2), What::Synced(3))]));
    }

    #[test]
    fn the_tail_keeps_the_last_events_only() {
        let mut t = Trace::new(3);
        for i in 0..10 {
            t.record(i, None, What::Synced(i as usize));
        }
        assert_eq!(t.events(), 10);
        let kept: Vec<u64> = t.tail().map(|e| e.at_us).collect();
        assert_eq!(kept, [7, 8, 9]);
        let text = t.render_tail(2);
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains("   0.000009s ---- store synced, 9 response(s) released"));
    }

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv_of(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv_of(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
