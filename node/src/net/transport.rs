//! One QUIC endpoint per node: request/response calls on bidirectional streams and
//! fire-and-forget gossip datagrams, both over cached mutually-authenticated connections.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use quinn::{Connection, Endpoint};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;
use tracing::{debug, warn};

use super::compat;
use super::config::TransportConfig;
use super::error::{TimeoutPhase, TransportError};
use super::frame::{read_frame, write_frame};
use super::inbound::{accept_loop, Inbound, Serving};
use super::mux::{self, Mux};
use super::stats::{bump, Counters, TransportStats};
use super::tls::{
    client_config, explain_handshake, negotiated_version, server_config, TlsMaterial,
    GOSSIP_DIGEST_VERSION,
};

/// A node's (or client's) QUIC endpoint. Cheap to clone; clones share the endpoint and its
/// connections. Call [`Transport::close`] to stop it.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    /// Client-only transports bind the other address family on first use.
    other_family: Option<Mutex<Option<Endpoint>>>,
    /// Replaced by [`Transport::reload_tls`]; each dial takes the current one.
    client_config: Mutex<quinn::ClientConfig>,
    cfg: TransportConfig,
    conns: Mutex<HashMap<SocketAddr, Slot>>,
    pending_dials: AtomicUsize,
    stats: Arc<Counters>,
    runtime: Handle,
}

/// An outgoing connection, or the dial every concurrent caller waits on.
enum Slot {
    Ready(Peer),
    Dialing(watch::Receiver<Option<DialOutcome>>),
}

/// An outgoing connection and, from protocol version 3, its multiplexed call streams.
#[derive(Clone)]
struct Peer {
    conn: Connection,
    mux: Option<Arc<Mux>>,
}

type DialOutcome = Result<Peer, DialFailure>;

/// A dial's failure, shared by every caller that waited on it.
#[derive(Clone, Debug)]
enum DialFailure {
    Connect(String),
    Handshake(String),
    Timeout,
    Closed,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("local_addr", &self.inner.endpoint.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Server + client on one UDP socket: gossip datagrams and request streams share it.
    ///
    /// Returns the transport and the queue of what peers send. Only peers presenting a
    /// certificate signed by the cluster CA are served.
    pub async fn bind(
        addr: SocketAddr,
        tls: &TlsMaterial,
        cfg: TransportConfig,
    ) -> Result<(Transport, Inbound), TransportError> {
        cfg.validate().map_err(TransportError::Config)?;
        let server = server_config(tls, &cfg)?;
        let client = client_config(tls, &cfg)?;
        let socket = std::net::UdpSocket::bind(addr)?;
        let mut endpoint = Endpoint::new(
            restartable_endpoint(tls),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )?;
        endpoint.set_default_client_config(client.clone());
        let (tx, rx) = mpsc::channel(cfg.max_inbound_queue);
        let stats = Arc::new(Counters::default());
        let runtime = Handle::current();
        let serving = Serving {
            tx,
            cfg: cfg.clone(),
            stats: stats.clone(),
            runtime: runtime.clone(),
        };
        runtime.spawn(accept_loop(endpoint.clone(), serving));
        let transport = Transport::new(endpoint, None, client, cfg, stats, runtime);
        Ok((transport, Inbound { rx }))
    }

    /// Client-only endpoint (ringctl / library Client), bound to an ephemeral IPv4 port; an
    /// ephemeral IPv6 port is bound on the first call to an IPv6 address. Must be called
    /// inside a tokio runtime.
    pub fn client(tls: &TlsMaterial, cfg: TransportConfig) -> Result<Transport, TransportError> {
        cfg.validate().map_err(TransportError::Config)?;
        let runtime = Handle::try_current().map_err(|_| {
            TransportError::Config("a client transport needs a running tokio runtime".into())
        })?;
        let _entered = runtime.enter();
        let client = client_config(tls, &cfg)?;
        let endpoint = client_endpoint((Ipv4Addr::UNSPECIFIED, 0).into(), &client)?;
        let stats = Arc::new(Counters::default());
        let other = Some(Mutex::new(None));
        Ok(Transport::new(endpoint, other, client, cfg, stats, runtime))
    }

    fn new(
        endpoint: Endpoint,
        other_family: Option<Mutex<Option<Endpoint>>>,
        client_config: quinn::ClientConfig,
        cfg: TransportConfig,
        stats: Arc<Counters>,
        runtime: Handle,
    ) -> Transport {
        Transport {
            inner: Arc::new(Inner {
                endpoint,
                other_family,
                client_config: Mutex::new(client_config),
                cfg,
                conns: Mutex::new(HashMap::new()),
                pending_dials: AtomicUsize::new(0),
                stats,
                runtime,
            }),
        }
    }

    /// Uses new TLS material (certificate, key, CA bundle) for every connection made from
    /// now on, accepted or dialled; connections already open keep going. Nothing changes
    /// when the material does not make valid configurations.
    pub fn reload_tls(&self, tls: &TlsMaterial) -> Result<(), TransportError> {
        let cfg = &self.inner.cfg;
        let client = client_config(tls, cfg)?;
        // Client-only transports (the ones with an other-family slot) serve nothing.
        let server = match self.inner.other_family {
            None => Some(server_config(tls, cfg)?),
            Some(_) => None,
        };
        if let Some(server) = server {
            self.inner.endpoint.set_server_config(Some(server));
        }
        // Every dial passes this config explicitly (`connect_with`), so the endpoints'
        // default client configs are never used after binding.
        *lock(&self.inner.client_config) = client;
        Ok(())
    }

    /// The address of the (first) UDP socket.
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        Ok(self.inner.endpoint.local_addr()?)
    }

