//! Group commit: replica responses that promise durability wait here until one `sync` covers
//! every write made before it, so many writes share one fsync.

use crate::proto::Refusal;
use std::net::SocketAddr;
use std::sync::{mpsc as std_mpsc, Arc};

use tokio::sync::{mpsc, oneshot};

use super::shell::{respond, Internal};
use crate::core::CallId;
use crate::metrics::CommitMetrics;
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
// One per replica write, moved once into the committer's queue: boxing the large variant
// would add an allocation per write to save a copy.
#[allow(clippy::large_enum_variant)]
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
    metrics: Option<CommitMetrics>,
) -> mpsc::UnboundedSender<Pending> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
    let syncer = Syncer::start(store, transport.faults().clone());
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            let began = std::time::Instant::now();
            let synced = syncer.sync().await;
            if let Some(m) = &metrics {
                m.fsync.record(began.elapsed().as_secs_f64());
                m.batch.record(batch.len() as f64);
            }
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
                    (Pending::Respond { to, .. }, Err(e)) => {
                        (to, PeerReply::Failed(Refusal::Storage(e.clone())))
                    }
                };
                match to {
                    ResponseTo::Local(call) => {
                        let _ = internal.send(Internal::CallDone(call, Ok(reply), None));
                    }
                    ResponseTo::Remote(r) => respond(r, &Response::Peer(reply)),
                }
            }
        }
    });
    tx
}

/// A thread of its own that syncs the store when asked, so an fsync never blocks the event
/// loop and costs one wake-up each way (no task on a blocking pool per group commit).
struct Syncer {
    asks: std_mpsc::Sender<oneshot::Sender<Result<(), String>>>,
}

impl Syncer {
    /// Starts the thread; it ends when the `Syncer` is dropped.
    fn start(store: Arc<dyn Store>, faults: crate::faults::Faults) -> Syncer {
        let (asks, rx) = std_mpsc::channel::<oneshot::Sender<Result<(), String>>>();
        let spawned = std::thread::Builder::new()
            .name("ringkv-sync".into())
            .spawn(move || {
                while let Ok(done) = rx.recv() {
                    faults.delay_sync();
                    let _ = done.send(store.sync().map_err(|e| format!("sync failed: {e}")));
                }
            });
        if let Err(e) = spawned {
            // Without the thread every ask below fails: nothing is acknowledged as durable.
            tracing::error!("cannot start the sync thread: {e}");
        }
        Syncer { asks }
    }

    /// Syncs once; covers every write made before the call.
    async fn sync(&self) -> Result<(), String> {
        let (done, wait) = oneshot::channel();
        self.asks
            .send(done)
            .map_err(|_| "sync did not run: no sync thread".to_string())?;
        wait.await
            .map_err(|_| "sync did not run: the sync thread ended".to_string())?
    }
}
