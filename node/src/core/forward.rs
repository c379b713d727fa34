//! Primary-mode requests on their way to the key's primary: forwarded to the node believed to
//! be it, corrected by a `NotPrimary` answer, and tried again within the request's deadline
//! when refused by a state that passes (an election, a lost lease, a first primary gathering).

use super::calls::CallError;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::calls::{CallId, Owner};
use super::coordinator::ClientId;
use super::primary::Origin;
use super::replication::Route;
use super::{Effect, InboundId, NodeCore, Timer};
use crate::proto::{ClientError, ClientRequest, PeerReply, PeerRequest, Session, Unavailable};
use crate::table::PrimaryOptions;

/// Client ids of requests forwarded to this node start here, apart from the shell's.
const FORWARDED_CLIENT_BASE: u64 = 1 << 63;
/// Bound of the sequence shared by forwarded clients' ids and forwards' call ids.
const SEQ_BOUND: u64 = 1 << 57;
/// Most nodes one forwarded request is sent to before a retry: the first guess and two
/// corrections, each named by the node asked before (never a node already asked).
const MAX_FORWARD_TRIES: usize = 3;
/// Most members declared down in one step that forwards are moved on from (more is a
/// cluster falling apart; those forwards wait out their deadline).
const MAX_DOWN_PER_STEP: usize = 64;
/// Waits before the next try of a refused request: about what an election or a lease takes,
/// growing, so that a long outage costs few tries. The last one repeats.
const RETRY_BACKOFF_MS: [u64; 5] = [50, 100, 200, 400, 800];

/// A client's primary-mode request, as long as it is not answered.
#[derive(Debug)]
pub struct Attempt {
    /// The client to answer.
    pub client: ClientId,
    /// The request (modifiers peeled).
    pub req: ClientRequest,
    /// The key's primary-mode options.
    pub opts: PrimaryOptions,
    /// Who asked, which decides where it may be served.
    pub origin: Origin,
    /// Read-your-writes session, for replica reads.
    pub after: Option<Session>,
    /// When the client must have its answer.
    pub deadline_ms: u64,
    /// Retries made so far.
    pub tries: usize,
}

/// An attempt sent to the node believed to be the key's primary.
#[derive(Debug)]
pub struct Forward {
    attempt: Attempt,
    /// Nodes asked so far in this round, oldest first.
    tried: Vec<String>,
}

impl Forward {
    /// A first forward of `attempt`.
    pub fn new(attempt: Attempt) -> Self {
        Self {
            attempt,
            tried: Vec::new(),
        }
    }
}

/// Requests this node forwarded or holds for a retry, and requests forwarded to it.
#[derive(Default)]
pub struct Forwards {
    /// Our calls to a primary.
    out: HashMap<CallId, Forward>,
    /// Attempts waiting for their next try, by the timer's call id.
    waiting: HashMap<CallId, Attempt>,
    /// Requests another node forwarded here, by the stream to answer.
    inbound: HashMap<ClientId, InboundId>,
    /// Members declared down since the last step: forwards waiting on them are moved on.
    down: Vec<String>,
    /// Updates waiting for their write's acknowledgement.
    pub(super) updates: super::update::PendingUpdates,
    next: u64,
}

impl Forwards {
    /// A client id for a request another node forwarded here.
    pub fn accept(&mut self, from: InboundId) -> ClientId {
        self.next = (self.next + 1) & (SEQ_BOUND - 1);
        let id = ClientId(FORWARDED_CLIENT_BASE | self.next);
        self.inbound.insert(id, from);
        id
    }

    fn call_id(&mut self) -> CallId {
        self.next = (self.next + 1) & (SEQ_BOUND - 1);
        CallId {
            owner: Owner::Forward,
            seq: self.next,
        }
    }

    /// Membership declared `name` down.
    pub fn peer_down(&mut self, name: &str) {
        if self.down.len() < MAX_DOWN_PER_STEP {
            self.down.push(name.to_owned());
        }
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
                    let result = std::mem::replace(result, Err(ClientError::Electing));
                    *effect = Effect::Respond {
                        id: inbound,
                        reply: PeerReply::Forwarded(result),
                        sync: false,
                    };
                }
            }
        }
    }
}

impl NodeCore {
    /// Send `fwd` to `to`, the node believed to be the key's primary, until its deadline.
    pub(super) fn forward(
        &mut self,
        now_ms: u64,
        mut fwd: Forward,
        (to, addr): (String, SocketAddr),
        out: &mut Vec<Effect>,
    ) {
        let call = self.forwards.call_id();
        out.push(Effect::Call {
            call,
            to: addr,
            req: PeerRequest::Forward(fwd.attempt.req.clone()),
        });
        let left = fwd.attempt.deadline_ms.saturating_sub(now_ms);
        out.push(Effect::Schedule {
            after: Duration::from_millis(left),
            timer: Timer::Forward(call),
        });
        fwd.tried.push(to);
        self.forwards.out.insert(call, fwd);
    }

