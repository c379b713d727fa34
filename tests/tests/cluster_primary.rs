//! Primary mode across real processes: a prefix set to primary with majority sync is served by
//! one primary per shard, other nodes forward to it, a replica refuses a direct write with
//! READONLY, and after the primary is killed a replica takes over with every acknowledged
//! write; the old primary comes back as a replica and resyncs.

use std::time::Duration;

use ringkv_tests::{poll, serial, Cluster};
use serde_json::Value;

/// Bound on a rule spreading, an election, or a failover.
const WITHIN: Duration = Duration::from_secs(20);

/// Put until it is acknowledged (an election may be under way).
fn put(cluster: &Cluster, i: usize, key: &str, value: &str) {
    let mut last = String::new();
    let done = poll(WITHIN, || {
        match cluster.ringctl_text(i, &["put", key, value]) {
            Ok(_) => Some(()),
            Err(e) => {
                last = e;
                None
            }
        }
    });
    assert!(
        done.is_some(),
        "put {key}={value} via node {} never acknowledged: {last}",
        i + 1
    );
}

fn get(cluster: &Cluster, i: usize, key: &str) -> String {
    let mut last = String::new();
    poll(WITHIN, || match cluster.ringctl_text(i, &["get", key]) {
        Ok(out) => Some(out.trim().to_string()),
        Err(e) => {
            last = e;
            None
        }
    })
    .unwrap_or_else(|| panic!("get {key} via node {} failed: {last}", i + 1))
}

#[test]
fn a_primary_range_fails_over_without_losing_majority_writes() {
    let _serial = serial();
    let mut cluster = Cluster::start(3).unwrap();
    let key = "acct:alice";
    cluster
        .ringctl_text(
            0,
            &[
                "range",
                "set",
                "--prefix",
                "acct:",
                "--mode",
                "primary",
                "--sync-replicas",
                "majority",
            ],
        )
        .unwrap();
    for i in 0..3 {
        poll(WITHIN, || {
            cluster
                .ringctl_text(i, &["range", "list"])
                .ok()
                .filter(|t| t.contains("acct:"))
        })
        .unwrap_or_else(|| panic!("node {} never learned the rule", i + 1));
    }

    // Written through a node that is not necessarily the primary: forwarded.
    put(&cluster, 2, key, "1");
    assert!(get(&cluster, 1, key).contains('1'));

    // The primary and its replicas, as the primary reports them.
    let owner = cluster
        .replication_of(0, key)
        .expect("node 1 knows the shard");
    let primary = owner["primary"]
        .as_str()
        .expect("a primary is known")
        .to_string();
    let p = cluster.index_of(&primary).unwrap();
    let info = poll(WITHIN, || {
        cluster.replication_of(p, key).filter(|s| {
            s["role"] == "primary"
                && s["replicas"]
                    .as_array()
                    .is_some_and(|r| r.iter().all(|r| r["state"] == "online"))
        })
    })
    .expect("the primary shows both replicas online");
    let epoch = info["epoch"].as_u64().unwrap();

    // A replica asked to write without forwarding answers READONLY.
    let replica = (0..3).find(|i| *i != p).unwrap();
    let refused = cluster
        .ringctl_text(replica, &["put", "--direct", key, "x"])
        .unwrap_err();
    assert!(refused.contains("READONLY"), "{refused}");

    for v in 2..=5 {
        put(&cluster, replica, key, &v.to_string());
    }

    // Kill the primary: a replica takes over under a newer epoch with every acknowledged write.
    cluster.nodes[p].kill();
    put(&cluster, replica, key, "6");
    let read = get(&cluster, replica, key);
    assert!(read.contains('6'), "{read}");
    let survivor = cluster.replication_of(replica, key).unwrap();
    let new_primary = survivor["primary"].as_str().unwrap().to_string();
    assert_ne!(new_primary, primary);
    let np = cluster.index_of(&new_primary).unwrap();
    let promoted = cluster.replication_of(np, key).unwrap();
    assert!(promoted["epoch"].as_u64().unwrap() > epoch, "{promoted}");

    // The old primary returns as a replica and catches up.
    let seed = cluster.nodes[np].addr;
    cluster.restart(p, &[seed]).unwrap();
    poll(WITHIN, || {
        cluster.replication_of(np, key).filter(|s| {
            s["replicas"].as_array().is_some_and(|r| {
                r.iter()
                    .any(|r| r["name"] == primary.as_str() && r["state"] == "online")
            })
        })
    })
    .expect("the old primary follows the new one");
    let back = poll(WITHIN, || {
        cluster
            .ringctl_text(p, &["get", "--direct", key])
            .ok()
            .filter(|t| t.contains('6'))
    });
    assert!(back.is_some(), "the old primary's copy caught up");
}

#[test]
fn a_replica_read_after_a_session_sees_that_write() {
    let _serial = serial();
    let cluster = Cluster::start(3).unwrap();
    let key = "sess:bob";
    cluster
        .ringctl_text(
            0,
            &[
                "range",
                "set",
                "--prefix",
                "sess:",
                "--mode",
                "primary",
                "--read-from",
                "replica",
            ],
        )
        .unwrap();
    for i in 0..3 {
        poll(WITHIN, || {
            cluster
                .ringctl_text(i, &["range", "list"])
                .ok()
                .filter(|t| t.contains("sess:"))
        })
        .unwrap_or_else(|| panic!("node {} never learned the rule", i + 1));
    }
    put(&cluster, 0, key, "first");
    let primary = poll(WITHIN, || {
        cluster.replication_of(0, key)?["primary"]
            .as_str()
            .map(String::from)
    })
    .expect("a primary is known");
    let replica = (0..3).find(|i| cluster.nodes[*i].name != primary).unwrap();
    // Asynchronous replication: the replica may lag, but a read naming the write's session
    // waits until the replica holds it.
    for v in 0..20 {
        let value = format!("v{v}");
        let out = cluster
            .ringctl_text(0, &["-o", "json", "put", key, &value])
            .unwrap();
        let out: Value = serde_json::from_str(&out).unwrap();
        let session = out["session"]
            .as_str()
            .expect("a primary-mode write has a session");
        let read = cluster
            .ringctl_text(replica, &["get", "--direct", "--after", session, key])
            .unwrap();
        assert!(read.contains(&value), "after {session}: {read}");
    }
    let bad = cluster
        .ringctl_text(replica, &["get", "--after", "nocolon", key])
        .unwrap_err();
    assert!(bad.contains("REPLID:OFFSET"), "{bad}");
}
