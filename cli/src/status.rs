//! `ringctl status`: a node's anti-entropy and hinted-handoff state — a summary, and with
//! `--ranges` one line per ring range it replicates or keeps hints in (about `vnodes × N`
//! ranges across the cluster, so the table is opt-in).

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
    /// Also list every range the node replicates or keeps hints in: bounds, last exchange,
    /// keys repaired, hints pending.
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
        .filter(|r| r.replica && r.last_exchange_ms.is_none())
        .count()
}

/// Ranges the node replicates (the report also lists ranges it only keeps hints in).
pub fn replicated(report: &StatusReport) -> usize {
    report.ranges.iter().filter(|r| r.replica).count()
}

/// Hints the node keeps, every owner together.
pub fn hints_pending(report: &StatusReport) -> u64 {
    report
        .hints
        .iter()
        .fold(0, |sum, h| sum.saturating_add(h.count))
}

/// Hints pending per owner, e.g. `12 (n3: 10, n4: 2)`.
fn hints_text(r: &StatusReport) -> String {
    let total = hints_pending(r);
    if r.hints.is_empty() {
        return total.to_string();
    }
    let owners: Vec<String> = r
        .hints
        .iter()
        .map(|h| format!("{}: {}", h.owner, h.count))
        .collect();
    format!("{total} ({})", owners.join(", "))
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

/// The summary: node, ranges, exchanges, failures, the repair round, keys repaired, hints.
fn summary_text(r: &StatusReport) -> String {
    output::fields(&[
        ("node", r.node.clone()),
        ("ranges replicated", replicated(r).to_string()),
        ("never exchanged", never_exchanged(r).to_string()),
        ("exchanges", r.exchanges.to_string()),
        ("exchange failures", r.exchange_failures.to_string()),
        ("repair round", round_text(&r.repair)),
        ("keys repaired", keys_repaired(r).to_string()),
        ("hints pending", hints_text(r)),
        ("hints delivered", r.hints_delivered.to_string()),
        ("hints dropped", r.hints_dropped.to_string()),
    ])
}

/// One line per range `(START, END]`; last exchanges as ages counted from `now_ms`. A range
/// the node does not replicate (listed for the hints it keeps there) has no exchange.
fn ranges_table(r: &StatusReport, now_ms: u64) -> String {
    let mut t = Table::new(&[
        "START",
        "END",
        "LAST EXCHANGE",
        "KEYS REPAIRED",
        "HINTS PENDING",
    ]);
    for range in &r.ranges {
        let last = match (range.replica, range.last_exchange_ms) {
            (false, _) => "- (not a replica)".to_owned(),
            (true, None) => "never".to_owned(),
            (true, Some(ms)) => output::age(now_ms, ms),
        };
        t.row(vec![
            output::token_hex(range.start),
            output::token_hex(range.end),
            last,
            range.keys_repaired.to_string(),
            range.hints_pending.to_string(),
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
    ranges_replicated: usize,
    total_hints_pending: u64,
}

impl<'a> StatusJson<'a> {
    fn new(report: &'a StatusReport) -> Self {
        StatusJson {
            report,
            total_keys_repaired: keys_repaired(report),
            ranges_never_exchanged: never_exchanged(report),
            ranges_replicated: replicated(report),
            total_hints_pending: hints_pending(report),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringkv::proto::{HintsPending, RangeStatus};

    const NOW: u64 = 1_700_000_000_000;

    fn report() -> StatusReport {
        StatusReport {
            node: "n1".into(),
            ranges: vec![
                RangeStatus {
                    start: 0,
                    end: 0xff,
                    replica: true,
                    last_exchange_ms: Some(NOW - 3_000),
                    keys_repaired: 40,
                    hints_pending: 0,
                },
                RangeStatus {
                    start: 0xff,
                    end: 0xfff,
                    replica: false,
                    last_exchange_ms: None,
                    keys_repaired: 0,
                    hints_pending: 5,
                },
                RangeStatus {
                    start: 0xfff,
                    end: u64::MAX,
                    replica: true,
                    last_exchange_ms: None,
                    keys_repaired: 2,
                    hints_pending: 1,
                },
            ],
            hints: vec![
                HintsPending {
                    owner: "n3".into(),
                    count: 4,
                    bytes: 400,
                },
                HintsPending {
                    owner: "n4".into(),
                    count: 2,
                    bytes: 200,
                },
            ],
            hints_delivered: 9,
            hints_dropped: 1,
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
             keys repaired:      42\n\
             hints pending:      6 (n3: 4, n4: 2)\n\
             hints delivered:    9\n\
             hints dropped:      1\n"
        );
    }

    #[test]
    fn range_table_shows_ages_never_and_hints_pending() {
        let text = ranges_table(&report(), NOW);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("START") && lines[0].ends_with("HINTS PENDING"));
        assert!(lines[1].starts_with("0000000000000000  00000000000000ff  3s ago"));
        let cells = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(cells(lines[1])[4..], ["40", "0"]);
        assert!(lines[2].starts_with("00000000000000ff  0000000000000fff  - (not a replica)"));
        assert_eq!(cells(lines[2])[6..], ["0", "5"]);
        assert!(lines[3].starts_with("0000000000000fff  ffffffffffffffff  never"));
        assert_eq!(cells(lines[3])[3..], ["2", "1"]);
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
        assert_eq!(json["ranges"].as_array().map(Vec::len), Some(3));
        assert_eq!(json["ranges"][2]["end"], u64::MAX);
        assert!(json["ranges"][2]["last_exchange_ms"].is_null());
        assert_eq!(json["ranges"][1]["replica"], false);
        assert_eq!(json["ranges"][1]["hints_pending"], 5);
        assert_eq!(json["hints"][0]["owner"], "n3");
        assert_eq!(json["total_keys_repaired"], 42);
        assert_eq!(json["ranges_never_exchanged"], 1);
        assert_eq!(json["ranges_replicated"], 2);
        assert_eq!(json["total_hints_pending"], 6);
    }
}
