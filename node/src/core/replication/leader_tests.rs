//! The primary side and elections, one shard on one node: commit and lease, linearizable
//! reads, candidacies that give way, and the full-shard rule.

use ringkv_ring::{Ring, RingConfig, RingNode};

use super::follower::handle;
use super::leader::{Leader, PendingRead};
use super::msg::{LogEntry, ReplReply, ReplRequest};
use super::tests::{ctx, entry, fresh, node, record, vote, RING_ID};
use super::{ReplConfig, Replication, Role};
use crate::core::coordinator::ClientId;
use crate::core::Effect;
use crate::core::InboundId;
use crate::proto::{ClientResponse, PeerReply};
use crate::store::Store;
use crate::version::{apply_policy, ConflictPolicy, DvvSet};

#[test]
fn a_primary_commits_what_a_majority_holds_and_keeps_its_lease_only_with_a_majority() {
    let mut leader = Leader::new(1, vec!["a".into(), "c".into()], 0);
    leader.durable = 7;
    leader.followers.get_mut("a").unwrap().acked = 5;
    leader.followers.get_mut("c").unwrap().acked = 2;
    assert_eq!(
        leader.commit(3),
        5,
        "its own 7 and a's 5: a majority holds 5"
    );
    assert!(
        leader.holds_lease(500, 1_000, 3),
        "the votes count until the first answers"
    );
    leader.followers.get_mut("a").unwrap().lease_ms = 1_200;
    assert!(
        leader.holds_lease(2_000, 1_000, 3),
        "a answered a call sent at 1.2 s"
    );
    assert!(
        !leader.holds_lease(2_300, 1_000, 3),
        "nobody answered within the lease"
    );
}

#[test]
fn a_first_primary_serves_once_it_has_every_replicas_keys_however_long_it_takes() {
    let mut leader = Leader::new(1, vec!["a".into(), "c".into()], 1_000);
    leader.first = true;
    assert!(leader.gathering(), "nothing gathered yet");
    leader.ready.insert("a".into());
    assert!(
        leader.gathering(),
        "a majority, but c may hold the only copy a read must see: wait for it"
    );
    leader.ready.insert("c".into());
    assert!(!leader.gathering(), "every replica heard");
    let mut continuing = Leader::new(1, vec!["a".into(), "c".into()], 1_000);
    continuing.first = false;
    assert!(
        !continuing.gathering(),
        "a lineage that continues a log serves at once"
    );
}

#[test]
fn a_linearizable_read_shows_only_what_a_majority_holds() {
    let n = node();
    let key = "p/x";
    let token = ringkv_ring::token(key.as_bytes());
    let id = Replication::shard_of(&n.ring, key.as_bytes());
    let followers = id.iter().filter(|x| *x != "b").cloned().collect();
    let mut leader = Leader::new(1, followers, 0);
    // The log: the epoch's first entry, x=1 (on a majority), x=2 (on this primary only).
    leader.barrier = 1;
    leader.durable = 3;
    for f in leader.followers.values_mut() {
        f.round = 1;
        f.acked = 1;
    }
    leader.followers.get_mut("a").unwrap().acked = 2;
    let read = |client| PendingRead {
        client: ClientId(client),
        token,
        key: key.as_bytes().to_vec(),
        index: 2,
        round: 1,
        deadline_ms: u64::MAX,
    };
    leader.reads.push(read(7));
    let mut st = fresh();
    st.backlog.push(LogEntry {
        key: Vec::new(),
        record: DvvSet::empty(),
        ..entry(1, 1, key, "")
    });
    st.backlog.push(entry(2, 1, key, "1"));
    st.backlog.push(entry(3, 1, key, "2"));
    st.meta.offset = 3;
    let stored = crate::version::encode_record(&record("2")).unwrap();
    n.store.put(token, key.as_bytes(), &stored).unwrap();
    st.role = Role::Primary(Box::new(leader));
    let mut repl = Replication::new(ReplConfig::default());
    repl.shards.insert(id.clone(), st);

    let answered = |out: &[Effect]| -> Vec<Vec<u8>> {
        out.iter()
            .filter_map(|e| match e {
                Effect::Reply {
                    result: Ok(ClientResponse::Got(r)),
                    ..
                } => Some(r.values[0].data.clone()),
                _ => None,
            })
            .collect()
    };
    let mut out = Vec::new();
    repl.settle(&ctx(&n, 1), &id, &mut out);
    assert_eq!(
        answered(&out),
        vec![b"1".to_vec()],
        "x=2 is stored but may still be lost by a failover"
    );
    if let Some(Role::Primary(leader)) = repl.shards.get_mut(&id).map(|s| &mut s.role) {
        leader.followers.get_mut("a").unwrap().acked = 3;
        leader.reads.push(read(8));
    }
    let mut out = Vec::new();
    repl.settle(&ctx(&n, 1), &id, &mut out);
    assert_eq!(answered(&out), vec![b"2".to_vec()], "x=2 is committed now");
}

