//! The coordinator side: one state machine per client request, fed replica replies.
//!
//! A write first goes to one replica (the leader of that write, this node when it is a
//! replica) which makes the write's single new dot; the resulting record then goes to the
//! other replicas. A read asks every live replica and merges the first R answers. Either
//! answers the client as soon as the quorum is met, or as soon as it no longer can be.

use std::collections::HashMap;
use std::net::SocketAddr;

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
    state: TargetState,
}

impl Target {
    /// A replica that may be called (`addr` set) or is known to be unreachable.
    pub fn new(name: String, addr: Option<SocketAddr>) -> Self {
        let state = match addr {
            Some(_) => TargetState::Idle,
            None => TargetState::Failed("down".into()),
        };
        Self { name, addr, state }
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
        r: usize,
        records: Vec<Record>,
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
    pub fn new(policy: ConflictPolicy) -> Self {
        Self {
            ops: HashMap::new(),
            calls: HashMap::new(),
            next_op: 0,
            next_call: 0,
            policy,
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
        self.call_leader(id, out);
        self.settle(id, out);
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
        let req = PeerRequest::Read { token, key };
        let kind = Kind::Read {
            r,
            records: Vec::new(),
        };
        let id = self.insert(client, targets, kind);
        let idle: Vec<usize> = self.idle_targets(id);
        for idx in idle {
            self.call(id, idx, req.clone(), out);
        }
        self.settle(id, out);
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
            (Kind::Read { records, .. }, Ok(PeerReply::Read(r))) => {
                records.extend(r);
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

    /// The request's deadline passed: answer with what it has.
    pub fn on_deadline(&mut self, id: OpId, out: &mut Vec<Action>) {
        if let Some(op) = self.ops.remove(&id) {
            self.forget_calls(id);
            out.push(Action::Reply {
                id: op.client,
                result: Err(failure(&op, "timed out")),
            });
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
        if let Some(idx) = self.idle_targets(id).first().copied() {
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
        let req = PeerRequest::Replicate {
            token: *token,
            key: key.clone(),
            record: record.clone(),
        };
        for idx in self.idle_targets(id) {
            self.call(id, idx, req.clone(), out);
        }
    }

    /// Answer the client once the quorum is met or can no longer be.
    fn settle(&mut self, id: OpId, out: &mut Vec<Action>) {
        let Some(op) = self.ops.get(&id) else { return };
        let ok = count(op, |s| *s == TargetState::Ok);
        let open = count(op, |s| {
            matches!(s, TargetState::Pending(_) | TargetState::Idle)
        });
        let (needed, done) = match &op.kind {
            Kind::Write { w, .. } => (*w, ok >= *w),
            Kind::Read { r, .. } => (*r, ok >= *r),
        };
        if !done && ok + open >= needed {
            return;
        }
        let Some(op) = self.ops.remove(&id) else {
            return;
        };
        self.forget_calls(id);
        let result = if done {
            Ok(self.success(&op, ok))
        } else {
            Err(failure(&op, "not enough replicas answered"))
        };
        out.push(Action::Reply {
            id: op.client,
            result,
        });
    }

    fn success(&self, op: &Op, ok: usize) -> ClientResponse {
        let ok = u8::try_from(ok).unwrap_or(u8::MAX);
        match &op.kind {
            Kind::Write { record, .. } => ClientResponse::Written(WriteResult {
                context: Context(record.as_ref().map(Record::join).unwrap_or_default()),
                acked: ok,
            }),
            Kind::Read { records, .. } => {
                let merged = records
                    .iter()
                    .skip(1)
                    .fold(records.first().cloned().unwrap_or_default(), |acc, r| {
                        acc.sync(r)
                    });
                let merged = apply_policy(&merged, self.policy);
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

    fn forget_calls(&mut self, id: OpId) {
        self.calls.retain(|_, (op, _)| *op != id);
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
