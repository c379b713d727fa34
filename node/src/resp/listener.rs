//! Accepting Redis clients: the connection bound, and the TLS handshake when configured.

use crate::limits::Limit;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::{conn, Shared};

/// A TLS handshake that takes longer is dropped (a client that never finishes it would
/// otherwise hold a connection slot).
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// Pause after a failed accept (out of file descriptors, usually) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accept connections until the task is aborted; aborting it drops every connection too.
pub(super) async fn run(socket: TcpListener, tls: Option<SharedAcceptor>, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(shared.limits.max_connections));
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = socket.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "Redis front: accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    shared.limits.limit_hits.hit(
                        Limit::RedisConnections,
                        format_args!("Redis front: refused a connection from {peer}"),
                    );
                    refuse(stream, tls.is_some());
                    continue;
                };
                // The acceptor current now: a certificate reload swaps it for later ones.
                let tls = tls.as_ref().map(|t| lock(t).clone());
                let shared = shared.clone();
                conns.spawn(async move {
                    let _slot = slot;
                    let _ = stream.set_nodelay(true);
                    match tls {
                        None => conn::serve(stream, peer, shared).await,
                        Some(acceptor) => {
                            match tokio::time::timeout(HANDSHAKE_LIMIT, acceptor.accept(stream)).await {
                                Ok(Ok(stream)) => conn::serve(stream, peer, shared).await,
                                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "Redis front: TLS handshake refused"),
                                Err(_) => tracing::debug!(%peer, "Redis front: TLS handshake timed out"),
                            }
                        }
                    }
                });
            }
            // Reap finished connections so the set does not grow.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// The front's TLS acceptor, replaced when the node reloads its certificates.
pub(super) type SharedAcceptor = Arc<Mutex<TlsAcceptor>>;

/// Locks the acceptor; a panic while holding it cannot leave it half-replaced.
pub(super) fn lock(m: &SharedAcceptor) -> MutexGuard<'_, TlsAcceptor> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Tell a plain-TCP client past the connection bound why it is closed, as Redis does,
/// without waiting for it; a TLS client past the bound is closed before its handshake.
fn refuse(stream: TcpStream, tls: bool) {
    if !tls {
        let _ = stream.try_write(b"-ERR max number of clients reached\r\n");
    }
}
