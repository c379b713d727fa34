//! Ring balance and join movement at 256 vnodes (the default), and at 1024 for comparison.
//!
//! `cargo run --release -p ringkv-bench --example ring_balance`
//!
//! Prints, for 16 and 64 nodes: coordinator ownership max/mean and min/mean, replica share
//! max/mean, and the fraction of the key space (exact, and over 100,000 sampled keys) whose
//! coordinator changes when one node joins, next to the ideal 1/(n+1).

use ringkv_ring::{Ring, RingConfig, RingNode, TOKEN_SPACE};
use std::collections::BTreeMap;

const SAMPLED_KEYS: usize = 100_000;

fn spread(shares: &BTreeMap<String, f64>) -> (f64, f64) {
    let mean = shares.values().sum::<f64>() / shares.len() as f64;
    let max = shares.values().copied().fold(f64::MIN, f64::max);
    let min = shares.values().copied().fold(f64::MAX, f64::min);
    (max / mean, min / mean)
}

fn main() {
    for vnodes in [256, 1024] {
        report(RingConfig {
            vnodes,
            ..RingConfig::default()
        });
    }
}

fn report(config: RingConfig) {
    println!(
        "vnodes {}, replicas {}, {SAMPLED_KEYS} sampled keys",
        config.vnodes, config.replicas
    );
    println!(
        "{:>5} {:>13} {:>13} {:>15} {:>12} {:>14} {:>12} {:>15}",
        "nodes",
        "own max/mean",
        "own min/mean",
        "share max/mean",
        "ideal move",
        "moved (exact)",
        "moved (keys)",
        "replica moved"
    );
    for n in [16usize, 64] {
        let ring = Ring::new(
            (0..n).map(|i| RingNode::new(format!("node-{i:04}"))),
            config,
        );
        let (own_max, own_min) = spread(&ring.ownership());
        let (share_max, _) = spread(&ring.replica_share());

        let joined = ring.with_node(RingNode::new("joiner"));
        let exact = ring.primary_moved_fraction(&joined);
        let moved_keys = (0..SAMPLED_KEYS)
            .map(|i| format!("key:{i}").into_bytes())
            .filter(|key| ring.preference_list(key).first() != joined.preference_list(key).first())
            .count();
        // Replica copies the joiner must receive, as a fraction of all N copies of the data.
        let copied: u128 = ring
            .diff(&joined)
            .iter()
            .map(|m| m.len() * m.to.len() as u128)
            .sum();
        let replica_moved = copied as f64 / (TOKEN_SPACE as f64 * config.replicas as f64);

        println!(
            "{n:>5} {own_max:>13.3} {own_min:>13.3} {share_max:>15.3} {:>12.4} {exact:>14.4} {:>12.4} {replica_moved:>15.4}",
            1.0 / (n as f64 + 1.0),
            moved_keys as f64 / SAMPLED_KEYS as f64,
        );
    }
}
