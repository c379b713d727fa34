//! Membership behaviour driven through the in-memory simulator.

mod sim;

use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use ringkv_gossip::{
    GossipConfig, GossipError, GossipOutput, IdentityError, MemberEvent, MemberState, Membership,
    NodeId, NodeStatus, MAX_SEEDS,
};
use sim::{addr_of, name_of, Sim};

const SECOND: Duration = Duration::from_secs(1);
const STEP: Duration = Duration::from_millis(50);

fn converged_cluster(n: usize, seed: u64) -> Sim {
    let mut sim = Sim::cluster(n, seed);
    assert!(
        sim.run_until(5 * SECOND, STEP, Sim::converged),
        "cluster of {n} did not converge"
    );
    sim
}

fn saw(sim: &Sim, node: usize, since: Duration, event: &MemberEvent) -> bool {
    sim.events(node, since).iter().any(|(_, e)| e == event)
}

#[test]
fn five_nodes_joining_through_one_seed_all_see_each_other_alive() {
    let mut sim = Sim::cluster(5, 1);
    sim.run_for(3 * SECOND);
    for i in 0..5 {
        let members = sim.members(i);
        let names: Vec<_> = members.iter().map(|m| m.id.name.clone()).collect();
        let expected: Vec<_> = (0..5).filter(|&j| j != i).map(name_of).collect();
        assert_eq!(names, expected, "members of node {i}");
        assert!(members
            .iter()
            .all(|m| m.state == MemberState::Alive && m.status == NodeStatus::Up));
        assert!(saw(&sim, i, Duration::ZERO, &MemberEvent::Joined));
        for j in (0..5).filter(|&j| j != i) {
            assert!(sim.nodes[i].membership.is_alive(&name_of(j)));
            assert!(saw(&sim, i, Duration::ZERO, &MemberEvent::Up(sim.id(j))));
        }
    }
}

#[test]
fn a_stopped_node_is_reported_down_by_every_survivor_within_five_seconds() {
    for seed in 0..8 {
        let mut sim = converged_cluster(5, seed);
        let stopped_at = sim.now;
        let victim = sim.id(3);
        sim.stop(3);
        sim.run_for(5 * SECOND);
        for i in sim.running() {
            assert!(
                saw(&sim, i, stopped_at, &MemberEvent::Down(victim.clone())),
                "seed {seed}: node {i} did not report the stopped node down"
            );
            assert_eq!(
                sim.member(i, &victim.name).map(|m| m.state),
                Some(MemberState::Down)
            );
            assert!(!sim.nodes[i].membership.is_alive(&victim.name));
            // Nobody else was declared down.
            let others_down = sim
                .events(i, stopped_at)
                .into_iter()
                .filter(|(_, e)| matches!(e, MemberEvent::Down(id) if *id != victim))
                .count();
            assert_eq!(others_down, 0, "seed {seed}: false positive on node {i}");
        }
    }
}

#[test]
fn sixteen_nodes_detect_a_stopped_node_within_five_seconds() {
    for seed in 0..3 {
        let mut sim = converged_cluster(16, seed);
        let stopped_at = sim.now;
        let victim = sim.id(7);
        sim.stop(7);
        sim.run_for(5 * SECOND);
        for i in sim.running() {
            assert!(
                saw(&sim, i, stopped_at, &MemberEvent::Down(victim.clone())),
                "seed {seed}: node {i} did not report the stopped node down"
            );
        }
    }
}

#[test]
fn a_node_restarted_with_a_higher_bump_is_up_again_everywhere() {
    let mut sim = converged_cluster(5, 2);
    let old = sim.id(3);
    sim.stop(3);
    sim.run_for(5 * SECOND);
    let restarted_at = sim.now;
    sim.restart(3);
    let new = sim.id(3);
    assert_eq!(new.bump, old.bump + 1);
    assert!(sim.run_until(5 * SECOND, STEP, Sim::converged));
    for i in [0, 1, 2, 4] {
        assert!(
            saw(&sim, i, restarted_at, &MemberEvent::Up(new.clone())),
            "node {i} did not report the restarted node up"
        );
        let entry = sim.member(i, &new.name).unwrap();
        assert_eq!((entry.id, entry.state), (new.clone(), MemberState::Alive));
    }
    assert_eq!(sim.members(3).len(), 4);
}

