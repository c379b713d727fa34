//! What the shell records as it runs: client requests (kind, mode, outcome, latency), calls
//! to peers (kind, outcome, latency, bytes), gossip bytes and membership events. Handles are
//! registered once per label set and kept, so recording is an atomic add.

use std::collections::HashMap;
use std::time::Instant;

use ::metrics::{Counter, Histogram};
use ringkv_gossip::MemberEvent;

use super::Registry;
use crate::core::CallError;
use crate::proto::{ClientError, ClientRequest, ClientResponse, PeerReply, PeerRequest};
use crate::table::RangeTable;

/// A client request being served: what it is and when it arrived.
pub(crate) struct Started {
    kind: &'static str,
    mode: &'static str,
    at: Instant,
}

/// A call to a peer being timed; travels with the call's task and back.
pub(crate) struct CallTiming {
    kind: &'static str,
    at: Instant,
    sent: usize,
}

impl CallTiming {
    /// Start timing a call of `kind` whose request frame is `sent` bytes.
    pub(crate) fn start(kind: &'static str, sent: usize) -> Self {
        CallTiming {
            kind,
            at: Instant::now(),
            sent,
        }
    }
}

/// The shell's counters and histograms.
pub(crate) struct ShellMetrics {
    registry: Registry,
    requests: HashMap<(&'static str, &'static str, &'static str), Counter>,
    request_seconds: HashMap<(&'static str, &'static str), Histogram>,
    quorum_failures: HashMap<(&'static str, &'static str), Counter>,
    calls: HashMap<(&'static str, &'static str), Counter>,
    call_seconds: HashMap<&'static str, Histogram>,
    call_bytes: HashMap<(&'static str, &'static str), Counter>,
    gossip_sent: Counter,
    gossip_received: Counter,
    repair_pushes: Counter,
    repair_push_bytes: Counter,
    member_events: HashMap<&'static str, Counter>,
}

impl ShellMetrics {
    pub(crate) fn new(registry: Registry) -> Self {
        let gossip = |direction| {
            registry.counter(
                "ringkv_gossip_bytes_total",
                "Bytes of membership gossip datagrams sent and received.",
                &[("direction", direction)],
            )
        };
        ShellMetrics {
            repair_pushes: registry.counter(
                "ringkv_repair_pushes_total",
                "Repair records pushed to stale replicas (read repair and anti-entropy).",
                &[],
            ),
            repair_push_bytes: registry.counter(
                "ringkv_repair_push_bytes_total",
                "Frame bytes of repair records pushed to stale replicas.",
                &[],
            ),
            gossip_sent: gossip("sent"),
            gossip_received: gossip("received"),
            registry,
            requests: HashMap::new(),
            request_seconds: HashMap::new(),
            quorum_failures: HashMap::new(),
            calls: HashMap::new(),
            call_seconds: HashMap::new(),
            call_bytes: HashMap::new(),
            member_events: HashMap::new(),
        }
    }

    /// A client request arrived; `table` tells its key's mode.
    pub(crate) fn started(req: &ClientRequest, table: &RangeTable) -> Started {
        let (kind, key) = request_kind(req);
        let mode = match key {
            None => "none",
            Some(key) if table.lookup(key).is_some() => "primary",
            Some(_) => "quorum",
        };
        Started {
            kind,
            mode,
            at: Instant::now(),
        }
    }

