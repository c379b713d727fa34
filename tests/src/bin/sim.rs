//! Long runs of the deterministic simulator, and replays of one seed.
//!
//! ```text
//! cargo run --release -p ringkv-tests --bin sim -- --seeds 100000
//! cargo run --release -p ringkv-tests --bin sim -- --seeds 10000 --primary majority
//! cargo run --release -p ringkv-tests --bin sim -- --seed 42 --schedule '1-3:crash:0' --trace 200
//! cargo run --release -p ringkv-tests --bin sim -- --scale 10,100,1000
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use ringkv::store::Durability;
use ringkv::version::ConflictPolicy;
use ringkv_gossip::GossipConfig;
use ringkv_tests::sim::config::{parse_sync, FaultKinds, SimConfig};
use ringkv_tests::sim::faults::Schedule;
use ringkv_tests::sim::run::{run, RunReport};
use ringkv_tests::sim::scale::{scale, ScaleLimits};
use ringkv_tests::sim::shrink::{replay_command, shrink};

/// Runs many seeds of the ringkv cluster simulator, or replays one.
#[derive(Parser, Debug)]
#[command(name = "sim")]
struct Args {
    /// How many seeds to run.
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    /// First seed of the batch.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Run this one seed only (a replay).
    #[arg(long)]
    seed: Option<u64>,
    /// Fault kinds that may strike (comma list of crash, partition, one-way, pause, clock,
    /// join, leave, loss, dup, call-loss; or all, none).
    #[arg(long)]
    faults: Option<String>,
    /// An explicit fault schedule (with --seed), as printed by a failing run.
    #[arg(long)]
    schedule: Option<String>,
    /// Initial cluster size range, like 3-6.
    #[arg(long, default_value = "3-9")]
    nodes: String,
    /// Conflict policy (lww or siblings); drawn per seed when absent.
    #[arg(long)]
    policy: Option<ConflictPolicy>,
    /// Replica durability (sync or buffered).
    #[arg(long, default_value = "sync")]
    durability: Durability,
    /// Operations per run.
    #[arg(long)]
    ops: Option<usize>,
    /// Concurrent clients per run.
    #[arg(long)]
    clients: Option<usize>,
    /// Distinct keys per run.
    #[arg(long)]
    keys: Option<usize>,
    /// Most fault episodes per run.
    #[arg(long)]
    max_faults: Option<usize>,
    /// Simulated seconds of workload (and faults) per run.
    #[arg(long)]
    workload_secs: Option<u64>,
    /// Break the core on purpose: ack-after-one, skip-read-merge, drop-hints,
    /// grant-every-vote, ack-before-replicas, keep-replid or ignore-not-primary.
    #[arg(long)]
    sabotage: Vec<String>,
    /// Primary mode for every workload key, with these sync replicas: none, a count (like 1)
    /// or majority (reads from the primary). Absent: the masterless quorum path.
    #[arg(long)]
    primary: Option<String>,
    /// With --primary: how the primary streams its log, star (to each replica) or chain
    /// (to the first, each replica to the next).
    #[arg(long, default_value = "star")]
    topology: String,
    /// With --primary: leave joins and leaves out of the drawn faults (drawn by default).
    #[arg(long)]
    no_primary_membership: bool,
    /// With --primary: draw joins and leaves too (the default; kept for older command lines).
    #[arg(long, hide = true)]
    primary_membership: bool,
    /// Do not check that replicas converge after the faults heal (for a core without
    /// anti-entropy).
    #[arg(long)]
    no_anti_entropy: bool,
    /// Do not check that reads repair the replicas they read (for a core without it).
    #[arg(long)]
    no_read_repair: bool,
    /// Print the last N events of the run (with --seed), or of each failure.
    #[arg(long, default_value_t = 60)]
    trace: usize,
    /// Most runs spent shrinking one failure (0: do not shrink).
    #[arg(long, default_value_t = 40)]
    shrink_runs: usize,
    /// Stop after this many failing seeds.
    #[arg(long, default_value_t = 10)]
    max_failures: usize,
    /// Worker threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Scale mode: membership alone for these cluster sizes (comma list), then exit.
    #[arg(long)]
    scale: Option<String>,
    /// Gossip max_transmissions in scale mode (default: the LAN setting).
    #[arg(long)]
    max_transmissions: Option<u8>,
    /// Scale mode: how long forming may take after the last join, in simulated seconds
    /// (default 180).
    #[arg(long)]
    form_limit: Option<u64>,
    /// Scale mode: print each phase's figures to stderr as it ends.
    #[arg(long)]
    progress: bool,
}

