//! One behavioural test suite for hint storage, run against every [`Store`] engine.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::conformance::{fjall, memory};
use super::*;

fn hint(owner: &str, token: u64, key: &str, value: &str, stored_ms: u64) -> Hint {
    Hint {
        owner: owner.into(),
        token,
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        stored_ms,
    }
}

fn positions(hints: &[Hint]) -> Vec<(u64, String)> {
    hints
        .iter()
        .map(|h| (h.token, String::from_utf8(h.key.clone()).unwrap()))
        .collect()
}

fn at(pairs: &[(u64, &str)]) -> Vec<(u64, String)> {
    pairs.iter().map(|&(t, k)| (t, k.to_owned())).collect()
}

fn owner(name: &str, count: u64, bytes: u64) -> HintOwner {
    HintOwner {
        owner: name.into(),
        count,
        bytes,
    }
}

fn hints_put_get_replace_delete(s: &dyn Store) {
    assert_eq!(s.hint_get("n1", 1, b"k").unwrap(), None);
    let first = hint("n1", 1, "k", "v1", 100);
    s.hint_put(&first).unwrap();
    assert_eq!(s.hint_get("n1", 1, b"k").unwrap(), Some(first));
    // Replacing keeps one hint, with the new value and stamp.
    let second = hint("n1", 1, "k", "v2-longer", 200);
    s.hint_put(&second).unwrap();
    assert_eq!(s.hint_get("n1", 1, b"k").unwrap(), Some(second));
    assert_eq!(s.hint_scan("n1", None, 10).unwrap().len(), 1);
    // Another token, another owner: other hints.
    assert_eq!(s.hint_get("n1", 2, b"k").unwrap(), None);
    assert_eq!(s.hint_get("n2", 1, b"k").unwrap(), None);
    s.hint_delete("n1", 1, b"k").unwrap();
    assert_eq!(s.hint_get("n1", 1, b"k").unwrap(), None);
    s.hint_delete("n1", 1, b"never-written").unwrap();
    // Empty keys and values, extreme tokens and stamps are fine.
    let edge = hint("n1", u64::MAX, "", "", u64::MAX);
    s.hint_put(&edge).unwrap();
    s.sync().unwrap();
    assert_eq!(s.hint_get("n1", u64::MAX, b"").unwrap(), Some(edge));
}

fn hint_owner_names_and_keys_are_checked(s: &dyn Store) {
    for name in [String::new(), "n".repeat(MAX_OWNER_LEN + 1)] {
        let bad = hint(&name, 1, "k", "v", 0);
        for err in [
            s.hint_put(&bad).unwrap_err(),
            s.hint_get(&name, 1, b"k").unwrap_err(),
            s.hint_delete(&name, 1, b"k").unwrap_err(),
            s.hint_scan(&name, None, 10).unwrap_err(),
        ] {
            assert!(
                matches!(err, StoreError::HintOwner { len } if len == name.len()),
                "{err}"
            );
        }
    }
    let longest = "n".repeat(MAX_OWNER_LEN);
    let long_key = vec![b'k'; MAX_KEY_LEN];
    let h = Hint {
        key: long_key.clone(),
        ..hint(&longest, 7, "", "v", 1)
    };
    s.hint_put(&h).unwrap();
    assert_eq!(s.hint_get(&longest, 7, &long_key).unwrap(), Some(h));
    let too_long = Hint {
        key: vec![b'k'; MAX_KEY_LEN + 1],
        ..hint("n", 7, "", "v", 1)
    };
    assert!(matches!(
        s.hint_put(&too_long).unwrap_err(),
        StoreError::TooLarge { what: "key", .. }
    ));
    assert!(s
        .hint_owners(10)
        .unwrap()
        .iter()
        .all(|o| o.owner == longest));
}

/// Hints of four owners (two of whose names are prefixes of others), inserted out of order.
fn fill_hints(s: &dyn Store) {
    for (owner, token, key) in [
        ("ab", 5, "b"),
        ("a", u64::MAX, "m"),
        ("a", 5, "b"),
        ("ab", 0, "a"),
        ("a", 0, "z"),
        ("b", 3, "c"),
        ("a", 5, "a"),
        ("aa", 1, "x"),
        ("a", 1, "a"),
    ] {
        s.hint_put(&hint(
            owner,
            token,
            key,
            &format!("{owner}/{token}/{key}"),
            9,
        ))
        .unwrap();
    }
}

