//! The replica side's rules, one shard on one node: votes, fencing, appends, snapshot pages.

use crate::proto::Refusal;
use std::collections::BTreeMap;
use std::net::SocketAddr;

use ringkv_gossip::{GossipConfig, Membership, NodeId};
use ringkv_ring::{Ring, RingConfig, RingNode};

use super::audit::Audit;
use super::follower::{handle, Env};
use super::msg::{LogEntry, Position, ReplReply, ReplRequest, SnapshotSpan};
use super::{Ctx, ReplConfig, Replication, Shard, ShardMeta};
use crate::core::InboundId;
use crate::core::View;
use crate::hlc::Timestamp;
use crate::store::{MemoryStore, Store};
use crate::version::{decode_record, DvvSet, Record, Sibling};

/// What `handle` needs besides the shard, with no sabotage and no log audit.
macro_rules! env {
    ($config:expr) => {
        Env {
            config: $config,
            sabotage: crate::config::Sabotage::default(),
            audit: &mut Audit::new(false),
            closed: Vec::new(),
        }
    };
}

pub(super) struct Node {
    pub store: MemoryStore,
    pub membership: Membership,
    pub ring: Ring,
    pub addrs: BTreeMap<String, SocketAddr>,
}

pub(super) fn node() -> Node {
    let me = NodeId {
        name: "b".into(),
        addr: ([127, 0, 0, 1], 7002).into(),
        zone: None,
        bump: 0,
    };
    let nodes = ["a", "b", "c"].map(RingNode::new);
    Node {
        store: MemoryStore::new(),
        membership: Membership::new(me, Vec::new(), GossipConfig::default(), 1).unwrap(),
        ring: Ring::new(nodes, RingConfig::new(4, 3).unwrap()),
        addrs: BTreeMap::new(),
    }
}

fn primary_key(k: &[u8]) -> bool {
    k.starts_with(b"p/")
}

pub(super) fn ctx(n: &Node, now_ms: u64) -> Ctx<'_> {
    Ctx {
        view: View {
            me: "b",
            ring: &n.ring,
            store: &n.store,
            membership: &n.membership,
            addrs: &n.addrs,
            now_ms,
        },
        primary_key: &primary_key,
        durable: true,
        ring_id: RING_ID,
        chain: false,
    }
}

/// The ring id every message in these tests carries.
pub(super) const RING_ID: u64 = 7;

pub(super) fn shard_id() -> Vec<String> {
    vec!["a".into(), "b".into(), "c".into()]
}

pub(super) fn fresh() -> Shard {
    Shard::new(ShardMeta::default(), 1 << 20, 0)
}

pub(super) fn record(v: &str) -> Record {
    DvvSet::new(Sibling {
        value: Some(v.as_bytes().to_vec()),
        ts: Timestamp::default(),
        origin: "a".into(),
    })
}

/// An entry as a primary "a" logs it: its record descends from those of earlier offsets.
pub(super) fn entry(offset: u64, epoch: u64, key: &str, v: &str) -> LogEntry {
    let mut r = DvvSet::empty();
    for _ in 0..offset.max(1) {
        r = written(&r, "a", v);
    }
    LogEntry {
        offset,
        epoch,
        token: ringkv_ring::token(key.as_bytes()),
        key: key.as_bytes().to_vec(),
        record: r,
    }
}

pub(super) fn vote(epoch: u64, log: (u64, u64)) -> ReplRequest {
    ReplRequest::Vote {
        shard: shard_id(),
        epoch,
        log_epoch: log.0,
        offset: log.1,
    }
}

fn append(epoch: u64, replid: &str, from: u64, entries: Vec<LogEntry>) -> ReplRequest {
    ReplRequest::Append {
        shard: shard_id(),
        epoch,
        replid: replid.into(),
        prev_replid: "old".into(),
        prev_end: 2,
        from,
        entries,
        commit: 0,
        relay: None,
    }
}

fn value(n: &Node, key: &str) -> Option<Vec<u8>> {
    let bytes = n
        .store
        .get(ringkv_ring::token(key.as_bytes()), key.as_bytes())
        .unwrap()?;
    decode_record(&bytes).unwrap().values()[0].value.clone()
}

