//! A running node: the builder, the handle, and the tokio shell around the sans-IO core.

mod commit;
mod shell;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringkv_gossip::{GossipConfig, NodeId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::api::Api;
use crate::config::CoreConfig;
use crate::core::{HintTally, NodeCore};
use crate::faults::Faults;
use crate::metrics;
use crate::net::{TlsMaterial, Transport, TransportConfig, TransportStats};
use crate::proto::{ClientRequest, ClientResponse};
use crate::resp::{Front, NodeFacts, RedisConfig};
use crate::store::{FjallStore, MemoryStore, Store};
use crate::Error;

use shell::Command;

/// Client requests queued for the core at once; more wait for room.
const COMMAND_QUEUE: usize = 1024;

/// Settings of a node to start; see [`Node::builder`].
pub struct NodeBuilder {
    name: String,
    listen: SocketAddr,
    advertise: Option<SocketAddr>,
    seeds: Vec<SocketAddr>,
    zone: Option<String>,
    data_dir: Option<PathBuf>,
    tls: Option<TlsMaterial>,
    core: CoreConfig,
    gossip: GossipConfig,
    transport: TransportConfig,
    redis: Option<RedisConfig>,
    metrics: Option<SocketAddr>,
}

impl NodeBuilder {
    /// Accept fault-injection requests ([`crate::faults`]): for test clusters only, since
    /// any client of the cluster could then cut this node off.
    pub fn fault_injection(mut self, on: bool) -> Self {
        self.transport.faults = if on { Faults::on() } else { Faults::off() };
        self
    }

    /// The UDP address the node's QUIC endpoint binds (port 0 picks a free one).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The address peers should use, when it differs from the bound one.
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.advertise = Some(addr);
        self
    }

    /// A node to join through; may be given several times.
    pub fn seed(mut self, addr: SocketAddr) -> Self {
        self.seeds.push(addr);
        self
    }

    /// Zone (rack, availability zone): replicas of a key prefer distinct zones.
    pub fn zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// Keep data durably in this directory; without it the node keeps data in memory.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// The node's certificate, key and cluster CA (see [`TlsMaterial::load_node`]).
    pub fn tls(mut self, tls: TlsMaterial) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Replication, quorum, durability and limit settings.
    pub fn config(mut self, config: CoreConfig) -> Self {
        self.core = config;
        self
    }

    /// Failure-detector settings.
    pub fn gossip(mut self, config: GossipConfig) -> Self {
        self.gossip = config;
        self
    }

    /// Network settings.
    pub fn transport(mut self, config: TransportConfig) -> Self {
        self.transport = config;
        self
    }

    /// Serve Redis clients too (see [`crate::resp`]); the node does not start if the front
    /// cannot.
    pub fn redis(mut self, config: RedisConfig) -> Self {
        self.redis = Some(config);
        self
    }

    /// Serve Prometheus metrics (`GET /metrics`) and readiness (`GET /health`) over plain
    /// HTTP on this TCP address (see [`crate::metrics`]); the node does not start if it
    /// cannot bind it.
    pub fn metrics(mut self, addr: SocketAddr) -> Self {
        self.metrics = Some(addr);
        self
    }

