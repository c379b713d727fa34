//! What the membership state machine hands back: effects for the shell and membership events.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::identity::NodeId;
use crate::status::NodeStatus;

/// An effect for the shell to carry out, or an event for the layers above.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GossipOutput {
    /// Send `data` as one datagram to `to`.
    Send {
        /// Destination gossip address.
        to: SocketAddr,
        /// The datagram, at most `max_packet_size` bytes.
        data: Bytes,
    },
    /// Hand `timer` back through [`crate::Membership::handle_timer`] once `after` has passed.
    /// Every timer must be delivered, late rather than never.
    Schedule {
        /// Delay from now.
        after: Duration,
        /// The timer to hand back.
        timer: GossipTimer,
    },
    /// Something changed in the membership.
    Event(MemberEvent),
}

/// A timer armed by [`crate::Membership`]; opaque to the shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GossipTimer(pub(crate) TimerKind);

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// One of foca's own timers.
    Foca(foca::Timer<NodeId>),
    /// Our re-announce round while alone; stale tokens are ignored.
    Announce { token: u64 },
    /// Our membership sync round.
    Sync,
}

impl GossipTimer {
    /// Whether this is the re-announce timer (armed while we have no live peer), as opposed
    /// to one of the SWIM protocol's timers. Handy for logs and simulators.
    pub fn is_announce(&self) -> bool {
        matches!(self.0, TimerKind::Announce { .. })
    }
}

/// A change in the membership, as seen from this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEvent {
    /// A member became reachable: newly discovered, back after being down (a restart with a
    /// higher bump is reported as `Up` of its new identity), or replaced at its address by a
    /// newer identity. Its status is `Up` until it says otherwise.
    Up(NodeId),
    /// A member was declared down (failed probes or a graceful leave). Not emitted for an
    /// identity whose name is already live again under a higher bump (a node restarted on
    /// another address), since the name never went away.
    Down(NodeId),
    /// A member announced a new status.
    StatusChanged(NodeId, NodeStatus),
    /// A member down for `remove_down_after` was forgotten: it is no longer among the
    /// members at all (whoever places data by the members drops it now). Not emitted for an
    /// identity whose name is a member again under another identity.
    Forgotten(NodeId),
    /// We became an active member of a cluster (at least one peer knows us).
    Joined,
    /// We lost every peer; we keep re-announcing to the seeds.
    Idle,
    /// A re-announce round while alone went unanswered so far: the seeds are unreachable,
    /// not running, or not gossiping. Emitted once per round, `attempts` counting rounds.
    SeedsSilent {
        /// The seeds announced to.
        seeds: Vec<SocketAddr>,
        /// How many rounds went by without a peer.
        attempts: u32,
    },
    /// The cluster declared us down and we rejoined under this identity (the next bump).
    Rejoined(NodeId),
    /// The cluster declared us down and we cannot rejoin (the bump is exhausted): restart the
    /// node with a higher bump.
    Defunct,
}

/// Liveness of a member, as SWIM sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Failed a probe; declared down unless it refutes in time. Still counted as live.
    Suspect,
    /// Declared down; remembered until `remove_down_after`.
    Down,
}

impl From<foca::State> for MemberState {
    fn from(state: foca::State) -> Self {
        match state {
            foca::State::Alive => Self::Alive,
            foca::State::Suspect => Self::Suspect,
            foca::State::Down => Self::Down,
        }
    }
}

/// A known member and what we know of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its current identity.
    pub id: NodeId,
    /// Its liveness.
    pub state: MemberState,
    /// The status it announced for this identity, `Up` if none.
    pub status: NodeStatus,
}
