//! How long a `FjallStore::put` takes while another thread syncs the store whenever puts
//! are waiting, as the node's group-commit task does under `Durability::Sync`, against puts
//! with no sync running.
//!
//! The node's core calls `put` on its event loop; if a put waits for a sync in progress, the
//! whole node (gossip, heartbeats, every request) waits as long as that fsync.
//!
//! `cargo run --release -p ringkv-bench --example put_during_sync [SECONDS] [DIR]`
//! (default 5 s per phase, in a temporary directory under DIR, default the system's).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringkv::store::{FjallStore, Store};
use ringkv_ring::token;

const VALUE: [u8; 100] = [0xab; 100];
/// Pause between puts: about 5,000 puts/s, the order of a loaded node.
const PUT_GAP: Duration = Duration::from_micros(200);
/// How often the syncer looks for new puts.
const SYNC_POLL: Duration = Duration::from_micros(50);

fn main() {
    let mut args = std::env::args().skip(1);
    let secs = args.next().and_then(|s| s.parse().ok()).unwrap_or(5u64);
    let parent = args.next().map_or_else(std::env::temp_dir, Into::into);
    let dir = match tempfile::tempdir_in(&parent) {
        Ok(dir) => dir,
        Err(e) => return eprintln!("cannot create a directory in {}: {e}", parent.display()),
    };
    let store = match FjallStore::open(dir.path()) {
        Ok(store) => Arc::new(store),
        Err(e) => return eprintln!("cannot open a store: {e}"),
    };
    let run = Duration::from_secs(secs);
    println!("| phase | puts | put p50 / p99 / p999 / max | puts over 1 ms | syncs | sync p50 / p99 / max |");
    println!("|---|---|---|---|---|---|");
    let (puts, _) = phase(&store, run, false);
    row("puts alone", &puts, &[]);
    let (puts, syncs) = phase(&store, run, true);
    row("puts with a group commit syncing them", &puts, &syncs);
}

/// Puts for `run`, with a thread syncing back to back when `sync`; the latencies of both.
fn phase(store: &Arc<FjallStore>, run: Duration, sync: bool) -> (Vec<Duration>, Vec<Duration>) {
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let syncer = sync.then(|| {
        let (store, stop, written) = (store.clone(), stop.clone(), written.clone());
        std::thread::spawn(move || {
            let mut took = Vec::new();
            let mut synced = 0;
            while !stop.load(Ordering::Relaxed) {
                // Like the group commit: one sync covers every put made since the last one.
                let now = written.load(Ordering::Relaxed);
                if now == synced {
                    std::thread::sleep(SYNC_POLL);
                    continue;
                }
                synced = now;
                let t = Instant::now();
                if let Err(e) = store.sync() {
                    eprintln!("sync failed: {e}");
                    break;
                }
                took.push(t.elapsed());
            }
            took
        })
    });
    let mut puts = Vec::new();
    let end = Instant::now() + run;
    let mut i = 0u64;
    while Instant::now() < end {
        let key = format!("user:{i:012}").into_bytes();
        i += 1;
        let t = Instant::now();
        if let Err(e) = store.put(token(&key), &key, &VALUE) {
            eprintln!("put failed: {e}");
            break;
        }
        puts.push(t.elapsed());
        written.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(PUT_GAP);
    }
    stop.store(true, Ordering::Relaxed);
    let syncs = syncer.and_then(|h| h.join().ok()).unwrap_or_default();
    (puts, syncs)
}

fn row(phase: &str, puts: &[Duration], syncs: &[Duration]) {
    let slow = puts
        .iter()
        .filter(|d| **d > Duration::from_millis(1))
        .count();
    let (p, s) = (quantiles(puts), quantiles(syncs));
    let s = if syncs.is_empty() {
        "-".to_string()
    } else {
        format!("{} / {} / {}", s[0], s[1], s[3])
    };
    println!(
        "| {phase} | {} | {} / {} / {} / {} | {slow} | {} | {s} |",
        puts.len(),
        p[0],
        p[1],
        p[2],
        p[3],
        syncs.len()
    );
}

/// p50, p99, p999 and max, formatted.
fn quantiles(xs: &[Duration]) -> [String; 4] {
    let mut xs = xs.to_vec();
    xs.sort_unstable();
    let at = |q: f64| {
        let i = ((xs.len() as f64 * q) as usize).min(xs.len().saturating_sub(1));
        xs.get(i).map_or("-".into(), |d| fmt(*d))
    };
    [
        at(0.5),
        at(0.99),
        at(0.999),
        xs.last().map_or("-".into(), |d| fmt(*d)),
    ]
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}
