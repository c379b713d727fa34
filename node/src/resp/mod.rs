//! The Redis protocol front: `redis-cli`, `redis-benchmark`, redis-py and cluster-aware Redis
//! clients talk to the node over RESP2 or RESP3.
//!
//! The front is a client of its node, like an embedding program: every command becomes one or
//! more [`ClientRequest`](crate::proto::ClientRequest)s sent through a [`NodeHandle`], so
//! quorum and primary-mode semantics are the node's own. Connections are TLS with a client
//! certificate signed by the cluster CA, or plain TCP on a loopback address only.
//!
//! Files: `listener` (accepting, TLS, the connection bound), `conn` (one connection:
//! pipelining, answers in order), `order` (a connection's commands on one key run in order),
//! `codec` (bounds and RESP encoding), `commands/` (one file
//! per command family), `errors` (node errors in Redis's words), `slots` (the CLUSTER map),
//! `glob` (Redis's `KEYS`/`SCAN MATCH` patterns).

mod codec;
mod commands;
mod conn;
mod errors;
mod glob;
mod listener;
mod order;
mod slots;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinHandle;

use crate::net::TlsMaterial;
use crate::node::NodeHandle;
use crate::store::Durability;

/// The request decoder, reached by the fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub use codec::RequestDecoder;
pub use codec::{ProtocolError, Reply};

/// Bounds on what one client may ask of the front.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Arguments in one request, the command name included.
    pub max_args: usize,
    /// Bytes of one argument.
    pub max_bulk: usize,
    /// Bytes of one whole request.
    pub max_request: usize,
    /// Requests of one connection in flight at once; reading pauses beyond it.
    pub max_pipeline: usize,
    /// Open connections; a connection past it is told so and closed.
    pub max_connections: usize,
    /// Keys `KEYS` answers before it refuses (use `SCAN`); also the largest `SCAN COUNT`.
    pub max_keys: usize,
    /// Where hits of these bounds are counted and logged (the node's tally once started).
    pub limit_hits: crate::limits::LimitHits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_args: 4096,
            max_bulk: 4 * 1024 * 1024 + 1024,
            max_request: 16 * 1024 * 1024,
            max_pipeline: 1024,
            max_connections: 1024,
            max_keys: 10_000,
            limit_hits: crate::limits::LimitHits::default(),
        }
    }
}

/// Where and how the front listens.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// The TCP address to bind.
    pub addr: SocketAddr,
    /// Server certificate and cluster CA; `None` for plain TCP, accepted on loopback only.
    pub tls: Option<TlsMaterial>,
    /// Request and connection bounds.
    pub limits: Limits,
}

impl RedisConfig {
    /// A TLS front on `addr` with the node's material: clients need a certificate signed by
    /// the cluster CA (`redis-cli --tls --cacert ca.pem --cert client.pem --key client.key`).
    pub fn tls(addr: SocketAddr, tls: TlsMaterial) -> Self {
        Self {
            addr,
            tls: Some(tls),
            limits: Limits::default(),
        }
    }

    /// A plain-TCP front on `addr`, which must be a loopback address.
    pub fn plaintext(addr: SocketAddr) -> Self {
        Self {
            addr,
            tls: None,
            limits: Limits::default(),
        }
    }

    /// Refuse plain TCP on an address other hosts can reach.
    pub(crate) fn check(&self) -> Result<(), FrontError> {
        if self.tls.is_none() && !self.addr.ip().is_loopback() {
            return Err(FrontError::PlaintextNotLoopback(self.addr));
        }
        Ok(())
    }
}

/// Why the front could not start.
#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    /// Plain TCP asked for on an address other hosts can reach.
    #[error(
        "the Redis front without TLS listens on loopback only, not {0} (use TLS, or 127.0.0.1)"
    )]
    PlaintextNotLoopback(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen for Redis clients on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS material does not make a server configuration.
    #[error(transparent)]
    Tls(#[from] crate::net::TlsError),
}

/// What the front tells clients about the node it fronts.
#[derive(Clone, Debug)]
pub(crate) struct NodeFacts {
    /// The node's name.
    pub name: String,
    /// The node's QUIC address.
    pub addr: SocketAddr,
    /// Whether data is kept on disk.
    pub persistent: bool,
    /// When writes are acknowledged.
    pub durability: Durability,
}

/// State every connection of one front shares.
pub(crate) struct Shared {
    node: NodeHandle,
    facts: NodeFacts,
    /// The bound address (its port and its offset from the QUIC port name the peers' fronts).
    addr: SocketAddr,
    tls: bool,
    limits: Limits,
    started: Instant,
    stats: Stats,
}

/// Counters for `INFO`.
#[derive(Default)]
struct Stats {
    connections: AtomicU64,
    connected: AtomicU64,
    commands: AtomicU64,
    errors: AtomicU64,
    rejected: AtomicU64,
    protocol_errors: AtomicU64,
    next_id: AtomicU64,
}

/// A running front; stops accepting when dropped.
pub struct Front {
    addr: SocketAddr,
    task: JoinHandle<()>,
    tls: Option<listener::SharedAcceptor>,
}

impl Front {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Bind `config.addr` and serve Redis clients against `node`.
    pub(crate) async fn start(
        config: RedisConfig,
        node: NodeHandle,
        facts: NodeFacts,
    ) -> Result<Front, FrontError> {
        config.check()?;
        let tls = match &config.tls {
            Some(m) => Some(Arc::new(std::sync::Mutex::new(
                tokio_rustls::TlsAcceptor::from(crate::net::tcp_server_config(m)?),
            ))),
            None => None,
        };
        let socket = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|source| FrontError::Bind {
                addr: config.addr,
                source,
            })?;
        let addr = socket.local_addr().map_err(|source| FrontError::Bind {
            addr: config.addr,
            source,
        })?;
        let shared = Arc::new(Shared {
            node,
            facts,
            addr,
            tls: tls.is_some(),
            limits: config.limits,
            started: Instant::now(),
            stats: Stats::default(),
        });
        tracing::info!(%addr, tls = shared.tls, "Redis front listening");
        let task = tokio::spawn(listener::run(socket, tls.clone(), shared));
        Ok(Front { addr, task, tls })
    }

    /// Uses new TLS material for connections accepted from now on (certificate rotation);
    /// open connections keep going. A plaintext front has nothing to reload.
    pub(crate) fn reload_tls(&self, m: &crate::net::TlsMaterial) -> Result<(), FrontError> {
        if let Some(tls) = &self.tls {
            let acceptor = tokio_rustls::TlsAcceptor::from(crate::net::tcp_server_config(m)?);
            *listener::lock(tls) = acceptor;
        }
        Ok(())
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}
