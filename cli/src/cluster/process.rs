//! One `ringctl serve` child of a local cluster: spawning it, noticing it exit, stopping it.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::output;

/// Bytes read from the end of a log to find its last line.
const LOG_TAIL_BYTES: u64 = 4096;

/// Replication settings handed to every child (`--n`, `--r`, `--w`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterQuorum {
    /// Replicas per key.
    pub n: u8,
    /// Read quorum.
    pub r: u8,
    /// Write quorum.
    pub w: u8,
}

impl ClusterQuorum {
    /// N = 3 (fewer when the cluster is smaller) with majority quorums, so every size works.
    pub fn for_nodes(nodes: u8) -> Self {
        let n = nodes.clamp(1, 3);
        let majority = n / 2 + 1;
        ClusterQuorum {
            n,
            r: majority,
            w: majority,
        }
    }
}

/// Where one node of the local cluster lives.
#[derive(Clone, Debug)]
pub struct NodePlan {
    /// Node name (`n1`, `n2`, ...).
    pub name: String,
    /// Its QUIC address on 127.0.0.1.
    pub addr: SocketAddr,
    /// Its data directory.
    pub data: PathBuf,
    /// File receiving its stdout and stderr.
    pub log: PathBuf,
}

/// How a node is started, kept to restart it the same way.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The `ringctl` executable.
    pub exe: PathBuf,
    /// The node it joins through.
    pub seed: SocketAddr,
    /// The certificate directory.
    pub certs: PathBuf,
    /// Replication settings.
    pub quorum: ClusterQuorum,
    /// Further `serve` flags (e.g. `--fault-injection`).
    pub extra: Vec<String>,
}

impl Launch {
    /// The `serve` arguments of node `plan` (after the executable).
    pub fn serve_args(&self, plan: &NodePlan) -> Vec<OsString> {
        let q = self.quorum;
        let mut args: Vec<OsString> = vec![
            "serve".into(),
            "--name".into(),
            plan.name.clone().into(),
            "--listen".into(),
            plan.addr.to_string().into(),
            "--seed".into(),
            self.seed.to_string().into(),
            "--data".into(),
            plan.data.clone().into(),
            "--certs".into(),
            self.certs.clone().into(),
            "--n".into(),
            q.n.to_string().into(),
            "--r".into(),
            q.r.to_string().into(),
            "--w".into(),
            q.w.to_string().into(),
            // A dev cluster stopped with Ctrl-C keeps its data in place for the next `up`.
            "--on-signal".into(),
            "stop".into(),
            // The Redis front on the same port number over TCP: the slot map names every
            // node's front at its QUIC port (see `ringkv::resp`).
            "--redis".into(),
            plan.addr.to_string().into(),
            "--redis-plaintext".into(),
        ];
        args.extend(self.extra.iter().map(OsString::from));
        args
    }

    /// The whole command line of node `plan`, the executable first.
    pub fn command_line(&self, plan: &NodePlan) -> Vec<OsString> {
        let mut line = vec![self.exe.clone().into_os_string()];
        line.extend(self.serve_args(plan));
        line
    }
}

/// A running (or exited) `ringctl serve` child.
pub struct NodeProcess {
    /// What it was started as.
    pub plan: NodePlan,
    child: Child,
    exited: Option<ExitStatus>,
    launch: Option<Launch>,
}

impl NodeProcess {
    /// The child's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// How it was started.
    pub fn launch_of(&self) -> Option<&Launch> {
        self.launch.as_ref()
    }

