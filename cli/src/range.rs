//! `ringctl range set` and `ringctl range list`: which key prefixes run in primary mode, and
//! with which options. The table is cluster metadata: set through any node, it spreads to all.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use ringkv::proto::RuleRow;
use ringkv::{Api, Mode, PrimaryOptions, ReadFrom, Stamp, SyncReplicas, Topology};
use serde::Serialize;

use crate::ops;
use crate::output::{self, OutputFormat, Table};
use crate::Global;

/// `ringctl range ...`.
#[derive(Debug, Subcommand)]
pub enum RangeCommand {
    /// Put the keys under a prefix in primary mode (with its options), or back in quorum mode.
    Set(SetArgs),
    /// Show the range table as the node holds it.
    List,
}

/// `ringctl range set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The key prefix, as text (its UTF-8 bytes are the prefix).
    #[arg(long)]
    pub prefix: String,
    /// `primary`: one primary per key range replicates to the others (Redis-style);
    /// `quorum`: masterless quorum reads and writes, every key's default.
    #[arg(long, value_enum)]
    pub mode: ModeArg,
    /// Replicas a primary-mode write waits for: a count (1 to N-1), `majority`, or `none`
    /// (asynchronous replication, the default).
    #[arg(long, value_parser = sync_replicas)]
    pub sync_replicas: Option<SyncReplicas>,
    /// Which copies serve primary-mode reads (default `primary`).
    #[arg(long, value_enum)]
    pub read_from: Option<ReadFromArg>,
    /// How writes reach the replicas: `star` from the primary to each (default), or `chain`
    /// (the primary to the first replica, each replica to the next). All primary prefixes of
    /// a shard share one log, so shards stream by chain as soon as any primary prefix asks for
    /// `chain`.
    #[arg(long, value_enum)]
    pub topology: Option<TopologyArg>,
}

/// `--mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// One primary per key range.
    Primary,
    /// Masterless quorums.
    Quorum,
}

/// `--read-from`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReadFromArg {
    /// The primary only.
    Primary,
    /// A replica, possibly behind.
    Replica,
    /// Whichever copy answers.
    Any,
}

/// `--topology`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TopologyArg {
    /// The primary sends to every replica.
    Star,
    /// The primary sends to the first replica, each replica passes writes to the next.
    Chain,
}

/// `--sync-replicas`: `none`, `majority` or a count from 1.
pub fn sync_replicas(s: &str) -> Result<SyncReplicas, String> {
    match s.trim() {
        "none" => Ok(SyncReplicas::None),
        "majority" => Ok(SyncReplicas::Majority),
        text => match text.parse::<u8>() {
            Ok(0) => Err("0 replicas: use `none` for asynchronous replication".into()),
            Ok(k) => Ok(SyncReplicas::Count(k)),
            Err(_) => Err(format!(
                "{s:?} is not a replica count (1 to 255), `majority` or `none`"
            )),
        },
    }
}

impl SetArgs {
    /// The mode asked for; options given with `--mode quorum` are a usage error.
    pub fn mode(&self) -> Result<Mode, String> {
        match self.mode {
            ModeArg::Primary => Ok(Mode::Primary(PrimaryOptions {
                sync: self.sync_replicas.unwrap_or_default(),
                read_from: match self.read_from {
                    None | Some(ReadFromArg::Primary) => ReadFrom::Primary,
                    Some(ReadFromArg::Replica) => ReadFrom::Replica,
                    Some(ReadFromArg::Any) => ReadFrom::Any,
                },
                topology: match self.topology {
                    None | Some(TopologyArg::Star) => Topology::Star,
                    Some(TopologyArg::Chain) => Topology::Chain,
                },
            })),
            ModeArg::Quorum => {
                let given: Vec<&str> = [
                    self.sync_replicas.map(|_| "--sync-replicas"),
                    self.read_from.map(|_| "--read-from"),
                    self.topology.map(|_| "--topology"),
                ]
                .into_iter()
                .flatten()
                .collect();
                if given.is_empty() {
                    Ok(Mode::Quorum)
                } else {
                    Err(format!("{} only apply to --mode primary", given.join(", ")))
                }
            }
        }
    }
}

