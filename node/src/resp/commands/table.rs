//! Every command the front knows, with what `COMMAND` tells clients about it.

use bytes::Bytes;

/// One command's description, as `COMMAND INFO` gives it.
pub(crate) struct Spec {
    /// Lower-case name.
    pub name: &'static str,
    /// Exact argument count with the name (`n`), or at least `-n`.
    pub arity: i64,
    /// Redis's command flags (`write`, `readonly`, `fast`, ...).
    pub flags: &'static [&'static str],
    /// First key's position, last key's (negative: from the end) and the step between keys.
    pub keys: (i64, i64, i64),
    /// Redis's command group.
    pub group: &'static str,
    /// One line for `COMMAND DOCS`.
    pub summary: &'static str,
}

const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    group: &'static str,
    summary: &'static str,
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        keys,
        group,
        summary,
    }
}

const NO_KEYS: (i64, i64, i64) = (0, 0, 0);
const ONE_KEY: (i64, i64, i64) = (1, 1, 1);
const ALL_KEYS: (i64, i64, i64) = (1, -1, 1);
const R: &[&str] = &["readonly", "fast"];
const W: &[&str] = &["write", "denyoom"];
const C: &[&str] = &["fast", "loading", "stale"];

/// The commands served, in `COMMAND`'s order.
#[rustfmt::skip]
pub(crate) const COMMANDS: &[Spec] = &[
    spec("ping", -1, C, NO_KEYS, "connection", "Returns PONG, or the argument."),
    spec("echo", 2, C, NO_KEYS, "connection", "Returns the given string."),
    spec("hello", -1, C, NO_KEYS, "connection", "Handshake: protocol 2 or 3, connection facts."),
    spec("auth", -2, C, NO_KEYS, "connection", "Refused: access is by client certificate."),
    spec("client", -2, C, NO_KEYS, "connection", "CLIENT ID/INFO/SETNAME/GETNAME/SETINFO/LIST."),
    spec("select", 2, C, NO_KEYS, "connection", "Database 0 only."),
    spec("quit", -1, C, NO_KEYS, "connection", "Closes the connection."),
    spec("reset", 1, C, NO_KEYS, "connection", "Resets the connection's state."),
    spec("command", -1, C, NO_KEYS, "server", "COMMAND, COUNT, DOCS, INFO, LIST."),
    spec("config", -2, C, NO_KEYS, "server", "CONFIG GET of the settings clients ask."),
    spec("info", -1, C, NO_KEYS, "server", "Server, clients, replication, stats, keyspace."),
    spec("time", 1, C, NO_KEYS, "server", "The node's wall clock."),
    spec("role", 1, C, NO_KEYS, "server", "This node's role."),
    spec("dbsize", 1, &["readonly"], NO_KEYS, "server", "Keys in the cluster, counted by a walk (an estimate past 100,000)."),
    spec("scan", -2, &["readonly"], NO_KEYS, "generic", "Walks the ring's ranges: cursor, MATCH, COUNT, TYPE."),
    spec("keys", 2, &["readonly"], NO_KEYS, "generic", "Keys matching a pattern, up to a bound (use SCAN)."),
    spec("wait", 3, &[], NO_KEYS, "generic", "Replicas holding the connection's last write."),
    spec("cluster", -2, C, NO_KEYS, "cluster", "SHARDS, SLOTS, NODES, INFO, MYID, KEYSLOT."),
    spec("readonly", 1, C, NO_KEYS, "cluster", "Serve from this node alone: replica reads, READONLY writes."),
    spec("readwrite", 1, C, NO_KEYS, "cluster", "Back to forwarding to each key's primary."),
    spec("get", 2, R, ONE_KEY, "string", "The value of a key (the newest sibling)."),
    spec("set", -3, W, ONE_KEY, "string", "Sets a key's value (NX, XX, GET: primary-mode keys)."),
    spec("mget", -2, R, ALL_KEYS, "string", "The values of several keys."),
    spec("mset", -3, W, (1, -1, 2), "string", "Sets several keys (not atomically)."),
    spec("del", -2, &["write"], ALL_KEYS, "generic", "Deletes keys; counts those that existed."),
    spec("unlink", -2, &["write", "fast"], ALL_KEYS, "generic", "Same as DEL."),
    spec("exists", -2, R, ALL_KEYS, "generic", "Counts the keys that exist."),
    spec("strlen", 2, R, ONE_KEY, "string", "The length of a key's value."),
    spec("incr", 2, W, ONE_KEY, "string", "Adds 1 (primary-mode keys)."),
    spec("decr", 2, W, ONE_KEY, "string", "Subtracts 1 (primary-mode keys)."),
    spec("incrby", 3, W, ONE_KEY, "string", "Adds an integer (primary-mode keys)."),
    spec("decrby", 3, W, ONE_KEY, "string", "Subtracts an integer (primary-mode keys)."),
    spec("append", 3, W, ONE_KEY, "string", "Appends to the value (primary-mode keys)."),
    spec("setnx", 3, W, ONE_KEY, "string", "Sets if absent (primary-mode keys)."),
    spec("getset", 3, W, ONE_KEY, "string", "Sets, returning the old value (primary-mode keys)."),
    spec("ringkv.siblings", 2, R, ONE_KEY, "string", "Every sibling of a key, oldest first (GET answers the last)."),
    spec("getdel", 2, &["write", "fast"], ONE_KEY, "string", "Deletes, returning the value (primary-mode keys)."),
];

/// The description of `name` (lower case), if the front serves it.
pub(crate) fn find(name: &str) -> Option<&'static Spec> {
    COMMANDS.iter().find(|s| s.name == name)
}

/// Whether `n` arguments (the name included) fit `spec`'s arity.
pub(crate) fn arity_fits(spec: &Spec, n: usize) -> bool {
    let n = n as i64;
    if spec.arity >= 0 {
        n == spec.arity
    } else {
        n >= -spec.arity
    }
}

/// The keys of a request, by `spec`'s key positions.
pub(crate) fn keys(spec: &Spec, args: &[Bytes]) -> Vec<Bytes> {
    let (first, last, step) = spec.keys;
    if first <= 0 || step <= 0 {
        return Vec::new();
    }
    let last = if last < 0 {
        args.len() as i64 + last
    } else {
        last
    };
    (first..=last.min(args.len() as i64 - 1))
        .step_by(step as usize)
        .map(|i| args[i as usize].clone())
        .collect()
}
