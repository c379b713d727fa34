//! `ringctl chaos`: a chaos benchmark on a local multi-process cluster. It starts its own
//! cluster (nodes with `--fault-injection`) or uses one `cluster up` runs, runs closed-loop clients through every node
//! while a seeded nemesis kills, pauses, partitions, skews clocks and slows disks, heals,
//! lets the cluster settle, checks what survived, prints a verdict and writes a report.

mod checker;
mod cluster;
mod nemesis;
mod report;
mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ringkv::net::TlsMaterial;
use ringkv::table::{Mode, PrimaryOptions, SyncReplicas};
use ringkv::{Api, WriteOptions};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cluster::MAX_NODES;
use crate::signal::StopSignals;
use crate::{args, output, Global};

use checker::Findings;
use cluster::{Cluster, READY_LIMIT};
use nemesis::{FaultKind, Plan, Schedule, Step};
use report::{FaultRecord, Report};
use workload::{Outcome, Shared, Workload, WorkloadKind, PRIMARY_PREFIX};

/// Nodes of the cluster a run starts unless `--nodes` says otherwise.
const DEFAULT_NODES: u8 = 5;
/// Longest run.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most clients.
pub const MAX_CONCURRENCY: u32 = 256;
/// How often the progress bar is redrawn.
const TICK: Duration = Duration::from_millis(250);

/// `ringctl chaos`.
#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// Nodes of the local cluster (n1, n2, ...); default 5.
    #[arg(long, conflicts_with = "cluster", value_parser = clap::value_parser!(u8).range(3..=i64::from(MAX_NODES)))]
    pub nodes: Option<u8>,
    /// How long the workload runs, e.g. `60s`, `5m`.
    #[arg(long, default_value = "60s", value_parser = run_length)]
    pub duration: Duration,
    /// Kinds of fault, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "kill,pause,partition,clock,slow-disk"
    )]
    pub faults: Vec<FaultKind>,
    /// Which keys go to primary mode: none, all, or half the clients' keys.
    #[arg(long, value_enum, default_value_t = WorkloadKind::Quorum)]
    pub workload: WorkloadKind,
    /// Replicas a primary-mode write waits for: `none`, a count, or `majority`.
    #[arg(long, default_value = "majority", value_parser = crate::range::sync_replicas)]
    pub sync_replicas: SyncReplicas,
    /// Clients, each with one request in flight, spread over the nodes.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CONCURRENCY)))]
    pub concurrency: u32,
    /// Seed of the schedule and the clients' choices (random when absent; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Replay this fault schedule (as printed by an earlier run) instead of drawing one.
    #[arg(long, value_parser = |s: &str| s.parse::<Schedule>())]
    pub schedule: Option<Schedule>,
    /// Most nodes faulted at once (default: a minority); a replayed schedule is held to it.
    #[arg(long)]
    pub max_faulted: Option<usize>,
    /// Quiet time after healing, before the check, e.g. `10s`.
    #[arg(long, default_value = "10s", value_parser = settle_length)]
    pub settle: Duration,
    /// Bound on the final check's retries of reads that fail.
    #[arg(long, default_value = "60s", value_parser = settle_length)]
    pub check_within: Duration,
    /// Write report.json and report.html into this directory.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Directory of the cluster's certificates, data and logs (default: a new one under the
    /// system's temporary directory, removed after a clean run).
    #[arg(long, conflicts_with = "cluster")]
    pub dir: Option<PathBuf>,
    /// Run against the cluster `ringctl cluster up --dir DIR` runs instead of starting one; it
    /// keeps running afterwards (a killed node restarted under a new pid, recorded in
    /// DIR/cluster.json). `partition`, `clock` and `slow-disk` need `cluster up
    /// --fault-injection`; `--workload primary|mixed` leaves keys under `p/` in primary mode.
    #[arg(long, value_name = "DIR")]
    pub cluster: Option<PathBuf>,
}

