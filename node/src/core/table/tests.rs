//! The table mechanism inside whole cores: a few nodes whose gossip is carried by hand.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use ringkv_gossip::{GossipConfig, NodeId};

use super::super::{ClientId, Effect, InboundId, Input, NodeCore, Timer};
use crate::config::CoreConfig;
use crate::proto::{ClientError, ClientRequest, ClientResponse, PeerReply, PeerRequest};
use crate::store::{MemoryStore, Store};
use crate::table::{Mode, PrimaryOptions, RangeTable, SyncReplicas, TableLimits};

const LIMITS: TableLimits = TableLimits {
    max_rules: 1024,
    max_prefix: 4096,
    replicas: 3,
};

pub(in crate::core) fn addr(i: usize) -> SocketAddr {
    ([127, 0, 0, 1], 7001 + i as u16).into()
}

fn core(i: usize, store: Arc<MemoryStore>, config: CoreConfig) -> NodeCore {
    let me = NodeId {
        name: format!("n{}", i + 1),
        addr: addr(i),
        zone: None,
        bump: 0,
    };
    let seeds = if i == 0 { Vec::new() } else { vec![addr(0)] };
    NodeCore::new(me, seeds, config, GossipConfig::default(), store, i as u64).unwrap()
}

pub(in crate::core) fn primary(sync: SyncReplicas) -> Mode {
    Mode::Primary(PrimaryOptions {
        sync,
        ..PrimaryOptions::default()
    })
}

/// `n` cores that see each other alive: gossip datagrams delivered at once, gossip timers
/// fired in time order over a few simulated seconds, everything else dropped.
pub(in crate::core) fn cluster(n: usize) -> (Vec<NodeCore>, Vec<Arc<MemoryStore>>) {
    cluster_with(n, &CoreConfig::default())
}

/// [`cluster`] with every core's settings `config`.
pub(in crate::core) fn cluster_with(
    n: usize,
    config: &CoreConfig,
) -> (Vec<NodeCore>, Vec<Arc<MemoryStore>>) {
    let stores: Vec<Arc<MemoryStore>> = (0..n).map(|_| Arc::new(MemoryStore::new())).collect();
    let mut cores: Vec<NodeCore> = (0..n)
        .map(|i| core(i, stores[i].clone(), config.clone()))
        .collect();
    let mut timers: BTreeMap<(u64, u64), (usize, Timer)> = BTreeMap::new();
    let mut seq = 0;
    let mut pending: Vec<(usize, u64, Vec<Effect>)> = Vec::new();
    for (i, c) in cores.iter_mut().enumerate() {
        pending.push((i, 0, c.start()));
    }
    loop {
        while let Some((from, at, effects)) = pending.pop() {
            for effect in effects {
                match effect {
                    Effect::Datagram { to, data } => {
                        let to = (0..n).find(|&j| addr(j) == to).unwrap();
                        let out = cores[to].handle(at, Input::Datagram(data));
                        pending.push((to, at, out));
                    }
                    Effect::Schedule {
                        after,
                        timer: timer @ Timer::Gossip(_),
                    } => {
                        seq += 1;
                        let due = at + after.as_millis() as u64;
                        timers.insert((due, seq), (from, timer));
                    }
                    _ => {}
                }
            }
        }
        let Some(((due, _), (i, timer))) = timers.pop_first() else {
            break;
        };
        if due > 3_000 {
            break;
        }
        let out = cores[i].handle(due, Input::Timer(timer));
        pending.push((i, due, out));
    }
    for c in &cores {
        let alive = c.members().iter().filter(|m| m.state == "alive").count();
        assert_eq!(alive, n, "{} sees {:?}", c.me().name, c.members());
    }
    (cores, stores)
}

/// The table calls among `effects`: (destination, table sent).
fn table_calls(effects: &[Effect]) -> Vec<(SocketAddr, RangeTable)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Call {
                call,
                to,
                req: PeerRequest::Table { table },
            } => {
                assert_eq!(call.owner, crate::core::Owner::Table);
                Some((*to, table.clone()))
            }
            _ => None,
        })
        .collect()
}

