//! Scale mode: the same world running membership alone for many nodes, to measure how long
//! failure detection takes and how many datagrams each node sends per second (SWIM promises
//! a load per node that does not grow with the cluster).

use ringkv::config::CoreConfig;
use ringkv_gossip::{GossipConfig, MemberState};

use super::config::NetConfig;
use super::node::{addr_of, NodeState, Process};
use super::rng::{SimRng, Stream};
use super::world::{Mode, SimError, World, WorldConfig};

const SEC: u64 = 1_000_000;

/// Figures of one scale run.
#[derive(Clone, Debug)]
pub struct ScaleReport {
    /// Cluster size.
    pub nodes: usize,
    /// Simulated time from the first start until every node saw every other alive, if
    /// that happened within the bound.
    pub formed_after_us: Option<u64>,
    /// Share of the `n × (n - 1)` "a sees b alive" pairs that held when forming stopped.
    pub known_alive: f64,
    /// Datagrams each node sent per simulated second, averaged over a quiet window.
    pub datagrams_per_node_per_sec: f64,
    /// Per survivor, how long after the crash it declared the victim down (sorted);
    /// survivors that never did are missing.
    pub detection_us: Vec<u64>,
    /// Survivors.
    pub survivors: usize,
    /// Events handled.
    pub events: u64,
}

impl ScaleReport {
    /// The detection time at quantile `q` (0..=1) among survivors that detected.
    pub fn detection_quantile(&self, q: f64) -> Option<u64> {
        if self.detection_us.is_empty() {
            return None;
        }
        let last = self.detection_us.len() - 1;
        let i = ((last as f64) * q.clamp(0.0, 1.0)).round() as usize;
        self.detection_us.get(i.min(last)).copied()
    }
}

/// How long a scale run may wait for the cluster to form, and for a crash to be detected.
#[derive(Clone, Copy, Debug)]
pub struct ScaleLimits {
    /// Bound on forming, simulated microseconds.
    pub form_us: u64,
    /// Quiet window over which the load is measured, simulated microseconds.
    pub measure_us: u64,
    /// How long after the crash detection is awaited, simulated microseconds.
    pub detect_us: u64,
}

impl Default for ScaleLimits {
    fn default() -> Self {
        Self {
            form_us: 180 * SEC,
            measure_us: 10 * SEC,
            detect_us: 30 * SEC,
        }
    }
}

/// Forms a membership-only cluster of `nodes`, measures its steady load, crashes one node
/// and measures how long every survivor takes to declare it down.
pub fn scale(
    nodes: usize,
    seed: u64,
    gossip: GossipConfig,
    limits: ScaleLimits,
) -> Result<ScaleReport, SimError> {
    let mut world = World::new(
        seed,
        WorldConfig {
            core: CoreConfig::default(),
            gossip,
            net: NetConfig::default(),
            mode: Mode::Gossip,
            trace_tail: 0,
            hash_payloads: false,
            table: None,
        },
    );
    let mut rng = SimRng::new(seed, Stream::Faults);
    for i in 0..nodes {
        // Each node joins through node 0 and one random earlier node.
        let mut seeds = vec![addr_of(0)];
        if i > 1 {
            seeds.push(addr_of(rng.index(i)));
        }
        world.add_node(seeds);
    }
    for i in 0..nodes {
        world.start(i)?;
        run_for(&mut world, 5_000);
    }
    let mut formed_after_us = None;
    // A check costs n² (every node lists every member): every second for small clusters,
    // every five beyond a hundred nodes.
    let every = if nodes > 100 { 5 * SEC } else { SEC / 4 };
    let mut known_alive = alive_share(&world);
    while world.now_us() < limits.form_us {
        run_for(&mut world, every);
        known_alive = alive_share(&world);
        if known_alive >= 1.0 {
            formed_after_us = Some(world.now_us());
            break;
        }
    }
    let before = world.stats().datagrams;
    run_for(&mut world, limits.measure_us);
    let sent = world.stats().datagrams - before;
    let secs = limits.measure_us as f64 / SEC as f64;
    let datagrams_per_node_per_sec = sent as f64 / nodes.max(1) as f64 / secs;

    let victim = rng.index(nodes);
    let victim_name = world.nodes()[victim].name.clone();
    world.stats_mut().down_log = Some(Vec::new());
    let crashed_at = world.now_us();
    world.crash(victim);
    run_for(&mut world, limits.detect_us);
    let mut first: Vec<Option<u64>> = vec![None; nodes];
    for (at, observer, name) in world.stats().down_log.iter().flatten() {
        if *name == victim_name && first[*observer].is_none() {
            first[*observer] = Some(at - crashed_at);
        }
    }
    let mut detection_us: Vec<u64> = first
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .filter_map(|(_, t)| *t)
        .collect();
    detection_us.sort_unstable();
    Ok(ScaleReport {
        nodes,
        formed_after_us,
        known_alive,
        datagrams_per_node_per_sec,
        detection_us,
        survivors: nodes.saturating_sub(1),
        events: world.stats().events,
    })
}

fn run_for(world: &mut World, us: u64) {
    let until = world.now_us() + us;
    while world.next_event_at().is_some_and(|t| t <= until) {
        world.step();
    }
    world.advance_to(until);
}

/// The share of ordered pairs of running nodes `(a, b)` where `a` sees `b` alive.
fn alive_share(world: &World) -> f64 {
    let running = world
        .nodes()
        .iter()
        .filter(|n| n.state == NodeState::Running)
        .count();
    if running < 2 {
        return 1.0;
    }
    let seen: usize = world
        .nodes()
        .iter()
        .filter(|n| n.state == NodeState::Running)
        .map(|n| match &n.process {
            Some(Process::Gossip(m)) => m
                .members()
                .iter()
                .filter(|i| i.state == MemberState::Alive)
                .count(),
            _ => 0,
        })
        .sum();
    seen as f64 / (running * (running - 1)) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_cluster_forms_and_detects_a_crash_everywhere() {
        let limits = ScaleLimits {
            form_us: 60 * SEC,
            measure_us: 2 * SEC,
            detect_us: 20 * SEC,
        };
        let report = scale(12, 3, GossipConfig::lan(), limits).unwrap();
        assert!(report.formed_after_us.is_some());
        assert!(report.known_alive >= 1.0);
        assert_eq!(report.detection_us.len(), report.survivors);
        assert!(report.datagrams_per_node_per_sec > 0.0);
        assert!(report.detection_quantile(0.5) <= report.detection_quantile(1.0));
    }
}
