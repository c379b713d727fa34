//! `ringctl serve`: one node in the foreground until SIGTERM or Ctrl-C, then a graceful leave
//! (or a stop in place); SIGHUP reloads the certificates.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use ringkv::config::{CoreConfig, Limits, Quorum};
use ringkv::core::replication::ReplConfig;
use ringkv::net::{TlsMaterial, TransportConfig};
use ringkv::resp::RedisConfig;
use ringkv::store::Durability;
use ringkv::version::ConflictPolicy;
use ringkv::Node;

use crate::certs;
use crate::output;
use crate::signal::{ReloadSignal, StopSignals};
use crate::Global;

/// Bound on the graceful leave; a second signal cuts it short.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(15);
/// Longest a leaving node waits for its data to reach the remaining replicas.
const HANDOFF_LIMIT: Duration = Duration::from_secs(10);

/// Largest `--max-key`: keys travel in every frame and index entry.
pub const MAX_KEY_LIMIT: u64 = 64 * 1024;

/// Largest `--max-value`: a value, its key and the message overhead must fit one transport
/// frame (8 MiB by default), with room for a sibling.
pub const MAX_VALUE_LIMIT: u64 = 4 * 1024 * 1024;

/// Smallest `--repl-backlog`: room for a few small writes.
pub const MIN_REPL_BACKLOG: u64 = 1024;
/// Largest `--repl-backlog`: the backlog is held in memory, once per shard.
pub const MAX_REPL_BACKLOG: u64 = 1 << 30;

/// What a node does when told to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnSignal {
    /// Hand data off and leave the cluster.
    Leave,
    /// Stop in place.
    Stop,
}

/// `ringctl serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory of the node's data (created if missing; one node per directory).
    #[arg(long)]
    pub data: PathBuf,
    /// UDP address the node's QUIC endpoint binds, e.g. 0.0.0.0:7000.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Address peers and clients reach the node at (needed when --listen is 0.0.0.0).
    #[arg(long)]
    pub advertise: Option<SocketAddr>,
    /// A node to join through (repeat for several); none for the first node.
    #[arg(long = "seed")]
    pub seeds: Vec<SocketAddr>,
    /// Node name (default: the one node-NAME.pem in --certs).
    #[arg(long)]
    pub name: Option<String>,
    /// Zone (rack, availability zone): replicas of a key prefer distinct zones.
    #[arg(long)]
    pub zone: Option<String>,
    /// What SIGTERM/Ctrl-C does: `leave` hands the node's data to the remaining replicas and
    /// leaves the cluster (decommission); `stop` just stops (restart, upgrade: the data stays,
    /// peers keep hints until the node is back).
    #[arg(long, value_enum, default_value_t = OnSignal::Leave)]
    pub on_signal: OnSignal,
    /// Replicas per key (must be the same on every node).
    #[arg(long = "n", default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..))]
    pub n: u8,
    /// Default read quorum (1..=N).
    #[arg(long = "r", default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..))]
    pub r: u8,
    /// Default write quorum (1..=N).
    #[arg(long = "w", default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..))]
    pub w: u8,
    /// Virtual nodes per node (must be the same on every node).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub vnodes: u32,
    /// Whether a replica syncs to disk before acknowledging a write.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Sync)]
    pub durability: DurabilityArg,
    /// How concurrent writes are resolved (must be the same on every node).
    #[arg(long, value_enum, default_value_t = ConflictArg::Lww)]
    pub conflict: ConflictArg,
    /// Largest accepted key, in bytes.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=MAX_KEY_LIMIT))]
    pub max_key: u64,
    /// Largest accepted value, in bytes.
    #[arg(long, default_value_t = MAX_VALUE_LIMIT, value_parser = clap::value_parser!(u64).range(1..=MAX_VALUE_LIMIT))]
    pub max_value: u64,
    /// Bytes of recent writes each primary-mode shard keeps in memory (Redis
    /// `repl-backlog-size`): a replica that returns within them resyncs partially, one further
    /// behind gets a full resync (a snapshot of the shard's keys).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(MIN_REPL_BACKLOG..=MAX_REPL_BACKLOG))]
    pub repl_backlog: u64,
    /// Serve Redis clients (RESP2/RESP3) on this TCP address, over TLS with a client
    /// certificate signed by the cluster CA, like every other connection.
    #[arg(long, value_name = "ADDR")]
    pub redis: Option<SocketAddr>,
    /// The Redis front without TLS: accepted only on a loopback address.
    #[arg(long, requires = "redis")]
    pub redis_plaintext: bool,
    /// Serve Prometheus metrics (`GET /metrics`) and readiness (`GET /health`: 200 once the
    /// node is up and joined, 503 otherwise) on this TCP address, over PLAIN HTTP: bind it
    /// where only the scraper reaches (loopback, the host or the pod network).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,

    /// Keys `KEYS` answers at most (more matching keys: an error that says to use `SCAN`);
    /// also the largest `SCAN COUNT`.
    #[arg(long, requires = "redis", value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub redis_max_keys: u32,
    /// QUIC connections the node accepts at once; further ones are refused.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// QUIC connections the node accepts at once from one IP address.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections_per_address: u32,
    /// Gossip datagrams per second the node reads from one connection; beyond, they are
    /// dropped.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_datagrams_per_sec: u32,
    /// Accept fault-injection requests (`ringctl chaos` partitions, clock shifts, slow
    /// syncs). FOR TEST CLUSTERS ONLY: any holder of a client certificate could then cut this
    /// node off from its peers.
    #[arg(long)]
    pub fault_injection: bool,
    /// Speak only these protocol versions (repeat for several, preferred first). For tests
    /// that emulate a node of another release; the default is every version this build
    /// speaks.
    #[arg(long = "protocol-version", hide = true, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub protocol_versions: Vec<u32>,
}

