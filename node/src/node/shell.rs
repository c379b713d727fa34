//! The tokio shell: turns I/O into core inputs and core effects into I/O. No protocol
//! decisions live here; only plumbing (who waits for which answer).

use crate::core::CallError;
use crate::proto::Refusal;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

mod faults;
#[cfg(feature = "sabotage-ack")]
mod sabotage;

use super::commit::{self, Pending, ResponseTo};
use super::{wall_ms, ShellSnapshot};
use crate::metrics::{peer_kind, CallTiming, CommitMetrics, ShellMetrics, Started};
use ringkv_gossip::MemberEvent;

use crate::core::{status_name, CallId, ClientId, Effect, InboundId, Input, NodeCore, Timer};
use crate::net::{Inbound, InboundEvent, Responder, Transport, TransportError};
use crate::proto::{
    self, ClientError, ClientRequest, ClientResponse, NodeInfo, PeerReply, Request, Response,
};
use crate::store::Store;

/// How long a leaving node keeps its endpoint open so its goodbye gossip gets out.
const LEAVE_GRACE: Duration = Duration::from_millis(500);

/// What the node handle asks of the shell.
pub(super) enum Command {
    /// A request from the embedding program.
    Request(
        ClientRequest,
        oneshot::Sender<Result<ClientResponse, ClientError>>,
    ),
    /// Hand data off (waiting at most the given time), leave the cluster and stop.
    Shutdown(oneshot::Sender<()>, Duration),
    /// Stop without leaving: peers see the node down and keep hints for it.
    Stop(oneshot::Sender<()>),
    /// What the shell alone knows, for a metrics scrape.
    Snapshot(oneshot::Sender<ShellSnapshot>),
    /// A request a metrics scrape makes: served like any, left out of the request metrics.
    Scrape(
        ClientRequest,
        oneshot::Sender<Result<ClientResponse, ClientError>>,
    ),
}

/// Inputs produced by tasks the shell spawned (timers, calls, group commits).
pub(super) enum Internal {
    Timer(Timer),
    /// A call's outcome; with its timing and reply size when metrics are on.
    CallDone(
        CallId,
        Result<PeerReply, CallError>,
        Option<(CallTiming, usize)>,
    ),
    /// A client request acknowledged already, handed to the core late (test sabotage).
    #[cfg(feature = "sabotage-ack")]
    Deferred(ClientRequest),
}

/// Where a client's answer goes.
enum ClientTo {
    Local(oneshot::Sender<Result<ClientResponse, ClientError>>),
    Remote(Responder),
}

struct Shell {
    core: NodeCore,
    store: Arc<dyn Store>,
    transport: Transport,
    me: SocketAddr,
    name: String,
    internal: mpsc::UnboundedSender<Internal>,
    commits: mpsc::UnboundedSender<Pending>,
    clients: HashMap<ClientId, ClientTo>,
    inbound: HashMap<InboundId, ResponseTo>,
    next_client: u64,
    next_inbound: u64,
    /// Inputs for this node made by this node (calls to itself), handled in order.
    queue: VecDeque<Input>,
    faults: crate::faults::Faults,
    /// Counters and histograms, when the node serves metrics.
    metrics: Option<ShellMetrics>,
    /// Client requests being served, for their latency (only when metrics are on).
    started: HashMap<ClientId, Started>,
}

