//! Client requests for keys under a primary prefix: served by the shard's primary, forwarded
//! to it, or refused with `READONLY` when the client asked this node alone.

use std::collections::HashMap;

use super::coordinator::{CallId, ClientId};
use super::replica::load;
use super::replication::{self, majority, Route};
use super::update::Plan;
use super::{Effect, InboundId, NodeCore, Timer};
use crate::proto::{ClientError, ClientRequest, ClientResponse, PeerReply, PeerRequest, Session};
use crate::table::{PrimaryOptions, ReadFrom, SyncReplicas};

#[cfg(test)]
#[path = "primary_tests.rs"]
mod tests;

/// Call ids of forwarded requests carry this bit.
pub const FORWARD_CALL_BIT: u64 = 1 << 57;
/// Client ids of requests forwarded to this node carry this bit.
const FORWARDED_CLIENT_BIT: u64 = 1 << 63;
/// Most nodes one forwarded request is sent to: the first guess and two corrections, each
/// named by the node asked before (an answer never sends it to a node already asked).
const MAX_FORWARD_TRIES: usize = 3;

/// A client's request on its way to the key's primary.
struct Forward {
    client: ClientId,
    req: ClientRequest,
    /// Nodes asked so far, oldest first.
    tried: Vec<String>,
    deadline_ms: u64,
}

/// Requests this node forwarded, and requests forwarded to it.
#[derive(Default)]
pub struct Forwards {
    /// Our calls to a primary.
    out: HashMap<CallId, Forward>,
    /// Requests another node forwarded here, by the stream to answer.
    inbound: HashMap<ClientId, InboundId>,
    /// Updates waiting for their write's acknowledgement.
    pub(super) updates: super::update::PendingUpdates,
    next: u64,
}

impl Forwards {
    /// A client id for a request another node forwarded here.
    pub fn accept(&mut self, from: InboundId) -> ClientId {
        self.next = (self.next + 1) & (FORWARD_CALL_BIT - 1);
        let id = ClientId(FORWARDED_CLIENT_BIT | self.next);
        self.inbound.insert(id, from);
        id
    }

    /// Answers to forwarded requests go back to the forwarding node.
    pub fn route_replies(&mut self, out: &mut [Effect]) {
        self.updates.route_replies(out);
        if self.inbound.is_empty() {
            return;
        }
        for effect in out.iter_mut() {
            if let Effect::Reply { id, result } = effect {
                if let Some(inbound) = self.inbound.remove(id) {
                    let result =
                        std::mem::replace(result, Err(ClientError::Unavailable(String::new())));
                    *effect = Effect::Respond {
                        id: inbound,
                        reply: PeerReply::Forwarded(result),
                        sync: false,
                    };
                }
            }
        }
    }

    /// A forwarded call's deadline passed.
    pub fn on_deadline(&mut self, call: CallId, out: &mut Vec<Effect>) {
        if let Some(fwd) = self.out.remove(&call) {
            out.push(Effect::Reply {
                id: fwd.client,
                result: Err(ClientError::Unavailable(
                    "the key's primary did not answer in time; retry".into(),
                )),
            });
        }
    }
}

/// Who asked for a primary-mode operation, which decides where it may be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A client, through any node: forwarded to the key's primary when that is another node.
    Client,
    /// A client that asked this node alone (`--direct`): a replica reads its own copy and
    /// refuses writes with `READONLY`.
    Direct,
    /// Another node forwarded a client's request here as to the key's primary: served as the
    /// primary (reads through the read index), never from a replica's copy, never forwarded on.
    Forwarded,
}

