//! `ringctl repair`, `inspect`, `status` and `get --wait-repair` against real processes: a node
//! that was away while 1,000 keys were written gets every one of them back from its peers
//! through one repair round (and a few of them at once through reads that wait for repair).

use std::process::Output;
use std::time::{Duration, Instant};

use ringkv::{Api, Client, WriteOptions};
use ringkv_tests::{block_on, poll, runtime, serial, Cluster};
use serde_json::Value;

/// Keys written while the node is away.
const KEYS: usize = 1000;
/// Concurrent writers and inspectors.
const TASKS: usize = 16;
/// Bound on (re)joins and ring changes converging on a loaded two-core machine.
const CONVERGE: Duration = Duration::from_secs(20);
/// Bound on the repair round (the command's own `--within`).
const ROUND_LIMIT: &str = "40s";
/// Records a peer pushed in the round's last exchanges may land just after the round ends.
const SETTLE: Duration = Duration::from_secs(10);

fn key(i: usize) -> String {
    format!("repair-{i:04}")
}

/// Distinct values, so a mix-up between keys cannot go unnoticed.
fn value(i: usize) -> String {
    format!("value-{i}-{}", "x".repeat(i % 37))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `ringctl ARGS` against node `i`, asserts success and returns stdout.
fn ok(cluster: &Cluster, i: usize, args: &[&str]) -> String {
    let out: Output = cluster.ringctl(i, args).unwrap();
    assert!(
        out.status.success(),
        "ringctl {args:?} failed ({:?}): {}",
        out.status.code(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn json(cluster: &Cluster, i: usize, args: &[&str]) -> Value {
    let out = ok(cluster, i, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed {out:?}: {e}"))
}

/// Wait until node `i`'s ring is made of exactly `names`.
fn wait_ring(cluster: &Cluster, i: usize, names: &[&str]) {
    let client = cluster.client(i).unwrap();
    let mut last = Vec::new();
    let settled = poll(CONVERGE, || {
        let ring = block_on(client.ring()).ok()?;
        let mut seen: Vec<String> = ring.nodes.into_iter().map(|(n, _, _)| n).collect();
        seen.sort_unstable();
        last.clone_from(&seen);
        (seen == names).then_some(())
    });
    assert!(
        settled.is_some(),
        "ring of n{} is {last:?}, not {names:?}",
        i + 1
    );
}

/// Write every key through `client` from [`TASKS`] concurrent tasks at W=2.
fn write_all(client: &Client) {
    let handles: Vec<_> = (0..TASKS)
        .map(|t| {
            let client = client.clone();
            runtime().spawn(async move {
                for i in (0..KEYS).skip(t).step_by(TASKS) {
                    let opts = WriteOptions {
                        w: Some(2),
                        context: None,
                    };
                    let written = client
                        .put(key(i).into_bytes(), value(i).into_bytes(), opts)
                        .await
                        .unwrap_or_else(|e| panic!("put {} at W=2: {e}", key(i)));
                    assert!(written.acked >= 2, "{}: acked {}", key(i), written.acked);
                }
            })
        })
        .collect();
    for h in handles {
        block_on(h).unwrap();
    }
}

/// The keys among `wanted` that the node behind `client` does not hold, by itself, with their
/// value as their only sibling.
fn missing(client: &Client, wanted: &[usize]) -> Vec<usize> {
    let handles: Vec<_> = (0..TASKS)
        .map(|t| {
            let client = client.clone();
            let mine: Vec<usize> = wanted.iter().copied().skip(t).step_by(TASKS).collect();
            runtime().spawn(async move {
                let mut lacking = Vec::new();
                for i in mine {
                    let held = client.inspect(key(i).into_bytes()).await;
                    let right = held.is_ok_and(|h| {
                        h.siblings.len() == 1
                            && h.siblings[0].data.as_deref() == Some(value(i).as_bytes())
                    });
                    if !right {
                        lacking.push(i);
                    }
                }
                lacking
            })
        })
        .collect();
    let mut lacking: Vec<usize> = handles
        .into_iter()
        .flat_map(|h| block_on(h).unwrap())
        .collect();
    lacking.sort_unstable();
    lacking
}

#[test]
fn repair_gives_a_node_back_every_key_written_while_it_was_away() {
    let _serial = serial();
    let mut cluster = Cluster::start(3).unwrap();
    let seed = cluster.nodes[0].addr;

    // n3 leaves gracefully: the survivors drop it from their ring, so nobody keeps hints for
    // it and only anti-entropy can bring it what it missed.
    assert!(
        cluster.nodes[2].terminate(CONVERGE),
        "n3 ignored SIGTERM: {}",
        cluster.log("n3")
    );
    for i in 0..2 {
        wait_ring(&cluster, i, &["n1", "n2"]);
    }
    write_all(&cluster.client(0).unwrap());

    cluster.restart(2, &[seed]).unwrap();
    cluster.wait_alive(3, CONVERGE).unwrap();
    for i in 0..3 {
        wait_ring(&cluster, i, &["n1", "n2", "n3"]);
    }
    let n3 = cluster.client(2).unwrap();
    let all: Vec<usize> = (0..KEYS).collect();
    let before = missing(&n3, &all);
    // The periodic sweep repairs one range per tick: far from all 768 by now.
    assert!(
        !before.is_empty(),
        "n3 already held every key before the repair: the test would prove nothing"
    );

    // A read that waits for its repairs answers only once n3's copy is repaired: n3 holds
    // the key the moment the read returns, without waiting for anti-entropy.
    let mut repaired = 0;
    for &i in before.iter().take(5) {
        let k = key(i);
        let read = json(&cluster, 2, &["-o", "json", "get", "--wait-repair", &k]);
        assert_eq!(read["values"][0]["value"], value(i), "{read}");
        assert_eq!(read["replied"], 3, "{read}");
        repaired += read["repaired"].as_u64().unwrap_or(0);
        assert!(
            missing(&n3, &[i]).is_empty(),
            "n3 lacks {k} right after a read that waited for its repair: {read}"
        );
    }
    // The sweep may have fixed a key between the check above and its read, not all five.
    assert!(repaired >= 1, "no read reported a repair of n3");

    let round = json(
        &cluster,
        2,
        &["-o", "json", "repair", "--within", ROUND_LIMIT],
    );
    assert_eq!(round["node"], "n3", "{round}");
    assert_eq!(round["running"], false, "{round}");
    assert_eq!(round["completed"], true, "{round}");
    assert!(round["total"].as_u64().is_some_and(|t| t > 0), "{round}");
    assert_eq!(round["done"], round["total"], "{round}");
    eprintln!(
        "n3 lacked {} of {KEYS} keys before the repair; round: {round}",
        before.len()
    );

    let deadline = Instant::now() + SETTLE;
    let mut lacking = missing(&n3, &before);
    while !lacking.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        lacking = missing(&n3, &lacking);
    }
    assert!(
        lacking.is_empty(),
        "after repair n3 lacks {} of the {} keys it missed (e.g. {:?}); round: {round}",
        lacking.len(),
        before.len(),
        lacking.iter().take(5).map(|&i| key(i)).collect::<Vec<_>>()
    );
    assert_eq!(KEYS - missing(&n3, &all).len(), KEYS, "all keys held by n3");

    // What an operator sees of one repaired key, in text and JSON.
    let k = key(before[0]);
    let shown = ok(&cluster, 2, &["inspect", &k]);
    assert!(shown.starts_with("node:"), "{shown}");
    assert!(
        shown.lines().next().is_some_and(|l| l.ends_with(" n3")),
        "{shown}"
    );
    assert!(shown.contains("replica:   yes"), "{shown}");
    assert!(shown.contains(&value(before[0])), "{shown}");
    let doc = json(&cluster, 2, &["-o", "json", "inspect", &k]);
    assert_eq!(doc["node"], "n3");
    assert_eq!(doc["replica"], true);
    assert_eq!(doc["siblings"][0]["value"], value(before[0]));
    assert_eq!(doc["siblings"][0]["tombstone"], false);

    let out = cluster.ringctl(2, &["inspect", "never-written"]).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr).trim(), "not held by n3");

    // With 3 nodes and N=3, n3 replicates every one of the 3 × 256 ranges.
    let status = json(&cluster, 2, &["-o", "json", "status"]);
    assert_eq!(status["node"], "n3");
    assert_eq!(status["ranges"].as_array().map(Vec::len), Some(768));
    assert_eq!(status["repair"]["running"], false);
    assert!(
        status["exchanges"].as_u64().is_some_and(|e| e > 0),
        "{status}"
    );
    let summary = ok(&cluster, 2, &["status"]);
    assert!(summary.contains("ranges replicated:  768"), "{summary}");
    assert!(
        summary.contains("repair round:       finished"),
        "{summary}"
    );
    let table = ok(&cluster, 2, &["status", "--ranges"]);
    assert_eq!(table.lines().count(), summary.lines().count() + 2 + 768);
}
