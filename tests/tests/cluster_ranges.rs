//! The range table across real processes: `ringctl range set` on one node reaches the others,
//! setting a prefix back to quorum spreads the same way, and bad rules are refused with a
//! clear error while the node keeps serving.

use std::process::Output;
use std::time::Duration;

use ringkv_tests::{poll, serial, Cluster};
use serde_json::Value;

/// Bound on a rule reaching another node (it is pushed at once and re-exchanged every second).
const SPREAD_WITHIN: Duration = Duration::from_secs(15);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(cluster: &Cluster, i: usize, args: &[&str]) -> String {
    let out = cluster.ringctl(i, args).unwrap();
    assert!(
        out.status.success(),
        "ringctl {args:?} failed ({:?}): {}",
        out.status.code(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Node `i`'s rule for `prefix`, as `ringctl -o json range list` prints it.
fn rule(cluster: &Cluster, i: usize, prefix: &str) -> Option<Value> {
    let doc: Value =
        serde_json::from_str(&ok(cluster, i, &["-o", "json", "range", "list"])).ok()?;
    doc.as_array()?
        .iter()
        .find(|r| r["prefix"] == prefix)
        .cloned()
}

/// Wait until node `i` holds a rule for `prefix` in `mode`.
fn wait_mode(cluster: &Cluster, i: usize, prefix: &str, mode: &str) -> Value {
    poll(SPREAD_WITHIN, || {
        rule(cluster, i, prefix).filter(|r| r["mode"] == mode)
    })
    .unwrap_or_else(|| {
        panic!(
            "node {} never showed {prefix} in {mode} mode: {:?}",
            i + 1,
            rule(cluster, i, prefix)
        )
    })
}

fn refused(out: &Output) -> String {
    assert!(!out.status.success(), "accepted: {}", text(&out.stdout));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr:?}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_owned()
}

#[test]
fn a_rule_set_on_one_node_spreads_and_so_does_its_undoing() {
    let _serial = serial();
    let cluster = Cluster::start(3).unwrap();
    let prefix = "orders/";

    let shown = ok(
        &cluster,
        0,
        &[
            "range",
            "set",
            "--prefix",
            prefix,
            "--mode",
            "primary",
            "--sync-replicas",
            "1",
            "--read-from",
            "any",
        ],
    );
    let line = shown
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} row in {shown:?}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cells, [prefix, "primary", "1", "any", "star", "1@n1"]);

    let seen = wait_mode(&cluster, 2, prefix, "primary");
    assert_eq!(seen["sync_replicas"], "1");
    assert_eq!(seen["read_from"], "any");
    assert_eq!(seen["topology"], "star");
    assert_eq!(seen["stamp"]["node"], "n1");
    wait_mode(&cluster, 1, prefix, "primary");

    // Undone through another node: its stamp is higher, so it wins everywhere.
    ok(
        &cluster,
        1,
        &["range", "set", "--prefix", prefix, "--mode", "quorum"],
    );
    for i in [0, 2] {
        let seen = wait_mode(&cluster, i, prefix, "quorum");
        assert!(seen["sync_replicas"].is_null(), "{seen}");
        assert_eq!(seen["stamp"]["node"], "n2");
        assert_eq!(seen["stamp"]["counter"], 2);
    }
}

#[test]
fn bad_rules_get_a_clear_error_and_the_node_keeps_serving() {
    let _serial = serial();
    let cluster = Cluster::start(3).unwrap();

    let out = cluster
        .ringctl(
            0,
            &[
                "range",
                "set",
                "--prefix",
                "p/",
                "--mode",
                "primary",
                "--sync-replicas",
                "5",
            ],
        )
        .unwrap();
    let line = refused(&out);
    assert!(
        line.contains("sync replicas 5 is not possible with N=3"),
        "{line}"
    );

    let out = cluster
        .ringctl(0, &["range", "set", "--prefix", "", "--mode", "quorum"])
        .unwrap();
    let line = refused(&out);
    assert!(line.contains("prefix must not be empty"), "{line}");

    // Nothing was set, and the node still answers every kind of request.
    for i in 0..3 {
        let listed = ok(&cluster, i, &["-o", "json", "range", "list"]);
        assert_eq!(listed.trim(), "[]", "node {}", i + 1);
    }
    ok(&cluster, 0, &["put", "after", "still serving"]);
    assert_eq!(ok(&cluster, 0, &["get", "after"]), "still serving\n");
    ok(
        &cluster,
        0,
        &["range", "set", "--prefix", "p/", "--mode", "primary"],
    );
    wait_mode(&cluster, 2, "p/", "primary");
}

#[test]
fn a_node_that_was_down_during_a_set_learns_it_from_its_peers() {
    let _serial = serial();
    let mut cluster = Cluster::start(3).unwrap();
    cluster.nodes[2].kill();
    ok(
        &cluster,
        0,
        &["range", "set", "--prefix", "logs/", "--mode", "primary"],
    );
    let seed = [cluster.nodes[0].addr];
    cluster.restart(2, &seed).unwrap();
    // Nothing pushed it to the restarted node: only the periodic exchanges can.
    let seen = wait_mode(&cluster, 2, "logs/", "primary");
    assert_eq!(seen["stamp"]["node"], "n1");
}
