//! The coordinator side: one state machine per client request, fed replica replies.
//!
//! A write first goes to one replica (the leader of that write, this node when it is a
//! replica) which makes the write's single new dot; the resulting record then goes to the
//! other replicas. A read asks every live replica and merges the first R answers. Either
//! answers the client as soon as the quorum is met, or as soon as it no longer can be.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::config::Sabotage;
use crate::hlc::Timestamp;
use crate::proto::{
    ClientError, ClientResponse, PeerReply, PeerRequest, ReadResult, Value, WriteResult,
};
use crate::version::{apply_policy, live_values, ConflictPolicy, Context, Record, VersionVector};

/// Identifies one coordinated request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u64);

/// Identifies one call to a replica; its reply comes back with the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// Identifies a client request; its answer carries the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

/// One replica of the key's preference list, as this request sees it.
#[derive(Clone, Debug)]
pub struct Target {
    /// Node name.
    pub name: String,
    /// Where to reach it; `None` when membership says it is down or unknown.
    pub addr: Option<SocketAddr>,
    /// For a fallback standing in for a down replica: that replica (sloppy quorum).
    pub hint_for: Option<String>,
    state: TargetState,
}

impl Target {
    /// A replica that may be called (`addr` set) or is known to be unreachable.
    pub fn new(name: String, addr: Option<SocketAddr>) -> Self {
        let state = match addr {
            Some(_) => TargetState::Idle,
            None => TargetState::Failed("down".into()),
        };
        Self {
            name,
            addr,
            hint_for: None,
            state,
        }
    }

