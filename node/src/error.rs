//! The library's error type.

use crate::net::{TlsError, TransportError};
use crate::proto::{ClientError, CodecError};
use crate::store::StoreError;

/// Anything that can go wrong using a node or a client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cluster refused or could not complete the request.
    #[error(transparent)]
    Request(#[from] ClientError),
    /// The network failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Certificates could not be made or loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The data directory could not be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The range table could not be loaded or kept.
    #[error(transparent)]
    Table(#[from] crate::table::TableError),
    /// Membership could not start.
    #[error(transparent)]
    Gossip(#[from] ringkv_gossip::GossipError),
    /// A message could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The Redis front could not start.
    #[error(transparent)]
    Redis(#[from] crate::resp::FrontError),
    /// The node refused a fault-injection request.
    #[error(transparent)]
    Fault(#[from] crate::faults::FaultError),
    /// A setting is not usable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The node answered something that does not fit the request.
    #[error("unexpected answer from node: {0}")]
    Unexpected(String),
    /// The node has stopped.
    #[error("node is shut down")]
    Shutdown,
}
