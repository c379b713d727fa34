//! Client requests: admin answers, admission against the limits, and quorum-mode reads and
//! writes handed to the coordinator (primary-mode keys go to `primary.rs`).

use crate::limits::Limit;
use crate::proto::Unavailable;
use ringkv_gossip::{MemberState, NodeStatus};

use super::coordinator::{ReadSpec, Target, WriteSpec};
use super::replica::load;
use super::{hints, primary, ClientId, Effect, NodeCore, Timer};
use crate::proto::{
    ClientError, ClientRequest, ClientResponse, InspectResult, MemberRow, PeerRequest, RingInfo,
};

impl NodeCore {
    /// Every node this node knows, itself first.
    pub fn members(&self) -> Vec<MemberRow> {
        let me = self.shared.membership.me();
        let mut rows = vec![MemberRow {
            name: me.name.clone(),
            addr: me.addr.to_string(),
            state: "alive".into(),
            status: status_name(self.shared.membership.status()).into(),
            zone: me.zone.clone(),
        }];
        rows.extend(self.shared.membership.members().into_iter().map(|m| {
            MemberRow {
                name: m.id.name.clone(),
                addr: m.id.addr.to_string(),
                state: match m.state {
                    MemberState::Alive => "alive",
                    MemberState::Suspect => "suspect",
                    MemberState::Down => "down",
                }
                .into(),
                status: status_name(m.status).into(),
                zone: m.id.zone.clone(),
            }
        }));
        rows
    }

    pub(super) fn client(
        &mut self,
        now_ms: u64,
        id: ClientId,
        req: ClientRequest,
        out: &mut Vec<Effect>,
    ) {
        self.client_from(now_ms, id, req, false, out);
    }

