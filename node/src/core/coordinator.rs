//! The coordinator side: one state machine per client request, fed replica replies.
//!
//! A write first goes to one replica (the leader of that write, this node when it is a
//! replica) which makes the write's single new dot; the resulting record then goes to the
//! other replicas. A read asks every live replica and merges the first R answers. Either
//! answers the client as soon as the quorum is met, or as soon as it no longer can be; a read
//! that asked to wait for its repairs answers only once every reachable replica replied and
//! the stale ones acknowledged the merged record.

use super::calls::CallError;
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
pub use super::calls::CallId;
use super::calls::{Calls, Owner};

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
            None => TargetState::Failed(CallError::Unreachable("down".into())),
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
    Failed(CallError),
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
        /// Answer only after every reachable replica replied and the repairs were acked.
        wait_repair: bool,
        /// Repairs sent while the client waits: (calls not answered yet, acknowledged).
        repairing: Option<(usize, u8)>,
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
    /// Repairs a waiting read sent, by call.
    repair_calls: HashMap<CallId, OpId>,
    next_op: u64,
    calls_out: Calls,
    policy: ConflictPolicy,
    sabotage: Sabotage,
}

/// What a read is.
pub struct ReadSpec {
    /// The key.
    pub key: Vec<u8>,
    /// Replies needed.
    pub r: usize,
    /// Answer only after the stale replicas acknowledged their repair.
    pub wait_repair: bool,
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
            repair_calls: HashMap::new(),
            next_op: 0,
            calls_out: Calls::new(Owner::Coordinator),
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