#[test]
fn a_fast_restart_before_detection_is_reported_as_up_of_the_new_identity() {
    let mut sim = converged_cluster(5, 3);
    let since = sim.now;
    sim.stop(3);
    sim.restart(3);
    let new = sim.id(3);
    assert!(sim.run_until(5 * SECOND, STEP, Sim::converged));
    for i in [0, 1, 2, 4] {
        assert!(
            saw(&sim, i, since, &MemberEvent::Up(new.clone())),
            "node {i}"
        );
        assert!(
            !saw(&sim, i, since, &MemberEvent::Down(new.clone())),
            "node {i}"
        );
    }
}

#[test]
fn a_node_restarted_on_another_address_stays_up_under_its_name() {
    let mut sim = converged_cluster(5, 13);
    let since = sim.now;
    let old = sim.id(3);
    sim.stop(3);
    let moved = NodeId::new(old.name.clone(), addr_of(10)).with_bump(old.bump + 1);
    sim.replace(3, moved.clone());
    sim.run_for(5 * SECOND);
    for i in [0, 1, 2, 4] {
        assert!(
            saw(&sim, i, since, &MemberEvent::Up(moved.clone())),
            "node {i}"
        );
        assert!(
            !sim.events(i, since)
                .iter()
                .any(|(_, e)| matches!(e, MemberEvent::Down(id) if id.name == old.name)),
            "node {i} reported the name down"
        );
        assert!(sim.nodes[i].membership.is_alive(&old.name));
        let states: Vec<_> = sim
            .members(i)
            .into_iter()
            .filter(|m| m.id.name == old.name)
            .map(|m| (m.id, m.state))
            .collect();
        assert_eq!(
            states,
            vec![
                (old.clone(), MemberState::Down),
                (moved.clone(), MemberState::Alive)
            ]
        );
    }
}

#[test]
fn another_node_taking_over_an_address_reports_the_old_name_down() {
    let mut sim = converged_cluster(5, 4);
    let since = sim.now;
    let old = sim.id(3);
    sim.stop(3);
    let usurper = NodeId::new("usurper", old.addr).with_bump(old.bump + 1);
    sim.replace(3, usurper.clone());
    assert!(sim.run_until(5 * SECOND, STEP, Sim::converged));
    for i in [0, 1, 2, 4] {
        assert!(
            saw(&sim, i, since, &MemberEvent::Down(old.clone())),
            "node {i}"
        );
        assert!(
            saw(&sim, i, since, &MemberEvent::Up(usurper.clone())),
            "node {i}"
        );
        assert!(sim.member(i, &old.name).is_none());
    }
}

#[test]
fn a_graceful_leave_is_seen_down_within_a_second() {
    let mut sim = converged_cluster(5, 5);
    let since = sim.now;
    let leaver = sim.id(2);
    let outputs = sim.node(2).leave();
    sim.apply(2, outputs);
    sim.run_for(SECOND);
    for i in [0, 1, 3, 4] {
        assert!(
            saw(&sim, i, since, &MemberEvent::Down(leaver.clone())),
            "node {i} did not see the leave"
        );
    }
    // The node that left stays quiet and reports no defunct state of its own.
    assert!(!saw(&sim, 2, since, &MemberEvent::Defunct));
    assert_eq!(sim.nodes[2].membership.status(), NodeStatus::Leaving);
}

#[test]
fn leaving_status_reaches_every_member_including_a_late_joiner() {
    let mut sim = converged_cluster(4, 6);
    let since = sim.now;
    let outputs = sim.node(1).set_status(NodeStatus::Leaving);
    sim.apply(1, outputs);
    sim.run_for(2 * SECOND);
    let leaving = sim.id(1);
    for i in [0, 2, 3] {
        assert!(
            saw(
                &sim,
                i,
                since,
                &MemberEvent::StatusChanged(leaving.clone(), NodeStatus::Leaving)
            ),
            "node {i}"
        );
        assert_eq!(
            sim.member(i, &leaving.name).unwrap().status,
            NodeStatus::Leaving
        );
    }

    // Long after the broadcast went around, a new node joins.
    sim.run_for(10 * SECOND);
    let late = sim.add_node(
        NodeId::new(name_of(4), addr_of(4)).with_bump(1),
        vec![addr_of(0)],
    );
    sim.start(late);
    assert!(sim.run_until(5 * SECOND, STEP, Sim::converged));
    sim.run_for(SECOND);
    let members = sim.members(late);
    assert_eq!(members.len(), 4);
    for member in members {
        let expected = if member.id == leaving {
            NodeStatus::Leaving
        } else {
            NodeStatus::Up
        };
        assert_eq!(member.status, expected, "{}", member.id.name);
    }
    assert!(saw(
        &sim,
        late,
        Duration::ZERO,
        &MemberEvent::StatusChanged(leaving, NodeStatus::Leaving)
    ));
}

