//! `ringctl cluster up`: a local multi-process cluster for development. Each node is a
//! `ringctl serve` child on 127.0.0.1 with its data and log under one directory.

pub mod manifest;
pub mod process;
mod status;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use ringkv::net::{TlsMaterial, TransportConfig};
use ringkv::{Api, Client};
use tokio::time::Instant;

use crate::args;
use crate::output;
use crate::signal::StopSignals;
use crate::Global;

use manifest::Manifest;
use process::{ClusterQuorum, Launch, NodePlan, NodeProcess};

/// Most nodes a local cluster may have.
pub const MAX_NODES: u8 = 32;

/// How long a node has to leave after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Pause between checks on the cluster (readiness while starting, exits while running).
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Bound on one readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `ringctl cluster ...`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Start K nodes on 127.0.0.1 and keep them running until Ctrl-C or SIGTERM.
    Up(UpArgs),
    /// One row per member, gathered from every live node: state, address, zone, keys and
    /// bytes stored, ownership, hints, shards led, replica lag, version; and whether the
    /// cluster is healthy.
    Status,
}

/// `ringctl cluster up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Number of nodes (n1, n2, ...).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=i64::from(MAX_NODES)))]
    pub nodes: u8,
    /// Directory of the certificates (DIR/certs), data (DIR/nK) and logs (DIR/nK.log).
    #[arg(long, default_value = "./ringkv-cluster")]
    pub dir: PathBuf,
    /// First UDP port (the nodes use consecutive ports); default: free ports picked now.
    #[arg(long)]
    pub base_port: Option<u16>,
    /// How long to wait for every node to be seen alive, e.g. `30s`.
    #[arg(long, default_value = "30s", value_parser = wait_limit)]
    pub wait: Duration,
    /// Start the nodes with `serve --fault-injection`, so `ringctl chaos --cluster DIR` can
    /// partition them, shift their clocks and slow their disks. For test clusters only.
    #[arg(long)]
    pub fault_injection: bool,
}

fn wait_limit(s: &str) -> Result<Duration, String> {
    args::duration_within(s, Duration::from_secs(1), Duration::from_secs(600))
}

/// Runs a `cluster` subcommand.
pub async fn run(g: &Global, cmd: ClusterCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ClusterCommand::Up(a) => up(a).await,
        ClusterCommand::Status => status::run(g).await,
    }
}

async fn up(a: UpArgs) -> anyhow::Result<ExitCode> {
    let mut signals = StopSignals::install()?;
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("cannot create cluster directory {}", a.dir.display()))?;
    // Absolute paths: the printed commands must work from any directory.
    let dir = a
        .dir
        .canonicalize()
        .with_context(|| format!("cannot resolve cluster directory {}", a.dir.display()))?;
    let certs = dir.join("certs");
    let plans = plan_nodes(&dir, a.nodes, a.base_port)?;
    prepare_certs(&certs, &plans)?;
    let exe = std::env::current_exe().context("cannot find the ringctl executable to run")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    let quorum = ClusterQuorum::for_nodes(a.nodes);
    let seed = plans
        .first()
        .map(|p| p.addr)
        .context("a cluster needs a node")?;

    let launch = Launch {
        exe: exe.clone(),
        seed,
        certs: certs.clone(),
        quorum,
        extra: if a.fault_injection {
            vec!["--fault-injection".into()]
        } else {
            Vec::new()
        },
    };
    let mut nodes: Vec<NodeProcess> = Vec::with_capacity(plans.len());
    let started = async {
        for plan in &plans {
            std::fs::create_dir_all(&plan.data)
                .with_context(|| format!("cannot create data directory {}", plan.data.display()))?;
            nodes.push(NodeProcess::launch(plan.clone(), launch.clone(), false)?);
        }
        wait_ready(&mut nodes, &certs, seed, a.wait).await
    };
    let outcome = tokio::select! {
        r = started => r,
        sig = signals.recv() => Err(anyhow::anyhow!("{} received while the cluster was starting", sig?)),
    };
    if let Err(e) = outcome {
        process::stop_all(&mut nodes, STOP_GRACE).await;
        return Err(e);
    }
    // The record other commands find the nodes by; gone again once the nodes are stopped.
    let own: Vec<u32> = nodes.iter().filter_map(NodeProcess::pid).collect();
    match Manifest::of(&nodes, &certs, quorum, a.fault_injection) {
        Ok(m) => {
            if let Err(e) = m.write(&dir) {
                output::note(&format!(
                    "{e:#}; `ringctl chaos --cluster` cannot use this cluster"
                ));
            }
        }
        Err(why) => output::note(&format!(
            "no {}: {why}; `ringctl chaos --cluster` cannot use this cluster",
            manifest::FILE
        )),
    }
    output::emit(&banner(&dir, &certs, &plans, &command_for(&exe)))?;

    let result = watch(&mut nodes, &dir, &own, &mut signals).await;
    let restarted = restarted_nodes(&dir, &own);
    Manifest::remove(&dir);
    process::stop_all(&mut nodes, STOP_GRACE).await;
    manifest::stop_records(&restarted, STOP_GRACE).await;
    result.map(|()| ExitCode::SUCCESS)
}

