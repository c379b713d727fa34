//! `ringctl`: the one ringkv binary. It serves a node, talks to a cluster (put, get, del,
//! members, ring), inspects and repairs one node's replicas (inspect, status, repair), manages
//! the range table (range set/list), makes certificates, runs a local multi-process cluster and benchmarks.
//!
//! The binary is thin: every command is a few calls into the `ringkv` library plus argument
//! parsing and output. Errors end as one `error: ...` line on stderr and a non-zero status.

mod args;
mod bench;
mod certs;
mod chaos;
mod cluster;
mod exit;
mod info;
mod inspect;
mod ops;
mod output;
mod range;
mod repair;
mod serve;
mod signal;
mod status;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::output::OutputFormat;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Talk to, run and benchmark a ringkv cluster.
#[derive(Debug, Parser)]
#[command(name = "ringctl", version, about, propagate_version = true, after_help = exit::HELP)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command accepts.
#[derive(Clone, Debug, clap::Args)]
pub struct Global {
    /// Node to send requests to (host:port of its QUIC endpoint).
    #[arg(
        long,
        global = true,
        env = "RINGKV_NODE",
        default_value = "127.0.0.1:7000"
    )]
    pub node: String,
    /// Directory of the cluster's certificates (ca.pem, client.pem, node-NAME.pem, ...).
    #[arg(long, global = true, env = "RINGKV_CERTS", default_value = "./certs")]
    pub certs: PathBuf,
    /// Output format of commands that print results.
    #[arg(short, long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Bound on one request to the node (dial, request, reply), e.g. `10s`, `500ms`.
    #[arg(long, global = true, default_value = "10s", value_parser = args::request_timeout)]
    pub timeout: Duration,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node in the foreground until SIGTERM or Ctrl-C.
    Serve(serve::ServeArgs),
    /// Write a value.
    Put(ops::PutArgs),
    /// Read a key: every sibling and the context for the next write.
    Get(ops::GetArgs),
    /// Delete a key.
    Del(ops::DelArgs),
    /// List the members the node knows.
    Members,
    /// Show each node's share of the key space.
    Ring,
    /// Show what one node alone holds for a key (every sibling, tombstones included).
    Inspect(inspect::InspectArgs),
    /// Show a node's anti-entropy state: exchanges, repair round, keys repaired, ranges.
    Status(status::StatusArgs),
    /// Run an anti-entropy round on a node now and follow it to the end.
    Repair(repair::RepairArgs),
    /// Show a node's primary-mode replication state.
    #[command(subcommand)]
    Info(info::InfoCommand),
    /// Choose which key prefixes run in primary mode (the cluster's range table).
    #[command(subcommand)]
    Range(range::RangeCommand),
    /// Make the cluster's certificates.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Run a local multi-process cluster for development.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Closed-loop load generator against one node.
    Bench(bench::BenchArgs),
    /// Chaos benchmark: a local cluster under a seeded schedule of faults, checked after.
    Chaos(chaos::ChaosArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse().and_then(Cli::checked) {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    init_logging(&cli.command);
    // A node runs on one thread: its shell, QUIC endpoint and connections hand each other
    // work without waking other threads (a multi-thread runtime spent most of a node's CPU
    // on cross-thread wake-ups); fsyncs run on a thread of their own (`node::commit`).
    let mut builder = match cli.command {
        Command::Serve(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            output::error_line(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let json = cli.global.output == OutputFormat::Json;
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            let (status, kind) = exit::classify(&e);
            let message = output::error_chain(&e);
            if json {
                output::error_json(&message, kind, status);
            } else {
                output::error_line(&message);
            }
            exit::code(status)
        }
    }
}

/// Help and version go out as clap renders them; a usage error becomes one `error:` line
/// (its first paragraph) and exit status 2, like any clap program.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
    }
    let text = e.render().to_string();
    let first: Vec<&str> = text
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect();
    let message = first.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    output::error_line(&format!("{message} (see --help)"));
    exit::code(exit::USAGE)
}

impl Cli {
    /// Checks across flags that clap cannot express, as usage errors.
    fn checked(self) -> Result<Self, clap::Error> {
        if let Command::Range(range::RangeCommand::Set(a)) = &self.command {
            a.mode()
                .map_err(|m| clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, m))?;
        }
        Ok(self)
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = cli.global;
    match cli.command {
        Command::Serve(a) => serve::run(&g, a).await,
        Command::Put(a) => ops::put(&g, a).await,
        Command::Get(a) => ops::get(&g, a).await,
        Command::Del(a) => ops::del(&g, a).await,
        Command::Members => ops::members(&g).await,
        Command::Ring => ops::ring(&g).await,
        Command::Inspect(a) => inspect::run(&g, a).await,
        Command::Status(a) => status::run(&g, a).await,
        Command::Repair(a) => repair::run(&g, a).await,
        Command::Range(c) => range::run(&g, c).await,
        Command::Info(c) => info::run(&g, c).await,
        Command::Certs(c) => certs::run(&g, c),
        Command::Cluster(c) => cluster::run(&g, c).await,
        Command::Bench(a) => bench::run(&g, a).await,
        Command::Chaos(a) => chaos::run(&g, a).await,
    }
}

/// Logs go to stderr, filtered by `RUST_LOG`. A node logs at `info` by default; the client
/// commands stay silent unless asked, so an error stays one line.
fn init_logging(command: &Command) {
    let default = match command {
        Command::Serve(_) => Some("info"),
        _ => None,
    };
    let filter = match (EnvFilter::try_from_default_env(), default) {
        (Ok(f), _) => f,
        (Err(_), Some(level)) => EnvFilter::new(level),
        (Err(_), None) => return,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: `cluster up` sends node logs to files.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
