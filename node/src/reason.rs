//! Typed reasons on the wire: why a node could not serve a client now ([`Unavailable`], inside
//! [`crate::proto::ClientError::Unavailable`]) and why it refused a peer's request
//! ([`Refusal`], inside [`crate::proto::PeerReply::Failed`]).
//!
//! Each variant says what happened; the strings some carry are for people only (a store's
//! or a peer's own message). The texts are the ones operators and the simulator's traces
//! have always shown.

use serde::{Deserialize, Serialize};

/// Why a node could not serve a client's request now. Every one may pass: retrying later,
/// or through another node, can succeed.
///
/// ```
/// use ringkv::proto::{ClientError, Unavailable};
/// let e = ClientError::Unavailable(Unavailable::NoReplicaUp);
/// assert!(e.retryable());
/// assert_eq!(e.to_string(), "node unavailable: no replica of the key is up");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Unavailable {
    /// This node's store failed to read or write what the request needs.
    #[error("{0}")]
    Storage(String),
    /// The node knows no ring members at all.
    #[error("the ring is empty")]
    RingEmpty,
    /// The node's ring has fewer members than N: it is rejoining and has not heard of them.
    #[error(
        "this node knows {known} of the key's {n} replicas (it may be rejoining the cluster); retry"
    )]
    Rejoining {
        /// Replicas of the key this node knows.
        known: usize,
        /// The replication factor.
        n: usize,
    },
    /// A shard named by a peer or client is shorter than N on this node's ring.
    #[error("this node knows {known} replica(s) of the key, fewer than N={n} (it may have just started); retry")]
    ShortShard {
        /// Replicas of the key this node knows.
        known: usize,
        /// The replication factor.
        n: usize,
    },
    /// No range of this node's ring has the preference list asked for.
    #[error("no range of this node's ring has that preference list (the ring is changing); retry")]
    RingChanging,
    /// Membership says none of the key's replicas is up.
    #[error("no replica of the key is up")]
    NoReplicaUp,
    /// The key's primary is a member whose address this node has not learned.
    #[error("no address for {0}")]
    NoAddress(String),
    /// The shard's state left memory while the request was planned.
    #[error("shard vanished")]
    ShardVanished,
    /// This node's own replica refused the write it planned as primary.
    #[error("{0}")]
    Refused(Refusal),
    /// The call to the key's primary failed; `may_have_acted` says whether the primary may
    /// have applied the request.
    #[error("the key's primary did not answer ({detail}); retry")]
    PrimaryNoAnswer {
        /// What the call or the primary said.
        detail: String,
        /// Whether the primary may have applied the request.
        may_have_acted: bool,
    },
    /// The key's primary was declared down with the request in flight: a write may or may
    /// not have been applied.
    #[error(
        "the key's primary {0} went down before it answered (the write may or may not have \
         been applied); retry"
    )]
    PrimaryDown(String),
    /// The key's primary did not answer within the forward's deadline.
    #[error("the key's primary did not answer in time; retry")]
    PrimaryTimedOut,
    /// The key's primary answered with something that is not an answer to the request.
    #[error("unexpected answer {0}")]
    UnexpectedAnswer(String),
    /// This node stopped leading the shard while the request waited (`why` says what
    /// happened); a write it held may or may not be committed by the next primary.
    #[error("{why}; retry")]
    SteppedDown {
        /// What made it step down.
        why: String,
    },
    /// The request reached this node's shard after it stopped being primary.
    #[error("not the primary; retry")]
    NotLeading,
    /// A read that must confirm leadership could not do so within its bound.
    #[error("the primary could not confirm it still leads in time; retry")]
    LeadUnconfirmed,
    /// A replica had not reached the client's session within the read's bound.
    #[error("this replica did not reach session {session} in time (it is at {replid}:{offset}); read from the primary or retry")]
    SessionBehind {
        /// The session asked for.
        session: String,
        /// The replica's replication id.
        replid: String,
        /// The replica's offset.
        offset: u64,
    },
    /// This node has not yet exchanged range tables with a settled peer since it started, so
    /// it cannot tell a key's mode (a primary-mode key served as a quorum key would leave a
    /// value outside the shard's log).
    #[error(
        "this node has not yet learned the cluster's range table (it has just started); retry"
    )]
    TableUnknown,
}

