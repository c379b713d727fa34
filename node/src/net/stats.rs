//! Counters of what the transport sent, received, dropped and refused.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the transport's counters since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Datagrams handed to a connection for sending.
    pub datagrams_sent: u64,
    /// Outgoing datagrams dropped: too large, no connection could be made, too many pending
    /// dials, or the connection's buffer refused them.
    pub datagrams_dropped: u64,
    /// Datagrams received from peers.
    pub datagrams_received: u64,
    /// Received datagrams dropped because the inbound queue was full or the sending
    /// connection was over `max_datagrams_per_sec`.
    pub inbound_datagrams_dropped: u64,
    /// Request frames received and queued for the node.
    pub requests_received: u64,
    /// Request streams reset for a bad frame: over `max_frame`, truncated, or not complete
    /// within the call timeout.
    pub streams_refused: u64,
    /// Request streams reset because the inbound queue stayed full for the call timeout.
    pub requests_refused_busy: u64,
    /// Incoming connections whose handshake succeeded.
    pub connections_accepted: u64,
    /// Incoming connections whose handshake failed (unknown CA, no certificate, wrong ALPN).
    pub handshakes_refused: u64,
    /// Incoming connections refused because `max_connections` were open, or
    /// `max_connections_per_address` from the peer's IP address.
    pub connections_refused: u64,
}

/// The live counters behind [`TransportStats`], shared by the transport's tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub datagrams_sent: AtomicU64,
    pub datagrams_dropped: AtomicU64,
    pub datagrams_received: AtomicU64,
    pub inbound_datagrams_dropped: AtomicU64,
    pub requests_received: AtomicU64,
    pub streams_refused: AtomicU64,
    pub requests_refused_busy: AtomicU64,
    pub connections_accepted: AtomicU64,
    pub handshakes_refused: AtomicU64,
    pub connections_refused: AtomicU64,
}

/// Adds one to a counter (relaxed: counters order nothing).
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Count one more and say whether this one should be logged: the first, then every 100th,
/// so an operator sees a refused peer without a hostile one flooding the log.
pub(crate) fn bump_and_sample(counter: &AtomicU64) -> bool {
    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
    n == 1 || n.is_multiple_of(100)
}

impl Counters {
    pub(crate) fn snapshot(&self) -> TransportStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportStats {
            datagrams_sent: get(&self.datagrams_sent),
            datagrams_dropped: get(&self.datagrams_dropped),
            datagrams_received: get(&self.datagrams_received),
            inbound_datagrams_dropped: get(&self.inbound_datagrams_dropped),
            requests_received: get(&self.requests_received),
            streams_refused: get(&self.streams_refused),
            requests_refused_busy: get(&self.requests_refused_busy),
            connections_accepted: get(&self.connections_accepted),
            handshakes_refused: get(&self.handshakes_refused),
            connections_refused: get(&self.connections_refused),
        }
    }
}
