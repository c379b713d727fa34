//! Store micro-benchmarks: puts and gets of 100-byte values on `FjallStore`, with group
//! commit (one fsync per 64 puts) and buffered (no fsync).
//!
//! `cargo bench -p ringkv-bench --bench store -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringkv::store::{FjallStore, Store};
use ringkv_ring::token;
use std::hint::black_box;
use std::path::Path;

/// Puts per group commit, as a group-commit loop would batch them.
const BATCH: u64 = 64;
const VALUE: [u8; 100] = [0xab; 100];
/// Keys preloaded for the get benchmark.
const PRELOADED: u64 = 100_000;

fn key(i: u64) -> Vec<u8> {
    format!("user:{i:012}").into_bytes()
}

/// A store on the same disk as the build (not a tmpfs), so fsync costs what it costs.
fn open(dir: &Path) -> FjallStore {
    match FjallStore::open(dir) {
        Ok(store) => store,
        Err(e) => panic!("cannot open a store in {}: {e}", dir.display()),
    }
}

fn tempdir() -> tempfile::TempDir {
    match tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")) {
        Ok(dir) => dir,
        Err(e) => panic!("cannot create a temporary directory: {e}"),
    }
}

fn put_batch(store: &FjallStore, next: &mut u64) {
    for _ in 0..BATCH {
        let k = key(*next);
        *next += 1;
        if let Err(e) = store.put(token(&k), &k, black_box(&VALUE)) {
            panic!("put failed: {e}");
        }
    }
}

fn puts(c: &mut Criterion) {
    let mut group = c.benchmark_group("store/fjall put 100 B");
    group.throughput(Throughput::Elements(BATCH));

    let dir = tempdir();
    let store = open(dir.path());
    let mut next = 0;
    group.bench_function("sync every 64 puts (group commit)", |b| {
        b.iter(|| {
            put_batch(&store, &mut next);
            if let Err(e) = store.sync() {
                panic!("sync failed: {e}");
            }
        })
    });
    drop(store);

    let dir = tempdir();
    let store = open(dir.path());
    let mut next = 0;
    group.bench_function("buffered (no sync)", |b| {
        b.iter(|| put_batch(&store, &mut next))
    });
    group.finish();
}

fn gets(c: &mut Criterion) {
    let dir = tempdir();
    let store = open(dir.path());
    let mut next = 0;
    while next < PRELOADED {
        put_batch(&store, &mut next);
    }
    if let Err(e) = store.sync() {
        panic!("sync failed: {e}");
    }
    let mut group = c.benchmark_group("store/fjall get 100 B, 100k keys");
    group.throughput(Throughput::Elements(1));
    // A fixed-seed LCG: a scattered but reproducible key order.
    let mut state: u64 = 0x5eed;
    group.bench_function("get (hit)", |b| {
        b.iter(|| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let k = key((state >> 33) % PRELOADED);
            match store.get(token(&k), &k) {
                Ok(v) => black_box(v),
                Err(e) => panic!("get failed: {e}"),
            }
        })
    });
    group.finish();
}

criterion_group!(benches, puts, gets);
criterion_main!(benches);