    /// Start a read of every live replica. With `wait_repair` the client is answered only
    /// once every reachable replica replied and the stale ones acknowledged their repair.
    pub fn read(
        &mut self,
        client: ClientId,
        targets: Vec<Target>,
        spec: ReadSpec,
        out: &mut Vec<Action>,
    ) -> OpId {
        let ReadSpec {
            key,
            r,
            wait_repair,
        } = spec;
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
            wait_repair,
            repairing: None,
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
        reply: Result<PeerReply, CallError>,
        out: &mut Vec<Action>,
    ) {
        if let Some(id) = self.repair_calls.remove(&call) {
            return self.on_repair_reply(id, matches!(reply, Ok(PeerReply::Replicated)), out);
        }
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
            (kind, Ok(PeerReply::Failed(r))) => {
                leader_failed = matches!(kind, Kind::Write { record: None, .. });
                TargetState::Failed(CallError::Refused(r))
            }
            (kind, Err(e)) => {
                leader_failed = matches!(kind, Kind::Write { record: None, .. });
                TargetState::Failed(e)
            }
            (_, Ok(other)) => {
                TargetState::Failed(CallError::BadAnswer(format!("unexpected reply {other:?}")))
            }
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
    /// answered, repair the replicas that did answer). A read waiting for its repairs that
    /// met R answers now, counting only the repairs acknowledged so far; if it had not sent
    /// them yet they go out unwatched, as for any read.
    pub fn on_deadline(&mut self, id: OpId, out: &mut Vec<Action>) {
        let Some(op) = self.ops.remove(&id) else {
            return;
        };
        self.forget_calls(id);
        let ok = count(&op, |s| *s == TargetState::Ok);
        match &op.kind {
            Kind::Read { answered: true, .. } => self.repair(&op, out),
            Kind::Read {
                r,
                wait_repair: true,
                repairing,
                ..
            } if ok >= *r => {
                let repaired = repairing.map_or(0, |(_, acked)| acked);
                out.push(Action::Reply {
                    id: op.client,
                    result: Ok(success(&op, ok, repaired, self.policy, self.sabotage)),
                });
                if repairing.is_none() {
                    self.repair(&op, out);
                }
            }
            _ => out.push(Action::Reply {
                id: op.client,
                result: Err(failure(&op, "timed out")),
            }),
        }
    }

    /// A replica answered a repair a waiting read sent; the read answers after the last one.
    fn on_repair_reply(&mut self, id: OpId, acked: bool, out: &mut Vec<Action>) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        let Kind::Read {
            repairing: Some((pending, done)),
            ..
        } = &mut op.kind
        else {
            return;
        };
        *pending = pending.saturating_sub(1);
        if acked {
            *done = done.saturating_add(1);
        }
        if *pending > 0 {
            return;
        }
        let repaired = *done;
        if let Some(op) = self.ops.remove(&id) {
            self.forget_calls(id);
            let ok = count(&op, |s| *s == TargetState::Ok);
            out.push(Action::Reply {
                id: op.client,
                result: Ok(success(&op, ok, repaired, self.policy, self.sabotage)),
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
        let call = self.calls_out.next_id();
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
    /// replica answered, then repairs the stale ones (read repair). A read waiting for its
    /// repairs answers only after them.
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
        let (needed, done, answered, wait_repair) = match &op.kind {
            Kind::Write { w, .. } if sabotage.ack_after_one => (*w, ok >= 1, false, false),
            Kind::Write { w, .. } => (*w, ok >= *w, false, false),
            Kind::Read {
                r,
                answered,
                wait_repair,
                repairing,
                ..
            } => {
                if repairing.is_some() {
                    return; // every replica replied already; the repair acks answer
                }
                (*r, ok >= *r, *answered, *wait_repair)
            }
        };
        if done && wait_repair {
            if open == 0 {
                self.repair_then_answer(id, ok, out);
            }
            return;
        }
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
            Ok(success(op, ok, 0, policy, sabotage))
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

    /// Every replica replied to a read that waits for its repairs: repair the stale ones
    /// and answer once they acknowledged (at once when none is stale).
    fn repair_then_answer(&mut self, id: OpId, ok: usize, out: &mut Vec<Action>) {
        let Some(op) = self.ops.get(&id) else { return };
        let repairs = repairs(op, self.policy);
        if repairs.is_empty() {
            if let Some(op) = self.ops.remove(&id) {
                self.forget_calls(id);
                out.push(Action::Reply {
                    id: op.client,
                    result: Ok(success(&op, ok, 0, self.policy, self.sabotage)),
                });
            }
            return;
        }
        let sent = repairs.len();
        for (to, req) in repairs {
            let call = self.calls_out.next_id();
            self.repair_calls.insert(call, id);
            out.push(Action::Call { call, to, req });
        }
        if let Some(Op {
            kind: Kind::Read { repairing, .. },
            ..
        }) = self.ops.get_mut(&id)
        {
            *repairing = Some((sent, 0));
        }
    }

    /// Send the merged record to every replica that answered with something older; nobody
    /// waits for these answers, so the call ids are not registered.
    fn repair(&mut self, op: &Op, out: &mut Vec<Action>) {
        for (to, req) in repairs(op, self.policy) {
            out.push(Action::Call {
                call: self.calls_out.next_id(),
                to,
                req,
            });
        }
    }

    fn forget_calls(&mut self, id: OpId) {
        self.calls.retain(|_, (op, _)| *op != id);
        self.repair_calls.retain(|_, op| *op != id);
    }
}

/// For a read, the merged record for every replica that answered with something older.
fn repairs(op: &Op, policy: ConflictPolicy) -> Vec<(SocketAddr, PeerRequest)> {
    let Kind::Read {
        key,
        token,
        replies,
        ..
    } = &op.kind
    else {
        return Vec::new();
    };
    let merged = merge(replies.iter().filter_map(|(_, r)| r.as_ref()), policy);
    if merged.size() == 0 {
        return Vec::new();
    }
    replies
        .iter()
        .filter(|(_, held)| held.as_ref() != Some(&merged))
        .filter_map(|(idx, _)| op.targets.get(*idx).and_then(|t| t.addr))
        .map(|to| {
            let req = PeerRequest::Replicate {
                token: *token,
                key: key.clone(),
                record: merged.clone(),
            };
            (to, req)
        })
        .collect()
}

/// Every record merged, then the conflict policy applied.
fn merge<'a>(records: impl Iterator<Item = &'a Record>, policy: ConflictPolicy) -> Record {
    let merged = records.fold(Record::default(), |acc, r| acc.sync(r));
    apply_policy(&merged, policy)
}

fn success(
    op: &Op,
    ok: usize,
    repaired: u8,
    policy: ConflictPolicy,
    sabotage: Sabotage,
) -> ClientResponse {
    let ok = u8::try_from(ok).unwrap_or(u8::MAX);
    match &op.kind {
        Kind::Write { record, .. } => ClientResponse::Written(WriteResult {
            context: Context(record.as_ref().map(Record::join).unwrap_or_default()),
            acked: ok,
            session: None,
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
                repaired,
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
#[path = "coordinator_tests.rs"]
mod tests;
