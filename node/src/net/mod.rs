//! TLS material and the QUIC transport.
//!
//! - [`tls`]: the cluster CA, node and client certificates, and the mutual-TLS configurations
//!   every connection uses (`rcgen`, `rustls` with the `ring` provider).
//! - [`Transport`]: one QUIC endpoint (`quinn`) per node, carrying request/response calls on
//!   bidirectional streams (from protocol version 3, many calls per stream: `mux`) and gossip
//!   datagrams on one UDP socket; [`Inbound`] is the bounded queue of what peers send.
//!
//! Hostile or broken input is contained: a bad frame resets its stream, a failed handshake
//! ends its connection; both are counted in [`TransportStats`] and the node keeps serving.
//! Every bound the transport enforces is also counted in the [`LimitHits`](crate::limits::LimitHits)
//! its [`TransportConfig`] carries.

mod admission;
mod compat;
mod config;
mod error;
mod frame;
mod inbound;
mod mux;
pub mod rotate;
mod stats;
pub mod tls;
mod transport;

pub use config::TransportConfig;
pub use error::{TimeoutPhase, TransportError};
pub use inbound::{Inbound, InboundEvent, Responder};
pub use stats::TransportStats;
pub use tls::{
    client_config, init_cluster, issue_node, server_config, tcp_server_config, TlsError,
    TlsMaterial, ALPN, PROTOCOL_VERSION, SPOKEN_VERSIONS,
};
pub use transport::Transport;

/// The version-1 transcoding of frames, reached by the fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::compat::{check_request_for_v1, response_from_v1, response_to_v1, CompatError};
}