    /// A client request was answered.
    pub(crate) fn answered(
        &mut self,
        started: Started,
        result: &Result<ClientResponse, ClientError>,
    ) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        let registry = &self.registry;
        let Started { kind, mode, at } = started;
        self.requests
            .entry((kind, mode, outcome))
            .or_insert_with(|| {
                registry.counter(
                    "ringkv_requests_total",
                    "Client requests answered by this node as coordinator, by kind, key mode \
                     and outcome (ok, or the error's kind).",
                    &[("kind", kind), ("mode", mode), ("outcome", outcome)],
                )
            })
            .increment(1);
        self.request_seconds
            .entry((kind, mode))
            .or_insert_with(|| {
                registry.histogram(
                    "ringkv_request_duration_seconds",
                    "Time from a client request's arrival to its answer.",
                    &[("kind", kind), ("mode", mode)],
                )
            })
            .record(at.elapsed().as_secs_f64());
        if let Err(e) = result {
            if let Some((op, reason)) = quorum_failure(e) {
                self.quorum_failures
                    .entry((op, reason))
                    .or_insert_with(|| {
                        registry.counter(
                            "ringkv_quorum_failures_total",
                            "Requests that could not gather their quorum or their replicas, \
                             by operation and reason.",
                            &[("op", op), ("reason", reason)],
                        )
                    })
                    .increment(1);
            }
        }
    }

    /// A call to a peer ended; `received` is the reply frame's size.
    pub(crate) fn call_done(
        &mut self,
        timing: CallTiming,
        reply: &Result<PeerReply, CallError>,
        received: usize,
    ) {
        let outcome = match reply {
            Ok(PeerReply::Failed(_)) => "failed",
            Ok(_) => "ok",
            Err(CallError::Timeout(_)) => "timeout",
            Err(CallError::Unreachable(_)) => "unreachable",
            Err(CallError::Lost(_)) => "lost",
            Err(CallError::BadAnswer(_)) => "bad_answer",
            Err(CallError::Local(_)) => "local",
            Err(CallError::Refused(_)) => "failed",
        };
        let registry = &self.registry;
        let kind = timing.kind;
        self.calls
            .entry((kind, outcome))
            .or_insert_with(|| {
                registry.counter(
                    "ringkv_peer_calls_total",
                    "Calls this node made to other nodes (one QUIC stream each), by kind and \
                     outcome.",
                    &[("kind", kind), ("outcome", outcome)],
                )
            })
            .increment(1);
        self.call_seconds
            .entry(kind)
            .or_insert_with(|| {
                registry.histogram(
                    "ringkv_peer_call_duration_seconds",
                    "Time from sending a call to a peer to its reply or failure.",
                    &[("kind", kind)],
                )
            })
            .record(timing.at.elapsed().as_secs_f64());
        for (direction, bytes) in [("sent", timing.sent), ("received", received)] {
            self.call_bytes
                .entry((kind, direction))
                .or_insert_with(|| {
                    registry.counter(
                        "ringkv_peer_call_bytes_total",
                        "Frame bytes of calls to peers (requests sent, replies received), by \
                         kind: exchange is anti-entropy, handoff is ownership transfer.",
                        &[("kind", kind), ("direction", direction)],
                    )
                })
                .increment(u64::try_from(bytes).unwrap_or(u64::MAX));
        }
    }

