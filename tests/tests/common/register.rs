//! Registers under concurrent clients, checked for linearizability (Wing–Gong–Lowe).
//!
//! A write that failed or timed out may or may not have taken effect: it is kept as an
//! operation that returns at +infinity (it may take effect at any point after its call, even
//! after everything else). Such a write whose value nobody read is dropped before the check:
//! placing it last is always possible, so dropping it changes no verdict and keeps the search
//! small. Failed reads say nothing and are dropped. Each key is a register of its own and is
//! checked alone.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringkv::{Api, Client, ReadOptions, WriteOptions};
use todc_utils::linearizability::history::{Action, History};
use todc_utils::{Specification, WGLChecker};

/// A client starts at most one operation per this long: the history stays a few thousand
/// operations, which the checker gets through in seconds.
pub const PACE: Duration = Duration::from_millis(30);
/// Process ids of writes of unknown outcome start past every client's.
const OPEN_PROCESSES: usize = 1 << 16;

/// One register operation: what a read returned, or the value written.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    Read(Option<u64>),
    Write(u64),
}

/// The sequential register: absent until the first write.
struct Register;

impl Specification for Register {
    type State = Option<u64>;
    type Operation = Op;

    fn init() -> Self::State {
        None
    }

    fn apply(op: &Op, state: &Option<u64>) -> (bool, Option<u64>) {
        match op {
            Op::Read(seen) => (seen == state, *state),
            Op::Write(v) => (true, Some(*v)),
        }
    }
}

/// One operation as a client saw it; `returned: None` is a write of unknown outcome.
#[derive(Clone, Debug)]
pub struct Record {
    pub client: usize,
    /// Index of the key in the client's key list.
    pub key: usize,
    pub op: Op,
    pub invoked: Instant,
    pub returned: Option<Instant>,
}

/// What one client did, and anything it saw that no register could show.
#[derive(Default)]
pub struct Log {
    pub ops: Vec<Record>,
    pub anomalies: Vec<String>,
    /// Operations that failed, by what the client saw ("timeout", or the error's kind).
    pub failures: BTreeMap<String, usize>,
}

/// Failed operations of all `logs`, by what the clients saw.
pub fn failures(logs: &[Log]) -> BTreeMap<String, usize> {
    let mut all = BTreeMap::new();
    for (what, n) in logs.iter().flat_map(|l| &l.failures) {
        *all.entry(what.clone()).or_insert(0) += n;
    }
    all
}

/// What a failed operation saw, for [`Log::failures`].
fn failure<T>(outcome: &Result<Result<T, ringkv::Error>, tokio::time::error::Elapsed>) -> String {
    match outcome {
        Err(_) => "timeout".into(),
        Ok(Err(ringkv::Error::Request(e))) => e.kind().into(),
        Ok(Err(e)) => e.to_string().chars().take(40).collect(),
        Ok(Ok(_)) => "ok".into(),
    }
}

