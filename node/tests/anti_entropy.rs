//! Anti-entropy end to end: a replica that missed writes while stopped gets them from a
//! repair round, without any read or write of those keys.

mod cluster_common;

use std::time::{Duration, Instant};

use cluster_common::{certs, count_missing, free_port, start, wait_alive, wait_none_missing};
use ringkv::config::CoreConfig;
use ringkv::{Api, ReadOptions, WriteOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_round_brings_a_replica_that_missed_writes_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path(), &["n1", "n2", "n3"]);
    // Hints off: only anti-entropy can bring n3 up to date here.
    let mut config = CoreConfig::default();
    config.hints.sloppy_quorum = false;
    let data = dir.path();
    let ports = [free_port(), free_port(), free_port()];
    let n1 = start(&certs, data, "n1", ports[0], None, config.clone()).await;
    let n2 = start(
        &certs,
        data,
        "n2",
        ports[1],
        Some(n1.addr()),
        config.clone(),
    )
    .await;
    let n3 = start(
        &certs,
        data,
        "n3",
        ports[2],
        Some(n1.addr()),
        config.clone(),
    )
    .await;
    wait_alive(&n1, 3).await;
    n3.shutdown().await.unwrap();

    let keys: Vec<Vec<u8>> = (0..200).map(|i| format!("key-{i}").into_bytes()).collect();
    for k in &keys {
        let opts = WriteOptions {
            w: Some(2),
            ..Default::default()
        };
        n1.put(k.clone(), b"v".to_vec(), opts).await.unwrap();
    }

    let n3 = start(&certs, data, "n3", ports[2], Some(n1.addr()), config).await;
    wait_alive(&n3, 3).await;
    // The pull a restarted node makes while joining may already have begun: some keys only.
    let missing = count_missing(&n3, &keys).await;
    assert!(missing > 0, "n3 was down for every write, yet misses none");

    let started = n3.repair().await.unwrap();
    assert!(started.running && started.total > 0, "{started:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = n3.status().await.unwrap();
        if !status.repair.running {
            assert!(status.exchanges > 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "repair round did not finish: {:?}",
            status.repair
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Pushed records land asynchronously; give the last ones a moment.
    let missing = wait_none_missing(&n3, &keys, Duration::from_secs(10)).await;
    assert_eq!(missing, 0, "every key reached n3 by anti-entropy");
    let read = n3
        .get(
            keys[0].clone(),
            ReadOptions {
                r: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(read.values[0].data, b"v");

    for node in [n1, n2, n3] {
        node.shutdown().await.unwrap();
    }
}
