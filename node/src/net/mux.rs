//! Multiplexed calls (protocol version 3): many request/response pairs between two endpoints
//! on a few long-lived bidirectional streams per connection, instead of a stream per call.
//!
//! The caller opens a stream with [`PREAMBLE`]; then each side writes frames
//! `[u32 body length][u64 call id][u8 kind][body]`, big-endian. The caller sends
//! [`Kind::Request`] frames under ids it picks; the callee answers each id once, in any
//! order, with [`Kind::Response`] or [`Kind::Refused`] (body: the `u64` refusal code, one of
//! [`codes`]). Frames queued together go out in one write, so a packet carries many.
//!
//! Failures stay as narrow as the protocol allows: a frame over the receiver's limit is
//! skipped and fails only its call; a frame that cannot be read (bad kind, truncated,
//! stalled) or a reset breaks its stream, whose calls in flight fail with
//! [`TransportError::ConnectionLost`] while the connection's other streams carry on; the
//! next call replaces the broken stream. A call given up by its caller (timeout) is
//! forgotten: its late answer is dropped and the stream carries on.
//!
//! Bounds: streams per connection and calls in flight per stream and per connection
//! ([`Limits`]; a caller waits for room within its call timeout, a callee stops reading a
//! stream while its unanswered requests fill the bound, which QUIC flow control passes
//! back), bytes gathered per write, and the time to read a begun frame or write a batch.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use quinn::{Connection, ReadExactError, RecvStream, SendStream, VarInt};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout;
use tracing::debug;

use super::error::TransportError;
use super::frame::{codes, read_body, FrameError};
use super::inbound::{InboundEvent, Responder, Serving};
use super::stats::bump;
use crate::limits::Limit;

/// The first protocol version whose connections carry multiplexed streams.
pub(crate) const VERSION: u32 = 3;

/// The first bytes of a multiplexed stream. Read as a version-2 length prefix it announces a
/// frame of about 4 GiB, which no endpoint accepts, so the two kinds of stream never mix up.
pub(crate) const PREAMBLE: [u8; 4] = *b"\xffMUX";

/// Bytes of a frame header: length, call id, kind.
pub(crate) const HEADER_LEN: usize = 13;

/// Frames queued together are gathered into one write up to about this many bytes.
const BATCH_BYTES: usize = 64 * 1024;

/// How many streams and calls one connection carries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Streams a caller opens per connection (calls go round-robin over them).
    pub streams: usize,
    /// Calls in flight on one stream (both sides hold to it).
    pub per_stream: usize,
    /// Calls in flight on one connection, over all its streams.
    pub per_connection: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            streams: 4,
            per_stream: 128,
            per_connection: 256,
        }
    }
}

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A call's request (caller to callee).
    Request = 0,
    /// A call's response (callee to caller).
    Response = 1,
    /// A call the callee refused; the body is the `u64` code.
    Refused = 2,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            0 => Some(Kind::Request),
            1 => Some(Kind::Response),
            2 => Some(Kind::Refused),
            _ => None,
        }
    }
}

/// Appends a frame to `out`; `TooLarge` when the body does not fit the length field.
pub(crate) fn push_frame(
    out: &mut Vec<u8>,
    id: u64,
    kind: Kind,
    body: &[u8],
) -> Result<(), FrameError> {
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge {
        size: body.len() as u64,
        max: u32::MAX as usize,
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.push(kind as u8);
    out.extend_from_slice(body);
    Ok(())
}

/// Length, call id and kind byte of a header.
pub(crate) fn decode_header(h: [u8; HEADER_LEN]) -> (u32, u64, u8) {
    let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let id = u64::from_be_bytes([h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11]]);
    (len, id, h[12])
}

/// A frame as read.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A whole frame.
    Frame { id: u64, kind: Kind, body: Vec<u8> },
    /// A frame over the limit, read and dropped.
    TooLarge { id: u64, size: u64 },
}

/// Reads the next frame; `None` when the stream ends between frames. The stream may idle
/// before a frame; once begun, the frame must arrive within `wait`. A frame over `max` is
/// read and dropped.
pub(crate) async fn read_frame(
    recv: &mut RecvStream,
    max: usize,
    wait: Duration,
) -> Result<Option<Incoming>, FrameError> {
    let mut first = [0u8; 1];
    match recv.read_exact(&mut first).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(_)) => return Ok(None),
        Err(ReadExactError::ReadError(e)) => return Err(FrameError::Read(e)),
    }
    match timeout(wait, read_rest(recv, first[0], max)).await {
        Ok(frame) => frame.map(Some),
        Err(_) => Err(FrameError::Stalled),
    }
}

