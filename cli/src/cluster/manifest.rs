//! The record `cluster up` keeps of the cluster it runs, `DIR/cluster.json`: every node's
//! name, address, data, log, process id and command line. Other commands (`ringctl chaos
//! --cluster DIR`) find the nodes through it and signal a process only while it still runs
//! the command recorded for that node, so they never touch a process the record does not name.
//! A command that kills a node and starts it again with its recorded command line writes the
//! new pid into the record ([`Manifest::restart`]); `cluster up` stops such nodes too.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::process::{ClusterQuorum, NodeProcess};
use super::MAX_NODES;

/// The record's file name inside the cluster directory.
pub const FILE: &str = "cluster.json";
/// Bound on a restarted node's process running its command line.
const EXEC_LIMIT: Duration = Duration::from_secs(5);
/// Largest record read.
const MAX_BYTES: u64 = 1024 * 1024;

/// A running local cluster, as `cluster up` started it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The certificate directory.
    pub certs: PathBuf,
    /// Replication settings of every node.
    pub quorum: ClusterQuorum,
    /// Whether the nodes accept fault requests (`serve --fault-injection`).
    pub fault_injection: bool,
    /// The nodes, n1 first.
    pub nodes: Vec<NodeRecord>,
}

/// One node of the record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its name.
    pub name: String,
    /// Its QUIC address.
    pub addr: SocketAddr,
    /// Its data directory.
    pub data: PathBuf,
    /// Its log.
    pub log: PathBuf,
    /// Its process id.
    pub pid: u32,
    /// Its command line, the executable first.
    pub command: Vec<String>,
}

impl Manifest {
    /// The record of `nodes`; `None` (with the reason) when a node is not running or its
    /// command line is not UTF-8.
    pub fn of(
        nodes: &[NodeProcess],
        certs: &Path,
        quorum: ClusterQuorum,
        fault_injection: bool,
    ) -> Result<Self, String> {
        let mut records = Vec::with_capacity(nodes.len());
        for node in nodes {
            let pid = node
                .pid()
                .ok_or_else(|| format!("node {} is not running", node.plan.name))?;
            let launch = node
                .launch_of()
                .ok_or_else(|| format!("no command line of node {}", node.plan.name))?;
            let command = launch
                .command_line(&node.plan)
                .into_iter()
                .map(|a| a.into_string())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|a| {
                    format!(
                        "node {}'s command line holds {a:?}, not UTF-8",
                        node.plan.name
                    )
                })?;
            records.push(NodeRecord {
                name: node.plan.name.clone(),
                addr: node.plan.addr,
                data: node.plan.data.clone(),
                log: node.plan.log.clone(),
                pid,
                command,
            });
        }
        Ok(Manifest {
            certs: certs.to_path_buf(),
            quorum,
            fault_injection,
            nodes: records,
        })
    }

    /// Writes the record into `dir` (atomically: a reader sees the old one or the new one).
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(FILE);
        let tmp = dir.join(format!("{FILE}.tmp"));
        let text = serde_json::to_vec_pretty(self)?;
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Removes the record from `dir`, if there.
    pub fn remove(dir: &Path) {
        let _ = std::fs::remove_file(dir.join(FILE));
    }

    /// Reads and checks the record in `dir`.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(FILE);
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "{} has no {FILE}: is `ringctl cluster up --dir {}` running?",
                dir.display(),
                dir.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if len > MAX_BYTES {
            bail!(
                "{} is {len} bytes; a cluster record is at most {MAX_BYTES}",
                path.display()
            );
        }
        let text =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let m: Manifest = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a cluster record", path.display()))?;
        m.check()
            .with_context(|| format!("{} is not a usable cluster record", path.display()))?;
        Ok(m)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.nodes.is_empty() || self.nodes.len() > usize::from(MAX_NODES) {
            bail!(
                "{} nodes: a local cluster has 1 to {MAX_NODES}",
                self.nodes.len()
            );
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if n.name != format!("n{}", i + 1) {
                bail!("node {} is listed where n{} should be", n.name, i + 1);
            }
            if n.pid <= 1 || i32::try_from(n.pid).is_err() {
                bail!("node {} has pid {}, not a node's", n.name, n.pid);
            }
            if n.command.is_empty() {
                bail!("node {} has no command line", n.name);
            }
        }
        Ok(())
    }
}

impl Manifest {
    /// Starts node `i` again with its recorded command line (its log appended to), in its
    /// own process group so it outlives the caller, and records its new pid in `dir`. The
    /// returned child is the caller's to reap; dropping it leaves the node running.
    pub async fn restart(&mut self, i: usize, dir: &Path) -> anyhow::Result<std::process::Child> {
        let node = self.nodes.get_mut(i).context("no such node")?;
        // `cluster up` removes the record when it stops: a node started after that would
        // run with nobody to stop it.
        if !dir.join(FILE).exists() {
            bail!(
                "not starting node {} again: the cluster in {} is no longer up",
                node.name,
                dir.display()
            );
        }
        let (exe, args) = node
            .command
            .split_first()
            .with_context(|| format!("node {} has no command line", node.name))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("cannot open log file {}", node.log.display()))?;
        let log_err = log.try_clone()?;
        let mut cmd = std::process::Command::new(exe);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start node {} again", node.name))?;
        node.pid = child.id();
        // Until it has exec'd, the child's command line is still ours: wait for the node's.
        let deadline = Instant::now() + EXEC_LIMIT;
        while node.running_pid().is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "node {} exited at once ({status}); see {}",
                    node.name,
                    node.log.display()
                );
            }
            if Instant::now() > deadline {
                // Our own child, not yet in the record: stopped rather than left unnamed.
                let _ = child.kill();
                let _ = child.wait();
                bail!("node {} did not start within {EXEC_LIMIT:?}", node.name);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.write(dir)?;
        Ok(child)
    }
}