pub fn parse(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Read and write `keys` at random until `stop`, giving up on an operation after `limit` (a
/// write is then indeterminate); every write value is unique.
pub async fn run_client(
    me: usize,
    client: Client,
    (keys, limit): (&'static [&'static str], Duration),
    stop: Arc<AtomicBool>,
) -> Log {
    let mut log = Log::default();
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64 ^ (me as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let key = usize::try_from((rng >> 8) % keys.len() as u64).unwrap_or(0);
        let name = keys[key].as_bytes().to_vec();
        let invoked = Instant::now();
        let ok = if rng.is_multiple_of(2) {
            seq += 1;
            let v = (me as u64 + 1) * 1_000_000 + seq;
            let put = client.put(name, v.to_string().into_bytes(), WriteOptions::default());
            let outcome = tokio::time::timeout(limit, put).await;
            let done = matches!(outcome, Ok(Ok(_)));
            if !done {
                *log.failures.entry(failure(&outcome)).or_default() += 1;
            }
            log.ops.push(Record {
                client: me,
                key,
                op: Op::Write(v),
                invoked,
                returned: done.then(Instant::now),
            });
            done
        } else {
            let get = client.get(name, ReadOptions::default());
            let outcome = tokio::time::timeout(limit, get).await;
            if !matches!(outcome, Ok(Ok(_))) {
                *log.failures
                    .entry(format!("read {}", failure(&outcome)))
                    .or_default() += 1;
            }
            match outcome {
                Ok(Ok(read)) => {
                    let returned = Some(Instant::now());
                    // One value or none: anything else no register gives, and fails the test.
                    let seen = match read.values.as_slice() {
                        [] => Some(None),
                        [one] => parse(&one.data).map(Some),
                        _ => None,
                    };
                    match seen {
                        Some(v) => log.ops.push(Record {
                            client: me,
                            key,
                            op: Op::Read(v),
                            invoked,
                            returned,
                        }),
                        None => log.anomalies.push(format!("read {:?}", read.values)),
                    }
                    true
                }
                _ => false,
            }
        };
        // After a failure (an election, a dead node) wait a little longer: do not spin.
        let pause = if ok { PACE } else { PACE * 2 };
        tokio::time::sleep_until((invoked + pause).into()).await;
    }
    log
}

/// The checker's history: calls and returns in real-time order, each write of unknown
/// outcome on a process of its own that returns after everything else.
fn history(ops: &[Record]) -> History<Op> {
    let mut timed: Vec<(Instant, bool, usize, Op)> = Vec::new();
    let mut open = Vec::new();
    for (i, r) in ops.iter().enumerate() {
        match r.returned {
            Some(t) => {
                timed.push((r.invoked, false, r.client, r.op));
                timed.push((t, true, r.client, r.op));
            }
            None => {
                let process = OPEN_PROCESSES + i;
                timed.push((r.invoked, false, process, r.op));
                open.push((process, r.op));
            }
        }
    }
    // At equal instants a call sorts before a return: the two overlap, the weaker claim.
    timed.sort_by_key(|(t, ret, ..)| (*t, *ret));
    let mut actions: Vec<(usize, Action<Op>)> = timed
        .into_iter()
        .map(|(_, ret, p, op)| {
            (
                p,
                if ret {
                    Action::Response(op)
                } else {
                    Action::Call(op)
                },
            )
        })
        .collect();
    actions.extend(open.into_iter().map(|(p, op)| (p, Action::Response(op))));
    History::from_actions(actions)
}

/// Whether the history of one register is linearizable. A write of unknown outcome whose
/// value nobody read is dropped first: it can always take effect last, so the verdict is
/// the same.
pub fn linearizable(ops: &[Record]) -> bool {
    let seen: HashSet<u64> = ops
        .iter()
        .filter_map(|r| match r.op {
            Op::Read(Some(v)) => Some(v),
            _ => None,
        })
        .collect();
    let kept: Vec<Record> = ops
        .iter()
        .filter(|r| r.returned.is_some() || matches!(r.op, Op::Write(v) if seen.contains(&v)))
        .cloned()
        .collect();
    kept.is_empty() || WGLChecker::<Register>::is_linearizable(history(&kept))
}

/// The history as it stood at `cut`: later operations left out, those still running then
/// of unknown outcome (a read of unknown outcome says nothing and is left out).
fn prefix(ops: &[Record], cut: Instant) -> Vec<Record> {
    ops.iter()
        .filter(|r| r.invoked <= cut)
        .filter_map(|r| match (r.returned, r.op) {
            (Some(t), _) if t <= cut => Some(r.clone()),
            (_, Op::Write(_)) => Some(Record {
                returned: None,
                ..r.clone()
            }),
            _ => None,
        })
        .collect()
}

/// The earliest instant whose prefix is not linearizable (binary search over the events).
pub fn first_violation(ops: &[Record]) -> Instant {
    let mut times: Vec<Instant> = ops
        .iter()
        .flat_map(|r| std::iter::once(r.invoked).chain(r.returned))
        .collect();
    times.sort();
    let (mut good, mut bad) = (0, times.len().saturating_sub(1));
    while bad - good > 1 {
        let mid = (good + bad) / 2;
        if linearizable(&prefix(ops, times[mid])) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    times[bad]
}

/// The operations invoked within a second before `cut` (and a little after), in order.
pub fn show(ops: &[Record], origin: Instant, cut: Instant) -> String {
    let from = cut.checked_sub(Duration::from_secs(1)).unwrap_or(origin);
    let to = cut + Duration::from_millis(100);
    let mut near: Vec<&Record> = ops
        .iter()
        .filter(|r| r.invoked >= from && r.invoked <= to)
        .collect();
    near.sort_by_key(|r| r.invoked);
    let at = |t: Instant| t.duration_since(origin).as_micros();
    near.iter()
        .map(|r| {
            let end = r.returned.map_or("inf".to_string(), |t| at(t).to_string());
            format!(
                "c{} k{} {:>10}..{:>10} {:?}",
                r.client,
                r.key,
                at(r.invoked),
                end,
                r.op
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