async fn read_rest(recv: &mut RecvStream, first: u8, max: usize) -> Result<Incoming, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    header[0] = first;
    recv.read_exact(&mut header[1..])
        .await
        .map_err(|e| match e {
            ReadExactError::FinishedEarly(got) => FrameError::Truncated {
                got: got + 1,
                expected: HEADER_LEN,
            },
            ReadExactError::ReadError(e) => FrameError::Read(e),
        })?;
    let (len, id, kind) = decode_header(header);
    let kind = Kind::from_byte(kind).ok_or(FrameError::BadKind(kind))?;
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > max {
        skip(recv, len).await?;
        return Ok(Incoming::TooLarge {
            id,
            size: len as u64,
        });
    }
    let body = read_body(recv, len, HEADER_LEN).await?;
    Ok(Incoming::Frame { id, kind, body })
}

/// Reads and drops `len` bytes.
async fn skip(recv: &mut RecvStream, len: usize) -> Result<(), FrameError> {
    let mut left = len;
    while left > 0 {
        match recv
            .read_chunk(left, true)
            .await
            .map_err(FrameError::Read)?
        {
            Some(chunk) => left = left.saturating_sub(chunk.bytes.len()),
            None => {
                return Err(FrameError::Truncated {
                    got: HEADER_LEN + len - left,
                    expected: HEADER_LEN + len,
                })
            }
        }
    }
    Ok(())
}

/// What a stream's writer sends.
pub(crate) enum Outgoing {
    /// A frame; `room` is the callee's in-flight slot, freed once the frame is written.
    Frame {
        id: u64,
        kind: Kind,
        body: Vec<u8>,
        room: Option<OwnedSemaphorePermit>,
    },
    /// Reset the stream with this code and stop.
    Reset(VarInt),
}

impl Outgoing {
    fn refused(id: u64, code: VarInt, room: OwnedSemaphorePermit) -> Outgoing {
        Outgoing::Frame {
            id,
            kind: Kind::Refused,
            body: code.into_inner().to_be_bytes().to_vec(),
            room: Some(room),
        }
    }
}

/// Writes what `rx` delivers, gathering what is queued into one write, until every sender
/// is gone (then finishes the stream), a reset is asked for, or a write fails or stalls
/// past `wait` (then resets the stream).
async fn write_loop(
    mut send: SendStream,
    mut rx: mpsc::Receiver<Outgoing>,
    mut buf: Vec<u8>,
    wait: Duration,
) -> Result<(), FrameError> {
    let mut written = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Outgoing::Frame {
                    id,
                    kind,
                    body,
                    room,
                } => {
                    push_frame(&mut buf, id, kind, &body)?;
                    written.extend(room);
                }
                Outgoing::Reset(code) => {
                    let _ = send.reset(code);
                    return Ok(());
                }
            }
            if buf.len() < BATCH_BYTES {
                next = rx.try_recv().ok();
            }
        }
        match timeout(wait, send.write_all(&buf)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(FrameError::Write(e)),
            Err(_) => {
                let _ = send.reset(codes::TOO_SLOW);
                return Err(FrameError::Stalled);
            }
        }
        if buf.capacity() > 4 * BATCH_BYTES {
            buf = Vec::with_capacity(BATCH_BYTES);
        }
        buf.clear();
        written.clear();
    }
    let _ = send.finish();
    Ok(())
}

/// The caller's side of one connection's multiplexed streams.
pub(crate) struct Mux {
    conn: Connection,
    peer: SocketAddr,
    limits: Limits,
    max_frame: usize,
    wait: Duration,
    streams: Vec<tokio::sync::Mutex<Option<Arc<Caller>>>>,
    next: AtomicUsize,
    in_flight: Semaphore,
    runtime: Handle,
}

