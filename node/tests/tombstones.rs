//! Deletes end as nothing: once every replica holds a tombstone and the grace period passed,
//! each replica removes it, and the key stays deleted.

mod cluster_common;

use std::time::{Duration, Instant};

use cluster_common::start_three;
use ringkv::config::CoreConfig;
use ringkv::{Api, ReadOptions, WriteOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_held_by_every_replica_are_removed_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = CoreConfig::default();
    config.hints.max_age = Duration::from_millis(500);
    config.tombstone_grace = Duration::from_secs(1);
    let (_certs, [n1, n2, n3]) = start_three(dir.path(), config).await;

    let all = WriteOptions {
        w: Some(3),
        ..Default::default()
    };
    let keys: Vec<Vec<u8>> = (0..20).map(|i| format!("gone-{i}").into_bytes()).collect();
    for k in &keys {
        n1.put(k.clone(), b"v".to_vec(), all.clone()).await.unwrap();
        let seen = n2
            .get(
                k.clone(),
                ReadOptions {
                    r: Some(3),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let delete = WriteOptions {
            w: Some(3),
            context: Some(seen.context),
        };
        n2.delete(k.clone(), delete).await.unwrap();
    }
    // Right after the delete every replica holds the tombstone.
    let held = n3.inspect(keys[0].clone()).await.unwrap();
    assert!(!held.siblings.is_empty() && held.siblings.iter().all(|s| s.data.is_none()));

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut left = usize::MAX;
    while Instant::now() < deadline {
        left = 0;
        for node in [&n1, &n2, &n3] {
            for k in &keys {
                if !node.inspect(k.clone()).await.unwrap().siblings.is_empty() {
                    left += 1;
                }
            }
        }
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(left, 0, "tombstones left on some replica");
    for k in &keys {
        let read = n1
            .get(
                k.clone(),
                ReadOptions {
                    r: Some(3),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(read.values.is_empty(), "a deleted key came back");
    }
    let total: u64 = {
        let mut t = 0;
        for n in [&n1, &n2, &n3] {
            t += n.status().await.unwrap().tombstones_reaped;
        }
        t
    };
    // At least once each: anti-entropy may copy a tombstone back to a replica that already
    // removed it, before the last replica removes its own; that copy is removed again.
    assert!(
        total >= 3 * keys.len() as u64,
        "each replica removed each tombstone: {total}"
    );
    for node in [n1, n2, n3] {
        node.shutdown().await.unwrap();
    }
}
