//! Every hint is delivered or accounted for. Per process life (a crash resets what a process
//! counted, and its store keeps only what was synced, so each life starts from what its store
//! held): hints held at start plus those stored equal those delivered, dropped and still held.
//! And once the run settled, no running node keeps a hint for an owner that is running too:
//! the settle phase gave every hint time to reach its owner.

use ringkv::core::NodeCore;
use ringkv::store::{MemoryStore, Store};

use super::{End, Invariant, Violation};
use crate::sim::node::NodeState;

/// Hints are delivered, dropped for a reason, or still held: never lost unaccounted.
pub struct HintsAccounted;

/// The invariant's name.
pub const NAME: &str = "hints-accounted";

/// Most owners listed from one store (far above any simulated cluster).
const MAX_OWNERS: usize = 4096;

impl Invariant for HintsAccounted {
    fn name(&self) -> &'static str {
        NAME
    }

    fn at_end(&mut self, end: &End<'_>, out: &mut Vec<Violation>) {
        let nodes = end.world.nodes();
        let running = |name: &str| {
            nodes
                .iter()
                .any(|n| n.name == name && n.state == NodeState::Running)
        };
        for (i, node) in nodes.iter().enumerate() {
            let Some(core) = node.core() else { continue };
            let mut problems = Vec::new();
            if let Err(e) = hint_accounting(core, &node.store) {
                problems.push(e);
            }
            match node.store.hint_owners(MAX_OWNERS) {
                Ok(owners) => problems.extend(
                    owners
                        .iter()
                        .filter(|o| node.state == NodeState::Running && running(&o.owner))
                        .map(|o| format!("still holds {} hints for live {}", o.count, o.owner)),
                ),
                Err(e) => problems.push(format!("cannot list hints: {e}")),
            }
            out.extend(problems.into_iter().map(|detail| Violation {
                invariant: NAME,
                at_us: end.world.now_us(),
                detail: format!("n{i}: {detail}"),
            }));
        }
    }
}

/// `Ok` when the hints this process held at start and stored since are exactly those it
/// delivered, dropped, and still holds in `store`; otherwise the figures.
pub fn hint_accounting(core: &NodeCore, store: &MemoryStore) -> Result<(), String> {
    let t = core.hint_tally();
    let held: u64 = store
        .hint_owners(MAX_OWNERS)
        .map_err(|e| format!("cannot list hints: {e}"))?
        .iter()
        .map(|o| o.count)
        .sum();
    let came = t.held_at_start + t.stored;
    let went = t.delivered + t.dropped + held;
    if came == went {
        return Ok(());
    }
    Err(format!(
        "hints unaccounted for: {} held at start + {} stored != {} delivered + {} dropped + \
         {held} held",
        t.held_at_start, t.stored, t.delivered, t.dropped
    ))
}