impl Mux {
    /// Calls over `conn` (which negotiated version 3), frames of at most `max_frame` bytes,
    /// a begun frame or a write bounded by `wait`. Streams are opened on first use.
    pub(crate) fn new(
        conn: Connection,
        peer: SocketAddr,
        limits: Limits,
        max_frame: usize,
        wait: Duration,
        runtime: Handle,
    ) -> Mux {
        let streams = limits.streams.max(1);
        Mux {
            conn,
            peer,
            limits,
            max_frame,
            wait,
            streams: (0..streams)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next: AtomicUsize::new(0),
            in_flight: Semaphore::new(limits.per_connection.max(1)),
            runtime,
        }
    }

    /// One call: waits for room on the connection, then on the next stream (round-robin),
    /// sends the request and waits for its answer. Unbounded here: the caller bounds the
    /// whole call, and dropping the future forgets the call.
    pub(crate) async fn call(&self, request: &[u8]) -> Result<Vec<u8>, TransportError> {
        let _room = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| TransportError::Closed)?;
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.streams.len();
        let caller = self.stream(i).await?;
        caller.call(request).await
    }

    /// The `i`th stream, opened (again) when it is not open or broke.
    async fn stream(&self, i: usize) -> Result<Arc<Caller>, TransportError> {
        let mut slot = self.streams[i].lock().await;
        if let Some(caller) = slot.as_ref() {
            if caller.usable() {
                return Ok(caller.clone());
            }
        }
        let (send, recv) = self
            .conn
            .open_bi()
            .await
            .map_err(|e| TransportError::from_connection(self.peer, &e))?;
        let caller = Caller::start(send, recv, self, &self.runtime);
        *slot = Some(caller.clone());
        Ok(caller)
    }
}

/// One multiplexed stream, caller side.
struct Caller {
    out: mpsc::Sender<Outgoing>,
    calls: Arc<Calls>,
    room: Semaphore,
}

/// The calls waiting for an answer on one stream.
struct Calls {
    peer: SocketAddr,
    state: Mutex<CallState>,
}

type Answer = Result<Vec<u8>, TransportError>;

struct CallState {
    next_id: u64,
    waiting: HashMap<u64, oneshot::Sender<Answer>>,
    /// Why the stream broke, once it has.
    broken: Option<Broken>,
}

/// Why a stream broke.
#[derive(Clone, Debug)]
enum Broken {
    /// Its connection ended: the calls fail as a connection's would (a handshake refused
    /// after the fact stays a handshake error).
    Connection(quinn::ConnectionError),
    /// The stream alone.
    Stream(String),
}

impl Broken {
    fn of(e: FrameError, doing: &str) -> Broken {
        match e {
            FrameError::Read(quinn::ReadError::ConnectionLost(c))
            | FrameError::Write(quinn::WriteError::ConnectionLost(c)) => Broken::Connection(c),
            other => Broken::Stream(format!("{doing}: {other}")),
        }
    }
}

impl Caller {
    fn start(send: SendStream, recv: RecvStream, mux: &Mux, runtime: &Handle) -> Arc<Caller> {
        let per_stream = mux.limits.per_stream.max(1);
        let (out, rx) = mpsc::channel(per_stream);
        let calls = Arc::new(Calls {
            peer: mux.peer,
            state: Mutex::new(CallState {
                next_id: 0,
                waiting: HashMap::new(),
                broken: None,
            }),
        });
        let (wait, max) = (mux.wait, mux.max_frame);
        let writer = calls.clone();
        runtime.spawn(async move {
            if let Err(e) = write_loop(send, rx, PREAMBLE.to_vec(), wait).await {
                writer.break_all(Broken::of(e, "writing"));
            }
        });
        runtime.spawn(read_answers(recv, calls.clone(), max, wait));
        Arc::new(Caller {
            out,
            calls,
            room: Semaphore::new(per_stream),
        })
    }

    fn usable(&self) -> bool {
        lock(&self.calls.state).broken.is_none() && !self.out.is_closed()
    }

    async fn call(&self, request: &[u8]) -> Result<Vec<u8>, TransportError> {
        let _room = self
            .room
            .acquire()
            .await
            .map_err(|_| TransportError::Closed)?;
        let (id, answer) = self.calls.register()?;
        let _forget = Forget {
            calls: &self.calls,
            id,
        };
        let frame = Outgoing::Frame {
            id,
            kind: Kind::Request,
            body: request.to_vec(),
            room: None,
        };
        self.out.send(frame).await.map_err(|_| {
            self.calls
                .lost(&Broken::Stream("its writer stopped".into()))
        })?;
        answer.await.map_err(|_| {
            self.calls
                .lost(&Broken::Stream("the call was dropped".into()))
        })?
    }
}

