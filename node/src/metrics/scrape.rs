//! What a scrape asks the node: membership, anti-entropy and hint status, shard replication
//! state, store usage and transport counters. Each becomes gauges (or counters set to the
//! node's own running totals) in a recorder made for this one scrape, so a shard or member
//! that went away leaves no stale series behind.

use crate::limits::Limit;
use std::sync::Arc;
use std::time::Duration;

use super::Registry;
use crate::core::replication::ShardInfo;
use crate::node::{NodeHandle, ShellSnapshot};
use crate::proto::{ClientRequest, ClientResponse, MemberRow, StatusReport};
use crate::store::Store;

/// Longest a scrape waits for each answer from its node.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks a node for its figures.
#[derive(Clone)]
pub(crate) struct Scraper {
    name: String,
    handle: NodeHandle,
    store: Arc<dyn Store>,
    live: Registry,
}

/// Whether the node serves: up and finished joining.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Health {
    /// Up and joined.
    Ready,
    /// Not (yet, or any more): why, in words.
    NotReady(String),
}

impl Scraper {
    pub(crate) fn new(
        name: String,
        handle: NodeHandle,
        store: Arc<dyn Store>,
        live: Registry,
    ) -> Self {
        Scraper {
            name,
            handle,
            store,
            live,
        }
    }

    async fn ask(&self, req: ClientRequest) -> Option<ClientResponse> {
        match tokio::time::timeout(ASK_TIMEOUT, self.handle.scrape(req)).await {
            Ok(Ok(answer)) => Some(answer),
            _ => None,
        }
    }

    async fn members(&self) -> Option<Vec<MemberRow>> {
        match self.ask(ClientRequest::Members).await? {
            ClientResponse::Members(rows) => Some(rows),
            _ => None,
        }
    }

    /// Ready once this node announced itself `up` (a joining node stays `joining` until it
    /// pulled its ranges).
    pub(crate) async fn health(&self) -> Health {
        let Some(rows) = self.members().await else {
            return Health::NotReady("the node does not answer".into());
        };
        match rows.iter().find(|m| m.name == self.name) {
            Some(me) if me.status == "up" => Health::Ready,
            Some(me) => Health::NotReady(format!("the node is {}", me.status)),
            None => Health::NotReady("the node is not in its own membership".into()),
        }
    }

    /// The text of `GET /metrics`: the live counters and histograms, then this scrape's.
    pub(crate) async fn render(&self) -> String {
        let now = Registry::new();
        let members = self.members().await;
        if let Some(rows) = &members {
            members_gauges(&now, rows, &self.name);
        }
        if let Some(ClientResponse::Status(report)) = self.ask(ClientRequest::Status).await {
            status_gauges(&now, &report);
        }
        if let Some(ClientResponse::Replication(shards)) =
            self.ask(ClientRequest::Replication { key: None }).await
        {
            shard_gauges(&now, &shards);
        }
        if let Ok(Ok(snapshot)) = tokio::time::timeout(ASK_TIMEOUT, self.handle.snapshot()).await {
            snapshot_gauges(&now, &snapshot);
        }
        let store = self.store.clone();
        if let Ok(usage) = tokio::task::spawn_blocking(move || store.usage()).await {
            if let Some(keys) = usage.keys {
                now.gauge(
                    "ringkv_store_keys",
                    "Data keys in the store, approximate (tombstones and keys deleted but \
                     not yet compacted count).",
                    &[],
                )
                .set(keys as f64);
            }
            if let Some(bytes) = usage.disk_bytes {
                now.gauge(
                    "ringkv_store_disk_bytes",
                    "Bytes the store takes on disk (journals and tables).",
                    &[],
                )
                .set(bytes as f64);
            }
        }
        now.gauge(
            "ringkv_build_info",
            "Always 1; the version of the running node.",
            &[("version", env!("CARGO_PKG_VERSION"))],
        )
        .set(1.0);
        let mut text = self.live.handle().render();
        text.push_str(&now.handle().render());
        text
    }
}

