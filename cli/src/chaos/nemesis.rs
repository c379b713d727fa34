//! The nemesis: a seeded schedule of faults, its text form (printed at the start, replayed
//! with `--schedule`), and the actions that apply and heal each fault on the local cluster.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use serde::Serialize;

/// Most events a schedule may hold (a replayed one included).
pub const MAX_EVENTS: usize = 10_000;
/// Largest clock shift the nemesis applies, either way.
pub const MAX_CLOCK_SHIFT_MS: i64 = 30_000;
/// Largest sync delay the nemesis applies.
pub const MAX_DISK_DELAY_MS: u64 = 2_000;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL, then restart from the same data directory.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// Cut nodes off from the rest (symmetric or one-way), then heal.
    Partition,
    /// Shift nodes' clocks, then set them right.
    Clock,
    /// Delay nodes' fsyncs, then stop delaying.
    SlowDisk,
}

impl FaultKind {
    /// Every kind, in schedule order.
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Clock,
        FaultKind::SlowDisk,
    ];

    /// The kind's name, as `--faults` and schedules spell it.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Clock => "clock",
            FaultKind::SlowDisk => "slow-disk",
        }
    }
}

/// Which way a partition cuts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Nothing crosses.
    Both,
    /// The cut-off nodes hear nothing from the rest.
    In,
    /// Nothing the cut-off nodes send reaches the rest.
    Out,
}

/// One fault: what, on which nodes, from when, for how long.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// Seconds from the start of the workload.
    pub at: f64,
    /// Seconds until it heals.
    pub duration: f64,
    /// The fault.
    pub kind: FaultKind,
    /// Node indexes (0-based; printed as n1, n2, ...).
    pub nodes: Vec<usize>,
    /// Partition direction (partitions only).
    pub direction: Option<Direction>,
    /// Clock shift in ms (clock) or sync delay in ms (slow-disk).
    pub amount: Option<i64>,
}

impl Event {
    /// The nodes' names.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|i| format!("n{}", i + 1)).collect()
    }

    /// A short label: `partition-in n2,n3`, `clock +3000ms n1`.
    pub fn label(&self) -> String {
        let mut s = self.kind.name().to_string();
        match (self.direction, self.amount) {
            (Some(Direction::In), _) => s.push_str("-in"),
            (Some(Direction::Out), _) => s.push_str("-out"),
            (_, Some(a)) if self.kind == FaultKind::Clock => s.push_str(&format!(" {a:+}ms")),
            (_, Some(a)) => s.push_str(&format!(" {a}ms")),
            _ => {}
        }
        format!("{s} {}", self.node_names().join(","))
    }
}

impl fmt::Display for Event {
    /// `AT+DURATION:KIND:NODES[:ARG]`, e.g. `4.5+3.2:partition:n2,n3:in`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.1}+{:.1}:{}:{}",
            self.at,
            self.duration,
            self.kind.name(),
            self.node_names().join(",")
        )?;
        match (self.direction, self.amount) {
            (Some(Direction::Both), _) => write!(f, ":both"),
            (Some(Direction::In), _) => write!(f, ":in"),
            (Some(Direction::Out), _) => write!(f, ":out"),
            (None, Some(a)) => write!(f, ":{a}"),
            (None, None) => Ok(()),
        }
    }
}

/// The faults of one run, in start order.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Schedule {
    /// The events.
    pub events: Vec<Event>,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.events.is_empty() {
            return write!(f, "none");
        }
        let parts: Vec<String> = self.events.iter().map(ToString::to_string).collect();
        write!(f, "{}", parts.join(";"))
    }
}

/// What a schedule is generated for.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Seconds of workload.
    pub duration: f64,
    /// Kinds of fault to use.
    pub kinds: Vec<FaultKind>,
    /// Most nodes faulted at once.
    pub max_faulted: usize,
}

