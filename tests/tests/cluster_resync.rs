//! A replica of a primary-mode shard that was down comes back: partially resynced from the
//! primary's backlog when it missed little, fully (a snapshot of the shard's keys) when it
//! missed more than the backlog holds. Either way it ends at the primary's offset holding
//! every key as the primary does.

use std::time::Duration;

use ringkv::proto::{ClientRequest, ClientResponse};
use ringkv::table::{Mode, PrimaryOptions, SyncReplicas};
use ringkv::{Api, Client, WriteOptions};
use ringkv_ring::{Ring, RingConfig, RingNode};
use ringkv_tests::{block_on, poll, serial, Cluster};

const WITHIN: Duration = Duration::from_secs(20);
const ANCHOR: &str = "rs:anchor";

/// The ring the cluster computes: three nodes, default vnodes and N.
fn ring() -> Ring {
    Ring::new(
        ["n1", "n2", "n3"].map(RingNode::new),
        RingConfig::new(256, 3).unwrap(),
    )
}

/// `count` keys in the shard (ordered preference list) of [`ANCHOR`], so that one primary
/// orders them all.
fn keys_in_anchor_shard(tag: &str, count: usize) -> Vec<String> {
    let ring = ring();
    let shard = ring.preference_list(ANCHOR.as_bytes()).to_vec();
    (0..)
        .map(|i| format!("rs:{tag}{i}"))
        .filter(|k| ring.preference_list(k.as_bytes()) == shard.as_slice())
        .take(count)
        .collect()
}

/// Write until acknowledged (an election may be under way).
fn put(client: &Client, key: &str, value: &[u8]) {
    let mut last = String::new();
    poll(WITHIN, || {
        match block_on(client.put(
            key.as_bytes().to_vec(),
            value.to_vec(),
            WriteOptions::default(),
        )) {
            Ok(_) => Some(()),
            Err(e) => {
                last = e.to_string();
                None
            }
        }
    })
    .unwrap_or_else(|| panic!("put {key} never acknowledged: {last}"));
}

fn delete(client: &Client, key: &str) {
    poll(WITHIN, || {
        block_on(client.delete(key.as_bytes().to_vec(), WriteOptions::default())).ok()
    })
    .unwrap_or_else(|| panic!("delete {key} never acknowledged"));
}

/// What the node alone holds for `key` (`get --direct`).
fn direct_get(client: &Client, key: &str) -> Option<Vec<u8>> {
    let req = ClientRequest::Direct(Box::new(ClientRequest::Get {
        key: key.as_bytes().to_vec(),
        r: None,
        wait_repair: false,
    }));
    match block_on(client.request(req)) {
        Ok(ClientResponse::Got(read)) => read.values.first().map(|v| v.data.clone()),
        other => panic!("direct get {key}: {other:?}"),
    }
}

/// A cluster with `rs:` in primary mode (majority), its primary for [`ANCHOR`] and one of
/// that primary's replicas, both replicas online.
fn primary_cluster(extra: &[&str]) -> (Cluster, usize, usize) {
    let mut cluster = Cluster::start_with(3, extra).unwrap();
    let mode = Mode::Primary(PrimaryOptions {
        sync: SyncReplicas::Majority,
        ..PrimaryOptions::default()
    });
    cluster.set_mode(0, "rs:", mode, WITHIN).unwrap();
    put(&cluster.client(0).unwrap(), ANCHOR, b"0");
    let (p, info) = poll(WITHIN, || {
        cluster
            .primary_of(ANCHOR)
            .filter(|(_, s)| s.replicas.iter().all(|r| r.state == "online"))
    })
    .expect("a primary with both replicas online");
    assert_eq!(
        info.shard,
        ring().preference_list(ANCHOR.as_bytes()),
        "the cluster's ring is the one the test computes"
    );
    let r = (0..3).find(|&i| i != p).unwrap();
    (cluster, p, r)
}

/// Wait until the primary `p` shows replica `r` online at its own offset and `done` holds of
/// its counters; the primary's view then.
fn wait_caught_up(
    cluster: &mut Cluster,
    p: usize,
    r: usize,
    done: impl Fn(u64, u64) -> bool,
) -> ringkv::core::replication::ShardInfo {
    let name = cluster.nodes[r].name.clone();
    let mut last = None;
    poll(WITHIN, || {
        let s = cluster.shard(p, ANCHOR)?;
        let back = s
            .replicas
            .iter()
            .any(|x| x.name == name && x.state == "online" && x.offset == s.offset);
        let ok = back && done(s.partial_syncs, s.full_syncs);
        last = Some(s.clone());
        ok.then_some(s)
    })
    .unwrap_or_else(|| panic!("{name} never caught up: {last:#?}"))
}

#[test]
fn a_replica_back_within_the_backlog_resyncs_partially() {
    let _serial = serial();
    let (mut cluster, p, r) = primary_cluster(&[]);
    let writer = cluster.client(p).unwrap();
    let keys = keys_in_anchor_shard("p", 40);
    for k in &keys[..20] {
        put(&writer, k, b"before");
    }
    let start = cluster.shard(p, ANCHOR).unwrap();

    cluster.nodes[r].kill();
    // A few KiB, far below the 1 MiB backlog.
    for k in &keys[10..] {
        put(&writer, k, format!("missed {k}").as_bytes());
    }
    let seed = cluster.nodes[p].addr;
    cluster.restart(r, &[seed]).unwrap();
    let end = wait_caught_up(&mut cluster, p, r, |partial, _| {
        partial > start.partial_syncs
    });
    assert_eq!(
        end.full_syncs, start.full_syncs,
        "no full resync was needed: {end:#?}"
    );

    let replica = cluster.client(r).unwrap();
    for (i, k) in keys.iter().enumerate() {
        let want = if i < 10 {
            b"before".to_vec()
        } else {
            format!("missed {k}").into_bytes()
        };
        assert_eq!(direct_get(&replica, k), Some(want), "{k} on the replica");
    }
}

#[test]
fn a_replica_back_past_the_backlog_resyncs_fully() {
    let _serial = serial();
    let flags = ["--repl-backlog", "4096"];
    let (mut cluster, p, r) = primary_cluster(&flags);
    let writer = cluster.client(p).unwrap();
    let keys = keys_in_anchor_shard("f", 60);
    for k in &keys[..20] {
        put(&writer, k, b"before");
    }
    let start = cluster.shard(p, ANCHOR).unwrap();

    cluster.nodes[r].kill();
    // About 20 KiB of writes: five times what the backlog holds.
    let big = |k: &str| format!("{k}:{}", "x".repeat(300)).into_bytes();
    for k in &keys[10..] {
        put(&writer, k, &big(k));
    }
    delete(&writer, &keys[0]);
    let seed = cluster.nodes[p].addr;
    cluster.restart_with(r, &[seed], &flags).unwrap();
    let end = wait_caught_up(&mut cluster, p, r, |_, full| full > start.full_syncs);
    assert!(
        end.backlog_first.is_some_and(|f| f > start.offset + 1),
        "the backlog no longer holds what the replica missed: {end:#?}"
    );

    let replica = cluster.client(r).unwrap();
    assert_eq!(
        direct_get(&replica, &keys[0]),
        None,
        "deleted while it was away"
    );
    for (i, k) in keys.iter().enumerate().skip(1) {
        let want = if i < 10 { b"before".to_vec() } else { big(k) };
        assert_eq!(direct_get(&replica, k), Some(want), "{k} on the replica");
    }
    // The same through the command line.
    let out = cluster.ringctl(r, &["get", "--direct", &keys[59]]).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&keys[59]));
}
