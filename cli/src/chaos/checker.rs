//! The checker, run once faults healed and the cluster settled: every acknowledged put reads
//! back (at R=N through a random node), no acknowledged delete comes back, no register reads
//! older than its last acknowledged version, replicas of a sample of keys hold the
//! acknowledged value (`inspect`), and the shared primary-mode registers' history is
//! linearizable (Wing–Gong, as `tests/tests/cluster_linearizable.rs` checks it).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use ringkv::{Api, Client};
use serde::Serialize;
use todc_utils::linearizability::history::{Action, History};
use todc_utils::{Specification, WGLChecker};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::workload::{read_number, Op, OpKind, Outcome};

/// Keys sampled for the replica convergence check.
pub const CONVERGENCE_SAMPLE: usize = 40;
/// Readers of the final check at once.
const READERS: usize = 16;
/// Pause between two tries of a read that failed.
const RETRY: Duration = Duration::from_millis(250);
/// Keys named per finding in the verdict (the counts are complete).
pub const MAX_NAMED: usize = 20;

/// What the checker found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Findings {
    /// Keys checked by a final read.
    pub keys_checked: usize,
    /// Acknowledged puts that read back absent or with another value.
    pub lost: Vec<String>,
    /// Acknowledged deletes whose key reads back with a value.
    pub resurrected: Vec<String>,
    /// Registers reading older than their last acknowledged version.
    pub stale: Vec<String>,
    /// Keys no read could get within the check's bound.
    pub unreadable: Vec<String>,
    /// Sampled keys some replica did not hold as acknowledged within the bound.
    pub diverged: Vec<String>,
    /// Sampled keys checked on every replica.
    pub converged: usize,
    /// Shared registers whose history is not linearizable; `None` when not checked.
    pub not_linearizable: Option<Vec<String>>,
    /// Operations in the linearizability histories.
    pub lin_ops: usize,
}

impl Findings {
    /// Nothing acknowledged was lost or wrong, and everything could be checked.
    pub fn clean(&self) -> bool {
        self.lost.is_empty()
            && self.resurrected.is_empty()
            && self.stale.is_empty()
            && self.unreadable.is_empty()
            && self.diverged.is_empty()
            && self.not_linearizable.as_ref().is_none_or(Vec::is_empty)
    }
}

/// What a key should read as once the cluster settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Exactly this value (an acknowledged put, never deleted).
    Value(u64),
    /// Absent (an acknowledged delete).
    Absent,
    /// A register: at least this version.
    AtLeast(u64),
}

/// The expectations the history sets: keys whose last write is unknown are left out.
pub fn expectations(ops: &[Op]) -> BTreeMap<String, Expect> {
    let mut out = BTreeMap::new();
    let mut unsure: HashSet<&str> = HashSet::new();
    for op in ops {
        match (op.kind, op.outcome) {
            (OpKind::Put, Outcome::Ok) => {
                if let Some(v) = op.value {
                    out.entry(op.key.clone()).or_insert(Expect::Value(v));
                }
            }
            (OpKind::Delete, Outcome::Ok) => {
                out.insert(op.key.clone(), Expect::Absent);
            }
            (OpKind::Delete, Outcome::Unknown) => {
                unsure.insert(&op.key);
            }
            (OpKind::Write, Outcome::Ok) => {
                let v = op.value.unwrap_or(0);
                let e = out.entry(op.key.clone()).or_insert(Expect::AtLeast(v));
                if let Expect::AtLeast(old) = e {
                    *old = (*old).max(v);
                }
            }
            _ => {}
        }
    }
    for key in unsure {
        if out.get(key) != Some(&Expect::Absent) {
            out.remove(key);
        }
    }
    out
}

/// Where a finding goes, if the final read disagrees with the expectation.
fn judge(expect: &Expect, read: Option<u64>) -> Option<&'static str> {
    match (expect, read) {
        (Expect::Value(v), Some(r)) if r == *v => None,
        (Expect::Value(_), _) => Some("lost"),
        (Expect::Absent, None) => None,
        (Expect::Absent, Some(_)) => Some("resurrected"),
        (Expect::AtLeast(v), Some(r)) if r >= *v => None,
        (Expect::AtLeast(_), _) => Some("stale"),
    }
}

