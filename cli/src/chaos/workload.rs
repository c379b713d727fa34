//! The workload: closed-loop clients, each bound to one node (so requests go through every
//! node), writing unique keys, deleting some of them and writing a register of their own with
//! increasing versions; under primary mode some clients also read and write a few shared
//! registers for the linearizability check. Every invocation is recorded with its outcome.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use ringkv::net::{TlsMaterial, TransportConfig, TransportError};
use ringkv::proto::ClientError;
use ringkv::version::Context;
use ringkv::{Api, Client, ReadOptions, WriteOptions};
use serde::Serialize;
use tokio::time::Instant;

/// Most operations recorded in one run; clients stop once it is reached.
pub const MAX_OPS: u64 = 5_000_000;
/// Bound on one operation (dial, request, answer): an operation not answered by then is of
/// unknown outcome.
pub const OP_LIMIT: Duration = Duration::from_secs(5);
/// Shared linearizability registers (primary mode with a majority).
pub const LIN_KEYS: usize = 3;
/// Most operations recorded per shared register: keeps the checker's search small.
pub const MAX_LIN_OPS: u64 = 1_500;

/// What an operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Put a key never written before.
    Put,
    /// Delete a key this client put.
    Delete,
    /// Write the client's own register.
    Write,
    /// Read the client's own register.
    Read,
    /// Write a shared register (linearizability).
    LinWrite,
    /// Read a shared register (linearizability).
    LinRead,
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Acknowledged.
    Ok,
    /// Refused before anything was applied.
    Failed,
    /// May or may not have been applied (a timeout, a quorum not met, an election).
    Unknown,
}

/// One recorded operation.
#[derive(Clone, Debug, Serialize)]
pub struct Op {
    /// The client.
    pub client: u32,
    /// The node it went through (0-based).
    pub node: usize,
    /// What it did.
    pub kind: OpKind,
    /// The key.
    pub key: String,
    /// The value written, or the value a read returned (registers hold numbers).
    pub value: Option<u64>,
    /// Whether the key is under the primary-mode prefix.
    pub primary: bool,
    /// Microseconds from the start of the workload to the invocation.
    pub start_us: u64,
    /// ... and to the answer.
    pub end_us: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// The error's kind when it did not end `Ok`.
    pub error: Option<String>,
}

/// Which keys go to primary mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    /// Every key in quorum mode.
    Quorum,
    /// Every key under a primary-mode prefix.
    Primary,
    /// Half the clients in each.
    Mixed,
}

/// Key prefix of quorum-mode keys.
pub const QUORUM_PREFIX: &str = "q/";
/// Key prefix set to primary mode.
pub const PRIMARY_PREFIX: &str = "p/";

/// Settings of the clients.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Which keys are in primary mode.
    pub kind: WorkloadKind,
    /// Whether shared registers are checked for linearizability.
    pub linearizable: bool,
    /// Clients.
    pub concurrency: u32,
    /// Seed of their choices.
    pub seed: u64,
}

/// What every client shares: the stop flag, the clock, the counters.
pub struct Shared {
    /// Set to stop the clients.
    pub stop: AtomicBool,
    /// When the workload started.
    pub started: Instant,
    /// Operations recorded so far.
    pub ops: AtomicU64,
    /// Operations not acknowledged so far.
    pub errors: AtomicU64,
    lin_ops: [AtomicU64; LIN_KEYS],
}

impl Shared {
    /// Counters starting now.
    pub fn new() -> Arc<Self> {
        Arc::new(Shared {
            stop: AtomicBool::new(false),
            started: Instant::now(),
            ops: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            lin_ops: Default::default(),
        })
    }

