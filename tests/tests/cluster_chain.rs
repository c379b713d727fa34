//! Chain topology across real processes: with a prefix set to `--topology chain`, the primary
//! streams to the first replica of its shard only, that replica relays to the last one, and the
//! last replica still reaches the primary's offset (as `info replication` shows on each node).

use std::time::Duration;

use ringkv_tests::{poll, serial, Cluster};

/// Bound on a rule spreading, an election, or replicas catching up.
const WITHIN: Duration = Duration::from_secs(20);

#[test]
fn the_primary_streams_to_one_replica_and_the_last_one_catches_up_through_it() {
    let _serial = serial();
    let cluster = Cluster::start(3).unwrap();
    let key = "chain:k";
    let set = [
        "range",
        "set",
        "--prefix",
        "chain:",
        "--mode",
        "primary",
        "--sync-replicas",
        "majority",
        "--topology",
        "chain",
    ];
    cluster.ringctl_text(0, &set).unwrap();
    for i in 0..3 {
        poll(WITHIN, || {
            cluster
                .ringctl_text(i, &["range", "list"])
                .ok()
                .filter(|t| t.contains("chain:") && t.contains("chain"))
        })
        .unwrap_or_else(|| panic!("node {} never learned the rule", i + 1));
    }
    for v in 1..=5 {
        let done = poll(WITHIN, || {
            cluster.ringctl_text(0, &["put", key, &v.to_string()]).ok()
        });
        assert!(done.is_some(), "put {v} never acknowledged");
    }

    let primary = poll(WITHIN, || {
        cluster.replication_of(0, key)?["primary"]
            .as_str()
            .map(str::to_string)
    })
    .expect("a primary was elected");
    let p = cluster.index_of(&primary).unwrap();
    let info = cluster.replication_of(p, key).unwrap();
    let list: Vec<String> = info["shard"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    // Chain order: the shard's list, starting after the primary.
    let at = list.iter().position(|n| *n == primary).unwrap();
    let head = list[(at + 1) % 3].clone();
    let tail = list[(at + 2) % 3].clone();

    // The primary: chain, streaming to the head; the tail's acknowledgements come via the head,
    // and both replicas hold everything the primary logged.
    let seen = poll(WITHIN, || {
        let s = cluster.replication_of(p, key)?;
        let offset = s["offset"].as_u64()?;
        let replicas = s["replicas"].as_array()?.clone();
        let by = |name: &str| replicas.iter().find(|r| r["name"] == name).cloned();
        let (h, t) = (by(&head)?, by(&tail)?);
        let ok = s["topology"] == "chain"
            && s["relays_to"] == head.as_str()
            && h["via"].is_null()
            && t["via"] == head.as_str()
            && [&h, &t]
                .iter()
                .all(|r| r["state"] == "online" && r["offset"].as_u64() == Some(offset));
        ok.then_some(s)
    });
    assert!(
        seen.is_some(),
        "the primary never showed a chain through {head} to {tail}: {:?}",
        cluster.replication_of(p, key)
    );
    let offset = seen.unwrap()["offset"].as_u64().unwrap();
    assert!(offset >= 5, "five writes logged: {offset}");

    // The head relays to the tail; the tail follows the primary and reached its offset.
    let h = cluster
        .replication_of(cluster.index_of(&head).unwrap(), key)
        .unwrap();
    assert_eq!(h["topology"], "chain", "{h}");
    assert_eq!(h["role"], "replica", "{h}");
    let relayed = poll(WITHIN, || {
        cluster
            .replication_of(cluster.index_of(&head).unwrap(), key)
            .filter(|h| h["relays_to"] == tail.as_str())
    });
    assert!(relayed.is_some(), "the head never relayed to {tail}");
    let t = poll(WITHIN, || {
        cluster
            .replication_of(cluster.index_of(&tail).unwrap(), key)
            .filter(|t| t["offset"].as_u64().is_some_and(|o| o >= offset))
    })
    .expect("the tail reaches the primary's offset");
    assert_eq!(t["primary"], primary.as_str(), "{t}");
    assert!(t["relays_to"].is_null(), "the tail relays to nobody: {t}");
}