    /// A repair record of `bytes` is being pushed to a replica.
    pub(crate) fn repair_pushed(&self, bytes: usize) {
        self.repair_pushes.increment(1);
        self.repair_push_bytes
            .increment(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// A gossip datagram of `bytes` went out.
    pub(crate) fn gossip_sent(&self, bytes: usize) {
        self.gossip_sent
            .increment(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// A gossip datagram of `bytes` came in.
    pub(crate) fn gossip_received(&self, bytes: usize) {
        self.gossip_received
            .increment(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// Membership said something.
    pub(crate) fn member_event(&mut self, event: &MemberEvent) {
        let name = match event {
            MemberEvent::Up(_) => "up",
            MemberEvent::Down(_) => "down",
            MemberEvent::StatusChanged(..) => "status_changed",
            MemberEvent::Joined => "joined",
            MemberEvent::Idle => "idle",
            MemberEvent::SeedsSilent { .. } => "seeds_silent",
            MemberEvent::Rejoined(_) => "rejoined",
            MemberEvent::Defunct => "defunct",
        };
        let registry = &self.registry;
        self.member_events
            .entry(name)
            .or_insert_with(|| {
                registry.counter(
                    "ringkv_member_events_total",
                    "Membership events seen by this node: up, down (a peer declared down), \
                     status_changed, joined, idle, seeds_silent, rejoined, defunct.",
                    &[("event", name)],
                )
            })
            .increment(1);
    }
}

/// A request's kind and, for requests on one key, the key.
fn request_kind(req: &ClientRequest) -> (&'static str, Option<&[u8]>) {
    match req {
        ClientRequest::Get { key, .. } => ("get", Some(key)),
        ClientRequest::Put { key, .. } => ("put", Some(key)),
        ClientRequest::Delete { key, .. } => ("delete", Some(key)),
        ClientRequest::Update { key, .. } => ("update", Some(key)),
        ClientRequest::Inspect { key } => ("inspect", Some(key)),
        ClientRequest::Direct(inner) | ClientRequest::After { req: inner, .. } => {
            request_kind(inner)
        }
        ClientRequest::Members => ("members", None),
        ClientRequest::Ring => ("ring", None),
        ClientRequest::Status => ("status", None),
        ClientRequest::Repair => ("repair", None),
        ClientRequest::RangeSet { .. } => ("range_set", None),
        ClientRequest::RangeList => ("range_list", None),
        ClientRequest::Replication { .. } => ("replication", None),
        ClientRequest::Keys { .. } => ("keys", None),
    }
}

/// The kind of a call to a peer, for labels.
pub(crate) fn peer_kind(req: &PeerRequest) -> &'static str {
    match req {
        PeerRequest::Write { .. } => "write",
        PeerRequest::Replicate { .. } => "replicate",
        PeerRequest::Hint { .. } => "hint",
        PeerRequest::Handoff { .. } => "handoff",
        PeerRequest::Read { .. } => "read",
        PeerRequest::Forward(_) => "forward",
        PeerRequest::Repl(..) => "replication",
        PeerRequest::Exchange { .. } => "exchange",
        PeerRequest::Table { .. } => "table",
        PeerRequest::Members => "members",
        PeerRequest::Keys { .. } => "keys",
    }
}

/// Operation and reason of a failure to gather a quorum or enough replicas, if it is one.
fn quorum_failure(e: &ClientError) -> Option<(&'static str, &'static str)> {
    match e {
        ClientError::QuorumFailed { op, detail, .. } => {
            let op = if op == "read" { "read" } else { "write" };
            // The coordinator says why first: the deadline passed, or too many replicas
            // failed before it did.
            let reason = if detail.starts_with("timed out") {
                "timeout"
            } else {
                "replicas_failed"
            };
            Some((op, reason))
        }
        ClientError::NoReplicas { .. } => Some(("write", "no_replicas")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_failures_name_their_reason() {
        let failed = |op: &str, detail: &str| ClientError::QuorumFailed {
            op: op.into(),
            needed: 2,
            replicas: 3,
            ok: 1,
            detail: detail.into(),
        };
        assert_eq!(
            quorum_failure(&failed("read", "timed out; n2: no answer")),
            Some(("read", "timeout"))
        );
        assert_eq!(
            quorum_failure(&failed(
                "write",
                "not enough replicas answered; n2: refused"
            )),
            Some(("write", "replicas_failed"))
        );
        let none = ClientError::NoReplicas {
            needed: 1,
            online: 0,
            syncing: 0,
        };
        assert_eq!(quorum_failure(&none), Some(("write", "no_replicas")));
        assert_eq!(quorum_failure(&ClientError::Electing), None);
    }

    #[test]
    fn direct_and_after_requests_count_as_their_inner_request() {
        let get = ClientRequest::Get {
            key: b"k".to_vec(),
            r: None,
            wait_repair: false,
        };
        let direct = ClientRequest::Direct(Box::new(get.clone()));
        assert_eq!(request_kind(&direct), ("get", Some(&b"k"[..])));
        assert_eq!(request_kind(&ClientRequest::Members), ("members", None));
    }
}
