//! `ringctl repair`: start a Merkle anti-entropy round on one node (an exchange with every
//! other live replica of every range it replicates) and follow it to the end.
//!
//! The node runs the round; this command only starts it and polls `status` every
//! [`POLL_INTERVAL`], bounded by `--within`. Stopping the command does not stop the round.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ringkv::proto::{RepairProgress, StatusReport};
use ringkv::{Api, Client};
use serde::Serialize;

use crate::output::{self, OutputFormat};
use crate::status::{keys_repaired, round_text};
use crate::{args, ops, Global};

/// Time between two polls of the node's status while a round runs.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Longest `--within`.
pub const MAX_WITHIN: Duration = Duration::from_secs(24 * 3600);
/// Status polls that may fail in a row (a busy node, a lost packet) before giving up.
const MAX_POLL_FAILURES: u32 = 5;

/// `ringctl repair`.
#[derive(Debug, Args)]
pub struct RepairArgs {
    /// Start the round and return at once; follow it with `ringctl status`.
    #[arg(long)]
    pub no_wait: bool,
    /// Stop waiting after this long, e.g. `90s`, `10m` (the round itself goes on).
    #[arg(long, default_value = "10m", value_parser = within)]
    pub within: Duration,
}

/// `--within`: 1 s to [`MAX_WITHIN`].
fn within(s: &str) -> Result<Duration, String> {
    args::duration_within(s, Duration::from_secs(1), MAX_WITHIN)
}

