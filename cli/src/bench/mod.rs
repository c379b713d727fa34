//! `ringctl bench`: a load generator. Each of `concurrency` workers sends one request at a
//! time through the library client, for a fixed duration: to `--node`, or with `--route token`
//! to a node of the key's preference list (the ring learned from `--node`).
//!
//! Without `--rate` the loop is closed: a worker sends its next request when the last one is
//! answered. With `--rate` requests are due at fixed intervals and each latency counts from
//! when its request was due, so a stall shows as latency rather than as fewer requests (the
//! coordinated-omission correction of wrk2). `--fill` writes every key once, in order, as a
//! load phase before a read run.

mod report;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use ringkv::{Api, Client, ReadOptions, WriteOptions};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::args;
use crate::ops;
use crate::output::{self, OutputFormat};
use crate::serve::MAX_VALUE_LIMIT;
use crate::signal::StopSignals;
use crate::Global;

use report::{Report, WorkerStats};

/// Most concurrent workers.
pub const MAX_CONCURRENCY: u32 = 1024;

/// Longest run.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// How often the progress bar is redrawn.
const PROGRESS_TICK: Duration = Duration::from_millis(200);

/// `ringctl bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Workers, each with one request in flight.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CONCURRENCY)))]
    pub concurrency: u32,
    /// Distinct keys (`PREFIXbench:0` .. `PREFIXbench:K-1`), chosen uniformly.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub keys: u64,
    /// Text put before every key, e.g. a prefix set to primary mode with `ringctl range set`.
    #[arg(long, default_value = "", value_parser = key_prefix)]
    pub prefix: String,
    /// Bytes per written value.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=MAX_VALUE_LIMIT))]
    pub value_size: u64,
    /// Fraction of requests that are reads (the rest are blind writes).
    #[arg(long, default_value_t = 0.5, value_parser = args::ratio)]
    pub read_ratio: f64,
    /// How long to run, e.g. `10s`, `2m` (at most 1h).
    #[arg(long, default_value = "10s", value_parser = run_length)]
    pub duration: Duration,
    /// Read quorum per request (the node's default when absent).
    #[arg(long = "r", value_parser = clap::value_parser!(u8).range(1..))]
    pub r: Option<u8>,
    /// Write quorum per request (the node's default when absent).
    #[arg(long = "w", value_parser = clap::value_parser!(u8).range(1..))]
    pub w: Option<u8>,
    /// Seed of the key and operation choices (random when absent; printed to repeat a run).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where requests go: `node` sends every request to `--node`; `token` learns the ring
    /// from `--node` and sends each key's request to a node of its preference list (one hop
    /// fewer when the cluster has more nodes than N; on 3 nodes with N=3 it only spreads the
    /// coordination, and cost more CPU per request there, see benches/README.md).
    #[arg(long, value_enum, default_value_t = Route::Node)]
    pub route: Route,
    /// Requests per second across all workers, due at even intervals (open loop; latency
    /// counts from when each request was due). Absent: each worker sends as fast as it is
    /// answered.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_RATE))]
    pub rate: Option<u64>,
    /// Write every key `0..KEYS` once, in order, then stop (or stop at `--duration`): a load
    /// phase that leaves the whole key space present for a read run.
    #[arg(long, conflicts_with = "read_ratio")]
    pub fill: bool,
}

/// Highest `--rate`.
pub const MAX_RATE: u64 = 10_000_000;

/// `--route`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Route {
    /// To a node of the key's preference list (the one `--node` is the fallback).
    Token,
    /// Every request to `--node`, which coordinates it.
    Node,
}

fn run_length(s: &str) -> Result<Duration, String> {
    args::duration_within(s, Duration::from_millis(100), MAX_DURATION)
}

/// Longest `--prefix`, in bytes: well under the node's default key limit once the key's own
/// `bench:N` is added.
pub const MAX_PREFIX: usize = 1024;

fn key_prefix(s: &str) -> Result<String, String> {
    if s.len() > MAX_PREFIX {
        return Err(format!("at most {MAX_PREFIX} bytes, got {}", s.len()));
    }
    Ok(s.to_string())
}

/// What every worker does.
struct Plan {
    prefix: String,
    keys: u64,
    value: Vec<u8>,
    read_ratio: f64,
    read: ReadOptions,
    write_quorum: Option<u8>,
    /// Interval between requests due, with `--rate`.
    every: Option<Duration>,
    fill: bool,
    start: Instant,
    deadline: Instant,
}