/// Stops `nodes` (processes not children of the caller): SIGTERM to each still running its
/// recorded command, then SIGKILL to those still running after `grace`. Reports on stderr.
pub async fn stop_records(nodes: &[NodeRecord], grace: Duration) {
    let running: Vec<&NodeRecord> = nodes
        .iter()
        .filter(|n| n.signal(libc::SIGTERM).is_ok())
        .collect();
    let deadline = Instant::now() + grace;
    for node in running {
        while node.running_pid().is_ok() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match node.signal(libc::SIGKILL) {
            Ok(()) => crate::output::note(&format!(
                "node {} (pid {}) did not stop within {grace:?}; killed it",
                node.name, node.pid
            )),
            Err(_) => {
                crate::output::note(&format!("node {} (pid {}) stopped", node.name, node.pid))
            }
        }
    }
}

impl NodeRecord {
    /// Checks that the recorded process still runs the recorded command line, and returns
    /// its pid: a pid reused by another program after the node exited is refused.
    pub fn running_pid(&self) -> anyhow::Result<libc::pid_t> {
        let pid = libc::pid_t::try_from(self.pid)
            .with_context(|| format!("node {} has pid {}, not a node's", self.name, self.pid))?;
        let proc = format!("/proc/{pid}/cmdline");
        let raw = match std::fs::read(&proc) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("node {} (pid {pid}) is not running", self.name)
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {proc}")),
        };
        let running: Vec<&[u8]> = raw
            .strip_suffix(&[0])
            .unwrap_or(&raw)
            .split(|b| *b == 0)
            .collect();
        let recorded: Vec<&[u8]> = self.command.iter().map(|a| a.as_bytes()).collect();
        if running != recorded {
            bail!(
                "pid {pid} no longer runs node {} (its command line differs from the record): \
                 not touching it",
                self.name
            );
        }
        Ok(pid)
    }

    /// Sends `signal` to the node's process, after [`NodeRecord::running_pid`]'s check.
    pub fn signal(&self, signal: libc::c_int) -> anyhow::Result<()> {
        let pid = self.running_pid()?;
        // SAFETY: kill(2) takes plain integers and touches no memory of ours; the pid was
        // just seen running this node's recorded command line.
        if unsafe { libc::kill(pid, signal) } != 0 {
            bail!(
                "cannot signal node {} (pid {pid}): {}",
                self.name,
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pid: u32, command: &[&str]) -> NodeRecord {
        NodeRecord {
            name: "n1".into(),
            addr: "127.0.0.1:7001".parse().unwrap(),
            data: "/c/n1".into(),
            log: "/c/n1.log".into(),
            pid,
            command: command.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_record_round_trips_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Manifest::read(dir.path())
            .unwrap_err()
            .to_string()
            .contains("cluster up"));
        let m = Manifest {
            certs: "/c/certs".into(),
            quorum: ClusterQuorum::for_nodes(1),
            fault_injection: true,
            nodes: vec![record(4242, &["ringctl", "serve"])],
        };
        m.write(dir.path()).unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap(), m);
        for bad in [
            Manifest {
                nodes: vec![],
                ..m.clone()
            },
            Manifest {
                nodes: vec![record(1, &["x"])],
                ..m.clone()
            },
            Manifest {
                nodes: vec![record(42, &[])],
                ..m.clone()
            },
            Manifest {
                nodes: vec![NodeRecord {
                    name: "n2".into(),
                    ..record(42, &["x"])
                }],
                ..m.clone()
            },
        ] {
            bad.write(dir.path()).unwrap();
            assert!(Manifest::read(dir.path()).is_err(), "{bad:?}");
        }
        std::fs::write(dir.path().join(FILE), "{").unwrap();
        assert!(Manifest::read(dir.path()).is_err());
        Manifest::remove(dir.path());
        assert!(!dir.path().join(FILE).exists());
    }

    #[test]
    fn only_a_process_running_the_recorded_command_is_signalled() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let same = record(pid, &["sleep", "30"]);
        // Until the child has exec'd, its command line is still this test's.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while same.running_pid().is_err() {
            assert!(std::time::Instant::now() < deadline, "sleep never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        let other = record(pid, &["sleep", "31"]);
        let err = other.signal(libc::SIGKILL).unwrap_err().to_string();
        assert!(err.contains("not touching it"), "{err}");
        assert!(
            matches!(child.try_wait(), Ok(None)),
            "a process not named was signalled"
        );
        let same = record(pid, &["sleep", "30"]);
        assert_eq!(same.running_pid().unwrap(), pid as libc::pid_t);
        same.signal(libc::SIGKILL).unwrap();
        child.wait().unwrap();
        assert!(same
            .running_pid()
            .unwrap_err()
            .to_string()
            .contains("not running"));
    }
}
