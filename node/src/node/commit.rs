//! Group commit: replica responses that promise durability wait here until one `sync` covers
//! every write made before it, so many writes share one fsync.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::shell::{respond, Internal};
use crate::core::CallId;
use crate::net::{Responder, Transport};
use crate::proto::{PeerReply, Response};
use crate::store::Store;

/// Most responses one sync releases; the rest wait for the next round.
const MAX_BATCH: usize = 4096;

/// Where a replica's response goes.
pub(super) enum ResponseTo {
    /// To this node's own coordinator.
    Local(CallId),
    /// Back on a peer's stream.
    Remote(Responder),
}

/// Something waiting for the store to be synced.
pub(super) enum Pending {
    /// A replica's response.
    Respond { to: ResponseTo, reply: PeerReply },
    /// A repair record for a peer (an encoded request frame); nobody waits for its answer.
    Push { to: SocketAddr, frame: Vec<u8> },
}

/// Send a repair record; its answer only matters for the log.
pub(super) fn push(transport: Transport, to: SocketAddr, frame: Vec<u8>) {
    tokio::spawn(async move {
        if let Err(e) = transport.call(to, &frame).await {
            tracing::debug!(peer = %to, "repair not delivered: {e}");
        }
    });
}

/// Start the committer; it stops when every sender is gone.
pub(super) fn spawn(
    store: Arc<dyn Store>,
    transport: Transport,
    internal: mpsc::UnboundedSender<Internal>,
) -> mpsc::UnboundedSender<Pending> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            let (store, faults) = (store.clone(), transport.faults().clone());
            let synced = match tokio::task::spawn_blocking(move || {
                faults.delay_sync();
                store.sync()
            })
            .await
            {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("sync failed: {e}")),
                Err(e) => Err(format!("sync did not run: {e}")),
            };
            if let Err(e) = &synced {
                tracing::error!("{e}");
            }
            for p in batch {
                let (to, reply) = match (p, &synced) {
                    (Pending::Push { to, frame }, Ok(())) => {
                        push(transport.clone(), to, frame);
                        continue;
                    }
                    // A repair that could not be made durable is not sent; the next round retries.
                    (Pending::Push { .. }, Err(_)) => continue,
                    (Pending::Respond { to, reply }, Ok(())) => (to, reply),
                    (Pending::Respond { to, .. }, Err(e)) => (to, PeerReply::Failed(e.clone())),
                };
                match to {
                    ResponseTo::Local(call) => {
                        let _ = internal.send(Internal::CallDone(call, Ok(reply)));
                    }
                    ResponseTo::Remote(r) => respond(r, &Response::Peer(reply)),
                }
            }
        }
    });
    tx
}
