//! Rolling upgrades: the protocol version in the handshake. Nodes of this release speak
//! version 2 and the previous release's version 1, so a cluster can mix them while it is
//! upgraded one node at a time; any other version is refused with a log line naming both.
//!
//! A node of the previous release is emulated by a node started with the hidden
//! `--protocol-version 1`: it offers only `ringkv/1`, so every connection to or from it
//! negotiates version 1 and carries version 1's encoding.

use std::time::Duration;

use ringkv::core::update::UpdateOp;
use ringkv::{Api, ReadOptions, WriteOptions};
use ringkv_tests::{block_on, free_port, serial, Cluster};

/// Start n1..n3 through n1, each with its own extra flags; wait until all see 3 alive.
fn cluster(flags: [&[&str]; 3]) -> Cluster {
    let mut cluster = Cluster::prepare(&["n1", "n2", "n3"]).unwrap();
    for (i, extra) in flags.iter().enumerate() {
        let seeds: Vec<_> = cluster.nodes.first().map(|n| n.addr).into_iter().collect();
        let name = format!("n{}", i + 1);
        let node = cluster
            .spawn(&name, free_port().unwrap(), &seeds, extra)
            .unwrap();
        cluster.nodes.push(node);
    }
    cluster
}

#[test]
fn a_node_speaking_only_the_previous_version_serves_in_a_mixed_cluster() {
    let _serial = serial();
    let cluster = cluster([&[], &[], &["--protocol-version", "1"]]);
    cluster.wait_alive(3, Duration::from_secs(30)).unwrap();

    // W=3 and R=3: every write and read involves every node, so version 1 is spoken in
    // both directions (n1 and n2 dial n3; n3 dials them; clients of either version).
    let all = WriteOptions {
        w: Some(3),
        context: None,
    };
    let read_all = ReadOptions {
        r: Some(3),
        ..Default::default()
    };
    for (i, via) in [0, 2, 1].into_iter().enumerate() {
        let client = cluster.client(via).unwrap();
        for k in 0..20 {
            let key = format!("mixed-{i}-{k}").into_bytes();
            block_on(client.put(key, format!("v{k}").into_bytes(), all.clone()))
                .unwrap_or_else(|e| panic!("put via n{}: {e}", via + 1));
        }
    }
    for via in 0..3 {
        let client = cluster.client(via).unwrap();
        for i in 0..3 {
            for k in 0..20 {
                let key = format!("mixed-{i}-{k}").into_bytes();
                let read = block_on(client.get(key, read_all.clone()))
                    .unwrap_or_else(|e| panic!("get via n{}: {e}", via + 1));
                let got: Vec<&[u8]> = read.values.iter().map(|v| v.data.as_slice()).collect();
                assert_eq!(got, [format!("v{k}").as_bytes()], "mixed-{i}-{k}");
            }
        }
    }
    // Errors cross version 1 too: an impossible quorum, answered by the version-1 node.
    let err = block_on(cluster.client(2).unwrap().put(
        b"k".to_vec(),
        b"v".to_vec(),
        WriteOptions {
            w: Some(9),
            context: None,
        },
    ))
    .unwrap_err();
    assert!(err.to_string().contains("w=9"), "{err}");
    // What version 1 cannot express is refused before it is sent, naming the versions; a
    // version-2 node answers the same request itself (here: the key is not in primary mode).
    let update = |via: usize| {
        let client = cluster.client(via).unwrap();
        block_on(client.update(b"k".to_vec(), UpdateOp::Add(1))).unwrap_err()
    };
    let err = update(2).to_string();
    assert!(
        err.contains("an atomic update needs protocol version 2; the peer speaks ringkv/1"),
        "{err}"
    );
    let err = update(0).to_string();
    assert!(!err.contains("protocol version"), "{err}");
    for name in ["n1", "n2", "n3"] {
        assert!(
            !cluster.log(name).contains("refusing a handshake"),
            "{name}: {}",
            cluster.log(name)
        );
    }
}

#[test]
fn a_node_of_an_unknown_version_is_refused_and_both_versions_are_logged() {
    let _serial = serial();
    let mut cluster = Cluster::prepare(&["n1", "n2"]).unwrap();
    let n1 = cluster.spawn("n1", free_port().unwrap(), &[], &[]).unwrap();
    let seeds = [n1.addr];
    cluster.nodes.push(n1);
    let n2 = cluster
        .spawn(
            "n2",
            free_port().unwrap(),
            &seeds,
            &["--protocol-version", "7"],
        )
        .unwrap();
    cluster.nodes.push(n2);

    let refused = "refusing a handshake: the peer speaks protocol version ringkv/7, \
                   this node speaks ringkv/2, ringkv/1";
    assert!(
        cluster
            .wait_log("n1", refused, Duration::from_secs(20))
            .is_some(),
        "{}",
        cluster.log("n1")
    );
    let dialler = "the peer speaks none of the protocol versions this node speaks: ringkv/7";
    assert!(
        cluster
            .wait_log("n2", dialler, Duration::from_secs(20))
            .is_some(),
        "{}",
        cluster.log("n2")
    );
    // n1 never admits n2.
    let members = cluster
        .wait_members(0, Duration::from_secs(1), |_| true)
        .unwrap();
    assert!(members.iter().all(|m| m.name != "n2"), "{members:?}");
}
