//! The serving side of a node's endpoint: accepts connections, reads request frames and
//! datagrams, and hands them to the node through one bounded queue.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::{Connection, Endpoint, Incoming, ReadExactError, RecvStream, SendStream, VarInt};
use tokio::runtime::Handle;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::timeout;
use tracing::{debug, warn};

use super::admission::{Admission, DatagramBudget, Place};
use super::config::TransportConfig;
use super::frame::{codes, read_frame, read_frame_after, write_frame, FrameError, HEADER_LEN};
use super::stats::{bump, bump_and_sample, Counters};
use crate::faults::Faults;
use crate::limits::Limit;

/// The queue of what peers sent this node, returned by [`Transport::bind`](super::Transport::bind).
pub struct Inbound {
    pub(crate) rx: mpsc::Receiver<InboundEvent>,
}

impl fmt::Debug for Inbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbound")
            .field("queued", &self.rx.len())
            .finish()
    }
}

impl Inbound {
    /// The next event; `None` once the endpoint is closed and every connection has ended.
    pub async fn recv(&mut self) -> Option<InboundEvent> {
        self.rx.recv().await
    }
}

/// Something a peer sent.
#[derive(Debug)]
pub enum InboundEvent {
    /// A gossip datagram.
    Datagram {
        /// The sender's socket address.
        from: SocketAddr,
        /// The datagram.
        data: Bytes,
    },
    /// A request that expects one response through `respond`.
    Request {
        /// The sender's socket address.
        from: SocketAddr,
        /// The request frame's body.
        data: Vec<u8>,
        /// Where the response goes.
        respond: Responder,
    },
}

/// The way back to the peer that sent a request. Dropping it without responding resets the
/// peer's stream, so the caller fails at once instead of waiting for its timeout.
pub struct Responder {
    way: Option<Way>,
    peer: SocketAddr,
    max_frame: usize,
    write_timeout: Duration,
    runtime: Handle,
    faults: Faults,
    /// The connection speaks protocol version 1: responses are transcoded to it.
    v1: bool,
}

/// Where a response goes: its own stream, or a call id on a multiplexed one.
enum Way {
    Stream(SendStream),
    Mux(super::mux::Reply),
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// The way back for a request read off a multiplexed stream.
    pub(crate) fn multiplexed(reply: super::mux::Reply, peer: SocketAddr, s: &Serving) -> Self {
        Responder {
            way: Some(Way::Mux(reply)),
            peer,
            max_frame: s.cfg.max_frame,
            write_timeout: s.cfg.call_timeout,
            runtime: s.runtime.clone(),
            faults: s.cfg.faults.clone(),
            v1: false,
        }
    }

    /// Sends `data` as the response frame: on a stream of its own, in a spawned task that
    /// finishes the stream (bounded by the call timeout; a response over `max_frame` resets
    /// the stream instead); on a multiplexed stream, queued for its writer (a response over
    /// `max_frame` refuses the call instead). Failures are traced, since the peer's call
    /// reports them.
    pub fn respond(mut self, data: Vec<u8>) {
        let (peer, max, wait) = (self.peer, self.max_frame, self.write_timeout);
        let mut send = match self.way.take() {
            None => return,
            Some(Way::Mux(reply)) => {
                // Cut off on send: the response is lost, the peer's call times out.
                if !self.faults.cuts_to(peer) {
                    reply.send(data, max);
                }
                return;
            }
            Some(Way::Stream(send)) => send,
        };
        if self.faults.cuts_to(peer) {
            // Cut off on send: the response is lost, the peer's call times out.
            let faults = self.faults.clone();
            self.runtime.spawn(async move { faults.hold(send).await });
            return;
        }
        let data = if self.v1 {
            match super::compat::response_to_v1(&data) {
                Ok(data) => data,
                Err(e) => {
                    debug!(%peer, error = %e, "response not sent: not expressible in version 1");
                    let _ = send.reset(codes::NO_RESPONSE);
                    return;
                }
            }
        } else {
            data
        };
        self.runtime.spawn(async move {
            let outcome = timeout(wait, async {
                write_frame(&mut send, &data, max).await?;
                // Already reset by the peer: the write above has reported it.
                let _ = send.finish();
                Ok::<(), FrameError>(())
            })
            .await;
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let _ = send.reset(e.code());
                    debug!(%peer, error = %e, "response not sent");
                }
                Err(_) => {
                    let _ = send.reset(codes::TOO_SLOW);
                    debug!(%peer, ?wait, "response not sent: peer did not read it in time");
                }
            }
        });
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        match self.way.take() {
            Some(Way::Stream(mut send)) => {
                let _ = send.reset(codes::NO_RESPONSE);
            }
            Some(Way::Mux(reply)) => reply.refuse(codes::NO_RESPONSE),
            None => {}
        }
    }
}

