//! One simulated node: its process (the real core, or membership alone in scale mode), its
//! store, which outlives crashes, its clock and what the shell would hold for it.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use ringkv::core::{CallId, ClientId, InboundId, Input, NodeCore};
use ringkv::proto::{PeerReply, PeerRequest};
use ringkv::store::MemoryStore;
use ringkv_gossip::Membership;

use super::queue::Event;

/// The simulated wall clock's origin: a plausible Unix time in milliseconds, so that skews
/// and jumps backwards stay positive.
pub const EPOCH_MS: u64 = 1_700_000_000_000;

/// What runs on a node.
pub enum Process {
    /// The whole sans-IO node core (membership, ring, coordinator, replica).
    Full(Box<NodeCore>),
    /// Membership alone (scale mode).
    Gossip(Box<Membership>),
}

/// Life cycle of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Added but never started.
    Idle,
    /// Handling events.
    Running,
    /// Frozen: events addressed to it wait until it resumes.
    Paused,
    /// Down; its store kept only what was synced.
    Crashed,
    /// Left the cluster for good.
    Left,
}

/// Where a replica's response goes: the shell's `ResponseTo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyTo {
    /// To this node's own coordinator.
    Local(CallId),
    /// Back over the network to the caller of world call `key`.
    Remote {
        /// The world's id of the call.
        key: u64,
        /// The calling node.
        caller: usize,
    },
}

/// What waits for the next store sync.
#[derive(Clone, Debug)]
pub enum AfterSync {
    /// A replica's response.
    Respond(ReplyTo, PeerReply),
    /// A record pushed to a replica, nobody waiting for the answer.
    Push(SocketAddr, PeerRequest),
}

/// A client request this node coordinates.
#[derive(Clone, Debug)]
pub struct ClientSlot {
    /// The workload's tag of the operation.
    pub tag: u64,
    /// The key's preference list as this node saw it when the request arrived.
    pub preference: Vec<String>,
}

/// One node of the world.
pub struct SimNode {
    /// Stable name (the ring key).
    pub name: String,
    /// Its address (never a real socket).
    pub addr: SocketAddr,
    /// Restart counter of its identity.
    pub bump: u64,
    /// Addresses it joins through.
    pub seeds: Vec<SocketAddr>,
    /// Its store: survives crashes, minus what was not synced.
    pub store: Arc<MemoryStore>,
    /// The running process, if any.
    pub process: Option<Process>,
    /// Life cycle.
    pub state: NodeState,
    /// Bumped at every crash: events of an earlier incarnation are dropped.
    pub incarnation: u32,
    /// Offset of its wall clock from simulated time, milliseconds.
    pub clock_offset_ms: i64,
    /// Inputs it made for itself, handled in order (calls to itself).
    pub(crate) queue: VecDeque<Input>,
    pub(crate) inbound: BTreeMap<InboundId, ReplyTo>,
    pub(crate) next_inbound: u64,
    pub(crate) clients: BTreeMap<ClientId, ClientSlot>,
    pub(crate) next_client: u64,
    /// Responses and pushes waiting for the next store sync (group commit).
    pub(crate) pending_sync: Vec<AfterSync>,
    pub(crate) sync_armed: bool,
    /// Events that arrived while paused.
    pub(crate) deferred: Vec<Event>,
}

impl SimNode {
    /// A node not started yet.
    pub fn new(name: String, addr: SocketAddr, seeds: Vec<SocketAddr>) -> Self {
        Self {
            name,
            addr,
            bump: 0,
            seeds,
            store: Arc::new(MemoryStore::new()),
            process: None,
            state: NodeState::Idle,
            incarnation: 0,
            clock_offset_ms: 0,
            queue: VecDeque::new(),
            inbound: BTreeMap::new(),
            next_inbound: 0,
            clients: BTreeMap::new(),
            next_client: 0,
            pending_sync: Vec::new(),
            sync_armed: false,
            deferred: Vec::new(),
        }
    }

    /// The node core, when the node runs one (paused nodes included).
    pub fn core(&self) -> Option<&NodeCore> {
        match &self.process {
            Some(Process::Full(core)) => Some(core),
            _ => None,
        }
    }

    /// Whether a process exists (running or paused).
    pub fn is_live(&self) -> bool {
        matches!(self.state, NodeState::Running | NodeState::Paused)
    }

    /// Its wall clock at simulated time `now_us`.
    pub fn wall_ms(&self, now_us: u64) -> u64 {
        let base = EPOCH_MS + now_us / 1_000;
        base.saturating_add_signed(self.clock_offset_ms)
    }

    pub(crate) fn inbound_id(&mut self, to: ReplyTo) -> InboundId {
        self.next_inbound += 1;
        let id = InboundId(self.next_inbound);
        self.inbound.insert(id, to);
        id
    }

    pub(crate) fn client_id(&mut self, slot: ClientSlot) -> ClientId {
        self.next_client += 1;
        let id = ClientId(self.next_client);
        self.clients.insert(id, slot);
        id
    }

    /// Forgets everything the process held in memory (a crash or a stop).
    pub(crate) fn forget_process(&mut self) {
        self.process = None;
        self.incarnation += 1;
        self.queue.clear();
        self.inbound.clear();
        self.pending_sync.clear();
        self.sync_armed = false;
        self.deferred.clear();
    }
}

/// The address of node `index`: a private address no packet is ever sent to.
pub fn addr_of(index: usize) -> SocketAddr {
    let i = u32::try_from(index + 1).unwrap_or(u32::MAX) & 0x00ff_ffff;
    let [_, a, b, c] = i.to_be_bytes();
    SocketAddr::from(([10, a, b, c], 7000))
}

/// The name of node `index`.
pub fn name_of(index: usize) -> String {
    format!("n{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_for_a_thousand_nodes() {
        let addrs: std::collections::BTreeSet<_> = (0..1200).map(addr_of).collect();
        assert_eq!(addrs.len(), 1200);
    }

    #[test]
    fn the_wall_clock_follows_its_offset() {
        let mut node = SimNode::new("n0".into(), addr_of(0), vec![]);
        assert_eq!(node.wall_ms(2_500_000), EPOCH_MS + 2_500);
        node.clock_offset_ms = -1_000;
        assert_eq!(node.wall_ms(2_500_000), EPOCH_MS + 1_500);
    }
}