/// Drive the core until shutdown.
pub(super) async fn run(
    core: NodeCore,
    store: Arc<dyn Store>,
    transport: Transport,
    mut inbound: Inbound,
    mut commands: mpsc::Receiver<Command>,
    metrics: Option<(ShellMetrics, CommitMetrics)>,
) {
    let (internal, mut internal_rx) = mpsc::unbounded_channel();
    let (metrics, commit_metrics) = metrics.unzip();
    let commits = commit::spawn(
        store.clone(),
        transport.clone(),
        internal.clone(),
        commit_metrics,
    );
    let mut shell = Shell {
        me: core.me().addr,
        name: core.me().name.clone(),
        core,
        store: store.clone(),
        transport: transport.clone(),
        internal,
        commits,
        clients: HashMap::new(),
        inbound: HashMap::new(),
        next_client: 0,
        next_inbound: 0,
        queue: VecDeque::new(),
        faults: transport.faults().clone(),
        metrics,
        started: HashMap::new(),
    };
    let effects = shell.core.start();
    shell.apply(effects);
    // While leaving: who waits for the end, and when to stop waiting for the handoff.
    let mut leaving: Option<(Option<oneshot::Sender<()>>, tokio::time::Instant)> = None;
    let far = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let mut leave = true;
    let done = loop {
        if let Some((_, deadline)) = &leaving {
            if shell.core.handed_off() || tokio::time::Instant::now() >= *deadline {
                if !shell.core.handed_off() {
                    tracing::warn!(
                        "leaving before every range was handed off; anti-entropy will finish it"
                    );
                }
                break leaving.and_then(|(done, _)| done);
            }
        }
        let wake = leaving.as_ref().map_or(far, |(_, d)| *d);
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::Request(req, reply)) => {
                    let id = shell.client_id(ClientTo::Local(reply));
                    shell.time_request(id, &req);
                    shell.input(Input::Client { id, req });
                }
                Some(Command::Scrape(req, reply)) => {
                    let id = shell.client_id(ClientTo::Local(reply));
                    shell.input(Input::Client { id, req });
                }
                Some(Command::Snapshot(reply)) => {
                    let _ = reply.send(ShellSnapshot {
                        hints: shell.core.hint_tally(),
                        transport: shell.transport.stats(),
                        open_connections: shell.transport.open_connections(),
                        limit_hits: shell.limit_hits(),
                    });
                }
                Some(Command::Shutdown(done, within)) if leaving.is_none() => {
                    tracing::info!(name = %shell.name, "leaving: handing data to the remaining replicas");
                    let effects = shell.core.begin_leave();
                    shell.apply(effects);
                    leaving = Some((Some(done), tokio::time::Instant::now() + within));
                }
                Some(Command::Shutdown(done, _)) => {
                    // Already leaving: the first caller is told when it ends.
                    drop(done);
                }
                Some(Command::Stop(done)) => {
                    leave = false;
                    break Some(done);
                }
                None => break None,
            },
            event = inbound.recv() => match event {
                Some(event) => shell.inbound(event),
                None => break None,
            },
            Some(event) = internal_rx.recv() => match event {
                Internal::Timer(t) => shell.input(Input::Timer(t)),
                Internal::CallDone(call, reply, timing) => {
                    if let (Some(m), Some((timing, received))) = (&mut shell.metrics, timing) {
                        m.call_done(timing, &reply, received);
                    }
                    shell.input(Input::PeerReply { call, reply })
                }
                #[cfg(feature = "sabotage-ack")]
                Internal::Deferred(req) => shell.deferred(req),
            },
            _ = tokio::time::sleep_until(wake) => {}
        }
    };
    if leave {
        let effects = shell.core.leave();
        shell.apply(effects);
        tokio::time::sleep(LEAVE_GRACE).await;
    }
    if let Err(e) = tokio::task::spawn_blocking(move || store.sync()).await {
        tracing::warn!("final sync did not run: {e}");
    }
    shell.transport.close().await;
    tracing::info!(name = %shell.name, "node stopped");
    if let Some(done) = done {
        let _ = done.send(());
    }
}

impl Shell {
    fn client_id(&mut self, to: ClientTo) -> ClientId {
        self.next_client += 1;
        let id = ClientId(self.next_client);
        self.clients.insert(id, to);
        id
    }

    fn inbound_id(&mut self, to: ResponseTo) -> InboundId {
        self.next_inbound += 1;
        let id = InboundId(self.next_inbound);
        self.inbound.insert(id, to);
        id
    }

    /// Note when a client request arrived, when metrics are on.
    fn time_request(&mut self, id: ClientId, req: &ClientRequest) {
        if self.metrics.is_some() {
            let started = ShellMetrics::started(req, self.core.table());
            self.started.insert(id, started);
        }
    }

    /// Hits of every bound the node counts: the transport's and the Redis front's (one shared
    /// tally) plus the core's own (hint storage's come with the hint tally).
    fn limit_hits(&self) -> Vec<(crate::limits::Limit, u64)> {
        let mut hits = self.transport.limit_hits().snapshot();
        for ((_, n), (_, core)) in hits.iter_mut().zip(self.core.limit_hits()) {
            *n += core;
        }
        hits
    }

    /// Feed one input, then every input it made for this node itself.
    fn input(&mut self, input: Input) {
        self.queue.push_back(input);
        while let Some(next) = self.queue.pop_front() {
            let effects = self.core.handle(self.faults.clock(wall_ms()), next);
            self.apply(effects);
        }
    }

