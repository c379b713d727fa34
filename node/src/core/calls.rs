//! Typed call ids: every call a mechanism makes names that mechanism, so its reply (and any
//! timer armed for it) goes back to it by one `match` on the owner, never by bits of an integer.

/// The mechanism that made a call; its reply is handed back to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    /// Quorum reads and writes, read repair (`coordinator`).
    Coordinator,
    /// Merkle exchanges and pushes (`antientropy`).
    AntiEntropy,
    /// Hint delivery (`hints`).
    Hints,
    /// Ownership transfer (`transfer`).
    Transfer,
    /// Tombstone collection (`gc`).
    Gc,
    /// Range-table push-pull (`table`).
    Table,
    /// Primary mode's replication (`replication`).
    Replication,
    /// Requests forwarded to a key's primary (`forward`).
    Forward,
    /// Ring-members questions (`peers`).
    Members,
    /// Key listings (`scan`).
    Scan,
}

/// Identifies one call to a peer; its reply comes back with the same id.
///
/// ```
/// use ringkv::core::{Calls, Owner};
/// let mut calls = Calls::new(Owner::Gc);
/// let (a, b) = (calls.next_id(), calls.next_id());
/// assert_eq!(a.owner, Owner::Gc);
/// assert!(a != b);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId {
    /// Who made the call.
    pub owner: Owner,
    /// The owner's sequence number.
    pub seq: u64,
}

/// One owner's call ids, in sequence.
#[derive(Clone, Debug)]
pub struct Calls {
    owner: Owner,
    last: u64,
}

impl Calls {
    /// Call ids for `owner`, from 1.
    pub const fn new(owner: Owner) -> Self {
        Self { owner, last: 0 }
    }

    /// The next call id.
    pub fn next_id(&mut self) -> CallId {
        self.last = self.last.wrapping_add(1);
        CallId {
            owner: self.owner,
            seq: self.last,
        }
    }
}

/// Why a call to a peer brought no reply. The variant says whether the peer may have acted
/// on the request; the text is for people.
///
/// ```
/// use ringkv::core::CallError;
/// assert!(!CallError::Unreachable("cannot connect".into()).may_have_acted());
/// assert!(CallError::Timeout("timed out".into()).may_have_acted());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No reply within the call's bound.
    #[error("{0}")]
    Timeout(String),
    /// The request never reached the peer: no connection, a refused handshake, or this
    /// node's connection limit.
    #[error("{0}")]
    Unreachable(String),
    /// The connection broke, or the peer reset the request, after it was sent.
    #[error("{0}")]
    Lost(String),
    /// The reply was not a valid answer to this request.
    #[error("{0}")]
    BadAnswer(String),
    /// This node could not send the request (its transport is closed or misconfigured, or
    /// the request could not be encoded).
    #[error("{0}")]
    Local(String),
    /// The peer answered with a refusal.
    #[error("{0}")]
    Refused(crate::proto::Refusal),
}

impl CallError {
    /// Whether the peer may have received and acted on the request (so a write may have
    /// been applied there).
    pub fn may_have_acted(&self) -> bool {
        match self {
            CallError::Timeout(_) | CallError::Lost(_) | CallError::BadAnswer(_) => true,
            CallError::Refused(r) => r.may_have_acted(),
            CallError::Unreachable(_) | CallError::Local(_) => false,
        }
    }

    /// A reply as the caller sees it: a refusal is a failed call like any other.
    pub fn from_reply(
        reply: Result<crate::proto::PeerReply, CallError>,
    ) -> Result<crate::proto::PeerReply, CallError> {
        match reply {
            Ok(crate::proto::PeerReply::Failed(r)) => Err(CallError::Refused(r)),
            other => other,
        }
    }
}