/// Everything the serving tasks share.
#[derive(Clone)]
pub(crate) struct Serving {
    pub tx: mpsc::Sender<InboundEvent>,
    pub cfg: TransportConfig,
    pub stats: Arc<Counters>,
    pub runtime: Handle,
}

/// Accepts connections until the endpoint closes.
pub(crate) async fn accept_loop(endpoint: Endpoint, serving: Serving) {
    let admission = Admission::default();
    let cfg = &serving.cfg;
    while let Some(incoming) = endpoint.accept().await {
        let from = incoming.remote_address();
        let place = match admission.admit(
            from.ip(),
            cfg.max_connections,
            cfg.max_connections_per_address,
        ) {
            Ok(place) => place,
            Err(limit) => {
                bump(&serving.stats.connections_refused);
                cfg.limit_hits
                    .hit(limit, format_args!("refused a connection from {from}"));
                incoming.refuse();
                continue;
            }
        };
        serving
            .runtime
            .spawn(serve_connection(incoming, place, serving.clone()));
    }
}

async fn serve_connection(incoming: Incoming, _place: Place, serving: Serving) {
    let from = incoming.remote_address();
    let handshake = async {
        match incoming.accept() {
            Ok(connecting) => connecting.await,
            Err(e) => Err(e),
        }
    };
    let conn = match timeout(serving.cfg.handshake_timeout, handshake).await {
        Ok(Ok(conn)) => {
            bump(&serving.stats.connections_accepted);
            conn
        }
        Ok(Err(e)) => {
            if bump_and_sample(&serving.stats.handshakes_refused) {
                warn!(peer = %from, error = %e, "refused a connection at the TLS handshake (sampled: first, then every 100th)");
            } else {
                debug!(peer = %from, error = %e, "handshake refused");
            }
            return;
        }
        Err(_) => {
            bump(&serving.stats.handshakes_refused);
            serving.cfg.limit_hits.hit(
                Limit::HandshakeTime,
                format_args!("the handshake of {from} did not complete in time"),
            );
            return;
        }
    };
    serving
        .runtime
        .spawn(read_datagrams(conn.clone(), from, serving.clone()));
    let version = super::tls::negotiated_version(&conn);
    let v1 = version == Some(super::compat::V1);
    let mux = version.is_some_and(|v| v >= super::mux::VERSION);
    // Streams of this connection being read; at the QUIC limit the peer waits for credit.
    let reading = Arc::new(AtomicUsize::new(0));
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                let now = reading.fetch_add(1, Ordering::Relaxed) + 1;
                if now >= serving.cfg.max_concurrent_streams as usize {
                    serving.cfg.limit_hits.hit(
                        Limit::StreamsPerConnection,
                        format_args!("{from} has {now} request streams open at once"),
                    );
                }
                let (reading, serving) = (reading.clone(), serving.clone());
                serving.runtime.clone().spawn(async move {
                    if mux {
                        serve_stream_v3(send, recv, from, serving).await;
                    } else {
                        serve_stream(send, recv, from, v1, None, serving).await;
                    }
                    reading.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Err(e) => {
                debug!(peer = %from, error = %e, "connection ended");
                return;
            }
        }
    }
}

async fn read_datagrams(conn: Connection, from: SocketAddr, serving: Serving) {
    let cfg = &serving.cfg;
    let mut budget = DatagramBudget::new(cfg.max_datagrams_per_sec, Instant::now());
    // Older versions' gossip has no membership digest: it gets the "unknown" one.
    let old_gossip =
        super::tls::negotiated_version(&conn).is_none_or(|v| v < super::tls::GOSSIP_DIGEST_VERSION);
    while let Ok(mut data) = conn.read_datagram().await {
        bump(&serving.stats.datagrams_received);
        if cfg.faults.cuts_from(from) {
            continue;
        }
        if !budget.take(Instant::now()) {
            bump(&serving.stats.inbound_datagrams_dropped);
            cfg.limit_hits.hit(
                Limit::DatagramRate,
                format_args!("dropped datagrams from {from}: over its rate"),
            );
            continue;
        }
        if old_gossip {
            match ringkv_gossip::wire::with_no_digest(&data) {
                Ok(converted) => data = Bytes::from(converted),
                Err(e) => {
                    debug!(peer = %from, error = %e, "gossip datagram dropped: not convertible");
                    continue;
                }
            }
        }
        match serving.tx.try_send(InboundEvent::Datagram { from, data }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                bump(&serving.stats.inbound_datagrams_dropped);
                cfg.limit_hits.hit(
                    Limit::InboundQueue,
                    format_args!("dropped a datagram from {from}: inbound queue full"),
                );
            }
            Err(TrySendError::Closed(_)) => return,
        }
    }
}

