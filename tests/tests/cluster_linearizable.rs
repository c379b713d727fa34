//! Linearizability of a primary-mode register (`--sync-replicas majority`, reads from the
//! primary) while its primary is SIGKILLed again and again: concurrent clients read and write
//! one key through every node, and the whole history goes through a Wing–Gong–Lowe checker.
//!
//! A write that failed or timed out may or may not have taken effect: it is kept as an
//! operation that returns at +infinity (it may take effect at any point after its call, even
//! after everything else). Such a write whose value nobody read is dropped before the check:
//! placing it last is always possible, so dropping it changes no verdict and keeps the search
//! small. Failed reads say nothing and are dropped.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringkv::table::{Mode, PrimaryOptions, ReadFrom, SyncReplicas};
use ringkv::{Api, Client, ReadOptions, WriteOptions};
use ringkv_tests::{block_on, poll, runtime, serial, Cluster};
use todc_utils::linearizability::history::{Action, History};
use todc_utils::{Specification, WGLChecker};

const KEY: &str = "lin:register";
/// Concurrent clients; client `c` talks to node `c % 3`.
const CLIENTS: usize = 4;
/// Times the primary is killed.
const KILLS: usize = 3;
/// Bound on an election, a rule spreading or a restarted node catching up.
const WITHIN: Duration = Duration::from_secs(20);
/// A client gives up on one operation after this long (a write is then indeterminate).
const OP_LIMIT: Duration = Duration::from_secs(2);
/// A client starts at most one operation per this long: the history stays a few thousand
/// operations, which the checker gets through in seconds.
const PACE: Duration = Duration::from_millis(30);

/// One register operation: what a read returned, or the value written.
#[derive(Clone, Copy, Debug)]
enum Op {
    Read(Option<u64>),
    Write(u64),
}

/// The sequential register: absent until the first write.
struct Register;

impl Specification for Register {
    type State = Option<u64>;
    type Operation = Op;

    fn init() -> Self::State {
        None
    }

    fn apply(op: &Op, state: &Option<u64>) -> (bool, Option<u64>) {
        match op {
            Op::Read(seen) => (seen == state, *state),
            Op::Write(v) => (true, Some(*v)),
        }
    }
}

/// One operation as a client saw it; `returned: None` is a write of unknown outcome.
#[derive(Clone, Debug)]
struct Record {
    client: usize,
    op: Op,
    invoked: Instant,
    returned: Option<Instant>,
}

/// What one client did, and anything it saw that no register could show.
#[derive(Default)]
struct Log {
    ops: Vec<Record>,
    anomalies: Vec<String>,
}