impl Calls {
    fn register(&self) -> Result<(u64, oneshot::Receiver<Answer>), TransportError> {
        let mut state = lock(&self.state);
        if let Some(reason) = &state.broken {
            return Err(self.lost(reason));
        }
        let id = state.next_id;
        state.next_id += 1;
        let (tx, rx) = oneshot::channel();
        state.waiting.insert(id, tx);
        Ok((id, rx))
    }

    /// Delivers an answer; one for a call already forgotten is dropped.
    fn answer(&self, id: u64, answer: Answer) {
        if let Some(tx) = lock(&self.state).waiting.remove(&id) {
            let _ = tx.send(answer);
        }
    }

    /// Marks the stream broken and fails every call waiting on it.
    fn break_all(&self, reason: Broken) {
        let waiting = {
            let mut state = lock(&self.state);
            state.broken.get_or_insert(reason.clone());
            std::mem::take(&mut state.waiting)
        };
        if !waiting.is_empty() {
            debug!(peer = %self.peer, ?reason, calls = waiting.len(), "stream broke");
        }
        for (_, tx) in waiting {
            let _ = tx.send(Err(self.lost(&reason)));
        }
    }

    /// The error of a call on a broken stream: retryable like a lost connection.
    fn lost(&self, reason: &Broken) -> TransportError {
        match reason {
            Broken::Connection(e) => TransportError::from_connection(self.peer, e),
            Broken::Stream(reason) => TransportError::ConnectionLost {
                addr: self.peer,
                reason: format!("call stream broke: {reason}"),
            },
        }
    }
}

/// Forgets a call when its future ends, answered or not.
struct Forget<'a> {
    calls: &'a Calls,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(&self.calls.state).waiting.remove(&self.id);
    }
}

/// Reads answers off a caller's stream until it ends or breaks, then fails what still waits.
async fn read_answers(mut recv: RecvStream, calls: Arc<Calls>, max: usize, wait: Duration) {
    let peer = calls.peer;
    let reason = loop {
        match read_frame(&mut recv, max, wait).await {
            Ok(Some(Incoming::Frame {
                id,
                kind: Kind::Response,
                body,
            })) => calls.answer(id, Ok(body)),
            Ok(Some(Incoming::Frame {
                id,
                kind: Kind::Refused,
                body,
            })) => {
                let code = <[u8; 8]>::try_from(body.as_slice())
                    .ok()
                    .and_then(|b| VarInt::from_u64(u64::from_be_bytes(b)).ok())
                    .unwrap_or(codes::BAD_FRAME);
                let reason = codes::describe(code);
                calls.answer(id, Err(TransportError::Remote { addr: peer, reason }));
            }
            Ok(Some(Incoming::TooLarge { id, size })) => {
                calls.answer(id, Err(TransportError::FrameTooLarge { size, max }));
            }
            Ok(Some(Incoming::Frame { kind, .. })) => {
                let e = FrameError::BadKind(kind as u8);
                let _ = recv.stop(e.code());
                break Broken::of(e, "reading");
            }
            Ok(None) => break Broken::Stream("the peer ended it".into()),
            Err(e) => {
                if !matches!(e, FrameError::Read(_)) {
                    let _ = recv.stop(e.code());
                }
                break Broken::of(e, "reading");
            }
        }
    };
    calls.break_all(reason);
}

/// The way back for one request read off a multiplexed stream.
pub(crate) struct Reply {
    out: mpsc::Sender<Outgoing>,
    id: u64,
    room: OwnedSemaphorePermit,
}

impl Reply {
    /// Queues the response (a refusal when over `max`). Never waits: the stream's queue has
    /// room for every request it holds a slot for.
    pub(crate) fn send(self, body: Vec<u8>, max: usize) {
        let msg = if body.len() > max {
            debug!(size = body.len(), max, "response not sent: too large");
            Outgoing::refused(self.id, codes::TOO_LARGE, self.room)
        } else {
            Outgoing::Frame {
                id: self.id,
                kind: Kind::Response,
                body,
                room: Some(self.room),
            }
        };
        let _ = self.out.try_send(msg);
    }

    /// Refuses the call with `code`.
    pub(crate) fn refuse(self, code: VarInt) {
        let _ = self
            .out
            .try_send(Outgoing::refused(self.id, code, self.room));
    }
}

