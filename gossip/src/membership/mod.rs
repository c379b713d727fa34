//! The membership state machine: the one owner of the `Foca` value.

mod exchange;

use std::net::SocketAddr;
use std::num::NonZeroU8;
use std::time::Duration;

use foca::{AccumulatingRuntime, Foca, OwnedNotification};
use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::codec::WireCodec;
use crate::config::GossipConfig;
use crate::digest::{SharedDigest, StatusMark, ViewDigest};
use crate::error::GossipError;
use crate::identity::NodeId;
use crate::output::{GossipOutput, GossipTimer, MemberEvent, MemberInfo, MemberState, TimerKind};
use crate::status::{NodeStatus, StatusBoard, StatusUpdate};
use crate::sync::SYNC_TAG;

/// Most seed addresses accepted.
pub const MAX_SEEDS: usize = 64;

/// Most down members announced to per re-announce round while alone, besides the seeds.
const DOWN_ANNOUNCES_PER_ROUND: usize = 3;

/// Reacting to foca's notifications may call foca again (to send our status to a new member),
/// which only queues datagrams; two rounds drain everything, more is a safety margin.
const MAX_DRAIN_ROUNDS: usize = 4;

/// Most sync requests answered per sync interval: a node many peers disagree with (a seed
/// during a join storm) spends a bounded share of its sends on them.
const SYNC_REPLIES_PER_ROUND: u32 = 4;

/// Mixed into the seed of our own generator, so it differs from foca's.
const SYNC_RNG_SALT: u64 = 0x5359_4e43_5245_504c;

type Swim = Foca<NodeId, WireCodec, SmallRng, StatusBoard>;

/// SWIM membership of one node, sans-IO: fed datagrams and timers, it returns
/// [`GossipOutput`]s and never reads a clock, opens a socket or draws unseeded randomness.
pub struct Membership {
    foca: Swim,
    runtime: AccumulatingRuntime<NodeId>,
    board: StatusBoard,
    status: NodeStatus,
    /// Version of our status record; 0 until a status was set, since `Up` is everyone's default.
    status_version: u64,
    seeds: Vec<SocketAddr>,
    config: GossipConfig,
    announce: AnnounceState,
    left: bool,
    /// Outputs produced while handling a datagram that was then rejected.
    carried: Vec<GossipOutput>,
    /// Digest of our live member set, kept current from foca's notifications.
    digest: ViewDigest,
    /// The codec's view of the digest: stamped on our headers, compared with peers'.
    shared: SharedDigest,
    sync: SyncState,
    /// Picks push-pull partners; seeded, so runs repeat.
    rng: SmallRng,
    /// foca's configuration with the transmission count in force.
    foca_config: foca::Config,
}

/// Membership sync (push-pull) bookkeeping, reset every sync interval.
#[derive(Debug, Default)]
struct SyncState {
    /// Whether we may still start a sync this interval.
    credit: bool,
    /// Requests we may still answer this interval.
    replies_left: u32,
    /// The peer whose reply we await.
    awaiting: Option<SocketAddr>,
    /// A peer seen with a differing digest while we had no credit left.
    pending: Option<NodeId>,
    /// Time since the last unconditional push-pull.
    since_push_pull: Duration,
}

/// The re-announce timer chain that runs while we have no live peer.
#[derive(Debug, Default)]
struct AnnounceState {
    token: u64,
    armed: bool,
    attempts: u32,
}