#[test]
fn one_vote_per_epoch_never_for_a_candidate_behind_and_kept_across_restarts() {
    let n = node();
    let config = ReplConfig::default();
    let mut st = fresh();
    st.meta.log_epoch = 1;
    st.meta.offset = 5;
    let id = shard_id();
    let c = ctx(&n, 10_000);
    let (r, sync) = handle(&mut st, env!(&config), &c, &id, "a", vote(2, (1, 4))).unwrap();
    assert!(matches!(r, ReplReply::Refused { ahead: true, .. }), "{r:?}");
    assert!(
        !sync && st.run_now,
        "a voter ahead of the candidate stands itself"
    );
    let (r, sync) = handle(&mut st, env!(&config), &c, &id, "a", vote(2, (1, 5))).unwrap();
    assert_eq!(r, ReplReply::Granted);
    assert!(sync, "the promise is synced before the answer");
    let (r, _) = handle(&mut st, env!(&config), &c, &id, "c", vote(2, (1, 9))).unwrap();
    assert!(
        matches!(r, ReplReply::Refused { promised: 2, .. }),
        "second vote in epoch 2: {r:?}"
    );
    assert_eq!(ShardMeta::load(&n.store, &id).unwrap().promised, 2);
}

/// A pre-vote answers like a vote but promises nothing: a candidate that cannot win never
/// raises the epoch a working primary is fenced by.
#[test]
fn a_pre_vote_promises_nothing_and_a_primary_heard_stays_unfenced() {
    let n = node();
    let config = ReplConfig::default();
    let mut st = fresh();
    let id = shard_id();
    let pre = |epoch: u64, log: (u64, u64)| ReplRequest::PreVote {
        shard: shard_id(),
        epoch,
        log_epoch: log.0,
        offset: log.1,
    };
    let (r, sync) = handle(
        &mut st,
        env!(&config),
        &ctx(&n, 10),
        &id,
        "c",
        pre(3, (0, 0)),
    )
    .unwrap();
    assert_eq!(r, ReplReply::Granted);
    assert!(!sync);
    assert_eq!(st.meta.promised, 0, "a pre-vote is no promise");
    assert_eq!(ShardMeta::load(&n.store, &id).unwrap().promised, 0);
    // Following a primary of epoch 1, it refuses a pre-vote while that primary is heard...
    handle(
        &mut st,
        env!(&config),
        &ctx(&n, 1_000),
        &id,
        "a",
        append(1, "r1", 0, vec![]),
    )
    .unwrap();
    let (r, _) = handle(
        &mut st,
        env!(&config),
        &ctx(&n, 1_200),
        &id,
        "c",
        pre(5, (0, 0)),
    )
    .unwrap();
    assert!(matches!(r, ReplReply::Refused { promised: 1, .. }), "{r:?}");
    // ...and the primary's appends still land.
    let (r, _) = handle(
        &mut st,
        env!(&config),
        &ctx(&n, 1_300),
        &id,
        "a",
        append(1, "r1", 0, vec![]),
    )
    .unwrap();
    assert!(!matches!(r, ReplReply::Fenced { .. }), "{r:?}");
}

#[test]
fn a_replica_that_heard_its_primary_within_the_lease_refuses_other_candidates() {
    let n = node();
    let config = ReplConfig::default();
    let mut st = fresh();
    let id = shard_id();
    let (r, _) = handle(
        &mut st,
        env!(&config),
        &ctx(&n, 1_000),
        &id,
        "a",
        append(1, "r1", 0, vec![]),
    )
    .unwrap();
    assert!(
        matches!(r, ReplReply::Behind(_)),
        "fresh replica asks for a resync: {r:?}"
    );
    let (r, _) = handle(
        &mut st,
        env!(&config),
        &ctx(&n, 1_500),
        &id,
        "c",
        vote(2, (0, 0)),
    )
    .unwrap();
    assert!(
        matches!(r, ReplReply::Refused { ahead: false, .. }),
        "{r:?}"
    );
    let later = ctx(&n, 1_000 + 1_000 + 1);
    let (r, _) = handle(&mut st, env!(&config), &later, &id, "c", vote(2, (0, 0))).unwrap();
    assert_eq!(r, ReplReply::Granted, "the lease ran out");
}