    /// A live node outside the preference list that keeps the write as a hint for `owner`.
    pub fn fallback(name: String, addr: SocketAddr, owner: String) -> Self {
        Self {
            name,
            addr: Some(addr),
            hint_for: Some(owner),
            state: TargetState::Idle,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum TargetState {
    Idle,
    Pending(CallId),
    Ok,
    Failed(String),
}

enum Kind {
    Write {
        key: Vec<u8>,
        token: u64,
        value: Option<Vec<u8>>,
        context: Option<VersionVector>,
        ts: Timestamp,
        w: usize,
        record: Option<Record>,
    },
    Read {
        key: Vec<u8>,
        token: u64,
        r: usize,
        /// What each replica that answered holds, by target index.
        replies: Vec<(usize, Option<Record>)>,
        /// The client has its answer; the op lives on only to repair stale replicas.
        answered: bool,
    },
}

struct Op {
    client: ClientId,
    targets: Vec<Target>,
    kind: Kind,
}

/// What the coordinator asks the node core to do.
#[derive(Debug)]
pub enum Action {
    /// Call a replica.
    Call {
        /// Reply correlation.
        call: CallId,
        /// Where.
        to: SocketAddr,
        /// What.
        req: PeerRequest,
    },
    /// Answer the client.
    Reply {
        /// Which client request.
        id: ClientId,
        /// The answer.
        result: Result<ClientResponse, ClientError>,
    },
}

/// Every request this node coordinates.
pub struct Coordinator {
    ops: HashMap<OpId, Op>,
    calls: HashMap<CallId, (OpId, usize)>,
    next_op: u64,
    next_call: u64,
    policy: ConflictPolicy,
    sabotage: Sabotage,
}

/// What a write is.
pub struct WriteSpec {
    /// The key.
    pub key: Vec<u8>,
    /// The value, `None` for a delete.
    pub value: Option<Vec<u8>>,
    /// What the client saw.
    pub context: Option<VersionVector>,
    /// Coordinator timestamp.
    pub ts: Timestamp,
    /// Acks needed.
    pub w: usize,
}

impl Coordinator {
    /// A coordinator with no request in flight.
    pub fn new(policy: ConflictPolicy, sabotage: Sabotage) -> Self {
        Self {
            ops: HashMap::new(),
            calls: HashMap::new(),
            next_op: 0,
            next_call: 0,
            policy,
            sabotage,
        }
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.ops.len()
    }

    /// Start a write. `targets` is the preference list, this node first when it is in it.
    pub fn write(
        &mut self,
        client: ClientId,
        targets: Vec<Target>,
        spec: WriteSpec,
        out: &mut Vec<Action>,
    ) -> OpId {
        let token = ringkv_ring::token(&spec.key);
        let kind = Kind::Write {
            key: spec.key,
            token,
            value: spec.value,
            context: spec.context,
            ts: spec.ts,
            w: spec.w,
            record: None,
        };
        let id = self.insert(client, targets, kind);
        // A quorum that cannot be met fails before any replica is written.
        self.settle(id, out);
        self.call_leader(id, out);
        id
    }

    /// Start a read of every live replica.
    pub fn read(
        &mut self,
        client: ClientId,
        targets: Vec<Target>,
        key: Vec<u8>,
        r: usize,
        out: &mut Vec<Action>,
    ) -> OpId {
        let token = ringkv_ring::token(&key);
        let req = PeerRequest::Read {
            token,
            key: key.clone(),
        };
        let kind = Kind::Read {
            key,
            token,
            r,
            replies: Vec::new(),
            answered: false,
        };
        let id = self.insert(client, targets, kind);
        self.settle(id, out);
        for idx in self.idle_targets(id) {
            self.call(id, idx, req.clone(), out);
        }
        id
    }

    /// A replica answered (or the call failed).
    pub fn on_reply(
        &mut self,
        call: CallId,
        reply: Result<PeerReply, String>,
        out: &mut Vec<Action>,
    ) {
        let Some((id, idx)) = self.calls.remove(&call) else {
            return; // the request already finished
        };
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        let (mut leader_failed, mut written) = (false, false);
        let state = match (&mut op.kind, reply) {
            (Kind::Write { record, .. }, Ok(PeerReply::Written(r))) => {
                *record = Some(r);
                written = true;
                TargetState::Ok
            }
            (Kind::Write { .. }, Ok(PeerReply::Replicated)) => TargetState::Ok,
            (Kind::Read { replies, .. }, Ok(PeerReply::Read(r))) => {
                replies.push((idx, r));
                TargetState::Ok
            }
            (kind, Ok(PeerReply::Failed(e)) | Err(e)) => {
                leader_failed = matches!(kind, Kind::Write { record: None, .. });
                TargetState::Failed(e)
            }
            (_, Ok(other)) => TargetState::Failed(format!("unexpected reply {other:?}")),
        };
        if let Some(t) = op.targets.get_mut(idx) {
            t.state = state;
        }
        if written {
            self.replicate(id, out);
        } else if leader_failed {
            self.call_leader(id, out);
        }
        self.settle(id, out);
    }

    /// The request's deadline passed: answer with what it has (or, for a read already
    /// answered, repair the replicas that did answer).
    pub fn on_deadline(&mut self, id: OpId, out: &mut Vec<Action>) {
        if let Some(op) = self.ops.remove(&id) {
            self.forget_calls(id);
            if matches!(op.kind, Kind::Read { answered: true, .. }) {
                self.repair(&op, out);
            } else {
                out.push(Action::Reply {
                    id: op.client,
                    result: Err(failure(&op, "timed out")),
                });
            }
        }
    }

    fn insert(&mut self, client: ClientId, targets: Vec<Target>, kind: Kind) -> OpId {
        self.next_op += 1;
        let id = OpId(self.next_op);
        self.ops.insert(
            id,
            Op {
                client,
                targets,
                kind,
            },
        );
        id
    }

    fn idle_targets(&self, id: OpId) -> Vec<usize> {
        self.ops.get(&id).map_or_else(Vec::new, |op| {
            (0..op.targets.len())
                .filter(|&i| op.targets[i].state == TargetState::Idle)
                .collect()
        })
    }

    fn call(&mut self, id: OpId, idx: usize, req: PeerRequest, out: &mut Vec<Action>) {
        let Some(target) = self.ops.get_mut(&id).and_then(|op| op.targets.get_mut(idx)) else {
            return;
        };
        let Some(to) = target.addr else { return };
        self.next_call += 1;
        let call = CallId(self.next_call);
        target.state = TargetState::Pending(call);
        self.calls.insert(call, (id, idx));
        out.push(Action::Call { call, to, req });
    }

    /// Send the write to the first replica that has not failed it yet.
    fn call_leader(&mut self, id: OpId, out: &mut Vec<Action>) {
        let Some(op) = self.ops.get(&id) else { return };
        let Kind::Write {
            key,
            token,
            value,
            context,
            ts,
            ..
        } = &op.kind
        else {
            return;
        };
        let req = PeerRequest::Write {
            token: *token,
            key: key.clone(),
            value: value.clone(),
            context: context.clone(),
            ts: *ts,
        };
        // Only a replica of the preference list makes the write's dot; fallbacks keep hints.
        let leader = self.idle_targets(id).into_iter().find(|&i| {
            self.ops
                .get(&id)
                .is_some_and(|op| op.targets[i].hint_for.is_none())
        });
        if let Some(idx) = leader {
            self.call(id, idx, req, out);
        }
    }

    /// The leader's record goes to every other live replica.
    fn replicate(&mut self, id: OpId, out: &mut Vec<Action>) {
        let Some(op) = self.ops.get(&id) else { return };
        let Kind::Write {
            key,
            token,
            record: Some(record),
            ..
        } = &op.kind
        else {
            return;
        };
        let reqs: Vec<(usize, PeerRequest)> = self
            .idle_targets(id)
            .into_iter()
            .map(|idx| {
                let req = match &op.targets[idx].hint_for {
                    Some(owner) => PeerRequest::Hint {
                        owner: owner.clone(),
                        token: *token,
                        key: key.clone(),
                        record: record.clone(),
                    },
                    None => PeerRequest::Replicate {
                        token: *token,
                        key: key.clone(),
                        record: record.clone(),
                    },
                };
                (idx, req)
            })
            .collect();
        for (idx, req) in reqs {
            self.call(id, idx, req, out);
        }
    }

    /// Answer the client once the quorum is met or can no longer be; a read stays until every
    /// replica answered, then repairs the stale ones (read repair).
    fn settle(&mut self, id: OpId, out: &mut Vec<Action>) {
        let (policy, sabotage) = (self.policy, self.sabotage);
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        let ok = count(op, |s| *s == TargetState::Ok);
        let open = count(op, |s| {
            matches!(s, TargetState::Pending(_) | TargetState::Idle)
        });
        // Before the write's dot exists only a preference-list replica can lead it.
        let leaderless = matches!(op.kind, Kind::Write { record: None, .. })
            && !op.targets.iter().any(|t| {
                t.hint_for.is_none()
                    && matches!(t.state, TargetState::Pending(_) | TargetState::Idle)
            });
        let open = if leaderless { 0 } else { open };
        let (needed, done, answered) = match &op.kind {
            Kind::Write { w, .. } if sabotage.ack_after_one => (*w, ok >= 1, false),
            Kind::Write { w, .. } => (*w, ok >= *w, false),
            Kind::Read { r, answered, .. } => (*r, ok >= *r, *answered),
        };
        if answered {
            if open == 0 {
                if let Some(op) = self.ops.remove(&id) {
                    self.repair(&op, out);
                }
            }
            return;
        }
        if !done && ok + open >= needed {
            return;
        }
        let result = if done {
            Ok(success(op, ok, policy, sabotage))
        } else {
            Err(failure(op, "not enough replicas answered"))
        };
        out.push(Action::Reply {
            id: op.client,
            result,
        });
        match &mut op.kind {
            Kind::Read { answered, .. } if done && open > 0 => *answered = true,
            _ => {
                if let Some(op) = self.ops.remove(&id) {
                    self.forget_calls(id);
                    if done && matches!(op.kind, Kind::Read { .. }) {
                        self.repair(&op, out);
                    }
                }
            }
        }
    }

    /// Send the merged record to every replica that answered with something older.
    fn repair(&mut self, op: &Op, out: &mut Vec<Action>) {
        let Kind::Read {
            key,
            token,
            replies,
            ..
        } = &op.kind
        else {
            return;
        };
        let merged = merge(replies.iter().filter_map(|(_, r)| r.as_ref()), self.policy);
        if merged.size() == 0 {
            return;
        }
        for (idx, held) in replies {
            let stale = held.as_ref() != Some(&merged);
            if let (true, Some(to)) = (stale, op.targets.get(*idx).and_then(|t| t.addr)) {
                // Nobody waits for this answer: the call id is not registered.
                self.next_call += 1;
                let req = PeerRequest::Replicate {
                    token: *token,
                    key: key.clone(),
                    record: merged.clone(),
                };
                out.push(Action::Call {
                    call: CallId(self.next_call),
                    to,
                    req,
                });
            }
        }
    }

    fn forget_calls(&mut self, id: OpId) {
        self.calls.retain(|_, (op, _)| *op != id);
    }
}

/// Every record merged, then the conflict policy applied.
fn merge<'a>(records: impl Iterator<Item = &'a Record>, policy: ConflictPolicy) -> Record {
    let merged = records.fold(Record::default(), |acc, r| acc.sync(r));
    apply_policy(&merged, policy)
}

fn success(op: &Op, ok: usize, policy: ConflictPolicy, sabotage: Sabotage) -> ClientResponse {
    let ok = u8::try_from(ok).unwrap_or(u8::MAX);
    match &op.kind {
        Kind::Write { record, .. } => ClientResponse::Written(WriteResult {
            context: Context(record.as_ref().map(Record::join).unwrap_or_default()),
            acked: ok,
        }),
        Kind::Read { replies, .. } => {
            let records = replies.iter().filter_map(|(_, r)| r.as_ref());
            let merged = if sabotage.skip_read_merge {
                merge(records.take(1), policy)
            } else {
                merge(records, policy)
            };
            let values = live_values(&merged)
                .into_iter()
                .filter_map(|s| {
                    s.value.as_ref().map(|data| Value {
                        data: data.clone(),
                        ts: s.ts,
                    })
                })
                .collect();
            ClientResponse::Got(ReadResult {
                values,
                context: Context(merged.join()),
                replied: ok,
            })
        }
    }
}

fn count(op: &Op, pred: impl Fn(&TargetState) -> bool) -> usize {
    op.targets.iter().filter(|t| pred(&t.state)).count()
}

fn failure(op: &Op, why: &str) -> ClientError {
    let (name, needed) = match &op.kind {
        Kind::Write { w, .. } => ("write", *w),
        Kind::Read { r, .. } => ("read", *r),
    };
    let detail: Vec<String> = op
        .targets
        .iter()
        .filter_map(|t| match &t.state {
            TargetState::Failed(e) => Some(format!("{}: {e}", t.name)),
            TargetState::Pending(_) | TargetState::Idle => Some(format!("{}: no answer", t.name)),
            TargetState::Ok => None,
        })
        .collect();
    ClientError::QuorumFailed {
        op: name.into(),
        needed: u8::try_from(needed).unwrap_or(u8::MAX),
        replicas: u8::try_from(op.targets.len()).unwrap_or(u8::MAX),
        ok: u8::try_from(count(op, |s| *s == TargetState::Ok)).unwrap_or(u8::MAX),
        detail: format!("{why}; {}", detail.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{DvvSet, Sibling};

    fn addr(i: u8) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, i], 7000)))
    }

    fn targets(down: &[&str]) -> Vec<Target> {
        ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let a = if down.contains(n) {
                    None
                } else {
                    addr(i as u8 + 1)
                };
                Target::new((*n).into(), a)
            })
            .collect()
    }

    fn record(value: &[u8], actor: &str) -> Record {
        let sib = Sibling {
            value: Some(value.to_vec()),
            ts: Timestamp::default(),
            origin: actor.into(),
        };
        DvvSet::update(&DvvSet::new(sib), &DvvSet::default(), actor)
    }

    fn spec(w: usize) -> WriteSpec {
        WriteSpec {
            key: b"k".to_vec(),
            value: Some(b"v".to_vec()),
            context: None,
            ts: Timestamp::default(),
            w,
        }
    }

    fn calls(out: &[Action]) -> Vec<(CallId, SocketAddr, PeerRequest)> {
        out.iter()
            .filter_map(|a| match a {
                Action::Call { call, to, req } => Some((*call, *to, req.clone())),
                Action::Reply { .. } => None,
            })
            .collect()
    }

    fn reply(out: &[Action]) -> Option<&Result<ClientResponse, ClientError>> {
        out.iter().find_map(|a| match a {
            Action::Reply { result, .. } => Some(result),
            Action::Call { .. } => None,
        })
    }

    #[test]
    fn write_goes_to_the_leader_then_fans_out_and_answers_at_w() {
        let mut c = Coordinator::new(ConflictPolicy::Siblings, Sabotage::default());
        let mut out = Vec::new();
        c.write(ClientId(1), targets(&[]), spec(2), &mut out);
        let first = calls(&out);
        assert_eq!(first.len(), 1, "only the leader is called first");
        assert!(matches!(first[0].2, PeerRequest::Write { .. }));
        assert_eq!(first[0].1, addr(1).unwrap());

        let mut out = Vec::new();
        c.on_reply(
            first[0].0,
            Ok(PeerReply::Written(record(b"v", "a"))),
            &mut out,
        );
        let fan = calls(&out);
        assert_eq!(fan.len(), 2);
        assert!(fan
            .iter()
            .all(|(_, _, r)| matches!(r, PeerRequest::Replicate { .. })));
        assert!(reply(&out).is_none(), "one ack is not W=2");

        let mut out = Vec::new();
        c.on_reply(fan[0].0, Ok(PeerReply::Replicated), &mut out);
        match reply(&out) {
            Some(Ok(ClientResponse::Written(w))) => assert_eq!(w.acked, 2),
            other => panic!("expected a write at W=2, got {other:?}"),
        }
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn a_failed_leader_hands_the_write_to_the_next_replica() {
        let mut c = Coordinator::new(ConflictPolicy::Siblings, Sabotage::default());
        let mut out = Vec::new();
        c.write(ClientId(1), targets(&[]), spec(2), &mut out);
        let first = calls(&out);
        let mut out = Vec::new();
        c.on_reply(first[0].0, Err("connection lost".into()), &mut out);
        let next = calls(&out);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].1, addr(2).unwrap());
        assert!(matches!(next[0].2, PeerRequest::Write { .. }));
    }

    #[test]
    fn an_impossible_quorum_fails_at_once_naming_the_down_replica() {
        let mut c = Coordinator::new(ConflictPolicy::Siblings, Sabotage::default());
        let mut out = Vec::new();
        c.write(ClientId(1), targets(&["c"]), spec(3), &mut out);
        match reply(&out) {
            Some(Err(ClientError::QuorumFailed {
                needed, ok, detail, ..
            })) => {
                assert_eq!((*needed, *ok), (3, 0));
                assert!(detail.contains("c: down"), "{detail}");
            }
            other => panic!("expected QuorumFailed, got {other:?}"),
        }
        assert!(calls(&out).is_empty());
    }

    #[test]
    fn a_write_with_one_replica_down_still_meets_w2() {
        let mut c = Coordinator::new(ConflictPolicy::Siblings, Sabotage::default());
        let mut out = Vec::new();
        c.write(ClientId(1), targets(&["b"]), spec(2), &mut out);
        let first = calls(&out);
        let mut out = Vec::new();
        c.on_reply(
            first[0].0,
            Ok(PeerReply::Written(record(b"v", "a"))),
            &mut out,
        );
        let fan = calls(&out);
        assert_eq!(fan.len(), 1, "the down replica is not called");
        let mut out = Vec::new();
        c.on_reply(fan[0].0, Ok(PeerReply::Replicated), &mut out);
        assert!(matches!(reply(&out), Some(Ok(ClientResponse::Written(_)))));
    }

    #[test]
    fn a_fallback_keeps_a_hint_for_a_down_replica_and_counts_toward_w() {
        let mut c = Coordinator::new(ConflictPolicy::Siblings, Sabotage::default());
        let mut t = targets(&["c"]);
        t.push(Target::fallback("d".into(), addr(4).unwrap(), "c".into()));
        let mut out = Vec::new();
        c.write(ClientId(1), t, spec(3), &mut out);
        let first = calls(&out);
        assert_eq!(first[0].1, addr(1).unwrap(), "a real replica leads");
        let mut out = Vec::new();
        c.on_reply(
            first[0].0,
            Ok(PeerReply::Written(record(b"v", "a"))),
            &mut out,
        );
        let fan = calls(&out);
        assert_eq!(fan.len(), 2);
        let hint = fan
            .iter()
            .find(|(_, to, _)| *to == addr(4).unwrap())
            .unwrap();
        assert!(matches!(&hint.2, PeerRequest::Hint { owner, .. } if owner == "c"));
        let mut out = Vec::new();
        for (call, _, _) in &fan {
            c.on_reply(*call, Ok(PeerReply::Replicated), &mut out);
        }
        match reply(&out) {
            Some(Ok(ClientResponse::Written(w))) => assert_eq!(w.acked, 3),
            other => panic!("expected W=3 met with the hint, got {other:?}"),
        }
    }

    #[test]
    fn a_fallback_never_leads_a_write() {
        let mut c = Coordinator::new(ConflictPolicy::Siblings, Sabotage::default());
        let mut t = targets(&["a", "b", "c"]);
        t.push(Target::fallback("d".into(), addr(4).unwrap(), "a".into()));
        let mut out = Vec::new();
        c.write(ClientId(1), t, spec(1), &mut out);
        assert!(calls(&out).is_empty());
        assert!(matches!(
            reply(&out),
            Some(Err(ClientError::QuorumFailed { .. }))
        ));
    }

    #[test]
    fn a_read_merges_siblings_from_r_replicas() {
        let mut c = Coordinator::new(ConflictPolicy::Siblings, Sabotage::default());
        let mut out = Vec::new();
        c.read(ClientId(7), targets(&[]), b"k".to_vec(), 2, &mut out);
        let asked = calls(&out);
        assert_eq!(asked.len(), 3, "every live replica is asked");
        let mut out = Vec::new();
        c.on_reply(
            asked[0].0,
            Ok(PeerReply::Read(Some(record(b"x", "a")))),
            &mut out,
        );
        assert!(reply(&out).is_none());
        c.on_reply(
            asked[1].0,
            Ok(PeerReply::Read(Some(record(b"y", "b")))),
            &mut out,
        );
        match reply(&out) {
            Some(Ok(ClientResponse::Got(r))) => {
                let mut values: Vec<&[u8]> = r.values.iter().map(|v| v.data.as_slice()).collect();
                values.sort();
                assert_eq!(values, vec![b"x".as_slice(), b"y".as_slice()]);
                assert_eq!(r.context.0.get("a"), 1);
                assert_eq!(r.context.0.get("b"), 1);
            }
            other => panic!("expected a merged read, got {other:?}"),
        }
    }

    #[test]
    fn after_every_reply_a_read_repairs_exactly_the_stale_replicas() {
        let mut c = Coordinator::new(ConflictPolicy::Siblings, Sabotage::default());
        let mut out = Vec::new();
        c.read(ClientId(7), targets(&[]), b"k".to_vec(), 2, &mut out);
        let asked = calls(&out);
        let full = record(b"x", "a");
        let mut out = Vec::new();
        c.on_reply(
            asked[0].0,
            Ok(PeerReply::Read(Some(full.clone()))),
            &mut out,
        );
        c.on_reply(
            asked[1].0,
            Ok(PeerReply::Read(Some(full.clone()))),
            &mut out,
        );
        assert!(reply(&out).is_some(), "answered at R=2");
        assert!(
            calls(&out).is_empty(),
            "no repair before every replica answered"
        );
        assert_eq!(c.in_flight(), 1, "the read waits for the last replica");
        let mut out = Vec::new();
        c.on_reply(asked[2].0, Ok(PeerReply::Read(None)), &mut out);
        let repairs = calls(&out);
        assert_eq!(
            repairs.len(),
            1,
            "only the replica without the key is repaired"
        );
        assert_eq!(repairs[0].1, addr(3).unwrap());
        assert!(matches!(&repairs[0].2, PeerRequest::Replicate { record, .. } if *record == full));
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn the_deadline_answers_with_what_is_known() {
        let mut c = Coordinator::new(ConflictPolicy::Lww, Sabotage::default());
        let mut out = Vec::new();
        let op = c.read(ClientId(7), targets(&[]), b"k".to_vec(), 2, &mut out);
        let mut out = Vec::new();
        c.on_deadline(op, &mut out);
        match reply(&out) {
            Some(Err(ClientError::QuorumFailed { detail, .. })) => {
                assert!(
                    detail.contains("timed out") && detail.contains("a: no answer"),
                    "{detail}"
                )
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert_eq!(c.in_flight(), 0);
    }
}