/// Reads every expected key at `r` through random nodes, retrying failures until `limit`.
pub async fn check_reads(
    clients: &[Client],
    expect: BTreeMap<String, Expect>,
    r: u8,
    limit: Duration,
    seed: u64,
    findings: &mut Findings,
) {
    let deadline = Instant::now() + limit;
    let keys: Vec<(String, Expect)> = expect.into_iter().collect();
    findings.keys_checked = keys.len();
    let chunk = keys.len().div_ceil(READERS).max(1);
    let mut tasks = JoinSet::new();
    for (i, part) in keys.chunks(chunk).enumerate() {
        let part = part.to_vec();
        let clients = clients.to_vec();
        let mut rng = SmallRng::seed_from_u64(seed ^ i as u64);
        tasks.spawn(async move {
            let mut out = Vec::new();
            for (key, expect) in part {
                let verdict = loop {
                    let api = &clients[rng.random_range(0..clients.len())];
                    match read_number(api, &key, Some(r)).await {
                        Ok((value, _)) => break judge(&expect, value),
                        Err(_) if Instant::now() + RETRY < deadline => {
                            tokio::time::sleep(RETRY).await
                        }
                        Err(_) => break Some("unreadable"),
                    }
                };
                if let Some(v) = verdict {
                    out.push((v, key));
                }
            }
            out
        });
    }
    while let Some(done) = tasks.join_next().await {
        for (what, key) in done.unwrap_or_default() {
            let list = match what {
                "lost" => &mut findings.lost,
                "resurrected" => &mut findings.resurrected,
                "stale" => &mut findings.stale,
                _ => &mut findings.unreadable,
            };
            list.push(key);
        }
    }
}

/// Checks that every replica of a sample of acknowledged, never deleted keys holds the
/// acknowledged value, asking each node what it alone holds, until `limit`.
pub async fn check_convergence(
    clients: &[Client],
    expect: &BTreeMap<String, Expect>,
    limit: Duration,
    seed: u64,
    findings: &mut Findings,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let candidates: Vec<(&String, u64)> = expect
        .iter()
        .filter_map(|(k, e)| match e {
            Expect::Value(v) => Some((k, *v)),
            _ => None,
        })
        .collect();
    let mut sample = Vec::new();
    for _ in 0..CONVERGENCE_SAMPLE.min(candidates.len()) {
        sample.push(candidates[rng.random_range(0..candidates.len())]);
    }
    sample.sort();
    sample.dedup();
    let deadline = Instant::now() + limit;
    for (key, value) in sample {
        let want = value.to_string().into_bytes();
        let converged = loop {
            let mut replicas = 0;
            let mut holding = 0;
            for api in clients {
                if let Ok(held) = api.inspect(key.clone().into_bytes()).await {
                    if held.replica {
                        replicas += 1;
                        let has = held.siblings.iter().any(|s| s.data.as_ref() == Some(&want));
                        holding += usize::from(has);
                    }
                }
            }
            if replicas > 0 && holding == replicas {
                break true;
            }
            if Instant::now() + RETRY >= deadline {
                break false;
            }
            tokio::time::sleep(RETRY).await;
        };
        if converged {
            findings.converged += 1;
        } else {
            findings.diverged.push(key.clone());
        }
    }
}

/// A shared register's operation.
#[derive(Clone, Copy, Debug)]
enum RegOp {
    Read(Option<u64>),
    Write(u64),
}

/// The sequential register: absent until the first write.
struct Register;

impl Specification for Register {
    type State = Option<u64>;
    type Operation = RegOp;

    fn init() -> Self::State {
        None
    }

    fn apply(op: &RegOp, state: &Option<u64>) -> (bool, Option<u64>) {
        match op {
            RegOp::Read(seen) => (seen == state, *state),
            RegOp::Write(v) => (true, Some(*v)),
        }
    }
}

/// Checks the history of every shared register. A write of unknown outcome may take effect
/// at any time after its call: it returns after everything else on a process of its own, and
/// is dropped when nobody read its value (it can always go last). Failed operations and
/// unanswered reads say nothing and are dropped.
pub fn check_linearizable(ops: &[Op], findings: &mut Findings) {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        if matches!(op.kind, OpKind::LinRead | OpKind::LinWrite) {
            by_key.entry(&op.key).or_default().push(op);
        }
    }
    let mut bad = Vec::new();
    for (key, ops) in by_key {
        let seen: HashSet<u64> = ops
            .iter()
            .filter(|o| o.kind == OpKind::LinRead && o.outcome == Outcome::Ok)
            .filter_map(|o| o.value)
            .collect();
        let kept: Vec<&Op> = ops
            .into_iter()
            .filter(|o| match (o.kind, o.outcome) {
                (_, Outcome::Ok) => true,
                (OpKind::LinWrite, Outcome::Unknown) => o.value.is_some_and(|v| seen.contains(&v)),
                _ => false,
            })
            .collect();
        findings.lin_ops += kept.len();
        if !kept.is_empty() && !WGLChecker::<Register>::is_linearizable(history(&kept)) {
            bad.push(key.to_string());
        }
    }
    findings.not_linearizable = Some(bad);
}

