//! Connection and server commands: the handshake clients make and what they ask of a server.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::FutureExt;

use super::table::{Spec, COMMANDS};
use super::{upper, Step};
use crate::api::Api;
use crate::core::replication::ShardInfo;
use crate::resp::codec::Reply;
use crate::resp::conn::ConnState;
use crate::resp::errors;
use crate::resp::Shared;
use crate::store::Durability;

/// The Redis version whose commands and replies the front follows (clients gate features
/// on it); `INFO` gives ringkv's own version beside it.
pub(crate) const REDIS_COMPAT_VERSION: &str = "7.2.0";

pub(super) fn ping(args: &[Bytes]) -> Reply {
    match args {
        [_] => Reply::Simple("PONG"),
        [_, msg] => Reply::Bulk(msg.clone()),
        _ => Reply::err("wrong number of arguments for 'ping' command"),
    }
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
pub(super) fn hello(args: &[Bytes], conn: &mut ConnState, shared: &Shared) -> Reply {
    let mut resp3 = conn.resp3;
    if let Some(v) = args.get(1) {
        match v.as_ref() {
            b"2" => resp3 = false,
            b"3" => resp3 = true,
            _ => return Reply::Error("NOPROTO unsupported protocol version".into()),
        }
    }
    let mut name = None;
    let mut i = 2;
    while i < args.len() {
        match upper(&args[i]).as_str() {
            "AUTH" => {
                return Reply::err(
                    "AUTH is not used: access is by a client certificate signed by the cluster CA (TLS)",
                )
            }
            "SETNAME" if i + 1 < args.len() => {
                name = Some(args[i + 1].clone());
                i += 2;
            }
            _ => return Reply::err("syntax error in HELLO"),
        }
    }
    conn.resp3 = resp3;
    if name.is_some() {
        conn.name = name;
    }
    Reply::Map(vec![
        (Reply::text("server"), Reply::text("redis")),
        (Reply::text("version"), Reply::text(REDIS_COMPAT_VERSION)),
        (Reply::text("proto"), Reply::Int(if resp3 { 3 } else { 2 })),
        (Reply::text("id"), Reply::Int(conn.id as i64)),
        (Reply::text("mode"), Reply::text("cluster")),
        (Reply::text("role"), Reply::text("master")),
        (Reply::text("modules"), Reply::Array(vec![])),
        (Reply::text("ringkv_node"), Reply::text(&shared.facts.name)),
    ])
}

/// `CLIENT ID|INFO|LIST|SETNAME|GETNAME|SETINFO|NO-EVICT|NO-TOUCH|REPLY ON`.
pub(super) fn client(args: &[Bytes], conn: &mut ConnState) -> Reply {
    let sub = upper(&args[1]);
    match (sub.as_str(), args.len()) {
        ("ID", 2) => Reply::Int(conn.id as i64),
        ("INFO", 2) | ("LIST", _) => Reply::text(client_line(conn)),
        ("GETNAME", 2) => conn.name.clone().map_or(Reply::Nil, Reply::Bulk),
        ("SETNAME", 3) => {
            if args[2].iter().any(|b| *b <= b' ' || *b > b'~') {
                return Reply::err("Client names cannot contain spaces, newlines or special characters.");
            }
            conn.name = (!args[2].is_empty()).then(|| args[2].clone());
            Reply::OK
        }
        ("SETINFO", 4) => match upper(&args[2]).as_str() {
            "LIB-NAME" => {
                conn.lib.0 = Some(args[3].clone());
                Reply::OK
            }
            "LIB-VER" => {
                conn.lib.1 = Some(args[3].clone());
                Reply::OK
            }
            other => Reply::err(format!("Unrecognized option '{other}'")),
        },
        ("NO-EVICT" | "NO-TOUCH", 3) => Reply::OK,
        ("REPLY", 3) if upper(&args[2]) == "ON" => Reply::OK,
        _ => Reply::err(format!(
            "unknown subcommand or wrong number of arguments for 'CLIENT|{sub}' (supported: ID, INFO, LIST, SETNAME, GETNAME, SETINFO)"
        )),
    }
}

fn client_line(conn: &ConnState) -> String {
    let text = |b: &Option<Bytes>| {
        b.as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    };
    format!(
        "id={} addr={} name={} db=0 resp={} lib-name={} lib-ver={}\n",
        conn.id,
        conn.peer,
        text(&conn.name),
        if conn.resp3 { 3 } else { 2 },
        text(&conn.lib.0),
        text(&conn.lib.1)
    )
}

pub(super) fn select(db: &Bytes) -> Reply {
    if db.as_ref() == b"0" {
        Reply::OK
    } else {
        Reply::err("ringkv has one database: only SELECT 0 is accepted")
    }
}

pub(super) fn reset(conn: &mut ConnState) -> Reply {
    conn.reset();
    Reply::Simple("RESET")
}

/// `COMMAND`, `COMMAND COUNT|LIST|INFO names|DOCS names`.
pub(super) fn command(args: &[Bytes]) -> Reply {
    let Some(sub) = args.get(1).map(upper) else {
        return Reply::Array(COMMANDS.iter().map(info_of).collect());
    };
    let named = || {
        args[2..]
            .iter()
            .map(|a| super::table::find(&String::from_utf8_lossy(a).to_ascii_lowercase()))
    };
    match sub.as_str() {
        "COUNT" => Reply::Int(COMMANDS.len() as i64),
        "LIST" => Reply::Array(COMMANDS.iter().map(|s| Reply::text(s.name)).collect()),
        "INFO" if args.len() == 2 => Reply::Array(COMMANDS.iter().map(info_of).collect()),
        "INFO" => Reply::Array(named().map(|s| s.map_or(Reply::Nil, info_of)).collect()),
        "DOCS" if args.len() == 2 => Reply::Map(COMMANDS.iter().map(docs_of).collect()),
        "DOCS" => Reply::Map(named().flatten().map(docs_of).collect()),
        _ => Reply::err(format!(
            "unknown subcommand '{sub}' (supported: COUNT, LIST, INFO, DOCS)"
        )),
    }
}

fn info_of(s: &Spec) -> Reply {
    let (first, last, step) = s.keys;
    Reply::Array(vec![
        Reply::text(s.name),
        Reply::Int(s.arity),
        Reply::Array(s.flags.iter().map(|f| Reply::Simple(f)).collect()),
        Reply::Int(first),
        Reply::Int(last),
        Reply::Int(step),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
    ])
}

fn docs_of(s: &Spec) -> (Reply, Reply) {
    (
        Reply::text(s.name),
        Reply::Map(vec![
            (Reply::text("summary"), Reply::text(s.summary)),
            (Reply::text("since"), Reply::text("1.0.0")),
            (Reply::text("group"), Reply::text(s.group)),
        ]),
    )
}

/// `CONFIG GET name|pattern ...`: the settings Redis tools read, answered from the node's.
pub(super) fn config(args: &[Bytes], shared: &Shared) -> Reply {
    if upper(&args[1]) != "GET" || args.len() < 3 {
        return Reply::err(
            "only CONFIG GET is supported: ringkv is configured by `ringctl serve` flags",
        );
    }
    let facts = &shared.facts;
    let aof = if facts.persistent { "yes" } else { "no" };
    let fsync = match (facts.persistent, facts.durability) {
        (true, Durability::Sync) => "always",
        _ => "no",
    };
    let known = [
        ("save", ""),
        ("appendonly", aof),
        ("appendfsync", fsync),
        ("databases", "1"),
        ("cluster-enabled", "yes"),
        ("maxmemory", "0"),
    ];
    let mut out = Vec::new();
    for pattern in &args[2..] {
        let pattern = String::from_utf8_lossy(pattern).to_ascii_lowercase();
        for (k, v) in known {
            if pattern == "*" || pattern == k {
                out.push((Reply::text(k), Reply::text(v)));
            }
        }
    }
    Reply::Map(out)
}

/// `TIME`: seconds and microseconds of the node's wall clock.
pub(super) fn time() -> Reply {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Reply::Array(vec![
        Reply::text(now.as_secs().to_string()),
        Reply::text(now.subsec_micros().to_string()),
    ])
}

const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "persistence",
    "stats",
    "replication",
    "cluster",
    "keyspace",
];

