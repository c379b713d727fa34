//! Test harness: real `ringctl serve` processes on loopback, stopped by the harness itself.
//!
//! Every process a test starts is owned by a [`NodeProc`], which kills and reaps it on drop, so
//! a failing test never leaves a node behind.

pub mod sim;

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use ringkv::core::replication::ShardInfo;
use ringkv::net::{init_cluster, issue_node, TlsMaterial};
use ringkv::proto::MemberRow;
use ringkv::table::Mode;
use ringkv::{Api, Client};

/// The `ringctl` binary of this workspace, built on first use if `cargo test` did not.
pub fn ringctl_bin() -> Result<PathBuf> {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    if let Some(bin) = BIN.get() {
        return Ok(bin.clone());
    }
    // Test executables live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable has no target directory")?;
    let bin = profile_dir.join("ringctl");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "ringctl"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .context("building ringctl")?;
        if !status.success() || !bin.exists() {
            bail!("could not build ringctl at {}", bin.display());
        }
    }
    Ok(BIN.get_or_init(|| bin).clone())
}

/// Bound on one `ringctl` client command: far above its own `--timeout`, only a guard
/// against a hang.
pub const RINGCTL_HANG_LIMIT: Duration = Duration::from_secs(60);

/// Serialises the tests that start clusters within one test binary: a few nodes already
/// keep two cores busy, and failure detection must not starve behind another cluster.
/// A test that panicked while holding it does not poison the others.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Run `ringctl --node ADDR --certs CERTS ARGS` and collect its exit status and output,
/// killing it if it runs past [`RINGCTL_HANG_LIMIT`].
pub fn ringctl_at(node: SocketAddr, certs: &Path, args: &[&str]) -> Result<Output> {
    let mut cmd = Command::new(ringctl_bin()?);
    cmd.arg("--node")
        .arg(node.to_string())
        .arg("--certs")
        .arg(certs)
        .args(args)
        // The caller's environment must not steer the client or add log lines to stderr.
        .env_remove("RINGKV_NODE")
        .env_remove("RINGKV_CERTS")
        .env_remove("RUST_LOG");
    run_bounded(&mut cmd, RINGCTL_HANG_LIMIT).with_context(|| format!("ringctl {args:?}"))
}

/// Run `cmd` with no input and collect its exit status and output, killing it if it runs
/// past `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    // Drain both pipes while waiting, so a chatty command cannot block on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut out);
        }
        out
    })
}

/// A library client of the node at `node`, with the client certificate in `certs`.
pub fn client_at(node: SocketAddr, certs: &Path) -> Result<Client> {
    let tls = TlsMaterial::load_client(certs)?;
    // The client's endpoint belongs to the harness runtime.
    let _in_runtime = runtime().enter();
    Ok(Client::connect(node, &tls)?)
}

/// Poll `check` every 100 ms until it gives `Some` or `within` passes.
pub fn poll<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A loopback UDP port free right now.
pub fn free_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A loopback port free for both UDP and TCP right now (a node's QUIC endpoint and its
/// Redis front on the same port number, as `cluster up` runs them).
pub fn free_port_pair() -> Result<u16> {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no loopback port free for both UDP and TCP")
}

/// One `ringctl serve` process; killed and reaped on drop.
pub struct NodeProc {
    /// Node name.
    pub name: String,
    /// Its QUIC address.
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl NodeProc {
    /// The operating-system process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL: the node gets no chance to say goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the node stops answering without closing anything, as a host that hangs
    /// or drops off the network (SIGKILL on loopback lets the kernel refuse its port at
    /// once). [`Node::resume`] or dropping the node ends it.
    pub fn pause(&mut self) {
        self.signal("-STOP");
    }

    /// SIGHUP: the node reloads its certificates.
    pub fn reload(&mut self) {
        self.signal("-HUP");
    }

    /// SIGCONT after [`Node::pause`].
    pub fn resume(&mut self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = self.child.as_ref() {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }

    /// SIGTERM, then wait up to `within` for a graceful exit; true if it exited by itself.
    pub fn terminate(&mut self, within: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let pid = c.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Wait up to `within` for the process to exit on its own; its output if it did.
    pub fn wait_exit(&mut self, within: Duration) -> Option<Output> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(_))) => {
                    return self.child.take().and_then(|c| c.wait_with_output().ok())
                }
                Some(Ok(None)) => std::thread::sleep(Duration::from_millis(50)),
                _ => return None,
            }
        }
        None
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How to start one `ringctl serve`; see [`Cluster::launch`].
#[derive(Clone, Debug)]
pub struct Serve<'a> {
    /// Node name (`--name`).
    pub name: &'a str,
    /// Loopback port of its QUIC endpoint.
    pub port: u16,
    /// Nodes to join through.
    pub seeds: &'a [SocketAddr],
    /// Certificate directory (`--certs`).
    pub certs: PathBuf,
    /// Data directory (`--data`).
    pub data: PathBuf,
    /// Name of its log file in the cluster directory (without `.log`).
    pub log: &'a str,
    /// Further flags.
    pub extra: &'a [&'a str],
}

