//! Scale mode: the same world running membership alone for many nodes, to measure how fast
//! a join storm converges (every node sees every other alive, every ring identical), what
//! each node sends per second during the storm and once quiet, how long failure detection
//! takes, and whether 1 % datagram loss makes nodes suspect or declare down live members.

use std::collections::BTreeSet;

use ringkv::config::CoreConfig;
use ringkv_gossip::{GossipConfig, MemberState, NodeStatus};

use super::config::NetConfig;
use super::node::{addr_of, NodeState, Process};
use super::rng::{SimRng, Stream};
use super::world::{Mode, SimError, World, WorldConfig};

const SEC: u64 = 1_000_000;

/// Every node starts within this long of the first.
const JOIN_SPREAD_US: u64 = 5 * SEC;

/// Longest gap between two starts.
const MAX_START_GAP_US: u64 = 5_000;

/// The join-storm load is measured from the first start until this long after the last.
const STORM_TAIL_US: u64 = 10 * SEC;

/// Datagram loss while false suspicions are counted.
const LOSS: f64 = 0.01;

/// Figures of one scale run.
#[derive(Clone, Debug)]
pub struct ScaleReport {
    /// Cluster size.
    pub nodes: usize,
    /// Simulated time from the first start to the last.
    pub last_join_us: u64,
    /// Simulated time from the last start until every node saw every other alive, if that
    /// happened within the bound (resolution: [`Self::check_every_us`]).
    pub formed_after_us: Option<u64>,
    /// Simulated time from the last start until every node's ring (itself and every member
    /// it knows of, as the node core builds it) was identical, if within the bound.
    pub rings_after_us: Option<u64>,
    /// How often convergence was checked, simulated microseconds.
    pub check_every_us: u64,
    /// Share of the `n × (n - 1)` "a sees b alive" pairs that held when forming stopped.
    pub known_alive: f64,
    /// Datagrams and bytes each node sent per simulated second from the first start until
    /// [`STORM_TAIL_US`] after the last.
    pub storm: Load,
    /// Datagrams and bytes each node sent per simulated second over a quiet window once the
    /// cluster formed.
    pub quiet: Load,
    /// Per survivor, how long after the crash it declared the victim down (sorted);
    /// survivors that never did are missing.
    pub detection_us: Vec<u64>,
    /// Survivors.
    pub survivors: usize,
    /// Simulated time 1 % datagram loss was on after detection.
    pub loss_window_us: u64,
    /// Distinct `(observer, member)` pairs in which a running node held another running node
    /// suspect at some check during the loss window.
    pub false_suspicions: usize,
    /// `Down` events for running nodes during the loss window.
    pub false_downs: usize,
    /// Events handled.
    pub events: u64,
}

/// What each node sent per simulated second over a window.
#[derive(Clone, Copy, Debug, Default)]
pub struct Load {
    /// Datagrams per node per second.
    pub datagrams: f64,
    /// Bytes per node per second.
    pub bytes: f64,
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

/// How long a scale run may wait for each phase.
#[derive(Clone, Copy, Debug)]
pub struct ScaleLimits {
    /// Bound on forming after the last join, simulated microseconds.
    pub form_us: u64,
    /// Quiet window over which the load is measured, simulated microseconds.
    pub measure_us: u64,
    /// How long after the crash detection is awaited, simulated microseconds.
    pub detect_us: u64,
    /// How long 1 % loss stays on while false suspicions are counted, simulated microseconds.
    pub loss_us: u64,
    /// Print each phase's figures to stderr as it ends (long runs may be cut short).
    pub progress: bool,
}

impl Default for ScaleLimits {
    fn default() -> Self {
        Self {
            form_us: 180 * SEC,
            measure_us: 10 * SEC,
            detect_us: 30 * SEC,
            loss_us: 60 * SEC,
            progress: false,
        }
    }
}

/// Forms a membership-only cluster of `nodes` (all starting within 5 s), measures how it
/// converges and its load during the storm and once quiet, crashes one node and measures
/// how long every survivor takes to declare it down, then turns 1 % datagram loss on and
/// counts suspicions and down declarations of running nodes.
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
            net: NetConfig {
                loss: LOSS,
                ..NetConfig::default()
            },
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
    let gap = (JOIN_SPREAD_US / nodes.max(1) as u64).clamp(1, MAX_START_GAP_US);
    for i in 0..nodes {
        if i > 0 {
            run_for(&mut world, gap);
        }
        world.start(i)?;
    }
    let last_join_us = world.now_us();
    // A check costs n² (every node lists every member).
    let check_every_us = match nodes {
        0..=100 => SEC / 4,
        101..=1000 => SEC,
        _ => 2 * SEC,
    };
    let storm_end = last_join_us + STORM_TAIL_US;
    let mut storm = None;
    let mut formed_after_us = None;
    let mut rings_after_us = None;
    let mut known_alive;
    loop {
        let view = view(&world);
        known_alive = view.alive_share;
        let since = world.now_us() - last_join_us;
        if formed_after_us.is_none() && view.alive_share >= 1.0 {
            formed_after_us = Some(since);
        }
        if rings_after_us.is_none() && view.rings_identical {
            rings_after_us = Some(since);
        }
        let done = formed_after_us.is_some() && rings_after_us.is_some();
        if storm.is_none() && world.now_us() >= storm_end {
            storm = Some(load(&world, 0, 0, world.now_us(), nodes));
        }
        if (done && storm.is_some()) || since >= limits.form_us {
            break;
        }
        let step = if done {
            storm_end.saturating_sub(world.now_us())
        } else {
            check_every_us
        };
        run_for(&mut world, step.max(1));
    }
    let storm = storm.unwrap_or_else(|| load(&world, 0, 0, world.now_us(), nodes));
    if limits.progress {
        eprintln!(
            "{nodes} nodes: last join at {last_join_us} us; all alive after {formed_after_us:?} us, \
             rings identical after {rings_after_us:?} us ({:.4} of pairs); storm {storm:?}",
            known_alive
        );
    }