    fn inbound(&mut self, event: InboundEvent) {
        match event {
            InboundEvent::Datagram { data, .. } => {
                if let Some(m) = &self.metrics {
                    m.gossip_received(data.len());
                }
                self.input(Input::Datagram(data))
            }
            InboundEvent::Request {
                from,
                data,
                respond,
            } => match proto::decode::<Request>(&data) {
                Ok(Request::Client(req)) => {
                    #[cfg(feature = "sabotage-ack")]
                    let Some((req, respond)) = self.ack_before_store(req, respond) else {
                        return;
                    };
                    let id = self.client_id(ClientTo::Remote(respond));
                    self.time_request(id, &req);
                    self.input(Input::Client { id, req });
                }
                Ok(Request::Peer { from, req }) => {
                    let id = self.inbound_id(ResponseTo::Remote(respond));
                    self.input(Input::PeerRequest { id, from, req });
                }
                Ok(Request::Fault(req)) => {
                    self::respond(respond, &Response::Fault(self.fault(req)))
                }
                Ok(Request::Info) => self.info(respond),
                // Dropping the responder resets that stream; everything else keeps going.
                Err(e) => tracing::warn!(%from, "refused a request that does not decode: {e}"),
            },
        }
    }

    /// Answer `Request::Info`; the store's usage is read off the event loop.
    fn info(&self, respond: Responder) {
        let store = self.store.clone();
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || {
            let usage = store.usage();
            let info = NodeInfo {
                name,
                version: env!("CARGO_PKG_VERSION").to_owned(),
                keys: usage.keys,
                disk_bytes: usage.disk_bytes,
            };
            self::respond(respond, &Response::Info(info));
        });
    }

    fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Reply { id, result } => {
                    if let (Some(m), Some(started)) = (&mut self.metrics, self.started.remove(&id))
                    {
                        m.answered(started, &result);
                    }
                    match self.clients.remove(&id) {
                        Some(ClientTo::Local(tx)) => {
                            let _ = tx.send(result);
                        }
                        Some(ClientTo::Remote(r)) => respond(r, &Response::Client(result)),
                        None => {}
                    }
                }
                Effect::Respond { id, reply, sync } => {
                    let Some(to) = self.inbound.remove(&id) else {
                        continue;
                    };
                    // Nothing unsynced (a read when no write came since the last sync):
                    // the answer is already durable.
                    if sync && !self.store.is_synced() {
                        // Group commit: the committer syncs once for every response queued.
                        if let Err(mpsc::error::SendError(Pending::Respond { to, .. })) =
                            self.commits.send(Pending::Respond { to, reply })
                        {
                            self.deliver(to, PeerReply::Failed(Refusal::Closing));
                        }
                    } else {
                        self.deliver(to, reply);
                    }
                }
                Effect::Call { call, to, req } if to == self.me => {
                    let id = self.inbound_id(ResponseTo::Local(call));
                    let from = self.name.clone();
                    self.queue.push_back(Input::PeerRequest { id, from, req });
                }
                Effect::Call { call, to, req } => {
                    let kind = self.metrics.as_ref().map(|_| peer_kind(&req));
                    let frame = proto::encode(&Request::Peer {
                        from: self.name.clone(),
                        req,
                    });
                    let timing = kind
                        .map(|kind| CallTiming::start(kind, frame.as_ref().map_or(0, Vec::len)));
                    let transport = self.transport.clone();
                    let internal = self.internal.clone();
                    tokio::spawn(async move {
                        let (reply, received) = match frame {
                            Ok(frame) => call_peer(&transport, to, &frame).await,
                            Err(e) => (Err(CallError::Local(e.to_string())), 0),
                        };
                        let timing = timing.map(|t| (t, received));
                        let _ = internal.send(Internal::CallDone(call, reply, timing));
                    });
                }
                Effect::Push { to, req, sync } => {
                    let frame = match proto::encode(&Request::Peer {
                        from: self.name.clone(),
                        req,
                    }) {
                        Ok(frame) => frame,
                        Err(e) => {
                            tracing::warn!("could not encode a repair: {e}");
                            continue;
                        }
                    };
                    if let Some(m) = &self.metrics {
                        m.repair_pushed(frame.len());
                    }
                    if sync {
                        // Only synced data leaves the node: the committer sends it after a sync.
                        let _ = self.commits.send(Pending::Push { to, frame });
                    } else {
                        commit::push(self.transport.clone(), to, frame);
                    }
                }
                Effect::Datagram { to, data } => {
                    if let Some(m) = &self.metrics {
                        m.gossip_sent(data.len());
                    }
                    self.transport.send_datagram(to, data)
                }
                Effect::Schedule { after, timer } => {
                    let internal = self.internal.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        let _ = internal.send(Internal::Timer(timer));
                    });
                }
                Effect::Member(event) => {
                    if let MemberEvent::Up(id) | MemberEvent::StatusChanged(id, _) = &event {
                        self.faults.learn(&id.name, id.addr);
                    }
                    if let Some(m) = &mut self.metrics {
                        m.member_event(&event);
                    }
                    log_member_event(&event)
                }
            }
        }
    }

    fn deliver(&mut self, to: ResponseTo, reply: PeerReply) {
        match to {
            ResponseTo::Local(call) => self.queue.push_back(Input::PeerReply {
                call,
                reply: Ok(reply),
            }),
            ResponseTo::Remote(r) => respond(r, &Response::Peer(reply)),
        }
    }
}