fn main() {
    let args = Args::parse();
    match main_with(args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("sim: {e:#}");
            std::process::exit(2);
        }
    }
}

fn main_with(args: Args) -> Result<bool> {
    if let Some(sizes) = &args.scale {
        return scale_mode(sizes, &args);
    }
    let config = config_from(&args)?;
    if let Some(seed) = args.seed {
        let schedule = match &args.schedule {
            Some(s) => Some(s.parse::<Schedule>()?),
            None => None,
        };
        return Ok(replay(seed, &config, schedule.as_ref()));
    }
    if args.schedule.is_some() {
        bail!("--schedule needs --seed");
    }
    Ok(batch(&config, &args))
}

fn config_from(args: &Args) -> Result<SimConfig> {
    let mut config = SimConfig::default();
    let (lo, hi) = args
        .nodes
        .split_once('-')
        .map_or((args.nodes.as_str(), args.nodes.as_str()), |p| p);
    let lo: usize = lo.parse().context("--nodes takes a range like 3-6")?;
    let hi: usize = hi.parse().context("--nodes takes a range like 3-6")?;
    if !(3..=9).contains(&lo) || !(lo..=9).contains(&hi) {
        bail!("--nodes must lie within 3-9");
    }
    config.nodes = (lo, hi);
    config.policy = args.policy;
    config.durability = args.durability;
    if let Some(f) = &args.faults {
        config.faults = f.parse::<FaultKinds>()?;
    }
    let bounded = |name: &str, v: usize, max: usize| {
        if (1..=max).contains(&v) {
            Ok(v)
        } else {
            bail!("--{name} must be within 1..={max}")
        }
    };
    if let Some(v) = args.ops {
        config.ops = bounded("ops", v, 100_000)?;
    }
    if let Some(v) = args.clients {
        config.clients = bounded("clients", v, 64)?;
    }
    if let Some(v) = args.keys {
        config.keys = bounded("keys", v, 10_000)?;
    }
    if let Some(v) = args.max_faults {
        config.max_faults = bounded("max-faults", v, 64)?;
    }
    if let Some(v) = args.workload_secs {
        let secs = bounded(
            "workload-secs",
            usize::try_from(v).unwrap_or(usize::MAX),
            3_600,
        )?;
        config.workload = Duration::from_secs(secs as u64);
    }
    for s in &args.sabotage {
        match s.as_str() {
            "ack-after-one" => config.sabotage.ack_after_one = true,
            "skip-read-merge" => config.sabotage.skip_read_merge = true,
            "drop-hints" => config.sabotage.drop_hints = true,
            "grant-every-vote" => config.sabotage.grant_every_vote = true,
            "ack-before-replicas" => config.sabotage.ack_before_replicas = true,
            "keep-replid" => config.sabotage.keep_replid = true,
            "ignore-not-primary" => config.sabotage.ignore_not_primary = true,
            other => {
                bail!(
                    "unknown sabotage {other:?} (ack-after-one, skip-read-merge, drop-hints, \
                     grant-every-vote, ack-before-replicas, keep-replid, ignore-not-primary)"
                )
            }
        }
    }
    if let Some(p) = &args.primary {
        let sync = parse_sync(p).map_err(anyhow::Error::msg)?;
        if let ringkv::SyncReplicas::Count(k) = sync {
            if usize::from(k) >= config.quorum.n {
                bail!(
                    "--primary {k}: a primary has {} other replicas",
                    config.quorum.n - 1
                );
            }
        }
        config.primary = Some(sync);
    }
    config.topology = match args.topology.as_str() {
        "star" => ringkv::Topology::Star,
        "chain" if config.primary.is_some() => ringkv::Topology::Chain,
        "chain" => bail!("--topology chain needs --primary"),
        other => bail!("unknown topology {other:?} (star or chain)"),
    };
    if args.no_primary_membership && args.primary_membership {
        bail!("--primary-membership and --no-primary-membership contradict each other");
    }
    config.primary_membership = !args.no_primary_membership;
    config.capabilities.anti_entropy = !args.no_anti_entropy;
    config.capabilities.read_repair = !args.no_read_repair;
    config.trace_tail = args.trace.clamp(1, 100_000);
    Ok(config)
}

