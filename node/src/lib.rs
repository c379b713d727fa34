//! ringkv: a masterless, Dynamo-style key-value cluster you can embed.
//!
//! Every node is equal: SWIM gossip over QUIC tracks membership, a consistent-hash ring with
//! virtual nodes puts each key on N replicas, and reads and writes wait for tunable quorums
//! (R, W). Start a [`Node`] inside a program, or talk to a cluster with a [`Client`]; both
//! offer the operations of [`Api`].

pub mod api;
pub mod client;
pub mod codec;
pub mod config;
pub mod core;
pub mod error;
pub mod faults;
pub mod hlc;
pub mod limits;
pub mod merkle;
pub mod net;
pub mod node;
pub mod proto;
mod reason;
pub mod resp;
pub mod store;
pub mod table;
pub mod version;

pub use api::{Api, ReadOptions, WriteOptions};
pub use client::Client;
pub use error::Error;
pub use node::{Node, NodeBuilder, NodeHandle};
pub use table::{
    Mode, PrimaryOptions, RangeTable, ReadFrom, Rule, Stamp, SyncReplicas, TableError, TableLimits,
    Topology,
};
