//! `ringctl cluster status`: one row per member, gathered from every live node (a bounded
//! number at once, each within a timeout), in the manner of `nodetool status`, and a summary
//! line: healthy or degraded, and ring ranges with fewer than N live replicas.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ringkv::client::RetryPolicy;
use ringkv::core::replication::ShardInfo;
use ringkv::proto::{MemberRow, NodeInfo, RingInfo, StatusReport};
use ringkv::{Api, Client};
use ringkv_ring::{Ring, RingConfig, RingNode};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::output::{self, OutputFormat, Table};
use crate::{ops, Global};

/// Nodes asked at once.
const FAN_OUT: usize = 8;
/// Longest one node may take to answer all three questions.
const NODE_TIMEOUT: Duration = Duration::from_secs(5);

/// What one node answered about itself.
struct Figures {
    info: NodeInfo,
    status: StatusReport,
    shards: Vec<ShardInfo>,
}

/// One member's row.
#[derive(Debug, Serialize, PartialEq)]
struct Row {
    /// nodetool-style letters: U(p)/S(uspect)/D(own), then N(ormal)/J(oining)/L(eaving).
    letters: String,
    name: String,
    address: String,
    zone: Option<String>,
    /// `alive`, `suspect` or `down`.
    state: String,
    /// `joining`, `up` or `leaving`.
    status: String,
    version: Option<String>,
    keys: Option<u64>,
    disk_bytes: Option<u64>,
    /// Share of the key space it holds a copy of (with N replicas per key).
    ownership: f64,
    /// Hints other nodes hold for it.
    hints_for: u64,
    /// Hints it holds for others (`None`: it did not answer).
    hints_on: Option<u64>,
    /// Primary-mode shards it is the primary of.
    shards_led: Option<usize>,
    /// Most log entries it is behind in a shard it follows, as that shard's primary sees it.
    replica_lag_entries: Option<u64>,
    /// Why the node gave no figures, if it did not.
    error: Option<String>,
}

/// The summary line.
#[derive(Debug, Serialize, PartialEq)]
struct Summary {
    healthy: bool,
    members: usize,
    up: usize,
    answered: usize,
    n: u8,
    ranges: usize,
    ranges_below_n: usize,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    summary: &'a Summary,
    members: &'a [Row],
}

/// `ringctl cluster status`.
pub async fn run(g: &Global) -> anyhow::Result<ExitCode> {
    let client = ops::connect(g).await?.with_retry(RetryPolicy::none());
    let members = client
        .members()
        .await
        .with_context(|| format!("members via {}", client.node()))?;
    let ring = client
        .ring()
        .await
        .with_context(|| format!("ring via {}", client.node()))?;
    let answers = gather(&client, &members, g.timeout.min(NODE_TIMEOUT)).await;
    let (rows, summary) = tabulate(&members, &ring, &answers);
    match g.output {
        OutputFormat::Text => output::emit(&text(&rows, &summary))?,
        OutputFormat::Json => output::emit_json(&StatusJson {
            summary: &summary,
            members: &rows,
        })?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Ask every member not declared down, `FAN_OUT` at a time.
async fn gather(
    client: &Client,
    members: &[MemberRow],
    timeout: Duration,
) -> BTreeMap<String, Result<Figures, String>> {
    let slots = Arc::new(Semaphore::new(FAN_OUT));
    let mut tasks = tokio::task::JoinSet::new();
    for m in members.iter().filter(|m| m.state != "down") {
        let Ok(addr) = m.addr.parse::<SocketAddr>() else {
            continue;
        };
        let (name, node, slots) = (m.name.clone(), client.for_node(addr), slots.clone());
        tasks.spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return (name, Err("cancelled".to_owned()));
            };
            let asked = tokio::time::timeout(timeout, ask(&node)).await;
            let figures = match asked {
                Ok(Ok(f)) => Ok(f),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {timeout:?}")),
            };
            (name, figures)
        });
    }
    let mut answers = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok((name, figures)) = done {
            answers.insert(name, figures);
        }
    }
    answers
}

async fn ask(node: &Client) -> Result<Figures, ringkv::Error> {
    let info = node.info().await?;
    let status = node.status().await?;
    let shards = node.replication(None).await?;
    Ok(Figures {
        info,
        status,
        shards,
    })
}