    /// Open the store, bind the endpoint, join the cluster and start serving.
    pub async fn start(self) -> Result<Node, Error> {
        let tls = self
            .tls
            .ok_or_else(|| Error::Config("a node needs TLS material (NodeBuilder::tls)".into()))?;
        if let Some(redis) = &self.redis {
            redis.check()?;
        }
        let q = self.core.quorum;
        if q.n == 0 || q.r == 0 || q.w == 0 || q.r > q.n || q.w > q.n {
            return Err(Error::Config(format!(
                "quorum N={} R={} W={}: need 1 <= R, W <= N",
                q.n, q.r, q.w
            )));
        }
        if self.core.tombstone_grace <= self.core.hints.max_age {
            return Err(Error::Config(format!(
                "tombstone grace ({:?}) must exceed the hint age limit ({:?}), or a late hint could bring a deleted value back",
                self.core.tombstone_grace, self.core.hints.max_age
            )));
        }
        let store: Arc<dyn Store> = match &self.data_dir {
            Some(dir) => Arc::new(FjallStore::open(dir)?),
            None => Arc::new(MemoryStore::new()),
        };
        let metrics_port = match self.metrics {
            Some(addr) => Some(metrics::bind(addr).await?),
            None => None,
        };
        let (transport, inbound) = Transport::bind(self.listen, &tls, self.transport).await?;
        let addr = match self.advertise {
            Some(a) => a,
            None => transport.local_addr()?,
        };
        if addr.ip().is_unspecified() {
            return Err(Error::Config(format!(
                "listening on {addr}: give an address peers can reach with --advertise"
            )));
        }
        let now = wall_ms();
        let me = NodeId {
            name: self.name.clone(),
            addr,
            zone: self.zone,
            // A restart must win over the identity the cluster remembers.
            bump: now,
        };
        let seeds = self.seeds.into_iter().filter(|s| *s != addr).collect();
        let facts = NodeFacts {
            name: self.name.clone(),
            addr,
            persistent: self.data_dir.is_some(),
            durability: self.core.durability,
        };
        let core = NodeCore::new(me, seeds, self.core, self.gossip, store.clone(), now)?;
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let registry = metrics_port.as_ref().map(|_| metrics::Registry::new());
        let recorders = registry.as_ref().map(|r| {
            (
                metrics::ShellMetrics::new(r.clone()),
                metrics::CommitMetrics::new(r),
            )
        });
        let task = tokio::spawn(shell::run(
            core,
            store.clone(),
            transport.clone(),
            inbound,
            rx,
            recorders,
        ));
        let mut node = Node {
            name: self.name,
            addr,
            transport,
            tx,
            task: Some(task),
            front: None,
            metrics: None,
        };
        if let (Some(listener), Some(registry)) = (metrics_port, registry) {
            let metrics_addr = listener
                .local_addr()
                .map_err(|e| Error::Config(format!("metrics port: {e}")))?;
            let scraper =
                metrics::Scraper::new(node.name.clone(), node.handle(), store, registry.clone());
            node.metrics = Some(MetricsPort {
                addr: metrics_addr,
                server: tokio::spawn(metrics::serve(listener, scraper)),
                upkeep: metrics::spawn_upkeep(&registry),
            });
            tracing::info!(%metrics_addr, "serving metrics and health over plain HTTP");
        }
        if let Some(mut config) = self.redis {
            config.limits.limit_hits = node.transport.limit_hits().clone();
            // On error the node is dropped, which stops it.
            node.front = Some(Front::start(config, node.handle(), facts).await?);
        }
        tracing::info!(name = %node.name, %addr, "node started");
        Ok(node)
    }
}

/// A running node: embed it in a program, or run it with `ringctl serve`.
///
/// ```no_run
/// use ringkv::{Api, Node, ReadOptions, WriteOptions};
/// use ringkv::net::TlsMaterial;
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let tls = TlsMaterial::load_node("certs".as_ref(), "n1")?;
/// let node = Node::builder("n1")
///     .listen("127.0.0.1:7001".parse()?)
///     .seed("127.0.0.1:7000".parse()?)
///     .data_dir("data/n1")
///     .tls(tls)
///     .start()
///     .await?;
/// node.put(b"k".to_vec(), b"v".to_vec(), WriteOptions::default()).await?;
/// node.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct Node {
    name: String,
    addr: SocketAddr,
    transport: Transport,
    tx: mpsc::Sender<Command>,
    task: Option<JoinHandle<()>>,
    front: Option<Front>,
    metrics: Option<MetricsPort>,
}

/// The metrics port's tasks, stopped with the node.
struct MetricsPort {
    addr: SocketAddr,
    server: JoinHandle<()>,
    upkeep: JoinHandle<()>,
}

impl Drop for MetricsPort {
    fn drop(&mut self) {
        self.server.abort();
        self.upkeep.abort();
    }
}

/// What the shell alone knows, for a metrics scrape.
#[derive(Clone, Debug)]
pub(crate) struct ShellSnapshot {
    /// Hints held at start, stored, delivered, dropped, refused.
    pub hints: HintTally,
    /// The transport's counters.
    pub transport: TransportStats,
    /// QUIC connections open.
    pub open_connections: usize,
    /// Hits of each bound the node's layers count.
    pub limit_hits: Vec<(crate::limits::Limit, u64)>,
}

impl Node {
    /// Start describing a node called `name` (stable across restarts; keys the ring).
    pub fn builder(name: impl Into<String>) -> NodeBuilder {
        NodeBuilder {
            name: name.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            seeds: Vec::new(),
            zone: None,
            data_dir: None,
            tls: None,
            core: CoreConfig::default(),
            gossip: GossipConfig::lan(),
            transport: TransportConfig::default(),
            redis: None,
            metrics: None,
        }
    }

