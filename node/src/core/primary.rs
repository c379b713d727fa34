//! Client requests for keys under a primary prefix: served by the shard's primary, forwarded
//! to it, or refused with `READONLY` when the client asked this node alone.

use std::collections::HashMap;

use super::coordinator::{CallId, ClientId};
use super::replica::load;
use super::replication::{self, majority, Route};
use super::{Effect, InboundId, NodeCore, Timer};
use crate::proto::{ClientError, ClientRequest, ClientResponse, PeerReply, PeerRequest, Session};
use crate::table::{PrimaryOptions, ReadFrom, SyncReplicas};

/// Call ids of forwarded requests carry this bit.
pub const FORWARD_CALL_BIT: u64 = 1 << 57;
/// Client ids of requests forwarded to this node carry this bit.
const FORWARDED_CLIENT_BIT: u64 = 1 << 63;

/// Requests this node forwarded, and requests forwarded to it.
#[derive(Default)]
pub struct Forwards {
    /// Our calls to a primary, by the client waiting.
    out: HashMap<CallId, ClientId>,
    /// Requests another node forwarded here, by the stream to answer.
    inbound: HashMap<ClientId, InboundId>,
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

    /// Whether `id` is a request another node forwarded here (to its primary).
    pub fn is_forwarded(&self, id: ClientId) -> bool {
        self.inbound.contains_key(&id)
    }

    /// The primary answered (or the call failed).
    pub fn on_reply(
        &mut self,
        call: CallId,
        reply: Result<PeerReply, String>,
        out: &mut Vec<Effect>,
    ) {
        let Some(id) = self.out.remove(&call) else {
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
        out.push(Effect::Reply { id, result });
    }

    /// A forwarded call's deadline passed.
    pub fn on_deadline(&mut self, call: CallId, out: &mut Vec<Effect>) {
        if let Some(id) = self.out.remove(&call) {
            out.push(Effect::Reply {
                id,
                result: Err(ClientError::Unavailable(
                    "the key's primary did not answer in time; retry".into(),
                )),
            });
        }
    }
}

impl NodeCore {
    /// Serve a primary-mode `Get`, `Put` or `Delete` (already admitted).
    pub(super) fn primary_op(
        &mut self,
        now_ms: u64,
        id: ClientId,
        req: ClientRequest,
        opts: PrimaryOptions,
        (direct, after): (bool, Option<Session>),
        out: &mut Vec<Effect>,
    ) {
        repl_ctx!(self, now_ms, ctx);
        let deadline = now_ms + super::replication::millis(self.config.request_timeout);
        let key = match &req {
            ClientRequest::Get { key, .. }
            | ClientRequest::Put { key, .. }
            | ClientRequest::Delete { key, .. } => key.clone(),
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
        // this node alone. A request forwarded here is not forwarded again, but it was sent
        // to the primary: a read from the primary is served only as one.
        let asked_alone = direct && !self.forwards.is_forwarded(id);
        let serve_here =
            read && replica_here && (asked_alone || opts.read_from != ReadFrom::Primary);
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
            Route::Forward(primary, addr) => {
                if direct {
                    return out.push(Effect::Reply {
                        id,
                        result: Err(ClientError::ReadOnly {
                            primary: Some(primary),
                        }),
                    });
                }
                self.forwards.next = (self.forwards.next + 1) & (FORWARD_CALL_BIT - 1);
                let call = CallId(FORWARD_CALL_BIT | self.forwards.next);
                self.forwards.out.insert(call, id);
                out.push(Effect::Call {
                    call,
                    to: addr,
                    req: PeerRequest::Forward(req),
                });
                out.push(Effect::Schedule {
                    after: self.config.request_timeout,
                    timer: Timer::Forward(call),
                });
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
