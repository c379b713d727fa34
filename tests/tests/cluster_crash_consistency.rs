//! Crash consistency of the data directory: a node run with `--durability sync` under several
//! concurrent writers is SIGKILLed at random points, many times. At each restart the node must
//! start (never panic), and every write it acknowledged before the kill must be there.
//!
//! One node with N = W = 1 makes the claim exact: an acknowledgement means this node's store
//! synced the write, and no other replica could bring it back.
//!
//! The schedule is seeded: `RINGKV_CRASH_SEED=S` replays a run, `RINGKV_CRASH_CYCLES=C` sets
//! the number of kills (default 12).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use ringkv::client::RetryPolicy;
use ringkv::{Api, Client, ReadOptions, WriteOptions};
use ringkv_tests::{block_on, poll, runtime, serial, Cluster};
use tokio::sync::watch;

/// Concurrent writers, each with its own keys.
const WRITERS: usize = 6;
/// Keys per writer, overwritten in turn, so the check reads a bounded set.
const KEYS_PER_WRITER: usize = 24;
/// Bound on a restarted node joining itself and answering (not a speed check).
const WITHIN: Duration = Duration::from_secs(30);

/// The flags of every start: one replica, acknowledged once synced.
const FLAGS: &[&str] = &[
    "--n",
    "1",
    "--r",
    "1",
    "--w",
    "1",
    "--durability",
    "sync",
    "--on-signal",
    "stop",
];

/// Bytes of a value's header: the writer and the sequence number, in fixed-width decimal.
const HEADER: usize = 24;

/// The value a writer puts at its `seq`th write: a header naming the writer and sequence
/// number, then filler derived from it, so a torn or mixed-up value is caught, not just a
/// missing one. Sizes vary up to 24 KiB so small and large values are in flight at a kill.
fn value_of(writer: usize, seq: u64) -> Vec<u8> {
    let mut v = format!("{writer:04}:{seq:019}").into_bytes();
    let len = (seq.wrapping_mul(2_654_435_761) % (24 * 1024)) as usize;
    v.extend((0..len).map(|i| (seq as usize).wrapping_add(i) as u8));
    v
}

/// The sequence number `value` was written at, if it is a value `writer` wrote, whole.
fn seq_of(writer: usize, value: &[u8]) -> Option<u64> {
    let header = std::str::from_utf8(value.get(..HEADER)?).ok()?;
    let (w, seq) = header.split_once(':')?;
    let (w, seq): (usize, u64) = (w.parse().ok()?, seq.parse().ok()?);
    (w == writer && value_of(writer, seq) == value).then_some(seq)
}

fn key_of(writer: usize, k: usize) -> Vec<u8> {
    format!("crash/w{writer}/k{k}").into_bytes()
}

/// What one writer did: per key, the last sequence number acknowledged and the last one
/// attempted (a write in flight at the kill may or may not have landed).
#[derive(Default)]
struct Ledger {
    acked: HashMap<usize, u64>,
    attempted: HashMap<usize, u64>,
    /// Puts acknowledged.
    acks: usize,
}

/// Writes `writer`'s keys in turn until `stop` turns true (set right after the kill: a put
/// still waiting then is abandoned, not acknowledged), each put waiting for its
/// acknowledgement.
async fn write_until(
    client: Client,
    writer: usize,
    mut seq: u64,
    mut stop: watch::Receiver<bool>,
    acks: Arc<AtomicUsize>,
) -> (Ledger, u64) {
    let mut ledger = Ledger::default();
    while !*stop.borrow() {
        seq += 1;
        let k = (seq % KEYS_PER_WRITER as u64) as usize;
        ledger.attempted.insert(k, seq);
        let put = client.put(
            key_of(writer, k),
            value_of(writer, seq),
            WriteOptions::default(),
        );
        tokio::select! {
            put = put => match put {
                Ok(_) => {
                    ledger.acked.insert(k, seq);
                    ledger.acks += 1;
                    acks.fetch_add(1, Ordering::Relaxed);
                }
                // The node is gone: nothing more is acknowledged.
                Err(_) => break,
            },
            _ = stop.changed() => break,
        }
    }
    (ledger, seq)
}