    /// The node a request was forwarded to answered (or the call failed). An answer that
    /// names another primary corrects this node's guess, and the request goes there while
    /// tries and time are left; a refusal that passes is tried again later.
    pub(super) fn on_forward_reply(
        &mut self,
        now_ms: u64,
        call: CallId,
        reply: Result<PeerReply, CallError>,
        out: &mut Vec<Effect>,
    ) {
        let Some(fwd) = self.forwards.out.remove(&call) else {
            return;
        };
        let result = match reply {
            Ok(PeerReply::Forwarded(result)) => Ok(result),
            Ok(PeerReply::Failed(r)) => Err(CallError::Refused(r)),
            Err(e) => Err(e),
            Ok(other) => Err(CallError::BadAnswer(format!("unexpected answer {other:?}"))),
        }
        .unwrap_or_else(|e| {
            Err(ClientError::Unavailable(match e {
                CallError::BadAnswer(detail) => Unavailable::UnexpectedAnswer(detail),
                e => Unavailable::PrimaryNoAnswer {
                    may_have_acted: e.may_have_acted(),
                    detail: e.to_string(),
                },
            }))
        });
        let e = match result {
            Ok(answer) => {
                return out.push(Effect::Reply {
                    id: fwd.attempt.client,
                    result: Ok(answer),
                })
            }
            Err(e) => e,
        };
        let correctable = !self.shared.config.sabotage().ignore_not_primary;
        if let (
            ClientError::NotPrimary {
                primary: Some(primary),
                epoch,
            },
            true,
        ) = (&e, correctable)
        {
            let next = {
                let ctx = self.shared.repl_ctx(self.table.current(), now_ms);
                let key = key_of(&fwd.attempt.req);
                let from = fwd.tried.last().map_or("", String::as_str);
                self.repl.learn_primary(&ctx, key, from, (primary, *epoch));
                match self.repl.route(&ctx, key) {
                    Ok(Route::Forward { to, addr, .. }) if !fwd.tried.contains(&to) => {
                        Some((to, addr))
                    }
                    _ => None,
                }
            };
            if let Some(next) = next {
                if fwd.tried.len() < MAX_FORWARD_TRIES && now_ms < fwd.attempt.deadline_ms {
                    return self.forward(now_ms, fwd, next, out);
                }
            }
        }
        self.retry_or_fail(now_ms, fwd.attempt, e, out);
    }

    /// `attempt` was refused with `e`: tried again after a backoff when `e` is a refusal that
    /// passes (nothing was written) and the deadline leaves room, else answered with `e`.
    /// Only a client's own request is retried here; a forwarded one is the forwarding node's.
    pub(super) fn retry_or_fail(
        &mut self,
        now_ms: u64,
        mut attempt: Attempt,
        e: ClientError,
        out: &mut Vec<Effect>,
    ) {
        let wait = RETRY_BACKOFF_MS[attempt.tries.min(RETRY_BACKOFF_MS.len() - 1)];
        let retry = attempt.origin == Origin::Client
            && e.passing_refusal()
            && !self.shared.config.sabotage().ignore_not_primary
            && now_ms + wait < attempt.deadline_ms;
        if !retry {
            return out.push(Effect::Reply {
                id: attempt.client,
                result: Err(e),
            });
        }
        attempt.tries += 1;
        let call = self.forwards.call_id();
        out.push(Effect::Schedule {
            after: Duration::from_millis(wait),
            timer: Timer::Forward(call),
        });
        self.forwards.waiting.insert(call, attempt);
    }

    /// Forwards waiting on a node membership just declared down are not left to wait out
    /// their deadline: a read is tried again at once (it goes to the shard's next primary,
    /// or waits for its election); a write is answered at once, since the dead node may
    /// have applied it and a second try could apply it twice.
    pub(super) fn reroute_forwards(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        if self.forwards.down.is_empty() {
            return;
        }
        let down = std::mem::take(&mut self.forwards.down);
        let mut stuck: Vec<CallId> = self
            .forwards
            .out
            .iter()
            .filter(|(_, f)| f.tried.last().is_some_and(|t| down.contains(t)))
            .map(|(call, _)| *call)
            .collect();
        stuck.sort_unstable();
        for call in stuck {
            let Some(fwd) = self.forwards.out.remove(&call) else {
                continue;
            };
            let to = fwd.tried.last().cloned().unwrap_or_default();
            if matches!(fwd.attempt.req, ClientRequest::Get { .. }) {
                self.primary_attempt(now_ms, fwd.attempt, out);
            } else {
                out.push(Effect::Reply {
                    id: fwd.attempt.client,
                    result: Err(ClientError::Unavailable(Unavailable::PrimaryDown(to))),
                });
            }
        }
    }

    /// A forward's deadline passed, or a waiting attempt's next try is due.
    pub(super) fn on_forward_timer(&mut self, now_ms: u64, call: CallId, out: &mut Vec<Effect>) {
        if let Some(attempt) = self.forwards.waiting.remove(&call) {
            return self.primary_attempt(now_ms, attempt, out);
        }
        if let Some(fwd) = self.forwards.out.remove(&call) {
            out.push(Effect::Reply {
                id: fwd.attempt.client,
                result: Err(ClientError::Unavailable(Unavailable::PrimaryTimedOut)),
            });
        }
    }
}

fn key_of(req: &ClientRequest) -> &[u8] {
    match req {
        ClientRequest::Get { key, .. }
        | ClientRequest::Put { key, .. }
        | ClientRequest::Delete { key, .. }
        | ClientRequest::Update { key, .. } => key,
        _ => &[],
    }
}