impl ChaosArgs {
    /// The workload's name as the flag takes it.
    fn settings_workload(&self) -> String {
        use clap::ValueEnum as _;
        self.workload
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

fn run_length(s: &str) -> Result<Duration, String> {
    args::duration_within(s, Duration::from_secs(5), MAX_DURATION)
}

fn settle_length(s: &str) -> Result<Duration, String> {
    args::duration_within(s, Duration::from_secs(0), Duration::from_secs(600))
}

/// Runs the benchmark; exit status 0 only when the verdict is clean.
pub async fn run(_g: &Global, a: ChaosArgs) -> anyhow::Result<ExitCode> {
    let mut signals = StopSignals::install()?;
    let seed = a.seed.unwrap_or_else(rand::random);
    // A cluster `cluster up` runs is read first: its size shapes the schedule.
    let attached = match &a.cluster {
        Some(dir) => Some(
            dir.canonicalize()
                .with_context(|| format!("cannot find cluster directory {}", dir.display()))?,
        ),
        None => None,
    };
    let manifest = match &attached {
        Some(dir) => Some(crate::cluster::manifest::Manifest::read(dir)?),
        None => None,
    };
    let n = manifest
        .as_ref()
        .map_or(usize::from(a.nodes.unwrap_or(DEFAULT_NODES)), |m| {
            m.nodes.len()
        });
    let max_faulted = a.max_faulted.unwrap_or((n - 1) / 2).min(n);
    let schedule = match &a.schedule {
        Some(s) => {
            s.check(n, max_faulted).map_err(anyhow::Error::msg)?;
            s.clone()
        }
        None => Schedule::generate(
            &Plan {
                nodes: n,
                duration: a.duration.as_secs_f64(),
                kinds: a.faults.clone(),
                max_faulted,
            },
            seed,
        ),
    };
    if schedule.end() > a.duration.as_secs_f64() {
        output::note("faults still on when the workload ends are healed then");
    }
    let replay = replay_command(&a, n, seed, &schedule);

    output::emit(&format!(
        "chaos: {n} nodes{}, {} of {} workload, seed {seed}\nschedule: {schedule}\nreplay: {replay}\n",
        if let Some(dir) = &attached {
            format!(" of the cluster in {}", dir.display())
        } else {
            String::new()
        },
        humantime::format_duration(a.duration),
        a.settings_workload()
    ))?;
    let (mut cluster, dir, temporary) = match &attached {
        Some(dir) => {
            // Refused up front: what the schedule holds and what --faults asks for.
            let kinds = schedule
                .events
                .iter()
                .map(|e| e.kind)
                .chain(
                    a.schedule
                        .is_none()
                        .then_some(a.faults.iter().copied())
                        .into_iter()
                        .flatten(),
                )
                .collect();
            (Cluster::attach(dir, &kinds).await?, dir.clone(), false)
        }
        None => {
            let (dir, temporary) = match &a.dir {
                Some(d) => (d.clone(), false),
                None => (
                    std::env::temp_dir()
                        .join(format!("ringkv-chaos-{}-{seed}", std::process::id())),
                    true,
                ),
            };
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let dir = dir.canonicalize()?;
            let n = u8::try_from(n).context("too many nodes")?;
            (Cluster::start(&dir, n).await?, dir, temporary)
        }
    };
    let outcome = tokio::select! {
        r = run_on(&a, &mut cluster, seed, &schedule, replay) => r,
        sig = signals.recv() => Err(anyhow::anyhow!(
            "{} received: {}",
            sig?,
            if attached.is_some() { "healing the cluster, which keeps running" } else { "stopping every node" }
        )),
    };
    cluster.finish().await;
    let report = outcome?;
    output::emit(&report.table())?;
    if let Some(path) = &a.report {
        report.write(path)?;
        output::note(&format!("report written to {}/report.html", path.display()));
    }
    if report.clean {
        if temporary {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(ExitCode::SUCCESS)
    } else {
        output::note(&format!(
            "the cluster's data and logs are kept in {}",
            dir.display()
        ));
        Ok(ExitCode::FAILURE)
    }
}

/// The command that repeats a run.
fn replay_command(a: &ChaosArgs, nodes: usize, seed: u64, schedule: &Schedule) -> String {
    use clap::ValueEnum as _;
    let name = |v: Option<clap::builder::PossibleValue>| {
        v.map(|v| v.get_name().to_string()).unwrap_or_default()
    };
    let faults: Vec<String> = a
        .faults
        .iter()
        .map(|f| name(f.to_possible_value()))
        .collect();
    let sync = match a.sync_replicas {
        SyncReplicas::None => "none".to_string(),
        SyncReplicas::Majority => "majority".to_string(),
        SyncReplicas::Count(k) => k.to_string(),
    };
    let cluster = match &a.cluster {
        Some(dir) => format!(
            "--cluster {}",
            crate::cluster::shell_quote(&dir.display().to_string())
        ),
        None => format!("--nodes {nodes}"),
    };
    let max_faulted = a
        .max_faulted
        .map_or_else(String::new, |m| format!(" --max-faulted {m}"));
    format!(
        "ringctl chaos {cluster} --duration {} --faults {} --workload {} --sync-replicas {sync} \
         --concurrency {}{max_faulted} --seed {seed} --settle {} --schedule '{schedule}'",
        flag_duration(a.duration),
        faults.join(","),
        a.settings_workload(),
        a.concurrency,
        flag_duration(a.settle),
    )
}

/// A duration as one shell word the duration flags parse back (`1m30s`, not `1m 30s`).
fn flag_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string().replace(' ', "")
}

/// Everything between the cluster coming up and it stopping.
async fn run_on(
    a: &ChaosArgs,
    cluster: &mut Cluster,
    seed: u64,
    schedule: &Schedule,
    replay: String,
) -> anyhow::Result<Report> {
    let tls = TlsMaterial::load_client(&cluster.certs)?;
    let primary = a.workload != WorkloadKind::Quorum;
    if primary {
        prepare_primary(cluster, a.sync_replicas).await?;
    }
    let w = Workload {
        kind: a.workload,
        linearizable: primary && a.sync_replicas == SyncReplicas::Majority,
        concurrency: a.concurrency,
        seed,
        run: run_tag(),
    };
    let shared = Shared::new();
    let addrs = cluster.addrs();
    let mut clients = JoinSet::new();
    for id in 0..w.concurrency {
        let node = id as usize % addrs.len();
        let api = workload::client(addrs[node], &tls)?;
        clients.spawn(workload::run_client(
            w.clone(),
            id,
            node,
            api,
            shared.clone(),
        ));
    }

    let bar = progress_bar(a.duration);
    let mut applied: Vec<(usize, f64, Option<f64>)> = Vec::new();
    let mut notes = Vec::new();
    let steps = schedule.timeline();
    let mut next = 0;
    let end = shared.started + a.duration;
    let mut tick = tokio::time::interval(TICK);
    while Instant::now() < end {
        while next < steps.len() && shared.started + steps[next].0 <= Instant::now() {
            let now = shared.started.elapsed().as_secs_f64();
            match steps[next].1 {
                Step::Start(i) => {
                    let e = &schedule.events[i];
                    // A fault that could not be applied is reported, not counted.
                    match cluster.apply(e).await {
                        Ok(()) => applied.push((i, now, None)),
                        Err(err) => {
                            notes.push(format!("{now:.1}s {} not applied: {err:#}", e.label()))
                        }
                    }
                }
                Step::Heal(i) => {
                    if let Err(err) = cluster.heal(&schedule.events[i]).await {
                        notes.push(format!(
                            "{:.1}s heal {}: {err:#}",
                            now,
                            schedule.events[i].label()
                        ));
                    }
                    if let Some(slot) = applied
                        .iter_mut()
                        .find(|(j, _, end)| *j == i && end.is_none())
                    {
                        slot.2 = Some(now);
                    }
                }
            }
            next += 1;
        }
        bar.set_position(shared.started.elapsed().as_secs().min(a.duration.as_secs()));
        bar.set_message(format!(
            "{} ops, {} errors",
            shared.ops.load(Ordering::Relaxed),
            shared.errors.load(Ordering::Relaxed)
        ));
        tick.tick().await;
    }
    shared.stop.store(true, Ordering::Relaxed);
    bar.finish_and_clear();
    let mut ops = Vec::new();
    while let Some(done) = clients.join_next().await {
        ops.extend(done.context("a client task failed")?);
    }
    let run_end = shared.started.elapsed().as_secs_f64();
    for note in &notes {
        output::note(&format!("nemesis: {note}"));
    }

    // The phases after the workload take a while too: a spinner says which one runs.
    let phase = ProgressBar::new_spinner();
    phase.enable_steady_tick(TICK);
    phase.set_message("healing every node");
    let healing = Instant::now();
    cluster.heal_all().await.context("healing the cluster")?;
    let heal_s = healing.elapsed().as_secs_f64();
    phase.set_message(format!(
        "settling for {}",
        humantime::format_duration(a.settle)
    ));
    tokio::time::sleep(a.settle).await;
    phase.set_message(format!("checking {} operations", ops.len()));

    let mut findings = Findings::default();
    let expect = checker::expectations(&ops);
    checker::check_reads(
        &cluster.admins,
        expect.clone(),
        cluster.quorum.n,
        a.check_within,
        seed,
        &mut findings,
    )
    .await;
    checker::check_convergence(
        &cluster.admins,
        &expect,
        a.check_within,
        seed,
        &mut findings,
    )
    .await;
    if w.linearizable {
        let lin_ops: Vec<workload::Op> = ops
            .iter()
            .filter(|o| {
                matches!(
                    o.kind,
                    workload::OpKind::LinRead | workload::OpKind::LinWrite
                )
            })
            .cloned()
            .collect();
        let mut lin = Findings::default();
        let lin = tokio::task::spawn_blocking(move || {
            checker::check_linearizable(&lin_ops, &mut lin);
            lin
        })
        .await?;
        findings.not_linearizable = lin.not_linearizable;
        findings.lin_ops = lin.lin_ops;
    }

    phase.finish_and_clear();
    let seconds = run_end.ceil() as u64;
    let series = report::series(&ops, seconds);
    let faults: Vec<FaultRecord> = applied
        .iter()
        .map(|(i, start, end)| {
            FaultRecord::new(
                &schedule.events[*i],
                *start,
                end.unwrap_or(run_end),
                &series,
            )
        })
        .collect();
    let count = |o: Outcome| ops.iter().filter(|op| op.outcome == o).count() as u64;
    let mut settings = BTreeMap::new();
    settings.insert("nodes".into(), cluster.plans.len().to_string());
    if let Some(dir) = &a.cluster {
        settings.insert("cluster".into(), dir.display().to_string());
    }
    settings.insert(
        "duration".into(),
        humantime::format_duration(a.duration).to_string(),
    );
    settings.insert(
        "workload".into(),
        format!("{:?}", a.workload).to_lowercase(),
    );
    settings.insert("sync_replicas".into(), format!("{:?}", a.sync_replicas));
    settings.insert("concurrency".into(), a.concurrency.to_string());
    settings.insert("seed".into(), seed.to_string());
    settings.insert(
        "max_faulted".into(),
        a.max_faulted.map_or("minority".into(), |m| m.to_string()),
    );
    Ok(Report {
        replay,
        settings,
        schedule: schedule.to_string(),
        ops: ops.len() as u64,
        ok: count(Outcome::Ok),
        failed: count(Outcome::Failed),
        unknown: count(Outcome::Unknown),
        heal_s,
        settle_s: a.settle.as_secs_f64(),
        clean: findings.clean(),
        findings,
        faulted_writes: report::faulted_writes(&ops, &faults),
        faults,
        nemesis_notes: notes,
        series,
    })
}

/// Sets the primary-mode prefix, waits until every node has the rule and a write under it
/// succeeds (a first primary elected and serving).
async fn prepare_primary(cluster: &Cluster, sync: SyncReplicas) -> anyhow::Result<()> {
    let mode = Mode::Primary(PrimaryOptions {
        sync,
        ..PrimaryOptions::default()
    });
    cluster.admins[0]
        .range_set(PRIMARY_PREFIX.as_bytes().to_vec(), mode)
        .await
        .context("setting the primary-mode prefix")?;
    let deadline = Instant::now() + READY_LIMIT;
    for api in &cluster.admins {
        loop {
            let has = api
                .range_list()
                .await
                .is_ok_and(|rows| rows.iter().any(|r| r.prefix == PRIMARY_PREFIX.as_bytes()));
            if has {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the primary-mode rule did not reach {} within {READY_LIMIT:?}",
                    api.node()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for (i, api) in cluster.admins.iter().enumerate() {
        let key = format!("{PRIMARY_PREFIX}ready/{i}").into_bytes();
        while api
            .put(key.clone(), b"1".to_vec(), WriteOptions::default())
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!(
                    "no primary-mode write succeeded through {} within {READY_LIMIT:?}",
                    api.node()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// A tag unique to this run: the wall clock in milliseconds, in hex.
fn run_tag() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{ms:x}")
}

fn progress_bar(duration: Duration) -> ProgressBar {
    let bar = ProgressBar::new(duration.as_secs());
    if let Ok(style) =
        ProgressStyle::with_template("[{elapsed_precise}] {wide_bar} {pos}/{len} s {msg}")
    {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_the_replay_command_are_one_word_that_parses_back() {
        for secs in [5.0, 90.0, 300.0, 3_599.5] {
            let d = Duration::from_secs_f64(secs);
            let word = flag_duration(d);
            assert!(!word.contains(' '), "{word}");
            assert_eq!(run_length(&word), Ok(d), "{word}");
        }
        assert_eq!(flag_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(
            settle_length(&flag_duration(Duration::ZERO)),
            Ok(Duration::ZERO)
        );
    }
}