impl Membership {
    /// A membership for `me` that joins through `seeds` (addresses of any cluster members;
    /// our own address is skipped), with randomness drawn from `rng_seed` only.
    ///
    /// Fails if `me` breaks the identity rules ([`NodeId::validate`]), the configuration a
    /// bound ([`GossipConfig::validate`]), or more than [`MAX_SEEDS`] seeds are given.
    pub fn new(
        me: NodeId,
        seeds: Vec<SocketAddr>,
        config: GossipConfig,
        rng_seed: u64,
    ) -> Result<Self, GossipError> {
        me.validate()?;
        let foca_config = config.to_foca()?;
        if seeds.len() > MAX_SEEDS {
            return Err(GossipError::TooManySeeds {
                count: seeds.len(),
                max: MAX_SEEDS,
            });
        }
        let mut unique = Vec::with_capacity(seeds.len());
        for seed in seeds {
            if seed != me.addr && !unique.contains(&seed) {
                unique.push(seed);
            }
        }
        let board = StatusBoard::new(&me, 0, config.max_members);
        let digest = ViewDigest::new(&me, None);
        let shared = SharedDigest::default();
        shared.set_own(digest.total(), digest.identity_total());
        let foca = Foca::with_custom_broadcast(
            me,
            foca_config.clone(),
            SmallRng::seed_from_u64(rng_seed),
            WireCodec::new(shared.clone()),
            board.clone(),
        );
        Ok(Self {
            foca,
            runtime: AccumulatingRuntime::new(),
            board,
            status: NodeStatus::Up,
            status_version: 0,
            seeds: unique,
            config,
            announce: AnnounceState::default(),
            left: false,
            carried: Vec::new(),
            digest,
            shared,
            sync: SyncState {
                credit: true,
                replies_left: SYNC_REPLIES_PER_ROUND,
                ..SyncState::default()
            },
            rng: SmallRng::seed_from_u64(rng_seed ^ SYNC_RNG_SALT),
            foca_config,
        })
    }

    /// Announces to every seed and arms the re-announce and membership sync timers. A node
    /// without seeds waits to be announced to.
    pub fn start(&mut self) -> Vec<GossipOutput> {
        let mut out = std::mem::take(&mut self.carried);
        self.arm_sync(&mut out);
        for seed in self.seeds.clone() {
            if let Err(error) = self.foca.announce(NodeId::seed(seed), &mut self.runtime) {
                tracing::warn!(%seed, %error, "cannot announce to seed");
            }
        }
        if !self.seeds.is_empty() && self.foca.num_members() == 0 {
            self.arm_announce(&mut out);
        }
        self.drain_into(&mut out);
        out
    }

    /// Handles one datagram from the network.
    ///
    /// Hostile or broken bytes are rejected with an error and leave the membership working.
    /// A datagram can also be rejected after part of it was applied (a valid header followed
    /// by garbage); the outputs that part produced are returned by the next call, or at once
    /// by [`Self::take_pending_outputs`].
    pub fn handle_datagram(&mut self, data: &[u8]) -> Result<Vec<GossipOutput>, GossipError> {
        if data.first() == Some(&SYNC_TAG) {
            return self.handle_sync(data);
        }
        let result = self.foca.handle_data(data, &mut self.runtime);
        let mut out = std::mem::take(&mut self.carried);
        self.drain_into(&mut out);
        self.sync_if_differing(&mut out);
        match result {
            Ok(()) => Ok(out),
            Err(error) => {
                self.carried = out;
                Err(GossipError::from_datagram(
                    error,
                    data.len(),
                    self.config.max_packet_size,
                ))
            }
        }
    }

    /// Outputs kept back because the datagram that produced them was rejected.
    pub fn take_pending_outputs(&mut self) -> Vec<GossipOutput> {
        std::mem::take(&mut self.carried)
    }

    /// Handles a timer that came due.
    pub fn handle_timer(&mut self, timer: GossipTimer) -> Vec<GossipOutput> {
        let mut out = std::mem::take(&mut self.carried);
        match timer.0 {
            TimerKind::Foca(timer) => {
                let forgets = match &timer {
                    foca::Timer::RemoveDown(id) => Some(id.clone()),
                    _ => None,
                };
                if let Err(error) = self.foca.handle_timer(timer, &mut self.runtime) {
                    tracing::debug!(%error, "gossip timer");
                }
                if let Some(id) = forgets {
                    self.board.retain_names(
                        self.foca
                            .iter_membership_state()
                            .map(|m| m.id().name.as_str()),
                    );
                    let named = self
                        .foca
                        .iter_membership_state()
                        .any(|m| m.id().name == id.name);
                    if !named {
                        out.push(GossipOutput::Event(MemberEvent::Forgotten(id)));
                    }
                }
            }
            TimerKind::Announce { token } => self.announce_round(token, &mut out),
            TimerKind::Sync => self.sync_round(&mut out),
        }
        self.drain_into(&mut out);
        out
    }

    /// Sets our status and broadcasts it with a new version.
    pub fn set_status(&mut self, status: NodeStatus) -> Vec<GossipOutput> {
        let mut out = std::mem::take(&mut self.carried);
        self.status = status;
        self.status_version = self.status_version.saturating_add(1);
        self.publish_status(None);
        self.drain_into(&mut out);
        out
    }