/// A cluster of `ringctl serve` processes in a temporary directory.
pub struct Cluster {
    /// Working directory: certificates, data directories, logs.
    pub dir: tempfile::TempDir,
    /// Nodes in start order (index 0 is the seed).
    pub nodes: Vec<NodeProc>,
}

impl Drop for Cluster {
    /// With `RINGKV_TEST_KEEP` set, a test that fails keeps its cluster directory (the nodes'
    /// logs and data) and prints where it is.
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("RINGKV_TEST_KEEP").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("cluster directory kept: {}", self.dir.path().display());
        }
    }
}

impl Cluster {
    /// Certificates for `names`, nobody started yet.
    pub fn prepare(names: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let certs = dir.path().join("certs");
        init_cluster(&certs)?;
        for name in names {
            issue_node(&certs, name, &[[127, 0, 0, 1].into()], &[])?;
        }
        Ok(Self {
            dir,
            nodes: Vec::new(),
        })
    }

    /// `n` nodes n1..nN joined through n1, all seeing each other alive.
    pub fn start(n: usize) -> Result<Self> {
        Self::start_with(n, &[])
    }

    /// Like [`Cluster::start`], each node with further `serve` flags.
    pub fn start_with(n: usize, extra: &[&str]) -> Result<Self> {
        let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut cluster = Self::prepare(&refs)?;
        for name in &names {
            let seeds: Vec<SocketAddr> =
                cluster.nodes.first().map(|s| s.addr).into_iter().collect();
            let node = cluster.spawn(name, free_port()?, &seeds, extra)?;
            cluster.nodes.push(node);
        }
        cluster.wait_alive(n, Duration::from_secs(20))?;
        Ok(cluster)
    }

    /// The certificate directory.
    pub fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// Start `ringctl serve` for `name` on `port` with its data in the cluster directory.
    pub fn spawn(
        &self,
        name: &str,
        port: u16,
        seeds: &[SocketAddr],
        extra: &[&str],
    ) -> Result<NodeProc> {
        self.spawn_with_certs(name, port, seeds, &self.certs(), extra)
    }

    /// Like [`Cluster::spawn`], with another certificate directory.
    pub fn spawn_with_certs(
        &self,
        name: &str,
        port: u16,
        seeds: &[SocketAddr],
        certs: &Path,
        extra: &[&str],
    ) -> Result<NodeProc> {
        self.launch(&Serve {
            name,
            port,
            seeds,
            certs: certs.to_path_buf(),
            data: self.data_dir(name),
            log: name,
            extra,
        })
    }

    /// The data directory [`Cluster::spawn`] gives node `name`.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Start `ringctl serve` exactly as `spec` says. Its stderr (the node's log) is appended
    /// to `<log>.log` in the cluster directory, so a restarted node's log keeps its past.
    pub fn launch(&self, spec: &Serve<'_>) -> Result<NodeProc> {
        let addr: SocketAddr = ([127, 0, 0, 1], spec.port).into();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(spec.log))?;
        let mut cmd = Command::new(ringctl_bin()?);
        cmd.arg("serve")
            .args(["--name", spec.name, "--listen", &addr.to_string()])
            .arg("--data")
            .arg(&spec.data)
            .arg("--certs")
            .arg(&spec.certs)
            .args(spec.extra)
            .env_remove("RINGKV_NODE")
            .env_remove("RINGKV_CERTS")
            // `RINGKV_TEST_LOG` (a `RUST_LOG` filter) turns up the nodes' logs when debugging.
            .env(
                "RUST_LOG",
                std::env::var("RINGKV_TEST_LOG").unwrap_or("info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for seed in spec.seeds {
            cmd.args(["--seed", &seed.to_string()]);
        }
        let child = cmd.spawn().context("starting ringctl serve")?;
        Ok(NodeProc {
            name: spec.name.into(),
            addr,
            child: Some(child),
        })
    }

    /// Replace node `i` (already killed or stopped) by a fresh process with the same name,
    /// port and data directory, joining through `seeds`.
    pub fn restart(&mut self, i: usize, seeds: &[SocketAddr]) -> Result<()> {
        self.restart_with(i, seeds, &[])
    }

    /// Like [`Cluster::restart`], with further `serve` flags.
    pub fn restart_with(&mut self, i: usize, seeds: &[SocketAddr], extra: &[&str]) -> Result<()> {
        self.nodes[i].kill();
        let (name, port) = (self.nodes[i].name.clone(), self.nodes[i].addr.port());
        self.nodes[i] = self.spawn(&name, port, seeds, extra)?;
        Ok(())
    }

    fn log_path(&self, log: &str) -> PathBuf {
        self.dir.path().join(format!("{log}.log"))
    }

    /// Poll the log `name` until it holds `needle` or `within` passes; the whole log if it did.
    pub fn wait_log(&self, name: &str, needle: &str, within: Duration) -> Option<String> {
        poll(within, || {
            Some(self.log(name)).filter(|l| l.contains(needle))
        })
    }

