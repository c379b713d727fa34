//! Quorum reads and writes across real processes, and a node killed without warning.

use std::time::{Duration, Instant};

use ringkv::proto::MemberRow;
use ringkv::{Api, Client, ReadOptions, WriteOptions};
use ringkv_tests::{block_on, runtime, serial, Cluster};

/// Bound on (re)joins converging on a loaded two-core machine (not a speed check).
const CONVERGE: Duration = Duration::from_secs(30);

/// What the failure detector promises: every survivor reports a killed node down by then.
const DETECTION: Duration = Duration::from_secs(5);

fn key(prefix: &str, i: usize) -> Vec<u8> {
    format!("{prefix}-{i:04}").into_bytes()
}

/// Distinct values of varying length, so a mix-up between keys cannot go unnoticed.
fn value(prefix: &str, i: usize) -> Vec<u8> {
    format!("{prefix}-value-{i}-{}", "x".repeat(i % 61)).into_bytes()
}

/// Write keys `range` through `client` from `tasks` concurrent tasks at quorum `w`.
fn put_all(client: &Client, prefix: &str, range: std::ops::Range<usize>, tasks: usize, w: u8) {
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (client, prefix, range) = (client.clone(), prefix.to_owned(), range.clone());
            runtime().spawn(async move {
                for i in range.skip(t).step_by(tasks) {
                    let opts = WriteOptions {
                        w: Some(w),
                        context: None,
                    };
                    let written = client
                        .put(key(&prefix, i), value(&prefix, i), opts)
                        .await
                        .unwrap_or_else(|e| panic!("put {prefix}-{i} at W={w}: {e}"));
                    assert!(written.acked >= w, "{prefix}-{i}: acked {}", written.acked);
                }
            })
        })
        .collect();
    for h in handles {
        block_on(h).unwrap();
    }
}

/// Read keys `range` through `client` at quorum `r`; each must hold exactly its one value.
fn check_all(client: &Client, prefix: &str, range: std::ops::Range<usize>, tasks: usize, r: u8) {
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (client, prefix, range) = (client.clone(), prefix.to_owned(), range.clone());
            runtime().spawn(async move {
                for i in range.skip(t).step_by(tasks) {
                    let read = client
                        .get(
                            key(&prefix, i),
                            ReadOptions {
                                r: Some(r),
                                ..Default::default()
                            },
                        )
                        .await
                        .unwrap_or_else(|e| panic!("get {prefix}-{i} at R={r}: {e}"));
                    assert!(read.replied >= r, "{prefix}-{i}: replied {}", read.replied);
                    let got: Vec<&[u8]> = read.values.iter().map(|v| v.data.as_slice()).collect();
                    assert_eq!(
                        got,
                        vec![value(&prefix, i).as_slice()],
                        "{prefix}-{i} read at R={r}"
                    );
                }
            })
        })
        .collect();
    for h in handles {
        block_on(h).unwrap();
    }
}

fn state_of<'a>(rows: &'a [MemberRow], name: &str) -> Option<&'a str> {
    rows.iter()
        .find(|r| r.name == name)
        .map(|r| r.state.as_str())
}

#[test]
fn a_thousand_keys_written_through_one_node_read_back_through_another() {
    let _serial = serial();
    let cluster = Cluster::start(3).unwrap();
    put_all(&cluster.client(0).unwrap(), "bulk", 0..1000, 8, 2);
    check_all(&cluster.client(1).unwrap(), "bulk", 0..1000, 8, 2);
}

#[test]
fn a_killed_node_is_declared_down_then_rejoins_with_its_synced_data() {
    let _serial = serial();
    let mut cluster = Cluster::start(3).unwrap();
    let (n1, n2) = (cluster.client(0).unwrap(), cluster.client(1).unwrap());
    // W=3: n3 itself acknowledged (so synced) every one of these before it dies.
    put_all(&n1, "before", 0..50, 4, 3);

    cluster.nodes[2].kill();
    let killed_at = Instant::now();
    // Before anyone noticed: the two survivors still make both quorums.
    put_all(&n1, "during", 0..10, 2, 2);
    check_all(&n2, "during", 0..10, 2, 2);
    check_all(&n1, "before", 0..50, 4, 2);

    let deadline = killed_at + DETECTION;
    for i in 0..2 {
        cluster
            .wait_members_until(i, deadline, |rows| state_of(rows, "n3") == Some("down"))
            .unwrap();
    }
    // After it is known down: quorums still met through either survivor.
    put_all(&n2, "after", 0..10, 2, 2);
    check_all(&n1, "after", 0..10, 2, 2);

    let seed = cluster.nodes[0].addr;
    cluster.restart(2, &[seed]).unwrap();
    cluster.wait_alive(3, CONVERGE).unwrap();
    for i in 0..3 {
        let rows = block_on(cluster.client(i).unwrap().members()).unwrap();
        assert_eq!(state_of(&rows, "n3"), Some("alive"), "{rows:?}");
    }
    let n3 = cluster.client(2).unwrap();
    check_all(&n1, "before", 0..50, 4, 3);
    check_all(&n3, "before", 0..50, 4, 3);
    check_all(&n3, "during", 0..10, 2, 2);

    // Only n3 left, and no read ever repaired it: R=1 answers from n3's own store.
    cluster.nodes[0].kill();
    cluster.nodes[1].kill();
    check_all(&n3, "before", 0..50, 4, 1);
}
