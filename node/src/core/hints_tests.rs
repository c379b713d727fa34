//! Hinted handoff tests: inspect's view, the tally, hints per range.

use super::*;
use crate::hlc::Timestamp;
use crate::store::MemoryStore;
use crate::version::{DvvSet, Sibling};

fn record(value: Option<&[u8]>, actor: &str) -> Record {
    let sib = Sibling {
        value: value.map(<[u8]>::to_vec),
        ts: Timestamp::default(),
        origin: actor.into(),
    };
    DvvSet::update(&DvvSet::new(sib), &DvvSet::default(), actor)
}

fn keep(hints: &mut Hints, store: &dyn Store, owner: &str, key: &[u8], r: &Record, at: u64) {
    let token = ringkv_ring::token(key);
    let reply = hints.keep(store, owner, token, key, r, at);
    assert_eq!(reply, PeerReply::Replicated);
}

#[test]
fn held_for_lists_the_key_s_hints_of_every_owner_and_no_other_key() {
    let store = MemoryStore::new();
    let mut hints = Hints::load(HintConfig::default(), Sabotage::default(), &store);
    let (a, b) = (record(Some(b"a"), "n1"), record(None, "n2"));
    keep(&mut hints, &store, "n3", b"k", &a, 1_000);
    keep(&mut hints, &store, "n4", b"k", &b, 2_000);
    keep(&mut hints, &store, "n4", b"other", &a, 3_000);
    let token = ringkv_ring::token(b"k");
    let held = held_for(&store, token, b"k").unwrap();
    assert_eq!(held.len(), 2);
    assert_eq!((held[0].owner.as_str(), held[0].stored_ms), ("n3", 1_000));
    assert_eq!(held[0].siblings, siblings(&a));
    assert_eq!(held[0].siblings[0].data.as_deref(), Some(&b"a"[..]));
    let bytes = encode_record(&a).unwrap().len() as u64;
    assert_eq!(held[0].bytes, bytes);
    assert_eq!((held[1].owner.as_str(), held[1].stored_ms), ("n4", 2_000));
    assert_eq!(held[1].siblings[0].data, None, "a tombstone");
    assert!(held_for(&store, ringkv_ring::token(b"none"), b"none")
        .unwrap()
        .is_empty());
}

fn ring(names: &[&str]) -> Ring {
    let nodes = names.iter().map(|n| ringkv_ring::RingNode {
        name: (*n).to_string(),
        zone: None,
    });
    let config = ringkv_ring::RingConfig {
        vnodes: 8,
        replicas: 3,
    };
    Ring::new(nodes, config)
}

fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000))
}

#[test]
fn every_hint_is_accounted_for_as_stored_delivered_or_still_held() {
    let store = MemoryStore::new();
    let mut hints = Hints::load(HintConfig::default(), Sabotage::default(), &store);
    let r = record(Some(b"a"), "n1");
    keep(&mut hints, &store, "n3", b"k", &r, 1_000);
    keep(
        &mut hints,
        &store,
        "n3",
        b"k",
        &record(Some(b"b"), "n2"),
        1_500,
    );
    keep(&mut hints, &store, "n4", b"j", &r, 2_000);
    let t = hints.tally();
    assert_eq!((t.stored, t.delivered), (2, 0), "a merge makes no new hint");

    // Delivered and acknowledged: removed and counted.
    let token = ringkv_ring::token(b"j");
    let hint = store.hint_get("n4", token, b"j").unwrap().unwrap();
    let mut out = Vec::new();
    hints.deliver(hint, r.clone(), addr(), &mut out);
    let Some(Effect::Call { call, .. }) = out.first() else {
        panic!("no delivery call: {out:?}");
    };
    hints.on_reply(&store, *call, Ok(PeerReply::Replicated));
    assert!(store.hint_get("n4", token, b"j").unwrap().is_none());

    // Replaced by a newer hint while in flight: acknowledged, but kept for the next round.
    let token = ringkv_ring::token(b"k");
    let hint = store.hint_get("n3", token, b"k").unwrap().unwrap();
    let mut out = Vec::new();
    hints.deliver(hint, r.clone(), addr(), &mut out);
    keep(
        &mut hints,
        &store,
        "n3",
        b"k",
        &record(Some(b"c"), "n5"),
        3_000,
    );
    let Some(Effect::Call { call, .. }) = out.first() else {
        panic!("no delivery call: {out:?}");
    };
    hints.on_reply(&store, *call, Ok(PeerReply::Replicated));
    assert!(store.hint_get("n3", token, b"k").unwrap().is_some());

    // Refused: counted apart, never stored.
    let reply = hints.keep(&store, "n3", token ^ 1, b"k", &r, 4_000);
    assert!(matches!(reply, PeerReply::Failed(_)));

    let t = hints.tally();
    assert_eq!((t.stored, t.delivered, t.dropped, t.refused), (2, 1, 0, 1));
    let held: u64 = store.hint_owners(10).unwrap().iter().map(|o| o.count).sum();
    assert_eq!(t.held_at_start + t.stored, t.delivered + t.dropped + held);
    let (_, delivered, dropped) = hints.report(&store);
    assert_eq!(
        (delivered, dropped),
        (1, 1),
        "status counts refusals as dropped"
    );

    // A restart counts what the store kept.
    let again = Hints::load(HintConfig::default(), Sabotage::default(), &store);
    assert_eq!(again.tally().held_at_start, 1);
}