    /// A handle other tasks can send requests through while the node runs.
    pub fn handle(&self) -> NodeHandle {
        NodeHandle {
            tx: self.tx.clone(),
        }
    }

    /// Where the Redis front listens, if the node has one.
    pub fn redis_addr(&self) -> Option<SocketAddr> {
        self.front.as_ref().map(Front::addr)
    }

    /// How often each bound the transport and the Redis front enforce was hit (exported as
    /// `ringkv_limit_hits_total` together with the bounds the core counts itself, see
    /// [`NodeCore::limit_hits`](crate::core::NodeCore::limit_hits), and hint storage's).
    pub fn limit_hits(&self) -> &crate::limits::LimitHits {
        self.transport.limit_hits()
    }

    /// Where the metrics port listens, if the node has one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.addr)
    }

    /// Switches to new TLS material (certificate rotation): connections made from now on,
    /// to and from peers and clients (the Redis front's included), use it; open ones keep
    /// going. The material is checked first: on error nothing changed.
    pub fn reload_tls(&self, tls: &TlsMaterial) -> Result<(), Error> {
        // Build the Redis front's config first: it can fail only on material the transport
        // would refuse too, so the two never end up with different certificates.
        if let Some(front) = &self.front {
            crate::net::tcp_server_config(tls)?;
            self.transport.reload_tls(tls)?;
            front.reload_tls(tls)?;
        } else {
            self.transport.reload_tls(tls)?;
        }
        Ok(())
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address peers and clients reach the node at.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Leave the cluster gracefully: hand every key to the ranges' remaining replicas
    /// (waiting at most a minute), tell the peers, sync the store and stop.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.shutdown_within(Duration::from_secs(60)).await
    }

    /// Stop without leaving the cluster (a restart, an upgrade): the data stays here, peers
    /// see the node down and keep hints for it until it is back.
    pub async fn stop(mut self) -> Result<(), Error> {
        self.front = None;
        self.metrics = None;
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Stop(done)).await.is_ok() {
            let _ = wait.await;
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        Ok(())
    }

    /// Like [`Node::shutdown`], waiting at most `within` for the handoff; what is not handed
    /// off by then stays on disk here and anti-entropy repairs the other replicas.
    pub async fn shutdown_within(mut self, within: Duration) -> Result<(), Error> {
        self.front = None;
        self.metrics = None;
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Shutdown(done, within)).await.is_ok() {
            let _ = wait.await;
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        Ok(())
    }
}

impl Api for Node {
    async fn request(&self, req: ClientRequest) -> Result<ClientResponse, Error> {
        request(&self.tx, req).await
    }
}

/// A cheap, clonable way to send requests to a running node from other tasks of the same
/// process (the Redis front holds one per connection); it does not keep the node running.
#[derive(Clone)]
pub struct NodeHandle {
    tx: mpsc::Sender<Command>,
}

impl NodeHandle {
    /// What the shell alone knows (hint tally, transport counters), for a scrape.
    pub(crate) async fn snapshot(&self) -> Result<ShellSnapshot, Error> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Snapshot(reply))
            .await
            .map_err(|_| Error::Shutdown)?;
        answer.await.map_err(|_| Error::Shutdown)
    }
}

impl NodeHandle {
    /// A request from a metrics scrape, left out of the request metrics.
    pub(crate) async fn scrape(&self, req: ClientRequest) -> Result<ClientResponse, Error> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Scrape(req, reply))
            .await
            .map_err(|_| Error::Shutdown)?;
        Ok(answer.await.map_err(|_| Error::Shutdown)??)
    }
}

impl Api for NodeHandle {
    async fn request(&self, req: ClientRequest) -> Result<ClientResponse, Error> {
        request(&self.tx, req).await
    }
}

async fn request(tx: &mpsc::Sender<Command>, req: ClientRequest) -> Result<ClientResponse, Error> {
    let (reply, answer) = oneshot::channel();
    tx.send(Command::Request(req, reply))
        .await
        .map_err(|_| Error::Shutdown)?;
    Ok(answer.await.map_err(|_| Error::Shutdown)??)
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Wall-clock milliseconds: the only clock the core is fed.
pub(crate) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