#[test]
fn a_newer_status_replaces_an_older_one() {
    let mut sim = converged_cluster(3, 7);
    for status in [NodeStatus::Joining, NodeStatus::Up, NodeStatus::Leaving] {
        let outputs = sim.node(0).set_status(status);
        sim.apply(0, outputs);
        sim.run_for(SECOND);
        for i in [1, 2] {
            assert_eq!(sim.member(i, &name_of(0)).unwrap().status, status);
        }
    }
}

#[test]
fn garbage_datagrams_are_rejected_and_the_node_keeps_working() {
    let mut sim = converged_cluster(3, 8);
    let before = sim.members(0);

    assert!(matches!(sim.inject(0, &[]), Err(GossipError::Malformed(_))));
    let oversized = vec![0u8; GossipConfig::lan().max_packet_size + 1];
    assert!(matches!(
        sim.inject(0, &oversized),
        Err(GossipError::DatagramTooBig {
            len: 1025,
            max: 1024
        })
    ));
    let mut rng = SmallRng::seed_from_u64(99);
    for _ in 0..500 {
        let len = rng.random_range(1..=1024);
        let mut data = vec![0u8; len];
        rng.fill(&mut data[..]);
        assert!(sim.inject(0, &data).is_err());
    }
    // A real datagram, cut short.
    let real = sim
        .trace
        .iter()
        .find_map(|(_, _, output)| match output {
            GossipOutput::Send { to, data } if *to == addr_of(0) && data.len() > 20 => {
                Some(data.clone())
            }
            _ => None,
        })
        .unwrap();
    assert!(sim.inject(0, &real[..real.len() / 2]).is_err());
    assert_eq!(sim.members(0), before);

    // Still probing, gossiping and detecting failures.
    sim.run_for(3 * SECOND);
    assert!(sim.converged());
    let since = sim.now;
    let victim = sim.id(2);
    sim.stop(2);
    sim.run_for(5 * SECOND);
    assert!(saw(&sim, 0, since, &MemberEvent::Down(victim)));
}

#[test]
fn a_node_whose_seed_never_answers_keeps_reannouncing() {
    let mut sim = Sim::new(9);
    let silent_seed: SocketAddr = addr_of(9);
    let lonely = sim.add_node(
        NodeId::new("lonely", addr_of(0)).with_bump(1),
        vec![silent_seed],
    );
    sim.start(lonely);
    sim.run_for(Duration::from_millis(5500));

    let rounds: Vec<_> = sim
        .events(lonely, Duration::ZERO)
        .into_iter()
        .filter_map(|(_, e)| match e {
            MemberEvent::SeedsSilent { seeds, attempts } => Some((seeds, attempts)),
            _ => None,
        })
        .collect();
    let expected: Vec<_> = (1..=5).map(|n| (vec![silent_seed], n)).collect();
    assert_eq!(rounds, expected);
    // The first announce at start, then one per round.
    let announces = sim
        .undeliverable
        .iter()
        .filter(|(_, to)| *to == silent_seed)
        .count();
    assert_eq!(announces, 6);

    // Once the seed comes up, the lonely node joins and the rounds stop.
    let seed_node = sim.add_node(NodeId::new("seed", silent_seed).with_bump(1), vec![]);
    sim.start(seed_node);
    sim.run_for(2 * SECOND);
    assert!(sim.converged());
    let joined_at = sim.now;
    sim.run_for(5 * SECOND);
    assert!(!sim
        .events(lonely, joined_at)
        .iter()
        .any(|(_, e)| matches!(e, MemberEvent::SeedsSilent { .. })));
}

#[test]
fn a_node_that_lost_every_peer_goes_idle_and_rejoins() {
    let mut sim = converged_cluster(2, 10);
    let since = sim.now;
    sim.stop(0);
    sim.run_for(5 * SECOND);
    assert!(saw(&sim, 1, since, &MemberEvent::Idle));
    assert!(sim
        .events(1, since)
        .iter()
        .any(|(_, e)| matches!(e, MemberEvent::SeedsSilent { .. })));
    let restarted_at = sim.now;
    sim.restart(0);
    assert!(sim.run_until(5 * SECOND, STEP, Sim::converged));
    assert!(saw(&sim, 1, restarted_at, &MemberEvent::Joined));
}

