//! Fault schedules: which faults strike when, drawn from the seed or given by hand, printed
//! and parsed in one line so that a failing run's (shrunk) schedule can be replayed.
//!
//! Times are seconds from the start of the workload. An episode with an end heals itself
//! then; every episode still open heals when the workload ends.
//!
//! ```
//! use ringkv_tests::sim::faults::Schedule;
//! let s: Schedule = "1.5-4:crash:2;2-9:part:0,1|2;3:join".parse().unwrap();
//! assert_eq!(s.episodes.len(), 3);
//! assert_eq!(s.to_string(), "1.500-4.000:crash:2;2.000-9.000:part:0,1|2;3.000:join");
//! assert_eq!(s.to_string().parse::<Schedule>().unwrap(), s);
//! ```

use std::fmt;
use std::str::FromStr;

use super::config::{FaultKind, FaultKinds};
use super::rng::{SimRng, Stream};

/// What one fault episode does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Episode {
    /// Crash a node; restart it from its store at the end.
    Crash(usize),
    /// Block traffic between two groups (from `a` to `b` only when `one_way`); heal at
    /// the end.
    Partition {
        /// One side.
        a: Vec<usize>,
        /// The other side.
        b: Vec<usize>,
        /// Only `a` to `b` is blocked.
        one_way: bool,
    },
    /// Freeze a node; resume it at the end.
    Pause(usize),
    /// Jump a node's wall clock by this many milliseconds; jump back at the end.
    Clock(usize, i64),
    /// A new node joins.
    Join,
    /// A node leaves gracefully.
    Leave(usize),
    /// Gossip datagrams get lost at random until the end.
    Loss,
    /// Gossip datagrams get duplicated at random until the end.
    Dup,
    /// Peer calls fail at random until the end.
    CallLoss,
}

/// An episode and when it starts and ends (milliseconds from the workload's start).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timed {
    /// Start.
    pub start_ms: u64,
    /// End, for episodes that heal.
    pub end_ms: Option<u64>,
    /// What happens.
    pub episode: Episode,
}

/// A run's faults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    /// Episodes, by start time.
    pub episodes: Vec<Timed>,
}

/// A schedule that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad fault schedule item {item:?}: {why}")]
pub struct ScheduleError {
    /// The item.
    pub item: String,
    /// What is wrong with it.
    pub why: String,
}

/// The smallest cluster faults may shrink it to (a leave is skipped below this).
pub const MIN_NODES: usize = 3;

/// The largest cluster joins may grow it to.
pub const MAX_NODES: usize = 9;

impl Schedule {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// A random schedule of up to `max` episodes of the `kinds` for a cluster of `nodes`
    /// nodes and a workload of `window_ms`, drawn from `seed`.
    pub fn generate(
        seed: u64,
        kinds: FaultKinds,
        max: usize,
        nodes: usize,
        window_ms: u64,
    ) -> Self {
        let mut rng = SimRng::new(seed, Stream::Faults);
        let kinds: Vec<FaultKind> = kinds.iter().collect();
        if kinds.is_empty() || nodes == 0 {
            return Self::none();
        }
        let count = rng.between(1, max as u64);
        let mut joined = 0;
        let mut episodes = Vec::new();
        for _ in 0..count {
            let kind = kinds[rng.index(kinds.len())];
            let start_ms = rng.between(500, window_ms.saturating_sub(2_000).max(600));
            let node = rng.index(nodes);
            let mut lasting = |lo: u64, hi: u64| Some(start_ms + rng.between(lo, hi));
            let (end_ms, episode) = match kind {
                FaultKind::Crash => (lasting(300, 8_000), Episode::Crash(node)),
                FaultKind::Pause => (lasting(300, 8_000), Episode::Pause(node)),
                FaultKind::Partition | FaultKind::OneWay => {
                    let end = lasting(1_000, 10_000);
                    let (a, b) = split(&mut rng, nodes);
                    let one_way = kind == FaultKind::OneWay;
                    (end, Episode::Partition { a, b, one_way })
                }
                FaultKind::Clock => {
                    let end = lasting(1_000, 15_000);
                    let size = [200, 5_000, 90_000][rng.index(3)];
                    let jump = i64::try_from(rng.between(1, size)).unwrap_or(1);
                    let jump = if rng.chance(0.5) { jump } else { -jump };
                    (end, Episode::Clock(node, jump))
                }
                FaultKind::Join if nodes + joined < MAX_NODES => {
                    joined += 1;
                    (None, Episode::Join)
                }
                FaultKind::Join => continue,
                FaultKind::Leave => (None, Episode::Leave(node)),
                FaultKind::Loss => (lasting(2_000, 15_000), Episode::Loss),
                FaultKind::Dup => (lasting(2_000, 15_000), Episode::Dup),
                FaultKind::CallLoss => (lasting(1_000, 10_000), Episode::CallLoss),
            };
            episodes.push(Timed {
                start_ms,
                end_ms,
                episode,
            });
        }
        episodes.sort_by_key(|t| t.start_ms);
        Self { episodes }
    }

