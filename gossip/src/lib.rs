//! SWIM membership for ringkv over [`foca`], driven sans-IO.
//!
//! [`Membership`] owns the one `foca::Foca` value. It is fed datagrams
//! ([`Membership::handle_datagram`]) and due timers ([`Membership::handle_timer`]) and
//! returns [`GossipOutput`]s: datagrams to send, timers to arm and [`MemberEvent`]s. It
//! reads no clock, opens no socket and draws randomness only from the seed it is given, so
//! the same inputs always give the same outputs.
//!
//! Dissemination scales with the cluster: updates are passed on `retransmit_mult ×
//! ⌈log10(n + 1)⌉` times, every header carries a digest of the sender's live member set and
//! their statuses, and a node whose digest differs from a peer's pulls and pushes the status
//! records and members of the differing digest buckets (a bounded push-pull, also run with a
//! random member every `push_pull_interval`), so a broadcast a node missed is repaired.
//!
//! Besides liveness, each node's [`NodeStatus`] (joining, up, leaving) travels as a versioned
//! foca custom broadcast; a member that never announced one is `Up`.
//!
//! Two nodes joined by hand, delivering datagrams until there are none left (a real shell
//! also arms the scheduled timers):
//!
//! ```
//! use std::net::SocketAddr;
//! use ringkv_gossip::{GossipConfig, GossipOutput, Membership, NodeId};
//!
//! # fn main() -> Result<(), ringkv_gossip::GossipError> {
//! let a_addr: SocketAddr = "127.0.0.1:7001".parse().unwrap();
//! let b_addr: SocketAddr = "127.0.0.1:7002".parse().unwrap();
//! let mut a = Membership::new(NodeId::new("a", a_addr), vec![], GossipConfig::lan(), 1)?;
//! let mut b = Membership::new(NodeId::new("b", b_addr), vec![a_addr], GossipConfig::lan(), 2)?;
//!
//! let sends = |outputs: Vec<GossipOutput>| {
//!     outputs.into_iter().filter_map(|output| match output {
//!         GossipOutput::Send { to, data } => Some((to, data)),
//!         _ => None,
//!     }).collect::<Vec<_>>()
//! };
//! let mut in_flight = sends(b.start());
//! while let Some((to, data)) = in_flight.pop() {
//!     let node = if to == a_addr { &mut a } else { &mut b };
//!     in_flight.extend(sends(node.handle_datagram(&data)?));
//! }
//! assert!(a.is_alive("b"));
//! assert!(b.is_alive("a"));
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod codec;
mod config;
mod digest;
mod error;
mod identity;
mod membership;
mod output;
mod status;
mod sync;
pub mod wire;

pub use codec::WireError;
pub use config::{
    ConfigError, GossipConfig, MAX_FANOUT, MAX_PACKET_SIZE, MAX_SYNC_BYTES, MIN_PACKET_SIZE,
};
pub use digest::NO_DIGEST;
pub use error::GossipError;
pub use identity::{IdentityError, NodeId, MAX_NAME_LEN, MAX_ZONE_LEN};
pub use membership::{Membership, MAX_SEEDS};
pub use output::{GossipOutput, GossipTimer, MemberEvent, MemberInfo, MemberState};
pub use status::{NodeStatus, StatusError};
pub use sync::SyncError;
