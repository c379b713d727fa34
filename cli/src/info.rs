//! `ringctl info replication`: a node's primary-mode shards, the way Redis `INFO replication`
//! shows a master and its replicas.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use ringkv::core::replication::ShardInfo;
use ringkv::Api;

use crate::ops;
use crate::output::{self, OutputFormat};
use crate::Global;

/// `ringctl info ...`.
#[derive(Debug, Subcommand)]
pub enum InfoCommand {
    /// Per shard (the ranges sharing one preference list): role, epoch, replication id,
    /// offset, backlog, and each replica's state, offset and lag.
    Replication(ReplicationArgs),
}

/// `ringctl info replication`.
#[derive(Debug, Args)]
pub struct ReplicationArgs {
    /// Only the shard holding this key.
    #[arg(long)]
    pub key: Option<String>,
}

/// Run `ringctl info`.
pub async fn run(g: &Global, c: InfoCommand) -> anyhow::Result<ExitCode> {
    let InfoCommand::Replication(a) = c;
    let client = ops::connect(g).await?;
    let rows = client
        .replication(a.key.map(String::into_bytes))
        .await
        .with_context(|| format!("info replication via {}", client.node()))?;
    match g.output {
        OutputFormat::Json => output::emit_json(&rows)?,
        OutputFormat::Text => output::emit(&text(&rows))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Redis-like `field:value` lines, one block per shard.
fn text(rows: &[ShardInfo]) -> String {
    if rows.is_empty() {
        return "no primary-mode shard on this node yet\n".into();
    }
    let mut s = String::new();
    for r in rows {
        let _ = writeln!(s, "# shard {} ({} ranges)", r.shard.join(","), r.ranges);
        let _ = writeln!(s, "role:{}", r.role);
        let _ = writeln!(s, "epoch:{}", r.epoch);
        let _ = writeln!(s, "primary:{}", r.primary.as_deref().unwrap_or("-"));
        let _ = writeln!(s, "replid:{}", r.replid);
        let _ = writeln!(s, "replid2:{}", r.prev_replid);
        let _ = writeln!(s, "second_repl_offset:{}", r.prev_end);
        let _ = writeln!(s, "repl_offset:{}", r.offset);
        let _ = writeln!(s, "commit_offset:{}", r.commit);
        let _ = writeln!(s, "backlog_bytes:{}", r.backlog_bytes);
        let first = r.backlog_first.map_or("-".into(), |f| f.to_string());
        let _ = writeln!(s, "backlog_first_offset:{first}");
        let _ = writeln!(s, "sync_partial:{}", r.partial_syncs);
        let _ = writeln!(s, "sync_full:{}", r.full_syncs);
        let _ = writeln!(s, "topology:{}", r.topology);
        if let Some(next) = &r.relays_to {
            let _ = writeln!(s, "relays_to:{next}");
        }
        if let Some(silent) = r.primary_silent_ms {
            let _ = writeln!(s, "primary_last_heard_s:{:.1}", silent as f64 / 1000.0);
        }
        for (i, rep) in r.replicas.iter().enumerate() {
            let lag = rep
                .lag_ms
                .map_or("-".into(), |l| format!("{:.1}", l as f64 / 1000.0));
            let via = rep
                .via
                .as_deref()
                .map_or(String::new(), |v| format!(",via={v}"));
            let _ = writeln!(
                s,
                "replica{i}:name={},state={},offset={},lag={lag}{via}",
                rep.name, rep.state, rep.offset
            );
        }
        s.push('\n');
    }
    s
}
