//! A deterministic simulator of a whole ringkv cluster.
//!
//! Three to nine nodes run in one thread on simulated time, each the real sans-IO node core
//! (coordinator, replica, ring and foca's SWIM) over an in-memory store that forgets what
//! was not synced when the node crashes. A simulated network delays, loses, duplicates and
//! reorders messages and partitions the cluster; faults crash, pause, skew clocks, add and
//! remove nodes. Simulated clients record every operation; the [`checker`] holds the
//! history and the world to the promises of this release. Every random choice comes from
//! the run's seed, so a seed replays its run exactly, down to the [trace hash](trace).
//!
//! ```
//! use ringkv_tests::sim::{config::{FaultKinds, SimConfig}, run};
//! let config = SimConfig { faults: FaultKinds::none(), ops: 20, ..SimConfig::default() };
//! let report = run::run(7, &config, None);
//! assert!(report.passed(), "{:?}", report.violations);
//! assert_eq!(report.trace_hash, run::run(7, &config, None).trace_hash);
//! ```

pub mod checker;
pub mod config;
pub mod faults;
pub mod history;
pub mod logwatch;
pub mod network;
pub mod node;
pub mod queue;
pub mod rng;
mod routing;
pub mod run;
pub mod scale;
pub mod shrink;
pub mod trace;
pub mod workload;
pub mod world;

pub use config::{Capabilities, FaultKind, FaultKinds, NetConfig, SimConfig};
pub use faults::Schedule;
pub use run::{run, RunReport};