/// Say what membership did in an operator's words.
fn log_member_event(event: &MemberEvent) {
    use tracing::{info, warn};
    match event {
        MemberEvent::Up(id) => info!("node {} at {} is up", id.name, id.addr),
        MemberEvent::Down(id) => warn!("node {} at {} is down", id.name, id.addr),
        MemberEvent::Forgotten(id) => {
            info!(
                "node {} at {} was down too long: forgotten",
                id.name, id.addr
            )
        }
        MemberEvent::StatusChanged(id, status) => {
            info!("node {} is now {}", id.name, status_name(*status))
        }
        MemberEvent::Joined => info!("joined the cluster"),
        MemberEvent::Idle => warn!("lost contact with every peer; announcing to the seeds again"),
        // Once at first, then every tenth round, so a long wait does not flood the log.
        MemberEvent::SeedsSilent { seeds, attempts } if *attempts == 1 || attempts % 10 == 0 => {
            let seeds: Vec<String> = seeds.iter().map(ToString::to_string).collect();
            warn!(
                "no answer from seed(s) {} after {attempts} attempt(s); still trying",
                seeds.join(", ")
            )
        }
        MemberEvent::SeedsSilent { .. } => {}
        MemberEvent::Rejoined(id) => {
            warn!("the cluster had declared this node down; rejoined as {id:?}")
        }
        MemberEvent::Defunct => {
            warn!("the cluster declared this node down and it cannot rejoin: restart it")
        }
    }
}

/// One call to a peer, its answer decoded, and the answer's size in bytes.
async fn call_peer(
    transport: &Transport,
    to: SocketAddr,
    frame: &[u8],
) -> (Result<PeerReply, CallError>, usize) {
    let bytes = match transport.call(to, frame).await {
        Ok(bytes) => bytes,
        Err(e) => return (Err(call_error(e)), 0),
    };
    let reply = match proto::decode::<Response>(&bytes) {
        Ok(Response::Peer(reply)) => Ok(reply),
        Ok(other) => Err(CallError::BadAnswer(format!("unexpected answer {other:?}"))),
        Err(e) => Err(CallError::BadAnswer(e.to_string())),
    };
    (reply, bytes.len())
}

/// What a transport failure means to the core: whether the peer may have acted on the call.
fn call_error(e: TransportError) -> CallError {
    let text = e.to_string();
    match e {
        TransportError::Timeout { .. } => CallError::Timeout(text),
        TransportError::Connect { .. }
        | TransportError::Handshake { .. }
        | TransportError::TooManyConnections { .. } => CallError::Unreachable(text),
        TransportError::ConnectionLost { .. } | TransportError::Remote { .. } => {
            CallError::Lost(text)
        }
        TransportError::BadResponse { .. } | TransportError::FrameTooLarge { .. } => {
            CallError::BadAnswer(text)
        }
        _ => CallError::Local(text),
    }
}

/// Send an answer on its stream.
pub(super) fn respond(responder: Responder, response: &Response) {
    match proto::encode(response) {
        Ok(frame) => responder.respond(frame),
        Err(e) => tracing::warn!("could not encode a response: {e}"),
    }
}
