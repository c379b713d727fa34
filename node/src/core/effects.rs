//! What the core is fed and what it returns: inputs, timers and effects.

use super::calls::CallError;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use ringkv_gossip::{GossipTimer, MemberEvent};

use super::{CallId, ClientId, OpId};
use crate::proto::{ClientError, ClientRequest, ClientResponse, PeerReply, PeerRequest};

/// Identifies a request from a peer; its response carries the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InboundId(pub u64);

/// Something that happened to the node.
#[derive(Debug)]
pub enum Input {
    /// A client asked this node to coordinate.
    Client {
        /// Correlates the answer.
        id: ClientId,
        /// The request.
        req: ClientRequest,
    },
    /// A peer (or this node itself) asked this node as a replica.
    PeerRequest {
        /// Correlates the response.
        id: InboundId,
        /// The asking node.
        from: String,
        /// The request.
        req: PeerRequest,
    },
    /// The answer to an [`Effect::Call`], or why the call failed.
    PeerReply {
        /// The call.
        call: CallId,
        /// The reply, or the transport's error.
        reply: Result<PeerReply, CallError>,
    },
    /// A gossip datagram arrived.
    Datagram(Bytes),
    /// A timer armed by [`Effect::Schedule`] fired.
    Timer(Timer),
}

/// Timers the core arms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Timer {
    /// A membership timer.
    Gossip(GossipTimer),
    /// A client request's deadline.
    Deadline(OpId),
    /// The anti-entropy sweep's next step.
    AntiEntropy,
    /// An anti-entropy exchange held back by the I/O budget may go on.
    AntiEntropyStep,
    /// Deliver hints to owners that are back.
    Hints,
    /// Hand data of ranges this node no longer replicates to their replicas.
    Transfer,
    /// Look at the next tombstone that may be removed.
    Gc,
    /// Re-send this node's status, in case a member missed its broadcast.
    StatusRefresh,
    /// Primary mode: heartbeats, elections, deadlines.
    Replication,
    /// A request forwarded to a key's primary is overdue, or a refused one is due for its
    /// next try.
    Forward(CallId),
    /// Push-pull the range table with the next live peer.
    Table,
}

/// Something the node must do.
#[derive(Debug)]
pub enum Effect {
    /// Answer a client.
    Reply {
        /// The request answered.
        id: ClientId,
        /// The answer.
        result: Result<ClientResponse, ClientError>,
    },
    /// Answer a peer; when `sync` is set, only after the store is durably synced.
    Respond {
        /// The request answered.
        id: InboundId,
        /// The answer.
        reply: PeerReply,
        /// Sync the store first (group commit: one sync may cover many responses).
        sync: bool,
    },
    /// Call a replica (maybe this very node); feed the answer back as [`Input::PeerReply`].
    Call {
        /// Correlates the reply.
        call: CallId,
        /// The replica's address.
        to: SocketAddr,
        /// The request.
        req: PeerRequest,
    },
    /// Send a replica a record to merge, nobody waiting for the answer (anti-entropy's
    /// repairs). Under `Durability::Sync` only after the store is synced, so nothing a crash
    /// could erase leaves the node.
    Push {
        /// The replica's address.
        to: SocketAddr,
        /// The request (a `Replicate`).
        req: PeerRequest,
        /// Sync the store first.
        sync: bool,
    },
    /// Send a gossip datagram.
    Datagram {
        /// Destination.
        to: SocketAddr,
        /// Payload.
        data: Bytes,
    },
    /// Feed `timer` back as [`Input::Timer`] after `after`.
    Schedule {
        /// Delay.
        after: Duration,
        /// What fires.
        timer: Timer,
    },
    /// Membership changed (for logs and watchers; the core already acted on it).
    Member(MemberEvent),
}