impl Schedule {
    /// A schedule drawn from `seed`: faults start after a quiet first tenth (the baseline)
    /// and end before the last fifth (recovery is measured there), each lasting 2 to 6 s,
    /// overlapping as long as at most `max_faulted` nodes are faulted at once; the kinds
    /// take turns.
    pub fn generate(plan: &Plan, seed: u64) -> Schedule {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut events: Vec<Event> = Vec::new();
        if plan.kinds.is_empty() || plan.nodes == 0 || plan.max_faulted == 0 {
            return Schedule { events };
        }
        let first = (plan.duration * 0.1).max(2.0);
        let last = plan.duration * 0.8;
        let mut at = first;
        let first_kind = rng.random_range(0..plan.kinds.len());
        while events.len() < MAX_EVENTS {
            let duration = round(rng.random_range(2.0..6.0));
            if at + duration > last {
                break;
            }
            let busy: BTreeSet<usize> = events
                .iter()
                .filter(|e| e.at < at + duration && at < e.at + e.duration)
                .flat_map(|e| e.nodes.iter().copied())
                .collect();
            let room = plan.max_faulted.saturating_sub(busy.len());
            if room > 0 {
                // Round robin from a random start: every kind comes up, even in a short run.
                let kind = plan.kinds[(first_kind + events.len()) % plan.kinds.len()];
                let count = match kind {
                    FaultKind::Partition => rng.random_range(1..=room),
                    _ => 1,
                };
                let mut free: Vec<usize> = (0..plan.nodes).filter(|n| !busy.contains(n)).collect();
                let mut nodes = Vec::with_capacity(count);
                while nodes.len() < count && !free.is_empty() {
                    nodes.push(free.swap_remove(rng.random_range(0..free.len())));
                }
                nodes.sort_unstable();
                let (direction, amount) = match kind {
                    FaultKind::Partition => {
                        let d = [Direction::Both, Direction::In, Direction::Out];
                        (Some(d[rng.random_range(0..3)]), None)
                    }
                    FaultKind::Clock => {
                        let shift = rng.random_range(1_000..=MAX_CLOCK_SHIFT_MS);
                        let sign = if rng.random_bool(0.5) { 1 } else { -1 };
                        (None, Some(sign * shift))
                    }
                    FaultKind::SlowDisk => (None, Some(rng.random_range(50..=200) * 10)),
                    FaultKind::Kill | FaultKind::Pause => (None, None),
                };
                events.push(Event {
                    at,
                    duration,
                    kind,
                    nodes,
                    direction,
                    amount,
                });
            }
            at = round(at + rng.random_range(0.5..3.0));
        }
        Schedule { events }
    }

    /// Checks a replayed schedule against the cluster: nodes exist, and at most
    /// `max_faulted` of them are faulted at once.
    pub fn check(&self, nodes: usize, max_faulted: usize) -> Result<(), String> {
        for e in &self.events {
            if let Some(n) = e.nodes.iter().find(|n| **n >= nodes) {
                return Err(format!(
                    "{e}: node n{} is not in a {nodes}-node cluster",
                    n + 1
                ));
            }
            // The faulted set only grows when an event starts: checking each start suffices.
            let faulted: BTreeSet<usize> = self
                .events
                .iter()
                .filter(|o| o.at <= e.at && e.at < o.at + o.duration)
                .flat_map(|o| o.nodes.iter().copied())
                .collect();
            if faulted.len() > max_faulted {
                return Err(format!(
                    "{e}: {} nodes faulted at once at {:.1} s, more than {max_faulted} \
                     (--max-faulted; default a minority)",
                    faulted.len(),
                    e.at
                ));
            }
        }
        Ok(())
    }

    /// When the last fault heals, in seconds from the start.
    pub fn end(&self) -> f64 {
        self.events
            .iter()
            .map(|e| e.at + e.duration)
            .fold(0.0, f64::max)
    }