/// nodetool-style letters for a member.
fn letters(state: &str, status: &str) -> String {
    let s = match state {
        "alive" => 'U',
        "suspect" => 'S',
        _ => 'D',
    };
    let t = match status {
        "joining" => 'J',
        "leaving" => 'L',
        _ => 'N',
    };
    format!("{s}{t}")
}

/// Rows and summary from what the contacted node and the members answered.
fn tabulate(
    members: &[MemberRow],
    ring: &RingInfo,
    answers: &BTreeMap<String, Result<Figures, String>>,
) -> (Vec<Row>, Summary) {
    let figures = || answers.values().filter_map(|a| a.as_ref().ok());
    let mut hints_for: BTreeMap<&str, u64> = BTreeMap::new();
    let mut lag: BTreeMap<&str, u64> = BTreeMap::new();
    for f in figures() {
        for h in &f.status.hints {
            let e = hints_for.entry(h.owner.as_str()).or_default();
            *e = e.saturating_add(h.count);
        }
        for s in f.shards.iter().filter(|s| s.role == "primary") {
            for r in &s.replicas {
                let behind = s.offset.saturating_sub(r.offset);
                let e = lag.entry(r.name.as_str()).or_default();
                *e = (*e).max(behind);
            }
        }
    }
    let share: BTreeMap<&str, f64> = ring
        .nodes
        .iter()
        .map(|(name, _, copy)| (name.as_str(), *copy))
        .collect();
    let rows: Vec<Row> = members
        .iter()
        .map(|m| {
            let answer = answers.get(&m.name);
            let f = answer.and_then(|a| a.as_ref().ok());
            let error = match answer {
                Some(Err(e)) => Some(e.clone()),
                Some(Ok(_)) => None,
                None if m.state == "down" => Some("down: not asked".to_owned()),
                None => Some("no usable address".to_owned()),
            };
            Row {
                letters: letters(&m.state, &m.status),
                name: m.name.clone(),
                address: m.addr.clone(),
                zone: m.zone.clone(),
                state: m.state.clone(),
                status: m.status.clone(),
                version: f.map(|f| f.info.version.clone()),
                keys: f.and_then(|f| f.info.keys),
                disk_bytes: f.and_then(|f| f.info.disk_bytes),
                ownership: share.get(m.name.as_str()).copied().unwrap_or(0.0),
                hints_for: hints_for.get(m.name.as_str()).copied().unwrap_or(0),
                hints_on: f.map(|f| f.status.hints.iter().map(|h| h.count).sum()),
                shards_led: f.map(|f| f.shards.iter().filter(|s| s.role == "primary").count()),
                replica_lag_entries: lag.get(m.name.as_str()).copied(),
                error,
            }
        })
        .collect();
    let (ranges, ranges_below_n) = ranges_below_n(members, ring);
    let up = rows.iter().filter(|r| r.letters == "UN").count();
    let answered = rows.iter().filter(|r| r.error.is_none()).count();
    let summary = Summary {
        healthy: up == rows.len() && answered == rows.len() && ranges_below_n == 0,
        members: rows.len(),
        up,
        answered,
        n: ring.n,
        ranges,
        ranges_below_n,
    };
    (rows, summary)
}

/// Ring ranges, and those whose preference list has fewer than N members alive.
fn ranges_below_n(members: &[MemberRow], info: &RingInfo) -> (usize, usize) {
    let Ok(config) = RingConfig::new(info.vnodes, info.n.into()) else {
        return (0, 0);
    };
    let nodes = members.iter().map(|m| match &m.zone {
        Some(zone) => RingNode::new(m.name.clone()).in_zone(zone.clone()),
        None => RingNode::new(m.name.clone()),
    });
    let ring = Ring::new(nodes, config);
    let alive: Vec<&str> = members
        .iter()
        .filter(|m| m.state == "alive")
        .map(|m| m.name.as_str())
        .collect();
    let count = ring.ranges().len();
    let below = (0..count)
        .filter(|&i| {
            let live = ring
                .preference_list_at(i)
                .iter()
                .filter(|n| alive.contains(&n.as_str()))
                .count();
            live < usize::from(info.n)
        })
        .count();
    (count, below)
}

