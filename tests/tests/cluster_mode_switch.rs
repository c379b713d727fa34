//! Switching a prefix from quorum mode to primary mode and back while writers keep writing
//! loses no acknowledged write: at the end every key reads (R=2) its last acknowledged value,
//! or a later one whose write failed but may have landed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringkv::table::{Mode, PrimaryOptions, SyncReplicas};
use ringkv::{Api, Client, ReadOptions, WriteOptions};
use ringkv_tests::{block_on, poll, runtime, serial, Cluster};

const WRITERS: usize = 4;
const KEYS_PER_WRITER: usize = 8;
const WITHIN: Duration = Duration::from_secs(20);
/// Load in each mode.
const PHASE: Duration = Duration::from_secs(3);

/// Per key of one writer: the last acknowledged value and the last one tried.
type Outcome = BTreeMap<String, (Option<u64>, u64)>;

/// Write increasing values round the writer's own keys until `stop` (W=2 in quorum mode).
async fn write_keys(w: usize, client: Client, stop: Arc<AtomicBool>) -> Outcome {
    let keys: Vec<String> = (0..KEYS_PER_WRITER)
        .map(|k| format!("ms:w{w}:k{k}"))
        .collect();
    let mut outcome = Outcome::new();
    let mut value = 0u64;
    while !stop.load(Ordering::Relaxed) {
        value += 1;
        let key = &keys[value as usize % keys.len()];
        let opts = WriteOptions {
            w: Some(2),
            context: None,
        };
        let put = client.put(
            key.as_bytes().to_vec(),
            value.to_string().into_bytes(),
            opts,
        );
        let acked = matches!(
            tokio::time::timeout(Duration::from_secs(3), put).await,
            Ok(Ok(_))
        );
        let entry = outcome.entry(key.clone()).or_insert((None, 0));
        entry.1 = value;
        if acked {
            entry.0 = Some(value);
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    outcome
}

/// The value a quorum read of `key` returns (the highest, should siblings remain).
fn read(client: &Client, key: &str) -> Option<u64> {
    let opts = ReadOptions {
        r: Some(2),
        wait_repair: true,
        ..ReadOptions::default()
    };
    let read = block_on(client.get(key.as_bytes().to_vec(), opts)).ok()?;
    read.values
        .iter()
        .filter_map(|v| std::str::from_utf8(&v.data).ok()?.parse().ok())
        .max()
}

#[test]
fn switching_a_prefix_to_primary_and_back_under_load_loses_no_acknowledged_write() {
    let _serial = serial();
    let mut cluster = Cluster::start(3).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let client = cluster.client(w % 3).unwrap();
            runtime().spawn(write_keys(w, client, stop.clone()))
        })
        .collect();

    std::thread::sleep(PHASE);
    let primary = Mode::Primary(PrimaryOptions {
        sync: SyncReplicas::Majority,
        ..PrimaryOptions::default()
    });
    cluster.set_mode(1, "ms:", primary, WITHIN).unwrap();
    std::thread::sleep(PHASE);
    let in_primary = cluster.primary_of("ms:w0:k0").is_some();
    cluster.set_mode(2, "ms:", Mode::Quorum, WITHIN).unwrap();
    std::thread::sleep(PHASE);
    stop.store(true, Ordering::Relaxed);
    let outcomes: Vec<Outcome> = tasks
        .into_iter()
        .map(|t| block_on(t).expect("writer task"))
        .collect();
    assert!(in_primary, "the prefix never ran in primary mode");

    let reader = cluster.client(0).unwrap();
    let expected: Vec<(&String, u64, u64)> = outcomes
        .iter()
        .flatten()
        .filter_map(|(key, (acked, tried))| acked.map(|a| (key, a, *tried)))
        .collect();
    assert_eq!(
        expected.len(),
        WRITERS * KEYS_PER_WRITER,
        "every key had an acknowledged write"
    );
    // Replicas converge by read repair and anti-entropy: allow them a bounded while.
    let mut lost = Vec::new();
    poll(WITHIN, || {
        lost = expected
            .iter()
            .filter_map(|(key, acked, tried)| {
                let seen = read(&reader, key);
                let ok = seen.is_some_and(|v| (*acked..=*tried).contains(&v));
                (!ok).then(|| {
                    format!("{key}: acknowledged {acked} (tried up to {tried}), reads {seen:?}")
                })
            })
            .collect();
        lost.is_empty().then_some(())
    });
    if !lost.is_empty() {
        // What each replica holds of the first lost key: its siblings and their dots.
        let key = lost[0].split(": ").next().unwrap_or_default().to_string();
        let held: Vec<String> = (0..3)
            .map(|i| {
                let inspect = cluster
                    .client(i)
                    .map(|c| block_on(c.inspect(key.as_bytes().to_vec())));
                format!("{}: {inspect:?}", cluster.nodes[i].name)
            })
            .collect();
        panic!(
            "acknowledged writes lost:\n{}\n{key} on each replica:\n{}",
            lost.join("\n"),
            held.join("\n")
        );
    }
}