/// `ringctl range`.
pub async fn run(g: &Global, c: RangeCommand) -> anyhow::Result<ExitCode> {
    let client = ops::connect(g).await?;
    let rows = match c {
        RangeCommand::Set(a) => {
            let mode = a.mode().map_err(anyhow::Error::msg)?;
            client
                .range_set(a.prefix.clone().into_bytes(), mode)
                .await
                .with_context(|| format!("range set {:?} via {}", a.prefix, client.node()))?
        }
        RangeCommand::List => client
            .range_list()
            .await
            .with_context(|| format!("range list via {}", client.node()))?,
    };
    match g.output {
        OutputFormat::Text => output::emit(&rules_table(&rows))?,
        OutputFormat::Json => {
            output::emit_json(&rows.iter().map(RuleJson::new).collect::<Vec<_>>())?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per rule; options read `-` for a quorum rule.
fn rules_table(rows: &[RuleRow]) -> String {
    let mut t = Table::new(&[
        "PREFIX",
        "MODE",
        "SYNC REPLICAS",
        "READ FROM",
        "TOPOLOGY",
        "STAMP",
    ]);
    for row in rows {
        let rule = RuleJson::new(row);
        let dash = |o: Option<String>| o.unwrap_or_else(|| "-".into());
        t.row(vec![
            output::one_line_value(&row.prefix),
            rule.mode.into(),
            dash(rule.sync_replicas),
            dash(rule.read_from),
            dash(rule.topology),
            row.stamp.to_string(),
        ]);
    }
    t.render()
}

/// A rule for scripts: the prefix as text (or hex with `prefix_hex`), options as names,
/// `null` for a quorum rule.
#[derive(Debug, Serialize)]
struct RuleJson<'a> {
    prefix: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    prefix_hex: bool,
    mode: &'static str,
    sync_replicas: Option<String>,
    read_from: Option<String>,
    topology: Option<String>,
    stamp: &'a Stamp,
}

impl<'a> RuleJson<'a> {
    fn new(row: &'a RuleRow) -> Self {
        let bytes = output::JsonBytes::new(&row.prefix);
        let options = match &row.mode {
            Mode::Primary(o) => Some(o),
            Mode::Quorum => None,
        };
        RuleJson {
            prefix: bytes.value,
            prefix_hex: bytes.hex,
            mode: match row.mode {
                Mode::Primary(_) => "primary",
                Mode::Quorum => "quorum",
            },
            sync_replicas: options.map(|o| o.sync.to_string()),
            read_from: options.map(|o| o.read_from.to_string()),
            topology: options.map(|o| o.topology.to_string()),
            stamp: &row.stamp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(mode: ModeArg) -> SetArgs {
        SetArgs {
            prefix: "p".into(),
            mode,
            sync_replicas: None,
            read_from: None,
            topology: None,
        }
    }

    fn rows() -> Vec<RuleRow> {
        let stamp = |counter, node: &str| Stamp {
            counter,
            node: node.into(),
        };
        vec![
            RuleRow {
                prefix: b"orders/".to_vec(),
                mode: Mode::Primary(PrimaryOptions {
                    sync: SyncReplicas::Count(2),
                    read_from: ReadFrom::Any,
                    topology: Topology::Chain,
                }),
                stamp: stamp(3, "n1"),
            },
            RuleRow {
                prefix: vec![0xff, b'\n'],
                mode: Mode::Quorum,
                stamp: stamp(4, "n2"),
            },
        ]
    }

    #[test]
    fn sync_replicas_take_a_count_majority_or_none() {
        assert_eq!(sync_replicas("2"), Ok(SyncReplicas::Count(2)));
        assert_eq!(sync_replicas("majority"), Ok(SyncReplicas::Majority));
        assert_eq!(sync_replicas("none"), Ok(SyncReplicas::None));
        assert!(sync_replicas("0").unwrap_err().contains("none"));
        assert!(sync_replicas("256").is_err());
        assert!(sync_replicas("all").is_err());
    }

    #[test]
    fn primary_options_default_to_async_primary_reads_and_star() {
        assert_eq!(
            args(ModeArg::Primary).mode(),
            Ok(Mode::Primary(PrimaryOptions::default()))
        );
        let mut a = args(ModeArg::Primary);
        a.sync_replicas = Some(SyncReplicas::Majority);
        a.read_from = Some(ReadFromArg::Replica);
        a.topology = Some(TopologyArg::Chain);
        assert_eq!(
            a.mode(),
            Ok(Mode::Primary(PrimaryOptions {
                sync: SyncReplicas::Majority,
                read_from: ReadFrom::Replica,
                topology: Topology::Chain,
            }))
        );
    }

    #[test]
    fn options_with_quorum_mode_are_refused_by_name() {
        assert_eq!(args(ModeArg::Quorum).mode(), Ok(Mode::Quorum));
        let mut a = args(ModeArg::Quorum);
        a.read_from = Some(ReadFromArg::Any);
        a.topology = Some(TopologyArg::Star);
        assert_eq!(
            a.mode(),
            Err("--read-from, --topology only apply to --mode primary".into())
        );
    }

    #[test]
    fn table_shows_options_or_dashes_and_the_stamp() {
        let text = rules_table(&rows());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("PREFIX") && lines[0].ends_with("STAMP"));
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(cells, ["orders/", "primary", "2", "any", "chain", "3@n1"]);
        let cells: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(cells, ["\u{fffd}\\n", "quorum", "-", "-", "-", "4@n2"]);
    }

    #[test]
    fn json_names_the_options_and_flags_a_hex_prefix() {
        let rows = rows();
        let json: Vec<_> = rows.iter().map(RuleJson::new).collect();
        let json = serde_json::to_value(json).unwrap();
        assert_eq!(json[0]["prefix"], "orders/");
        assert!(json[0].get("prefix_hex").is_none());
        assert_eq!(json[0]["mode"], "primary");
        assert_eq!(json[0]["sync_replicas"], "2");
        assert_eq!(json[0]["read_from"], "any");
        assert_eq!(json[0]["topology"], "chain");
        assert_eq!(json[0]["stamp"]["counter"], 3);
        assert_eq!(json[0]["stamp"]["node"], "n1");
        assert_eq!(json[1]["prefix"], "ff0a");
        assert_eq!(json[1]["prefix_hex"], true);
        assert_eq!(json[1]["mode"], "quorum");
        assert!(json[1]["sync_replicas"].is_null());
    }
}
