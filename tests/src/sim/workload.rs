//! Simulated clients: each issues puts, gets and deletes one after the other, with chosen
//! R and W, through a random node, and the history records every invocation and outcome.
//!
//! Every put writes a value unique to it (`v{op id}`), so a read's values name exactly the
//! puts they came from. A write carries the context of the client's last read of that key
//! (read-modify-write) or none (a blind write, concurrent with everything).

use std::collections::BTreeMap;

use ringkv::proto::{ClientError, ClientRequest, ClientResponse};
use ringkv::version::Context;

use super::history::{key_bytes, op_of_value, value_of, History, OpKind, Outcome};
use super::rng::{SimRng, Stream};
use super::world::{Answer, World};

#[derive(Debug, Default)]
struct Client {
    busy: Option<u64>,
    /// Per key: the last successful read and its context.
    reads: BTreeMap<usize, (u64, Context)>,
}

/// The clients and the history they write.
pub struct Workload {
    rng: SimRng,
    clients: Vec<Client>,
    keys: usize,
    n: u8,
    ops_left: usize,
    /// Mean pause between two operations of one client, microseconds.
    pace_us: u64,
    /// Everything issued so far.
    pub history: History,
}

impl Workload {
    /// `clients` clients over `keys` keys issuing `ops` operations in all, spread over
    /// `window_us`, for a cluster with `n` replicas per key.
    pub fn new(
        seed: u64,
        clients: usize,
        keys: usize,
        ops: usize,
        n: usize,
        window_us: u64,
    ) -> Self {
        let per_client = (ops / clients.max(1)).max(1) as u64;
        Self {
            pace_us: (window_us / per_client).clamp(1_000, 10_000_000),
            rng: SimRng::new(seed, Stream::Workload),
            clients: (0..clients).map(|_| Client::default()).collect(),
            keys: keys.max(1),
            n: u8::try_from(n).unwrap_or(u8::MAX).max(1),
            ops_left: ops,
            history: History::new(),
        }
    }

    /// How many clients there are.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Operations not issued yet.
    pub fn ops_left(&self) -> usize {
        self.ops_left
    }

    /// A client's pause between two operations, microseconds: uniform around the pace that
    /// spreads the operations over the whole workload window, so faults meet traffic.
    pub fn think_us(&mut self) -> u64 {
        self.rng.between(0, 2 * self.pace_us)
    }

    /// A quorum from 1..=N, mostly the majority.
    fn quorum(&mut self) -> u8 {
        let majority = self.n / 2 + 1;
        match self.rng.below(20) {
            0..=2 => 1,
            3..=5 => self.n,
            _ => majority,
        }
    }

    /// Client `c` issues its next operation through one of `nodes`; `None` when it is busy,
    /// the budget is spent or there is no node.
    pub fn issue(&mut self, world: &mut World, c: usize, nodes: &[usize]) -> Option<u64> {
        if self.ops_left == 0 || nodes.is_empty() || self.clients.get(c)?.busy.is_some() {
            return None;
        }
        self.ops_left -= 1;
        let node = nodes[self.rng.index(nodes.len())];
        let key = self.rng.index(self.keys);
        let last_read = self.clients[c].reads.get(&key).cloned();
        let roll = self.rng.below(100);
        let with_context = self.rng.chance(0.7);
        let kind = match (roll, last_read.as_ref()) {
            (0..=44, _) | (85.., None) => OpKind::Get { r: self.quorum() },
            (45..=84, _) => OpKind::Put {
                w: self.quorum(),
                ctx_from: last_read.as_ref().filter(|_| with_context).map(|r| r.0),
            },
            (85.., Some((read, _))) => OpKind::Delete {
                w: self.quorum(),
                ctx_from: Some(*read),
            },
        };
        let context = kind
            .ctx_from()
            .and_then(|_| last_read.map(|(_, context)| context));
        Some(self.send(world, c, key, kind, context, node))
    }

    /// A read of `key` at quorum `r` through `node` by client `c` (the final audit).
    pub fn read(&mut self, world: &mut World, c: usize, key: usize, r: u8, node: usize) -> u64 {
        self.send(world, c, key, OpKind::Get { r }, None, node)
    }

    fn send(
        &mut self,
        world: &mut World,
        c: usize,
        key: usize,
        kind: OpKind,
        context: Option<Context>,
        node: usize,
    ) -> u64 {
        let id = self
            .history
            .invoke(c, key, kind.clone(), node, world.now_us());
        let k = key_bytes(key);
        let (req, what) = match kind {
            OpKind::Get { r } => (
                ClientRequest::Get {
                    key: k,
                    r: Some(r),
                    wait_repair: false,
                },
                format!("op{id} c{c} get key{key} r={r}"),
            ),
            OpKind::Put { w, ctx_from } => (
                ClientRequest::Put {
                    key: k,
                    value: value_of(id),
                    context,
                    w: Some(w),
                },
                format!("op{id} c{c} put key{key}=v{id} w={w} ctx={ctx_from:?}"),
            ),
            OpKind::Delete { w, ctx_from } => (
                ClientRequest::Delete {
                    key: k,
                    context,
                    w: Some(w),
                },
                format!("op{id} c{c} del key{key} w={w} ctx={ctx_from:?}"),
            ),
        };
        if let Some(client) = self.clients.get_mut(c) {
            client.busy = Some(id);
        }
        world.submit(id, node, req, what);
        id
    }

    /// Operation `id` got its answer at `now`; returns the client now free, if it was the
    /// first answer.
    pub fn answered(
        &mut self,
        id: u64,
        answer: Answer,
        preference: Option<Vec<String>>,
        now: u64,
    ) -> Option<usize> {
        let op = self.history.get(id)?;
        let (client, key) = (op.client, op.key);
        let outcome = match answer {
            Answer::Ok(ClientResponse::Got(read)) => {
                let mut values = std::collections::BTreeSet::new();
                let mut unknown = Vec::new();
                for v in read.values {
                    match op_of_value(&v.data) {
                        Some(put) => {
                            values.insert(put);
                        }
                        None => unknown.push(v.data),
                    }
                }
                Outcome::Read {
                    values,
                    unknown,
                    context: read.context,
                }
            }
            Answer::Ok(ClientResponse::Written(_)) => Outcome::Written,
            Answer::Ok(other) => Outcome::Maybe(format!("unexpected answer {other:?}")),
            Answer::Refused(
                e @ (ClientError::QuorumFailed { .. } | ClientError::Unavailable(_)),
            ) => Outcome::Maybe(e.to_string()),
            Answer::Refused(_) | Answer::Unreachable => Outcome::NoEffect,
            Answer::Lost => Outcome::Maybe("coordinator lost".into()),
        };
        let context = match &outcome {
            Outcome::Read { context, .. } => Some(context.clone()),
            _ => None,
        };
        if !self.history.complete(id, now, outcome, preference) {
            return None;
        }
        let c = self.clients.get_mut(client)?;
        if let Some(context) = context {
            c.reads.insert(key, (id, context));
        }
        if c.busy == Some(id) {
            c.busy = None;
        }
        Some(client)
    }

    /// The client behind `id` stops waiting for it; returns the client now free.
    pub fn give_up(&mut self, id: u64, now: u64) -> Option<usize> {
        if !self
            .history
            .complete(id, now, Outcome::Maybe("client gave up".into()), None)
        {
            return None;
        }
        let client = self.history.get(id)?.client;
        let c = self.clients.get_mut(client)?;
        if c.busy == Some(id) {
            c.busy = None;
        }
        Some(client)
    }
}