    /// Re-sends our current status record (same version) to the cluster. Broadcasts are only
    /// piggybacked a bounded number of times, so a member can miss one; calling this now and
    /// then makes every member's view of our status converge.
    pub fn refresh_status(&mut self) -> Vec<GossipOutput> {
        let mut out = std::mem::take(&mut self.carried);
        if self.status_version > 0 && !self.left {
            self.publish_status(None);
        }
        self.drain_into(&mut out);
        out
    }

    /// Leaves the cluster gracefully: broadcasts status `Leaving`, then tells a few members
    /// that we are down. Afterwards the membership stays quiet; build a new one with a
    /// higher bump to come back.
    pub fn leave(&mut self) -> Vec<GossipOutput> {
        let mut out = std::mem::take(&mut self.carried);
        if !self.left {
            self.status = NodeStatus::Leaving;
            self.status_version = self.status_version.saturating_add(1);
            self.publish_status(None);
            self.left = true;
            if let Err(error) = self.foca.leave_cluster(&mut self.runtime) {
                tracing::warn!(%error, "cannot leave the cluster gracefully");
            }
        }
        self.drain_into(&mut out);
        out
    }

    /// Our current identity (its bump grows if the cluster declared us down and we rejoined).
    pub fn me(&self) -> &NodeId {
        self.foca.identity()
    }

    /// Our current status.
    pub fn status(&self) -> NodeStatus {
        self.status
    }

    /// Every known other member, alive, suspect or down (until forgotten), sorted by name.
    pub fn members(&self) -> Vec<MemberInfo> {
        let mut members: Vec<MemberInfo> = self
            .each_member()
            .map(|(id, state)| MemberInfo {
                id: id.clone(),
                state,
                status: self.status_of(id),
            })
            .collect();
        members
            .sort_by(|a, b| (a.id.name.as_str(), a.id.addr).cmp(&(b.id.name.as_str(), b.id.addr)));
        members
    }