fn members_gauges(r: &Registry, rows: &[MemberRow], me: &str) {
    let mut counts: Vec<((&str, &str), u32)> = Vec::new();
    for row in rows {
        let key = (row.state.as_str(), row.status.as_str());
        match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => counts.push((key, 1)),
        }
    }
    for ((state, status), n) in counts {
        r.gauge(
            "ringkv_members",
            "Members this node knows (itself included), by failure-detector state \
             (alive, suspect, down) and announced status (joining, up, leaving).",
            &[("state", state), ("status", status)],
        )
        .set(f64::from(n));
    }
    let ready = rows.iter().any(|m| m.name == me && m.status == "up");
    r.gauge(
        "ringkv_node_ready",
        "1 once this node is up and finished joining (what GET /health answers 200 to).",
        &[],
    )
    .set(if ready { 1.0 } else { 0.0 });
}

fn status_gauges(r: &Registry, s: &StatusReport) {
    let total = |name, help, v: u64| r.counter(name, help, &[]).absolute(v);
    for (result, n) in [("ok", s.exchanges), ("failed", s.exchange_failures)] {
        r.counter(
            "ringkv_antientropy_exchanges_total",
            "Merkle anti-entropy exchanges this node started, since start, by result.",
            &[("result", result)],
        )
        .absolute(n);
    }
    let repaired = s
        .ranges
        .iter()
        .fold(0u64, |sum, x| sum.saturating_add(x.keys_repaired));
    r.gauge(
        "ringkv_antientropy_keys_repaired",
        "Keys this node sent to peer replicas to repair them, summed over the ranges it \
         replicates now (falls when ranges move away).",
        &[],
    )
    .set(repaired as f64);
    let replicated = s.ranges.iter().filter(|x| x.replica).count();
    let never = s
        .ranges
        .iter()
        .filter(|x| x.replica && x.last_exchange_ms.is_none())
        .count();
    for (state, n) in [("replicated", replicated), ("never_exchanged", never)] {
        r.gauge(
            "ringkv_antientropy_ranges",
            "Ring ranges this node replicates, and those no exchange completed on yet.",
            &[("state", state)],
        )
        .set(n as f64);
    }
    let (count, bytes) = s.hints.iter().fold((0u64, 0u64), |(c, b), h| {
        (c.saturating_add(h.count), b.saturating_add(h.bytes))
    });
    r.gauge(
        "ringkv_hints_held",
        "Hints this node holds for replicas that were down.",
        &[],
    )
    .set(count as f64);
    r.gauge(
        "ringkv_hints_held_bytes",
        "Record bytes of the hints this node holds.",
        &[],
    )
    .set(bytes as f64);
    total(
        "ringkv_transfer_keys_total",
        "Keys handed to their new replicas (ownership transfer) and dropped here, since start.",
        s.keys_handed_off,
    );
    total(
        "ringkv_tombstones_reaped_total",
        "Tombstones removed (every replica held them, grace period passed), since start.",
        s.tombstones_reaped,
    );
}

