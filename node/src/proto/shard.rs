//! Primary mode's shards as `ringctl info replication` shows them, the way Redis
//! `INFO replication` shows a master and its replicas.

use serde::{Deserialize, Serialize};

/// One shard as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// The shard's replicas, in preference order.
    pub shard: Vec<String>,
    /// Ring ranges sharing this preference list.
    pub ranges: u32,
    /// `primary`, `replica` or `candidate`.
    pub role: String,
    /// The newest epoch this node promised.
    pub epoch: u64,
    /// The primary this node follows (itself when primary), if known.
    pub primary: Option<String>,
    /// Replication id of the log held.
    pub replid: String,
    /// The lineage it continued and where that ended (`replid2`/`second_repl_offset`).
    pub prev_replid: String,
    /// Last offset of `prev_replid`.
    pub prev_end: u64,
    /// Offset of the last entry held.
    pub offset: u64,
    /// Offset a majority holds, as last known.
    pub commit: u64,
    /// Backlog bytes and first offset held.
    pub backlog_bytes: u64,
    /// First offset in the backlog, if any.
    pub backlog_first: Option<u64>,
    /// Partial resyncs (primary: served; replica: n/a) and full resyncs (primary: served;
    /// replica: taken) since start.
    pub partial_syncs: u64,
    /// Full resyncs since start.
    pub full_syncs: u64,
    /// A replica: milliseconds since the primary was last heard.
    pub primary_silent_ms: Option<u64>,
    /// A primary: its replicas.
    pub replicas: Vec<ReplicaInfo>,
    /// How appends reach the replicas: `star` (from the primary to each) or `chain`.
    pub topology: String,
    /// Chain topology: the replica this node passed appends to within the replica timeout
    /// (on a primary, the chain's head).
    pub relays_to: Option<String>,
}

/// One replica, as its primary sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    /// Node name.
    pub name: String,
    /// `online`, `offline`, `probing`, `collecting` or `full-sync`.
    pub state: String,
    /// Offset it confirmed.
    pub offset: u64,
    /// Milliseconds since it last answered (`None`: never).
    pub lag_ms: Option<u64>,
    /// Chain topology: the replica its last acknowledgement was relayed by (`None`: it
    /// answered the primary itself).
    pub via: Option<String>,
}