#[test]
fn appends_apply_in_order_are_idempotent_and_older_epochs_are_fenced() {
    let n = node();
    let config = ReplConfig::default();
    let mut st = fresh();
    st.meta.replid = "old".into();
    st.meta.offset = 2;
    let id = shard_id();
    let c = ctx(&n, 1);
    // Continues the previous lineage (PSYNC2): accepted, the replica takes the new id.
    let (r, sync) = handle(
        &mut st,
        env!(&config),
        &c,
        &id,
        "a",
        append(3, "r3", 2, vec![entry(3, 3, "p/x", "1")]),
    )
    .unwrap();
    assert_eq!(r, ReplReply::acked(3));
    assert!(sync);
    assert_eq!(
        st.meta.position(),
        Position {
            replid: "r3".into(),
            offset: 3
        }
    );
    assert_eq!(value(&n, "p/x").as_deref(), Some(&b"1"[..]));
    // A resent batch overlapping what is held applies only the new tail.
    let batch = vec![entry(3, 3, "p/x", "1"), entry(4, 3, "p/x", "2")];
    let (r, _) = handle(
        &mut st,
        env!(&config),
        &c,
        &id,
        "a",
        append(3, "r3", 2, batch),
    )
    .unwrap();
    assert_eq!(r, ReplReply::acked(4));
    assert_eq!(value(&n, "p/x").as_deref(), Some(&b"2"[..]));
    // A gap: the replica says where it stands instead.
    let (r, _) = handle(
        &mut st,
        env!(&config),
        &c,
        &id,
        "a",
        append(3, "r3", 6, vec![entry(7, 3, "p/x", "9")]),
    )
    .unwrap();
    assert_eq!(
        r,
        ReplReply::Behind(Position {
            replid: "r3".into(),
            offset: 4
        })
    );
    assert_eq!(value(&n, "p/x").as_deref(), Some(&b"2"[..]));
    // An old primary is fenced.
    let (r, _) = handle(
        &mut st,
        env!(&config),
        &c,
        &id,
        "c",
        append(2, "r2", 4, vec![entry(5, 2, "p/x", "old")]),
    )
    .unwrap();
    assert_eq!(r, ReplReply::Fenced { promised: 3 });
    assert_eq!(value(&n, "p/x").as_deref(), Some(&b"2"[..]));
}

#[test]
fn a_snapshot_replaces_the_primary_keys_of_its_span_and_nothing_else() {
    let n = node();
    let config = ReplConfig::default();
    let mut st = fresh();
    st.meta.replid = "diverged".into();
    st.meta.offset = 9;
    let id = shard_id();
    let put = |k: &str, v: &str| {
        let bytes = crate::version::encode_record(&record(v)).unwrap();
        n.store
            .put(ringkv_ring::token(k.as_bytes()), k.as_bytes(), &bytes)
            .unwrap();
    };
    put("p/stale", "x");
    put("q/other", "kept");
    let first = written(&DvvSet::empty(), "a", "1");
    put_record(&n, "q/newer", &written(&first, "c", "2"));
    let item = entry(0, 0, "p/new", "v");
    let quorum_item = entry(0, 0, "q/newer", "1");
    let page = ReplRequest::Snapshot {
        shard: id.clone(),
        epoch: 1,
        replid: "r1".into(),
        at: 4,
        at_epoch: 1,
        span: SnapshotSpan {
            start: 0,
            end: 0,
            after: None,
            upto: None,
        },
        items: vec![
            (item.token, item.key, item.record),
            (quorum_item.token, quorum_item.key, first),
        ],
        done: true,
    };
    let (r, _) = handle(&mut st, env!(&config), &ctx(&n, 1), &id, "a", page).unwrap();
    assert_eq!(r, ReplReply::acked(4));
    assert_eq!(
        value(&n, "p/stale"),
        None,
        "a primary key the snapshot lacks is dropped"
    );
    assert_eq!(value(&n, "p/new").as_deref(), Some(&b"v"[..]));
    assert_eq!(
        value(&n, "q/other").as_deref(),
        Some(&b"kept"[..]),
        "quorum keys untouched"
    );
    assert_eq!(
        value(&n, "q/newer").as_deref(),
        Some(&b"2"[..]),
        "a key back in quorum mode is merged, never rolled back"
    );
    assert_eq!(
        st.meta.position(),
        Position {
            replid: "r1".into(),
            offset: 4
        }
    );
    assert_eq!(st.full_syncs, 1);
}