    /// Microseconds since the start.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// A client of one node with the per-operation bound.
pub fn client(addr: SocketAddr, tls: &TlsMaterial) -> Result<Client, ringkv::Error> {
    let config = TransportConfig {
        call_timeout: OP_LIMIT,
        connect_timeout: Duration::from_secs(1),
        ..TransportConfig::default()
    };
    Client::with_config(addr, tls, config)
}

/// Whether an error says the request never took effect; anything else is unknown.
pub fn classify(e: &ringkv::Error) -> (Outcome, String) {
    use ringkv::Error as E;
    let outcome = match e {
        E::Request(
            ClientError::Overloaded { .. }
            | ClientError::BadKey { .. }
            | ClientError::ValueTooLarge { .. }
            | ClientError::BadQuorum { .. }
            | ClientError::BadContext(_)
            | ClientError::ReadOnly { .. },
        )
        | E::Transport(
            TransportError::Connect { .. }
            | TransportError::Handshake { .. }
            | TransportError::TooManyConnections { .. },
        ) => Outcome::Failed,
        E::Request(ClientError::Unavailable(u)) if u.nothing_written() => Outcome::Failed,
        _ => Outcome::Unknown,
    };
    let kind = match e {
        E::Request(ClientError::Unavailable(why)) => format!("unavailable: {}", why.kind()),
        E::Request(c) => c.kind().to_string(),
        E::Transport(TransportError::Timeout { .. }) => "timeout".into(),
        E::Transport(_) => "unreachable".into(),
        _ => "other".into(),
    };
    (outcome, kind)
}

/// A put key this client may delete later, with the context its put returned.
struct Deletable {
    key: String,
    context: Context,
}

/// Runs client `id` through `node` until `shared.stop`; returns what it recorded.
pub async fn run_client(
    w: Workload,
    id: u32,
    node: usize,
    api: Client,
    shared: Arc<Shared>,
) -> Vec<Op> {
    let mut rng = SmallRng::seed_from_u64(w.seed ^ (u64::from(id) << 32));
    let primary = match w.kind {
        WorkloadKind::Quorum => false,
        WorkloadKind::Primary => true,
        WorkloadKind::Mixed => id % 2 == 1,
    };
    let prefix = if primary {
        PRIMARY_PREFIX
    } else {
        QUORUM_PREFIX
    };
    let register = format!("{prefix}reg/{id}");
    let mut ops = Vec::new();
    let mut seq = 0u64;
    let mut version = 0u64;
    let mut reg_context: Option<Context> = None;
    let mut deletable: Vec<Deletable> = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        if shared.ops.fetch_add(1, Ordering::Relaxed) >= MAX_OPS {
            break;
        }
        let roll: f64 = rng.random();
        let start_us = shared.now_us();
        let mut op = Op {
            client: id,
            node,
            kind: OpKind::Put,
            key: String::new(),
            value: None,
            primary,
            start_us,
            end_us: 0,
            outcome: Outcome::Ok,
            error: None,
        };
        let result: Result<(), ringkv::Error> = if primary && w.linearizable && roll < 0.15 {
            let k = rng.random_range(0..LIN_KEYS);
            if shared.lin_ops[k].fetch_add(1, Ordering::Relaxed) >= MAX_LIN_OPS {
                continue;
            }
            op.key = format!("{PRIMARY_PREFIX}lin/{k}");
            if rng.random_bool(0.5) {
                op.kind = OpKind::LinWrite;
                seq += 1;
                let value = u64::from(id) * 1_000_000_000 + seq;
                op.value = Some(value);
                api.put(
                    op.key.clone().into_bytes(),
                    value.to_string().into_bytes(),
                    WriteOptions::default(),
                )
                .await
                .map(|_| ())
            } else {
                op.kind = OpKind::LinRead;
                read_number(&api, &op.key, None).await.map(|(v, _)| {
                    op.value = v;
                })
            }
        } else if roll < 0.5 {
            seq += 1;
            op.key = format!("{prefix}k/{id}/{seq}");
            op.value = Some(seq);
            let r = api
                .put(
                    op.key.clone().into_bytes(),
                    seq.to_string().into_bytes(),
                    WriteOptions::default(),
                )
                .await;
            r.map(|written| {
                deletable.push(Deletable {
                    key: op.key.clone(),
                    context: written.context,
                })
            })
        } else if roll < 0.6 && !deletable.is_empty() {
            let d = deletable.swap_remove(rng.random_range(0..deletable.len()));
            op.kind = OpKind::Delete;
            op.key = d.key;
            let opts = WriteOptions {
                context: Some(d.context),
                ..WriteOptions::default()
            };
            api.delete(op.key.clone().into_bytes(), opts)
                .await
                .map(|_| ())
        } else if roll < 0.85 && (version == 0 || reg_context.is_some()) {
            op.kind = OpKind::Write;
            op.key = register.clone();
            version += 1;
            op.value = Some(version);
            let opts = WriteOptions {
                context: reg_context.clone(),
                ..WriteOptions::default()
            };
            let r = api
                .put(
                    op.key.clone().into_bytes(),
                    version.to_string().into_bytes(),
                    opts,
                )
                .await;
            match r {
                Ok(written) => {
                    reg_context = Some(written.context);
                    Ok(())
                }
                Err(e) => {
                    // The next write must replace whatever this one left: the next register
                    // operation is a read, whose context covers it if it landed.
                    reg_context = None;
                    Err(e)
                }
            }
        } else {
            op.kind = OpKind::Read;
            op.key = register.clone();
            let r = read_number(&api, &op.key, None).await;
            r.map(|(v, context)| {
                op.value = v;
                if reg_context.is_none() && version > 0 {
                    reg_context = Some(context);
                }
            })
        };
        op.end_us = shared.now_us();
        if let Err(e) = result {
            let (outcome, kind) = classify(&e);
            op.outcome = outcome;
            op.error = Some(kind);
            shared.errors.fetch_add(1, Ordering::Relaxed);
            // A client that failed backs off a little, as a real one would.
            tokio::time::sleep(Duration::from_millis(rng.random_range(10..50))).await;
        }
        ops.push(op);
    }
    ops
}

