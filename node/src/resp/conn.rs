//! One client connection: requests decoded as they arrive, up to the pipeline bound in
//! flight at once, replies written in request order.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::future::{self, BoxFuture, FutureExt};
use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::codec::{self, Reply};
use super::commands::{self, LastWrite, Step};
use super::order::KeyOrder;
use super::Shared;

/// Bytes read from the socket at a time, at least.
const READ_CHUNK: usize = 16 * 1024;

/// What a connection remembers between commands.
pub(super) struct ConnState {
    /// `CLIENT ID`.
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// Replies in RESP3 (after `HELLO 3`).
    pub resp3: bool,
    /// `CLIENT SETNAME`.
    pub name: Option<Bytes>,
    /// `CLIENT SETINFO LIB-NAME` and `LIB-VER`.
    pub lib: (Option<Bytes>, Option<Bytes>),
    /// After `READONLY`: requests are served by this node alone.
    pub direct: bool,
    /// The in-flight commands per key.
    pub order: KeyOrder,
    /// Commands received so far.
    pub seq: u64,
    /// The last write acknowledged, for `WAIT`.
    pub writes: LastWrite,
}

impl ConnState {
    fn new(id: u64, peer: SocketAddr) -> Self {
        Self {
            id,
            peer,
            resp3: false,
            name: None,
            lib: (None, None),
            direct: false,
            order: KeyOrder::default(),
            seq: 0,
            writes: LastWrite::default(),
        }
    }

    /// Back to a fresh connection's state (`RESET`), keeping its id and address.
    pub fn reset(&mut self) {
        let order = std::mem::take(&mut self.order);
        let (seq, writes) = (self.seq, self.writes.clone());
        *self = Self::new(self.id, self.peer);
        (self.order, self.seq, self.writes) = (order, seq, writes);
    }
}

/// Serve one connection until the client leaves, sends `QUIT` or breaks the protocol.
pub(super) async fn serve<S>(stream: S, peer: SocketAddr, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let id = shared.stats.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    shared.stats.connections.fetch_add(1, Ordering::Relaxed);
    let _connected = Connected::new(&shared);
    let mut conn = ConnState::new(id, peer);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut inbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut outbuf = BytesMut::new();
    let mut pending: FuturesOrdered<BoxFuture<'static, (Reply, bool)>> = FuturesOrdered::new();
    // Set after QUIT, a protocol error or the client's end of stream (once the requests
    // before it are decoded): read nothing more, answer what was asked, then close.
    let mut closing = false;
    let mut eof = false;
    let depth = shared.limits.max_pipeline.max(1);
    let mut decoder = codec::RequestDecoder::default();
    loop {
        while !closing && pending.len() < depth {
            match decoder.decode(&mut inbuf, &shared.limits) {
                Ok(Some(args)) => {
                    shared.stats.commands.fetch_add(1, Ordering::Relaxed);
                    let step = commands::dispatch(&args, &mut conn, &shared);
                    let resp3 = conn.resp3;
                    let (reply, close) = match step {
                        Step::Now(r) => (future::ready(r).boxed(), false),
                        Step::Later(f) => (f, false),
                        Step::Close(r) => (future::ready(r).boxed(), true),
                    };
                    pending.push_back(reply.map(move |r| (r, resp3)).boxed());
                    closing |= close;
                }
                Ok(None) => {
                    // An unterminated request at the end of the stream is dropped.
                    closing |= eof;
                    break;
                }
                Err(e) => {
                    shared.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, error = %e, "Redis front: closing a connection");
                    let resp3 = conn.resp3;
                    pending.push_back(future::ready((Reply::err(e), resp3)).boxed());
                    closing = true;
                }
            }
        }
        if closing && pending.is_empty() {
            break;
        }
        tokio::select! {
            Some((reply, resp3)) = pending.next(), if !pending.is_empty() => {
                put(&reply, resp3, &mut outbuf, &shared);
                // Everything else already answered goes out in the same write.
                while let Some(Some((reply, resp3))) = pending.next().now_or_never() {
                    put(&reply, resp3, &mut outbuf, &shared);
                }
                if wr.write_all(&outbuf).await.is_err() {
                    return;
                }
                outbuf.clear();
            }
            read = rd.read_buf(reserve(&mut inbuf)), if !closing && !eof && pending.len() < depth => {
                eof = !matches!(read, Ok(n) if n > 0);
            }
        }
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
}

fn reserve(buf: &mut BytesMut) -> &mut BytesMut {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
    buf
}

fn put(reply: &Reply, resp3: bool, out: &mut BytesMut, shared: &Shared) {
    if matches!(reply, Reply::Error(_)) {
        shared.stats.errors.fetch_add(1, Ordering::Relaxed);
    }
    reply.encode(resp3, out);
}

/// Counts the connection in `INFO clients` while it lives.
struct Connected<'a>(&'a Shared);

impl<'a> Connected<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.stats.connected.fetch_add(1, Ordering::Relaxed);
        Self(shared)
    }
}

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0.stats.connected.fetch_sub(1, Ordering::Relaxed);
    }
}