impl Unavailable {
    /// A stable name of the reason, for machine-readable output and grouping.
    pub fn kind(&self) -> &'static str {
        match self {
            Unavailable::Storage(_) => "storage",
            Unavailable::RingEmpty => "ring_empty",
            Unavailable::Rejoining { .. } => "rejoining",
            Unavailable::ShortShard { .. } => "short_shard",
            Unavailable::RingChanging => "ring_changing",
            Unavailable::NoReplicaUp => "no_replica_up",
            Unavailable::NoAddress(_) => "no_address",
            Unavailable::ShardVanished => "shard_vanished",
            Unavailable::Refused(_) => "refused",
            Unavailable::PrimaryNoAnswer { .. } => "primary_no_answer",
            Unavailable::PrimaryDown(_) => "primary_down",
            Unavailable::PrimaryTimedOut => "primary_timed_out",
            Unavailable::UnexpectedAnswer(_) => "unexpected_answer",
            Unavailable::SteppedDown { .. } => "stepped_down",
            Unavailable::NotLeading => "not_leading",
            Unavailable::LeadUnconfirmed => "lead_unconfirmed",
            Unavailable::SessionBehind { .. } => "session_behind",
            Unavailable::TableUnknown => "table_unknown",
        }
    }

    /// Whether the node surely wrote nothing: the request was refused before it reached a
    /// store or a primary, so sending it again cannot apply a write twice.
    ///
    /// ```
    /// use ringkv::proto::Unavailable;
    /// assert!(Unavailable::NoReplicaUp.nothing_written());
    /// assert!(!Unavailable::PrimaryTimedOut.nothing_written());
    /// ```
    pub fn nothing_written(&self) -> bool {
        match self {
            Unavailable::RingEmpty
            | Unavailable::Rejoining { .. }
            | Unavailable::ShortShard { .. }
            | Unavailable::RingChanging
            | Unavailable::NoReplicaUp
            | Unavailable::NoAddress(_)
            | Unavailable::ShardVanished
            | Unavailable::NotLeading
            | Unavailable::TableUnknown => true,
            Unavailable::PrimaryNoAnswer { may_have_acted, .. } => !may_have_acted,
            Unavailable::Storage(_)
            | Unavailable::Refused(_)
            | Unavailable::PrimaryDown(_)
            | Unavailable::PrimaryTimedOut
            | Unavailable::UnexpectedAnswer(_)
            | Unavailable::SteppedDown { .. }
            | Unavailable::LeadUnconfirmed
            | Unavailable::SessionBehind { .. } => false,
        }
    }
}

/// Why a node refused a peer's request. The strings some variants carry are the node's own
/// message for people.
///
/// ```
/// use ringkv::proto::Refusal;
/// assert_eq!(Refusal::Leaving.to_string(), "this node is leaving the cluster");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// The node is leaving and takes no new data.
    #[error("this node is leaving the cluster")]
    Leaving,
    /// A quorum-path write of a key under a primary prefix.
    #[error("the key is under a primary prefix: its writes go through the primary")]
    PrimaryPrefix,
    /// The request is not one a replica serves.
    #[error("not a replica request")]
    NotReplicaRequest,
    /// The node is shutting down.
    #[error("store is closing")]
    Closing,
    /// The node's store failed.
    #[error("{0}")]
    Storage(String),
    /// The replica could not apply the request (a wrong token, too many siblings, a bad
    /// record).
    #[error("{0}")]
    Replica(String),
    /// A hint could not be kept.
    #[error("hint for {owner} not kept: {detail}")]
    HintNotKept {
        /// The hint's owner.
        owner: String,
        /// Why.
        detail: String,
    },
    /// The sender's ring differs from this node's.
    #[error("this node's ring differs from the sender's (membership is changing); retry")]
    RingDiffers,
    /// Replication refused the message (`0` says why).
    #[error("{0}")]
    Replication(String),
    /// A Merkle exchange could not proceed.
    #[error("anti-entropy: {0}")]
    AntiEntropy(String),
    /// A range table that breaks the table's bounds or could not be saved.
    #[error("range table refused: {0}")]
    RangeTable(String),
}

impl Refusal {
    /// Whether the peer may have applied the request before refusing it: only a store that
    /// failed part-way (a write applied and its sync failed) may have.
    pub fn may_have_acted(&self) -> bool {
        matches!(self, Refusal::Storage(_))
    }
}
