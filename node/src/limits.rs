//! Bounds shared by the layers that check them, and the tally of how often each was hit.
//!
//! The transport's handshake and the range table both refuse a node name past
//! [`MAX_NODE_NAME`]. Every layer that refuses, drops or cuts short work at a bound reports it
//! through one [`LimitHits`] per node: it counts the hit (exported as
//! `ringkv_limit_hits_total{limit="..."}`) and logs it at most once per [`LOG_INTERVAL`] per
//! limit, so a hostile peer cannot flood the log.
//!
//! The sans-IO core reads no clock and shares nothing with the shell's threads: the bounds it
//! enforces are counted in a [`LimitCounts`] of its own, which logs by the core's `now_ms`;
//! the shell adds those counts to its [`LimitHits`] when it exports them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest accepted node name, in bytes.
pub const MAX_NODE_NAME: usize = 64;

/// Least time between two log lines about the same limit.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A bound a node enforces against what peers and clients ask of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// `TransportConfig::max_connections`: connections open at once.
    Connections,
    /// `TransportConfig::max_connections_per_address`: connections open at once from one IP
    /// address.
    ConnectionsPerAddress,
    /// A TLS handshake not complete within `TransportConfig::handshake_timeout`.
    HandshakeTime,
    /// `TransportConfig::max_concurrent_streams`: a connection has that many request streams
    /// being read at once (the peer must wait for QUIC stream credit).
    StreamsPerConnection,
    /// `TransportConfig::max_frame`: a frame header announced a larger body.
    FrameSize,
    /// A request frame not complete within `TransportConfig::call_timeout` (a client that
    /// opens streams and stalls).
    FrameTime,
    /// `TransportConfig::max_inbound_queue`: the node's queue stayed full; a request was
    /// refused as busy or a datagram dropped.
    InboundQueue,
    /// `TransportConfig::max_datagrams_per_sec`: a connection sent datagrams faster.
    DatagramRate,
    /// `resp::Limits::max_connections`: Redis clients open at once.
    RedisConnections,
    /// `resp::Limits::max_keys`: a `KEYS` matched more keys, or a `SCAN COUNT` asked more.
    RedisKeys,
    /// `HintConfig::max_bytes`: a hint was refused because hint storage was full.
    HintBytes,
    /// `Limits::max_in_flight`: a client request was refused as `overloaded`.
    InFlight,
    /// `ExchangeLimits` (hashes, items and bytes per message, items per leaf): a peer's
    /// anti-entropy message past them failed the exchange.
    MerkleExchange,
    /// A key-listing page asked of a replica outside 16 to 1000 keys was clamped.
    KeyPage,
    /// An ownership-transfer page was cut at 256 keys or 4 MiB (the rest follows).
    TransferPage,
    /// `ReplConfig::backlog_bytes` (`--repl-backlog`): a replica whose log continues the
    /// primary's was too far behind the backlog and resyncs from a snapshot.
    ReplBacklog,
    /// `ReplConfig::max_batch_bytes`: an append batch or a page of collected keys was cut
    /// short (the rest follows in the next).
    ReplBatchBytes,
    /// `ReplConfig::max_waiting`: a write or session read of a shard was refused as
    /// `overloaded`, that many already waiting.
    ReplWaiting,
}

impl Limit {
    /// Every limit, in the order they are exported.
    pub const ALL: [Limit; 18] = [
        Limit::Connections,
        Limit::ConnectionsPerAddress,
        Limit::HandshakeTime,
        Limit::StreamsPerConnection,
        Limit::FrameSize,
        Limit::FrameTime,
        Limit::InboundQueue,
        Limit::DatagramRate,
        Limit::RedisConnections,
        Limit::RedisKeys,
        Limit::HintBytes,
        Limit::InFlight,
        Limit::MerkleExchange,
        Limit::KeyPage,
        Limit::TransferPage,
        Limit::ReplBacklog,
        Limit::ReplBatchBytes,
        Limit::ReplWaiting,
    ];