fn parse(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Read and write `KEY` at random until `stop`; every write value is unique.
async fn run_client(me: usize, client: Client, stop: Arc<AtomicBool>) -> Log {
    let mut log = Log::default();
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64 ^ (me as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let invoked = Instant::now();
        let ok = if rng.is_multiple_of(2) {
            seq += 1;
            let v = (me as u64 + 1) * 1_000_000 + seq;
            let put = client.put(
                KEY.as_bytes().to_vec(),
                v.to_string().into_bytes(),
                WriteOptions::default(),
            );
            let done = matches!(tokio::time::timeout(OP_LIMIT, put).await, Ok(Ok(_)));
            log.ops.push(Record {
                client: me,
                op: Op::Write(v),
                invoked,
                returned: done.then(Instant::now),
            });
            done
        } else {
            let get = client.get(KEY.as_bytes().to_vec(), ReadOptions::default());
            match tokio::time::timeout(OP_LIMIT, get).await {
                Ok(Ok(read)) => {
                    let returned = Some(Instant::now());
                    // One value or none: anything else no register gives, and fails the test.
                    match read.values.as_slice() {
                        [] => log.ops.push(Record {
                            client: me,
                            op: Op::Read(None),
                            invoked,
                            returned,
                        }),
                        [one] if parse(&one.data).is_some() => log.ops.push(Record {
                            client: me,
                            op: Op::Read(parse(&one.data)),
                            invoked,
                            returned,
                        }),
                        other => log.anomalies.push(format!("read {other:?}")),
                    }
                    true
                }
                _ => false,
            }
        };
        // After a failure (an election, a dead node) wait a little longer: do not spin.
        let pause = if ok { PACE } else { PACE * 2 };
        tokio::time::sleep_until((invoked + pause).into()).await;
    }
    log
}

/// The checker's history: calls and returns in real-time order, each write of unknown
/// outcome on a process of its own that returns after everything else.
fn history(ops: &[Record]) -> History<Op> {
    let mut timed: Vec<(Instant, bool, usize, Op)> = Vec::new();
    let mut open = Vec::new();
    for (i, r) in ops.iter().enumerate() {
        match r.returned {
            Some(t) => {
                timed.push((r.invoked, false, r.client, r.op));
                timed.push((t, true, r.client, r.op));
            }
            None => {
                let process = CLIENTS + 2 + i;
                timed.push((r.invoked, false, process, r.op));
                open.push((process, r.op));
            }
        }
    }
    // At equal instants a call sorts before a return: the two overlap, the weaker claim.
    timed.sort_by_key(|(t, ret, ..)| (*t, *ret));
    let mut actions: Vec<(usize, Action<Op>)> = timed
        .into_iter()
        .map(|(_, ret, p, op)| {
            (
                p,
                if ret {
                    Action::Response(op)
                } else {
                    Action::Call(op)
                },
            )
        })
        .collect();
    actions.extend(open.into_iter().map(|(p, op)| (p, Action::Response(op))));
    History::from_actions(actions)
}

/// The operations invoked within a second before `cut` (and a little after), in order.
fn show(ops: &[Record], origin: Instant, cut: Instant) -> String {
    let from = cut.checked_sub(Duration::from_secs(1)).unwrap_or(origin);
    let to = cut + Duration::from_millis(100);
    let mut near: Vec<&Record> = ops
        .iter()
        .filter(|r| r.invoked >= from && r.invoked <= to)
        .collect();
    near.sort_by_key(|r| r.invoked);
    let at = |t: Instant| t.duration_since(origin).as_micros();
    near.iter()
        .map(|r| {
            let end = r.returned.map_or("inf".to_string(), |t| at(t).to_string());
            format!(
                "c{} {:>10}..{:>10} {:?}",
                r.client,
                at(r.invoked),
                end,
                r.op
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether the history is linearizable. A write of unknown outcome whose value nobody read is
/// dropped first: it can always take effect last, so the verdict is the same.
fn linearizable(ops: &[Record]) -> bool {
    let seen: HashSet<u64> = ops
        .iter()
        .filter_map(|r| match r.op {
            Op::Read(Some(v)) => Some(v),
            _ => None,
        })
        .collect();
    let kept: Vec<Record> = ops
        .iter()
        .filter(|r| r.returned.is_some() || matches!(r.op, Op::Write(v) if seen.contains(&v)))
        .cloned()
        .collect();
    kept.is_empty() || WGLChecker::<Register>::is_linearizable(history(&kept))
}

/// The history as it stood at `cut`: later operations left out, those still running then
/// of unknown outcome (a read of unknown outcome says nothing and is left out).
fn prefix(ops: &[Record], cut: Instant) -> Vec<Record> {
    ops.iter()
        .filter(|r| r.invoked <= cut)
        .filter_map(|r| match (r.returned, r.op) {
            (Some(t), _) if t <= cut => Some(r.clone()),
            (_, Op::Write(_)) => Some(Record {
                returned: None,
                ..r.clone()
            }),
            _ => None,
        })
        .collect()
}

/// The earliest instant whose prefix is not linearizable (binary search over the events).
fn first_violation(ops: &[Record]) -> Instant {
    let mut times: Vec<Instant> = ops
        .iter()
        .flat_map(|r| std::iter::once(r.invoked).chain(r.returned))
        .collect();
    times.sort();
    let (mut good, mut bad) = (0, times.len() - 1);
    while bad - good > 1 {
        let mid = (good + bad) / 2;
        if linearizable(&prefix(ops, times[mid])) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    times[bad]
}

/// Elections and membership changes as the nodes logged them, for a failure message.
fn events(cluster: &Cluster) -> String {
    let marks = [
        "primary",
        "standing",
        "is up",
        "is down",
        "rejoined",
        "node started",
    ];
    cluster
        .nodes
        .iter()
        .flat_map(|n| {
            cluster
                .log(&n.name)
                .lines()
                .filter(|l| marks.iter().any(|m| l.contains(m)))
                .map(|l| format!("{}: {l}", n.name))
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_primary_register_stays_linearizable_across_primary_kills() {
    let _serial = serial();
    let mut cluster = Cluster::start(3).unwrap();
    let mode = Mode::Primary(PrimaryOptions {
        sync: SyncReplicas::Majority,
        read_from: ReadFrom::Primary,
        ..PrimaryOptions::default()
    });
    cluster.set_mode(0, "lin:", mode, WITHIN).unwrap();

    let origin = Instant::now();
    let started = std::time::SystemTime::now();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let client = cluster.client(c % 3).unwrap();
            runtime().spawn(run_client(c, client, stop.clone()))
        })
        .collect();

    let mut epochs = Vec::new();
    for kill in 0..KILLS {
        std::thread::sleep(Duration::from_secs(2));
        let (p, before) = poll(WITHIN, || cluster.primary_of(KEY))
            .unwrap_or_else(|| panic!("no primary before kill {}", kill + 1));
        let seed = cluster.nodes[(p + 1) % 3].addr;
        cluster.nodes[p].kill();
        let (_, after) = poll(WITHIN, || {
            cluster
                .primary_of(KEY)
                .filter(|(i, s)| *i != p && s.epoch > before.epoch)
        })
        .unwrap_or_else(|| {
            panic!(
                "no new primary after kill {}:\n{}",
                kill + 1,
                events(&cluster)
            )
        });
        epochs.push((before.epoch, after.epoch));
        // The killed node returns as a replica (rejoining takes a few seconds of load).
        cluster.restart(p, &[seed]).unwrap();
        let name = cluster.nodes[p].name.clone();
        // Before the next kill, the primary (whichever it is now) has every replica online.
        poll(WITHIN, || {
            let (_, s) = cluster.primary_of(KEY)?;
            s.replicas.iter().all(|r| r.state == "online").then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "{name} never came back online after kill {}:\n{}",
                kill + 1,
                events(&cluster)
            )
        });
    }
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let logs: Vec<Log> = tasks
        .into_iter()
        .map(|t| block_on(t).expect("client task"))
        .collect();

    // A last read, after every node is back, closes the history.
    let closing = cluster.client(0).unwrap();
    let invoked = Instant::now();
    let last = poll(WITHIN, || {
        block_on(closing.get(KEY.as_bytes().to_vec(), ReadOptions::default())).ok()
    })
    .expect("a final read");
    let mut ops: Vec<Record> = logs.iter().flat_map(|l| l.ops.clone()).collect();
    ops.push(Record {
        client: CLIENTS,
        op: Op::Read(last.values.first().and_then(|v| parse(&v.data))),
        invoked,
        returned: Some(Instant::now()),
    });
    let anomalies: Vec<&String> = logs.iter().flat_map(|l| &l.anomalies).collect();
    assert!(
        anomalies.is_empty(),
        "reads no register gives: {anomalies:?}"
    );

    for (i, (before, after)) in epochs.iter().enumerate() {
        assert!(after > before, "kill {}: epoch {before} -> {after}", i + 1);
    }
    let total = ops.len();
    let unknown = ops.iter().filter(|r| r.returned.is_none()).count();
    let writes = ops
        .iter()
        .filter(|r| matches!(r.op, Op::Write(_)) && r.returned.is_some())
        .count();
    let reads = ops.iter().filter(|r| matches!(r.op, Op::Read(_))).count();
    println!(
        "{total} operations: {writes} writes acknowledged, {reads} reads, {unknown} writes of \
         unknown outcome; epochs {epochs:?}"
    );
    // A history without enough operations across the failovers would prove nothing.
    assert!(
        writes >= 50 && reads >= 50,
        "too few operations: {writes} writes, {reads} reads"
    );
    let checking = Instant::now();
    let verdict = linearizable(&ops);
    println!("checked in {:?}", checking.elapsed());
    // Every acknowledged write is in the history, so a write lost by a failover (a later
    // read showing what it replaced) makes it fail like any stale read.
    if !verdict {
        let cut = first_violation(&ops);
        panic!(
            "the history is not linearizable; the shortest prefix that is not ends {} ms after \
             the start ({started:?}); operations (µs) around it:\n{}\nnode events:\n{}",
            cut.duration_since(origin).as_millis(),
            show(&ops, origin, cut),
            events(&cluster)
        );
    }
}
