//! `ringctl status`: a node's anti-entropy state — a summary, and with `--ranges` one line
//! per ring range it replicates (about `vnodes × N` ranges across the cluster, so the table is
//! opt-in).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use ringkv::proto::{RepairProgress, StatusReport};
use ringkv::Api;
use serde::Serialize;

use crate::ops;
use crate::output::{self, OutputFormat, Table};
use crate::Global;

/// `ringctl status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Also list every range the node replicates: bounds, last exchange, keys repaired.
    #[arg(long)]
    pub ranges: bool,
}

/// `ringctl status`.
pub async fn run(g: &Global, a: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = ops::connect(g).await?;
    let report = client
        .status()
        .await
        .with_context(|| format!("status of {}", client.node()))?;
    match g.output {
        OutputFormat::Text => {
            let mut text = summary_text(&report);
            if a.ranges {
                text.push('\n');
                text.push_str(&ranges_table(&report, output::now_ms()));
            }
            output::emit(&text)?;
        }
        OutputFormat::Json => output::emit_json(&StatusJson::new(&report))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Keys the node has sent to peer replicas to repair them, over all its ranges.
pub fn keys_repaired(report: &StatusReport) -> u64 {
    report
        .ranges
        .iter()
        .fold(0, |sum, r| sum.saturating_add(r.keys_repaired))
}

/// Ranges the node replicates that no exchange has completed on yet.
pub fn never_exchanged(report: &StatusReport) -> usize {
    report
        .ranges
        .iter()
        .filter(|r| r.last_exchange_ms.is_none())
        .count()
}

/// A repair round in words: running with its progress, finished, cut short, or none.
pub fn round_text(p: &RepairProgress) -> String {
    let of = format!("{}/{} exchanges", p.done, p.total);
    if p.running {
        format!("running, {of} ({}%)", percent(p.done, p.total))
    } else if p.total == 0 {
        "none".to_owned()
    } else if p.done >= p.total {
        format!("finished, {of}")
    } else {
        format!("cut short (the ring changed) at {of}")
    }
}

fn percent(done: u64, total: u64) -> u64 {
    match total {
        0 => 100,
        t => done.min(t).saturating_mul(100) / t,
    }
}

/// The summary: node, ranges, exchanges, failures, the repair round, keys repaired.
fn summary_text(r: &StatusReport) -> String {
    output::fields(&[
        ("node", r.node.clone()),
        ("ranges replicated", r.ranges.len().to_string()),
        ("never exchanged", never_exchanged(r).to_string()),
        ("exchanges", r.exchanges.to_string()),
        ("exchange failures", r.exchange_failures.to_string()),
        ("repair round", round_text(&r.repair)),
        ("keys repaired", keys_repaired(r).to_string()),
    ])
}

/// One line per range `(START, END]`; last exchanges as ages counted from `now_ms`.
fn ranges_table(r: &StatusReport, now_ms: u64) -> String {
    let mut t = Table::new(&["START", "END", "LAST EXCHANGE", "KEYS REPAIRED"]);
    for range in &r.ranges {
        t.row(vec![
            output::token_hex(range.start),
            output::token_hex(range.end),
            range
                .last_exchange_ms
                .map_or_else(|| "never".to_owned(), |ms| output::age(now_ms, ms)),
            range.keys_repaired.to_string(),
        ]);
    }
    t.render()
}

/// The full report plus the summary's derived figures (named apart from the report's own).
#[derive(Debug, Serialize)]
struct StatusJson<'a> {
    #[serde(flatten)]
    report: &'a StatusReport,
    total_keys_repaired: u64,
    ranges_never_exchanged: usize,
}

impl<'a> StatusJson<'a> {
    fn new(report: &'a StatusReport) -> Self {
        StatusJson {
            report,
            total_keys_repaired: keys_repaired(report),
            ranges_never_exchanged: never_exchanged(report),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringkv::proto::RangeStatus;

    const NOW: u64 = 1_700_000_000_000;

    fn report() -> StatusReport {
        StatusReport {
            node: "n1".into(),
            ranges: vec![
                RangeStatus {
                    start: 0,
                    end: 0xff,
                    last_exchange_ms: Some(NOW - 3_000),
                    keys_repaired: 40,
                },
                RangeStatus {
                    start: 0xff,
                    end: u64::MAX,
                    last_exchange_ms: None,
                    keys_repaired: 2,
                },
            ],
            repair: RepairProgress {
                total: 8,
                done: 2,
                running: true,
            },
            exchanges: 120,
            exchange_failures: 3,
            ..StatusReport::default()
        }
    }

    #[test]
    fn summary_counts_ranges_exchanges_and_keys_repaired() {
        let text = summary_text(&report());
        assert_eq!(
            text,
            "node:               n1\n\
             ranges replicated:  2\n\
             never exchanged:    1\n\
             exchanges:          120\n\
             exchange failures:  3\n\
             repair round:       running, 2/8 exchanges (25%)\n\
             keys repaired:      42\n"
        );
    }

    #[test]
    fn range_table_shows_ages_and_never() {
        let text = ranges_table(&report(), NOW);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("START") && lines[0].ends_with("KEYS REPAIRED"));
        assert!(lines[1].starts_with("0000000000000000  00000000000000ff  3s ago"));
        assert!(lines[1].ends_with(" 40"));
        assert!(lines[2].starts_with("00000000000000ff  ffffffffffffffff  never"));
        assert!(lines[2].ends_with(" 2"));
    }

    #[test]
    fn rounds_read_as_running_finished_cut_short_or_none() {
        let p = |done, total, running| RepairProgress {
            total,
            done,
            running,
        };
        assert_eq!(round_text(&p(0, 0, false)), "none");
        assert_eq!(round_text(&p(1, 3, true)), "running, 1/3 exchanges (33%)");
        assert_eq!(round_text(&p(3, 3, false)), "finished, 3/3 exchanges");
        assert_eq!(
            round_text(&p(2, 3, false)),
            "cut short (the ring changed) at 2/3 exchanges"
        );
    }

    #[test]
    fn json_is_the_full_report_with_derived_totals() {
        let r = report();
        let json = serde_json::to_value(StatusJson::new(&r)).unwrap();
        assert_eq!(json["node"], "n1");
        assert_eq!(json["exchanges"], 120);
        assert_eq!(json["exchange_failures"], 3);
        assert_eq!(json["repair"]["total"], 8);
        assert_eq!(json["repair"]["running"], true);
        assert_eq!(json["ranges"].as_array().map(Vec::len), Some(2));
        assert_eq!(json["ranges"][1]["end"], u64::MAX);
        assert!(json["ranges"][1]["last_exchange_ms"].is_null());
        assert_eq!(json["total_keys_repaired"], 42);
        assert_eq!(json["ranges_never_exchanged"], 1);
    }
}