pub(in crate::core) fn client(
    core: &mut NodeCore,
    req: ClientRequest,
) -> (Result<ClientResponse, ClientError>, Vec<Effect>) {
    let mut effects = core.handle(
        1,
        Input::Client {
            id: ClientId(1),
            req,
        },
    );
    let at = effects
        .iter()
        .position(|e| matches!(e, Effect::Reply { .. }))
        .unwrap();
    let Effect::Reply { result, .. } = effects.remove(at) else {
        unreachable!()
    };
    (result, effects)
}

/// Hand `table` to `core` as if from peer `from`; its reply and whether it is synced first.
pub(in crate::core) fn receive(
    core: &mut NodeCore,
    from: &str,
    table: RangeTable,
) -> (PeerReply, bool) {
    let id = InboundId(9);
    let req = PeerRequest::Table { table };
    let effects = core.handle(
        1,
        Input::PeerRequest {
            id,
            from: from.into(),
            req,
        },
    );
    match effects.as_slice() {
        [Effect::Respond { reply, sync, .. }] => (reply.clone(), *sync),
        other => panic!("expected one response, got {other:?}"),
    }
}

pub(in crate::core) fn range_set(prefix: &str, mode: Mode) -> ClientRequest {
    ClientRequest::RangeSet {
        prefix: prefix.as_bytes().to_vec(),
        mode,
    }
}

#[test]
fn a_set_is_kept_answered_with_the_table_and_pushed_to_every_live_peer() {
    let (mut cores, stores) = cluster(3);
    let (result, effects) = client(
        &mut cores[0],
        range_set("user/", primary(SyncReplicas::Majority)),
    );
    let Ok(ClientResponse::RangeTable(rows)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].prefix, b"user/");
    assert_eq!(rows[0].stamp.node, "n1");
    assert!(cores[0].table().lookup(b"user/1").is_some());
    assert_eq!(stores[0].unsynced_keys(), 0, "synced before the answer");
    assert_eq!(
        &RangeTable::load(stores[0].as_ref()).unwrap(),
        cores[0].table()
    );

    let mut to: Vec<SocketAddr> = table_calls(&effects).iter().map(|(a, _)| *a).collect();
    to.sort();
    assert_eq!(to, [addr(1), addr(2)]);
    for (dest, table) in table_calls(&effects) {
        let peer = &mut cores[dest.port() as usize - 7001];
        let (reply, _) = receive(peer, "n1", table);
        assert_eq!(reply, PeerReply::Table(None), "same table after merging");
        assert!(peer.table().lookup(b"user/1").is_some());
    }

    let (listed, _) = client(&mut cores[2], ClientRequest::RangeList);
    assert_eq!(listed, Ok(ClientResponse::RangeTable(rows)));
}

#[test]
fn a_newer_peer_table_is_merged_kept_and_synced_before_the_answer() {
    let store = Arc::new(MemoryStore::new());
    let mut n1 = core(0, store.clone(), CoreConfig::default());
    let mut theirs = RangeTable::new();
    theirs
        .set(b"a".to_vec(), primary(SyncReplicas::None), "n2", &LIMITS)
        .unwrap();

    let (reply, sync) = receive(&mut n1, "n2", theirs.clone());
    assert_eq!(reply, PeerReply::Table(None));
    assert!(sync, "a changed table is synced like other metadata");
    assert_eq!(n1.table(), &theirs);
    assert_eq!(RangeTable::load(store.as_ref()).unwrap(), theirs);

    let (reply, sync) = receive(&mut n1, "n2", theirs);
    assert_eq!(reply, PeerReply::Table(None));
    assert!(!sync, "nothing changed, nothing to sync");
}

#[test]
fn a_stale_peer_table_is_answered_with_ours() {
    let mut n1 = core(0, Arc::new(MemoryStore::new()), CoreConfig::default());
    let (result, _) = client(&mut n1, range_set("a", primary(SyncReplicas::None)));
    assert!(result.is_ok());
    let (result, _) = client(&mut n1, range_set("a", Mode::Quorum));
    assert!(result.is_ok());
    let mut stale = RangeTable::new();
    stale
        .set(b"a".to_vec(), primary(SyncReplicas::None), "n2", &LIMITS)
        .unwrap();
    stale
        .set(b"b".to_vec(), Mode::Quorum, "n2", &LIMITS)
        .unwrap();

    let (reply, _) = receive(&mut n1, "n2", stale.clone());
    let PeerReply::Table(Some(ours)) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(&ours, n1.table());
    assert!(
        n1.table().lookup(b"a").is_none(),
        "our newer quorum rule stays"
    );
    assert!(n1.table().get(b"b").is_some(), "their other rule is taken");
    stale.merge(&ours);
    assert_eq!(&stale, n1.table(), "one call leaves both sides equal");
}