/// Serves one multiplexed stream whose preamble was read: queues each request for the node
/// and writes the answers back as they come, until the caller ends the stream or it breaks.
pub(crate) async fn serve(
    send: SendStream,
    mut recv: RecvStream,
    from: SocketAddr,
    per_stream: usize,
    serving: Serving,
) {
    let cfg = &serving.cfg;
    let per_stream = per_stream.max(1);
    let room = Arc::new(Semaphore::new(per_stream));
    // One message per slot of `room`, plus a reset.
    let (out, rx) = mpsc::channel(per_stream + 1);
    let wait = cfg.call_timeout;
    serving.runtime.spawn(async move {
        if let Err(e) = write_loop(send, rx, Vec::new(), wait).await {
            debug!(peer = %from, error = %e, "answers not written");
        }
    });
    loop {
        let slot = tokio::select! {
            slot = room.clone().acquire_owned() => slot,
            _ = out.closed() => return,
        };
        let Ok(slot) = slot else { return };
        let frame = tokio::select! {
            frame = read_frame(&mut recv, cfg.max_frame, cfg.call_timeout) => frame,
            // The writer failed: nothing read now could be answered.
            _ = out.closed() => return,
        };
        match frame {
            Ok(None) => return,
            Ok(Some(Incoming::Frame {
                id,
                kind: Kind::Request,
                body,
            })) => {
                if cfg.faults.cuts_from(from) {
                    // Cut off on receipt: the request is lost, the peer's call times out.
                    continue;
                }
                // Waiting for room in the queue is the backpressure on this stream.
                match timeout(cfg.call_timeout, serving.tx.reserve()).await {
                    Ok(Ok(permit)) => {
                        bump(&serving.stats.requests_received);
                        let reply = Reply {
                            out: out.clone(),
                            id,
                            room: slot,
                        };
                        permit.send(InboundEvent::Request {
                            from,
                            data: body,
                            respond: Responder::multiplexed(reply, from, &serving),
                        });
                    }
                    Ok(Err(_)) => return,
                    Err(_) => {
                        bump(&serving.stats.requests_refused_busy);
                        serving.cfg.limit_hits.hit(
                            Limit::InboundQueue,
                            format_args!(
                                "refused a request from {from} as busy: inbound queue full"
                            ),
                        );
                        let _ = out.try_send(Outgoing::refused(id, codes::BUSY, slot));
                    }
                }
            }
            Ok(Some(Incoming::TooLarge { id, size })) => {
                bump(&serving.stats.streams_refused);
                serving.cfg.limit_hits.hit(
                    Limit::FrameSize,
                    format_args!("{from}: a request of {size} bytes is over the frame limit"),
                );
                let _ = out.try_send(Outgoing::refused(id, codes::TOO_LARGE, slot));
            }
            Ok(Some(Incoming::Frame { kind, .. })) => {
                refuse_stream(
                    &serving,
                    &out,
                    &mut recv,
                    from,
                    FrameError::BadKind(kind as u8),
                );
                return;
            }
            Err(FrameError::Read(e)) => {
                debug!(peer = %from, error = %e, "call stream ended");
                return;
            }
            Err(e) => {
                refuse_stream(&serving, &out, &mut recv, from, e);
                return;
            }
        }
    }
}

fn refuse_stream(
    serving: &Serving,
    out: &mpsc::Sender<Outgoing>,
    recv: &mut RecvStream,
    from: SocketAddr,
    e: FrameError,
) {
    bump(&serving.stats.streams_refused);
    if let FrameError::Stalled = e {
        serving.cfg.limit_hits.hit(
            Limit::FrameTime,
            format_args!("{from} did not complete a request frame in time"),
        );
    }
    debug!(peer = %from, error = %e, "call stream refused");
    let _ = out.try_send(Outgoing::Reset(e.code()));
    let _ = recv.stop(e.code());
}