/// Names, addresses, data directories and logs of the nodes.
pub fn plan_nodes(dir: &Path, count: u8, base_port: Option<u16>) -> anyhow::Result<Vec<NodePlan>> {
    let ports = process::choose_ports(count, base_port)?;
    Ok(ports
        .into_iter()
        .enumerate()
        .map(|(i, port)| {
            let name = format!("n{}", i + 1);
            NodePlan {
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                data: dir.join(&name),
                log: dir.join(format!("{name}.log")),
                name,
            }
        })
        .collect())
}

/// Makes the CA and the missing node certificates; keeps whatever already exists.
pub fn prepare_certs(certs: &Path, plans: &[NodePlan]) -> anyhow::Result<()> {
    if !certs.join("ca.pem").exists() {
        ringkv::net::init_cluster(certs)
            .with_context(|| format!("cannot create the cluster CA in {}", certs.display()))?;
    }
    for plan in plans {
        let cert = certs.join(format!("node-{}.pem", plan.name));
        let key = certs.join(format!("node-{}.key", plan.name));
        if cert.exists() && key.exists() {
            continue;
        }
        ringkv::net::issue_node(certs, &plan.name, &[Ipv4Addr::LOCALHOST.into()], &[])
            .with_context(|| {
                format!(
                    "cannot issue a certificate for node {} in {}",
                    plan.name,
                    certs.display()
                )
            })?;
    }
    Ok(())
}