/// `--durability`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// fsync before acknowledging (group commit).
    Sync,
    /// Acknowledge once written; the engine syncs later.
    Buffered,
}

/// `--conflict`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ConflictArg {
    /// Last writer (by hybrid logical clock) wins.
    Lww,
    /// Concurrent writes are kept as siblings for the reader to resolve.
    Siblings,
}

impl ServeArgs {
    /// The core settings these flags describe.
    fn core_config(&self) -> anyhow::Result<CoreConfig> {
        let (n, r, w) = (self.n, self.r, self.w);
        if r > n || w > n {
            bail!("--r {r} and --w {w} must not exceed --n {n}");
        }
        Ok(CoreConfig {
            quorum: Quorum {
                n: n.into(),
                r: r.into(),
                w: w.into(),
            },
            vnodes: self.vnodes,
            conflict_policy: match self.conflict {
                ConflictArg::Lww => ConflictPolicy::Lww,
                ConflictArg::Siblings => ConflictPolicy::Siblings,
            },
            durability: match self.durability {
                DurabilityArg::Sync => Durability::Sync,
                DurabilityArg::Buffered => Durability::Buffered,
            },
            limits: Limits {
                max_key: usize::try_from(self.max_key)?,
                max_value: usize::try_from(self.max_value)?,
                ..Limits::default()
            },
            replication: ReplConfig {
                backlog_bytes: usize::try_from(self.repl_backlog)?,
                ..ReplConfig::default()
            },
            ..CoreConfig::default()
        })
    }
}