/// Locks a mutex, ignoring poisoning (the maps stay consistent between statements).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::tls::{client_config, init_cluster, issue_node, server_config, TlsMaterial};
    use crate::net::TransportConfig;
    use tokio::sync::mpsc::UnboundedReceiver;

    #[test]
    fn frames_round_trip() {
        let mut out = Vec::new();
        push_frame(&mut out, 0x0102_0304_0506_0708, Kind::Refused, b"abc").unwrap();
        let header: [u8; HEADER_LEN] = out[..HEADER_LEN].try_into().unwrap();
        assert_eq!(decode_header(header), (3, 0x0102_0304_0506_0708, 2));
        assert_eq!(&out[HEADER_LEN..], b"abc");
        assert_eq!(Kind::from_byte(2), Some(Kind::Refused));
        assert_eq!(Kind::from_byte(3), None);
        // The preamble, read as a version-2 length prefix, is over any usable frame limit.
        assert!(u32::from_be_bytes(PREAMBLE) > 4_000_000_000);
    }

    /// A request as a scripted callee read it: stream (in accept order), call id, body.
    type Seen = (usize, u64, Vec<u8>);

    /// A callee whose answers the test writes by hand.
    struct Callee {
        seen: UnboundedReceiver<Seen>,
        sends: Arc<tokio::sync::Mutex<Vec<SendStream>>>,
        _endpoint: quinn::Endpoint,
    }

    impl Callee {
        async fn next(&mut self) -> Seen {
            timeout(Duration::from_secs(10), self.seen.recv())
                .await
                .expect("a request within 10 s")
                .expect("the callee runs")
        }

        async fn answer(&self, stream: usize, id: u64, body: &[u8]) {
            let mut frame = Vec::new();
            push_frame(&mut frame, id, Kind::Response, body).unwrap();
            self.sends.lock().await[stream]
                .write_all(&frame)
                .await
                .unwrap();
        }

        async fn streams(&self) -> usize {
            self.sends.lock().await.len()
        }
    }

    /// A caller connected to a scripted callee, with `limits` and a 10 s bound on frames.
    async fn pair(limits: Limits) -> (Arc<Mux>, Callee, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        init_cluster(dir.path()).unwrap();
        issue_node(dir.path(), "n1", &["127.0.0.1".parse().unwrap()], &[]).unwrap();
        let cfg = TransportConfig::default();
        let node = TlsMaterial::load_node(dir.path(), "n1").unwrap();
        let server = server_config(&node, &cfg).unwrap();
        let endpoint = quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let (tx, seen) = mpsc::unbounded_channel();
        let sends = Arc::new(tokio::sync::Mutex::new(Vec::new()));
        let (accepting, streams) = (endpoint.clone(), sends.clone());
        tokio::spawn(async move {
            let conn = accepting.accept().await.unwrap().await.unwrap();
            while let Ok((send, mut recv)) = conn.accept_bi().await {
                let mut preamble = [0u8; 4];
                recv.read_exact(&mut preamble).await.unwrap();
                assert_eq!(preamble, PREAMBLE);
                let index = {
                    let mut streams = streams.lock().await;
                    streams.push(send);
                    streams.len() - 1
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let wait = Duration::from_secs(10);
                    while let Ok(Some(Incoming::Frame { id, body, .. })) =
                        read_frame(&mut recv, 1 << 20, wait).await
                    {
                        let _ = tx.send((index, id, body));
                    }
                });
            }
        });
        let client = TlsMaterial::load_client(dir.path()).unwrap();
        let mut caller = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        caller.set_default_client_config(client_config(&client, &cfg).unwrap());
        let conn = caller.connect(addr, "127.0.0.1").unwrap().await.unwrap();
        let wait = Duration::from_secs(10);
        let mux = Mux::new(conn, addr, limits, 1 << 20, wait, Handle::current());
        let callee = Callee {
            seen,
            sends,
            _endpoint: endpoint,
        };
        (Arc::new(mux), callee, dir)
    }

    fn spawn_call(mux: &Arc<Mux>, body: &'static [u8]) -> tokio::task::JoinHandle<Answer> {
        let mux = mux.clone();
        tokio::spawn(async move { mux.call(body).await })
    }

    async fn answered(call: tokio::task::JoinHandle<Answer>) -> Answer {
        timeout(Duration::from_secs(10), call)
            .await
            .expect("an answer within 10 s")
            .unwrap()
    }

    const ONE_STREAM: Limits = Limits {
        streams: 1,
        per_stream: 8,
        per_connection: 8,
    };

    #[tokio::test]
    async fn answers_in_any_order_reach_their_calls() {
        let (mux, mut callee, _dir) = pair(ONE_STREAM).await;
        let a = spawn_call(&mux, b"a");
        let (_, id_a, body) = callee.next().await;
        assert_eq!(body, b"a");
        let b = spawn_call(&mux, b"b");
        let (_, id_b, body) = callee.next().await;
        assert_eq!(body, b"b");
        assert_ne!(id_a, id_b);
        callee.answer(0, id_b, b"for b").await;
        assert_eq!(answered(b).await.unwrap(), b"for b");
        callee.answer(0, id_a, b"for a").await;
        assert_eq!(answered(a).await.unwrap(), b"for a");
        assert_eq!(callee.streams().await, 1, "both calls shared one stream");
    }

    #[tokio::test]
    async fn a_reset_stream_fails_only_its_calls() {
        let limits = Limits {
            streams: 2,
            per_stream: 4,
            per_connection: 8,
        };
        let (mux, mut callee, _dir) = pair(limits).await;
        let a = spawn_call(&mux, b"a");
        let (stream_a, id_a, _) = callee.next().await;
        let b = spawn_call(&mux, b"b");
        let (stream_b, _, _) = callee.next().await;
        assert_ne!(stream_a, stream_b, "round-robin over two streams");

        callee.sends.lock().await[stream_b]
            .reset(VarInt::from_u32(99))
            .unwrap();
        let err = answered(b).await.unwrap_err();
        assert!(
            matches!(err, TransportError::ConnectionLost { .. }),
            "{err}"
        );
        // The other stream's call is still waiting, and is answered.
        callee.answer(stream_a, id_a, b"for a").await;
        assert_eq!(answered(a).await.unwrap(), b"for a");

        // Later calls go over the surviving stream and a new one replacing the broken one.
        let c = spawn_call(&mux, b"c");
        let d = spawn_call(&mux, b"d");
        for _ in 0..2 {
            let (stream, id, body) = callee.next().await;
            callee
                .answer(stream, id, &[b"re:", body.as_slice()].concat())
                .await;
        }
        assert_eq!(answered(c).await.unwrap(), b"re:c");
        assert_eq!(answered(d).await.unwrap(), b"re:d");
        assert_eq!(callee.streams().await, 3);
    }

    #[tokio::test]
    async fn calls_past_the_in_flight_bounds_wait_for_room() {
        for limits in [
            Limits {
                streams: 1,
                per_stream: 2,
                per_connection: 8,
            },
            Limits {
                streams: 2,
                per_stream: 8,
                per_connection: 2,
            },
        ] {
            let (mux, mut callee, _dir) = pair(limits).await;
            let calls = [
                spawn_call(&mux, b"1"),
                spawn_call(&mux, b"2"),
                spawn_call(&mux, b"3"),
            ];
            let first = callee.next().await;
            let second = callee.next().await;
            let third = timeout(Duration::from_millis(300), callee.seen.recv()).await;
            assert!(third.is_err(), "{limits:?}: a third call was sent");
            callee.answer(first.0, first.1, b"ok").await;
            let (stream, id, _) = callee.next().await;
            callee.answer(stream, id, b"ok").await;
            callee.answer(second.0, second.1, b"ok").await;
            for call in calls {
                assert_eq!(answered(call).await.unwrap(), b"ok");
            }
        }
    }

    #[tokio::test]
    async fn a_call_given_up_does_not_wedge_its_stream() {
        let (mux, mut callee, _dir) = pair(ONE_STREAM).await;
        // Given up once sent, as a call timing out is: its future is dropped.
        let slow = spawn_call(&mux, b"slow");
        let (_, id_slow, _) = callee.next().await;
        slow.abort();
        assert!(slow.await.unwrap_err().is_cancelled());
        let next = spawn_call(&mux, b"next");
        let (stream, id_next, body) = callee.next().await;
        assert_eq!((stream, body.as_slice()), (0, b"next".as_slice()));
        // The answer to the forgotten call arrives first and is dropped.
        callee.answer(0, id_slow, b"too late").await;
        callee.answer(0, id_next, b"for next").await;
        assert_eq!(answered(next).await.unwrap(), b"for next");
        assert!(lock(&mux_calls(&mux).await.state).waiting.is_empty());
    }

    async fn mux_calls(mux: &Mux) -> Arc<Calls> {
        let slot = mux.streams[0].lock().await;
        slot.as_ref().expect("stream open").calls.clone()
    }
}