    /// Serve a client's request; `forwarded` when another node sent it here as to the key's
    /// primary.
    pub(super) fn client_from(
        &mut self,
        now_ms: u64,
        id: ClientId,
        req: ClientRequest,
        forwarded: bool,
        out: &mut Vec<Effect>,
    ) {
        if !self.table.synced() && keyed(&req) {
            // A key's mode is not known yet: serving a primary-mode key by quorum would leave
            // a value outside its shard's log.
            return self.wait_for_table(now_ms, id, req, forwarded, out);
        }
        let (mut req, mut direct, mut after) = (req, false, None);
        // Peel the modifiers (serve here, read after a session), each at most once.
        for _ in 0..2 {
            req = match req {
                ClientRequest::Direct(inner) if !direct => {
                    direct = true;
                    *inner
                }
                ClientRequest::After { after: a, req } if after.is_none() => {
                    after = Some(a);
                    *req
                }
                other => other,
            };
        }
        if matches!(req, ClientRequest::Direct(_) | ClientRequest::After { .. }) {
            let e = ClientError::BadRequest("a request modifier may appear once".into());
            return reply(out, id, Err(e));
        }
        let primary = match &req {
            ClientRequest::Get { key, .. }
            | ClientRequest::Put { key, .. }
            | ClientRequest::Delete { key, .. }
            | ClientRequest::Update { key, .. } => self.table.current().lookup(key).cloned(),
            _ => None,
        };
        if let Some(opts) = primary {
            if let Err(e) = self.admit(now_ms, &DataOp::of(&req)) {
                return reply(out, id, Err(e));
            }
            let origin = match (forwarded, direct) {
                (true, _) => primary::Origin::Forwarded,
                (false, true) => primary::Origin::Direct,
                (false, false) => primary::Origin::Client,
            };
            return self.primary_op(now_ms, id, req, opts, (origin, after), out);
        }
        let op = match req {
            ClientRequest::Direct(_) | ClientRequest::After { .. } => return,
            ClientRequest::Update { .. } => {
                let e = ClientError::Update(super::update::UpdateError::NeedsPrimaryMode);
                return reply(out, id, Err(e));
            }
            ClientRequest::Replication { key } => {
                let ctx = self.shared.repl_ctx(self.table.current(), now_ms);
                let shard = key.map(|k| self.shared.ring.preference_list(&k).to_vec());
                let mut rows = self.repl.info(&ctx);
                rows.retain(|r| shard.as_ref().is_none_or(|s| *s == r.shard));
                return reply(out, id, Ok(ClientResponse::Replication(rows)));
            }
            ClientRequest::Keys { from, limit } => return self.list_keys(id, from, limit, out),
            ClientRequest::Members => {
                let rows = self.members();
                return reply(out, id, Ok(ClientResponse::Members(rows)));
            }
            ClientRequest::Ring => {
                let info = self.ring_info();
                return reply(out, id, Ok(ClientResponse::Ring(info)));
            }
            ClientRequest::Inspect { key } => {
                let result = self.inspect(key);
                return reply(out, id, result.map(ClientResponse::Inspect));
            }
            ClientRequest::Status => {
                let ctx = self.shared.view(now_ms);
                let mut status = self.ae.status(&ctx);
                status.ranges = self.hints.range_status(&self.shared.ring, status.ranges);
                (status.hints, status.hints_delivered, status.hints_dropped) =
                    self.hints.report(self.shared.store.as_ref());
                status.keys_handed_off = self.transfer.moved();
                status.tombstones_reaped = self.gc.reaped();
                return reply(out, id, Ok(ClientResponse::Status(status)));
            }
            ClientRequest::Repair => {
                let ctx = self.shared.view(now_ms);
                let progress = self.ae.repair(&ctx);
                return reply(out, id, Ok(ClientResponse::Repair(progress)));
            }
            ClientRequest::RangeSet { prefix, mode } => {
                let ctx = self.shared.view(now_ms);
                let result = self.table.set(&ctx, prefix, mode, out);
                if result.is_ok() {
                    self.table_changed();
                }
                return reply(out, id, result.map(ClientResponse::RangeTable));
            }
            ClientRequest::RangeList => {
                let rows = self.table.current().rows();
                return reply(out, id, Ok(ClientResponse::RangeTable(rows)));
            }
            ClientRequest::Get {
                key,
                r,
                wait_repair,
            } => DataOp::Read {
                key,
                r,
                wait_repair,
            },
            ClientRequest::Put {
                key,
                value,
                context,
                w,
            } => DataOp::Write {
                key,
                value: Some(value),
                context,
                w,
            },
            ClientRequest::Delete { key, context, w } => DataOp::Write {
                key,
                value: None,
                context,
                w,
            },
        };
        if let Err(e) = self.admit(now_ms, &op) {
            return reply(out, id, Err(e));
        }
        let mut actions = Vec::new();
        let q = self.shared.config.quorum;
        let op_id = match op {
            DataOp::Read {
                key,
                r,
                wait_repair,
            } => {
                let targets = self.targets(&key, false);
                let spec = ReadSpec {
                    key,
                    r: r.map_or(q.r, usize::from),
                    wait_repair,
                };
                self.coordinator.read(id, targets, spec, &mut actions)
            }
            DataOp::Write {
                key,
                value,
                context,
                w,
            } => {
                let targets = self.targets(&key, true);
                let spec = WriteSpec {
                    key,
                    value,
                    context: context.map(|c| c.0),
                    ts: self.shared.hlc.now(now_ms),
                    w: w.map_or(q.w, usize::from),
                };
                self.coordinator.write(id, targets, spec, &mut actions)
            }
        };
        self.act(actions, out);
        out.push(Effect::Schedule {
            after: self.shared.config.request_timeout,
            timer: Timer::Deadline(op_id),
        });
    }

    /// Hold a keyed request until the range table is synced (see [`super::table`]), or refuse
    /// it retryably when `max_in_flight` already wait.
    fn wait_for_table(
        &mut self,
        now_ms: u64,
        id: ClientId,
        req: ClientRequest,
        forwarded: bool,
        out: &mut Vec<Effect>,
    ) {
        let max = self.shared.config.limits.max_in_flight;
        let waiting = super::table::Waiting {
            since_ms: now_ms,
            id,
            req,
            forwarded,
        };
        if self.table.wait(waiting, max).is_err() {
            self.limit_counts.hit(
                Limit::InFlight,
                now_ms,
                format_args!("{max} requests wait for the range table; refused"),
            );
            reply(
                out,
                id,
                Err(ClientError::Unavailable(Unavailable::TableUnknown)),
            );
        }
    }

