use ringkv_ring::{Ring, RingConfig, RingNode};
use std::time::Instant;
fn main() {
    let nodes: Vec<RingNode> = (0..1000)
        .map(|i| RingNode::new(format!("node-{i:04}")))
        .collect();
    for _ in 0..30 {
        let t = Instant::now();
        let r = Ring::new(nodes.iter().cloned(), RingConfig::default());
        let built = t.elapsed();
        drop(r);
        eprintln!("BUILD {} {}", built.as_micros(), t.elapsed().as_micros());
    }
}