    /// One request/response over the cached connection to `to` (dialled on first use,
    /// redialled when lost; concurrent callers share one dial): on one of the connection's
    /// few multiplexed streams when the peer speaks protocol version 3, else on a new
    /// bidirectional stream. The
    /// whole call is bounded by `call_timeout`, the dial by `connect_timeout`. Requests and
    /// responses over `max_frame` are refused with [`TransportError::FrameTooLarge`].
    pub async fn call(&self, to: SocketAddr, request: &[u8]) -> Result<Vec<u8>, TransportError> {
        let max = self.inner.cfg.max_frame;
        if request.len() > max {
            return Err(TransportError::FrameTooLarge {
                size: request.len() as u64,
                max,
            });
        }
        let after = self.inner.cfg.call_timeout;
        match timeout(after, self.exchange(to, request)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout {
                addr: to,
                after,
                phase: TimeoutPhase::Call,
            }),
        }
    }

    async fn exchange(&self, to: SocketAddr, request: &[u8]) -> Result<Vec<u8>, TransportError> {
        let max = self.inner.cfg.max_frame;
        self.inner.cfg.faults.hold_if_cut_to(to).await;
        let Peer { conn, mux } = self.connection(to).await?;
        if let Some(mux) = mux {
            let response = mux.call(request).await;
            self.inner.cfg.faults.hold_if_cut_from(to).await;
            return response;
        }
        let v1 = negotiated_version(&conn) == Some(compat::V1);
        if v1 {
            // Nothing version 1 cannot express leaves; what it can is encoded alike.
            compat::check_request_for_v1(request).map_err(|e| TransportError::Remote {
                addr: to,
                reason: e.to_string(),
            })?;
        }
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| TransportError::from_connection(to, &e))?;
        write_frame(&mut send, request, max)
            .await
            .map_err(|e| TransportError::from_response(to, e))?;
        // A stream the peer already reset fails the read below with the peer's reason.
        let _ = send.finish();
        let response = read_frame(&mut recv, max).await;
        // A response from a peer cut off on receipt is lost like any of its traffic.
        self.inner.cfg.faults.hold_if_cut_from(to).await;
        let response = response.map_err(|e| TransportError::from_response(to, e))?;
        if !v1 {
            return Ok(response);
        }
        compat::response_from_v1(&response).map_err(|e| TransportError::BadResponse {
            addr: to,
            reason: e.to_string(),
        })
    }

    /// Fire-and-forget datagram (gossip). Never blocks: when no connection exists yet, a task
    /// dials and sends (at most `max_pending_dials` such tasks at once). Datagrams that are
    /// too large or cannot be sent are dropped and counted in [`Transport::stats`].
    pub fn send_datagram(&self, to: SocketAddr, data: Bytes) {
        if self.inner.cfg.faults.cuts_to(to) {
            return;
        }
        if let Some(peer) = self.ready(to) {
            self.inner.send_on(&peer.conn, to, data);
            return;
        }
        let inner = &self.inner;
        if inner.pending_dials.fetch_add(1, Ordering::AcqRel) >= inner.cfg.max_pending_dials {
            inner.pending_dials.fetch_sub(1, Ordering::AcqRel);
            bump(&inner.stats.datagrams_dropped);
            debug!(peer = %to, "datagram dropped: too many pending dials");
            return;
        }
        let this = self.clone();
        inner.runtime.spawn(async move {
            match this.connection(to).await {
                Ok(peer) => this.inner.send_on(&peer.conn, to, data),
                Err(e) => {
                    bump(&this.inner.stats.datagrams_dropped);
                    debug!(peer = %to, error = %e, "datagram dropped");
                }
            }
            this.inner.pending_dials.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// The largest datagram the connection to `to` can carry, if a connection exists.
    pub fn max_datagram_size(&self, to: SocketAddr) -> Option<usize> {
        self.ready(to)?.conn.max_datagram_size()
    }

    /// The faults injected into this endpoint (test clusters only).
    pub fn faults(&self) -> &crate::faults::Faults {
        &self.inner.cfg.faults
    }

    /// Where hits of the node's bounds are counted (the tally the config carries).
    pub fn limit_hits(&self) -> &crate::limits::LimitHits {
        &self.inner.cfg.limit_hits
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> TransportStats {
        self.inner.stats.snapshot()
    }

    /// QUIC connections open on the endpoint, both directions.
    pub fn open_connections(&self) -> usize {
        self.inner.endpoint.open_connections()
    }

    /// Closes every connection and the endpoint, waiting up to `connect_timeout` for peers
    /// to acknowledge. Calls in flight fail; the inbound queue ends.
    pub async fn close(&self) {
        let mut endpoints = vec![self.inner.endpoint.clone()];
        if let Some(other) = &self.inner.other_family {
            endpoints.extend(lock(other).clone());
        }
        for endpoint in &endpoints {
            endpoint.close(0u32.into(), b"closing");
        }
        lock(&self.inner.conns).clear();
        for endpoint in &endpoints {
            if timeout(self.inner.cfg.connect_timeout, endpoint.wait_idle())
                .await
                .is_err()
            {
                debug!("closing: peers did not acknowledge in time");
            }
        }
    }

    /// The live cached connection to `to`, if any.
    fn ready(&self, to: SocketAddr) -> Option<Peer> {
        match lock(&self.inner.conns).get(&to) {
            Some(Slot::Ready(p)) if p.conn.close_reason().is_none() => Some(p.clone()),
            _ => None,
        }
    }

    /// The cached connection to `to`, or the outcome of dialling it (shared with concurrent
    /// callers). The dial runs in its own task so a caller giving up does not abandon it.
    async fn connection(&self, to: SocketAddr) -> Result<Peer, TransportError> {
        let mut rx = {
            let mut conns = lock(&self.inner.conns);
            match conns.get(&to) {
                Some(Slot::Ready(p)) if p.conn.close_reason().is_none() => return Ok(p.clone()),
                Some(Slot::Dialing(rx)) => rx.clone(),
                _ => {
                    let max = self.inner.cfg.max_connections;
                    if !conns.contains_key(&to) && conns.len() >= max {
                        conns.retain(|_, slot| match slot {
                            Slot::Ready(p) => p.conn.close_reason().is_none(),
                            Slot::Dialing(_) => true,
                        });
                        if conns.len() >= max {
                            return Err(TransportError::TooManyConnections { max });
                        }
                    }
                    let (tx, rx) = watch::channel(None);
                    conns.insert(to, Slot::Dialing(rx.clone()));
                    self.inner
                        .runtime
                        .spawn(dial_task(self.inner.clone(), to, tx));
                    rx
                }
            }
        };
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_) => return Err(TransportError::Closed),
        };
        let after = self.inner.cfg.connect_timeout;
        match outcome {
            Some(Ok(conn)) => Ok(conn),
            Some(Err(DialFailure::Connect(reason))) => {
                Err(TransportError::Connect { addr: to, reason })
            }
            Some(Err(DialFailure::Handshake(reason))) => {
                Err(TransportError::Handshake { addr: to, reason })
            }
            Some(Err(DialFailure::Timeout)) => Err(TransportError::Timeout {
                addr: to,
                after,
                phase: TimeoutPhase::Connect,
            }),
            Some(Err(DialFailure::Closed)) | None => Err(TransportError::Closed),
        }
    }
}

impl Inner {
    fn send_on(&self, conn: &Connection, to: SocketAddr, data: Bytes) {
        let Some(data) = gossip_for(conn, to, data) else {
            return;
        };
        match conn.send_datagram(data) {
            Ok(()) => bump(&self.stats.datagrams_sent),
            Err(e) => {
                bump(&self.stats.datagrams_dropped);
                debug!(peer = %to, error = %e, "datagram dropped");
            }
        }
    }

    /// The endpoint whose socket can reach `to`.
    fn endpoint_for(&self, to: SocketAddr) -> Result<Endpoint, DialFailure> {
        let local = self
            .endpoint
            .local_addr()
            .map_err(|e| DialFailure::Connect(e.to_string()))?;
        if local.is_ipv4() == to.is_ipv4() {
            return Ok(self.endpoint.clone());
        }
        let Some(other) = &self.other_family else {
            return Err(DialFailure::Connect(format!(
                "the transport is bound to {local}, another address family"
            )));
        };
        let config = lock(&self.client_config).clone();
        let mut other = lock(other);
        if let Some(endpoint) = &*other {
            return Ok(endpoint.clone());
        }
        let unspecified: SocketAddr = if to.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let endpoint = client_endpoint(unspecified, &config)
            .map_err(|e| DialFailure::Connect(e.to_string()))?;
        *other = Some(endpoint.clone());
        Ok(endpoint)
    }

    async fn dial(&self, to: SocketAddr) -> DialOutcome {
        let endpoint = self.endpoint_for(to)?;
        let config = lock(&self.client_config).clone();
        // Peers are dialled by address; their certificates carry it as an IP SAN.
        let connecting = endpoint
            .connect_with(config, to, &to.ip().to_string())
            .map_err(|e| match e {
                quinn::ConnectError::EndpointStopping => DialFailure::Closed,
                other => DialFailure::Connect(other.to_string()),
            })?;
        match timeout(self.cfg.connect_timeout, connecting).await {
            Ok(Ok(conn)) => {
                let multiplexed = negotiated_version(&conn).is_some_and(|v| v >= mux::VERSION);
                let mux = multiplexed.then(|| {
                    Arc::new(Mux::new(
                        conn.clone(),
                        to,
                        mux::Limits::default(),
                        self.cfg.max_frame,
                        self.cfg.call_timeout,
                        self.runtime.clone(),
                    ))
                });
                Ok(Peer { conn, mux })
            }
            Ok(Err(e)) => Err(match TransportError::from_connection(to, &e) {
                TransportError::Handshake { reason, .. } => DialFailure::Handshake(reason),
                TransportError::Closed => DialFailure::Closed,
                other => DialFailure::Connect(other.to_string()),
            }),
            Err(_) => Err(DialFailure::Timeout),
        }
    }
}

/// Gossip `data` as the peer on `conn` reads it: the previous versions have no membership
/// digest and no sync datagrams. `None`: nothing to send.
fn gossip_for(conn: &Connection, to: SocketAddr, data: Bytes) -> Option<Bytes> {
    if negotiated_version(conn).is_some_and(|v| v >= GOSSIP_DIGEST_VERSION) {
        return Some(data);
    }
    match ringkv_gossip::wire::without_digest(&data) {
        Ok(converted) => converted.map(Bytes::from),
        Err(e) => {
            debug!(peer = %to, error = %e, "gossip datagram not sent: not convertible");
            None
        }
    }
}

async fn dial_task(inner: Arc<Inner>, to: SocketAddr, tx: watch::Sender<Option<DialOutcome>>) {
    let outcome = inner.dial(to).await;
    {
        let mut conns = lock(&inner.conns);
        match &outcome {
            Ok(peer) => {
                conns.insert(to, Slot::Ready(peer.clone()));
            }
            Err(e) => {
                if let DialFailure::Handshake(reason) = e {
                    let reason = explain_handshake(reason, &inner.cfg.protocol_versions);
                    warn!(peer = %to, "cannot connect: TLS handshake failed: {reason}");
                } else {
                    debug!(peer = %to, error = ?e, "dial failed");
                }
                if matches!(conns.get(&to), Some(Slot::Dialing(_))) {
                    conns.remove(&to);
                }
            }
        }
    }
    tx.send_replace(Some(outcome));
}

/// Connection ids and stateless resets keyed by the node's identity: a node restarted on the
/// same address recognises the ids its previous process handed out and resets the
/// connections peers still hold to it, so they redial at once instead of sending into a dead
/// connection until its idle timeout (without this a restarted node waited that long to
/// rejoin).
fn restartable_endpoint(tls: &TlsMaterial) -> quinn::EndpointConfig {
    let reset = tls.derive_secret("ringkv 2026-12 QUIC stateless reset key");
    let reset = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &reset);
    let cid = tls.derive_secret("ringkv 2026-12 QUIC connection id key");
    let cid = u64::from_le_bytes([
        cid[0], cid[1], cid[2], cid[3], cid[4], cid[5], cid[6], cid[7],
    ]);
    let mut config = quinn::EndpointConfig::new(Arc::new(reset));
    config.cid_generator(move || Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid)));
    config
}

fn client_endpoint(
    addr: SocketAddr,
    config: &quinn::ClientConfig,
) -> Result<Endpoint, TransportError> {
    let mut endpoint = Endpoint::client(addr)?;
    endpoint.set_default_client_config(config.clone());
    Ok(endpoint)
}

/// Locks a mutex; a panic elsewhere while holding it leaves a usable map, so poisoning is
/// ignored rather than propagated.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