#[test]
fn a_peer_table_outside_the_bounds_is_refused_and_changes_nothing() {
    let mut n1 = core(0, Arc::new(MemoryStore::new()), CoreConfig::default());
    let wide = TableLimits {
        replicas: 9,
        ..LIMITS
    };
    let mut bad = RangeTable::new();
    bad.set(b"a".to_vec(), primary(SyncReplicas::Count(5)), "n2", &wide)
        .unwrap();
    let (reply, sync) = receive(&mut n1, "n2", bad);
    assert!(
        matches!(&reply, PeerReply::Failed(e) if e.to_string().contains("sync replicas 5")),
        "{reply:?}"
    );
    assert!(!sync);
    assert!(n1.table().is_empty());
}

#[test]
fn a_bad_set_is_refused_with_the_reason_and_nothing_is_pushed() {
    let (mut cores, _) = cluster(2);
    for (req, says) in [
        (
            range_set("p", primary(SyncReplicas::Count(5))),
            "sync replicas 5",
        ),
        (range_set("", Mode::Quorum), "must not be empty"),
    ] {
        let (result, effects) = client(&mut cores[0], req);
        assert!(
            matches!(&result, Err(ClientError::BadRange(e)) if e.contains(says)),
            "{result:?}"
        );
        assert!(table_calls(&effects).is_empty());
        assert!(cores[0].table().is_empty());
    }
}

#[test]
fn ticks_push_pull_with_the_live_peers_in_turn_and_merge_the_answer() {
    let (mut cores, _) = cluster(3);
    let mut dests = Vec::new();
    for _ in 0..4 {
        let effects = cores[0].handle(1, Input::Timer(Timer::Table));
        let calls = table_calls(&effects);
        assert_eq!(calls.len(), 1, "one peer per tick");
        dests.push(calls[0].0);
        assert!(effects.iter().any(|e| matches!(
            e,
            Effect::Schedule {
                timer: Timer::Table,
                ..
            }
        )));
    }
    assert_eq!(dests, [addr(1), addr(2), addr(1), addr(2)]);

    let mut theirs = RangeTable::new();
    theirs
        .set(b"x".to_vec(), Mode::Quorum, "n2", &LIMITS)
        .unwrap();
    let effects = cores[0].handle(1, Input::Timer(Timer::Table));
    let Some(Effect::Call { call, .. }) = effects.first() else {
        panic!("{effects:?}")
    };
    let reply = Ok(PeerReply::Table(Some(theirs.clone())));
    cores[0].handle(2, Input::PeerReply { call: *call, reply });
    assert_eq!(cores[0].table(), &theirs);
}

#[test]
fn the_table_survives_a_restart_and_a_power_loss() {
    let store = Arc::new(MemoryStore::new());
    let mut n1 = core(0, store.clone(), CoreConfig::default());
    assert!(n1.start().iter().any(|e| matches!(
        e,
        Effect::Schedule {
            timer: Timer::Table,
            ..
        }
    )));
    let (result, _) = client(
        &mut n1,
        range_set("orders/", primary(SyncReplicas::Count(2))),
    );
    assert!(result.is_ok());
    let before = n1.table().clone();
    drop(n1);
    store.crash();
    let n1 = core(0, store.clone(), CoreConfig::default());
    assert_eq!(n1.table(), &before);
    assert!(n1.table().has_primary());

    store
        .meta_put(crate::table::TABLE_META_KEY, b"\xff\xff")
        .unwrap();
    let me = NodeId {
        name: "n1".into(),
        addr: addr(0),
        zone: None,
        bump: 1,
    };
    let config = CoreConfig::default();
    let broken = NodeCore::new(me, Vec::new(), config, GossipConfig::default(), store, 0);
    assert!(
        broken.is_err(),
        "an unreadable table stops the start with an error"
    );
}

#[test]
fn a_lone_node_answers_a_set_and_pushes_to_nobody() {
    let mut n1 = core(0, Arc::new(MemoryStore::new()), CoreConfig::default());
    let (result, effects) = client(&mut n1, range_set("k", Mode::Quorum));
    assert!(result.is_ok());
    assert!(table_calls(&effects).is_empty());
}