/// Waits until `seed` reports every node alive, a node exits, or `limit` passes.
pub async fn wait_ready(
    nodes: &mut [NodeProcess],
    certs: &Path,
    seed: SocketAddr,
    limit: Duration,
) -> anyhow::Result<()> {
    let names: Vec<String> = nodes.iter().map(|n| n.plan.name.clone()).collect();
    let logs = nodes
        .first()
        .and_then(|n| n.plan.log.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    wait_alive(certs, seed, &names, &logs, limit, || {
        for node in nodes.iter_mut() {
            if let Some(status) = node.poll_exit()? {
                bail!("while starting, {}", node.describe_exit(status));
            }
        }
        Ok(())
    })
    .await
}

/// Waits until `seed` reports every node of `names` alive, `check` fails, or `limit` passes;
/// the error points at the logs in `logs`.
pub async fn wait_alive(
    certs: &Path,
    seed: SocketAddr,
    names: &[String],
    logs: &Path,
    limit: Duration,
    mut check: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let tls = TlsMaterial::load_client(certs).with_context(|| {
        format!(
            "cannot load the client certificate from {}",
            certs.display()
        )
    })?;
    let config = TransportConfig {
        call_timeout: PROBE_TIMEOUT,
        connect_timeout: PROBE_TIMEOUT,
        ..TransportConfig::default()
    };
    let client = Client::with_config(seed, &tls, config)
        .with_context(|| format!("cannot make a client of node {seed}"))?;
    let deadline = Instant::now() + limit;
    loop {
        check()?;
        let last_seen = match tokio::time::timeout(PROBE_TIMEOUT, client.members()).await {
            Ok(Ok(rows)) => {
                let alive: Vec<&str> = rows
                    .iter()
                    .filter(|m| m.state == "alive" && names.contains(&m.name))
                    .map(|m| m.name.as_str())
                    .collect();
                if names.iter().all(|n| alive.contains(&n.as_str())) {
                    return Ok(());
                }
                format!(
                    "{seed} sees {} of {} nodes alive ({})",
                    alive.len(),
                    names.len(),
                    alive.join(", ")
                )
            }
            Ok(Err(e)) => format!("asking {seed} failed: {e}"),
            Err(_) => format!("asking {seed} timed out"),
        };
        if Instant::now() + POLL_INTERVAL > deadline {
            bail!(
                "the cluster was not up within {}: {last_seen}; see the logs in {}",
                humantime::format_duration(limit),
                logs.display()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Keeps the cluster running until a stop signal; reports nodes that exit on their own.
/// Nodes the record names under a pid this command did not start (another command, such as
/// `ringctl chaos --cluster`, killed and restarted them) and that still run.
fn restarted_nodes(dir: &Path, own: &[u32]) -> Vec<manifest::NodeRecord> {
    Manifest::read(dir)
        .map(|m| {
            m.nodes
                .into_iter()
                .filter(|n| !own.contains(&n.pid) && n.running_pid().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

async fn watch(
    nodes: &mut [NodeProcess],
    dir: &Path,
    own: &[u32],
    signals: &mut StopSignals,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    loop {
        tokio::select! {
            sig = signals.recv() => {
                output::note(&format!("{}: stopping every node", sig?));
                return Ok(());
            }
            _ = tick.tick() => {
                for node in nodes.iter_mut() {
                    match node.poll_exit() {
                        Ok(Some(status)) => output::note(&format!(
                            "{}; the other nodes keep running (a command that restarts it, \
                             such as `ringctl chaos --cluster`, records it in {})",
                            node.describe_exit(status),
                            manifest::FILE
                        )),
                        Ok(None) => {}
                        Err(e) => output::note(&output::error_chain(&e)),
                    }
                }
                if nodes.iter().all(|n| !n.is_running()) && restarted_nodes(dir, own).is_empty() {
                    bail!("every node has exited");
                }
            }
        }
    }
}

/// How to run this binary from a shell: `ringctl` when that name on the PATH is this very
/// file, else its full path (after `cargo run` nothing is on the PATH).
fn command_for(exe: &Path) -> String {
    let me = exe.canonicalize().ok();
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            dir.join("ringctl")
                .canonicalize()
                .ok()
                .is_some_and(|p| Some(p) == me)
        })
    });
    if on_path {
        "ringctl".to_owned()
    } else {
        shell_quote(&exe.display().to_string())
    }
}

/// What to tell the developer once the cluster is up; `ringctl` is how to run this binary.
fn banner(dir: &Path, certs: &Path, plans: &[NodePlan], ringctl: &str) -> String {
    let mut out = format!(
        "ringkv local cluster of {} nodes is up (data and logs in {})\n",
        plans.len(),
        dir.display()
    );
    for p in plans {
        out.push_str(&format!(
            "  {:<4} {:<21} log {}\n",
            p.name,
            p.addr,
            p.log.display()
        ));
    }
    out.push_str("\nRedis clients (plaintext on loopback; any node serves any key):\n");
    for p in plans {
        out.push_str(&format!("  redis-cli -p {}\n", p.addr.port()));
    }
    if let Some(first) = plans.first() {
        out.push_str(&format!(
            "\nUse it from another shell:\n  export RINGKV_NODE={} RINGKV_CERTS={}\n  \
             {ringctl} put k v\n  {ringctl} get k\n  {ringctl} cluster status\n",
            first.addr,
            shell_quote(&certs.display().to_string())
        ));
        if ringctl != "ringctl" {
            out.push_str("  (`cargo install --path cli` puts ringctl on the PATH)\n");
        }
    }
    out.push_str("\nCtrl-C (or SIGTERM) stops every node.\n");
    out
}

/// Quotes a path for a POSIX shell when it holds anything but plain characters.
pub fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:,@%=".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_name_nodes_in_order_with_their_own_data_and_log() {
        let plans = plan_nodes(Path::new("/c"), 3, Some(9000)).unwrap();
        let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["n1", "n2", "n3"]);
        assert_eq!(plans[2].addr, "127.0.0.1:9002".parse().unwrap());
        assert_eq!(plans[1].data, Path::new("/c/n2"));
        assert_eq!(plans[1].log, Path::new("/c/n2.log"));
    }

    #[test]
    fn banner_tells_how_to_reach_the_first_node() {
        let plans = plan_nodes(Path::new("/c"), 2, Some(9000)).unwrap();
        let text = banner(Path::new("/c"), Path::new("/c/certs"), &plans, "ringctl");
        assert!(text.contains("export RINGKV_NODE=127.0.0.1:9000 RINGKV_CERTS=/c/certs"));
        assert!(text.contains("  ringctl put k v\n") && !text.contains("cargo install"));
        assert!(text.contains("n2") && text.contains("/c/n2.log"));
        assert!(text.contains("redis-cli -p 9001"));
    }

    #[test]
    fn banner_commands_use_the_running_binary_when_it_is_not_on_the_path() {
        let plans = plan_nodes(Path::new("/c"), 1, Some(9000)).unwrap();
        let exe = "/src/ringkv/target/debug/ringctl";
        let text = banner(Path::new("/c"), Path::new("/c/certs"), &plans, exe);
        assert!(text.contains(&format!("  {exe} put k v\n")), "{text}");
        assert!(text.contains(&format!("  {exe} cluster status\n")));
        assert!(text.contains("cargo install --path cli"));
        // A file that is not on the PATH is named by its path.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ringctl");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(command_for(&file), file.display().to_string());
    }

    #[test]
    fn shell_quoting_only_when_needed() {
        assert_eq!(
            shell_quote("/tmp/ringkv-cluster/certs"),
            "/tmp/ringkv-cluster/certs"
        );
        assert_eq!(shell_quote("/tmp/my dir"), "'/tmp/my dir'");
        assert_eq!(shell_quote("/it's"), r"'/it'\''s'");
    }

    #[test]
    fn existing_certificates_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let plans = plan_nodes(dir.path(), 2, Some(9000)).unwrap();
        prepare_certs(&certs, &plans).unwrap();
        let ca = std::fs::read(certs.join("ca.pem")).unwrap();
        let n1 = std::fs::read(certs.join("node-n1.pem")).unwrap();
        prepare_certs(&certs, &plans).unwrap();
        assert_eq!(std::fs::read(certs.join("ca.pem")).unwrap(), ca);
        assert_eq!(std::fs::read(certs.join("node-n1.pem")).unwrap(), n1);
        assert!(certs.join("node-n2.key").exists());
    }
}
