//! The bounds the core enforces are counted where they are hit: each test provokes one and
//! reads its count in [`NodeCore::limit_hits`] (replication's are in
//! `replication/chain_tests.rs`).

use std::sync::Arc;

use ringkv_gossip::{GossipConfig, NodeId};

use super::table::tests::{addr, cluster_with};
use super::{ClientId, Effect, InboundId, Input, NodeCore, Timer};
use crate::config::CoreConfig;
use crate::hlc::Timestamp;
use crate::limits::Limit;
use crate::merkle::ExchangeMsg;
use crate::proto::{ClientError, ClientRequest, PeerReply, PeerRequest};
use crate::store::{MemoryStore, Store};
use crate::version::{encode_record, DvvSet, Sibling};

fn hits(core: &NodeCore, limit: Limit) -> u64 {
    core.limit_hits()
        .into_iter()
        .find(|(l, _)| *l == limit)
        .map_or(0, |(_, n)| n)
}

/// A started node alone in its ring, over `store`.
fn lone(store: Arc<MemoryStore>) -> NodeCore {
    let me = NodeId::new("n1", addr(0));
    let config = CoreConfig::default();
    let mut core = NodeCore::new(me, vec![], config, GossipConfig::default(), store, 1).unwrap();
    core.start();
    core
}

/// Stores `key` with a live value, as a replica holds it.
fn put(store: &MemoryStore, key: &[u8]) {
    let record = DvvSet::new(Sibling {
        value: Some(b"v".to_vec()),
        ts: Timestamp::default(),
        origin: "n1".into(),
    });
    let token = ringkv_ring::token(key);
    store
        .put(token, key, &encode_record(&record).unwrap())
        .unwrap();
}

/// What `core` answers peer `from`'s `req`.
fn ask(core: &mut NodeCore, now: u64, req: PeerRequest) -> PeerReply {
    let effects = core.handle(
        now,
        Input::PeerRequest {
            id: InboundId(3),
            from: "n2".into(),
            req,
        },
    );
    effects
        .into_iter()
        .find_map(|e| match e {
            Effect::Respond { reply, .. } => Some(reply),
            _ => None,
        })
        .expect("an answer")
}

#[test]
fn a_client_request_past_max_in_flight_is_refused_and_counted() {
    let config = CoreConfig {
        limits: crate::config::Limits {
            max_in_flight: 1,
            ..Default::default()
        },
        ..CoreConfig::default()
    };
    let (mut cores, _) = cluster_with(3, &config);
    let put = |key: &str| ClientRequest::Put {
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
        context: None,
        w: Some(3),
    };
    let core = &mut cores[0];
    // The replicas' answers never come: the first put stays in flight.
    let first = core.handle(
        4_000,
        Input::Client {
            id: ClientId(1),
            req: put("a"),
        },
    );
    assert!(first.iter().all(|e| !matches!(e, Effect::Reply { .. })));
    assert_eq!(core.in_flight(), 1);
    assert_eq!(hits(core, Limit::InFlight), 0);
    for n in 1..=3 {
        let refused = core.handle(
            4_000,
            Input::Client {
                id: ClientId(1 + n),
                req: put("b"),
            },
        );
        assert!(
            refused.iter().any(|e| matches!(
                e,
                Effect::Reply {
                    result: Err(ClientError::Overloaded { in_flight: 1 }),
                    ..
                }
            )),
            "{refused:?}"
        );
        assert_eq!(hits(core, Limit::InFlight), n);
    }
}

#[test]
fn a_key_page_asked_outside_its_bounds_is_clamped_and_counted() {
    let store = Arc::new(MemoryStore::new());
    for i in 0..1_100 {
        put(&store, format!("k{i}").as_bytes());
    }
    let mut core = lone(store);
    let keys = |limit| PeerRequest::Keys {
        from: 0,
        upto: u64::MAX,
        limit,
    };
    let listed = |reply: PeerReply| match reply {
        PeerReply::Keys { keys, .. } => keys.len(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        listed(ask(&mut core, 10, keys(100))),
        99,
        "cut before the last token"
    );
    assert_eq!(hits(&core, Limit::KeyPage), 0, "within the bounds");
    assert!(listed(ask(&mut core, 10, keys(5_000))) <= 1_000);
    assert_eq!(hits(&core, Limit::KeyPage), 1);
    assert!(listed(ask(&mut core, 10, keys(1))) <= 16);
    assert_eq!(hits(&core, Limit::KeyPage), 2);
}

#[test]
fn an_exchange_message_past_the_limits_fails_the_exchange_and_is_counted() {
    let mut core = lone(Arc::new(MemoryStore::new()));
    let (start, end) = core.ring().range_bounds(0).expect("a range");
    let depth = CoreConfig::default().anti_entropy.depth;
    let exchange = |msg| PeerRequest::Exchange {
        session: 1,
        start,
        end,
        msg,
    };
    // A root that differs from this node's (its range is empty), so the descent begins.
    let open = ExchangeMsg::Open {
        start,
        end,
        depth,
        root: [1; 32],
    };
    let reply = ask(&mut core, 10, exchange(open));
    assert!(matches!(reply, PeerReply::Exchange(Some(_))), "{reply:?}");
    assert_eq!(hits(&core, Limit::MerkleExchange), 0);
    let flood = ExchangeMsg::Hashes {
        level: 1,
        from: 0,
        hashes: vec![[0; 32]; 5_000],
    };
    let reply = ask(&mut core, 10, exchange(flood));
    assert!(matches!(reply, PeerReply::Failed(_)), "{reply:?}");
    assert_eq!(hits(&core, Limit::MerkleExchange), 1);
    // Another error (here: no exchange open any more) is not a limit's.
    let again = ExchangeMsg::Hashes {
        level: 1,
        from: 0,
        hashes: vec![[0; 32]],
    };
    assert!(matches!(
        ask(&mut core, 10, exchange(again)),
        PeerReply::Failed(_)
    ));
    assert_eq!(hits(&core, Limit::MerkleExchange), 1);
}

#[test]
fn a_transfer_page_cut_at_its_bound_is_counted() {
    // Four nodes, one range each, three replicas: one range is not n1's.
    let config = CoreConfig {
        vnodes: 1,
        ..CoreConfig::default()
    };
    let (mut cores, stores) = cluster_with(4, &config);
    let ring = cores[0].ring().clone();
    let mut held = 0;
    for i in 0.. {
        let key = format!("t{i}");
        if !ring
            .preference_list(key.as_bytes())
            .iter()
            .any(|n| n == "n1")
        {
            put(&stores[0], key.as_bytes());
            held += 1;
            if held == 300 {
                break;
            }
        }
    }
    let out = cores[0].handle(4_000, Input::Timer(Timer::Transfer));
    let pages: Vec<usize> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Call {
                req: PeerRequest::Handoff { entries },
                ..
            } => Some(entries.len()),
            _ => None,
        })
        .collect();
    assert_eq!(pages, vec![256; 3], "one page of 256 keys to each replica");
    assert_eq!(hits(&cores[0], Limit::TransferPage), 1);
}
