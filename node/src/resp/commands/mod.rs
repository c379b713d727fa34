//! Commands: the name looked up, the arity checked, then one line per command to its family's
//! handler (`server`, `strings`, `keys`, `wait`, `cluster`).

mod cluster;
mod keys;
mod server;
mod strings;
pub(crate) mod table;
mod wait;

pub(crate) use wait::LastWrite;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::codec::Reply;
use super::conn::ConnState;
use super::order::Access;
use super::Shared;

/// What the connection does with a command.
pub(crate) enum Step {
    /// The reply is known now.
    Now(Reply),
    /// The reply needs the node.
    Later(BoxFuture<'static, Reply>),
    /// Reply, then close the connection.
    Close(Reply),
}

impl From<Reply> for Step {
    fn from(r: Reply) -> Self {
        Step::Now(r)
    }
}

/// Run one request (`args[0]` is the command's name).
pub(super) fn dispatch(args: &[Bytes], conn: &mut ConnState, shared: &Arc<Shared>) -> Step {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let Some(spec) = table::find(&name) else {
        return unknown(&name, args).into();
    };
    if !table::arity_fits(spec, args.len()) {
        return Reply::err(format!("wrong number of arguments for '{name}' command")).into();
    }
    conn.seq += 1;
    match run(spec, args, conn, shared) {
        Step::Later(f) if BARRIERS.contains(&spec.name) => Step::Later(conn.order.after_all(f)),
        Step::Later(f) => {
            let access = if spec.flags.contains(&"readonly") {
                Access::Read
            } else {
                Access::Write
            };
            Step::Later(conn.order.sequence(table::keys(spec, args), access, f))
        }
        step => step,
    }
}

/// Commands that start once every earlier command of the connection finished, and that
/// later ones wait for: `WAIT` counts the replicas of the writes sent before it, and a walk
/// of the key space sees them.
const BARRIERS: &[&str] = &["wait", "scan", "keys", "dbsize"];

fn run(spec: &table::Spec, args: &[Bytes], conn: &mut ConnState, shared: &Arc<Shared>) -> Step {
    let name = spec.name;
    let node = &strings::Target {
        node: shared.node.clone(),
        direct: conn.direct,
        writes: Some((conn.writes.clone(), conn.seq)),
    };
    match name {
        "ping" => server::ping(args).into(),
        "echo" => Reply::Bulk(args[1].clone()).into(),
        "hello" => server::hello(args, conn, shared).into(),
        "auth" => Reply::err(
            "AUTH is not used: access is by a client certificate signed by the cluster CA (TLS)",
        )
        .into(),
        "client" => server::client(args, conn).into(),
        "select" => server::select(&args[1]).into(),
        "quit" => Step::Close(Reply::OK),
        "reset" => server::reset(conn).into(),
        "command" => server::command(args).into(),
        "config" => server::config(args, shared).into(),
        "info" => server::info(args, shared),
        "time" => server::time().into(),
        "role" => Reply::Array(vec![
            Reply::text("master"),
            Reply::Int(0),
            Reply::Array(vec![]),
        ])
        .into(),
        "dbsize" => keys::dbsize(node),
        "scan" => keys::scan(node, args, &shared.limits),
        "keys" => keys::keys(node, args, &shared.limits),
        "wait" => wait::wait(node, args, &conn.writes),
        "ringkv.siblings" => strings::siblings(node, args),
        "cluster" => cluster::cluster(args, shared),
        "readonly" | "readwrite" => {
            conn.direct = name == "readonly";
            Reply::OK.into()
        }
        "get" => strings::get(node, args),
        "set" => strings::set(node, args),
        "mget" => strings::mget(node, args),
        "mset" => strings::mset(node, args),
        "del" | "unlink" => strings::del(node, args),
        "exists" => strings::exists(node, args),
        "strlen" => strings::strlen(node, args),
        "incr" | "decr" | "incrby" | "decrby" => strings::incr(node, name, args),
        "append" | "setnx" | "getset" | "getdel" => strings::update(node, name, args),
        _ => unknown(name, args).into(),
    }
}

/// Families of Redis commands ringkv does not have, and why.
const UNSUPPORTED: &[(&[&str], &str)] = &[
    (
        &["multi", "exec", "discard", "watch", "unwatch"],
        "transactions (MULTI/EXEC/WATCH) are not supported",
    ),
    (
        &[
            "subscribe",
            "unsubscribe",
            "psubscribe",
            "punsubscribe",
            "publish",
            "pubsub",
            "ssubscribe",
            "spublish",
        ],
        "pub/sub is not supported",
    ),
    (
        &[
            "expire",
            "pexpire",
            "expireat",
            "pexpireat",
            "ttl",
            "pttl",
            "persist",
            "setex",
            "psetex",
            "getex",
            "expiretime",
        ],
        "key expiry (TTLs) is not supported yet",
    ),
    (
        &["eval", "evalsha", "script", "function", "fcall"],
        "scripting is not supported",
    ),
];

fn unknown(name: &str, args: &[Bytes]) -> Reply {
    if let Some((_, why)) = UNSUPPORTED.iter().find(|(names, _)| names.contains(&name)) {
        return Reply::err(format!("'{}': {why}", name.to_uppercase()));
    }
    if is_other_type(name) {
        return Reply::err(format!(
            "'{}' is not supported: ringkv stores strings only (no hashes, lists, sets, sorted sets, streams or bitmaps)",
            name.to_uppercase()
        ));
    }
    let shown: String = args[1..]
        .iter()
        .take(8)
        .map(|a| format!("'{}' ", String::from_utf8_lossy(&a[..a.len().min(64)])))
        .collect();
    Reply::err(format!(
        "unknown command '{}', with args beginning with: {shown}",
        String::from_utf8_lossy(&args[0][..args[0].len().min(64)])
    ))
}

/// Whether `name` is a Redis command of a data type ringkv lacks.
fn is_other_type(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "hset",
        "hget",
        "hmset",
        "hmget",
        "hgetall",
        "hdel",
        "hincrby",
        "hkeys",
        "hvals",
        "hlen",
        "hexists",
        "hscan",
        "lpush",
        "rpush",
        "lpop",
        "rpop",
        "lrange",
        "llen",
        "lindex",
        "lset",
        "lrem",
        "ltrim",
        "blpop",
        "brpop",
        "lmove",
        "rpoplpush",
        "sadd",
        "srem",
        "smembers",
        "sismember",
        "scard",
        "spop",
        "srandmember",
        "sinter",
        "sunion",
        "sdiff",
        "sscan",
        "zadd",
        "zrem",
        "zrange",
        "zscore",
        "zcard",
        "zincrby",
        "zrank",
        "zrangebyscore",
        "zpopmin",
        "zpopmax",
        "zscan",
        "xadd",
        "xread",
        "xrange",
        "xlen",
        "xgroup",
        "xreadgroup",
        "xack",
        "setbit",
        "getbit",
        "bitcount",
        "bitop",
        "bitpos",
        "bitfield",
        "pfadd",
        "pfcount",
        "pfmerge",
        "geoadd",
        "geosearch",
        "geodist",
        "georadius",
    ];
    NAMES.contains(&name)
}

/// `args[i]` as UTF-8 text in upper case, for option names.
pub(crate) fn upper(arg: &Bytes) -> String {
    String::from_utf8_lossy(arg).to_ascii_uppercase()
}