fn shard_gauges(r: &Registry, shards: &[ShardInfo]) {
    for s in shards {
        let shard = s.shard.join(",");
        let labels = [("shard", shard.as_str())];
        r.gauge(
            "ringkv_shard_role",
            "1 for this node's role in each primary-mode shard (primary, replica, candidate).",
            &[("shard", shard.as_str()), ("role", s.role.as_str())],
        )
        .set(1.0);
        r.gauge(
            "ringkv_shard_epoch",
            "Newest epoch this node promised in the shard.",
            &labels,
        )
        .set(s.epoch as f64);
        r.gauge(
            "ringkv_shard_offset",
            "Offset of the last log entry this node holds for the shard.",
            &labels,
        )
        .set(s.offset as f64);
        r.gauge(
            "ringkv_shard_commit_offset",
            "Offset a majority of the shard holds, as this node last knew it.",
            &labels,
        )
        .set(s.commit as f64);
        if let Some(ms) = s.primary_silent_ms {
            r.gauge(
                "ringkv_shard_primary_silence_seconds",
                "On a replica: time since it last heard its primary.",
                &labels,
            )
            .set(ms as f64 / 1000.0);
        }
        for rep in &s.replicas {
            let labels = [("shard", shard.as_str()), ("replica", rep.name.as_str())];
            r.gauge(
                "ringkv_replica_lag_entries",
                "On a primary: log entries each replica is behind (primary offset minus the \
                 replica's confirmed offset).",
                &labels,
            )
            .set(s.offset.saturating_sub(rep.offset) as f64);
            if let Some(ms) = rep.lag_ms {
                r.gauge(
                    "ringkv_replica_lag_seconds",
                    "On a primary: time since each replica last confirmed an offset.",
                    &labels,
                )
                .set(ms as f64 / 1000.0);
            }
        }
    }
}

fn snapshot_gauges(r: &Registry, s: &ShellSnapshot) {
    let h = &s.hints;
    r.gauge(
        "ringkv_hints_held_at_start",
        "Hints in the store when this process started.",
        &[],
    )
    .set(h.held_at_start as f64);
    for (event, n) in [
        ("stored", h.stored),
        ("delivered", h.delivered),
        ("dropped", h.dropped),
        ("refused", h.refused),
    ] {
        r.counter(
            "ringkv_hints_total",
            "Hints since start: stored, delivered to their owner, dropped undelivered (too \
             old, owner gone), refused (storage full).",
            &[("event", event)],
        )
        .absolute(n);
    }
    for (limit, n) in &s.limit_hits {
        // Hint storage is bounded inside the core, which counts its own refusals.
        let n = if *limit == Limit::HintBytes {
            n + h.full
        } else {
            *n
        };
        r.counter(
            "ringkv_limit_hits_total",
            "Times a bound on what peers and clients may ask of the node was hit (the \
             request, connection or datagram refused, dropped or cut short).",
            &[("limit", limit.name())],
        )
        .absolute(n);
    }
    let t = &s.transport;
    r.gauge(
        "ringkv_transport_connections",
        "QUIC connections open (to and from peers and clients).",
        &[],
    )
    .set(s.open_connections as f64);
    r.counter(
        "ringkv_transport_connections_accepted_total",
        "Incoming QUIC connections whose handshake succeeded.",
        &[],
    )
    .absolute(t.connections_accepted);
    for (reason, n) in [
        ("handshake", t.handshakes_refused),
        ("too_many_connections", t.connections_refused),
    ] {
        r.counter(
            "ringkv_transport_connections_refused_total",
            "Incoming connections refused: the TLS handshake failed (unknown CA, no \
             certificate, wrong protocol), or max_connections (in all or from the peer's \
             address) were open.",
            &[("reason", reason)],
        )
        .absolute(n);
    }
    r.counter(
        "ringkv_transport_streams_total",
        "Request streams received and queued for the node (clients and peers).",
        &[],
    )
    .absolute(t.requests_received);
    for (reason, n) in [
        ("bad_frame", t.streams_refused),
        ("busy", t.requests_refused_busy),
    ] {
        r.counter(
            "ringkv_transport_streams_refused_total",
            "Request streams reset: a bad or oversized frame, or the node's queue stayed \
             full.",
            &[("reason", reason)],
        )
        .absolute(n);
    }
    for (direction, result, n) in [
        ("sent", "ok", t.datagrams_sent),
        ("sent", "dropped", t.datagrams_dropped),
        ("received", "ok", t.datagrams_received),
        ("received", "dropped", t.inbound_datagrams_dropped),
    ] {
        r.counter(
            "ringkv_transport_datagrams_total",
            "Gossip datagrams sent and received, and those dropped.",
            &[("direction", direction), ("result", result)],
        )
        .absolute(n);
    }
}