impl Plan {
    /// The request numbered `seq` (0, 1, ... across all workers): when it is due, its key,
    /// whether it is a read; `None` once the run is over.
    fn request(&self, seq: u64, rng: &mut SmallRng) -> Option<(Instant, Vec<u8>, bool)> {
        let due = match self.every {
            Some(every) => {
                let offset = u64::try_from(every.as_nanos().saturating_mul(u128::from(seq)));
                let offset = Duration::from_nanos(offset.ok()?);
                if offset >= self.deadline - self.start {
                    return None;
                }
                self.start + offset
            }
            None => Instant::now(),
        };
        if due >= self.deadline || (self.fill && seq >= self.keys) {
            return None;
        }
        let (n, is_read) = if self.fill {
            (seq, false)
        } else {
            (
                rng.random_range(0..self.keys),
                rng.random_bool(self.read_ratio),
            )
        };
        Some((
            due,
            format!("{}bench:{n}", self.prefix).into_bytes(),
            is_read,
        ))
    }
}

/// Counters the progress bar shows while workers run, and the next request's number.
#[derive(Default)]
struct Live {
    ops: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
    next: AtomicU64,
}

/// Runs the benchmark and prints its report.
pub async fn run(g: &Global, a: BenchArgs) -> anyhow::Result<ExitCode> {
    let mut signals = StopSignals::install()?;
    let client = ops::connect(g).await?;
    let node = client.node().to_string();
    // Fail fast, with one clear line, when the node cannot be reached at all.
    let client = match a.route {
        Route::Token => client.token_aware().await,
        Route::Node => client.members().await.map(|_| client),
    }
    .with_context(|| format!("cannot reach node {node}"))?;

    let seed = a.seed.unwrap_or_else(rand::random);
    if g.output == OutputFormat::Text {
        let through = match a.route {
            Route::Token => format!("the keys' replicas (ring learned from {node})"),
            Route::Node => node.clone(),
        };
        let pace = match a.rate {
            Some(r) => format!(" at {r} requests/s"),
            None => String::new(),
        };
        let what = if a.fill {
            format!(", writing keys 0..{}", a.keys)
        } else {
            String::new()
        };
        output::note(&format!(
            "bench: {} workers against {through}{pace} for {}{what} (seed {seed})",
            a.concurrency,
            humantime::format_duration(a.duration)
        ));
    }

    // Each worker's histograms exist before the clock starts: zeroing a thousand of them
    // would otherwise delay the first requests due.
    let worker_stats = (0..a.concurrency)
        .map(|_| WorkerStats::new())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let start = Instant::now();
    let mut rng = SmallRng::seed_from_u64(seed);
    let value_len = usize::try_from(a.value_size)?;
    let plan = Arc::new(Plan {
        prefix: a.prefix,
        keys: a.keys,
        value: (0..value_len)
            .map(|_| rng.random_range(b'a'..=b'z'))
            .collect(),
        read_ratio: a.read_ratio,
        read: ReadOptions {
            r: a.r,
            ..Default::default()
        },
        write_quorum: a.w,
        every: a.rate.map(|r| Duration::from_nanos(1_000_000_000 / r)),
        fill: a.fill,
        start,
        deadline: start + a.duration,
    });
    let live = Arc::new(Live::default());
    let mut workers = JoinSet::new();
    for (i, stats) in (0u64..).zip(worker_stats) {
        let worker_rng = SmallRng::seed_from_u64(seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        workers.spawn(worker(
            client.clone(),
            plan.clone(),
            worker_rng,
            live.clone(),
            stats,
        ));
    }

    let bar = progress_bar(a.duration);
    let mut tick = tokio::time::interval(PROGRESS_TICK);
    let mut stats = WorkerStats::new()?;
    let mut interrupted = false;
    while !workers.is_empty() {
        tokio::select! {
            joined = workers.join_next() => match joined {
                Some(Ok(Ok(s))) => stats.merge(&s)?,
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => bail!("a bench worker failed: {e}"),
                None => break,
            },
            sig = signals.recv(), if !interrupted => {
                interrupted = true;
                live.stop.store(true, Ordering::Relaxed);
                bar.println(format!("{}: finishing the requests in flight", sig?));
            }
            _ = tick.tick() => {
                let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                bar.set_position(ms);
                bar.set_message(format!(
                    "{} ops, {} errors",
                    live.ops.load(Ordering::Relaxed),
                    live.errors.load(Ordering::Relaxed)
                ));
            }
        }
    }
    bar.finish_and_clear();

    let report = Report::new(node, a.concurrency, a.rate, start.elapsed(), &stats);
    match g.output {
        OutputFormat::Text => output::emit(&report.text())?,
        OutputFormat::Json => output::emit_json(&report)?,
    }
    if report.ops > 0 && report.errors == report.ops {
        bail!(
            "every request failed; first error: {}",
            report.first_error.as_deref().unwrap_or("unknown")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A bar over the run's duration, in milliseconds; hidden when stderr is not a terminal.
fn progress_bar(duration: Duration) -> ProgressBar {
    let bar = ProgressBar::new(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
    if let Ok(style) =
        ProgressStyle::with_template("[{elapsed_precise}] {wide_bar} {percent:>3}% {msg}")
    {
        bar.set_style(style);
    }
    bar
}

/// One worker: a request, its answer, the next request, until the run is over.
async fn worker(
    client: Client,
    plan: Arc<Plan>,
    mut rng: SmallRng,
    live: Arc<Live>,
    mut stats: WorkerStats,
) -> anyhow::Result<WorkerStats> {
    while !live.stop.load(Ordering::Relaxed) {
        let seq = live.next.fetch_add(1, Ordering::Relaxed);
        let Some((due, key, is_read)) = plan.request(seq, &mut rng) else {
            break;
        };
        tokio::time::sleep_until(due).await;
        // An absent key is a successful read: the benchmark pre-fills nothing.
        let result = if is_read {
            client.get(key, plan.read.clone()).await.map(drop)
        } else {
            let opts = WriteOptions {
                w: plan.write_quorum,
                context: None,
            };
            client.put(key, plan.value.clone(), opts).await.map(drop)
        };
        let took = due.elapsed();
        let op = if is_read {
            &mut stats.reads
        } else {
            &mut stats.writes
        };
        match result {
            Ok(()) => op.ok(took),
            Err(e) => {
                op.errors += 1;
                live.errors.fetch_add(1, Ordering::Relaxed);
                if stats.first_error.is_none() {
                    stats.first_error = Some(e.to_string());
                }
            }
        }
        live.ops.fetch_add(1, Ordering::Relaxed);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(extra: &[&str]) -> Result<BenchArgs, clap::Error> {
        Wrap::try_parse_from(std::iter::once(&"bench").chain(extra)).map(|w| w.bench)
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.concurrency, 16);
        assert_eq!(a.keys, 10_000);
        assert_eq!(a.value_size, 100);
        assert_eq!(a.read_ratio, 0.5);
        assert_eq!(a.duration, Duration::from_secs(10));
        assert_eq!((a.r, a.w, a.seed), (None, None, None));
        assert_eq!(a.prefix, "");
        assert_eq!(a.route, Route::Node);
        assert_eq!((a.rate, a.fill), (None, false));
        assert_eq!(parse(&["--route", "token"]).unwrap().route, Route::Token);
        assert!(parse(&["--route", "any"]).is_err());
    }

    #[test]
    fn a_prefix_is_taken_as_given_within_its_bound() {
        assert_eq!(parse(&["--prefix", "acct:"]).unwrap().prefix, "acct:");
        assert!(parse(&["--prefix", &"p".repeat(MAX_PREFIX)]).is_ok());
        assert!(parse(&["--prefix", &"p".repeat(MAX_PREFIX + 1)]).is_err());
    }

    #[test]
    fn unbounded_runs_are_refused() {
        assert!(parse(&["--concurrency", "1024"]).is_ok());
        assert!(parse(&["--concurrency", "1025"]).is_err());
        assert!(parse(&["--concurrency", "0"]).is_err());
        assert!(parse(&["--duration", "1h"]).is_ok());
        assert!(parse(&["--duration", "61m"]).is_err());
        assert!(parse(&["--keys", "0"]).is_err());
        assert!(parse(&["--read-ratio", "1.5"]).is_err());
        assert!(parse(&["--value-size", "4194305"]).is_err());
        assert!(parse(&["--r", "0"]).is_err());
        assert!(parse(&["--rate", "0"]).is_err());
        assert!(parse(&["--rate", "10000001"]).is_err());
        assert!(parse(&["--fill", "--read-ratio", "0.5"]).is_err());
    }

    fn plan(every: Option<Duration>, fill: bool, keys: u64) -> Plan {
        let start = Instant::now();
        Plan {
            prefix: "p:".into(),
            keys,
            value: vec![],
            read_ratio: 0.5,
            read: ReadOptions::default(),
            write_quorum: None,
            every,
            fill,
            start,
            deadline: start + Duration::from_secs(10),
        }
    }

    #[test]
    fn paced_requests_are_due_at_even_intervals_until_the_deadline() {
        let p = plan(Some(Duration::from_millis(4)), false, 100);
        let mut rng = SmallRng::seed_from_u64(1);
        let (due, _, _) = p.request(250, &mut rng).unwrap();
        assert_eq!(due - p.start, Duration::from_secs(1));
        assert!(p.request(2_499, &mut rng).is_some());
        assert!(p.request(2_500, &mut rng).is_none());
        assert!(p.request(u64::MAX, &mut rng).is_none());
    }

    #[test]
    fn fill_writes_each_key_once_in_order_then_stops() {
        let p = plan(None, true, 3);
        let mut rng = SmallRng::seed_from_u64(1);
        let keys: Vec<_> = (0..4).map(|seq| p.request(seq, &mut rng)).collect();
        for (seq, r) in keys.iter().take(3).enumerate() {
            let (_, key, is_read) = r.as_ref().unwrap();
            assert_eq!(key, format!("p:bench:{seq}").as_bytes());
            assert!(!is_read);
        }
        assert!(keys[3].is_none());
    }
}