    /// The `limit` label of `ringkv_limit_hits_total`.
    pub fn name(self) -> &'static str {
        match self {
            Limit::Connections => "connections",
            Limit::ConnectionsPerAddress => "connections_per_address",
            Limit::HandshakeTime => "handshake_time",
            Limit::StreamsPerConnection => "streams_per_connection",
            Limit::FrameSize => "frame_size",
            Limit::FrameTime => "frame_time",
            Limit::InboundQueue => "inbound_queue",
            Limit::DatagramRate => "datagram_rate",
            Limit::RedisConnections => "redis_connections",
            Limit::RedisKeys => "redis_keys",
            Limit::HintBytes => "hint_bytes",
            Limit::InFlight => "in_flight",
            Limit::MerkleExchange => "merkle_exchange",
            Limit::KeyPage => "key_page",
            Limit::TransferPage => "transfer_page",
            Limit::ReplBacklog => "repl_backlog",
            Limit::ReplBatchBytes => "repl_batch_bytes",
            Limit::ReplWaiting => "repl_waiting",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How often each [`Limit`] was hit since the node started; cheap to clone (one shared
/// tally). Counting is lock-free; logging is rate-limited per limit.
#[derive(Clone)]
pub struct LimitHits(Arc<Tally>);

struct Tally {
    hits: [AtomicU64; Limit::ALL.len()],
    /// Per limit: milliseconds after `start` of the last log line, plus one (0: never).
    logged_ms: [AtomicU64; Limit::ALL.len()],
    /// Per limit: the hit count at the last log line.
    logged_hits: [AtomicU64; Limit::ALL.len()],
    start: Instant,
    interval: Duration,
}

impl fmt::Debug for LimitHits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.snapshot().into_iter().filter(|(_, n)| *n > 0))
            .finish()
    }
}

impl Default for LimitHits {
    fn default() -> Self {
        Self::with_interval(LOG_INTERVAL)
    }
}

impl LimitHits {
    /// A tally that logs each limit at most once per `interval`.
    pub fn with_interval(interval: Duration) -> Self {
        LimitHits(Arc::new(Tally {
            hits: Default::default(),
            logged_ms: Default::default(),
            logged_hits: Default::default(),
            start: Instant::now(),
            interval,
        }))
    }

    /// Counts one hit of `limit`, and logs it (with `detail`: who, what) unless this limit
    /// was logged less than the interval ago. Returns whether it logged.
    pub fn hit(&self, limit: Limit, detail: impl fmt::Display) -> bool {
        let t = &self.0;
        let i = limit.index();
        let n = t.hits[i].fetch_add(1, Ordering::Relaxed) + 1;
        let now = u64::try_from(t.start.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = t.logged_ms[i].load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= t.interval.as_millis() as u64;
        // One thread wins the right to log this interval.
        if !due
            || t.logged_ms[i]
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        let before = t.logged_hits[i].swap(n, Ordering::Relaxed);
        tracing::warn!(
            limit = limit.name(),
            hits_since_last_report = n - before,
            hits_total = n,
            "limit reached: {detail} (further hits of this limit are counted in \
             ringkv_limit_hits_total and logged at most once per {:?})",
            t.interval
        );
        true
    }

    /// Hits of `limit` so far.
    pub fn get(&self, limit: Limit) -> u64 {
        self.0.hits[limit.index()].load(Ordering::Relaxed)
    }

    /// Every limit with its hits so far, in [`Limit::ALL`] order.
    pub fn snapshot(&self) -> Vec<(Limit, u64)> {
        Limit::ALL.iter().map(|&l| (l, self.get(l))).collect()
    }
}

/// Hits of the limits one part of the sans-IO core enforces: plain counts, logged at most once
/// per [`LOG_INTERVAL`] per limit by the core's own clock (the `now_ms` it is handed).
#[derive(Clone, Debug, Default)]
pub struct LimitCounts {
    hits: [u64; Limit::ALL.len()],
    /// Per limit: when it was last logged.
    logged_ms: [Option<u64>; Limit::ALL.len()],
    /// Per limit: the count at the last log line.
    logged_hits: [u64; Limit::ALL.len()],
}

impl LimitCounts {
    /// Counts one hit of `limit` at `now_ms`, and logs it (with `detail`) unless this limit
    /// was logged less than [`LOG_INTERVAL`] before. Returns whether it logged.
    pub fn hit(&mut self, limit: Limit, now_ms: u64, detail: impl fmt::Display) -> bool {
        let i = limit.index();
        self.hits[i] += 1;
        let interval = LOG_INTERVAL.as_millis() as u64;
        if self.logged_ms[i].is_some_and(|at| now_ms.saturating_sub(at) < interval) {
            return false;
        }
        self.logged_ms[i] = Some(now_ms);
        let n = self.hits[i];
        let before = std::mem::replace(&mut self.logged_hits[i], n);
        tracing::warn!(
            limit = limit.name(),
            hits_since_last_report = n - before,
            hits_total = n,
            "limit reached: {detail} (further hits of this limit are counted in \
             ringkv_limit_hits_total and logged at most once per {LOG_INTERVAL:?})"
        );
        true
    }

