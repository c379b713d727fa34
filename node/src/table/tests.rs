//! Rules, limits, merges and persistence of the range table.

use super::*;
use crate::store::MemoryStore;

const LIMITS: TableLimits = TableLimits {
    max_rules: 3,
    max_prefix: 8,
    replicas: 3,
};

fn primary(sync: SyncReplicas) -> Mode {
    Mode::Primary(PrimaryOptions {
        sync,
        ..PrimaryOptions::default()
    })
}

#[test]
fn set_stamps_past_the_highest_counter_and_quorum_keeps_a_rule() {
    let mut t = RangeTable::new();
    t.set(b"a".to_vec(), primary(SyncReplicas::None), "n1", &LIMITS)
        .unwrap();
    t.set(
        b"b".to_vec(),
        primary(SyncReplicas::Majority),
        "n2",
        &LIMITS,
    )
    .unwrap();
    assert_eq!(t.get(b"b").unwrap().stamp.counter, 2);
    assert!(t.has_primary());
    t.set(b"a".to_vec(), Mode::Quorum, "n1", &LIMITS).unwrap();
    t.set(b"b".to_vec(), Mode::Quorum, "n1", &LIMITS).unwrap();
    let a = t.get(b"a").unwrap();
    assert_eq!((a.mode.clone(), a.stamp.counter), (Mode::Quorum, 3));
    assert_eq!(t.len(), 2, "a quorum rule stays, so the change can spread");
    assert!(!t.has_primary());
}

#[test]
fn a_quorum_rule_replaces_primary_on_every_node_it_reaches() {
    let mut n1 = RangeTable::new();
    n1.set(b"p".to_vec(), primary(SyncReplicas::None), "n1", &LIMITS)
        .unwrap();
    let mut n2 = n1.clone();
    n2.set(b"p".to_vec(), Mode::Quorum, "n2", &LIMITS).unwrap();
    assert!(n1.merge(&n2));
    assert!(n1.lookup(b"p1").is_none());
    assert!(!n2.merge(&n1), "the older primary rule loses");
    assert_eq!(n1, n2);
    assert_eq!(n1.digest(), n2.digest());
}

#[test]
fn bad_rules_are_refused_with_the_reason() {
    let mut t = RangeTable::new();
    let err = |t: &mut RangeTable, prefix: &[u8], mode: Mode| {
        t.set(prefix.to_vec(), mode, "n1", &LIMITS)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(&mut t, b"", Mode::Quorum),
        "a range prefix must not be empty"
    );
    assert!(err(&mut t, b"123456789", Mode::Quorum).contains("9 bytes"));
    for k in [0, 3, 200] {
        let e = err(&mut t, b"p", primary(SyncReplicas::Count(k)));
        assert!(e.contains(&format!("sync replicas {k}")), "{e}");
        assert!(e.contains("use 1 to 2"), "{e}");
    }
    t.set(
        b"p".to_vec(),
        primary(SyncReplicas::Count(2)),
        "n1",
        &LIMITS,
    )
    .unwrap();
    let e = t.set(b"q".to_vec(), Mode::Quorum, "", &LIMITS).unwrap_err();
    assert!(matches!(e, TableError::BadStamp { len: 0 }), "{e}");
    for p in [b"q", b"r"] {
        t.set(p.to_vec(), Mode::Quorum, "n1", &LIMITS).unwrap();
    }
    assert!(err(&mut t, b"s", Mode::Quorum).contains("4 rules, over the limit of 3"));
    t.set(b"p".to_vec(), Mode::Quorum, "n1", &LIMITS)
        .expect("a prefix already in a full table can still change");
}