/// A record written by `actor` over `base` (what a replica's write makes).
pub(super) fn written(base: &Record, actor: &str, v: &str) -> Record {
    let new = DvvSet::new_with_context(&base.join(), record(v).values()[0].clone());
    DvvSet::update(&new, base, actor)
}

fn put_record(n: &Node, key: &str, r: &Record) {
    let bytes = crate::version::encode_record(r).unwrap();
    n.store
        .put(ringkv_ring::token(key.as_bytes()), key.as_bytes(), &bytes)
        .unwrap();
}

#[test]
fn an_append_never_drops_what_a_replica_wrote_in_quorum_mode() {
    let n = node();
    let config = ReplConfig::default();
    let mut st = fresh();
    st.meta.replid = "old".into();
    st.meta.offset = 2;
    let id = shard_id();
    let first = written(&DvvSet::empty(), "a", "1");
    let later = written(&first, "c", "2");
    // q/k went back to quorum mode and this replica took a newer write before the entry that
    // the primary logged earlier reached it; p/x is still a primary key, behind the log.
    put_record(&n, "q/k", &later);
    put_record(&n, "p/x", &first);
    let entry = |offset, key: &str, r: &Record| LogEntry {
        record: r.clone(),
        ..entry(offset, 1, key, "")
    };
    let batch = vec![entry(3, "q/k", &first), entry(4, "p/x", &later)];
    let (r, _) = handle(
        &mut st,
        env!(&config),
        &ctx(&n, 1),
        &id,
        "a",
        append(3, "r3", 2, batch),
    )
    .unwrap();
    assert_eq!(r, ReplReply::acked(4));
    assert_eq!(
        value(&n, "q/k").as_deref(),
        Some(&b"2"[..]),
        "the newer write stays"
    );
    assert_eq!(
        value(&n, "p/x").as_deref(),
        Some(&b"2"[..]),
        "the log's record applies"
    );
}