    let (datagrams, bytes) = (world.stats().datagrams, world.stats().datagram_bytes);
    run_for(&mut world, limits.measure_us);
    let quiet = load(&world, datagrams, bytes, limits.measure_us, nodes);
    if limits.progress {
        eprintln!("{nodes} nodes: quiet {quiet:?}");
    }

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
    if limits.progress {
        let at = |q: f64| detection_us.get(((detection_us.len().max(1) - 1) as f64 * q) as usize);
        eprintln!(
            "{nodes} nodes: detected by {} of {}; p50 {:?} p99 {:?} max {:?} us",
            detection_us.len(),
            nodes - 1,
            at(0.5),
            at(0.99),
            detection_us.last()
        );
    }

    // Loss: every suspicion or down declaration of a running node is false.
    world.stats_mut().down_log = Some(Vec::new());
    world.net.loss = true;
    let loss_started = world.now_us();
    let mut suspected = BTreeSet::new();
    while world.now_us() - loss_started < limits.loss_us {
        run_for(&mut world, check_every_us);
        suspected.extend(suspicions(&world, &victim_name));
    }
    world.net.loss = false;
    let false_downs = world
        .stats()
        .down_log
        .iter()
        .flatten()
        .filter(|(_, _, name)| *name != victim_name)
        .count();
    Ok(ScaleReport {
        nodes,
        last_join_us,
        formed_after_us,
        rings_after_us,
        check_every_us,
        known_alive,
        storm,
        quiet,
        detection_us,
        survivors: nodes.saturating_sub(1),
        loss_window_us: world.now_us() - loss_started,
        false_suspicions: suspected.len(),
        false_downs,
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

/// Per node and second, what was sent since the counters read `datagrams` and `bytes`.
fn load(world: &World, datagrams: u64, bytes: u64, window_us: u64, nodes: usize) -> Load {
    let per = nodes.max(1) as f64 * (window_us.max(1) as f64 / SEC as f64);
    Load {
        datagrams: (world.stats().datagrams - datagrams) as f64 / per,
        bytes: (world.stats().datagram_bytes - bytes) as f64 / per,
    }
}

/// What the running nodes see, together.
struct View {
    /// The share of ordered pairs of running nodes `(a, b)` where `a` sees `b` alive.
    alive_share: f64,
    /// Whether every running node's ring holds the same members.
    rings_identical: bool,
}

fn view(world: &World) -> View {
    let mut running = 0usize;
    let mut seen = 0usize;
    let mut ring: Option<Vec<String>> = None;
    let mut rings_identical = true;
    for n in world.nodes() {
        let Some(Process::Gossip(m)) = &n.process else {
            continue;
        };
        if n.state != NodeState::Running {
            continue;
        }
        running += 1;
        let members = m.members();
        seen += members
            .iter()
            .filter(|i| i.state == MemberState::Alive)
            .count();
        if !rings_identical {
            continue;
        }
        // As the node core builds its ring: itself and every known member not leaving.
        let mut names: Vec<String> = members
            .into_iter()
            .filter(|i| i.status != NodeStatus::Leaving)
            .map(|i| i.id.name)
            .collect();
        names.push(n.name.clone());
        names.sort_unstable();
        match &ring {
            None => ring = Some(names),
            Some(first) => rings_identical = *first == names,
        }
    }
    let alive_share = if running < 2 {
        1.0
    } else {
        seen as f64 / (running * (running - 1)) as f64
    };
    View {
        alive_share,
        rings_identical,
    }
}

/// `(observer, member)` pairs of running nodes where the observer holds the member suspect.
fn suspicions(world: &World, crashed: &str) -> Vec<(usize, String)> {
    let mut pairs = Vec::new();
    for (i, n) in world.nodes().iter().enumerate() {
        let Some(Process::Gossip(m)) = &n.process else {
            continue;
        };
        if n.state != NodeState::Running {
            continue;
        }
        for member in m.members() {
            if member.state == MemberState::Suspect && member.id.name != crashed {
                pairs.push((i, member.id.name));
            }
        }
    }
    pairs
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
            loss_us: 2 * SEC,
            progress: false,
        };
        let report = scale(12, 3, GossipConfig::lan(), limits).unwrap();
        assert!(report.formed_after_us.is_some());
        assert!(report.rings_after_us.is_some());
        assert!(report.known_alive >= 1.0);
        assert_eq!(report.detection_us.len(), report.survivors);
        assert!(report.quiet.datagrams > 0.0);
        assert!(report.quiet.bytes >= report.quiet.datagrams);
        assert!(report.storm.datagrams > 0.0);
        assert!(report.detection_quantile(0.5) <= report.detection_quantile(1.0));
    }
}