impl NodeCore {
    /// Serve a primary-mode `Get`, `Put` or `Delete` (already admitted).
    pub(super) fn primary_op(
        &mut self,
        now_ms: u64,
        id: ClientId,
        req: ClientRequest,
        opts: PrimaryOptions,
        (origin, after): (Origin, Option<Session>),
        out: &mut Vec<Effect>,
    ) {
        repl_ctx!(self, now_ms, ctx);
        let deadline = now_ms + super::replication::millis(self.config.request_timeout);
        let key = match &req {
            ClientRequest::Get { key, .. }
            | ClientRequest::Put { key, .. }
            | ClientRequest::Delete { key, .. }
            | ClientRequest::Update { key, .. } => key.clone(),
            _ => return,
        };
        let route = match self.repl.route(&ctx, &key) {
            Ok(route) => route,
            Err(e) => return out.push(Effect::Reply { id, result: Err(e) }),
        };
        let n = ctx.view.ring.preference_list(&key).len();
        let me = ctx.view.me.to_string();
        let replica_here = ctx.view.ring.preference_list(&key).contains(&me);
        let read = matches!(req, ClientRequest::Get { .. });
        // A replica answers from its own copy when reads may be stale, or when the client asked
        // this node alone.
        let serve_here = read
            && replica_here
            && (origin == Origin::Direct || opts.read_from != ReadFrom::Primary);
        if serve_here {
            if let Some(after) = after {
                return self.repl.session_read(&ctx, id, key, after, deadline, out);
            }
            let result = load(ctx.view.store, ringkv_ring::token(&key), &key)
                .map(|rec| ClientResponse::Got(replication::read_result(rec, 1)))
                .map_err(|e| ClientError::Unavailable(e.to_string()));
            return out.push(Effect::Reply { id, result });
        }
        match route {
            Route::Forward { to, addr, epoch } => {
                if origin == Origin::Forwarded {
                    // The forwarding node's view is stale (or this one's is): one hop only,
                    // and the answer names the primary this node follows so that the
                    // forwarding node asks it next.
                    let known = epoch.is_some();
                    let e = ClientError::NotPrimary {
                        primary: known.then_some(to),
                        epoch: epoch.unwrap_or(0),
                    };
                    return out.push(Effect::Reply { id, result: Err(e) });
                }
                if origin == Origin::Direct {
                    return out.push(Effect::Reply {
                        id,
                        result: Err(ClientError::ReadOnly { primary: Some(to) }),
                    });
                }
                let fwd = Forward {
                    client: id,
                    req,
                    tried: Vec::new(),
                    deadline_ms: deadline,
                };
                self.forward(now_ms, fwd, (to, addr), out);
            }
            Route::Local if read => {
                let need = 0;
                if let Err(e) = self.repl.admit_write(&ctx, &key, need) {
                    self.repl.take_effects(out);
                    return out.push(Effect::Reply { id, result: Err(e) });
                }
                if opts.sync == SyncReplicas::Majority {
                    self.repl.primary_read(&ctx, id, key, deadline, out);
                } else {
                    let result = load(ctx.view.store, ringkv_ring::token(&key), &key)
                        .map(|rec| ClientResponse::Got(replication::read_result(rec, 1)))
                        .map_err(|e| ClientError::Unavailable(e.to_string()));
                    out.push(Effect::Reply { id, result });
                }
            }
            Route::Local => {
                let need = match opts.sync {
                    SyncReplicas::None => 0,
                    SyncReplicas::Count(k) => usize::from(k),
                    SyncReplicas::Majority => majority(n) - 1,
                };
                if let Err(e) = self.repl.admit_write(&ctx, &key, need) {
                    self.repl.take_effects(out);
                    return out.push(Effect::Reply { id, result: Err(e) });
                }
                let value = match req {
                    ClientRequest::Put { value, .. } => Some(value),
                    ClientRequest::Update { op, .. } => match self.plan_update(id, &key, &op) {
                        Plan::Write(value) => value,
                        Plan::Answer(result) => return out.push(Effect::Reply { id, result }),
                    },
                    _ => None,
                };
                match self.primary_record(now_ms, &key, value) {
                    Ok((token, record)) => {
                        repl_ctx!(self, now_ms, ctx);
                        self.repl
                            .logged_write(&ctx, id, token, key, record, need, deadline, out);
                    }
                    Err(e) => out.push(Effect::Reply { id, result: Err(e) }),
                }
            }
        }
    }