#[test]
fn a_session_read_waits_until_the_replica_holds_the_write() {
    use super::Replication;
    use crate::core::coordinator::ClientId;
    use crate::core::Effect;
    use crate::proto::{ClientResponse, PeerReply, Session};

    let n = node();
    let mut repl = Replication::new(ReplConfig::default());
    let key = "p/k";
    let id = n.ring.preference_list(key.as_bytes()).to_vec();
    let send = |repl: &mut Replication, from: u64, entries: Vec<LogEntry>| {
        let mut out = Vec::new();
        let req = ReplRequest::Append {
            shard: id.clone(),
            epoch: 1,
            replid: "r1".into(),
            prev_replid: String::new(),
            prev_end: 0,
            from,
            entries,
            commit: 0,
            relay: None,
        };
        let (reply, _) = repl
            .on_request(&ctx(&n, 10), ("a", InboundId(1)), (req, RING_ID), &mut out)
            .unwrap();
        assert!(
            matches!(
                reply,
                PeerReply::Repl(ReplReply::Acked { .. }) | PeerReply::Repl(ReplReply::Behind(_))
            ),
            "{reply:?}"
        );
        out
    };
    // A fresh replica first takes a snapshot standing for offset 0 of lineage r1.
    let mut out = Vec::new();
    let page = ReplRequest::Snapshot {
        shard: id.clone(),
        epoch: 1,
        replid: "r1".into(),
        at: 0,
        at_epoch: 1,
        span: SnapshotSpan::default(),
        items: Vec::new(),
        done: true,
    };
    repl.on_request(&ctx(&n, 5), ("a", InboundId(1)), (page, RING_ID), &mut out);
    assert!(send(&mut repl, 0, vec![entry(1, 1, key, "one")]).is_empty());

    let mut out = Vec::new();
    let after = Session {
        replid: "r1".into(),
        offset: 2,
    };
    repl.session_read(
        &ctx(&n, 20),
        ClientId(7),
        key.as_bytes().to_vec(),
        after,
        5_000,
        &mut out,
    );
    assert!(
        out.is_empty(),
        "offset 1 does not hold the session's write at 2"
    );
    let out = send(&mut repl, 1, vec![entry(2, 1, key, "two")]);
    let answered: Vec<&Effect> = out
        .iter()
        .filter(|e| matches!(e, Effect::Reply { .. }))
        .collect();
    assert_eq!(answered.len(), 1, "{out:?}");
    match answered[0] {
        Effect::Reply {
            id: ClientId(7),
            result: Ok(ClientResponse::Got(read)),
        } => assert_eq!(read.values[0].data, b"two"),
        other => panic!("{other:?}"),
    }
    // Past its deadline a session read fails instead of waiting forever.
    let mut out = Vec::new();
    let ahead = Session {
        replid: "r1".into(),
        offset: 9,
    };
    repl.session_read(
        &ctx(&n, 30),
        ClientId(8),
        key.as_bytes().to_vec(),
        ahead,
        100,
        &mut out,
    );
    assert!(out.is_empty());
    repl.on_tick(&ctx(&n, 200), &mut out);
    assert!(
        out.iter().any(|e| matches!(
            e,
            Effect::Reply {
                id: ClientId(8),
                result: Err(_)
            }
        )),
        "{out:?}"
    );
}

#[test]
fn a_collect_sends_every_key_of_the_shard_whatever_this_node_knows_of_the_rules() {
    let n = node();
    let id = Replication::shard_of(&n.ring, b"q/0");
    let same: Vec<String> = (0..)
        .map(|i| format!("q/{i}"))
        .filter(|k| Replication::shard_of(&n.ring, k.as_bytes()) == id)
        .take(3)
        .collect();
    for k in &same {
        put_record(&n, k, &record("v"));
    }
    let (items, next) =
        super::follower::collect(&n.ring, &n.store, &id, Default::default(), 1 << 20).unwrap();
    let mut got: Vec<String> = items
        .iter()
        .map(|(_, k, _)| String::from_utf8(k.clone()).unwrap())
        .collect();
    got.sort();
    let mut want = same.clone();
    want.sort();
    assert_eq!(got, want, "quorum-mode keys too: the primary picks its own");
    assert!(next.is_none());
    // Pages are bounded in bytes: one key per page here, and nothing is skipped.
    let mut cursor = Default::default();
    let mut paged = Vec::new();
    loop {
        let (items, next) = super::follower::collect(&n.ring, &n.store, &id, cursor, 1).unwrap();
        assert!(items.len() <= 1);
        paged.extend(items.into_iter().map(|(_, k, _)| k));
        match next {
            Some(c) => cursor = c,
            None => break,
        }
    }
    assert_eq!(paged.len(), same.len());
}