/// A stream of a version-3 connection: multiplexed when it opens with the preamble, else
/// one call as in version 2.
async fn serve_stream_v3(
    send: SendStream,
    mut recv: RecvStream,
    from: SocketAddr,
    serving: Serving,
) {
    let mut header = [0u8; HEADER_LEN];
    let read = timeout(serving.cfg.call_timeout, recv.read_exact(&mut header)).await;
    match read {
        Ok(Ok(())) if header == super::mux::PREAMBLE => {
            let per_stream = super::mux::Limits::default().per_stream;
            super::mux::serve(send, recv, from, per_stream, serving).await;
        }
        Ok(Ok(())) => serve_stream(send, recv, from, false, Some(header), serving).await,
        Ok(Err(ReadExactError::ReadError(e))) => {
            debug!(peer = %from, error = %e, "request stream ended early");
        }
        Ok(Err(ReadExactError::FinishedEarly(_))) => {
            refuse_header(send, recv, from, codes::BAD_FRAME, &serving)
        }
        Err(_) => {
            serving.cfg.limit_hits.hit(
                Limit::FrameTime,
                format_args!("{from} did not complete a request frame in time"),
            );
            refuse_header(send, recv, from, codes::TOO_SLOW, &serving)
        }
    }
}

fn refuse_header(
    mut send: SendStream,
    mut recv: RecvStream,
    from: SocketAddr,
    code: VarInt,
    serving: &Serving,
) {
    bump(&serving.stats.streams_refused);
    debug!(peer = %from, "request stream refused: {}", codes::describe(code));
    let _ = send.reset(code);
    let _ = recv.stop(code);
}

/// Reads one request frame (of which `header` may have been read) and queues it; a bad frame
/// resets this stream only.
async fn serve_stream(
    mut send: SendStream,
    mut recv: RecvStream,
    from: SocketAddr,
    v1: bool,
    header: Option<[u8; HEADER_LEN]>,
    serving: Serving,
) {
    let cfg = &serving.cfg;
    let refuse = |send: &mut SendStream, recv: &mut RecvStream, code: VarInt| {
        let _ = send.reset(code);
        let _ = recv.stop(code);
    };
    let frame = async {
        match header {
            Some(header) => read_frame_after(&mut recv, header, cfg.max_frame).await,
            None => read_frame(&mut recv, cfg.max_frame).await,
        }
    };
    let data = match timeout(cfg.call_timeout, frame).await {
        Ok(Ok(data)) => data,
        Ok(Err(FrameError::Read(e))) => {
            // The peer went away or abandoned the stream: nothing to refuse.
            debug!(peer = %from, error = %e, "request stream ended early");
            return;
        }
        Ok(Err(e)) => {
            bump(&serving.stats.streams_refused);
            if let FrameError::TooLarge { .. } = e {
                cfg.limit_hits
                    .hit(Limit::FrameSize, format_args!("{from}: {e}"));
            }
            debug!(peer = %from, error = %e, "request stream refused");
            refuse(&mut send, &mut recv, e.code());
            return;
        }
        Err(_) => {
            bump(&serving.stats.streams_refused);
            cfg.limit_hits.hit(
                Limit::FrameTime,
                format_args!("{from} did not complete a request frame in time"),
            );
            refuse(&mut send, &mut recv, codes::TOO_SLOW);
            return;
        }
    };
    if cfg.faults.cuts_from(from) {
        // Cut off on receipt: the request is lost, the peer's call times out.
        cfg.faults.hold((send, recv)).await;
        return;
    }
    // Waiting for room in the queue is the backpressure on this stream; bounded like a call.
    let permit = match timeout(cfg.call_timeout, serving.tx.reserve()).await {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) => {
            refuse(&mut send, &mut recv, codes::NO_RESPONSE);
            return;
        }
        Err(_) => {
            bump(&serving.stats.requests_refused_busy);
            cfg.limit_hits.hit(
                Limit::InboundQueue,
                format_args!("refused a request from {from} as busy: inbound queue full"),
            );
            refuse(&mut send, &mut recv, codes::BUSY);
            return;
        }
    };
    bump(&serving.stats.requests_received);
    let respond = Responder {
        way: Some(Way::Stream(send)),
        peer: from,
        max_frame: cfg.max_frame,
        write_timeout: cfg.call_timeout,
        runtime: serving.runtime.clone(),
        faults: cfg.faults.clone(),
        v1,
    };
    permit.send(InboundEvent::Request {
        from,
        data,
        respond,
    });
}
