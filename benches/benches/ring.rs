//! Ring micro-benchmarks: key lookup, full rebuild and diff.
//!
//! `cargo bench -p ringkv-bench --bench ring -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion};
use ringkv_ring::{token, Ring, RingConfig, RingNode};
use std::hint::black_box;

fn members(n: usize, zones: usize) -> Vec<RingNode> {
    (0..n)
        .map(|i| {
            let node = RingNode::new(format!("node-{i:04}"));
            if zones > 1 {
                node.in_zone(format!("zone-{}", i % zones))
            } else {
                node
            }
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let ring = Ring::new(members(64, 1), RingConfig::default());
    let keys: Vec<Vec<u8>> = (0..1024)
        .map(|i| format!("user:{i:08}").into_bytes())
        .collect();
    let mut group = c.benchmark_group("ring/lookup 64 nodes x 256 vnodes");
    let mut i = 0;
    group.bench_function("preference_list(key)", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(ring.preference_list(black_box(&keys[i])).len())
        })
    });
    let tokens: Vec<u64> = keys.iter().map(|k| token(k)).collect();
    group.bench_function("preference_list_for(token)", |b| {
        b.iter(|| {
            i = (i + 1) % tokens.len();
            black_box(ring.preference_list_for(black_box(tokens[i])).len())
        })
    });
    group.finish();
}

fn rebuild(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring/rebuild 1000 nodes x 256 vnodes");
    group.sample_size(10);
    for zones in [1, 3] {
        let nodes = members(1000, zones);
        // The old ring's drop is part of a real rebuild, so it is timed here...
        group.bench_function(format!("build+drop, {zones} zone(s)"), |b| {
            b.iter(|| Ring::new(nodes.iter().cloned(), RingConfig::default()))
        });
    }
    let nodes = members(1000, 1);
    // ...and left out here: the build alone.
    group.bench_function("build only, 1 zone(s)", |b| {
        b.iter_with_large_drop(|| Ring::new(nodes.iter().cloned(), RingConfig::default()))
    });
    group.finish();
}

fn diff(c: &mut Criterion) {
    let before = Ring::new(members(64, 1), RingConfig::default());
    let after = before.with_node(RingNode::new("joiner"));
    c.bench_function("ring/diff 64 -> 65 nodes x 256 vnodes", |b| {
        b.iter(|| black_box(before.diff(&after)).len())
    });
}

criterion_group!(benches, lookup, rebuild, diff);
criterion_main!(benches);