#[test]
fn a_snapshot_page_that_changes_nothing_is_not_held_for_a_sync() {
    let n = node();
    let config = ReplConfig::default();
    let mut st = fresh();
    st.meta.replid = "diverged".into();
    let id = shard_id();
    let page = |items: Vec<(u64, Vec<u8>, Record)>, done| ReplRequest::Snapshot {
        shard: id.clone(),
        epoch: 1,
        replid: "r1".into(),
        at: 4,
        at_epoch: 1,
        span: SnapshotSpan::default(),
        items,
        done,
    };
    let c = ctx(&n, 1);
    let (_, sync) = handle(
        &mut st,
        env!(&config),
        &c,
        &id,
        "a",
        page(Vec::new(), false),
    )
    .unwrap();
    assert!(sync, "the first page forgets the log: synced");
    let (_, sync) = handle(
        &mut st,
        env!(&config),
        &c,
        &id,
        "a",
        page(Vec::new(), false),
    )
    .unwrap();
    assert!(!sync, "an empty range changes nothing");
    let e = entry(1, 1, "p/x", "v");
    let one = vec![(e.token, e.key.clone(), e.record.clone())];
    let (_, sync) = handle(
        &mut st,
        env!(&config),
        &c,
        &id,
        "a",
        page(one.clone(), false),
    )
    .unwrap();
    assert!(sync, "a page that wrote a key");
    let (_, sync) = handle(&mut st, env!(&config), &c, &id, "a", page(one, false)).unwrap();
    assert!(!sync, "the same key again changes nothing");
    let (r, sync) = handle(&mut st, env!(&config), &c, &id, "a", page(Vec::new(), true)).unwrap();
    assert!(sync, "the last page makes the snapshot count");
    assert_eq!(r, ReplReply::acked(4));
}

#[test]
fn a_node_whose_ring_differs_takes_no_part_in_replication() {
    use crate::proto::PeerReply;
    let n = node();
    let mut repl = Replication::new(ReplConfig::default());
    let id = Replication::shard_of(&n.ring, b"p/x");
    let ask = |ring| {
        let req = vote(3, (0, 0));
        let ReplRequest::Vote {
            epoch,
            log_epoch,
            offset,
            ..
        } = req
        else {
            unreachable!()
        };
        (
            ReplRequest::Vote {
                shard: id.clone(),
                epoch,
                log_epoch,
                offset,
            },
            ring,
        )
    };
    let (reply, _) = repl
        .on_request(
            &ctx(&n, 1),
            ("a", InboundId(1)),
            ask(RING_ID + 1),
            &mut Vec::new(),
        )
        .unwrap();
    assert!(
        matches!(&reply, PeerReply::Failed(e) if *e == Refusal::RingDiffers),
        "{reply:?}"
    );
    let (reply, _) = repl
        .on_request(
            &ctx(&n, 1),
            ("a", InboundId(1)),
            ask(RING_ID),
            &mut Vec::new(),
        )
        .unwrap();
    assert_eq!(reply, PeerReply::Repl(ReplReply::Granted));
}

#[test]
fn a_guessed_primary_that_denies_it_is_replaced_whatever_the_epochs() {
    let n = node();
    let ctx = ctx(&n, 1_000);
    let mut repl = Replication::new(ReplConfig::default());
    let shard = Replication::shard_of(&n.ring, b"p/x");
    assert!(repl.learn_primary(&ctx, b"p/x", "c", ("a", 5)));
    assert!(
        !repl.learn_primary(&ctx, b"p/x", "c", ("c", 3)),
        "an older epoch from a third node does not replace the guess"
    );
    assert_eq!(repl.guesses[&shard], ("a".to_string(), 5));
    assert!(
        repl.learn_primary(&ctx, b"p/x", "a", ("c", 3)),
        "the guessed primary itself says it does not lead"
    );
    assert_eq!(repl.guesses[&shard], ("c".to_string(), 3));
}

#[test]
fn a_ring_change_takes_up_every_shard_even_when_the_moved_log_was_never_used() {
    let mut n = node();
    let mut repl = Replication::new(ReplConfig::default());
    let id = shard_id();
    let (meta, _) = ShardMeta::load_bound(&n.store, &n.ring, &id, &mut None).unwrap();
    assert_eq!((meta.promised, meta.offset), (0, 0), "taken up, never used");
    repl.shards.insert(id, Shard::new(meta, 1 << 20, 0));
    n.ring = Ring::new(
        ["a", "b", "c", "d"].map(RingNode::new),
        RingConfig::new(4, 3).unwrap(),
    );
    let mut out = Vec::new();
    repl.hand_over(&ctx(&n, 1_000), &mut out);
    assert!(
        repl.take_up_all,
        "its keys now belong to other shards of this node, which must stand without a request"
    );
}