/// `INFO [section ...]`.
pub(super) fn info(args: &[Bytes], shared: &Arc<Shared>) -> Step {
    let asked: Vec<String> = args[1..]
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let all = asked.is_empty()
        || asked
            .iter()
            .any(|a| matches!(a.as_str(), "all" | "everything" | "default"));
    let wanted: Vec<&'static str> = SECTIONS
        .iter()
        .copied()
        .filter(|s| all || asked.iter().any(|a| a == s))
        .collect();
    let shared = shared.clone();
    Step::Later(
        async move {
            let mut text = String::new();
            for section in wanted {
                let _ = writeln!(text, "# {}{}", section[..1].to_uppercase(), &section[1..]);
                match section {
                    "replication" => match shared.node.replication(None).await {
                        Ok(shards) => replication(&mut text, &shards),
                        Err(e) => return errors::reply(&e),
                    },
                    other => static_section(&mut text, other, &shared),
                }
                text.push_str("\r\n");
            }
            Reply::text(text)
        }
        .boxed(),
    )
}

fn static_section(text: &mut String, section: &str, shared: &Shared) {
    let stats = &shared.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let uptime = shared.started.elapsed().as_secs();
    let lines: Vec<(&str, String)> = match section {
        "server" => vec![
            ("redis_version", REDIS_COMPAT_VERSION.into()),
            ("ringkv_version", env!("CARGO_PKG_VERSION").into()),
            ("ringkv_node", shared.facts.name.clone()),
            ("redis_mode", "cluster".into()),
            ("arch_bits", (usize::BITS).to_string()),
            ("process_id", std::process::id().to_string()),
            ("tcp_port", shared.addr.port().to_string()),
            ("uptime_in_seconds", uptime.to_string()),
            ("uptime_in_days", (uptime / 86_400).to_string()),
        ],
        "clients" => vec![
            ("connected_clients", load(&stats.connected).to_string()),
            ("maxclients", shared.limits.max_connections.to_string()),
        ],
        "persistence" => vec![
            ("loading", "0".into()),
            ("aof_enabled", u8::from(shared.facts.persistent).to_string()),
            ("rdb_changes_since_last_save", "0".into()),
        ],
        "stats" => vec![
            (
                "total_connections_received",
                load(&stats.connections).to_string(),
            ),
            (
                "total_commands_processed",
                load(&stats.commands).to_string(),
            ),
            ("rejected_connections", load(&stats.rejected).to_string()),
            ("total_error_replies", load(&stats.errors).to_string()),
            (
                "ringkv_protocol_errors",
                load(&stats.protocol_errors).to_string(),
            ),
        ],
        "cluster" => vec![("cluster_enabled", "1".into())],
        // ringkv keeps no key count: the section is there, empty, as for an empty Redis.
        _ => vec![],
    };
    for (k, v) in lines {
        let _ = writeln!(text, "{k}:{v}\r");
    }
}

/// Redis's `info replication` fields, one `shardN` line per primary-mode shard this node
/// holds (a node is primary of some shards and replica of others).
fn replication(text: &mut String, shards: &[ShardInfo]) {
    let _ = writeln!(text, "role:master\r");
    let _ = writeln!(text, "primary_mode_shards:{}\r", shards.len());
    for (i, s) in shards.iter().enumerate() {
        let role = if s.role == "primary" {
            "master"
        } else {
            "slave"
        };
        let _ = write!(
            text,
            "shard{i}:members={},role={role},epoch={},master={},master_replid={},master_repl_offset={},second_repl_offset={},repl_backlog_size={},connected_slaves={}",
            s.shard.join("|"),
            s.epoch,
            s.primary.as_deref().unwrap_or("?"),
            s.replid,
            s.offset,
            s.prev_end,
            s.backlog_bytes,
            s.replicas.iter().filter(|r| r.state == "online").count(),
        );
        let _ = writeln!(text, "\r");
    }
}
