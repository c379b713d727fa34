//! `ringctl put/get/del/members/bench` against a real cluster: exit statuses, text and JSON output.

use std::process::Output;

use ringkv_tests::{serial, Cluster};
use serde_json::Value;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `ringctl ARGS` against node `i`, asserts success, and returns its stdout.
fn ok(cluster: &Cluster, i: usize, args: &[&str]) -> String {
    let out = cluster.ringctl(i, args).unwrap();
    assert!(
        out.status.success(),
        "ringctl {args:?} failed ({:?}): {}",
        out.status.code(),
        stderr(&out)
    );
    stdout(&out)
}

/// Runs `ringctl -o json ARGS` against node `i`, asserts success and one JSON document.
fn json(cluster: &Cluster, i: usize, args: &[&str]) -> Value {
    let args: Vec<&str> = ["-o", "json"].iter().chain(args).copied().collect();
    let text = ok(cluster, i, &args);
    assert_eq!(text.lines().count(), 1, "one JSON line: {text:?}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?} printed {text:?}: {e}"))
}

#[test]
fn get_of_a_missing_key_exits_1_with_not_found() {
    let _serial = serial();
    let cluster = Cluster::start(3).unwrap();
    let out = cluster.ringctl(0, &["get", "never-written"]).unwrap();
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out).trim(), "not found");

    // JSON still describes the (empty) read on stdout, with the same exit status.
    let out = cluster
        .ringctl(1, &["-o", "json", "get", "never-written"])
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["key"], "never-written");
    assert_eq!(doc["values"].as_array().map(Vec::len), Some(0));
}

/// A script tells an absent key (1) from a node that cannot answer (3) and from a request
/// refused as it stands (4); with `-o json` the error is one object on stderr with its kind.
#[test]
fn exit_statuses_tell_absent_from_unreachable_from_refused() {
    let _serial = serial();
    let mut cluster = Cluster::start(3).unwrap();
    let absent = cluster.ringctl(0, &["get", "never-written"]).unwrap();
    assert_eq!(absent.status.code(), Some(1), "stderr: {}", stderr(&absent));

    let huge = "k".repeat(5000);
    let refused = cluster.ringctl(0, &["put", &huge, "v"]).unwrap();
    assert_eq!(
        refused.status.code(),
        Some(4),
        "stderr: {}",
        stderr(&refused)
    );

    cluster.nodes[2].kill();
    let dead = cluster
        .ringctl(2, &["-o", "json", "--timeout", "1s", "get", "k"])
        .unwrap();
    assert_eq!(dead.status.code(), Some(3), "stderr: {}", stderr(&dead));
    let doc: Value = serde_json::from_str(stderr(&dead).trim())
        .unwrap_or_else(|e| panic!("one JSON error object, got {:?}: {e}", stderr(&dead)));
    assert_eq!(doc["status"], 3);
    assert!(
        matches!(doc["kind"].as_str(), Some("timeout" | "unreachable")),
        "{doc}"
    );
    assert!(
        doc["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{doc}"
    );
}

#[test]
fn put_get_del_round_trip_through_the_cli_in_text_and_json() {
    let _serial = serial();
    let cluster = Cluster::start(3).unwrap();

    // Text: write through n1, read through n2, delete through n3.
    let put = ok(&cluster, 0, &["put", "greeting", "hello world"]);
    assert!(put.starts_with("OK (acknowledged by "), "{put:?}");
    assert_eq!(ok(&cluster, 1, &["get", "greeting"]), "hello world\n");
    assert!(ok(&cluster, 2, &["del", "greeting"]).starts_with("OK"));
    let gone = cluster.ringctl(0, &["get", "greeting"]).unwrap();
    assert_eq!(gone.status.code(), Some(1), "deleted key still readable");

    // JSON: every document parses and says what happened.
    let put = json(&cluster, 0, &["put", "--w", "3", "lang", "rust"]);
    assert_eq!(put["key"], "lang");
    assert_eq!(put["acked"], 3);
    assert!(put["context"].as_str().is_some_and(|c| !c.is_empty()));

    let got = json(&cluster, 1, &["get", "--r", "3", "lang"]);
    assert_eq!(got["key"], "lang");
    assert_eq!(got["replied"], 3);
    let values = got["values"].as_array().unwrap();
    assert_eq!(values.len(), 1, "{got}");
    assert_eq!(values[0]["value"], "rust");
    assert!(values[0]["ts"]["millis"].as_u64().is_some_and(|ms| ms > 0));
    let context = got["context"].as_str().unwrap().to_owned();

    // A write with the read's context replaces what was read: one value, no sibling.
    json(
        &cluster,
        2,
        &["put", "--context", &context, "lang", "still rust"],
    );
    let got = json(&cluster, 0, &["get", "lang"]);
    assert_eq!(got["values"].as_array().map(Vec::len), Some(1), "{got}");
    assert_eq!(got["values"][0]["value"], "still rust");

    let del = json(&cluster, 1, &["del", "lang"]);
    assert_eq!(del["key"], "lang");
    assert!(del["acked"].as_u64().is_some_and(|a| a >= 2));
    let out = cluster.ringctl(2, &["-o", "json", "get", "lang"]).unwrap();
    assert_eq!(out.status.code(), Some(1));

    let members = json(&cluster, 2, &["members"]);
    let mut names: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == "alive")
        .filter_map(|m| m["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["n1", "n2", "n3"]);
}

/// `bench --fill` writes every key once (all of them readable after), and `bench --rate` sends
/// exactly the requests due within the run, however fast the cluster answers.
#[test]
fn bench_fill_writes_every_key_and_rate_sends_what_is_due() {
    let _serial = serial();
    let cluster = Cluster::start(3).unwrap();
    let fill = json(
        &cluster,
        0,
        &[
            "bench",
            "--fill",
            "--keys",
            "40",
            "--duration",
            "60s",
            "--prefix",
            "f:",
        ],
    );
    assert_eq!(fill["ops"], 40, "{fill}");
    assert_eq!(fill["writes"]["ok"], 40, "{fill}");
    assert_eq!(fill["reads"]["ok"], 0, "{fill}");
    for i in [0, 17, 39] {
        assert_eq!(
            ok(&cluster, 1, &["get", &format!("f:bench:{i}")]).len(),
            101
        );
    }
    let absent = cluster.ringctl(2, &["get", "f:bench:40"]).unwrap();
    assert_eq!(absent.status.code(), Some(1), "{}", stderr(&absent));

    let paced = json(
        &cluster,
        2,
        &[
            "bench",
            "--rate",
            "20",
            "--duration",
            "2s",
            "--read-ratio",
            "1",
        ],
    );
    assert_eq!(paced["rate_ops_s"], 20, "{paced}");
    assert_eq!(paced["ops"], 40, "requests due in 2 s at 20/s: {paced}");
}