/// `ringctl repair`: exit status 1 when the round did not finish within `--within` or was cut
/// short by a ring change.
pub async fn run(g: &Global, a: RepairArgs) -> anyhow::Result<ExitCode> {
    let client = ops::connect(g).await?;
    let addr = client.node();
    let before = client
        .status()
        .await
        .with_context(|| format!("status of {addr}"))?;
    let started = client
        .repair()
        .await
        .with_context(|| format!("repair via {addr}"))?;
    let node = before.node.clone();
    if a.no_wait || !started.running {
        match g.output {
            OutputFormat::Text => {
                output::emit(&started_text(&node, &started, before.repair.running))?;
            }
            OutputFormat::Json => output::emit_json(&StartedJson {
                node: &node,
                progress: &started,
            })?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    let bar = match g.output {
        OutputFormat::Text => progress_bar(&started),
        OutputFormat::Json => ProgressBar::hidden(),
    };
    let followed = follow(&client, &bar, a.within).await;
    bar.finish_and_clear();
    let after = followed.with_context(|| format!("repair of {node} via {addr}"))?;
    let summary = RoundSummary::new(&before, &after);
    match g.output {
        OutputFormat::Text => output::emit(&summary.text())?,
        OutputFormat::Json => output::emit_json(&summary)?,
    }
    if !summary.completed {
        bail!(
            "the repair round on {node} was cut short at {}/{} exchanges (the ring changed); \
             run `ringctl repair` again once membership is stable",
            summary.progress.done,
            summary.progress.total
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Polls the node's status until its round stops running or `within` passes.
async fn follow(
    client: &Client,
    bar: &ProgressBar,
    within: Duration,
) -> anyhow::Result<StatusReport> {
    let deadline = tokio::time::Instant::now() + within;
    let mut failures = 0;
    let mut last = RepairProgress::default();
    loop {
        if tokio::time::Instant::now() + POLL_INTERVAL > deadline {
            bail!(
                "still running after {} ({}/{} exchanges done); it goes on in the node, \
                 follow it with `ringctl status`",
                humantime::format_duration(within),
                last.done,
                last.total
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
        match client.status().await {
            Ok(report) => {
                failures = 0;
                bar.set_length(report.repair.total);
                bar.set_position(report.repair.done);
                if !report.repair.running {
                    return Ok(report);
                }
                last = report.repair;
            }
            Err(e) => {
                failures += 1;
                if failures >= MAX_POLL_FAILURES {
                    return Err(anyhow::Error::new(e).context(format!(
                        "{failures} status polls failed in a row ({}/{} exchanges done)",
                        last.done, last.total
                    )));
                }
            }
        }
    }
}

/// A bar over the round's exchanges; indicatif hides it when stderr is not a terminal.
fn progress_bar(started: &RepairProgress) -> ProgressBar {
    let bar = ProgressBar::new(started.total);
    bar.set_position(started.done);
    if let Ok(style) =
        ProgressStyle::with_template("[{elapsed_precise}] {wide_bar} {pos}/{len} exchanges")
    {
        bar.set_style(style);
    }
    bar
}

/// What `repair` says when it does not wait: the round queued (or `joined`, one already
/// running), or nothing to repair.
fn started_text(node: &str, p: &RepairProgress, joined: bool) -> String {
    if !p.running {
        return format!("nothing to repair on {node}: no range it replicates has a live peer\n");
    }
    let what = if joined {
        "repair round already running"
    } else {
        "repair round started"
    };
    format!(
        "{what} on {node}: {}; follow it with `ringctl status`\n",
        round_text(p)
    )
}

#[derive(Debug, Serialize)]
struct StartedJson<'a> {
    node: &'a str,
    #[serde(flatten)]
    progress: &'a RepairProgress,
}

/// A finished round: its final progress and what the node's counters moved by meanwhile.
#[derive(Debug, Serialize)]
struct RoundSummary {
    node: String,
    #[serde(flatten)]
    progress: RepairProgress,
    /// Every exchange of the round ran (false: a ring change cut it short).
    completed: bool,
    /// Exchanges completed while the round ran.
    exchanges: u64,
    /// Exchanges failed while the round ran.
    failures: u64,
    /// Keys the node sent to peer replicas while the round ran (keys it received are
    /// counted by the peers that sent them).
    keys_repaired: u64,
}

impl RoundSummary {
    /// The round as seen between the status `before` it started and the one `after` it ended.
    fn new(before: &StatusReport, after: &StatusReport) -> Self {
        let p = after.repair.clone();
        RoundSummary {
            node: after.node.clone(),
            completed: !p.running && p.done >= p.total,
            progress: p,
            exchanges: after.exchanges.saturating_sub(before.exchanges),
            failures: after
                .exchange_failures
                .saturating_sub(before.exchange_failures),
            // A ring change clears the per-range counts, so this never goes below zero.
            keys_repaired: keys_repaired(after).saturating_sub(keys_repaired(before)),
        }
    }

    fn text(&self) -> String {
        format!(
            "repair round on {}: {}\n{}",
            self.node,
            round_text(&self.progress),
            output::fields(&[
                ("exchanges completed", self.exchanges.to_string()),
                ("exchanges failed", self.failures.to_string()),
                (
                    "keys repaired",
                    format!(
                        "{} (sent by {} to peer replicas)",
                        self.keys_repaired, self.node
                    )
                ),
            ])
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringkv::proto::RangeStatus;

    fn report(exchanges: u64, failures: u64, repaired: &[u64], p: RepairProgress) -> StatusReport {
        StatusReport {
            node: "n3".into(),
            ranges: repaired
                .iter()
                .enumerate()
                .map(|(i, &keys_repaired)| RangeStatus {
                    start: i as u64,
                    end: i as u64 + 1,
                    replica: true,
                    last_exchange_ms: None,
                    keys_repaired,
                    hints_pending: 0,
                })
                .collect(),
            repair: p,
            exchanges,
            exchange_failures: failures,
            ..StatusReport::default()
        }
    }

    fn progress(done: u64, total: u64, running: bool) -> RepairProgress {
        RepairProgress {
            total,
            done,
            running,
        }
    }

    #[test]
    fn a_round_summary_counts_only_what_moved_during_the_round() {
        let before = report(100, 4, &[5, 0], progress(0, 0, false));
        let after = report(110, 6, &[9, 3], progress(12, 12, false));
        let s = RoundSummary::new(&before, &after);
        assert!(s.completed);
        assert_eq!((s.exchanges, s.failures, s.keys_repaired), (10, 2, 7));
        assert_eq!(
            s.text(),
            "repair round on n3: finished, 12/12 exchanges\n\
             exchanges completed:  10\n\
             exchanges failed:     2\n\
             keys repaired:        7 (sent by n3 to peer replicas)\n"
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["node"], "n3");
        assert_eq!(json["total"], 12);
        assert_eq!(json["done"], 12);
        assert_eq!(json["running"], false);
        assert_eq!(json["completed"], true);
        assert_eq!(json["exchanges"], 10);
        assert_eq!(json["failures"], 2);
        assert_eq!(json["keys_repaired"], 7);
    }

    #[test]
    fn a_round_cut_short_by_a_ring_change_is_not_completed_and_counts_never_go_negative() {
        let before = report(100, 4, &[5, 7], progress(0, 0, false));
        // The ring changed: per-range counts were cleared, the round stopped early.
        let after = report(103, 5, &[1], progress(7, 12, false));
        let s = RoundSummary::new(&before, &after);
        assert!(!s.completed);
        assert_eq!((s.exchanges, s.failures, s.keys_repaired), (3, 1, 0));
        assert!(s.text().contains("cut short"));
    }

    #[test]
    fn starting_says_whether_a_round_was_queued_joined_or_not_needed() {
        assert_eq!(
            started_text("n1", &progress(0, 0, false), false),
            "nothing to repair on n1: no range it replicates has a live peer\n"
        );
        let queued = started_text("n1", &progress(0, 8, true), false);
        assert!(
            queued.starts_with("repair round started on n1: running, 0/8"),
            "{queued}"
        );
        let joined = started_text("n1", &progress(3, 8, true), true);
        assert!(
            joined.starts_with("repair round already running on n1"),
            "{joined}"
        );
        let json = serde_json::to_value(StartedJson {
            node: "n1",
            progress: &progress(3, 8, true),
        })
        .unwrap();
        assert_eq!(json["node"], "n1");
        assert_eq!(json["done"], 3);
        assert_eq!(json["total"], 8);
        assert_eq!(json["running"], true);
    }

    #[test]
    fn within_is_bounded() {
        assert_eq!(within("10m"), Ok(Duration::from_secs(600)));
        assert!(within("500ms").is_err());
        assert!(within("25h").is_err());
        assert!(within("soon").is_err());
    }
}
