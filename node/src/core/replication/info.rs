//! `ringctl info replication`: each shard's role, lineage, offsets and replicas, the way Redis
//! `INFO replication` shows a master and its replicas.

use super::election::ms;
use super::follower::shard_ranges;
use super::leader::SyncState;
use super::{Ctx, ReplicaInfo, Replication, Role, ShardInfo};

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