/// Runs the node until SIGTERM or Ctrl-C.
pub async fn run(g: &Global, a: ServeArgs) -> anyhow::Result<ExitCode> {
    // Listen first: a SIGTERM during start-up must still end in a graceful leave.
    let mut signals = StopSignals::install()?;
    let mut reload = ReloadSignal::install()?;
    let config = a.core_config()?;
    require_dir(&g.certs)?;
    let name = match &a.name {
        Some(name) => name.clone(),
        None => sole_node_name(&g.certs)?,
    };
    let tls = TlsMaterial::load_node(&g.certs, &name).with_context(|| {
        format!(
            "cannot load the certificate of node {name:?} from {}",
            g.certs.display()
        )
    })?;
    std::fs::create_dir_all(&a.data)
        .with_context(|| format!("cannot create data directory {}", a.data.display()))?;

    let mut builder = Node::builder(name.clone())
        .listen(a.listen)
        .data_dir(&a.data)
        .tls(tls.clone())
        .config(config);
    let mut transport = TransportConfig {
        max_connections: a.max_connections as usize,
        max_connections_per_address: a.max_connections_per_address as usize,
        max_datagrams_per_sec: a.max_datagrams_per_sec,
        ..TransportConfig::default()
    };
    if !a.protocol_versions.is_empty() {
        tracing::warn!(
            versions = ?a.protocol_versions,
            "speaking only the given protocol versions (a test setting)"
        );
        transport.protocol_versions = a.protocol_versions.clone();
    }
    builder = builder.transport(transport);
    builder = builder.fault_injection(a.fault_injection);
    if let Some(addr) = a.redis {
        let mut redis = if a.redis_plaintext {
            RedisConfig::plaintext(addr)
        } else {
            RedisConfig::tls(addr, tls)
        };
        redis.limits.max_keys = a.redis_max_keys as usize;
        builder = builder.redis(redis);
    }
    if let Some(addr) = a.metrics {
        builder = builder.metrics(addr);
    }
    if let Some(addr) = a.advertise {
        builder = builder.advertise(addr);
    }
    for seed in &a.seeds {
        builder = builder.seed(*seed);
    }
    if let Some(zone) = &a.zone {
        builder = builder.zone(zone.clone());
    }
    if a.fault_injection {
        tracing::warn!("fault injection is on: this node is for test clusters only");
    }
    let node = tokio::select! {
        started = builder.start() => started.with_context(|| {
            format!("cannot start node {name:?} on {} with data in {}", a.listen, a.data.display())
        })?,
        sig = signals.recv() => {
            bail!("{} received while node {name:?} was starting; it did not join", sig?);
        }
    };
    output::emit(&format!(
        "ringkv node {} serving on {}\n",
        node.name(),
        node.addr()
    ))?;
    if let Some(addr) = node.redis_addr() {
        let how = if a.redis_plaintext {
            "plaintext"
        } else {
            "TLS"
        };
        output::emit(&format!("Redis front on {addr} ({how})\n"))?;
    }
    if let Some(addr) = node.metrics_addr() {
        output::emit(&format!(
            "metrics on http://{addr}/metrics, readiness on http://{addr}/health (plain HTTP)\n"
        ))?;
    }

    let sig = loop {
        tokio::select! {
            sig = signals.recv() => break sig?,
            () = reload.recv() => reload_certs(&node, &g.certs, &name),
        }
    };
    type Stopping =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ringkv::Error>> + Send>>;
    let stopping: Stopping = match a.on_signal {
        OnSignal::Leave => {
            tracing::info!(signal = sig, "leaving the cluster");
            Box::pin(node.shutdown_within(HANDOFF_LIMIT))
        }
        OnSignal::Stop => {
            tracing::info!(signal = sig, "stopping (staying in the cluster)");
            Box::pin(node.stop())
        }
    };
    tokio::select! {
        left = tokio::time::timeout(SHUTDOWN_LIMIT, stopping) => match left {
            Ok(result) => result.with_context(|| format!("node {name:?} did not stop cleanly"))?,
            Err(_) => bail!("node {name:?} did not finish leaving within {SHUTDOWN_LIMIT:?}"),
        },
        again = signals.recv() => {
            bail!("{} received again; stopped node {name:?} before it finished leaving", again?);
        }
    }
    tracing::info!("node stopped");
    Ok(ExitCode::SUCCESS)
}

