//! The client commands: `put`, `get`, `del`, `members` and `ring`, each one request to the
//! node named by `--node`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use ringkv::hlc::Timestamp;
use ringkv::net::{TlsMaterial, TransportConfig};
use ringkv::proto::{
    ClientRequest, ClientResponse, MemberRow, ReadResult, RingInfo, Session, WriteResult,
};
use ringkv::version::Context;
use ringkv::{Api, Client, WriteOptions};
use serde::Serialize;

use crate::args;
use crate::output::{self, JsonBytes, OutputFormat, Table};
use crate::Global;

/// Bound on dialling a node; the whole request is bounded by `--timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// `ringctl put KEY VALUE`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The key (UTF-8).
    pub key: String,
    /// The value (UTF-8).
    pub value: String,
    /// Acknowledgements to wait for (the node's default W when absent).
    #[arg(long = "w", value_parser = clap::value_parser!(u8).range(1..))]
    pub w: Option<u8>,
    /// Context token from an earlier `get`: the write replaces exactly what that read saw.
    #[arg(long, value_parser = args::context)]
    pub context: Option<Context>,
    /// Primary mode: have this node serve the write itself, never forward it to the key's
    /// primary (a replica answers READONLY, as a Redis replica does).
    #[arg(long)]
    pub direct: bool,
}

/// `ringctl get KEY`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The key (UTF-8).
    pub key: String,
    /// Replies to wait for (the node's default R when absent).
    #[arg(long = "r", value_parser = clap::value_parser!(u8).range(1..))]
    pub r: Option<u8>,
    /// Answer only after every reachable replica replied and the stale ones acknowledged
    /// their repair; says how many were repaired.
    #[arg(long)]
    pub wait_repair: bool,
    /// Primary mode: read this node's own copy (possibly behind the primary) instead of
    /// forwarding to the key's primary.
    #[arg(long)]
    pub direct: bool,
    /// Primary mode, read-your-writes: the session a `put` printed (REPLID:OFFSET); a replica
    /// answers only once it holds that write.
    #[arg(long)]
    pub after: Option<Session>,
}

/// `ringctl del KEY`.
#[derive(Debug, Args)]
pub struct DelArgs {
    /// The key (UTF-8).
    pub key: String,
    /// Acknowledgements to wait for (the node's default W when absent).
    #[arg(long = "w", value_parser = clap::value_parser!(u8).range(1..))]
    pub w: Option<u8>,
    /// Context token from an earlier `get`: the delete replaces exactly what that read saw.
    #[arg(long, value_parser = args::context)]
    pub context: Option<Context>,
}

/// Loads the client certificate from `dir`, naming the directory when it is missing.
pub fn client_tls(dir: &Path) -> anyhow::Result<TlsMaterial> {
    if !dir.is_dir() {
        bail!(
            "certificate directory {} does not exist (make one with `ringctl certs init --dir {}`, \
             or point --certs / RINGKV_CERTS at the cluster's)",
            dir.display(),
            dir.display()
        );
    }
    TlsMaterial::load_client(dir)
        .with_context(|| format!("cannot load the client certificate from {}", dir.display()))
}

/// Resolves `host:port`, bounded by `limit`.
pub async fn resolve(node: &str, limit: Duration) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = node.parse() {
        return Ok(addr);
    }
    let found = tokio::time::timeout(limit, tokio::net::lookup_host(node))
        .await
        .with_context(|| format!("resolving node address {node:?} timed out"))?
        .with_context(|| format!("cannot resolve node address {node:?} (want host:port)"))?;
    let mut addrs: Vec<SocketAddr> = found.collect();
    // Certificates name IPv4 loopback by default; prefer IPv4 when a name has both.
    addrs.sort_by_key(SocketAddr::is_ipv6);
    addrs
        .into_iter()
        .next()
        .with_context(|| format!("node address {node:?} resolves to nothing"))
}

/// A client of `--node` with the client certificate from `--certs`.
pub async fn connect(g: &Global) -> anyhow::Result<Client> {
    let tls = client_tls(&g.certs)?;
    let addr = resolve(&g.node, g.timeout).await?;
    let config = TransportConfig {
        call_timeout: g.timeout,
        connect_timeout: g.timeout.min(CONNECT_TIMEOUT),
        ..TransportConfig::default()
    };
    Client::with_config(addr, &tls, config)
        .with_context(|| format!("cannot make a client of node {addr}"))
}

/// `ringctl put`.
pub async fn put(g: &Global, a: PutArgs) -> anyhow::Result<ExitCode> {
    let client = connect(g).await?;
    let opts = WriteOptions {
        w: a.w,
        context: a.context,
    };
    let (key, value) = (a.key.clone().into_bytes(), a.value.into_bytes());
    let written = if a.direct {
        let req = ClientRequest::Put {
            key,
            value,
            context: opts.context,
            w: opts.w,
        };
        match client.request(ClientRequest::Direct(Box::new(req))).await {
            Ok(ClientResponse::Written(w)) => Ok(w),
            Ok(other) => Err(ringkv::Error::Unexpected(format!("{other:?}"))),
            Err(e) => Err(e),
        }
    } else {
        client.put(key, value, opts).await
    }
    .with_context(|| format!("put {:?} via {}", a.key, client.node()))?;
    print_written(g.output, &a.key, &written)?;
    Ok(ExitCode::SUCCESS)
}

