//! Client requests for keys under a primary prefix: served by the shard's primary, forwarded
//! to it, or refused with `READONLY` when the client asked this node alone.

use super::coordinator::ClientId;
use super::forward::{Attempt, Forward};
use super::replica::load;
use super::replication::{self, majority, Route};
use super::update::Plan;
use super::{Effect, NodeCore};
use crate::proto::{
    ClientError, ClientRequest, ClientResponse, PeerReply, PeerRequest, Session, Unavailable,
};
use crate::table::{PrimaryOptions, ReadFrom, SyncReplicas};

#[cfg(test)]
#[path = "primary_tests.rs"]
mod tests;

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
        let deadline_ms = now_ms + super::replication::millis(self.shared.config.request_timeout);
        let attempt = Attempt {
            client: id,
            req,
            opts,
            origin,
            after,
            deadline_ms,
            tries: 0,
        };
        self.primary_attempt(now_ms, attempt, out);
    }

    /// One try at `attempt`; a refusal that passes is tried again later (see
    /// [`NodeCore::retry_or_fail`]).
    pub(super) fn primary_attempt(&mut self, now_ms: u64, attempt: Attempt, out: &mut Vec<Effect>) {
        if let Err(refused) = self.primary_serve(now_ms, attempt, out) {
            let (attempt, e) = *refused;
            self.retry_or_fail(now_ms, attempt, e, out);
        }
    }

    /// Serve, forward or refuse `a`. A refusal before anything was written comes back with
    /// the attempt, for the caller to retry or answer.
    fn primary_serve(
        &mut self,
        now_ms: u64,
        a: Attempt,
        out: &mut Vec<Effect>,
    ) -> Result<(), Box<(Attempt, ClientError)>> {
        let ctx = self.shared.repl_ctx(self.table.current(), now_ms);
        let (id, origin, deadline) = (a.client, a.origin, a.deadline_ms);
        let key = match &a.req {
            ClientRequest::Get { key, .. }
            | ClientRequest::Put { key, .. }
            | ClientRequest::Delete { key, .. }
            | ClientRequest::Update { key, .. } => key.clone(),
            _ => return Ok(()),
        };
        let route = match self.repl.route(&ctx, &key) {
            Ok(route) => route,
            Err(e) => return Err(Box::new((a, e))),
        };
        let n = ctx.view.ring.preference_list(&key).len();
        let me = ctx.view.me.to_string();
        let replica_here = ctx.view.ring.preference_list(&key).contains(&me);
        let read = matches!(a.req, ClientRequest::Get { .. });
        // A replica answers from its own copy when reads may be stale, or when the client asked
        // this node alone.
        let serve_here = read
            && replica_here
            && (origin == Origin::Direct || a.opts.read_from != ReadFrom::Primary);
        if serve_here {
            if let Some(after) = a.after {
                self.repl.session_read(&ctx, id, key, after, deadline, out);
                return Ok(());
            }
            let result = load(ctx.view.store, ringkv_ring::token(&key), &key)
                .map(|rec| ClientResponse::Got(replication::read_result(rec, 1)))
                .map_err(|e| ClientError::Unavailable(Unavailable::Storage(e.to_string())));
            out.push(Effect::Reply { id, result });
            return Ok(());
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
                    return Err(Box::new((a, e)));
                }
                if origin == Origin::Direct {
                    return Err(Box::new((a, ClientError::ReadOnly { primary: Some(to) })));
                }
                self.forward(now_ms, Forward::new(a), (to, addr), out);
            }
            Route::Local if read => {
                let need = 0;
                if let Err(e) = self.repl.admit_write(&ctx, &key, need) {
                    self.repl.take_effects(out);
                    return Err(Box::new((a, e)));
                }
                if a.opts.sync == SyncReplicas::Majority {
                    self.repl.primary_read(&ctx, id, key, deadline, out);
                } else {
                    let result = load(ctx.view.store, ringkv_ring::token(&key), &key)
                        .map(|rec| ClientResponse::Got(replication::read_result(rec, 1)))
                        .map_err(|e| ClientError::Unavailable(Unavailable::Storage(e.to_string())));
                    out.push(Effect::Reply { id, result });
                }
            }
            Route::Local => {
                let need = match a.opts.sync {
                    SyncReplicas::None => 0,
                    SyncReplicas::Count(k) => usize::from(k),
                    SyncReplicas::Majority => majority(n) - 1,
                };
                if let Err(e) = self.repl.admit_write(&ctx, &key, need) {
                    self.repl.take_effects(out);
                    return Err(Box::new((a, e)));
                }
                let value = match a.req {
                    ClientRequest::Put { value, .. } => Some(value),
                    ClientRequest::Update { op, .. } => match self.plan_update(id, &key, &op) {
                        Plan::Write(value) => value,
                        Plan::Answer(result) => {
                            out.push(Effect::Reply { id, result });
                            return Ok(());
                        }
                    },
                    _ => None,
                };
                match self.primary_record(now_ms, &key, value) {
                    Ok((token, record)) => {
                        let ctx = self.shared.repl_ctx(self.table.current(), now_ms);
                        self.repl
                            .logged_write(&ctx, id, token, key, record, need, deadline, out);
                    }
                    Err(e) => out.push(Effect::Reply { id, result: Err(e) }),
                }
            }
        }
        Ok(())
    }

    /// Write `value` (a tombstone when `None`) as the primary: it replaces whatever the key
    /// held, so the log's order is the key's history.
    fn primary_record(
        &mut self,
        now_ms: u64,
        key: &[u8],
        value: Option<Vec<u8>>,
    ) -> Result<(u64, crate::version::Record), ClientError> {
        let store = self.shared.store.as_ref();
        let token = ringkv_ring::token(key);
        let storage = |e: String| ClientError::Unavailable(Unavailable::Storage(e));
        self.actor
            .before_dot(store)
            .map_err(|e| storage(format!("cannot record the actor: {e}")))?;
        let seen = load(store, token, key).map_err(|e| storage(e.to_string()))?;
        let mut replica = super::Replica {
            me: self.actor.name(),
            store,
            hlc: &mut self.shared.hlc,
            policy: self.shared.config.conflict_policy,
            max_siblings: self.shared.config.limits.max_siblings,
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
            self.ae.on_change(&self.shared.ring, change);
        }
        match reply {
            PeerReply::Written(record) => Ok((token, record)),
            PeerReply::Failed(e) => Err(ClientError::Unavailable(Unavailable::Refused(e))),
            other => Err(storage(format!("unexpected {other:?}"))),
        }
    }
}