fn hint_scan_is_one_owner_in_ring_order_and_resumes(s: &dyn Store) {
    fill_hints(s);
    let a = s.hint_scan("a", None, 100).unwrap();
    assert_eq!(
        positions(&a),
        at(&[(0, "z"), (1, "a"), (5, "a"), (5, "b"), (u64::MAX, "m")])
    );
    assert!(a.iter().all(|h| h.owner == "a" && h.stored_ms == 9));
    assert_eq!(a[2].value, b"a/5/a");
    assert_eq!(
        positions(&s.hint_scan("ab", None, 100).unwrap()),
        at(&[(0, "a"), (5, "b")])
    );
    assert!(s.hint_scan("c", None, 100).unwrap().is_empty());
    // Limits and resuming: inside a token, from a position holding no hint, past the end.
    assert!(s.hint_scan("a", None, 0).unwrap().is_empty());
    assert_eq!(
        positions(&s.hint_scan("a", None, 2).unwrap()),
        at(&[(0, "z"), (1, "a")])
    );
    assert_eq!(
        positions(&s.hint_scan("a", Some((5, b"a".to_vec())), 2).unwrap()),
        at(&[(5, "b"), (u64::MAX, "m")])
    );
    assert_eq!(
        positions(&s.hint_scan("a", Some((2, b"zzz".to_vec())), 1).unwrap()),
        at(&[(5, "a")])
    );
    assert!(s
        .hint_scan("a", Some((u64::MAX, b"m".to_vec())), 10)
        .unwrap()
        .is_empty());
    assert_eq!(
        positions(&s.hint_scan("ab", Some((0, Vec::new())), 10).unwrap()),
        at(&[(0, "a"), (5, "b")])
    );
    // Paging visits every hint of the owner exactly once, in order.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = s.hint_scan("a", after.clone(), 2).unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.token, last.key.clone()));
        paged.extend(page);
    }
    assert_eq!(paged, a);
}

fn hint_owners_count_hints_and_record_bytes(s: &dyn Store) {
    assert!(s.hint_owners(10).unwrap().is_empty());
    fill_hints(s);
    // Values are "owner/token/key": "a/0/z" is 5 bytes, "a/18446744073709551615/m" is 24.
    assert_eq!(
        s.hint_owners(10).unwrap(),
        [
            owner("a", 5, 5 + 5 + 5 + 5 + 24),
            owner("aa", 1, 6),
            owner("ab", 2, 6 + 6),
            owner("b", 1, 5),
        ]
    );
    assert_eq!(
        s.hint_owners(2).unwrap(),
        [owner("a", 5, 44), owner("aa", 1, 6)]
    );
    assert!(s.hint_owners(0).unwrap().is_empty());
    // Replacing changes the bytes, not the count; deleting nothing changes nothing.
    s.hint_put(&hint("b", 3, "c", "0123456789", 1)).unwrap();
    s.hint_delete("b", 3, b"missing").unwrap();
    s.hint_delete("zz", 3, b"c").unwrap();
    assert_eq!(s.hint_owners(10).unwrap()[3], owner("b", 1, 10));
    // An owner whose last hint goes is no longer listed.
    s.hint_delete("aa", 1, b"x").unwrap();
    s.hint_delete("ab", 0, b"a").unwrap();
    assert_eq!(
        s.hint_owners(10).unwrap(),
        [owner("a", 5, 44), owner("ab", 1, 6), owner("b", 1, 10)]
    );
}

fn hints_are_isolated_from_data_and_meta(s: &dyn Store) {
    s.put(5, b"k", b"data").unwrap();
    s.meta_put("k", b"meta").unwrap();
    s.hint_put(&hint("n1", 5, "k", "hint", 1)).unwrap();
    // Each keyspace keeps its own value for the same token and key.
    assert_eq!(s.get(5, b"k").unwrap(), Some(b"data".to_vec()));
    assert_eq!(s.meta_get("k").unwrap(), Some(b"meta".to_vec()));
    assert_eq!(s.hint_get("n1", 5, b"k").unwrap().unwrap().value, b"hint");
    // Data scans see no hints; hint scans see no data.
    assert_eq!(s.scan(0, 0, None, 100).unwrap().len(), 1);
    assert_eq!(s.hint_scan("n1", None, 100).unwrap().len(), 1);
    // Deleting in one keyspace leaves the others alone.
    s.delete(5, b"k").unwrap();
    assert!(s.hint_get("n1", 5, b"k").unwrap().is_some());
    s.hint_delete("n1", 5, b"k").unwrap();
    s.put(5, b"k", b"data").unwrap();
    assert!(s.hint_get("n1", 5, b"k").unwrap().is_none());
    assert!(s.hint_owners(10).unwrap().is_empty());
    assert_eq!(s.get(5, b"k").unwrap(), Some(b"data".to_vec()));
    assert_eq!(s.meta_get("k").unwrap(), Some(b"meta".to_vec()));
}