#[test]
fn nodes_that_lost_every_peer_find_each_other_through_remembered_down_members() {
    // Node 0 is the only seed; it dies, then 1 and 2 lose each other too.
    let mut sim = converged_cluster(3, 12);
    sim.stop(0);
    sim.partition(1, 2);
    sim.run_for(5 * SECOND);
    let since = sim.now;
    for i in [1, 2] {
        assert!(saw(&sim, i, Duration::ZERO, &MemberEvent::Idle), "node {i}");
        assert!(sim.members(i).iter().all(|m| m.state == MemberState::Down));
    }
    sim.blocked.clear();
    assert!(sim.run_until(10 * SECOND, STEP, Sim::converged));
    // At least one of them had been declared down by the other and rejoined under a new bump.
    assert!([1, 2].iter().any(|&i| sim
        .events(i, since)
        .iter()
        .any(|(_, e)| matches!(e, MemberEvent::Rejoined(id) if id.bump == 2))));
}

fn scripted_run(seed: u64) -> Vec<(Duration, usize, GossipOutput)> {
    let mut sim = Sim::cluster(5, seed);
    sim.loss = 0.05;
    sim.run_for(3 * SECOND);
    let outputs = sim.node(1).set_status(NodeStatus::Joining);
    sim.apply(1, outputs);
    sim.stop(4);
    sim.run_for(5 * SECOND);
    sim.restart(4);
    sim.run_for(3 * SECOND);
    sim.trace
}

#[test]
fn the_same_seed_gives_the_same_outputs() {
    let first = scripted_run(11);
    assert!(first.len() > 500);
    assert_eq!(first, scripted_run(11));
}

#[test]
fn new_rejects_invalid_identities_configs_and_seed_lists() {
    let addr = addr_of(0);
    let lan = GossipConfig::lan;
    assert!(matches!(
        Membership::new(NodeId::new("", addr), vec![], lan(), 0),
        Err(GossipError::Identity(IdentityError::EmptyName))
    ));
    assert!(matches!(
        Membership::new(NodeId::new("a", addr).with_zone("z z"), vec![], lan(), 0),
        Err(GossipError::Identity(IdentityError::ZoneNotPrintable(_)))
    ));
    let mut config = lan();
    config.max_packet_size = 10;
    assert!(matches!(
        Membership::new(NodeId::new("a", addr), vec![], config, 0),
        Err(GossipError::Config(_))
    ));
    let seeds = vec![addr_of(1); MAX_SEEDS + 1];
    assert!(matches!(
        Membership::new(NodeId::new("a", addr), seeds, lan(), 0),
        Err(GossipError::TooManySeeds { .. })
    ));
}

#[test]
fn membership_can_move_between_threads() {
    fn assert_send<T: Send + Sync>() {}
    assert_send::<Membership>();
}

#[test]
fn start_skips_our_own_address_among_the_seeds() {
    let me = NodeId::new("a", addr_of(0));
    let mut membership =
        Membership::new(me, vec![addr_of(0), addr_of(1)], GossipConfig::lan(), 0).unwrap();
    let targets: Vec<_> = membership
        .start()
        .into_iter()
        .filter_map(|o| match o {
            GossipOutput::Send { to, .. } => Some(to),
            _ => None,
        })
        .collect();
    assert_eq!(targets, vec![addr_of(1)]);
}

#[test]
fn a_node_that_missed_a_join_learns_it_through_a_digest_triggered_sync() {
    let mut sim = Sim::new(7);
    // News of a join is passed on once, and nobody re-announces: only the sync tells.
    sim.config.max_transmissions = 1;
    sim.config.retransmit_mult = 1;
    sim.config.peer_announce_interval = 600 * SECOND;
    sim.config.down_announce_interval = 600 * SECOND;
    sim.config.push_pull_interval = 600 * SECOND;
    for i in 0..2 {
        let seeds = if i == 0 { vec![] } else { vec![addr_of(0)] };
        let node = sim.add_node(NodeId::new(name_of(i), addr_of(i)), seeds);
        sim.start(node);
    }
    assert!(sim.run_until(5 * SECOND, STEP, Sim::converged));
    assert_eq!(
        sim.nodes[0].membership.view_digest(),
        sim.nodes[1].membership.view_digest()
    );
    // Node 2 joins through node 0 but can never talk to node 1, and node 1 misses the one
    // gossip of the join from node 0.
    sim.partition(1, 2);
    sim.blocked.insert((0, 1));
    let node = sim.add_node(NodeId::new(name_of(2), addr_of(2)), vec![addr_of(0)]);
    sim.start(node);
    sim.run_for(Duration::from_millis(500));
    sim.blocked.remove(&(0, 1));
    assert!(!sim.nodes[1].membership.is_alive(&name_of(2)));
    let since = sim.now;
    assert!(
        sim.run_until(5 * SECOND, STEP, |s| s.nodes[1]
            .membership
            .is_alive(&name_of(2))),
        "node 1 never learned of node 2"
    );
    let synced = sim.trace.iter().any(|(at, from, output)| {
        *at >= since
            && *from == 0
            && matches!(output, GossipOutput::Send { to, data } if *to == addr_of(1) && data.first() == Some(&0))
    });
    assert!(synced, "node 0 sent node 1 no sync reply");
    assert_eq!(
        sim.nodes[1].membership.view_digest(),
        sim.nodes[0].membership.view_digest()
    );
}