    /// Starts a node as `launch` says; `append` keeps the log of an earlier run.
    pub fn launch(plan: NodePlan, launch: Launch, append: bool) -> anyhow::Result<Self> {
        let exe = &launch.exe;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&plan.log)
            .with_context(|| format!("cannot create log file {}", plan.log.display()))?;
        let log_err = log
            .try_clone()
            .with_context(|| format!("cannot reopen log file {}", plan.log.display()))?;
        let mut cmd = Command::new(exe);
        cmd.args(launch.serve_args(&plan))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // A safety net for early returns; the normal path stops children with SIGTERM.
            .kill_on_drop(true);
        // Own process group: Ctrl-C in the terminal reaches only this process, which then
        // stops each node once, gracefully, instead of every node getting it at once.
        #[cfg(unix)]
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start node {} ({})", plan.name, exe.display()))?;
        Ok(NodeProcess {
            plan,
            child,
            exited: None,
            launch: Some(launch),
        })
    }

    /// Starts the node again as it was first started, its log appended to.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let launch = self
            .launch
            .clone()
            .context("no record of how the node was started")?;
        *self = Self::launch(self.plan.clone(), launch, true)?;
        Ok(())
    }

    /// SIGKILLs the child and reaps it.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child
            .kill()
            .await
            .with_context(|| format!("cannot kill node {}", self.plan.name))?;
        self.exited = self.child.try_wait().ok().flatten();
        Ok(())
    }

    /// Sends `signal` (SIGSTOP, SIGCONT) to the running child.
    #[cfg(unix)]
    pub fn signal(&mut self, signal: libc::c_int) -> anyhow::Result<()> {
        let pid = self
            .child
            .id()
            .and_then(|id| libc::pid_t::try_from(id).ok())
            .with_context(|| format!("node {} is not running", self.plan.name))?;
        // SAFETY: kill(2) takes plain integers and touches no memory of ours; the pid is our
        // own unreaped child, so it cannot have been reused by another process.
        if unsafe { libc::kill(pid, signal) } != 0 {
            bail!(
                "cannot signal node {}: {}",
                self.plan.name,
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Whether the child is still running as far as we know.
    pub fn is_running(&self) -> bool {
        self.exited.is_none()
    }

    /// Checks, without waiting, whether the child has exited; `Some` only the first time.
    pub fn poll_exit(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.exited.is_some() {
            return Ok(None);
        }
        let status = self
            .child
            .try_wait()
            .with_context(|| format!("cannot check on node {}", self.plan.name))?;
        self.exited = status;
        Ok(status)
    }

    /// Asks the child to leave the cluster and stop.
    fn terminate(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self
            .child
            .id()
            .and_then(|id| libc::pid_t::try_from(id).ok())
        {
            // SAFETY: kill(2) takes plain integers and touches no memory of ours; the pid is
            // our own unreaped child, so it cannot have been reused by another process.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            return;
        }
        let _ = self.child.start_kill();
    }

    /// A line about why the child stopped, pointing at its log.
    pub fn describe_exit(&self, status: ExitStatus) -> String {
        let mut line = format!("node {} exited ({status})", self.plan.name);
        if let Some(last) = log_tail(&self.plan.log) {
            line.push_str(&format!(", last log line: {last}"));
        }
        line.push_str(&format!("; see {}", self.plan.log.display()));
        line
    }
}

/// Sends SIGTERM to every running node, waits up to `grace` for all of them, then kills the
/// rest. Reports each outcome on stderr.
pub async fn stop_all(nodes: &mut [NodeProcess], grace: Duration) {
    for node in nodes.iter_mut().filter(|n| n.is_running()) {
        node.terminate();
    }
    let deadline = Instant::now() + grace;
    for node in nodes.iter_mut().filter(|n| n.is_running()) {
        let name = node.plan.name.clone();
        match tokio::time::timeout_at(deadline, node.child.wait()).await {
            Ok(Ok(status)) => {
                node.exited = Some(status);
                output::note(&format!("node {name} stopped ({status})"));
            }
            Ok(Err(e)) => output::note(&format!("cannot wait for node {name}: {e}")),
            Err(_) => match node.child.kill().await {
                Ok(()) => output::note(&format!(
                    "node {name} did not stop within {grace:?}; killed it"
                )),
                Err(e) => output::note(&format!("cannot kill node {name}: {e}")),
            },
        }
    }
}

/// `count` distinct ports free for UDP and TCP on 127.0.0.1, or `base..base+count` when given.
pub fn choose_ports(count: u8, base: Option<u16>) -> anyhow::Result<Vec<u16>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if let Some(base) = base {
        let last = u32::from(base) + u32::from(count) - 1;
        if last > u32::from(u16::MAX) {
            bail!(
                "--base-port {base} leaves no room for {count} nodes (last port would be {last})"
            );
        }
        return Ok((0..u16::from(count)).map(|i| base + i).collect());
    }
    // Hold every socket until all are chosen so the ports differ; a race with another
    // program between here and the node binding is possible but unlikely.
    // Each port must be free for TCP too (the node's Redis front).
    let mut held = Vec::with_capacity(usize::from(count));
    for _ in 0..usize::from(count) * PORT_TRIES {
        if held.len() == usize::from(count) {
            break;
        }
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .context("cannot find a free UDP port on 127.0.0.1")?;
        let port = udp.local_addr().context("cannot read a bound port")?.port();
        if let Ok(tcp) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            held.push((port, udp, tcp));
        }
    }
    if held.len() < usize::from(count) {
        bail!("cannot find {count} ports free for both UDP and TCP on 127.0.0.1");
    }
    Ok(held.into_iter().map(|(port, _, _)| port).collect())
}

/// Free UDP ports tried per node for one that is free for TCP as well.
const PORT_TRIES: usize = 20;

/// The last non-empty line of a log file, if it can be read.
pub fn log_tail(path: &Path) -> Option<String> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))
        .ok()?;
    let mut tail = Vec::new();
    file.take(LOG_TAIL_BYTES).read_to_end(&mut tail).ok()?;
    String::from_utf8_lossy(&tail)
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_fits_every_cluster_size() {
        let q = |n, r, w| ClusterQuorum { n, r, w };
        assert_eq!(ClusterQuorum::for_nodes(1), q(1, 1, 1));
        assert_eq!(ClusterQuorum::for_nodes(2), q(2, 2, 2));
        assert_eq!(ClusterQuorum::for_nodes(3), q(3, 2, 2));
        assert_eq!(ClusterQuorum::for_nodes(7), q(3, 2, 2));
    }

    #[test]
    fn base_port_gives_consecutive_ports_and_refuses_overflow() {
        assert_eq!(choose_ports(3, Some(7000)).unwrap(), [7000, 7001, 7002]);
        assert_eq!(choose_ports(2, Some(65534)).unwrap(), [65534, 65535]);
        assert!(choose_ports(3, Some(65534)).is_err());
    }

    #[test]
    fn free_ports_are_distinct() {
        let mut ports = choose_ports(5, None).unwrap();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 5);
        assert!(ports.iter().all(|p| *p != 0));
    }

    #[test]
    fn log_tail_is_the_last_non_empty_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n1.log");
        assert_eq!(log_tail(&path), None);
        std::fs::write(&path, "first\nlast one\n\n").unwrap();
        assert_eq!(log_tail(&path).as_deref(), Some("last one"));
        let long = format!("{}\nend\n", "x".repeat(10_000));
        std::fs::write(&path, long).unwrap();
        assert_eq!(log_tail(&path).as_deref(), Some("end"));
    }
}
