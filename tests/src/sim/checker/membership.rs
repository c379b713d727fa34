//! Membership converges: once the faults heal, every live node sees every other live node
//! live (alive, or suspect: SWIM counts a suspect member as live, and foca may leave one
//! suspect for good when the suspecting node changed identity meanwhile) with status up,
//! and every node computes the same ring, holding every live node. A node that crashed
//! keeps its place; so does one whose graceful leave nobody could hear (it left while cut
//! off): the cluster cannot tell it from a crash. What must never happen is nodes
//! disagreeing on the ring.

use super::{End, Invariant, Violation};
use crate::sim::node::NodeState;
use crate::sim::world::World;

/// Every live node sees every other one, and the rings agree.
pub struct MembershipConverges;

const NAME: &str = "membership-converges";

impl Invariant for MembershipConverges {
    fn name(&self) -> &'static str {
        NAME
    }

    fn at_end(&mut self, end: &End<'_>, out: &mut Vec<Violation>) {
        if let Err(detail) = membership_converged(end.world) {
            out.push(Violation {
                invariant: NAME,
                at_us: end.world.now_us(),
                detail,
            });
        }
    }
}

/// `Ok` when every running node sees every other running node live and up, and all of
/// them compute the same ring holding every running node; otherwise the first difference.
pub fn membership_converged(world: &World) -> Result<(), String> {
    let live: Vec<usize> = (0..world.nodes().len())
        .filter(|&i| world.nodes()[i].state == NodeState::Running)
        .collect();
    let mut names: Vec<&str> = live
        .iter()
        .map(|&i| world.nodes()[i].name.as_str())
        .collect();
    names.sort_unstable();
    let mut first_ring = None;
    for &a in &live {
        let node = &world.nodes()[a];
        let Some(core) = node.core() else {
            return Err(format!("n{a} runs no node core"));
        };
        let rows = core.members();
        for &b in &live {
            let other = &world.nodes()[b].name;
            if b == a {
                continue;
            }
            let seen = rows
                .iter()
                .any(|r| &r.name == other && r.state != "down" && r.status == "up");
            if !seen {
                let states: Vec<String> = rows
                    .iter()
                    .filter(|r| &r.name == other)
                    .map(|r| format!("{}/{}", r.state, r.status))
                    .collect();
                return Err(format!(
                    "n{a} does not see {other} live and up (sees {states:?})"
                ));
            }
        }
        let ring = core.ring();
        let ring_names: Vec<&str> = ring.nodes().iter().map(|n| n.name.as_str()).collect();
        if let Some(missing) = names.iter().find(|n| !ring_names.contains(n)) {
            return Err(format!(
                "n{a}'s ring lacks live {missing}: it holds {ring_names:?}"
            ));
        }
        match first_ring {
            None => first_ring = Some((a, ring)),
            Some((f, r)) if r != ring => {
                return Err(format!("n{a} and n{f} compute different rings"));
            }
            Some(_) => {}
        }
    }
    Ok(())
}
