//! The cluster a chaos run faults: one it starts itself (its own directory, nodes with
//! `--fault-injection`, every process stopped by pid at the end), or one `ringctl cluster up`
//! already runs (`--cluster DIR`), found through its record and left running at the end (a
//! node killed and restarted is recorded there under its new pid, for `cluster up` to stop).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use ringkv::faults::{FaultError, FaultPlan, FaultRequest};
use ringkv::net::TlsMaterial;
use ringkv::Client;
use tokio::time::Instant;

use crate::cluster::manifest::Manifest;
use crate::cluster::process::{self, ClusterQuorum, Launch, NodePlan, NodeProcess};
use crate::cluster::{self as local, STOP_GRACE};
use crate::output;

use super::nemesis::{Direction, Event, FaultKind};
use super::workload;

/// Bound on the cluster coming up and on a healed cluster being seen alive.
pub const READY_LIMIT: Duration = Duration::from_secs(60);
/// Bound on a node killed by SIGKILL being gone.
const KILL_LIMIT: Duration = Duration::from_secs(5);
/// Bound on setting one node's faults.
const SET_FAULTS_LIMIT: Duration = Duration::from_secs(5);

/// The nodes' processes.
enum Procs {
    /// Started by this run, which stops them at the end.
    Owned(Vec<NodeProcess>),
    /// Run by `cluster up`; signalled only while they run their recorded command lines.
    Attached {
        /// The record, with the pids of nodes this run restarted.
        manifest: Manifest,
        /// The cluster directory holding the record.
        dir: PathBuf,
        /// Nodes this run restarted: left running, reaped if they exit before the run ends.
        restarted: Vec<std::process::Child>,
    },
}

/// The cluster under test.
pub struct Cluster {
    /// Name, address, data and log of every node, n1 first.
    pub plans: Vec<NodePlan>,
    procs: Procs,
    /// One client per node, for admin requests and the checker's reads.
    pub admins: Vec<Client>,
    /// The certificate directory.
    pub certs: PathBuf,
    /// Replication settings.
    pub quorum: ClusterQuorum,
    killed: Vec<bool>,
    paused: Vec<bool>,
}

impl Cluster {
    /// Starts a cluster of `nodes` in `dir`.
    pub async fn start(dir: &Path, nodes: u8) -> anyhow::Result<Self> {
        let certs = dir.join("certs");
        let plans = local::plan_nodes(dir, nodes, None)?;
        local::prepare_certs(&certs, &plans)?;
        let quorum = ClusterQuorum::for_nodes(nodes);
        let seed = plans
            .first()
            .map(|p| p.addr)
            .context("a cluster needs a node")?;
        let launch = Launch {
            exe: std::env::current_exe().context("cannot find the ringctl executable")?,
            seed,
            certs: certs.clone(),
            quorum,
            extra: vec!["--fault-injection".into()],
        };
        let mut procs = Vec::new();
        for plan in &plans {
            std::fs::create_dir_all(&plan.data)?;
            match NodeProcess::launch(plan.clone(), launch.clone(), false) {
                Ok(p) => procs.push(p),
                Err(e) => {
                    process::stop_all(&mut procs, STOP_GRACE).await;
                    return Err(e);
                }
            }
        }
        if let Err(e) = local::wait_ready(&mut procs, &certs, seed, READY_LIMIT).await {
            process::stop_all(&mut procs, STOP_GRACE).await;
            return Err(e);
        }
        Self::new(plans, Procs::Owned(procs), certs, quorum)
    }

