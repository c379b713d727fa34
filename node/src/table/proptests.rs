//! Property tests for the range table: merge is a join (commutative, associative,
//! idempotent), and lookup picks the longest prefix with a rule.

use proptest::prelude::*;

use super::*;

/// Prefixes over a two-letter alphabet, so prefixes of one another are common.
fn prefix() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b')], 1..4)
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::Quorum),
        Just(Mode::Primary(PrimaryOptions::default())),
        (1..3u8).prop_map(|k| Mode::Primary(PrimaryOptions {
            sync: SyncReplicas::Count(k),
            read_from: ReadFrom::Any,
            topology: Topology::Chain,
        })),
    ]
}

/// Few counters and nodes: equal stamps (even with different modes) do happen.
fn rule() -> impl Strategy<Value = Rule> {
    (mode(), 0..4u64, prop_oneof![Just("n1"), Just("n2")]).prop_map(|(mode, counter, node)| Rule {
        mode,
        stamp: Stamp {
            counter,
            node: node.into(),
        },
    })
}

/// Keys of any length, empty included, with a letter no prefix has.
fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'c')], 0..6)
}

fn table() -> impl Strategy<Value = RangeTable> {
    proptest::collection::btree_map(prefix(), rule(), 0..6).prop_map(|rules| RangeTable { rules })
}

fn merged(a: &RangeTable, b: &RangeTable) -> RangeTable {
    let mut out = a.clone();
    out.merge(b);
    out
}

/// The rule of the longest prefix of `key`, found the slow way.
fn naive_rule<'a>(t: &'a RangeTable, key: &[u8]) -> Option<&'a Rule> {
    (1..=key.len()).rev().find_map(|len| t.get(&key[..len]))
}

proptest! {
    #[test]
    fn merge_is_commutative(a in table(), b in table()) {
        let (ab, ba) = (merged(&a, &b), merged(&b, &a));
        prop_assert_eq!(ab.digest(), ba.digest());
        prop_assert_eq!(ab, ba);
    }

    #[test]
    fn merge_is_associative(a in table(), b in table(), c in table()) {
        prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
    }

    #[test]
    fn merge_is_idempotent_and_says_when_nothing_changed(a in table(), b in table()) {
        let mut aa = a.clone();
        prop_assert!(!aa.merge(&a));
        prop_assert_eq!(&aa, &a);
        let mut ab = a.clone();
        let changed = ab.merge(&b);
        prop_assert_eq!(changed, ab != a);
        let once = ab.clone();
        prop_assert!(!ab.merge(&b));
        prop_assert_eq!(ab, once);
    }

    #[test]
    fn merge_keeps_the_highest_stamp_of_every_prefix(a in table(), b in table()) {
        let ab = merged(&a, &b);
        for (prefix, rule) in a.rules().chain(b.rules()) {
            let kept = ab.get(prefix);
            prop_assert!(kept.is_some_and(|k| k.stamp >= rule.stamp));
        }
        prop_assert!(ab.rules().all(|(p, r)| a.get(p) == Some(r) || b.get(p) == Some(r)));
    }

    #[test]
    fn lookup_takes_the_longest_prefix_with_a_rule(t in table(), key in key()) {
        let expected = naive_rule(&t, &key);
        prop_assert_eq!(t.rule_for(&key).map(|(_, r)| r), expected);
        let options = expected.and_then(|r| match &r.mode {
            Mode::Primary(o) => Some(o),
            Mode::Quorum => None,
        });
        prop_assert_eq!(t.lookup(&key), options);
    }
}
