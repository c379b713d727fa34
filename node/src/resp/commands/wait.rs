//! `WAIT numreplicas timeout`: how many replicas hold the connection's last write.
//!
//! A primary-mode write carries its place in its shard's log (a [`Session`]); `WAIT` counts
//! the replicas its answer said acknowledged it, and, while this node is the shard's primary,
//! the replicas it sees confirm that offset since, until `numreplicas` do or the timeout
//! passes, as Redis's `WAIT`. A quorum-mode write has no primary: `WAIT` answers at once
//! with the replicas that acknowledged it before its answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::strings::Target;
use super::Step;
use crate::api::Api;
use crate::proto::{Session, WriteResult};
use crate::resp::codec::Reply;

/// Longest `WAIT` waits, `timeout 0` ("for ever" in Redis) included.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(60);
/// Between two looks at the primary's replicas.
const POLL: Duration = Duration::from_millis(10);

/// What `WAIT` needs of a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Written {
    key: Vec<u8>,
    /// Replicas (the primary included, in primary mode) that acknowledged before the answer.
    acked: u8,
    session: Option<Session>,
}

/// A connection's last acknowledged write, by the order its commands were sent.
#[derive(Clone, Default)]
pub(crate) struct LastWrite(Arc<Mutex<Option<(u64, Written)>>>);

impl LastWrite {
    /// Note the write of command `seq` (a later-sent command's write stays the last).
    pub fn record(&self, seq: u64, key: &[u8], w: &WriteResult) {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref().is_none_or(|(s, _)| *s <= seq) {
            let written = Written {
                key: key.to_vec(),
                acked: w.acked,
                session: w.session.clone(),
            };
            *last = Some((seq, written));
        }
    }

    fn get(&self) -> Option<Written> {
        let last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref().map(|(_, w)| w.clone())
    }
}

/// `WAIT numreplicas timeout` (milliseconds; 0 waits up to [`MAX_WAIT`]).
pub(super) fn wait(node: &Target, args: &[Bytes], last: &LastWrite) -> Step {
    let int = |a: &Bytes| {
        std::str::from_utf8(a)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
    };
    let (Some(want), Some(timeout)) = (int(&args[1]), int(&args[2])) else {
        return Reply::err("numreplicas and timeout must be non-negative integers").into();
    };
    let timeout = match timeout {
        0 => MAX_WAIT,
        ms => Duration::from_millis(ms).min(MAX_WAIT),
    };
    let (node, last) = (node.clone(), last.clone());
    Step::Later(Box::pin(async move {
        let Some(w) = last.get() else {
            return Reply::Int(0);
        };
        let Some(session) = &w.session else {
            return Reply::Int(i64::from(w.acked));
        };
        let answered = u64::from(w.acked.saturating_sub(1));
        let deadline = Instant::now() + timeout;
        loop {
            let seen = confirmed(&node, &w.key, session).await.max(answered);
            if seen >= want || Instant::now() >= deadline {
                return Reply::Int(i64::try_from(seen).unwrap_or(i64::MAX));
            }
            tokio::time::sleep(POLL.min(deadline - Instant::now())).await;
        }
    }))
}

/// Replicas this node, as the key's primary in the write's log, sees at or past the write.
async fn confirmed(node: &Target, key: &[u8], at: &Session) -> u64 {
    let Ok(shards) = node.replication(Some(key.to_vec())).await else {
        return 0;
    };
    shards
        .iter()
        .filter(|s| s.role == "primary" && s.replid == at.replid)
        .flat_map(|s| &s.replicas)
        .filter(|r| r.offset >= at.offset)
        .count() as u64
}