/// `ringctl del`.
pub async fn del(g: &Global, a: DelArgs) -> anyhow::Result<ExitCode> {
    let client = connect(g).await?;
    let opts = WriteOptions {
        w: a.w,
        context: a.context,
    };
    let written = client
        .delete(a.key.clone().into_bytes(), opts)
        .await
        .with_context(|| format!("del {:?} via {}", a.key, client.node()))?;
    print_written(g.output, &a.key, &written)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct WrittenJson<'a> {
    key: &'a str,
    context: String,
    acked: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<String>,
}

fn print_written(format: OutputFormat, key: &str, w: &WriteResult) -> anyhow::Result<()> {
    let session = w.session.as_ref().map(ToString::to_string);
    match format {
        OutputFormat::Text => output::emit(&match session {
            Some(s) => format!("OK (acknowledged by {}, session {s})\n", w.acked),
            None => format!("OK (acknowledged by {})\n", w.acked),
        }),
        OutputFormat::Json => output::emit_json(&WrittenJson {
            key,
            context: w.context.to_token(),
            acked: w.acked,
            session,
        }),
    }
}

/// `ringctl get`: exit status 1 and `not found` on stderr when the key has no live value (see
/// [`crate::exit`] for the other statuses).
pub async fn get(g: &Global, a: GetArgs) -> anyhow::Result<ExitCode> {
    let client = connect(g).await?;
    let mut req = ClientRequest::Get {
        key: a.key.clone().into_bytes(),
        r: a.r,
        wait_repair: a.wait_repair,
    };
    if let Some(after) = a.after.clone() {
        req = ClientRequest::After {
            after,
            req: Box::new(req),
        };
    }
    if a.direct {
        req = ClientRequest::Direct(Box::new(req));
    }
    let read = match client.request(req).await {
        Ok(ClientResponse::Got(r)) => Ok(r),
        Ok(other) => Err(ringkv::Error::Unexpected(format!("{other:?}"))),
        Err(e) => Err(e),
    }
    .with_context(|| format!("get {:?} via {}", a.key, client.node()))?;
    match g.output {
        OutputFormat::Text => output::emit(&read_text(&read))?,
        OutputFormat::Json => output::emit_json(&ReadJson::new(&a.key, &read))?,
    }
    if a.wait_repair && g.output == OutputFormat::Text {
        output::note(&repaired_text(&read));
    }
    if read.values.is_empty() {
        output::note("not found");
        return Ok(ExitCode::FAILURE);
    }
    if read.values.len() > 1 && g.output == OutputFormat::Text {
        output::note(&format!(
            "{} siblings; to replace them all, write with --context {}",
            read.values.len(),
            read.context.to_token()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// What a read that waited for its repairs did, for stderr.
fn repaired_text(read: &ReadResult) -> String {
    let replicas = |n: u8| if n == 1 { "replica" } else { "replicas" };
    format!(
        "{} of {} {} answering repaired",
        read.repaired,
        read.replied,
        replicas(read.replied)
    )
}

/// Each value on its own line, decoded lossily as UTF-8.
fn read_text(read: &ReadResult) -> String {
    read.values
        .iter()
        .map(|v| format!("{}\n", String::from_utf8_lossy(&v.data)))
        .collect()
}

#[derive(Debug, Serialize)]
struct ReadJson<'a> {
    key: &'a str,
    values: Vec<ValueJson>,
    context: String,
    replied: u8,
    repaired: u8,
}

#[derive(Debug, Serialize)]
struct ValueJson {
    #[serde(flatten)]
    value: JsonBytes,
    ts: Timestamp,
}

impl<'a> ReadJson<'a> {
    fn new(key: &'a str, read: &ReadResult) -> Self {
        ReadJson {
            key,
            values: read
                .values
                .iter()
                .map(|v| ValueJson {
                    value: JsonBytes::new(&v.data),
                    ts: v.ts,
                })
                .collect(),
            context: read.context.to_token(),
            replied: read.replied,
            repaired: read.repaired,
        }
    }
}

/// `ringctl members`.
pub async fn members(g: &Global) -> anyhow::Result<ExitCode> {
    let client = connect(g).await?;
    let rows = client
        .members()
        .await
        .with_context(|| format!("members via {}", client.node()))?;
    match g.output {
        OutputFormat::Text => output::emit(&members_table(&rows))?,
        OutputFormat::Json => output::emit_json(&rows)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn members_table(rows: &[MemberRow]) -> String {
    let mut t = Table::new(&["NAME", "ADDRESS", "STATE", "STATUS", "ZONE"]);
    for m in rows {
        t.row(vec![
            m.name.clone(),
            m.addr.clone(),
            m.state.clone(),
            m.status.clone(),
            m.zone.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    t.render()
}

/// `ringctl ring`.
pub async fn ring(g: &Global) -> anyhow::Result<ExitCode> {
    let client = connect(g).await?;
    let info = client
        .ring()
        .await
        .with_context(|| format!("ring via {}", client.node()))?;
    match g.output {
        OutputFormat::Text => output::emit(&ring_text(&info))?,
        OutputFormat::Json => output::emit_json(&RingJson::new(&info))?,
    }
    Ok(ExitCode::SUCCESS)
}

fn ring_text(info: &RingInfo) -> String {
    let mut t = Table::new(&["NAME", "FIRST REPLICA", "REPLICA"]);
    for (name, first, any) in &info.nodes {
        t.row(vec![
            name.clone(),
            format!("{:.2}%", first * 100.0),
            format!("{:.2}%", any * 100.0),
        ]);
    }
    format!(
        "N={} vnodes={} nodes={}\n{}",
        info.n,
        info.vnodes,
        info.nodes.len(),
        t.render()
    )
}

#[derive(Debug, Serialize)]
struct RingJson {
    n: u8,
    vnodes: u32,
    nodes: Vec<RingNodeJson>,
}

#[derive(Debug, Serialize)]
struct RingNodeJson {
    name: String,
    first_replica_pct: f64,
    replica_pct: f64,
}

impl RingJson {
    fn new(info: &RingInfo) -> Self {
        RingJson {
            n: info.n,
            vnodes: info.vnodes,
            nodes: info
                .nodes
                .iter()
                .map(|(name, first, any)| RingNodeJson {
                    name: name.clone(),
                    first_replica_pct: first * 100.0,
                    replica_pct: any * 100.0,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringkv::proto::Value;

    fn value(data: &[u8], millis: u64) -> Value {
        Value {
            data: data.to_vec(),
            ts: Timestamp { millis, logical: 0 },
        }
    }

    #[test]
    fn text_prints_each_sibling_on_its_own_line_lossily() {
        let read = ReadResult {
            values: vec![value(b"one", 1), value(b"tw\xffo", 2)],
            context: Context::default(),
            replied: 2,
            repaired: 0,
        };
        assert_eq!(read_text(&read), "one\ntw\u{fffd}o\n");
        assert_eq!(read_text(&ReadResult::default()), "");
    }

    #[test]
    fn json_read_has_key_values_context_and_replies() {
        let read = ReadResult {
            values: vec![value(b"v", 7), value(&[0xff], 8)],
            context: Context::default(),
            replied: 3,
            repaired: 1,
        };
        let json = serde_json::to_value(ReadJson::new("k", &read)).unwrap();
        assert_eq!(json["key"], "k");
        assert_eq!(json["replied"], 3);
        assert_eq!(json["repaired"], 1);
        assert_eq!(repaired_text(&read), "1 of 3 replicas answering repaired");
        assert_eq!(json["context"], Context::default().to_token());
        assert_eq!(json["values"][0]["value"], "v");
        assert_eq!(json["values"][0]["ts"]["millis"], 7);
        assert!(json["values"][0].get("hex").is_none());
        assert_eq!(json["values"][1]["value"], "ff");
        assert_eq!(json["values"][1]["hex"], true);
    }

    #[test]
    fn members_table_shows_a_dash_for_no_zone() {
        let rows = vec![
            MemberRow {
                name: "n1".into(),
                addr: "127.0.0.1:7000".into(),
                state: "alive".into(),
                status: "up".into(),
                zone: Some("a".into()),
            },
            MemberRow {
                name: "n2".into(),
                addr: "127.0.0.1:7001".into(),
                state: "suspect".into(),
                status: "leaving".into(),
                zone: None,
            },
        ];
        let text = members_table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NAME"));
        assert!(lines[1].ends_with(" a"));
        assert!(lines[2].contains("suspect") && lines[2].ends_with(" -"));
    }

    #[test]
    fn ring_shares_print_as_percent() {
        let info = RingInfo {
            n: 3,
            vnodes: 256,
            nodes: vec![("n1".into(), 0.5, 1.0), ("n2".into(), 0.125, 0.75)],
        };
        let text = ring_text(&info);
        assert!(text.starts_with("N=3 vnodes=256 nodes=2\n"));
        assert!(text.contains("50.00%") && text.contains("100.00%"));
        assert!(text.contains("12.50%") && text.contains("75.00%"));
        let json = serde_json::to_value(RingJson::new(&info)).unwrap();
        assert_eq!(json["nodes"][1]["first_replica_pct"], 12.5);
        assert_eq!(json["nodes"][1]["replica_pct"], 75.0);
    }

    #[tokio::test]
    async fn literal_addresses_resolve_without_lookup() {
        let addr = resolve("127.0.0.1:7000", Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(addr, "127.0.0.1:7000".parse().unwrap());
        assert!(resolve("no-port-here", Duration::from_secs(1))
            .await
            .is_err());
    }
}