/// Reads a number-valued key: the largest live sibling, and the read's context.
pub async fn read_number(
    api: &Client,
    key: &str,
    r: Option<u8>,
) -> Result<(Option<u64>, Context), ringkv::Error> {
    let read = api
        .get(
            key.as_bytes().to_vec(),
            ReadOptions {
                r,
                ..ReadOptions::default()
            },
        )
        .await?;
    let value = read
        .values
        .iter()
        .filter_map(|v| std::str::from_utf8(&v.data).ok()?.parse::<u64>().ok())
        .max();
    Ok((value, read.context))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringkv::proto::Unavailable;

    #[test]
    fn errors_that_never_reach_a_replica_fail_and_the_rest_are_unknown() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let refused = ringkv::Error::Transport(TransportError::Connect {
            addr,
            reason: "refused".into(),
        });
        assert_eq!(classify(&refused), (Outcome::Failed, "unreachable".into()));
        let timeout = ringkv::Error::Transport(TransportError::Timeout {
            addr,
            after: OP_LIMIT,
            phase: ringkv::net::TimeoutPhase::Call,
        });
        assert_eq!(classify(&timeout), (Outcome::Unknown, "timeout".into()));
        let quorum = ringkv::Error::Request(ClientError::QuorumFailed {
            op: "write".into(),
            needed: 2,
            replicas: 3,
            ok: 1,
            detail: String::new(),
        });
        assert_eq!(
            classify(&quorum),
            (Outcome::Unknown, "quorum_failed".into())
        );
        let down = ringkv::Error::Request(ClientError::Unavailable(Unavailable::PrimaryDown(
            "n1".into(),
        )));
        assert_eq!(
            classify(&down),
            (Outcome::Unknown, "unavailable: primary_down".into())
        );
        let rejoining = ClientError::Unavailable(Unavailable::Rejoining { known: 1, n: 3 });
        assert_eq!(
            classify(&ringkv::Error::Request(rejoining)),
            (Outcome::Failed, "unavailable: rejoining".into())
        );
        let busy = ringkv::Error::Request(ClientError::Overloaded { in_flight: 9 });
        assert_eq!(classify(&busy).0, Outcome::Failed);
    }
}