    /// What node `name` has logged so far.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// A library client of node `i`, with the cluster's client certificate.
    pub fn client(&self, i: usize) -> Result<Client> {
        client_at(self.nodes[i].addr, &self.certs())
    }

    /// Run `ringctl ARGS` against node `i` with the cluster's client certificate (bounded by
    /// [`RINGCTL_HANG_LIMIT`]).
    pub fn ringctl(&self, i: usize, args: &[&str]) -> Result<Output> {
        ringctl_at(self.nodes[i].addr, &self.certs(), args)
    }

    /// `ringctl ARGS` against node `i`: its stdout when it succeeds, else its stderr (or why
    /// it could not run).
    pub fn ringctl_text(&self, i: usize, args: &[&str]) -> std::result::Result<String, String> {
        let out = self.ringctl(i, args).map_err(|e| e.to_string())?;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        if out.status.success() {
            Ok(text(&out.stdout))
        } else {
            Err(text(&out.stderr))
        }
    }

    /// Node `i`'s view of the shard holding `key` (`ringctl -o json info replication --key`).
    pub fn replication_of(&self, i: usize, key: &str) -> Option<serde_json::Value> {
        let args = ["-o", "json", "info", "replication", "--key", key];
        let out = self.ringctl_text(i, &args).ok()?;
        let doc: serde_json::Value = serde_json::from_str(&out).ok()?;
        doc.as_array()?.first().cloned()
    }

    /// Wait until every running node sees `n` members alive.
    pub fn wait_alive(&self, n: usize, within: Duration) -> Result<()> {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].child.is_some())
            .collect();
        for i in running {
            self.wait_members(i, within, |rows| {
                rows.iter().filter(|m| m.state == "alive").count() == n
            })
            .with_context(|| format!("{} never saw {n} members alive", self.nodes[i].name))?;
        }
        Ok(())
    }

    /// Poll node `i`'s membership until `pred` holds or `within` passes.
    pub fn wait_members(
        &self,
        i: usize,
        within: Duration,
        pred: impl Fn(&[MemberRow]) -> bool,
    ) -> Result<Vec<MemberRow>> {
        self.wait_members_until(i, Instant::now() + within, pred)
    }

    /// Like [`Cluster::wait_members`], up to a deadline shared by several waits (one clock
    /// for "every survivor within 5 s", not 5 s each). At least one poll is made.
    pub fn wait_members_until(
        &self,
        i: usize,
        deadline: Instant,
        pred: impl Fn(&[MemberRow]) -> bool,
    ) -> Result<Vec<MemberRow>> {
        let client = self.client(i)?;
        let mut last = Vec::new();
        let mut first = true;
        while first || Instant::now() < deadline {
            first = false;
            if let Ok(rows) = block_on(client.members()) {
                if pred(&rows) {
                    return Ok(rows);
                }
                last = rows;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "membership of {} did not converge: {last:?}",
            self.nodes[i].name
        )
    }
}

impl Cluster {
    /// Whether node `i` is running.
    pub fn is_up(&mut self, i: usize) -> bool {
        self.nodes[i].is_running()
    }

    /// Set the mode of `prefix` through node `i`, then wait until every running node holds
    /// that rule.
    pub fn set_mode(&mut self, i: usize, prefix: &str, mode: Mode, within: Duration) -> Result<()> {
        let client = self.client(i)?;
        block_on(client.range_set(prefix.as_bytes().to_vec(), mode.clone()))
            .with_context(|| format!("range set {prefix}"))?;
        for j in 0..self.nodes.len() {
            if !self.is_up(j) {
                continue;
            }
            let client = self.client(j)?;
            poll(within, || {
                let rows = block_on(client.range_list()).ok()?;
                rows.iter()
                    .any(|r| r.prefix == prefix.as_bytes() && r.mode == mode)
                    .then_some(())
            })
            .with_context(|| {
                format!("{} never learned the rule for {prefix}", self.nodes[j].name)
            })?;
        }
        Ok(())
    }

    /// Node `i`'s view of the primary-mode shard holding `key`, if it has one.
    pub fn shard(&self, i: usize, key: &str) -> Option<ShardInfo> {
        let client = self.client(i).ok()?;
        let rows = block_on(client.replication(Some(key.as_bytes().to_vec()))).ok()?;
        rows.into_iter().next()
    }

    /// The running node that is primary of `key`'s shard by its own account (the highest
    /// epoch if several still think so), with its view of the shard.
    pub fn primary_of(&mut self, key: &str) -> Option<(usize, ShardInfo)> {
        let running: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.is_up(i)).collect();
        running
            .into_iter()
            .filter_map(|i| self.shard(i, key).map(|s| (i, s)))
            .filter(|(_, s)| s.role == "primary")
            .max_by_key(|(_, s)| s.epoch)
    }

    /// Index of the node named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }
}

/// The harness's tokio runtime (tests are plain `#[test]`s, possibly on several threads).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("test runtime: {e}"))
    })
}

/// Run a future on the harness runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}