    /// The same schedule without episode `index`.
    #[must_use]
    pub fn without(&self, index: usize) -> Self {
        let mut episodes = self.episodes.clone();
        if index < episodes.len() {
            episodes.remove(index);
        }
        Self { episodes }
    }

    /// Every start and end, in time order: `(ms, episode index, is_start)`.
    pub fn actions(&self) -> Vec<(u64, usize, bool)> {
        let mut out: Vec<(u64, usize, bool)> = Vec::new();
        for (i, t) in self.episodes.iter().enumerate() {
            out.push((t.start_ms, i, true));
            if let Some(end) = t.end_ms {
                out.push((end, i, false));
            }
        }
        // At the same instant, heal before striking again.
        out.sort_by_key(|&(at, i, start)| (at, start, i));
        out
    }
}

/// Two non-empty sides of a random split of `0..nodes`.
fn split(rng: &mut SimRng, nodes: usize) -> (Vec<usize>, Vec<usize>) {
    let mut a = Vec::new();
    let mut b = Vec::new();
    for i in 0..nodes {
        if rng.chance(0.5) {
            a.push(i);
        } else {
            b.push(i);
        }
    }
    if a.is_empty() {
        a.extend(b.pop());
    }
    if b.is_empty() {
        b.extend(a.pop());
    }
    (a, b)
}

fn list(nodes: &[usize]) -> String {
    nodes
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for Timed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |ms: u64| format!("{}.{:03}", ms / 1000, ms % 1000);
        write!(f, "{}", secs(self.start_ms))?;
        if let Some(end) = self.end_ms {
            write!(f, "-{}", secs(end))?;
        }
        match &self.episode {
            Episode::Crash(n) => write!(f, ":crash:{n}"),
            Episode::Pause(n) => write!(f, ":pause:{n}"),
            Episode::Partition { a, b, one_way } => {
                let kind = if *one_way { "oneway" } else { "part" };
                write!(f, ":{kind}:{}|{}", list(a), list(b))
            }
            Episode::Clock(n, jump) => write!(f, ":clock:{n}:{jump:+}"),
            Episode::Join => write!(f, ":join"),
            Episode::Leave(n) => write!(f, ":leave:{n}"),
            Episode::Loss => write!(f, ":loss"),
            Episode::Dup => write!(f, ":dup"),
            Episode::CallLoss => write!(f, ":call-loss"),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.episodes.is_empty() {
            return f.write_str("none");
        }
        let items: Vec<String> = self.episodes.iter().map(Timed::to_string).collect();
        f.write_str(&items.join(";"))
    }
}

fn parse_ms(s: &str) -> Result<u64, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a time in seconds"))?;
    if !(0.0..1e9).contains(&secs) {
        return Err(format!("{s} s is out of range"));
    }
    Ok((secs * 1000.0).round() as u64)
}

fn parse_nodes(s: &str) -> Result<Vec<usize>, String> {
    s.split(',')
        .map(|n| {
            n.trim()
                .parse::<usize>()
                .map_err(|_| format!("{n:?} is not a node index"))
        })
        .collect()
}

impl FromStr for Timed {
    type Err = String;