macro_rules! hint_conformance {
    ($engine:ident) => {
        mod $engine {
            #[test]
            fn hints_put_get_replace_delete() {
                super::hints_put_get_replace_delete(&*super::$engine().store);
            }
            #[test]
            fn hint_owner_names_and_keys_are_checked() {
                super::hint_owner_names_and_keys_are_checked(&*super::$engine().store);
            }
            #[test]
            fn hint_scan_is_one_owner_in_ring_order_and_resumes() {
                super::hint_scan_is_one_owner_in_ring_order_and_resumes(&*super::$engine().store);
            }
            #[test]
            fn hint_owners_count_hints_and_record_bytes() {
                super::hint_owners_count_hints_and_record_bytes(&*super::$engine().store);
            }
            #[test]
            fn hints_are_isolated_from_data_and_meta() {
                super::hints_are_isolated_from_data_and_meta(&*super::$engine().store);
            }
        }
    };
}

hint_conformance!(memory);
hint_conformance!(fjall);

/// The model: (owner, token, key) → (value, stored_ms).
type Model = BTreeMap<(String, u64, Vec<u8>), (Vec<u8>, u64)>;

fn model_scan(
    model: &Model,
    owner: &str,
    after: Option<&(u64, Vec<u8>)>,
    limit: usize,
) -> Vec<Hint> {
    model
        .iter()
        .filter(|((o, t, k), _)| o == owner && after.is_none_or(|(at, ak)| (t, k) > (at, ak)))
        .take(limit)
        .map(|((o, t, k), (v, ms))| Hint {
            owner: o.clone(),
            token: *t,
            key: k.clone(),
            value: v.clone(),
            stored_ms: *ms,
        })
        .collect()
}

fn model_owners(model: &Model) -> Vec<HintOwner> {
    let mut owners: BTreeMap<&str, HintOwner> = BTreeMap::new();
    for ((o, _, _), (v, _)) in model {
        let entry = owners.entry(o).or_insert_with(|| owner(o, 0, 0));
        entry.count += 1;
        entry.bytes += v.len() as u64;
    }
    owners.into_values().collect()
}

fn small_token() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0), Just(u64::MAX), 0..4u64]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Both engines agree with a plain sorted map on every hint scan and on the owner tallies.
    #[test]
    fn hint_scans_and_owners_match_a_model(
        writes in proptest::collection::vec(
            ("a|ab|b", small_token(), "[a-b]{0,2}", proptest::option::of("[x-z]{0,3}"), any::<u64>()),
            0..40),
        scans in proptest::collection::vec(
            ("a|ab|b|c", proptest::option::of((small_token(), "[a-b]{0,2}")), 0..6usize), 1..6),
    ) {
        let fixtures = [memory(), fjall()];
        let mut model = Model::new();
        for (o, t, k, v, ms) in &writes {
            for f in &fixtures {
                match v {
                    Some(v) => f.store.hint_put(&hint(o, *t, k, v, *ms)).unwrap(),
                    None => f.store.hint_delete(o, *t, k.as_bytes()).unwrap(),
                }
            }
            let at = (o.clone(), *t, k.as_bytes().to_vec());
            match v {
                Some(v) => model.insert(at, (v.as_bytes().to_vec(), *ms)),
                None => model.remove(&at),
            };
        }
        let owners = model_owners(&model);
        for (o, after, limit) in scans {
            let after = after.map(|(t, k)| (t, k.into_bytes()));
            let expected = model_scan(&model, &o, after.as_ref(), limit);
            for f in &fixtures {
                prop_assert_eq!(&f.store.hint_scan(&o, after.clone(), limit).unwrap(), &expected);
            }
        }
        for f in &fixtures {
            prop_assert_eq!(&f.store.hint_owners(10).unwrap(), &owners);
            // No hint leaks into the data keyspace.
            prop_assert!(f.store.scan(0, 0, None, 10).unwrap().is_empty());
        }
    }
}