#[test]
fn status_lists_hints_per_range_and_ranges_kept_only_for_their_hints() {
    let store = MemoryStore::new();
    let mut hints = Hints::load(HintConfig::default(), Sabotage::default(), &store);
    let ring = ring(&["a", "b", "c", "d"]);
    let mine = |i: usize| ring.preference_list_at(i).iter().any(|n| n == "a");
    // A key in a range "a" replicates and one in a range it does not.
    let key_where = |want: bool| {
        (0..10_000)
            .map(|i| format!("key-{i}").into_bytes())
            .find(|k| {
                let idx = ring.range_index(ringkv_ring::token(k)).unwrap();
                mine(idx) == want
            })
            .unwrap()
    };
    let (inside, outside) = (key_where(true), key_where(false));
    let r = record(Some(b"v"), "b");
    keep(&mut hints, &store, "b", &inside, &r, 1);
    keep(&mut hints, &store, "c", &inside, &r, 1);
    keep(&mut hints, &store, "d", &outside, &r, 1);
    let replicated: Vec<RangeStatus> = (0..ring.vnode_count())
        .filter(|&i| mine(i))
        .map(|i| {
            let (start, end) = ring.range_bounds(i).unwrap();
            RangeStatus {
                start,
                end,
                replica: true,
                last_exchange_ms: Some(7),
                keys_repaired: 3,
                hints_pending: 0,
            }
        })
        .collect();
    let count = replicated.len();
    let ranges = hints.range_status(&ring, replicated);
    assert_eq!(ranges.len(), count + 1, "one more range, kept for its hint");
    assert!(ranges.windows(2).all(|w| w[0].end < w[1].end), "ring order");
    let of = |k: &[u8]| {
        let idx = ring.range_index(ringkv_ring::token(k)).unwrap();
        let bounds = ring.range_bounds(idx).unwrap();
        ranges.iter().find(|r| (r.start, r.end) == bounds)
    };
    let inside_range = of(&inside).unwrap();
    assert!(inside_range.replica);
    assert_eq!(inside_range.hints_pending, 2, "every owner together");
    assert_eq!(inside_range.keys_repaired, 3, "anti-entropy figures kept");
    let outside_range = of(&outside).unwrap();
    assert!(!outside_range.replica);
    assert_eq!(
        (outside_range.hints_pending, outside_range.last_exchange_ms),
        (1, None)
    );
    let total: u64 = ranges.iter().map(|r| r.hints_pending).sum();
    assert_eq!(total, 3);

    // Rebuilt from the store at start, the same counts.
    let again = Hints::load(HintConfig::default(), Sabotage::default(), &store);
    assert_eq!(again.per_range(&ring), hints.per_range(&ring));
}

/// A long outage: writes for an owner that never comes back keep arriving, hint storage
/// stays within `max_bytes`, and every hint past it is refused and counted as full.
#[test]
fn hints_for_an_owner_away_for_long_stay_within_max_bytes_and_the_rest_are_counted() {
    let store = MemoryStore::new();
    let config = HintConfig {
        max_bytes: 4096,
        ..HintConfig::default()
    };
    let mut hints = Hints::load(config, Sabotage::default(), &store);
    let value = vec![7u8; 200];
    let (mut kept, mut refused) = (0u64, 0u64);
    for i in 0..200u64 {
        let key = format!("k{i}").into_bytes();
        let r = record(Some(&value), "n1");
        match hints.keep(&store, "n4", ringkv_ring::token(&key), &key, &r, i) {
            PeerReply::Replicated => kept += 1,
            PeerReply::Failed(Refusal::HintNotKept { detail, .. }) => {
                assert!(detail.contains("hint storage full"), "{detail}");
                refused += 1;
            }
            other => panic!("hint {i}: {other:?}"),
        }
        let held: u64 = store.hint_owners(10).unwrap().iter().map(|o| o.bytes).sum();
        assert!(held <= 4096, "{held} bytes of hints held after hint {i}");
    }
    assert!(kept > 0 && refused > 0, "kept {kept}, refused {refused}");
    let t = hints.tally();
    assert_eq!((t.stored, t.refused, t.full), (kept, refused, refused));
    // A refusal for another reason is not a full storage.
    let r = record(Some(b"x"), "n1");
    hints.keep(&store, "n4", ringkv_ring::token(b"y") ^ 1, b"y", &r, 300);
    assert_eq!(hints.tally().full, refused);
    assert_eq!(hints.tally().refused, refused + 1);
}
