//! Consistent hashing with virtual nodes for ringkv.
//!
//! A [`Ring`] is a pure function of its members ([`RingNode`]s) and a [`RingConfig`]: every
//! member places `vnodes` tokens (hashring's SipHash placement of `(name, vnode index)`), the
//! tokens cut the `u64` key space into [`TokenRange`]s, and each range's preference list (the
//! first N distinct nodes clockwise, preferring distinct zones) is computed once per build.
//! A key's [`token`] is the same SipHash of its bytes, so any node finds a key's replicas
//! with one binary search, and [`Ring::diff`] tells which pieces change hands when the
//! membership changes.
//!
//! ```
//! use ringkv_ring::{Ring, RingConfig, RingNode};
//! let ring = Ring::new(
//!     [
//!         RingNode::new("a").in_zone("z1"),
//!         RingNode::new("b").in_zone("z2"),
//!         RingNode::new("c").in_zone("z3"),
//!         RingNode::new("d").in_zone("z1"),
//!     ],
//!     RingConfig::default(),
//! );
//! let replicas = ring.preference_list(b"user:42");
//! assert_eq!(replicas.len(), 3);
//! // One replica per zone.
//! let mut zones: Vec<_> = replicas.iter().map(|n| ring.node(n).unwrap().zone.clone()).collect();
//! zones.sort();
//! zones.dedup();
//! assert_eq!(zones.len(), 3);
//! ```

#![deny(missing_docs)]

mod config;
mod diff;
mod lists;
mod node;
mod placement;
mod range;
mod ring;
mod token;

pub use config::{ConfigError, RingConfig, MAX_REPLICAS, MAX_VNODES};
pub use diff::RangeMove;
pub use node::RingNode;
pub use range::TokenRange;
pub use ring::Ring;
pub use token::{token, Token, TOKEN_SPACE};