    /// Hits of `limit` so far.
    pub fn get(&self, limit: Limit) -> u64 {
        self.hits[limit.index()]
    }

    /// Adds these counts to `total` (in [`Limit::ALL`] order, as [`LimitHits::snapshot`]
    /// gives them).
    pub fn add_to(&self, total: &mut [(Limit, u64)]) {
        for (limit, n) in total.iter_mut() {
            *n += self.get(*limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_order_of_all_and_are_distinct() {
        for (i, l) in Limit::ALL.iter().enumerate() {
            assert_eq!(l.index(), i);
        }
        let mut names: Vec<&str> = Limit::ALL.iter().map(|l| l.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Limit::ALL.len());
    }

    #[test]
    fn every_hit_is_counted_and_logged_at_most_once_per_interval() {
        let hits = LimitHits::with_interval(Duration::from_secs(3600));
        assert!(hits.hit(Limit::FrameSize, "first"));
        let logged = (0..1000)
            .filter(|_| hits.hit(Limit::FrameSize, "again"))
            .count();
        assert_eq!(logged, 0, "logged again within the interval");
        // Another limit has its own interval.
        assert!(hits.hit(Limit::DatagramRate, "other"));
        assert_eq!(hits.get(Limit::FrameSize), 1001);
        assert_eq!(hits.get(Limit::DatagramRate), 1);
        assert_eq!(hits.get(Limit::Connections), 0);
        // Clones share one tally.
        assert_eq!(hits.clone().get(Limit::FrameSize), 1001);

        // Once the interval has passed (here: none), the next hit logs again.
        let eager = LimitHits::with_interval(Duration::ZERO);
        assert!(eager.hit(Limit::FrameTime, "one"));
        std::thread::sleep(Duration::from_millis(2));
        assert!(eager.hit(Limit::FrameTime, "two"));
    }

    #[test]
    fn core_counts_log_at_most_once_per_interval_of_the_cores_clock() {
        let mut counts = LimitCounts::default();
        let interval = LOG_INTERVAL.as_millis() as u64;
        assert!(counts.hit(Limit::ReplWaiting, 5, "first"));
        assert!(!counts.hit(Limit::ReplWaiting, 5 + interval - 1, "too soon"));
        assert!(counts.hit(Limit::KeyPage, 6, "another limit"));
        assert!(counts.hit(Limit::ReplWaiting, 5 + interval, "due"));
        assert_eq!(counts.get(Limit::ReplWaiting), 3);
        let mut total = LimitHits::default().snapshot();
        counts.add_to(&mut total);
        counts.add_to(&mut total);
        let of = |l| total.iter().find(|(x, _)| *x == l).map(|(_, n)| *n);
        assert_eq!(of(Limit::ReplWaiting), Some(6));
        assert_eq!(of(Limit::KeyPage), Some(2));
        assert_eq!(of(Limit::InFlight), Some(0));
    }
}