/// Reloads the node's certificate, key and CA bundle from `dir` (SIGHUP). Bad material is
/// logged and the node keeps serving with what it has.
fn reload_certs(node: &Node, dir: &Path, name: &str) {
    let loaded = TlsMaterial::load_node(dir, name)
        .map_err(anyhow::Error::from)
        .and_then(|tls| {
            node.reload_tls(&tls)?;
            Ok(tls.ca_count())
        });
    match loaded {
        Ok(cas) => tracing::info!(
            certs = %dir.display(),
            trusted_cas = cas,
            "SIGHUP: reloaded the node certificate, key and CA bundle; new connections use them"
        ),
        Err(e) => tracing::error!(
            certs = %dir.display(),
            "SIGHUP: certificate reload failed, keeping the current certificates: {e:#}"
        ),
    }
}

fn require_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    bail!(
        "certificate directory {} does not exist (make one with `ringctl certs init --dir {}`)",
        dir.display(),
        dir.display()
    )
}

/// The node name when `--name` is absent: the one `node-NAME.pem` in the certificate
/// directory, or an error naming the choices.
fn sole_node_name(dir: &Path) -> anyhow::Result<String> {
    let mut names = certs::node_names(dir)?;
    match names.len() {
        1 => Ok(names.remove(0)),
        0 => bail!(
            "no node certificate (node-NAME.pem) in {}; issue one with \
             `ringctl certs issue --dir {} --name NAME` or pass --name",
            dir.display(),
            dir.display()
        ),
        _ => bail!(
            "several node certificates in {} ({}); choose one with --name",
            dir.display(),
            names.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(extra: &[&str]) -> Result<ServeArgs, clap::Error> {
        let base = ["serve", "--data", "d", "--listen", "127.0.0.1:7000"];
        Wrap::try_parse_from(base.iter().chain(extra)).map(|w| w.serve)
    }

    #[test]
    fn flags_map_onto_the_core_config() {
        let a = parse(&[
            "--n",
            "5",
            "--r",
            "3",
            "--w",
            "4",
            "--vnodes",
            "64",
            "--durability",
            "buffered",
            "--conflict",
            "siblings",
            "--max-key",
            "100",
            "--max-value",
            "2000",
            "--repl-backlog",
            "4096",
        ])
        .unwrap();
        let c = a.core_config().unwrap();
        assert_eq!(c.quorum, Quorum { n: 5, r: 3, w: 4 });
        assert_eq!(c.vnodes, 64);
        assert_eq!(c.durability, Durability::Buffered);
        assert_eq!(c.conflict_policy, ConflictPolicy::Siblings);
        assert_eq!((c.limits.max_key, c.limits.max_value), (100, 2000));
        assert_eq!(c.replication.backlog_bytes, 4096);
        let default = parse(&[]).unwrap().core_config().unwrap();
        assert_eq!(
            default.replication.backlog_bytes,
            ReplConfig::default().backlog_bytes
        );
    }

    #[test]
    fn quorums_above_n_and_zero_are_refused() {
        assert!(parse(&["--n", "3", "--r", "4"])
            .unwrap()
            .core_config()
            .is_err());
        assert!(parse(&["--n", "2", "--w", "3"])
            .unwrap()
            .core_config()
            .is_err());
        assert!(parse(&["--r", "0"]).is_err());
        assert!(parse(&["--vnodes", "0"]).is_err());
        assert!(parse(&["--max-value", "0"]).is_err());
        assert!(parse(&["--durability", "never"]).is_err());
        assert!(parse(&["--repl-backlog", "1023"]).is_err());
        assert!(parse(&["--repl-backlog", &(MAX_REPL_BACKLOG + 1).to_string()]).is_err());
    }

    #[test]
    fn the_sole_node_certificate_names_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", sole_node_name(dir.path()).unwrap_err());
        assert!(err.contains("no node certificate"), "{err}");
        std::fs::write(dir.path().join("node-n1.pem"), "x").unwrap();
        assert_eq!(sole_node_name(dir.path()).unwrap(), "n1");
        std::fs::write(dir.path().join("node-n2.pem"), "x").unwrap();
        let err = format!("{:#}", sole_node_name(dir.path()).unwrap_err());
        assert!(err.contains("n1, n2") && err.contains("--name"), "{err}");
    }
}