    /// Serve the requests that waited for the range table, now that it is synced.
    pub(super) fn release_waiting(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        for w in self.table.released() {
            self.client_from(now_ms, w.id, w.req, w.forwarded, out);
        }
    }

    /// Refuse (retryably) the requests that waited for the range table a request timeout.
    pub(super) fn expire_waiting(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        let timeout_ms = super::replication::millis(self.shared.config.request_timeout);
        for w in self.table.expired(now_ms, timeout_ms) {
            reply(
                out,
                w.id,
                Err(ClientError::Unavailable(Unavailable::TableUnknown)),
            );
        }
    }

    /// Whether a replica request is a quorum-path write to a key under a primary prefix: those
    /// go through the key's primary only, so the log stays the key's one history.
    pub(super) fn quorum_write_refused(&self, req: &PeerRequest) -> bool {
        let key = match req {
            PeerRequest::Write { key, .. }
            | PeerRequest::Replicate { key, .. }
            | PeerRequest::Hint { key, .. } => key,
            _ => return false,
        };
        self.table.current().lookup(key).is_some()
    }

    /// What this node alone holds for a key.
    pub(super) fn inspect(&self, key: Vec<u8>) -> Result<InspectResult, ClientError> {
        let max = self.shared.config.limits.max_key;
        if key.is_empty() || key.len() > max {
            return Err(ClientError::BadKey {
                size: key.len(),
                max,
            });
        }
        let token = ringkv_ring::token(&key);
        let record = load(self.shared.store.as_ref(), token, &key)
            .map_err(|e| ClientError::Unavailable(Unavailable::Storage(e.to_string())))?
            .unwrap_or_default();
        let hints = hints::held_for(self.shared.store.as_ref(), token, &key).map_err(|e| {
            ClientError::Unavailable(Unavailable::Storage(format!("cannot read hints: {e}")))
        })?;
        let me = &self.shared.membership.me().name;
        Ok(InspectResult {
            node: me.clone(),
            replica: self.shared.ring.preference_list(&key).contains(me),
            token,
            siblings: hints::siblings(&record),
            context: crate::version::Context(record.join()),
            hints,
        })
    }

    /// Check a data request against the limits before any replica is bothered.
    pub(super) fn admit(&mut self, now_ms: u64, op: &DataOp) -> Result<(), ClientError> {
        let limits = &self.shared.config.limits;
        let in_flight = self.coordinator.in_flight();
        if in_flight >= limits.max_in_flight {
            self.limit_counts.hit(
                Limit::InFlight,
                now_ms,
                format_args!("{in_flight} client requests in flight; refused as overloaded"),
            );
            return Err(ClientError::Overloaded { in_flight });
        }
        let (key, value, quorum) = match op {
            DataOp::Read { key, r, .. } => (key, None, r.map(|r| ("r", r))),
            DataOp::Write { key, value, w, .. } => (key, value.as_ref(), w.map(|w| ("w", w))),
        };
        if key.is_empty() || key.len() > limits.max_key {
            return Err(ClientError::BadKey {
                size: key.len(),
                max: limits.max_key,
            });
        }
        if let Some(v) = value.filter(|v| v.len() > limits.max_value) {
            return Err(ClientError::ValueTooLarge {
                size: v.len(),
                max: limits.max_value,
            });
        }
        let n = self.shared.config.quorum.n;
        if let Some((which, asked)) = quorum.filter(|(_, q)| *q == 0 || usize::from(*q) > n) {
            return Err(ClientError::BadQuorum {
                which: which.into(),
                asked,
                n: u8::try_from(n).unwrap_or(u8::MAX),
            });
        }
        Ok(())
    }

