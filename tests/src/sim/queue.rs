//! The event queue: everything that will happen, ordered by simulated time and, within one
//! microsecond, by the order it was scheduled in (so a run is a pure function of its seed).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use bytes::Bytes;
use ringkv::core::Timer;
use ringkv::proto::{ClientRequest, PeerReply, PeerRequest};

use super::world::Answer;

/// Something scheduled to happen.
#[derive(Debug)]
pub enum Event {
    /// A gossip datagram arrives at `to`.
    Datagram {
        /// Receiver.
        to: usize,
        /// Sender.
        from: usize,
        /// Payload.
        data: Bytes,
    },
    /// A timer of `node`'s incarnation `inc` fires.
    Timer {
        /// Owner.
        node: usize,
        /// Incarnation that armed it.
        inc: u32,
        /// The timer.
        timer: Timer,
    },
    /// A peer call's request reaches its replica.
    CallArrive {
        /// The world's id of the call.
        key: u64,
        /// Replica.
        to: usize,
        /// The replica's incarnation when the call was made (a new process has a new
        /// endpoint: the old connection's streams never reach it).
        to_inc: u32,
        /// Caller.
        from: usize,
        /// The request.
        req: PeerRequest,
    },
    /// A replica's response reaches the caller.
    CallReply {
        /// The world's id of the call.
        key: u64,
        /// The response.
        reply: PeerReply,
    },
    /// The transport gives up on a call.
    CallTimeout {
        /// The world's id of the call.
        key: u64,
    },
    /// `node`'s fsync completes.
    SyncDone {
        /// Owner.
        node: usize,
        /// Incarnation that started it.
        inc: u32,
    },
    /// A client request reaches its coordinator.
    ClientArrive {
        /// The workload's tag.
        tag: u64,
        /// Coordinator.
        node: usize,
        /// The request.
        req: ClientRequest,
    },
    /// A client receives its answer.
    ClientReply {
        /// The workload's tag.
        tag: u64,
        /// The answer.
        answer: Answer,
        /// The key's preference list as the coordinator saw it.
        preference: Option<Vec<String>>,
    },
    /// A wake-up for the driver (workload or fault schedule).
    External(u64),
}

struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    // Reversed: the heap pops the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Future events, earliest first, ties in scheduling order.
#[derive(Default)]
pub struct EventQueue {
    heap: BinaryHeap<Scheduled>,
    seq: u64,
}

impl EventQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedules `event` at `at` microseconds.
    pub fn push(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.heap.push(Scheduled {
            at,
            seq: self.seq,
            event,
        });
    }

    /// The next event and its time.
    pub fn pop(&mut self) -> Option<(u64, Event)> {
        self.heap.pop().map(|s| (s.at, s.event))
    }

    /// When the next event happens.
    pub fn peek_time(&self) -> Option<u64> {
        self.heap.peek().map(|s| s.at)
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_time_then_by_scheduling_order() {
        let mut q = EventQueue::new();
        q.push(20, Event::External(1));
        q.push(10, Event::External(2));
        q.push(20, Event::External(3));
        q.push(10, Event::External(4));
        let order: Vec<(u64, u64)> = std::iter::from_fn(|| q.pop())
            .map(|(at, e)| match e {
                Event::External(tag) => (at, tag),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(order, [(10, 2), (10, 4), (20, 1), (20, 3)]);
        assert!(q.is_empty());
    }
}
