//! Ownership transfer across real processes: a fourth node joins under a running write load
//! and ends up holding its ranges, then leaves gracefully; no acknowledged write is lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringkv::{Api, Client, ReadOptions, WriteOptions};
use ringkv_tests::{block_on, poll, runtime, serial, Cluster};

/// Writes fresh keys through `client` until stopped; the keys acknowledged at W=2.
fn write_load(
    client: Client,
    stop: Arc<AtomicBool>,
    tag: &'static str,
) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    std::thread::spawn(move || {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) && i < 20_000 {
            let key = format!("{tag}-{i}").into_bytes();
            let opts = WriteOptions {
                w: Some(2),
                ..Default::default()
            };
            if block_on(client.put(key.clone(), key.clone(), opts)).is_ok() {
                acked.lock().unwrap().push(key);
            }
            i += 1;
        }
        let keys = acked.lock().unwrap().clone();
        keys
    })
}

fn assert_all_readable(client: &Client, keys: &[Vec<u8>]) {
    let lost: Vec<&Vec<u8>> = keys
        .iter()
        .filter(|k| {
            let read = block_on(client.get(
                k.to_vec(),
                ReadOptions {
                    r: Some(2),
                    ..Default::default()
                },
            ))
            .unwrap();
            !read.values.iter().any(|v| &v.data == *k)
        })
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged keys lost",
        lost.len(),
        keys.len()
    );
}

#[test]
fn a_node_joining_and_leaving_under_load_loses_nothing() {
    let _one_cluster = serial();
    let mut cluster = Cluster::prepare(&["n1", "n2", "n3", "n4"]).unwrap();
    for name in ["n1", "n2", "n3"] {
        let seeds: Vec<_> = cluster.nodes.first().map(|n| n.addr).into_iter().collect();
        let node = cluster
            .spawn(name, ringkv_tests::free_port().unwrap(), &seeds, &[])
            .unwrap();
        cluster.nodes.push(node);
    }
    cluster.wait_alive(3, Duration::from_secs(20)).unwrap();
    let seed = cluster.nodes[0].addr;
    let client = cluster.client(0).unwrap();

    // Join under load.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = write_load(client.clone(), stop.clone(), "join");
    std::thread::sleep(Duration::from_secs(1));
    let n4 = cluster
        .spawn("n4", ringkv_tests::free_port().unwrap(), &[seed], &[])
        .unwrap();
    cluster.nodes.push(n4);
    cluster.wait_alive(4, Duration::from_secs(20)).unwrap();
    cluster
        .wait_members(0, Duration::from_secs(30), |rows| {
            rows.iter().any(|r| r.name == "n4" && r.status == "up")
        })
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let joined_keys = writer.join().unwrap();
    assert!(
        joined_keys.len() > 100,
        "the load ran: {}",
        joined_keys.len()
    );
    assert_all_readable(&client, &joined_keys);

    // n4 holds every key of its ranges (ownership transfer, hints and anti-entropy).
    let n4 = cluster.client(3).unwrap();
    let _in_runtime = runtime().enter();
    let mine: Vec<Vec<u8>> = joined_keys
        .iter()
        .filter(|k| block_on(n4.inspect(k.to_vec())).unwrap().replica)
        .cloned()
        .collect();
    assert!(!mine.is_empty());
    let missing = || {
        mine.iter()
            .filter(|k| {
                block_on(n4.inspect(k.to_vec()))
                    .unwrap()
                    .siblings
                    .is_empty()
            })
            .count()
    };
    let held = poll(Duration::from_secs(60), || (missing() == 0).then_some(()));
    assert!(
        held.is_some(),
        "n4 still lacks {} of its {} keys",
        missing(),
        mine.len()
    );

    // Leave under load: SIGTERM hands n4's data back before it exits.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = write_load(client.clone(), stop.clone(), "leave");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        cluster.nodes[3].terminate(Duration::from_secs(30)),
        "n4 did not leave in time"
    );
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let left_keys = writer.join().unwrap();
    let ring = block_on(client.ring()).unwrap();
    assert!(
        ring.nodes.iter().all(|(n, _, _)| n != "n4"),
        "n4 left the ring"
    );
    assert_all_readable(&client, &joined_keys);
    assert_all_readable(&client, &left_keys);
}