#[test]
fn a_peer_table_outside_the_limits_is_refused_whole() {
    let mut ours = RangeTable::new();
    ours.set(b"a".to_vec(), Mode::Quorum, "n1", &LIMITS)
        .unwrap();
    let wide = TableLimits {
        max_rules: 10,
        max_prefix: 100,
        replicas: 5,
    };
    let mut bad_sync = RangeTable::new();
    bad_sync
        .set(b"b".to_vec(), primary(SyncReplicas::Count(4)), "n2", &wide)
        .unwrap();
    let mut too_many = RangeTable::new();
    for p in [b"b", b"c", b"d"] {
        too_many.set(p.to_vec(), Mode::Quorum, "n2", &wide).unwrap();
    }
    let mut long = RangeTable::new();
    long.set(vec![b'x'; 9], Mode::Quorum, "n2", &wide).unwrap();
    for bad in [bad_sync, too_many, long] {
        let before = ours.clone();
        assert!(ours.merge_within(&bad, &LIMITS).is_err());
        assert_eq!(ours, before);
    }
    let mut fine = RangeTable::new();
    fine.set(b"b".to_vec(), Mode::Quorum, "n2", &wide).unwrap();
    assert!(ours.merge_within(&fine, &LIMITS).unwrap());
    assert!(!ours.merge_within(&fine, &LIMITS).unwrap());
}

#[test]
fn equal_stamps_with_different_modes_settle_the_same_everywhere() {
    let stamp = Stamp {
        counter: 1,
        node: "n1".into(),
    };
    let rule = |mode| RangeTable {
        rules: BTreeMap::from([(
            b"p".to_vec(),
            Rule {
                mode,
                stamp: stamp.clone(),
            },
        )]),
    };
    let (mut a, b) = (rule(Mode::Quorum), rule(primary(SyncReplicas::None)));
    let mut b2 = b.clone();
    a.merge(&b);
    b2.merge(&rule(Mode::Quorum));
    assert_eq!(a, b2);
}

#[test]
fn the_table_survives_in_the_store_and_garbage_is_an_error() {
    let store = MemoryStore::new();
    assert_eq!(RangeTable::load(&store).unwrap(), RangeTable::new());
    let mut t = RangeTable::new();
    t.set(
        b"p".to_vec(),
        primary(SyncReplicas::Majority),
        "n1",
        &LIMITS,
    )
    .unwrap();
    t.save(&store).unwrap();
    assert_eq!(RangeTable::load(&store).unwrap(), t);
    store.meta_put(TABLE_META_KEY, &[0xff; 3]).unwrap();
    assert!(matches!(
        RangeTable::load(&store),
        Err(TableError::Codec(_))
    ));
}

#[test]
fn names_print_as_the_cli_spells_them() {
    assert_eq!(SyncReplicas::Count(2).to_string(), "2");
    assert_eq!(SyncReplicas::Majority.to_string(), "majority");
    assert_eq!(ReadFrom::Any.to_string(), "any");
    assert_eq!(Topology::Chain.to_string(), "chain");
    assert_eq!(primary(SyncReplicas::None).to_string(), "primary");
    let stamp = Stamp {
        counter: 7,
        node: "n2".into(),
    };
    assert_eq!(stamp.to_string(), "7@n2");
}

#[test]
fn shards_stream_by_chain_while_any_primary_rule_asks_for_it() {
    let chain = Mode::Primary(PrimaryOptions {
        topology: Topology::Chain,
        ..PrimaryOptions::default()
    });
    let mut t = RangeTable::new();
    assert_eq!(t.topology(), Topology::Star);
    t.set(b"a".to_vec(), primary(SyncReplicas::None), "n1", &LIMITS)
        .unwrap();
    assert_eq!(t.topology(), Topology::Star);
    t.set(b"b".to_vec(), chain, "n1", &LIMITS).unwrap();
    assert_eq!(t.topology(), Topology::Chain, "one chain rule is enough");
    t.set(b"b".to_vec(), Mode::Quorum, "n1", &LIMITS).unwrap();
    assert_eq!(
        t.topology(),
        Topology::Star,
        "a quorum rule that kept the prefix asks for nothing"
    );
}