    /// Send `fwd` to `to`, the node believed to be the key's primary, until its deadline.
    fn forward(
        &mut self,
        now_ms: u64,
        mut fwd: Forward,
        (to, addr): (String, std::net::SocketAddr),
        out: &mut Vec<Effect>,
    ) {
        self.forwards.next = (self.forwards.next + 1) & (FORWARD_CALL_BIT - 1);
        let call = CallId(FORWARD_CALL_BIT | self.forwards.next);
        out.push(Effect::Call {
            call,
            to: addr,
            req: PeerRequest::Forward(fwd.req.clone()),
        });
        let left = fwd.deadline_ms.saturating_sub(now_ms);
        out.push(Effect::Schedule {
            after: std::time::Duration::from_millis(left),
            timer: Timer::Forward(call),
        });
        fwd.tried.push(to);
        self.forwards.out.insert(call, fwd);
    }

    /// The node a request was forwarded to answered (or the call failed). An answer that
    /// names another primary corrects this node's guess, and the request goes there while
    /// tries and time are left.
    pub(super) fn on_forward_reply(
        &mut self,
        now_ms: u64,
        call: CallId,
        reply: Result<PeerReply, String>,
        out: &mut Vec<Effect>,
    ) {
        let Some(fwd) = self.forwards.out.remove(&call) else {
            return;
        };
        let result = match reply {
            Ok(PeerReply::Forwarded(result)) => result,
            Ok(PeerReply::Failed(e)) | Err(e) => Err(ClientError::Unavailable(format!(
                "the key's primary did not answer ({e}); retry"
            ))),
            Ok(other) => Err(ClientError::Unavailable(format!(
                "unexpected answer {other:?}"
            ))),
        };
        let correctable = !self.config.sabotage.ignore_not_primary;
        if let (
            Err(ClientError::NotPrimary {
                primary: Some(primary),
                epoch,
            }),
            true,
        ) = (&result, correctable)
        {
            let next = {
                repl_ctx!(self, now_ms, ctx);
                let key = match &fwd.req {
                    ClientRequest::Get { key, .. }
                    | ClientRequest::Put { key, .. }
                    | ClientRequest::Delete { key, .. }
                    | ClientRequest::Update { key, .. } => key.as_slice(),
                    _ => &[],
                };
                self.repl.learn_primary(&ctx, key, primary, *epoch);
                match self.repl.route(&ctx, key) {
                    Ok(Route::Forward { to, addr, .. }) if !fwd.tried.contains(&to) => {
                        Some((to, addr))
                    }
                    _ => None,
                }
            };
            if let Some(next) = next {
                if fwd.tried.len() < MAX_FORWARD_TRIES && now_ms < fwd.deadline_ms {
                    return self.forward(now_ms, fwd, next, out);
                }
            }
        }
        out.push(Effect::Reply {
            id: fwd.client,
            result,
        });
    }

    /// Write `value` (a tombstone when `None`) as the primary: it replaces whatever the key
    /// held, so the log's order is the key's history.
    fn primary_record(
        &mut self,
        now_ms: u64,
        key: &[u8],
        value: Option<Vec<u8>>,
    ) -> Result<(u64, crate::version::Record), ClientError> {
        let store = self.store.as_ref();
        let token = ringkv_ring::token(key);
        let unavailable = |e: String| ClientError::Unavailable(e);
        self.actor
            .before_dot(store)
            .map_err(|e| unavailable(format!("cannot record the actor: {e}")))?;
        let seen = load(store, token, key).map_err(|e| unavailable(e.to_string()))?;
        let mut replica = super::Replica {
            me: self.actor.name(),
            store,
            hlc: &mut self.hlc,
            policy: self.config.conflict_policy,
            max_siblings: self.config.limits.max_siblings,
            changes: Vec::new(),
        };
        let ts = replica.hlc.now(now_ms);
        let req = PeerRequest::Write {
            token,
            key: key.to_vec(),
            value,
            context: Some(seen.map(|r| r.join()).unwrap_or_default()),
            ts,
        };
        let (reply, _) = replica.handle(now_ms, req);
        for change in &replica.changes {
            self.ae.on_change(&self.ring, change);
        }
        match reply {
            PeerReply::Written(record) => Ok((token, record)),
            PeerReply::Failed(e) => Err(unavailable(e)),
            other => Err(unavailable(format!("unexpected {other:?}"))),
        }
    }
}
