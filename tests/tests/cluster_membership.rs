//! Joining: real `ringctl serve` processes find each other through one seed.

use std::time::Duration;

use ringkv::Api;
use ringkv_tests::{block_on, serial, Cluster};

/// Bound on a fresh cluster converging on a loaded two-core machine (not a speed check).
const CONVERGE: Duration = Duration::from_secs(30);

#[test]
fn four_nodes_join_through_one_seed_and_all_see_each_other_alive() {
    let _serial = serial();
    let names = ["n1", "n2", "n3", "n4"];
    let mut cluster = Cluster::prepare(&names).unwrap();
    let seed_port = ringkv_tests::free_port().unwrap();
    let seed = cluster.spawn("n1", seed_port, &[], &[]).unwrap();
    let seed_addr = seed.addr;
    cluster.nodes.push(seed);
    for name in &names[1..] {
        let port = ringkv_tests::free_port().unwrap();
        // Only the seed's address is given: the others must be learnt through gossip.
        let node = cluster.spawn(name, port, &[seed_addr], &[]).unwrap();
        cluster.nodes.push(node);
    }
    cluster.wait_alive(names.len(), CONVERGE).unwrap();

    let expected: Vec<(String, String)> = cluster
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.addr.to_string()))
        .collect();
    for i in 0..cluster.nodes.len() {
        let rows = block_on(cluster.client(i).unwrap().members()).unwrap();
        let mut seen: Vec<(String, String)> = rows
            .iter()
            .filter(|r| r.state == "alive")
            .map(|r| (r.name.clone(), r.addr.clone()))
            .collect();
        seen.sort();
        assert_eq!(seen, expected, "as seen by {}", cluster.nodes[i].name);
        // A joiner is `joining` until its first anti-entropy round pulled its ranges.
        cluster
            .wait_members(i, CONVERGE, |rows| rows.iter().all(|r| r.status == "up"))
            .unwrap_or_else(|e| panic!("{}: members never all up: {e}", cluster.nodes[i].name));
    }
    for node in &mut cluster.nodes {
        assert!(node.is_running(), "{} exited", node.name);
    }
}

#[test]
fn a_node_stopped_with_sigterm_leaves_gracefully_and_drops_out_of_the_ring() {
    let _serial = serial();
    let mut cluster = Cluster::start(3).unwrap();
    let pid = cluster.nodes[2].pid().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let exited = cluster.nodes[2].wait_exit(CONVERGE);
    let log = cluster.log("n3");
    let status = exited
        .unwrap_or_else(|| panic!("n3 ignored SIGTERM: {log}"))
        .status;
    assert!(status.success(), "n3 exited with {status}: {log}");

    for i in 0..2 {
        let left = |rows: &[ringkv::proto::MemberRow]| {
            rows.iter()
                .any(|r| r.name == "n3" && r.state == "down" && r.status == "leaving")
        };
        cluster.wait_members(i, CONVERGE, left).unwrap();
        let ring = block_on(cluster.client(i).unwrap().ring()).unwrap();
        let mut names: Vec<&str> = ring.nodes.iter().map(|(n, _, _)| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["n1", "n2"], "ring of n{}", i + 1);
    }
}

#[test]
fn a_node_stopped_in_place_stays_in_the_ring_and_keeps_its_data() {
    let _one_cluster = serial();
    let mut cluster = Cluster::prepare(&["n1", "n2", "n3"]).unwrap();
    let mut seeds = Vec::new();
    for name in ["n1", "n2", "n3"] {
        let port = ringkv_tests::free_port().unwrap();
        let node = cluster
            .spawn(name, port, &seeds, &["--on-signal", "stop"])
            .unwrap();
        seeds = vec![cluster.nodes.first().map_or(node.addr, |n| n.addr)];
        cluster.nodes.push(node);
    }
    cluster.wait_alive(3, CONVERGE).unwrap();
    let client = cluster.client(0).unwrap();
    let all = ringkv::WriteOptions {
        w: Some(3),
        ..Default::default()
    };
    block_on(client.put(b"stays".to_vec(), b"here".to_vec(), all)).unwrap();

    assert!(cluster.nodes[2].terminate(CONVERGE), "n3 ignored SIGTERM");
    for i in 0..2 {
        let down = |rows: &[ringkv::proto::MemberRow]| {
            rows.iter()
                .any(|r| r.name == "n3" && r.state == "down" && r.status != "leaving")
        };
        cluster.wait_members(i, CONVERGE, down).unwrap();
        let ring = block_on(cluster.client(i).unwrap().ring()).unwrap();
        assert_eq!(
            ring.nodes.len(),
            3,
            "n3 keeps its place in the ring of n{}",
            i + 1
        );
    }
    cluster.restart(2, &[cluster.nodes[0].addr]).unwrap();
    cluster.wait_alive(3, CONVERGE).unwrap();
    let held = block_on(cluster.client(2).unwrap().inspect(b"stays".to_vec())).unwrap();
    assert_eq!(held.siblings.len(), 1, "n3's data stayed on its disk");
}
