//! A client of any node, over the same QUIC protocol the nodes speak.

mod retry;

pub use retry::{may_retry, RetryPolicy};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringkv_ring::{Ring, RingConfig, RingNode};

use crate::api::Api;
use crate::faults::{FaultPlan, FaultRequest};
use crate::net::{TlsMaterial, Transport, TransportConfig};
use crate::proto::{self, ClientRequest, ClientResponse, NodeInfo, Request, Response};
use crate::Error;

/// How long a node that could not be reached is passed over by token-aware routing.
const SKIP_UNREACHABLE: Duration = Duration::from_secs(5);

/// Talks to a cluster through one node, which coordinates every request; or, once
/// [`Client::token_aware`] learned the ring from it, sends each key's request to a node of
/// that key's preference list (one hop fewer when the cluster has more nodes than N, and the
/// coordination spreads over every node).
///
/// ```no_run
/// use ringkv::{Api, Client, ReadOptions, WriteOptions};
/// use ringkv::net::TlsMaterial;
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let tls = TlsMaterial::load_client("certs".as_ref())?;
/// let client = Client::connect("127.0.0.1:7000".parse()?, &tls)?;
/// client.put(b"user:1".to_vec(), b"ada".to_vec(), WriteOptions::default()).await?;
/// let opts = ReadOptions { r: Some(2), ..Default::default() };
/// let read = client.get(b"user:1".to_vec(), opts).await?;
/// println!("{:?}", read.values);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    transport: Transport,
    node: SocketAddr,
    routes: Option<Arc<Routes>>,
    retry: RetryPolicy,
}

/// The ring as a client learned it, and which of its nodes did not answer lately.
struct Routes {
    ring: Ring,
    addrs: HashMap<String, SocketAddr>,
    unreachable: Mutex<HashMap<SocketAddr, Instant>>,
}

impl Client {
    /// A client of the node at `node`, presenting the certificate in `tls`.
    pub fn connect(node: SocketAddr, tls: &TlsMaterial) -> Result<Self, Error> {
        Self::with_config(node, tls, TransportConfig::default())
    }

    /// Like [`Client::connect`], with network settings.
    pub fn with_config(
        node: SocketAddr,
        tls: &TlsMaterial,
        config: TransportConfig,
    ) -> Result<Self, Error> {
        let transport = Transport::client(tls, config)?;
        Ok(Self {
            transport,
            node,
            routes: None,
            retry: RetryPolicy::default(),
        })
    }

    /// Learns the ring (members, vnodes, N) from the node and from then on sends each
    /// get, put and delete to the first reachable node of its key's preference list, falling
    /// back to the node itself. A request goes to another node only when the first could not
    /// be reached at all, so it is never applied twice. Call again to learn a changed ring.
    pub async fn token_aware(mut self) -> Result<Self, Error> {
        let home = self.at(self.node);
        let members = home.members().await?;
        let info = home.ring().await?;
        let config = RingConfig::new(info.vnodes, info.n.into())
            .map_err(|e| Error::Unexpected(format!("ring settings: {e}")))?;
        let mut addrs = HashMap::new();
        let mut nodes = Vec::new();
        for m in members {
            let node = match m.zone {
                Some(zone) => RingNode::new(m.name.clone()).in_zone(zone),
                None => RingNode::new(m.name.clone()),
            };
            nodes.push(node);
            // Only live members that stay take requests; the others keep their place.
            if m.state == "alive" && m.status != "leaving" {
                if let Ok(addr) = m.addr.parse() {
                    addrs.insert(m.name, addr);
                }
            }
        }
        self.routes = Some(Arc::new(Routes {
            ring: Ring::new(nodes, config),
            addrs,
            unreachable: Mutex::new(HashMap::new()),
        }));
        Ok(self)
    }

    /// The same client, retrying as `policy` says ([`RetryPolicy::none`] turns retries
    /// off; the default retries for up to 5 s).
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The node this client talks to (the one it learned the ring from, when token-aware).
    pub fn node(&self) -> SocketAddr {
        self.node
    }