/// Bytes in binary units.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn text(rows: &[Row], s: &Summary) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    let mut t = Table::new(&[
        "--",
        "STATE",
        "NAME",
        "ADDRESS",
        "ZONE",
        "KEYS",
        "DISK",
        &format!("OWNS (N={})", s.n),
        "HINTS FOR",
        "HINTS ON",
        "LEADS",
        "LAG",
        "VERSION",
    ]);
    for r in rows {
        t.row(vec![
            r.letters.clone(),
            format!("{}, {}", r.state, r.status),
            r.name.clone(),
            r.address.clone(),
            opt(r.zone.clone()),
            opt(r.keys.map(|k| format!("~{k}"))),
            opt(r.disk_bytes.map(bytes)),
            format!("{:.1}%", r.ownership * 100.0),
            r.hints_for.to_string(),
            opt(r.hints_on.map(|h| h.to_string())),
            opt(r.shards_led.map(|n| n.to_string())),
            opt(r.replica_lag_entries.map(|n| n.to_string())),
            opt(r.version.clone()),
        ]);
    }
    let mut out = String::from(
        "Status: U=up (alive) S=suspect D=down / State: N=normal J=joining L=leaving\n",
    );
    out.push_str(&t.render());
    for r in rows {
        if let Some(e) = &r.error {
            out.push_str(&format!("{}: {e}\n", r.name));
        }
    }
    out.push_str(&format!(
        "cluster {}: {} of {} members up, {} answered; {} of {} ranges below N={} live replicas\n",
        if s.healthy { "healthy" } else { "degraded" },
        s.up,
        s.members,
        s.answered,
        s.ranges_below_n,
        s.ranges,
        s.n
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringkv::proto::HintsPending;

    fn member(name: &str, state: &str, status: &str) -> MemberRow {
        MemberRow {
            name: name.into(),
            addr: format!("127.0.0.1:{}", 7000 + name.len()),
            state: state.into(),
            status: status.into(),
            zone: None,
        }
    }

    fn ring_of(names: &[&str]) -> RingInfo {
        RingInfo {
            n: 3,
            vnodes: 16,
            nodes: names.iter().map(|n| ((*n).to_owned(), 0.33, 1.0)).collect(),
        }
    }

    #[test]
    fn letters_follow_nodetool() {
        assert_eq!(letters("alive", "up"), "UN");
        assert_eq!(letters("down", "up"), "DN");
        assert_eq!(letters("alive", "joining"), "UJ");
        assert_eq!(letters("suspect", "leaving"), "SL");
    }

    #[test]
    fn a_down_member_degrades_the_cluster_and_its_hints_are_counted_for_it() {
        let members = vec![
            member("n1", "alive", "up"),
            member("n2", "alive", "up"),
            member("n3", "down", "up"),
        ];
        let mut answers = BTreeMap::new();
        for name in ["n1", "n2"] {
            let status = StatusReport {
                hints: vec![HintsPending {
                    owner: "n3".into(),
                    count: 5,
                    bytes: 50,
                }],
                ..StatusReport::default()
            };
            let info = NodeInfo {
                name: name.into(),
                version: "0.1.0".into(),
                keys: Some(10),
                disk_bytes: Some(2048),
            };
            let figures = Figures {
                info,
                status,
                shards: Vec::new(),
            };
            answers.insert(name.to_owned(), Ok(figures));
        }
        let (rows, summary) = tabulate(&members, &ring_of(&["n1", "n2", "n3"]), &answers);
        assert_eq!(rows[2].letters, "DN");
        assert_eq!(rows[2].hints_for, 10);
        assert_eq!(rows[0].hints_on, Some(5));
        assert_eq!(rows[2].hints_on, None);
        assert!(!summary.healthy);
        assert_eq!((summary.up, summary.answered), (2, 2));
        // Three nodes, N=3: every range has n3 in its list.
        assert_eq!(summary.ranges_below_n, summary.ranges);
        assert!(summary.ranges > 0);
        let text = text(&rows, &summary);
        assert!(text.contains("cluster degraded"), "{text}");
        assert!(text.contains("down, up"));
        assert!(text.contains("2.0 KiB"));
    }

    #[test]
    fn bytes_read_in_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(64 << 20), "64.0 MiB");
    }
}