#[test]
fn a_member_down_past_remove_down_after_is_reported_forgotten() {
    let mut sim = Sim::new(4);
    sim.config.remove_down_after = 20 * SECOND;
    for i in 0..4 {
        let seeds = if i == 0 { vec![] } else { vec![addr_of(0)] };
        let node = sim.add_node(NodeId::new(name_of(i), addr_of(i)).with_bump(1), seeds);
        sim.start(node);
        sim.run_for(Duration::from_millis(10));
    }
    assert!(sim.run_until(5 * SECOND, STEP, Sim::converged));
    let victim = sim.id(3);
    let stopped_at = sim.now;
    sim.stop(3);
    sim.run_for(5 * SECOND);
    let forgotten = MemberEvent::Forgotten(victim.clone());
    for i in sim.running() {
        assert!(saw(&sim, i, stopped_at, &MemberEvent::Down(victim.clone())));
        assert!(
            !saw(&sim, i, stopped_at, &forgotten),
            "still remembered as down"
        );
        assert!(sim.member(i, &victim.name).is_some());
    }
    sim.run_for(25 * SECOND);
    for i in sim.running() {
        // Whoever builds its view of the cluster from the members (a ring) must hear of it:
        // nothing else changes when gossip forgets a member.
        assert!(saw(&sim, i, stopped_at, &forgotten), "node {i}");
        assert!(sim.member(i, &victim.name).is_none(), "node {i}");
    }
}

#[test]
fn a_node_that_missed_a_status_broadcast_learns_it_through_a_digest_triggered_sync() {
    let mut sim = Sim::new(11);
    // Status records are passed on twice, and nothing re-sends them: only the sync tells.
    sim.config.max_transmissions = 2;
    sim.config.retransmit_mult = 1;
    sim.config.peer_announce_interval = 600 * SECOND;
    sim.config.down_announce_interval = 600 * SECOND;
    sim.config.push_pull_interval = 600 * SECOND;
    for i in 0..3 {
        let seeds = if i == 0 { vec![] } else { vec![addr_of(0)] };
        let node = sim.add_node(NodeId::new(name_of(i), addr_of(i)), seeds);
        sim.start(node);
    }
    assert!(sim.run_until(5 * SECOND, STEP, Sim::converged));
    let joiner = sim.id(2);
    let status_on = |sim: &Sim, node: usize| sim.member(node, &joiner.name).unwrap().status;
    let outputs = sim.node(2).set_status(NodeStatus::Joining);
    sim.apply(2, outputs);
    assert!(sim.run_until(5 * SECOND, STEP, |s| (0..2)
        .all(|i| status_on(s, i) == NodeStatus::Joining)));

    // Node 2 goes up while every datagram to node 1 is lost, until the record's
    // transmissions are spent.
    sim.blocked.insert((0, 1));
    sim.blocked.insert((2, 1));
    let outputs = sim.node(2).set_status(NodeStatus::Up);
    sim.apply(2, outputs);
    sim.run_for(Duration::from_millis(500));
    sim.blocked.clear();
    assert_eq!(status_on(&sim, 1), NodeStatus::Joining);

    let since = sim.now;
    assert!(
        sim.run_until(5 * SECOND, STEP, |s| (0..2)
            .all(|i| status_on(s, i) == NodeStatus::Up)),
        "node 1 never learned that node 2 is up"
    );
    assert!(saw(
        &sim,
        1,
        since,
        &MemberEvent::StatusChanged(joiner, NodeStatus::Up)
    ));
    let digests: Vec<u64> = (0..3)
        .map(|i| sim.nodes[i].membership.view_digest())
        .collect();
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
}
