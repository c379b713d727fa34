//! `ringctl info replication`: each shard's role, lineage, offsets and replicas, the way Redis
//! `INFO replication` shows a master and its replicas.

use serde::{Deserialize, Serialize};

use super::election::ms;
use super::follower::shard_ranges;
use super::leader::SyncState;
use super::{Ctx, Replication, Role};

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

impl Replication {
    /// Every shard this node knows.
    pub fn info(&self, ctx: &Ctx<'_>) -> Vec<ShardInfo> {
        let now = ctx.now();
        let timeout = ms(self.config.replica_timeout);
        self.shards
            .iter()
            .map(|(id, st)| {
                let (role, replicas) = match &st.role {
                    Role::Replica => ("replica", Vec::new()),
                    Role::Candidate(_) => ("candidate", Vec::new()),
                    Role::Primary(leader) => {
                        let replicas = leader
                            .followers
                            .iter()
                            .map(|(name, f)| {
                                let lag = (f.heard_ms > 0).then(|| now.saturating_sub(f.heard_ms));
                                let state = match f.state {
                                    SyncState::Stream if lag.is_some_and(|l| l < timeout) => {
                                        "online"
                                    }
                                    SyncState::Stream => "offline",
                                    SyncState::Probe if f.heard_ms == 0 => "offline",
                                    SyncState::Probe => "probing",
                                    SyncState::Collect(_) => "collecting",
                                    SyncState::Snapshot { .. } => "full-sync",
                                };
                                ReplicaInfo {
                                    name: name.clone(),
                                    state: state.into(),
                                    offset: f.acked,
                                    lag_ms: lag,
                                    via: f.via.clone(),
                                }
                            })
                            .collect();
                        ("primary", replicas)
                    }
                };
                ShardInfo {
                    shard: id.clone(),
                    ranges: u32::try_from(shard_ranges(ctx.view.ring, id).len())
                        .unwrap_or(u32::MAX),
                    role: role.into(),
                    epoch: st.meta.promised,
                    primary: st.primary.clone(),
                    replid: st.meta.replid.clone(),
                    prev_replid: st.meta.prev_replid.clone(),
                    prev_end: st.meta.prev_end,
                    offset: st.meta.offset,
                    commit: st.commit,
                    backlog_bytes: st.backlog.bytes() as u64,
                    backlog_first: st.backlog.first(),
                    partial_syncs: st.partial_syncs,
                    full_syncs: st.full_syncs,
                    primary_silent_ms: matches!(st.role, Role::Replica)
                        .then(|| now.saturating_sub(st.heard_ms)),
                    replicas,
                    topology: if ctx.chain { "chain" } else { "star" }.into(),
                    relays_to: st
                        .relays_to
                        .as_ref()
                        .filter(|(_, at)| ctx.chain && now.saturating_sub(*at) < timeout)
                        .map(|(name, _)| name.clone()),
                }
            })
            .collect()
    }
}
