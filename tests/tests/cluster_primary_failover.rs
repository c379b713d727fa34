//! What a client sees of primary mode without retrying on its own: the first write after a
//! prefix switches to primary mode succeeds (the node holds it through the election and the
//! first primary's gathering), and a read sent right after the key's primary stopped
//! answering (SIGSTOP: a host that hangs or drops off the network, which no socket error
//! reveals) is answered by the next primary once membership declares the old one down,
//! instead of waiting out the request timeout on it.

use std::time::{Duration, Instant};

use ringkv::table::{Mode, PrimaryOptions, SyncReplicas};
use ringkv::{Api, ReadOptions};
use ringkv_tests::{block_on, poll, serial, Cluster};

/// Bound on a rule spreading or a first primary showing up.
const WITHIN: Duration = Duration::from_secs(30);
/// The node's request timeout: an answer past it would be the timeout's, not the data's.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

fn majority() -> Mode {
    Mode::Primary(PrimaryOptions {
        sync: SyncReplicas::Majority,
        ..PrimaryOptions::default()
    })
}

#[test]
fn the_first_write_after_a_prefix_goes_primary_succeeds_without_a_retry() {
    let _serial = serial();
    let mut cluster = Cluster::start(3).unwrap();
    cluster.set_mode(0, "first/", majority(), WITHIN).unwrap();
    // One attempt per key, each through another node, right after the rule spread.
    for via in 0..3 {
        let key = format!("first/{via}");
        let put = cluster.ringctl_text(via, &["put", &key, "v"]);
        assert!(put.is_ok(), "put {key} via n{}: {put:?}", via + 1);
    }
    for via in 0..3 {
        let key = format!("first/{via}");
        let got = cluster.ringctl_text((via + 1) % 3, &["get", &key]);
        assert_eq!(got.as_deref().map(str::trim), Ok("v"), "get {key}");
    }
}

#[test]
fn a_read_right_after_the_primary_hangs_is_answered_by_the_next_primary() {
    let _serial = serial();
    let mut cluster = Cluster::start(5).unwrap();
    cluster.set_mode(0, "fo/", majority(), WITHIN).unwrap();
    let key = "fo/k";
    let written = poll(WITHIN, || cluster.ringctl_text(0, &["put", key, "v1"]).ok());
    assert!(written.is_some(), "put {key} never acknowledged");
    let (primary, shard) =
        poll(WITHIN, || cluster.primary_of(key)).unwrap_or_else(|| panic!("no primary"));
    // Read once through another node, so that node knows (and forwards to) this primary.
    let via = (primary + 1) % 5;
    let client = cluster.client(via).unwrap();
    let read = || block_on(client.get(key.as_bytes().to_vec(), ReadOptions::default()));
    let first = read().expect("read before the pause");
    assert_eq!(first.values[0].data, b"v1");

    eprintln!(
        "pausing n{} (primary at epoch {})",
        primary + 1,
        shard.epoch
    );
    cluster.nodes[primary].pause();
    let started = Instant::now();
    let after = read();
    let took = started.elapsed();
    eprintln!(
        "read through n{} answered {took:?} after the pause",
        via + 1
    );
    let after = after.unwrap_or_else(|e| panic!("read after the pause failed ({took:?}): {e}"));
    assert_eq!(after.values[0].data, b"v1");
    assert!(took < REQUEST_TIMEOUT, "answered after {took:?}");
}