/// Calls and returns in real-time order (a call before a return at the same instant: the
/// weaker claim); writes of unknown outcome on processes of their own, returning last.
fn history(ops: &[&Op]) -> History<RegOp> {
    let clients: HashMap<u32, usize> = ops
        .iter()
        .map(|o| o.client)
        .collect::<HashSet<_>>()
        .into_iter()
        .enumerate()
        .map(|(i, c)| (c, i))
        .collect();
    let mut timed: Vec<(u64, bool, usize, RegOp)> = Vec::new();
    let mut open = Vec::new();
    for (i, o) in ops.iter().enumerate() {
        let reg = match o.kind {
            OpKind::LinWrite => RegOp::Write(o.value.unwrap_or(0)),
            _ => RegOp::Read(o.value),
        };
        let process = clients.get(&o.client).copied().unwrap_or(0);
        if o.outcome == Outcome::Ok {
            timed.push((o.start_us, false, process, reg));
            timed.push((o.end_us, true, process, reg));
        } else {
            let own = clients.len() + i;
            timed.push((o.start_us, false, own, reg));
            open.push((own, reg));
        }
    }
    timed.sort_by_key(|(t, ret, ..)| (*t, *ret));
    let mut actions: Vec<(usize, Action<RegOp>)> = timed
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

#[cfg(test)]
mod tests {
    use super::*;

    fn op(
        client: u32,
        kind: OpKind,
        key: &str,
        value: Option<u64>,
        t: (u64, u64),
        outcome: Outcome,
    ) -> Op {
        Op {
            client,
            node: 0,
            kind,
            key: key.into(),
            value,
            primary: true,
            start_us: t.0,
            end_us: t.1,
            outcome,
            error: None,
        }
    }

    #[test]
    fn expectations_follow_acknowledged_writes_and_skip_unsure_deletes() {
        use OpKind::*;
        use Outcome::*;
        let ops = [
            op(1, Put, "a", Some(1), (0, 1), Ok),
            op(1, Put, "b", Some(2), (1, 2), Ok),
            op(1, Delete, "b", None, (2, 3), Ok),
            op(1, Put, "c", Some(3), (3, 4), Ok),
            op(1, Delete, "c", None, (4, 5), Unknown),
            op(1, Put, "d", Some(4), (5, 6), Unknown),
            op(1, Write, "r", Some(1), (6, 7), Ok),
            op(1, Write, "r", Some(2), (7, 8), Ok),
            op(1, Write, "r", Some(3), (8, 9), Unknown),
        ];
        let e = expectations(&ops);
        assert_eq!(e.get("a"), Some(&Expect::Value(1)));
        assert_eq!(e.get("b"), Some(&Expect::Absent));
        assert_eq!(e.get("c"), None);
        assert_eq!(e.get("d"), None);
        assert_eq!(e.get("r"), Some(&Expect::AtLeast(2)));
        assert_eq!(judge(&Expect::Value(1), Some(1)), None);
        assert_eq!(judge(&Expect::Value(1), None), Some("lost"));
        assert_eq!(judge(&Expect::Absent, Some(5)), Some("resurrected"));
        assert_eq!(judge(&Expect::AtLeast(2), Some(3)), None);
        assert_eq!(judge(&Expect::AtLeast(2), Some(1)), Some("stale"));
        assert_eq!(judge(&Expect::AtLeast(2), None), Some("stale"));
    }

    #[test]
    fn a_stale_shared_read_is_not_linearizable_and_an_unknown_write_may_land_late() {
        use OpKind::*;
        use Outcome::*;
        let good = [
            op(1, LinWrite, "x", Some(1), (0, 10), Ok),
            op(2, LinWrite, "x", Some(2), (20, 30), Unknown),
            op(3, LinRead, "x", Some(1), (40, 50), Ok),
            op(3, LinRead, "x", Some(2), (60, 70), Ok),
        ];
        let mut f = Findings::default();
        check_linearizable(&good, &mut f);
        assert_eq!(f.not_linearizable, Some(vec![]));
        assert!(f.clean());
        let bad = [
            op(1, LinWrite, "x", Some(1), (0, 10), Ok),
            op(2, LinWrite, "x", Some(2), (20, 30), Ok),
            op(3, LinRead, "x", Some(1), (40, 50), Ok),
        ];
        let mut f = Findings::default();
        check_linearizable(&bad, &mut f);
        assert_eq!(f.not_linearizable, Some(vec!["x".to_string()]));
        assert!(!f.clean());
    }
}
