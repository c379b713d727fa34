//! Errors of the membership state machine.

use crate::config::ConfigError;
use crate::identity::IdentityError;
use crate::sync::SyncError;

/// Why a [`crate::Membership`] could not be built or rejected a datagram.
///
/// A rejected datagram leaves the membership working; the shell counts it and moves on.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// Our own identity breaks the identity rules.
    #[error("invalid node identity: {0}")]
    Identity(#[from] IdentityError),
    /// The configuration breaks a bound.
    #[error("invalid gossip configuration: {0}")]
    Config(#[from] ConfigError),
    /// More seed addresses were given than [`crate::MAX_SEEDS`].
    #[error("{count} seed addresses given, the limit is {max}")]
    TooManySeeds {
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The datagram is larger than `max_packet_size`.
    #[error("gossip datagram of {len} bytes exceeds the {max}-byte limit")]
    DatagramTooBig {
        /// Its size.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The datagram does not decode as gossip (garbage, truncated, invalid identity or
    /// status record).
    #[error("malformed gossip datagram: {0}")]
    Malformed(#[source] foca::Error),
    /// The datagram claims to come from our own identity or address (a seed list that names
    /// this node under another address, or a forged packet).
    #[error("gossip datagram claims to come from this very node")]
    FromOurselves,
    /// A membership sync datagram is malformed or comes from a stranger.
    #[error("rejected membership sync datagram: {0}")]
    Sync(#[from] SyncError),
    /// foca refused the datagram or failed to react to it.
    #[error("gossip protocol error: {0}")]
    Protocol(#[source] foca::Error),
}

impl GossipError {
    /// Classifies an error foca returned for a datagram of `len` bytes.
    pub(crate) fn from_datagram(error: foca::Error, len: usize, max: usize) -> Self {
        match error {
            foca::Error::DataTooBig => Self::DatagramTooBig { len, max },
            foca::Error::DataFromOurselves => Self::FromOurselves,
            foca::Error::Decode(_)
            | foca::Error::MalformedPacket
            | foca::Error::CustomBroadcast(_) => Self::Malformed(error),
            other => Self::Protocol(other),
        }
    }
}