/// Reads back `writer`'s acknowledged keys: each must hold exactly one value, written whole
/// at or after the acknowledged write and no later than the last one attempted.
async fn check(
    client: Client,
    writer: usize,
    floor: HashMap<usize, u64>,
    ceiling: HashMap<usize, u64>,
) -> Result<(), String> {
    for (k, acked) in floor {
        let read = client
            .get(key_of(writer, k), ReadOptions::default())
            .await
            .map_err(|e| format!("reading w{writer}/k{k}: {e}"))?;
        let found: Vec<Option<u64>> = read
            .values
            .iter()
            .map(|v| seq_of(writer, &v.data))
            .collect();
        let last = ceiling.get(&k).copied().unwrap_or(acked);
        if !matches!(found.as_slice(), [Some(s)] if *s >= acked && *s <= last) {
            return Err(format!(
                "key w{writer}/k{k} acknowledged at write {acked} (last attempted {last}) reads \
                 back as {found:?}"
            ));
        }
    }
    Ok(())
}

/// Whatever happened at a start, the node's log holds no panic.
fn assert_no_panic(cluster: &Cluster, seed: u64, cycle: usize) {
    let log = cluster.log("n1");
    assert!(
        !log.contains("panicked"),
        "seed {seed}, cycle {cycle}: the node panicked:\n{log}"
    );
}

#[test]
fn writes_acknowledged_under_sync_durability_survive_sigkill() {
    let _serial = serial();
    let seed = std::env::var("RINGKV_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(17)
        });
    let cycles: usize = std::env::var("RINGKV_CRASH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    eprintln!("crash consistency: seed {seed} (RINGKV_CRASH_SEED={seed} replays), {cycles} kills");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);

    let mut cluster = Cluster::start_with(1, FLAGS).unwrap();
    // Per writer and key: the last acknowledged sequence number (the floor a read must meet)
    // and the last attempted (the ceiling).
    let mut floor: Vec<HashMap<usize, u64>> = vec![HashMap::new(); WRITERS];
    let mut ceiling: Vec<HashMap<usize, u64>> = vec![HashMap::new(); WRITERS];
    let mut seqs = [0u64; WRITERS];
    let mut acked_total = 0usize;

    for cycle in 0..cycles {
        let tls = ringkv::net::TlsMaterial::load_client(&cluster.certs()).unwrap();
        let (stop, stopped) = watch::channel(false);
        let acks = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let _in_runtime = runtime().enter();
                let client = Client::connect(cluster.nodes[0].addr, &tls)
                    .unwrap()
                    .with_retry(RetryPolicy::none());
                runtime().spawn(write_until(
                    client,
                    w,
                    seqs[w],
                    stopped.clone(),
                    acks.clone(),
                ))
            })
            .collect();

        // Kill at a random point once writes flow (the first acknowledgement), up to well
        // into the run.
        let flowing = poll(WITHIN, || (acks.load(Ordering::Relaxed) > 0).then_some(()));
        assert!(
            flowing.is_some(),
            "seed {seed}, cycle {cycle}: no write acknowledged"
        );
        let at = Duration::from_millis(rng.random_range(0..1500));
        std::thread::sleep(at);
        cluster.nodes[0].kill();
        let _ = stop.send(true);
        let acked_before = acked_total;
        for (w, handle) in writers.into_iter().enumerate() {
            let (ledger, last) = block_on(handle).unwrap();
            seqs[w] = last;
            acked_total += ledger.acks;
            floor[w].extend(ledger.acked);
            ceiling[w].extend(ledger.attempted);
        }

        let restarting = std::time::Instant::now();
        cluster.restart_with(0, &[], FLAGS).unwrap();
        if cluster.wait_alive(1, WITHIN).is_err() {
            assert_no_panic(&cluster, seed, cycle);
            panic!(
                "seed {seed}, cycle {cycle} (killed after {at:?}): the node did not start again:\n{}",
                cluster.log("n1")
            );
        }
        assert_no_panic(&cluster, seed, cycle);
        let started = restarting.elapsed();

        let client = cluster.client(0).unwrap().with_retry(RetryPolicy::none());
        let checks: Vec<_> = (0..WRITERS)
            .map(|w| {
                runtime().spawn(check(
                    client.clone(),
                    w,
                    floor[w].clone(),
                    ceiling[w].clone(),
                ))
            })
            .collect();
        for handle in checks {
            if let Err(e) = block_on(handle).unwrap() {
                panic!("seed {seed}, cycle {cycle} (killed after {at:?}): {e}");
            }
        }
        eprintln!(
            "cycle {cycle}: killed {at:?} after the first acknowledgement, {} writes acknowledged, restarted in \
             {started:?}, checked in {:?}",
            acked_total - acked_before,
            restarting.elapsed() - started
        );
    }
    assert!(
        acked_total > WRITERS * cycles,
        "seed {seed}: only {acked_total} acknowledged writes over {cycles} kills: the test \
         did not exercise the store"
    );
}
