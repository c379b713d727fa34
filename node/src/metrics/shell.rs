//! What the shell records as it runs: client requests (kind, mode, outcome, latency), calls
//! to peers (kind, outcome, latency, bytes), gossip bytes and membership events. Handles are
//! registered on first use and kept in arrays indexed by the label values (which come from
//! small fixed sets), so recording is an index and an atomic add: no hashing on the request
//! path.

use std::time::Instant;

use ::metrics::{Counter, Histogram};
use ringkv_gossip::MemberEvent;

use super::Registry;
use crate::core::CallError;
use crate::proto::{ClientError, ClientRequest, ClientResponse, PeerReply, PeerRequest};
use crate::table::RangeTable;

/// Values of the `mode` label of client requests.
const MODES: [&str; 3] = ["none", "quorum", "primary"];

/// Values of the `outcome` label of calls to peers.
const CALL_OUTCOMES: [&str; 6] = [
    "ok",
    "failed",
    "timeout",
    "unreachable",
    "lost",
    "bad_answer",
];
/// Index of the `local` outcome (an encoding failure before anything was sent).
const CALL_LOCAL: usize = CALL_OUTCOMES.len();

/// A client request being served: what it is and when it arrived.
pub(crate) struct Started {
    kind: RequestKind,
    mode: usize,
    at: Instant,
}

/// A call to a peer being timed; travels with the call's task and back.
pub(crate) struct CallTiming {
    kind: PeerKind,
    at: Instant,
    sent: usize,
}

impl CallTiming {
    /// Start timing a call of `kind` whose request frame is `sent` bytes.
    pub(crate) fn start(kind: PeerKind, sent: usize) -> Self {
        CallTiming {
            kind,
            at: Instant::now(),
            sent,
        }
    }
}

/// Handles of one (kind, mode) of client requests.
struct RequestHandles {
    seconds: Histogram,
    ok: Counter,
    /// By error kind; a handful at most, so a short list.
    failed: Vec<(&'static str, Counter)>,
}

/// Handles of one kind of call to peers.
struct CallHandles {
    seconds: Histogram,
    sent_bytes: Counter,
    received_bytes: Counter,
    /// By outcome: [`CALL_OUTCOMES`], then `local`.
    outcomes: [Option<Counter>; CALL_OUTCOMES.len() + 1],
}

/// The shell's counters and histograms.
pub(crate) struct ShellMetrics {
    registry: Registry,
    /// Indexed by `RequestKind * MODES.len() + mode`.
    requests: Vec<Option<RequestHandles>>,
    /// Indexed by `PeerKind`.
    calls: Vec<Option<CallHandles>>,
    quorum_failures: Vec<((&'static str, &'static str), Counter)>,
    gossip_sent: Counter,
    gossip_received: Counter,
    repair_pushes: Counter,
    repair_push_bytes: Counter,
    member_events: Vec<(&'static str, Counter)>,
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
            requests: (0..REQUEST_KINDS.len() * MODES.len())
                .map(|_| None)
                .collect(),
            calls: (0..PEER_KINDS.len()).map(|_| None).collect(),
            quorum_failures: Vec::new(),
            member_events: Vec::new(),
        }
    }

