//! Mutual TLS: nodes and clients holding another cluster's certificates are kept out.

use std::time::Duration;

use ringkv::Api;
use ringkv_tests::{block_on, free_port, poll, ringctl_at, serial, Cluster};

/// How long the outsider is watched: several announce rounds and probe periods.
const WATCH: Duration = Duration::from_secs(5);

#[test]
fn a_node_with_another_cas_certificate_cannot_join() {
    let _serial = serial();
    let cluster = Cluster::start(3).unwrap();
    let mut outside = Cluster::prepare(&["n4"]).unwrap();
    let intruder = outside
        .spawn("n4", free_port().unwrap(), &[cluster.nodes[0].addr], &[])
        .unwrap();
    outside.nodes.push(intruder);

    let insiders: Vec<_> = (0..3).map(|i| cluster.client(i).unwrap()).collect();
    let intruder_view = outside.client(0).unwrap();
    let mut intruder_answered = false;
    // Watch the whole period: a join at any moment fails the test.
    let joined = poll(WATCH, || {
        for (i, c) in insiders.iter().enumerate() {
            let rows = block_on(c.members()).unwrap();
            if rows.iter().any(|r| r.name == "n4") {
                return Some(format!("n{} lists the intruder: {rows:?}", i + 1));
            }
        }
        if let Ok(rows) = block_on(intruder_view.members()) {
            intruder_answered = true;
            if rows.iter().any(|r| r.name != "n4" && r.state == "alive") {
                return Some(format!("the intruder sees members alive: {rows:?}"));
            }
        }
        None
    });
    assert_eq!(joined, None);
    assert!(
        intruder_answered,
        "the intruder never answered its own client"
    );
    assert!(outside.nodes[0].is_running(), "the intruder exited");
    cluster.wait_alive(3, Duration::from_secs(1)).unwrap();
}

#[test]
fn ringctl_with_another_cas_client_certificate_is_refused_in_one_line() {
    let _serial = serial();
    let cluster = Cluster::start(3).unwrap();
    let outside = Cluster::prepare(&[]).unwrap();
    for args in [&["members"][..], &["get", "k"], &["put", "k", "v"]] {
        let out = ringctl_at(cluster.nodes[0].addr, &outside.certs(), args).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(out.stdout, b"", "{args:?}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr:?}");
        assert!(lines[0].starts_with("error: "), "{args:?}: {stderr:?}");
        assert!(lines[0].contains("TLS handshake"), "{args:?}: {stderr:?}");
    }
    // The refused write never happened.
    let out = cluster.ringctl(1, &["get", "--r", "3", "k"]).unwrap();
    assert_eq!(out.status.code(), Some(1));
}
