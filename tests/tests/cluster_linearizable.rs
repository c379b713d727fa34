//! Linearizability of a primary-mode register (`--sync-replicas majority`, reads from the
//! primary) while its primary is SIGKILLed again and again: concurrent clients read and write
//! one key through every node, and the whole history goes through a Wing–Gong–Lowe checker.
//!
//! A write that failed or timed out may or may not have taken effect: it is kept as an
//! operation that returns at +infinity (it may take effect at any point after its call, even
//! after everything else). Such a write whose value nobody read is dropped before the check:
//! placing it last is always possible, so dropping it changes no verdict and keeps the search
//! small. Failed reads say nothing and are dropped.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::register::{
    failures, first_violation, linearizable, parse, run_client, show, Log, Op, Record,
};
use ringkv::table::{Mode, PrimaryOptions, ReadFrom, SyncReplicas};
use ringkv::{Api, ReadOptions};
use ringkv_tests::{block_on, poll, runtime, serial, Cluster};

const KEY: &str = "lin:register";
/// Concurrent clients; client `c` talks to node `c % 3`.
const CLIENTS: usize = 4;
/// Times the primary is killed.
const KILLS: usize = 3;
/// Bound on an election, a rule spreading or a restarted node catching up.
const WITHIN: Duration = Duration::from_secs(20);
/// A client gives up on one operation after this long (a write is then indeterminate).
const OP_LIMIT: Duration = Duration::from_secs(2);

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
            runtime().spawn(run_client(c, client, (&[KEY], OP_LIMIT), stop.clone()))
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
        key: 0,
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
         unknown outcome; epochs {epochs:?}; failures: {:?}",
        failures(&logs)
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