    /// Every start and heal in time order (a heal before a start at the same instant).
    pub fn timeline(&self) -> Vec<(Duration, Step)> {
        let mut steps: Vec<(Duration, Step)> = Vec::new();
        for (i, e) in self.events.iter().enumerate() {
            steps.push((Duration::from_secs_f64(e.at), Step::Start(i)));
            steps.push((Duration::from_secs_f64(e.at + e.duration), Step::Heal(i)));
        }
        steps.sort_by_key(|(t, s)| (*t, matches!(s, Step::Start(_))));
        steps
    }
}

/// One step of the timeline: start or heal event `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Apply the fault.
    Start(usize),
    /// Heal it.
    Heal(usize),
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "none" || s.is_empty() {
            return Ok(Schedule::default());
        }
        let mut events: Vec<Event> = s
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(parse_event)
            .collect::<Result<_, _>>()?;
        if events.len() > MAX_EVENTS {
            return Err(format!("{} events: at most {MAX_EVENTS}", events.len()));
        }
        events.sort_by(|a, b| a.at.total_cmp(&b.at));
        Ok(Schedule { events })
    }
}

fn parse_event(text: &str) -> Result<Event, String> {
    let bad = |why: &str| format!("{text:?}: {why} (expected AT+DURATION:KIND:NODES[:ARG])");
    let mut parts = text.split(':');
    let (when, kind, nodes) = match (parts.next(), parts.next(), parts.next()) {
        (Some(w), Some(k), Some(n)) => (w, k, n),
        _ => return Err(bad("missing fields")),
    };
    let arg = parts.next();
    if parts.next().is_some() {
        return Err(bad("too many fields"));
    }
    let (at, duration) = when.split_once('+').ok_or_else(|| bad("no +DURATION"))?;
    let seconds = |x: &str| -> Result<f64, String> {
        let v: f64 = x.parse().map_err(|_| bad("times are seconds"))?;
        if v.is_finite() && (0.0..=86_400.0).contains(&v) {
            Ok(v)
        } else {
            Err(bad("times are 0 to 86400 s"))
        }
    };
    let (at, duration) = (seconds(at)?, seconds(duration)?);
    let kind = FaultKind::ALL
        .into_iter()
        .find(|k| k.name() == kind)
        .ok_or_else(|| bad("unknown fault kind"))?;
    let nodes = nodes
        .split(',')
        .map(|n| {
            n.strip_prefix('n')
                .and_then(|i| i.parse::<usize>().ok())
                .filter(|i| (1..=usize::from(crate::cluster::MAX_NODES)).contains(i))
                .map(|i| i - 1)
                .ok_or_else(|| bad("nodes are n1, n2, ..."))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (direction, amount) = match (kind, arg) {
        (FaultKind::Partition, None | Some("both")) => (Some(Direction::Both), None),
        (FaultKind::Partition, Some("in")) => (Some(Direction::In), None),
        (FaultKind::Partition, Some("out")) => (Some(Direction::Out), None),
        (FaultKind::Partition, Some(_)) => return Err(bad("a partition is both, in or out")),
        (FaultKind::Clock, Some(a)) => match a.parse::<i64>() {
            Ok(ms) if ms.abs() <= MAX_CLOCK_SHIFT_MS => (None, Some(ms)),
            _ => return Err(bad("a clock shift is -30000 to 30000 ms")),
        },
        (FaultKind::SlowDisk, Some(a)) => match a.parse::<u64>() {
            Ok(ms) if ms <= MAX_DISK_DELAY_MS => (None, Some(ms as i64)),
            _ => return Err(bad("a sync delay is 0 to 2000 ms")),
        },
        (FaultKind::Clock | FaultKind::SlowDisk, None) => return Err(bad("needs :MS")),
        (FaultKind::Kill | FaultKind::Pause, None) => (None, None),
        (FaultKind::Kill | FaultKind::Pause, Some(_)) => return Err(bad("takes no argument")),
    };
    Ok(Event {
        at,
        duration,
        kind,
        nodes,
        direction,
        amount,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(kinds: &[FaultKind]) -> Plan {
        Plan {
            nodes: 5,
            duration: 60.0,
            kinds: kinds.to_vec(),
            max_faulted: 2,
        }
    }

    #[test]
    fn a_seed_gives_the_same_schedule_and_its_text_replays_it() {
        let p = plan(&FaultKind::ALL);
        let a = Schedule::generate(&p, 7);
        assert_eq!(a, Schedule::generate(&p, 7));
        assert_ne!(a, Schedule::generate(&p, 8));
        assert!(a.events.len() > 5, "{a}");
        let replayed: Schedule = a.to_string().parse().unwrap();
        assert_eq!(replayed.to_string(), a.to_string());
        assert_eq!(replayed, a);
        for kind in FaultKind::ALL {
            assert!(a.events.iter().any(|e| e.kind == kind), "{kind:?} in {a}");
        }
    }

    #[test]
    fn faults_stay_within_the_budget_and_the_fault_window() {
        for seed in 0..50 {
            let p = plan(&FaultKind::ALL);
            let s = Schedule::generate(&p, seed);
            assert!(s.end() <= 48.0 + 1e-9, "{s}");
            for e in &s.events {
                assert!(e.at >= 6.0 && e.duration >= 2.0 && e.duration <= 6.0, "{e}");
                let faulted: BTreeSet<usize> = s
                    .events
                    .iter()
                    .filter(|o| o.at <= e.at && e.at < o.at + o.duration)
                    .flat_map(|o| o.nodes.iter().copied())
                    .collect();
                assert!(faulted.len() <= 2, "seed {seed}: {faulted:?} at {}", e.at);
            }
        }
        let only_kill = Schedule::generate(&plan(&[FaultKind::Kill]), 3);
        assert!(only_kill.events.iter().all(|e| e.kind == FaultKind::Kill));
    }

    #[test]
    fn schedules_parse_and_bad_ones_are_refused() {
        let s: Schedule =
            "4+3:kill:n2; 1.5+2:partition:n1,n3:in;9+2:clock:n4:-2500;12+1:slow-disk:n5:300"
                .parse()
                .unwrap();
        assert_eq!(s.events[0].kind, FaultKind::Partition);
        assert_eq!(s.events[0].nodes, [0, 2]);
        assert_eq!(s.events[0].direction, Some(Direction::In));
        assert_eq!(s.events[2].amount, Some(-2500));
        assert_eq!(s.events[0].label(), "partition-in n1,n3");
        assert!(s.check(5, 2).is_ok());
        assert!(s.check(4, 2).unwrap_err().contains("n5"));
        let over: Schedule = "1+3:kill:n1;2+3:pause:n2;3+1:clock:n3:10".parse().unwrap();
        assert!(over.check(5, 3).is_ok());
        let err = over.check(5, 2).unwrap_err();
        assert!(err.contains("3 nodes faulted at once at 3.0 s"), "{err}");
        assert!(over.check(5, 1).unwrap_err().contains("2 nodes"));
        assert_eq!("none".parse::<Schedule>().unwrap(), Schedule::default());
        for bad in [
            "4:kill:n2",
            "4+3:explode:n2",
            "4+3:kill:x2",
            "4+3:kill:n0",
            "4+3:kill:n2:9",
            "4+3:clock:n2",
            "4+3:clock:n2:99999",
            "4+3:slow-disk:n2:-1",
            "-1+3:kill:n2",
            "4+3:partition:n2:sideways",
        ] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_timeline_heals_before_it_starts_at_the_same_instant() {
        let s: Schedule = "1+2:kill:n1;3+1:pause:n2".parse().unwrap();
        let steps: Vec<Step> = s.timeline().into_iter().map(|(_, s)| s).collect();
        assert_eq!(
            steps,
            [Step::Start(0), Step::Heal(0), Step::Start(1), Step::Heal(1)]
        );
    }
}