fn replay(seed: u64, config: &SimConfig, schedule: Option<&Schedule>) -> bool {
    let started = Instant::now();
    let report = run(seed, config, schedule);
    println!(
        "seed {seed}: {} nodes, {} policy, schedule {}",
        report.nodes, report.policy, report.schedule
    );
    if !report.trace_tail.is_empty() {
        println!("last events:\n{}", report.trace_tail);
    }
    summary_line(&report, started.elapsed());
    for v in &report.violations {
        println!("VIOLATION {v}");
    }
    report.passed()
}

fn summary_line(report: &RunReport, took: Duration) {
    println!(
        "trace hash {:016x}, {} events, {:.1} s simulated, {} ops, clean={}, handoff \
         timeouts={}, log entries={}, {:.2} s wall",
        report.trace_hash,
        report.events,
        report.sim_us as f64 / 1e6,
        report.ops,
        report.clean,
        report.handoff_timeouts,
        report.log_entries,
        took.as_secs_f64()
    );
}

struct Failure {
    report: RunReport,
    shrunk: Option<RunReport>,
    shrink_runs: usize,
}

fn batch(config: &SimConfig, args: &Args) -> bool {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64);
    let next = AtomicU64::new(0);
    let failures_seen = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<Result<usize, Box<Failure>>>();
    // Per worker, the seed it runs and since when: a run still going after a minute of wall
    // time is named in the progress lines, so a run that never ends is not a silent hang.
    let running: Mutex<Vec<Option<(u64, Instant)>>> = Mutex::new(vec![None; threads]);
    let mut handoff_timeouts = 0;
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut done = 0u64;
    println!(
        "running {} seeds from {} on {threads} threads, faults: {}, mode: {}",
        args.seeds,
        args.start,
        config.drawn_faults(),
        config.primary.map_or_else(
            || "quorum".to_string(),
            |s| format!("primary, sync {s}, {}", config.topology)
        )
    );
    std::thread::scope(|scope| {
        for worker in 0..threads {
            let tx = tx.clone();
            let (next, stop, failures_seen, running) = (&next, &stop, &failures_seen, &running);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= args.seeds || stop.load(Ordering::Relaxed) {
                    break;
                }
                let seed = args.start.wrapping_add(i);
                if let Ok(mut r) = running.lock() {
                    r[worker] = Some((seed, Instant::now()));
                }
                let report = run(seed, config, None);
                if let Ok(mut r) = running.lock() {
                    r[worker] = None;
                }
                let message = if report.passed() {
                    Ok(report.handoff_timeouts)
                } else {
                    let seen = failures_seen.fetch_add(1, Ordering::Relaxed) + 1;
                    if seen >= args.max_failures as u64 {
                        stop.store(true, Ordering::Relaxed);
                    }
                    let (shrunk, shrink_runs) = if args.shrink_runs > 0 {
                        let s = shrink(config, &report, args.shrink_runs);
                        (Some(s.report), s.runs)
                    } else {
                        (None, 0)
                    };
                    Err(Box::new(Failure {
                        report,
                        shrunk,
                        shrink_runs,
                    }))
                };
                if tx.send(message).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut last_progress = Instant::now();
        loop {
            let message = match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(m) => m,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    slow_seeds(&running);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            done += 1;
            if let Ok(timeouts) = message {
                handoff_timeouts += timeouts;
            }
            if let Err(failure) = message {
                print_failure(config, &failure);
                failures.push(failure.report.seed);
            }
            if last_progress.elapsed() >= Duration::from_secs(10) {
                last_progress = Instant::now();
                let rate = done as f64 / started.elapsed().as_secs_f64();
                println!("{done} seeds, {rate:.1} seeds/s, {} failed", failures.len());
                slow_seeds(&running);
            }
        }
    });
    let secs = started.elapsed().as_secs_f64();
    failures.sort_unstable();
    println!(
        "{done} seeds in {secs:.1} s ({:.1} seeds/s), {handoff_timeouts} leaves timed out \
         handing off in passing runs, {} failed{}",
        done as f64 / secs.max(1e-9),
        failures.len(),
        if failures.is_empty() {
            String::new()
        } else {
            format!(": {failures:?}")
        }
    );
    failures.is_empty()
}