    /// The cluster `cluster up` runs in `dir`, once every node is seen running its recorded
    /// command line and alive. Refuses up front the fault kinds of `kinds` it cannot apply.
    pub async fn attach(dir: &Path, kinds: &BTreeSet<FaultKind>) -> anyhow::Result<Self> {
        let m = Manifest::read(dir)?;
        if m.nodes.len() < 3 {
            bail!(
                "the cluster in {} has {} node(s); chaos needs at least 3",
                dir.display(),
                m.nodes.len()
            );
        }
        for n in &m.nodes {
            n.running_pid()
                .with_context(|| format!("is the cluster in {} still up?", dir.display()))?;
        }
        let plans: Vec<NodePlan> = m
            .nodes
            .iter()
            .map(|n| NodePlan {
                name: n.name.clone(),
                addr: n.addr,
                data: n.data.clone(),
                log: n.log.clone(),
            })
            .collect();
        let names: Vec<String> = plans.iter().map(|p| p.name.clone()).collect();
        local::wait_alive(&m.certs, plans[0].addr, &names, dir, READY_LIMIT, || {
            m.nodes.iter().try_for_each(|n| n.running_pid().map(drop))
        })
        .await?;
        let injected: Vec<&str> = [FaultKind::Partition, FaultKind::Clock, FaultKind::SlowDisk]
            .into_iter()
            .filter(|k| kinds.contains(k))
            .map(FaultKind::name)
            .collect();
        let (certs, quorum) = (m.certs.clone(), m.quorum);
        let procs = Procs::Attached {
            manifest: m,
            dir: dir.to_path_buf(),
            restarted: Vec::new(),
        };
        let cluster = Self::new(plans, procs, certs, quorum)?;
        if !injected.is_empty() {
            for (admin, plan) in cluster.admins.iter().zip(&cluster.plans) {
                match admin.faults(FaultRequest::Get).await {
                    Ok(current) if current.is_healed() => {}
                    Ok(current) => {
                        // Left by an earlier run that did not finish: healed before the
                        // baseline is measured.
                        output::note(&format!(
                            "node {} had faults set ({current:?}); healing them",
                            plan.name
                        ));
                        admin
                            .faults(FaultRequest::Set(FaultPlan::default()))
                            .await
                            .with_context(|| format!("healing {}", plan.name))?;
                    }
                    Err(ringkv::Error::Fault(FaultError::Disabled(_))) => bail!(
                        "fault(s) `{}` need nodes started with `serve --fault-injection`, and \
                         node {} of {} was not: start the cluster with `ringctl cluster up \
                         --fault-injection`, or leave them out of --faults",
                        injected.join("`, `"),
                        plan.name,
                        dir.display()
                    ),
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("asking {} for its faults", plan.name))
                    }
                }
            }
        }
        Ok(cluster)
    }

    fn new(
        plans: Vec<NodePlan>,
        procs: Procs,
        certs: PathBuf,
        quorum: ClusterQuorum,
    ) -> anyhow::Result<Self> {
        let tls = TlsMaterial::load_client(&certs)?;
        let admins = plans
            .iter()
            .map(|p| workload::client(p.addr, &tls))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Cluster {
            killed: vec![false; plans.len()],
            paused: vec![false; plans.len()],
            plans,
            procs,
            admins,
            certs,
            quorum,
        })
    }

    /// The nodes' addresses, n1 first.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.plans.iter().map(|p| p.addr).collect()
    }

    /// Ends the run's hold on the cluster: a cluster it started is stopped (paused nodes
    /// resumed first); one `cluster up` runs is resumed and healed, and keeps running.
    pub async fn finish(&mut self) {
        for i in 0..self.plans.len() {
            if self.paused[i] {
                if let Err(e) = self.signal(i, libc::SIGCONT) {
                    output::note(&format!("{e:#}"));
                }
                self.paused[i] = false;
            }
        }
        match &mut self.procs {
            Procs::Owned(procs) => process::stop_all(procs, STOP_GRACE).await,
            Procs::Attached {
                manifest,
                dir,
                restarted,
            } => {
                // A node killed and not yet started again (the run was stopped) is started
                // now: the cluster is left as found.
                for (i, killed) in self.killed.iter_mut().enumerate() {
                    if *killed {
                        match manifest.restart(i, dir).await {
                            Ok(child) => restarted.push(child),
                            Err(e) => output::note(&format!("{e:#}")),
                        }
                        *killed = false;
                    }
                }
                // Restarted nodes keep running; only those that already exited are reaped.
                for child in restarted.iter_mut() {
                    let _ = child.try_wait();
                }
                for i in 0..self.plans.len() {
                    if let Err(e) = self.set_faults(i, FaultPlan::default()).await {
                        output::note(&format!("{e:#}; its faults last until it restarts"));
                    }
                }
            }
        }
    }

    fn signal(&mut self, i: usize, signal: libc::c_int) -> anyhow::Result<()> {
        match &mut self.procs {
            Procs::Owned(procs) => procs[i].signal(signal),
            Procs::Attached { manifest, .. } => manifest.nodes[i].signal(signal),
        }
    }

    /// Sets node `i`'s faults, retrying for a while: a node just restarted may not answer
    /// yet.
    async fn set_faults(&self, i: usize, plan: FaultPlan) -> anyhow::Result<()> {
        let deadline = Instant::now() + SET_FAULTS_LIMIT;
        loop {
            match self.admins[i].faults(FaultRequest::Set(plan.clone())).await {
                Ok(_) => return Ok(()),
                Err(ringkv::Error::Transport(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("setting faults on {}", self.plans[i].name))
                }
            }
        }
    }

    /// Applies `e`.
    pub async fn apply(&mut self, e: &Event) -> anyhow::Result<()> {
        for &i in &e.nodes {
            match e.kind {
                FaultKind::Kill => {
                    match &mut self.procs {
                        Procs::Owned(procs) => procs[i].kill().await?,
                        Procs::Attached { manifest, .. } => {
                            let node = &manifest.nodes[i];
                            node.signal(libc::SIGKILL)?;
                            // `cluster up` reaps it; its ports are free once it is gone.
                            let deadline = Instant::now() + KILL_LIMIT;
                            while node.running_pid().is_ok() {
                                if Instant::now() > deadline {
                                    bail!(
                                        "node {} still runs {KILL_LIMIT:?} after SIGKILL",
                                        node.name
                                    );
                                }
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                    self.killed[i] = true;
                }
                FaultKind::Pause => {
                    self.signal(i, libc::SIGSTOP)?;
                    self.paused[i] = true;
                }
                FaultKind::Partition => {
                    // By address: a node just restarted applies the cut before it has heard
                    // of its peers again.
                    let others: BTreeSet<String> = (0..self.plans.len())
                        .filter(|o| !e.nodes.contains(o))
                        .map(|o| self.plans[o].addr.to_string())
                        .collect();
                    let dir = e.direction.unwrap_or(Direction::Both);
                    let plan = FaultPlan {
                        drop_from: if dir != Direction::Out {
                            others.clone()
                        } else {
                            BTreeSet::new()
                        },
                        drop_to: if dir != Direction::In {
                            others
                        } else {
                            BTreeSet::new()
                        },
                        ..FaultPlan::default()
                    };
                    self.set_faults(i, plan).await?;
                }
                FaultKind::Clock => {
                    let plan = FaultPlan {
                        clock_offset_ms: e.amount.unwrap_or(0),
                        ..FaultPlan::default()
                    };
                    self.set_faults(i, plan).await?;
                }
                FaultKind::SlowDisk => {
                    let plan = FaultPlan {
                        sync_delay_ms: e.amount.unwrap_or(0).unsigned_abs(),
                        ..FaultPlan::default()
                    };
                    self.set_faults(i, plan).await?;
                }
            }
        }
        Ok(())
    }

    /// Heals `e`.
    pub async fn heal(&mut self, e: &Event) -> anyhow::Result<()> {
        for &i in &e.nodes {
            self.heal_node(i).await?;
        }
        Ok(())
    }

    async fn heal_node(&mut self, i: usize) -> anyhow::Result<()> {
        if self.killed[i] {
            match &mut self.procs {
                Procs::Owned(procs) => procs[i].restart()?,
                Procs::Attached {
                    manifest,
                    dir,
                    restarted,
                } => restarted.push(manifest.restart(i, dir).await?),
            }
            self.killed[i] = false;
        } else if self.paused[i] {
            self.signal(i, libc::SIGCONT)?;
            self.paused[i] = false;
        } else {
            self.set_faults(i, FaultPlan::default()).await?;
        }
        Ok(())
    }

    /// Heals every node and waits until the first sees them all alive.
    pub async fn heal_all(&mut self) -> anyhow::Result<()> {
        for i in 0..self.plans.len() {
            if self.killed[i] || self.paused[i] {
                self.heal_node(i).await?;
            }
        }
        let seed = self.plans[0].addr;
        match &mut self.procs {
            Procs::Owned(procs) => {
                local::wait_ready(procs, &self.certs, seed, READY_LIMIT).await?;
            }
            Procs::Attached { manifest, dir, .. } => {
                let names: Vec<String> = self.plans.iter().map(|p| p.name.clone()).collect();
                local::wait_alive(&self.certs, seed, &names, dir, READY_LIMIT, || {
                    manifest
                        .nodes
                        .iter()
                        .try_for_each(|n| n.running_pid().map(drop))
                })
                .await?;
            }
        }
        for i in 0..self.plans.len() {
            // Already healed by the schedule; a failure here leaves a fault in place.
            self.set_faults(i, FaultPlan::default()).await?;
        }
        Ok(())
    }
}