/// The reply among `effects`, if any.
fn replied(effects: &[Effect]) -> Option<&Result<ClientResponse, ClientError>> {
    effects.iter().find_map(|e| match e {
        Effect::Reply { result, .. } => Some(result),
        _ => None,
    })
}

/// Whether `effects` read the key from replicas (a `Get` being served).
fn reads(effects: &[Effect]) -> bool {
    effects.iter().any(|e| {
        matches!(
            e,
            Effect::Call {
                req: PeerRequest::Read { .. },
                ..
            }
        )
    })
}

fn get(core: &mut NodeCore, now_ms: u64, id: u64) -> Vec<Effect> {
    let req = ClientRequest::Get {
        key: b"k".to_vec(),
        r: None,
        wait_repair: false,
    };
    let id = ClientId(id);
    core.handle(now_ms, Input::Client { id, req })
}

fn table_unknown(effects: &[Effect]) -> bool {
    use crate::proto::Unavailable;
    matches!(
        replied(effects),
        Some(Err(ClientError::Unavailable(Unavailable::TableUnknown)))
    )
}

/// A node that joined through a seed cannot tell a primary-mode key from a quorum one until
/// it holds the cluster's table: a key request waits, unanswered and unserved, until the node
/// has exchanged tables with a peer that is not itself joining, and is then served.
#[test]
fn a_joined_node_holds_key_requests_until_it_has_a_settled_peers_table() {
    let (mut cores, _) = cluster(3);
    // The join's exchanges were not delivered: n2 does not know the table yet.
    let effects = get(&mut cores[1], 1, 1);
    assert!(
        replied(&effects).is_none() && !reads(&effects),
        "{effects:?}"
    );
    assert!(reads(&get(&mut cores[0], 1, 1)), "n1 started the cluster");

    // n3 is joining too: its table says nothing about the cluster's.
    let theirs = cores[2].table().clone();
    receive(&mut cores[1], "n3", theirs);
    assert!(replied(&get(&mut cores[1], 1, 2)).is_none());
    // n1's answer to an exchange does, and the waiting requests are served.
    let effects = cores[1].handle(1, Input::Timer(Timer::Table));
    let Some(Effect::Call { call, to, .. }) =
        effects.iter().find(|e| matches!(e, Effect::Call { .. }))
    else {
        panic!("{effects:?}")
    };
    assert_eq!(*to, addr(0), "peers in name order: n1 first");
    let reply = Ok(PeerReply::Table(None));
    let effects = cores[1].handle(2, Input::PeerReply { call: *call, reply });
    let served = effects
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::Schedule {
                    timer: Timer::Deadline(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(served, 2, "both waiting gets are served: {effects:?}");
    assert!(reads(&effects));
    assert!(reads(&get(&mut cores[1], 3, 3)), "n2 now serves at once");
}

/// The wait is bounded: a request waits at most the request timeout, and at most
/// `max_in_flight` wait; past either it gets the retryable `table_unknown` (nothing written).
#[test]
fn a_request_waiting_for_the_table_is_refused_retryably_past_its_bounds() {
    let mut config = CoreConfig::default();
    config.limits.max_in_flight = 2;
    let (mut cores, _) = cluster_with(2, &config);
    assert!(replied(&get(&mut cores[1], 1_000, 1)).is_none());
    assert!(replied(&get(&mut cores[1], 2_000, 2)).is_none());
    let effects = get(&mut cores[1], 2_000, 3);
    assert!(table_unknown(&effects), "the queue is full: {effects:?}");
    let e = ClientError::Unavailable(crate::proto::Unavailable::TableUnknown);
    assert!(e.passing_refusal(), "clients and nodes retry it");

    let timeout_ms = config.request_timeout.as_millis() as u64;
    let effects = cores[1].handle(1_000 + timeout_ms - 1, Input::Timer(Timer::Table));
    assert!(replied(&effects).is_none(), "not yet: {effects:?}");
    let effects = cores[1].handle(1_000 + timeout_ms, Input::Timer(Timer::Table));
    let refused: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Reply { id, result } => Some((id.0, result.is_err())),
            _ => None,
        })
        .collect();
    assert_eq!(
        refused,
        vec![(1, true)],
        "the oldest alone has waited long enough"
    );
    assert!(table_unknown(&effects));
}