#[test]
fn a_candidate_behind_a_voter_backs_off_and_the_voter_stands_past_its_epoch() {
    let n = node();
    let config = ReplConfig::default();
    let key = b"p/x";
    let id = Replication::shard_of(&n.ring, key);
    // The voter: its log is ahead of the candidate's, so it refuses and will outbid it.
    let mut voter = fresh();
    voter.meta.log_epoch = 1;
    voter.meta.offset = 5;
    let (r, _) = handle(
        &mut voter,
        super::follower::Env {
            config: &config,
            sabotage: crate::config::Sabotage::default(),
            audit: &mut super::audit::Audit::new(false),
            closed: Vec::new(),
        },
        &ctx(&n, 1),
        &id,
        "a",
        vote(7, (1, 4)),
    )
    .unwrap();
    assert!(matches!(r, ReplReply::Refused { ahead: true, .. }), "{r:?}");
    voter.retry_ms = 10_000;
    let mut repl = Replication::new(config.clone());
    repl.shards.insert(id.clone(), voter);
    repl.maybe_run(&ctx(&n, 2), &id, &mut Vec::new());
    match &repl.shards[&id].role {
        Role::Candidate(c) => assert_eq!(c.epoch, 8, "past the epoch it refused"),
        other => panic!("the voter ahead stands at once, whatever its last try: {other:?}"),
    }

    // The candidate: refused as behind, it stays out of the way for a failover period even
    // when clients keep asking it to serve.
    let mut repl = Replication::new(config.clone());
    let mut candidate = fresh();
    candidate.role = Role::Candidate(super::election::Candidacy {
        epoch: 3,
        votes: Default::default(),
        deadline_ms: u64::MAX,
        pre: false,
    });
    repl.shards.insert(id.clone(), candidate);
    let refused = ReplReply::Refused {
        promised: 2,
        ahead: true,
        reason: String::new(),
    };
    repl.on_vote(
        &ctx(&n, 1_000),
        "c",
        &id,
        (3, false),
        Ok(refused),
        &mut Vec::new(),
    );
    assert!(matches!(repl.shards[&id].role, Role::Replica));
    let soon = 1_000 + super::millis(config.failover_timeout) - 1;
    assert!(repl.admit_write(&ctx(&n, soon), key, 1).is_err());
    assert!(
        matches!(repl.shards[&id].role, Role::Replica),
        "no new candidacy while it backs off"
    );
    let later = 1_000 + super::millis(config.failover_timeout);
    assert!(repl.admit_write(&ctx(&n, later), key, 1).is_err());
    assert!(matches!(repl.shards[&id].role, Role::Candidate(_)));
}

#[test]
fn a_node_that_knows_too_few_replicas_neither_serves_nor_votes_for_them() {
    // Just restarted and not yet rejoined: its ring holds itself only, so the key's list is
    // [b], whose "majority" b alone would make.
    let mut alone = node();
    alone.ring = Ring::new([RingNode::new("b")], RingConfig::new(4, 3).unwrap());
    let mut repl = Replication::new(ReplConfig::default());
    let err = repl.route(&ctx(&alone, 1), b"p/x").unwrap_err();
    assert!(
        err.to_string().contains("knows 1 of the key's 3 replicas"),
        "{err}"
    );
    assert!(repl.shards.is_empty(), "no shard state for a partial list");

    // A node with the whole ring votes in its own shards, never in a partial list.
    let n = node();
    let mut repl = Replication::new(ReplConfig::default());
    let ask = |shard: Vec<String>| ReplRequest::Vote {
        shard,
        epoch: 1,
        log_epoch: 0,
        offset: 0,
    };
    let partial = vec!["a".to_string(), "b".to_string()];
    let (reply, _) = repl
        .on_request(
            &ctx(&n, 1),
            ("a", InboundId(1)),
            (ask(partial), RING_ID),
            &mut Vec::new(),
        )
        .unwrap();
    assert!(matches!(reply, PeerReply::Failed(_)), "{reply:?}");
    let full = Replication::shard_of(&n.ring, b"p/x");
    let voter = full.iter().find(|x| *x != "b").unwrap().clone();
    let (reply, _) = repl
        .on_request(
            &ctx(&n, 1),
            (&voter, InboundId(1)),
            (ask(full), RING_ID),
            &mut Vec::new(),
        )
        .unwrap();
    assert_eq!(reply, PeerReply::Repl(ReplReply::Granted));
}