    /// A client request arrived; `table` tells its key's mode.
    pub(crate) fn started(req: &ClientRequest, table: &RangeTable) -> Started {
        let (kind, key) = request_kind(req);
        let mode = match key {
            None => 0,
            Some(key) if table.lookup(key).is_some() => 2,
            Some(_) => 1,
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
        let registry = &self.registry;
        let Started {
            kind: k,
            mode: m,
            at,
        } = started;
        let (kind, mode) = (REQUEST_KINDS[k as usize], MODES[m]);
        let counter = |outcome| {
            registry.counter(
                "ringkv_requests_total",
                "Client requests answered by this node as coordinator, by kind, key mode \
                 and outcome (ok, or the error's kind).",
                &[("kind", kind), ("mode", mode), ("outcome", outcome)],
            )
        };
        let handles =
            self.requests[k as usize * MODES.len() + m].get_or_insert_with(|| RequestHandles {
                seconds: registry.histogram(
                    "ringkv_request_duration_seconds",
                    "Time from a client request's arrival to its answer.",
                    &[("kind", kind), ("mode", mode)],
                ),
                ok: counter("ok"),
                failed: Vec::new(),
            });
        handles.seconds.record(at.elapsed().as_secs_f64());
        let e = match result {
            Ok(_) => return handles.ok.increment(1),
            Err(e) => e,
        };
        let outcome = e.kind();
        labelled(&mut handles.failed, outcome, || counter(outcome)).increment(1);
        if let Some(labels @ (op, reason)) = quorum_failure(e) {
            labelled(&mut self.quorum_failures, labels, || {
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

    /// A call to a peer ended; `received` is the reply frame's size.
    pub(crate) fn call_done(
        &mut self,
        timing: CallTiming,
        reply: &Result<PeerReply, CallError>,
        received: usize,
    ) {
        let outcome = match reply {
            Ok(PeerReply::Failed(_)) | Err(CallError::Refused(_)) => 1,
            Ok(_) => 0,
            Err(CallError::Timeout(_)) => 2,
            Err(CallError::Unreachable(_)) => 3,
            Err(CallError::Lost(_)) => 4,
            Err(CallError::BadAnswer(_)) => 5,
            Err(CallError::Local(_)) => CALL_LOCAL,
        };
        let registry = &self.registry;
        let kind = PEER_KINDS[timing.kind as usize];
        let bytes = |direction| {
            registry.counter(
                "ringkv_peer_call_bytes_total",
                "Frame bytes of calls to peers (requests sent, replies received), by \
                 kind: exchange is anti-entropy, handoff is ownership transfer.",
                &[("kind", kind), ("direction", direction)],
            )
        };
        let handles = self.calls[timing.kind as usize].get_or_insert_with(|| CallHandles {
            seconds: registry.histogram(
                "ringkv_peer_call_duration_seconds",
                "Time from sending a call to a peer to its reply or failure.",
                &[("kind", kind)],
            ),
            sent_bytes: bytes("sent"),
            received_bytes: bytes("received"),
            outcomes: Default::default(),
        });
        handles.outcomes[outcome]
            .get_or_insert_with(|| {
                let outcome = CALL_OUTCOMES.get(outcome).copied().unwrap_or("local");
                registry.counter(
                    "ringkv_peer_calls_total",
                    "Calls this node made to other nodes (one QUIC stream each), by kind and \
                     outcome.",
                    &[("kind", kind), ("outcome", outcome)],
                )
            })
            .increment(1);
        handles.seconds.record(timing.at.elapsed().as_secs_f64());
        handles.sent_bytes.increment(as_u64(timing.sent));
        handles.received_bytes.increment(as_u64(received));
    }

    /// A repair record of `bytes` is being pushed to a replica.
    pub(crate) fn repair_pushed(&self, bytes: usize) {
        self.repair_pushes.increment(1);
        self.repair_push_bytes.increment(as_u64(bytes));
    }

    /// A gossip datagram of `bytes` went out.
    pub(crate) fn gossip_sent(&self, bytes: usize) {
        self.gossip_sent.increment(as_u64(bytes));
    }

    /// A gossip datagram of `bytes` came in.
    pub(crate) fn gossip_received(&self, bytes: usize) {
        self.gossip_received.increment(as_u64(bytes));
    }

    /// Membership said something.
    pub(crate) fn member_event(&mut self, event: &MemberEvent) {
        let name = match event {
            MemberEvent::Up(_) => "up",
            MemberEvent::Down(_) => "down",
            MemberEvent::Forgotten(_) => "forgotten",
            MemberEvent::StatusChanged(..) => "status_changed",
            MemberEvent::Joined => "joined",
            MemberEvent::Idle => "idle",
            MemberEvent::SeedsSilent { .. } => "seeds_silent",
            MemberEvent::Rejoined(_) => "rejoined",
            MemberEvent::Defunct => "defunct",
        };
        let registry = &self.registry;
        labelled(&mut self.member_events, name, || {
            registry.counter(
                "ringkv_member_events_total",
                "Membership events seen by this node: up, down (a peer declared down), \
                 forgotten (down too long), status_changed, joined, idle, seeds_silent, rejoined, defunct.",
                &[("event", name)],
            )
        })
        .increment(1);
    }
}

/// The handle of `label` in a short list, registered on first use.
fn labelled<L: PartialEq + Copy, H>(
    list: &mut Vec<(L, H)>,
    label: L,
    register: impl FnOnce() -> H,
) -> &H {
    let at = match list.iter().position(|(l, _)| *l == label) {
        Some(at) => at,
        None => {
            list.push((label, register()));
            list.len() - 1
        }
    };
    &list[at].1
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Declares a kind enum and the label value of each variant, in one order.
macro_rules! kinds {
    ($(#[$doc:meta])* $name:ident, $labels:ident: $($variant:ident = $label:literal),+ $(,)?) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum $name { $($variant),+ }
        const $labels: &[&str] = &[$($label),+];
    };
}

kinds!(
    /// The `kind` label of a client request.
    RequestKind, REQUEST_KINDS:
    Get = "get", Put = "put", Delete = "delete", Update = "update", Inspect = "inspect",
    Members = "members", Ring = "ring", Status = "status", Repair = "repair",
    RangeSet = "range_set", RangeList = "range_list", Replication = "replication",
    Keys = "keys",
);

kinds!(
    /// The `kind` label of a call to a peer.
    PeerKind, PEER_KINDS:
    Write = "write", Replicate = "replicate", Hint = "hint", Handoff = "handoff",
    Read = "read", Forward = "forward", Repl = "replication", Exchange = "exchange",
    Table = "table", Members = "members", Keys = "keys",
);

/// A request's kind and, for requests on one key, the key.
fn request_kind(req: &ClientRequest) -> (RequestKind, Option<&[u8]>) {
    match req {
        ClientRequest::Get { key, .. } => (RequestKind::Get, Some(key)),
        ClientRequest::Put { key, .. } => (RequestKind::Put, Some(key)),
        ClientRequest::Delete { key, .. } => (RequestKind::Delete, Some(key)),
        ClientRequest::Update { key, .. } => (RequestKind::Update, Some(key)),
        ClientRequest::Inspect { key } => (RequestKind::Inspect, Some(key)),
        ClientRequest::Direct(inner) | ClientRequest::After { req: inner, .. } => {
            request_kind(inner)
        }
        ClientRequest::Members => (RequestKind::Members, None),
        ClientRequest::Ring => (RequestKind::Ring, None),
        ClientRequest::Status => (RequestKind::Status, None),
        ClientRequest::Repair => (RequestKind::Repair, None),
        ClientRequest::RangeSet { .. } => (RequestKind::RangeSet, None),
        ClientRequest::RangeList => (RequestKind::RangeList, None),
        ClientRequest::Replication { .. } => (RequestKind::Replication, None),
        ClientRequest::Keys { .. } => (RequestKind::Keys, None),
    }
}

/// The kind of a call to a peer, for labels.
pub(crate) fn peer_kind(req: &PeerRequest) -> PeerKind {
    match req {
        PeerRequest::Write { .. } => PeerKind::Write,
        PeerRequest::Replicate { .. } => PeerKind::Replicate,
        PeerRequest::Hint { .. } => PeerKind::Hint,
        PeerRequest::Handoff { .. } => PeerKind::Handoff,
        PeerRequest::Read { .. } => PeerKind::Read,
        PeerRequest::Forward(_) => PeerKind::Forward,
        PeerRequest::Repl(..) => PeerKind::Repl,
        PeerRequest::Exchange { .. } => PeerKind::Exchange,
        PeerRequest::Table { .. } => PeerKind::Table,
        PeerRequest::Members => PeerKind::Members,
        PeerRequest::Keys { .. } => PeerKind::Keys,
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
        assert_eq!(request_kind(&direct), (RequestKind::Get, Some(&b"k"[..])));
        assert_eq!(
            request_kind(&ClientRequest::Members),
            (RequestKind::Members, None)
        );
    }

    #[test]
    fn each_request_and_call_lands_in_its_own_series() {
        let registry = Registry::new();
        let mut m = ShellMetrics::new(registry.clone());
        let table = RangeTable::default();
        let get = ClientRequest::Get {
            key: b"k".to_vec(),
            r: None,
            wait_repair: false,
        };
        for result in [
            Ok(ClientResponse::Members(vec![])),
            Ok(ClientResponse::Members(vec![])),
        ] {
            m.answered(ShellMetrics::started(&get, &table), &result);
        }
        let electing = Err(ClientError::Electing);
        m.answered(
            ShellMetrics::started(&ClientRequest::Ring, &table),
            &electing,
        );
        let write = PeerKind::Write;
        m.call_done(CallTiming::start(write, 10), &Ok(PeerReply::Replicated), 3);
        let local = Err(CallError::Local("encode".into()));
        m.call_done(CallTiming::start(write, 7), &local, 0);
        m.call_done(CallTiming::start(PeerKind::Repl, 1), &local, 0);
        let text = registry.handle().render();
        for line in [
            r#"ringkv_requests_total{kind="get",mode="quorum",outcome="ok"} 2"#,
            r#"ringkv_requests_total{kind="ring",mode="none",outcome="electing"} 1"#,
            r#"ringkv_request_duration_seconds_count{kind="get",mode="quorum"} 2"#,
            r#"ringkv_peer_calls_total{kind="write",outcome="ok"} 1"#,
            r#"ringkv_peer_calls_total{kind="write",outcome="local"} 1"#,
            r#"ringkv_peer_calls_total{kind="replication",outcome="local"} 1"#,
            r#"ringkv_peer_call_bytes_total{kind="write",direction="sent"} 17"#,
            r#"ringkv_peer_call_bytes_total{kind="write",direction="received"} 3"#,
        ] {
            assert!(text.contains(line), "missing {line} in:\n{text}");
        }
        assert!(!text.contains("ringkv_quorum_failures_total{"), "{text}");
    }
}