    /// Sets or reads the faults of a node started with fault injection (test clusters only).
    pub async fn faults(&self, req: FaultRequest) -> Result<FaultPlan, Error> {
        let frame = proto::encode(&Request::Fault(req))?;
        let bytes = self.transport.call(self.node, &frame).await?;
        match proto::decode::<Response>(&bytes)? {
            Response::Fault(result) => Ok(result?),
            other => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }

    /// What the node says of itself: name, version, keys and bytes stored.
    pub async fn info(&self) -> Result<NodeInfo, Error> {
        let frame = proto::encode(&Request::Info)?;
        let bytes = self.transport.call(self.node, &frame).await?;
        match proto::decode::<Response>(&bytes)? {
            Response::Info(info) => Ok(info),
            other => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }

    /// The same client (transport, retry policy) talking to another node, without routing.
    pub fn for_node(&self, node: SocketAddr) -> Client {
        self.at(node)
    }

    /// This client's transport aimed at one node, without routing.
    fn at(&self, node: SocketAddr) -> Client {
        Client {
            transport: self.transport.clone(),
            node,
            routes: None,
            retry: self.retry,
        }
    }

    async fn call(&self, to: SocketAddr, frame: &[u8]) -> Result<ClientResponse, Error> {
        let bytes = self.transport.call(to, frame).await?;
        match proto::decode::<Response>(&bytes)? {
            Response::Client(result) => Ok(result?),
            other => Err(Error::Unexpected(format!("{other:?}"))),
        }
    }
}

impl Routes {
    /// Where a request for `key` goes, in order: the reachable nodes of its preference list.
    fn targets(&self, key: &[u8]) -> Vec<SocketAddr> {
        let now = Instant::now();
        let unreachable = lock(&self.unreachable);
        self.ring
            .preference_list(key)
            .iter()
            .filter_map(|name| self.addrs.get(name).copied())
            .filter(|addr| unreachable.get(addr).is_none_or(|until| *until <= now))
            .collect()
    }

    fn skip(&self, addr: SocketAddr) {
        lock(&self.unreachable).insert(addr, Instant::now() + SKIP_UNREACHABLE);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Only plain inserts happen under the lock: a poisoned one still holds usable data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The key a request is about, when any node of its preference list may serve it.
fn routed_key(req: &ClientRequest) -> Option<&[u8]> {
    match req {
        ClientRequest::Get { key, .. }
        | ClientRequest::Put { key, .. }
        | ClientRequest::Delete { key, .. } => Some(key),
        ClientRequest::After { req, .. } => routed_key(req),
        _ => None,
    }
}

/// The request surely never reached the node: trying another cannot apply it twice.
fn never_sent(e: &Error) -> bool {
    matches!(e, Error::Transport(t) if retry::never_sent(t))
}

impl Api for Client {
    /// Sends `req`, and again after a jittered wait while [`may_retry`] allows it and the
    /// client's [`RetryPolicy`] budget lasts.
    async fn request(&self, req: ClientRequest) -> Result<ClientResponse, Error> {
        let started = Instant::now();
        let targets = match (&self.routes, routed_key(&req)) {
            (Some(routes), Some(key)) => routes.targets(key),
            _ => Vec::new(),
        };
        let read = retry::is_read(&req);
        let frame = proto::encode(&Request::Client(req))?;
        let mut attempt = 0;
        loop {
            let result = self.send(&targets, &frame).await;
            let e = match result {
                Err(e) if retry::allowed(read, &e) => e,
                done => return done,
            };
            let wait = self.retry.wait(attempt);
            if started.elapsed() + wait >= self.retry.budget {
                return Err(e);
            }
            tracing::debug!("retrying in {wait:?} after: {e}");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

impl Client {
    /// One attempt: the key's preference list in order when token-aware, else the node.
    async fn send(&self, targets: &[SocketAddr], frame: &[u8]) -> Result<ClientResponse, Error> {
        let mut home_unreached = None;
        for &to in targets {
            match self.call(to, frame).await {
                Err(e) if never_sent(&e) => {
                    if let Some(routes) = &self.routes {
                        routes.skip(to);
                    }
                    if to == self.node {
                        home_unreached = Some(e);
                    }
                }
                other => return other,
            }
        }
        match home_unreached {
            // The contacted node was among those tried: no use dialling it twice.
            Some(e) => Err(e),
            None => self.call(self.node, frame).await,
        }
    }
}