/// A first primary gathering a key from two replicas whose closed logs of one old list differ:
/// the value of the log ahead is kept alone, in whichever order the replicas answer; values
/// under logs of different lists merge as any merge does: siblings, or one under `lww`.
#[test]
fn a_gather_keeps_the_value_of_the_closed_log_ahead_and_drops_the_uncommitted_one() {
    use super::leader::SyncState;
    use super::msg::{ClosedLog, Cursor};
    use super::tests::written;

    let key = "p/x";
    let token = ringkv_ring::token(key.as_bytes());
    let base = written(&DvvSet::empty(), "a", "1");
    // Concurrent successors of 1: "2" logged by an old primary and never committed, "3"
    // committed by the next primary of the same list.
    let uncommitted = written(&base, "c", "2");
    let committed = written(&base, "a", "3");
    let closed = |list, log_epoch, offset| ClosedLog {
        list,
        log_epoch,
        offset,
        ranges: vec![(0, 0)],
    };
    let gather = |order: [(&str, crate::version::Record, ClosedLog); 2],
                  policy: ConflictPolicy|
     -> Vec<Vec<u8>> {
        let n = node();
        let id = Replication::shard_of(&n.ring, key.as_bytes());
        let followers: Vec<String> = id.iter().filter(|x| *x != "b").cloned().collect();
        let mut leader = Leader::new(1, followers, 0);
        leader.first = true;
        let mut st = fresh();
        st.role = Role::Primary(Box::new(leader));
        let mut repl = Replication::new(ReplConfig::default()).with_policy(policy);
        repl.shards.insert(id.clone(), st);
        for (peer, value, log) in order {
            if let Some(Role::Primary(leader)) = repl.shards.get_mut(&id).map(|s| &mut s.role) {
                let f = leader.followers.get_mut(peer).unwrap();
                f.state = SyncState::Collect(Cursor::default());
                f.in_flight = Some(0);
            }
            let reply = ReplReply::Gathered {
                items: vec![(token, key.as_bytes().to_vec(), value)],
                closed: vec![log],
                next: None,
            };
            repl.on_sync_reply(&ctx(&n, 1), &id, peer, 1, Ok(reply), &mut Vec::new());
        }
        let bytes = n.store.get(token, key.as_bytes()).unwrap().unwrap();
        let mut values: Vec<Vec<u8>> = crate::version::decode_record(&bytes)
            .unwrap()
            .values()
            .iter()
            .filter_map(|s| s.value.clone())
            .collect();
        values.sort();
        values
    };
    let behind = ("c", uncommitted.clone(), closed(9, 1, 5));
    let ahead = ("a", committed.clone(), closed(9, 2, 6));
    for policy in [ConflictPolicy::Siblings, ConflictPolicy::Lww] {
        assert_eq!(
            gather([behind.clone(), ahead.clone()], policy),
            vec![b"3".to_vec()],
            "the log ahead replaces the uncommitted value"
        );
        assert_eq!(
            gather([ahead.clone(), behind.clone()], policy),
            vec![b"3".to_vec()],
            "the uncommitted value behind is dropped"
        );
    }
    let other_list = ("c", uncommitted.clone(), closed(8, 1, 5));
    assert_eq!(
        gather(
            [other_list.clone(), ahead.clone()],
            ConflictPolicy::Siblings
        ),
        vec![b"2".to_vec(), b"3".to_vec()],
        "logs of different lists cannot be compared: both are kept"
    );
    let lww = apply_policy(&uncommitted.sync(&committed), ConflictPolicy::Lww);
    let winner: Vec<Vec<u8>> = lww
        .values()
        .iter()
        .filter_map(|s| s.value.clone())
        .collect();
    assert_eq!(winner.len(), 1);
    assert_eq!(
        gather([other_list, ahead], ConflictPolicy::Lww),
        winner,
        "under lww a primary's key keeps one value, as a read would"
    );
}