    /// The key's preference list, this node first when it is a replica (it leads the write
    /// without a network hop), unreachable replicas without an address. For a write under
    /// sloppy quorum, each unreachable replica gets a live fallback past the list that keeps
    /// a hint for it.
    pub(super) fn targets(&self, key: &[u8], write: bool) -> Vec<Target> {
        let me = &self.shared.membership.me().name;
        let live = |name: &str| name == me || self.shared.membership.is_alive(name);
        let list = self.shared.ring.preference_list(key);
        let mut names: Vec<&String> = list.iter().collect();
        if let Some(pos) = names.iter().position(|n| *n == me) {
            names[..=pos].rotate_right(1);
        }
        let mut targets: Vec<Target> = names
            .into_iter()
            .map(|name| {
                let addr = self.shared.addrs.get(name).copied().filter(|_| live(name));
                Target::new(name.clone(), addr)
            })
            .collect();
        if write && self.hints.sloppy() {
            let down: Vec<String> = targets
                .iter()
                .filter(|t| t.addr.is_none())
                .map(|t| t.name.clone())
                .collect();
            let token = ringkv_ring::token(key);
            let stand_ins = hints::fallbacks(&self.shared.ring, token, list, live, down.len());
            for (owner, name) in down.into_iter().zip(stand_ins) {
                if let Some(addr) = self.shared.addrs.get(&name).copied() {
                    targets.push(Target::fallback(name, addr, owner));
                }
            }
        }
        targets
    }

    pub(super) fn ring_info(&self) -> RingInfo {
        let owned = self.shared.ring.ownership();
        let share = self.shared.ring.replica_share();
        RingInfo {
            n: u8::try_from(self.shared.config.quorum.n).unwrap_or(u8::MAX),
            vnodes: self.shared.config.vnodes,
            nodes: self
                .shared
                .ring
                .nodes()
                .iter()
                .map(|n| {
                    let first = owned.get(&n.name).copied().unwrap_or(0.0);
                    let any = share.get(&n.name).copied().unwrap_or(0.0);
                    (n.name.clone(), first, any)
                })
                .collect(),
        }
    }
}

/// A data request, once admin requests are answered.
#[derive(Clone)]
pub(super) enum DataOp {
    Read {
        key: Vec<u8>,
        r: Option<u8>,
        wait_repair: bool,
    },
    Write {
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        context: Option<crate::version::Context>,
        w: Option<u8>,
    },
}

impl DataOp {
    /// The data operation of a `Get`, `Put` or `Delete` (an empty read for anything else, which
    /// callers never pass).
    pub(super) fn of(req: &ClientRequest) -> Self {
        match req {
            ClientRequest::Get {
                key,
                r,
                wait_repair,
            } => DataOp::Read {
                key: key.clone(),
                r: *r,
                wait_repair: *wait_repair,
            },
            ClientRequest::Put {
                key,
                value,
                context,
                w,
            } => DataOp::Write {
                key: key.clone(),
                value: Some(value.clone()),
                context: context.clone(),
                w: *w,
            },
            ClientRequest::Delete { key, context, w } => DataOp::Write {
                key: key.clone(),
                value: None,
                context: context.clone(),
                w: *w,
            },
            ClientRequest::Update { key, op } => DataOp::Write {
                key: key.clone(),
                value: op.argument().cloned(),
                context: None,
                w: None,
            },
            _ => DataOp::Read {
                key: Vec::new(),
                r: None,
                wait_repair: false,
            },
        }
    }
}

/// The name `ringctl members` shows for a status.
pub fn status_name(status: NodeStatus) -> &'static str {
    match status {
        NodeStatus::Joining => "joining",
        NodeStatus::Up => "up",
        NodeStatus::Leaving => "leaving",
    }
}

pub(super) fn reply(
    out: &mut Vec<Effect>,
    id: ClientId,
    result: Result<ClientResponse, ClientError>,
) {
    out.push(Effect::Reply { id, result });
}

/// Whether `req` names a key, through its modifiers (at most two are served).
fn keyed(req: &ClientRequest) -> bool {
    let mut req = req;
    for _ in 0..3 {
        req = match req {
            ClientRequest::Direct(inner) | ClientRequest::After { req: inner, .. } => inner,
            ClientRequest::Get { .. }
            | ClientRequest::Put { .. }
            | ClientRequest::Delete { .. }
            | ClientRequest::Update { .. } => return true,
            _ => return false,
        };
    }
    false
}