    fn from_str(item: &str) -> Result<Self, Self::Err> {
        let mut parts = item.split(':');
        let when = parts.next().unwrap_or_default();
        let (start_ms, end_ms) = match when.split_once('-') {
            Some((s, e)) => (parse_ms(s)?, Some(parse_ms(e)?)),
            None => (parse_ms(when)?, None),
        };
        if end_ms.is_some_and(|e| e < start_ms) {
            return Err("ends before it starts".into());
        }
        let kind = parts.next().ok_or("no fault kind")?;
        let args: Vec<&str> = parts.collect();
        let node = |i: usize| -> Result<usize, String> {
            args.get(i)
                .ok_or_else(|| format!("{kind} needs a node index"))?
                .parse()
                .map_err(|_| format!("{:?} is not a node index", args[i]))
        };
        let episode = match kind {
            "crash" => Episode::Crash(node(0)?),
            "pause" => Episode::Pause(node(0)?),
            "leave" => Episode::Leave(node(0)?),
            "join" => Episode::Join,
            "loss" => Episode::Loss,
            "dup" => Episode::Dup,
            "call-loss" => Episode::CallLoss,
            "clock" => {
                let jump = args
                    .get(1)
                    .ok_or("clock needs a jump in ms")?
                    .parse::<i64>()
                    .map_err(|_| "the clock jump is not a whole number of ms".to_string())?;
                Episode::Clock(node(0)?, jump)
            }
            "part" | "oneway" => {
                let sides = args.first().ok_or("a partition needs sides a|b")?;
                let (a, b) = sides.split_once('|').ok_or("a partition needs sides a|b")?;
                Episode::Partition {
                    a: parse_nodes(a)?,
                    b: parse_nodes(b)?,
                    one_way: kind == "oneway",
                }
            }
            other => return Err(format!("unknown fault kind {other:?}")),
        };
        Ok(Timed {
            start_ms,
            end_ms,
            episode,
        })
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || s == "none" {
            return Ok(Self::none());
        }
        let mut episodes = Vec::new();
        for item in s.split(';').map(str::trim).filter(|i| !i.is_empty()) {
            let timed = item.parse::<Timed>().map_err(|why| ScheduleError {
                item: item.to_string(),
                why,
            })?;
            episodes.push(timed);
        }
        episodes.sort_by_key(|t| t.start_ms);
        Ok(Self { episodes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bad_items_are_refused_with_the_reason() {
        for (text, why) in [
            ("x:crash:1", "not a time"),
            ("1:crash", "needs a node index"),
            ("1:explode", "unknown fault kind"),
            ("5-2:pause:1", "ends before it starts"),
            ("1:part:0,1", "sides a|b"),
            ("1:clock:2:fast", "whole number"),
        ] {
            let err = text.parse::<Schedule>().unwrap_err();
            assert!(err.to_string().contains(why), "{text}: {err}");
        }
        assert_eq!("none".parse::<Schedule>().unwrap(), Schedule::none());
    }

    #[test]
    fn actions_come_in_time_order_with_ends_before_starts() {
        let s: Schedule = "1-3:crash:0;3-4:pause:1;2:join".parse().unwrap();
        let actions = s.actions();
        assert_eq!(
            actions,
            [
                (1000, 0, true),
                (2000, 1, true),
                (3000, 0, false),
                (3000, 2, true),
                (4000, 2, false)
            ]
        );
    }

    proptest! {
        #[test]
        fn generated_schedules_print_and_parse_back(seed in any::<u64>(), nodes in 3usize..=9) {
            let s = Schedule::generate(seed, FaultKinds::all(), 6, nodes, 20_000);
            prop_assert!(!s.episodes.is_empty() || nodes >= MAX_NODES);
            for t in &s.episodes {
                prop_assert!(t.end_ms.is_none_or(|e| e >= t.start_ms));
                if let Episode::Partition { a, b, .. } = &t.episode {
                    prop_assert!(!a.is_empty() && !b.is_empty());
                }
            }
            prop_assert_eq!(s.to_string().parse::<Schedule>().unwrap(), s);
        }
    }
}