    /// The members [`Self::members`] lists, with their liveness, in no particular order and
    /// without copying: for callers that count or compare views of thousands of members.
    pub fn each_member(&self) -> impl Iterator<Item = (&NodeId, MemberState)> + '_ {
        self.foca
            .iter_membership_state()
            .map(|member| (member.id(), member.state().into()))
    }

    /// The status `id` announced for this very identity, `Up` if none.
    pub fn status_of(&self, id: &NodeId) -> NodeStatus {
        self.board.status_of(id).unwrap_or(NodeStatus::Up)
    }

    /// Digest of our live member set (alive or suspect members and ourselves) and of the
    /// status each announced: equal on two nodes that see the same live members under the
    /// same identities with the same status records.
    pub fn view_digest(&self) -> u64 {
        self.digest.total()
    }

    /// Our own status as the digest counts it: the record peers hold of us, if we set one.
    fn own_mark(&self) -> StatusMark {
        (self.status_version > 0).then_some((self.status_version, self.status))
    }

    /// Whether a member named `name` is live (alive or merely suspect).
    pub fn is_alive(&self, name: &str) -> bool {
        self.foca
            .iter_members()
            .any(|member| member.id().name == name)
    }

    /// Queues our status record for dissemination; with `only_to`, also sends it straight to
    /// that member (a newcomer that missed earlier broadcasts), else to a few random members.
    fn publish_status(&mut self, only_to: Option<&NodeId>) {
        let me = self.foca.identity().clone();
        self.board.set_own_rank(me.bump, self.status_version);
        let record = StatusUpdate {
            id: me,
            version: self.status_version,
            status: self.status,
        };
        let data = match record.encode() {
            Ok(data) => data,
            Err(error) => {
                tracing::warn!(%error, "cannot encode our status");
                return;
            }
        };
        if let Err(error) = self.foca.add_broadcast(&data) {
            tracing::warn!(%error, "cannot queue our status");
            return;
        }
        self.board.set_only_to(only_to.cloned());
        let sent = self.foca.broadcast(&mut self.runtime);
        self.board.set_only_to(None);
        if let Err(error) = sent {
            tracing::warn!(%error, "cannot broadcast our status");
        }
    }

    /// Gives a member that just came up our status (unless it is the default and never set)
    /// and the records of members that left, which it may have missed while cut off.
    fn share_status_with(&mut self, member: &NodeId) {
        if self.left {
            return;
        }
        let leaving = self.board.leaving_records();
        for data in &leaving {
            if let Err(error) = self.foca.add_broadcast(data) {
                tracing::warn!(%error, "cannot queue a leaving member's status");
            }
        }
        if self.status_version > 0 {
            self.publish_status(Some(member));
        } else if !leaving.is_empty() {
            self.board.set_only_to(Some(member.clone()));
            let sent = self.foca.broadcast(&mut self.runtime);
            self.board.set_only_to(None);
            if let Err(error) = sent {
                tracing::warn!(%error, "cannot send leaving members' status");
            }
        }
    }

    fn arm_announce(&mut self, out: &mut Vec<GossipOutput>) {
        if self.announce.armed || self.left {
            return;
        }
        self.announce.armed = true;
        self.announce.token = self.announce.token.wrapping_add(1);
        out.push(GossipOutput::Schedule {
            after: self.config.announce_interval,
            timer: GossipTimer(TimerKind::Announce {
                token: self.announce.token,
            }),
        });
    }

    /// One re-announce round: while we have no live peer, announce to every seed and to a few
    /// members we remember as down (foca only does the latter while connected).
    fn announce_round(&mut self, token: u64, out: &mut Vec<GossipOutput>) {
        if token != self.announce.token || !self.announce.armed {
            return;
        }
        self.announce.armed = false;
        if self.left || self.foca.num_members() > 0 {
            self.announce.attempts = 0;
            return;
        }
        self.announce.attempts = self.announce.attempts.saturating_add(1);
        let down: Vec<NodeId> = self
            .foca
            .iter_membership_state()
            .filter(|m| m.state() == foca::State::Down && !self.seeds.contains(&m.id().addr))
            .map(|m| m.id().clone())
            .collect();
        let skip = if down.is_empty() {
            0
        } else {
            self.announce.attempts as usize % down.len()
        };
        let targets: Vec<NodeId> = self
            .seeds
            .iter()
            .map(|seed| NodeId::seed(*seed))
            .chain(
                down.iter()
                    .cycle()
                    .skip(skip)
                    .take(DOWN_ANNOUNCES_PER_ROUND.min(down.len()))
                    .cloned(),
            )
            .collect();
        for target in &targets {
            if let Err(error) = self.foca.announce(target.clone(), &mut self.runtime) {
                tracing::warn!(to = %target.addr, %error, "cannot announce");
            }
        }
        if !self.seeds.is_empty() {
            tracing::debug!(attempts = self.announce.attempts, "seeds silent");
            out.push(GossipOutput::Event(MemberEvent::SeedsSilent {
                seeds: self.seeds.clone(),
                attempts: self.announce.attempts,
            }));
        }
        if !targets.is_empty() {
            self.arm_announce(out);
        }
    }

    /// Moves everything foca queued into `out`, reacting to its notifications on the way.
    fn drain_into(&mut self, out: &mut Vec<GossipOutput>) {
        for _ in 0..MAX_DRAIN_ROUNDS {
            let notifications: Vec<_> = std::iter::from_fn(|| self.runtime.to_notify()).collect();
            for (i, notification) in notifications.iter().enumerate() {
                self.on_notification(notification, notifications.get(i + 1), out);
            }
            if let Some(rank) = self.board.take_refute() {
                self.refute(rank);
            }
            while let Some((to, data)) = self.runtime.to_send() {
                out.push(GossipOutput::Send { to: to.addr, data });
            }
            self.follow_cluster_size();
            while let Some((after, timer)) = self.runtime.to_schedule() {
                out.push(GossipOutput::Schedule {
                    after,
                    timer: GossipTimer(TimerKind::Foca(timer)),
                });
            }
            if self.runtime.backlog() == 0 {
                break;
            }
        }
        for (id, status) in self.board.take_changes() {
            out.push(GossipOutput::Event(MemberEvent::StatusChanged(id, status)));
        }
        for addr in self.board.take_touched() {
            self.digest
                .refresh_status(&addr, |id| self.board.mark_of(id));
        }
        self.digest.set_me(self.foca.identity(), self.own_mark());
        self.shared
            .set_own(self.digest.total(), self.digest.identity_total());
    }

    /// Passes updates on `retransmit_mult × ⌈log10(n + 1)⌉` times for `n` live nodes, so
    /// news still reaches every node of a large cluster.
    fn follow_cluster_size(&mut self) {
        let want = self
            .config
            .transmissions_for(self.foca.num_members().saturating_add(1));
        if want == self.foca_config.max_transmissions.get() {
            return;
        }
        let Some(want) = NonZeroU8::new(want) else {
            return;
        };
        let mut config = self.foca_config.clone();
        config.max_transmissions = want;
        match self.foca.set_config(config.clone()) {
            Ok(()) => self.foca_config = config,
            Err(error) => tracing::warn!(%error, "cannot change the transmission count"),
        }
    }

    fn on_notification(
        &mut self,
        notification: &OwnedNotification<NodeId>,
        next: Option<&OwnedNotification<NodeId>>,
        out: &mut Vec<GossipOutput>,
    ) {
        let emit = |out: &mut Vec<GossipOutput>, event| out.push(GossipOutput::Event(event));
        match notification {
            OwnedNotification::MemberUp(id) => {
                self.digest.set(id.addr, Some((id, self.board.mark_of(id))));
                emit(out, MemberEvent::Up(id.clone()));
                self.share_status_with(id);
            }
            OwnedNotification::MemberDown(id) => {
                self.digest.set(id.addr, None);
                if !self.is_superseded(id) {
                    emit(out, MemberEvent::Down(id.clone()));
                }
            }
            OwnedNotification::Rename(old, new) => {
                if self.digest.holds(old) {
                    // Liveness carries over; a MemberUp/MemberDown follows if it changed.
                    self.digest.set(old.addr, None);
                    self.digest
                        .set(new.addr, Some((new, self.board.mark_of(new))));
                }
                // foca follows a rename with MemberUp/MemberDown of the new identity when its
                // liveness changed; otherwise both are live (a fast restart) or both down.
                let next_up = matches!(next, Some(OwnedNotification::MemberUp(id)) if id == new);
                let next_down =
                    matches!(next, Some(OwnedNotification::MemberDown(id)) if id == new);
                let renamed_live = !next_up && !next_down && self.is_live(new);
                if old.name != new.name && (next_down || renamed_live) {
                    // Another node took over the address: the old name is gone.
                    emit(out, MemberEvent::Down(old.clone()));
                }
                if renamed_live {
                    emit(out, MemberEvent::Up(new.clone()));
                    self.share_status_with(new);
                }
            }
            OwnedNotification::Active => {
                self.announce.attempts = 0;
                emit(out, MemberEvent::Joined);
            }
            OwnedNotification::Idle => {
                emit(out, MemberEvent::Idle);
                self.arm_announce(out);
            }
            OwnedNotification::Defunct => {
                if !self.left {
                    emit(out, MemberEvent::Defunct);
                }
            }
            OwnedNotification::Rejoin(id) => {
                emit(out, MemberEvent::Rejoined(id.clone()));
                if self.status_version > 0 {
                    // Our record must carry the new bump to count for the new identity.
                    self.publish_status(None);
                } else {
                    self.board.set_own_rank(id.bump, 0);
                }
            }
        }
    }

    /// Whether a live member carries `id`'s name under a higher bump: the node restarted on
    /// another address, and the name is still up.
    fn is_superseded(&self, id: &NodeId) -> bool {
        self.foca
            .iter_members()
            .any(|member| member.id().name == id.name && member.id().bump > id.bump)
    }

    fn is_live(&self, id: &NodeId) -> bool {
        self.foca.iter_members().any(|member| member.id() == id)
    }

    /// A peer spread a newer status record for our name than ours (left over from an earlier
    /// run with the same bump): overtake it so the cluster converges on our real status.
    fn refute(&mut self, (bump, version): (u64, u64)) {
        if bump != self.foca.identity().bump {
            tracing::warn!(
                name = %self.foca.identity().name,
                claimed_bump = bump,
                "a peer spreads a status for our name under a higher bump: is the name taken twice?"
            );
            return;
        }
        self.status_version = version.saturating_add(1);
        self.publish_status(None);
    }
}