/// Name the runs going for more than a minute of wall time.
fn slow_seeds(running: &Mutex<Vec<Option<(u64, Instant)>>>) {
    let Ok(r) = running.lock() else { return };
    for (seed, since) in r.iter().flatten() {
        let secs = since.elapsed().as_secs();
        if secs >= 60 {
            println!("seed {seed} still running after {secs} s of wall time");
        }
    }
}

fn print_failure(config: &SimConfig, failure: &Failure) {
    let r = &failure.report;
    println!(
        "FAIL seed {} ({} nodes, {} policy)",
        r.seed, r.nodes, r.policy
    );
    for v in &r.violations {
        println!("  {v}");
    }
    println!("  schedule: {}", r.schedule);
    let smallest = failure.shrunk.as_ref().unwrap_or(r);
    if failure.shrunk.is_some() {
        println!(
            "  smallest failing schedule ({} shrink runs): {}",
            failure.shrink_runs, smallest.schedule
        );
        if let Some(v) = smallest.violations.first() {
            println!("  which fails with {v}");
        }
    }
    println!(
        "  replay: {}",
        replay_command(r.seed, config, &smallest.schedule)
    );
    println!("  last events of that run:");
    for line in smallest.trace_tail.lines() {
        println!("    {line}");
    }
}

fn scale_mode(sizes: &str, args: &Args) -> Result<bool> {
    let mut gossip = GossipConfig::lan();
    if let Some(t) = args.max_transmissions {
        gossip.max_transmissions = t;
    }
    let mut limits = ScaleLimits::default();
    if let Some(secs) = args.form_limit {
        limits.form_us = secs.saturating_mul(1_000_000);
    }
    limits.progress = args.progress;
    let seed = args.seed.unwrap_or(1);
    println!("| nodes | joins over (s) | all see all alive (s after last join) | rings identical (s after last join) | storm datagrams / bytes per node/s | quiet datagrams / bytes per node/s | detection p50 / p99 / max (s) | detected by | 1 % loss: false suspicions / false downs | wall (s) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for size in sizes.split(',') {
        let nodes: usize = size
            .trim()
            .parse()
            .context("--scale takes sizes like 10,100,1000")?;
        if !(2..=5_000).contains(&nodes) {
            bail!("scale sizes must lie within 2..=5000");
        }
        let started = Instant::now();
        let r = scale(nodes, seed, gossip.clone(), limits)?;
        let secs = |us: Option<u64>| us.map_or("-".into(), |us| format!("{:.2}", us as f64 / 1e6));
        let not_within = |us: Option<u64>| match us {
            Some(_) => secs(us),
            None => format!(
                "- ({:.2} % of pairs after {} s)",
                r.known_alive * 100.0,
                limits.form_us / 1_000_000
            ),
        };
        println!(
            "| {nodes} | {:.2} | {} | {} | {:.1} / {:.0} | {:.1} / {:.0} | {} / {} / {} | {}/{} | {} / {} | {:.1} |",
            r.last_join_us as f64 / 1e6,
            not_within(r.formed_after_us),
            secs(r.rings_after_us),
            r.storm.datagrams,
            r.storm.bytes,
            r.quiet.datagrams,
            r.quiet.bytes,
            secs(r.detection_quantile(0.5)),
            secs(r.detection_quantile(0.99)),
            secs(r.detection_quantile(1.0)),
            r.detection_us.len(),
            r.survivors,
            r.false_suspicions,
            r.false_downs,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(true)
}
