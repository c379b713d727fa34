//! One behavioural test suite, run against every [`Store`] engine.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// A store under test and whatever must outlive it.
pub(super) struct Fixture {
    pub(super) store: Box<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

pub(super) fn memory() -> Fixture {
    Fixture {
        store: Box::new(MemoryStore::new()),
        _dir: None,
    }
}

pub(super) fn fjall() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    Fixture {
        store: Box::new(FjallStore::open(dir.path()).unwrap()),
        _dir: Some(dir),
    }
}

fn tokens(entries: &[Entry]) -> Vec<(u64, Vec<u8>)> {
    entries.iter().map(|e| (e.token, e.key.clone())).collect()
}

fn get_put_delete(s: &dyn Store) {
    assert_eq!(s.get(1, b"k").unwrap(), None);
    s.put(1, b"k", b"v1").unwrap();
    assert_eq!(s.get(1, b"k").unwrap(), Some(b"v1".to_vec()));
    s.put(1, b"k", b"v2").unwrap();
    assert_eq!(s.get(1, b"k").unwrap(), Some(b"v2".to_vec()));
    // The same user key under another token is another entry.
    assert_eq!(s.get(2, b"k").unwrap(), None);
    s.delete(1, b"k").unwrap();
    assert_eq!(s.get(1, b"k").unwrap(), None);
    s.delete(1, b"never-written").unwrap();
    // Empty keys and values are fine.
    s.put(0, b"", b"").unwrap();
    assert_eq!(s.get(0, b"").unwrap(), Some(Vec::new()));
    // Meta is its own namespace: not in data scans, not readable as data.
    s.meta_put("k", b"m").unwrap();
    assert_eq!(s.meta_get("k").unwrap(), Some(b"m".to_vec()));
    assert_eq!(s.meta_get("other").unwrap(), None);
    assert_eq!(tokens(&s.scan(0, 0, None, 10).unwrap()), [(0, Vec::new())]);
    s.sync().unwrap();
    assert_eq!(s.get(0, b"").unwrap(), Some(Vec::new()));
}

fn oversized_keys_are_refused(s: &dyn Store) {
    let long = vec![b'k'; MAX_KEY_LEN + 1];
    for err in [
        s.put(1, &long, b"v").unwrap_err(),
        s.delete(1, &long).unwrap_err(),
        s.get(1, &long).unwrap_err(),
    ] {
        assert!(
            matches!(err, StoreError::TooLarge { what: "key", .. }),
            "{err}"
        );
    }
    let longest = vec![b'k'; MAX_KEY_LEN];
    s.put(1, &longest, b"v").unwrap();
    assert_eq!(s.get(1, &longest).unwrap(), Some(b"v".to_vec()));
}

/// Entries at the edges of the token space, several keys per token, inserted out of order.
fn fill(s: &dyn Store) {
    for (token, key) in [
        (5, "b"),
        (u64::MAX, "m"),
        (1, "a"),
        (5, "a"),
        (0, "z"),
        (3, "c"),
        (5, "c"),
    ] {
        s.put(token, key.as_bytes(), format!("{token}/{key}").as_bytes())
            .unwrap();
    }
}

fn keys(pairs: &[(u64, &str)]) -> Vec<(u64, Vec<u8>)> {
    pairs
        .iter()
        .map(|&(t, k)| (t, k.as_bytes().to_vec()))
        .collect()
}

fn scan_is_ordered_by_ring_position_then_key(s: &dyn Store) {
    fill(s);
    let e = s.scan(1, 5, None, 100).unwrap();
    assert_eq!(tokens(&e), keys(&[(3, "c"), (5, "a"), (5, "b"), (5, "c")]));
    assert_eq!(e[0].value, b"3/c");
    // start == end is the whole ring, starting just after `start`.
    assert_eq!(
        tokens(&s.scan(3, 3, None, 100).unwrap()),
        keys(&[
            (5, "a"),
            (5, "b"),
            (5, "c"),
            (u64::MAX, "m"),
            (0, "z"),
            (1, "a"),
            (3, "c")
        ])
    );
    assert_eq!(
        tokens(&s.scan(u64::MAX, u64::MAX, None, 100).unwrap()),
        keys(&[
            (0, "z"),
            (1, "a"),
            (3, "c"),
            (5, "a"),
            (5, "b"),
            (5, "c"),
            (u64::MAX, "m")
        ])
    );
    assert!(s.scan(1, 2, None, 100).unwrap().is_empty());
}

fn scan_wraps_around(s: &dyn Store) {
    fill(s);
    assert_eq!(
        tokens(&s.scan(5, 1, None, 100).unwrap()),
        keys(&[(u64::MAX, "m"), (0, "z"), (1, "a")])
    );
    assert_eq!(
        tokens(&s.scan(u64::MAX, 0, None, 100).unwrap()),
        keys(&[(0, "z")])
    );
    assert_eq!(tokens(&s.scan(3, 0, None, 100).unwrap()).len(), 5);
}

fn scan_resumes_after_and_respects_limit(s: &dyn Store) {
    fill(s);
    assert!(s.scan(0, 0, None, 0).unwrap().is_empty());
    assert_eq!(
        tokens(&s.scan(0, 0, None, 2).unwrap()),
        keys(&[(1, "a"), (3, "c")])
    );
    // Resume inside a token, across the wrap, and from a position holding no key.
    assert_eq!(
        tokens(&s.scan(0, 0, Some((5, b"a".to_vec())), 3).unwrap()),
        keys(&[(5, "b"), (5, "c"), (u64::MAX, "m")])
    );
    assert_eq!(
        tokens(&s.scan(3, 1, Some((u64::MAX, b"m".to_vec())), 10).unwrap()),
        keys(&[(0, "z"), (1, "a")])
    );
    assert_eq!(
        tokens(&s.scan(0, 0, Some((4, b"zzz".to_vec())), 1).unwrap()),
        keys(&[(5, "a")])
    );
    // Nothing comes after the last entry or after a position outside the range.
    assert!(s
        .scan(1, 5, Some((5, b"c".to_vec())), 10)
        .unwrap()
        .is_empty());
    assert!(s.scan(1, 5, Some((9, Vec::new())), 10).unwrap().is_empty());
    // Paging with `after` visits every entry exactly once, in order.
    let all = s.scan(2, 2, None, 100).unwrap();
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = s.scan(2, 2, after.clone(), 2).unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.token, last.key.clone()));
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert_eq!(all.len(), 7);
}

macro_rules! conformance {
    ($engine:ident) => {
        mod $engine {
            #[test]
            fn get_put_delete() {
                super::get_put_delete(&*super::$engine().store);
            }
            #[test]
            fn oversized_keys_are_refused() {
                super::oversized_keys_are_refused(&*super::$engine().store);
            }
            #[test]
            fn scan_is_ordered_by_ring_position_then_key() {
                super::scan_is_ordered_by_ring_position_then_key(&*super::$engine().store);
            }
            #[test]
            fn scan_wraps_around() {
                super::scan_wraps_around(&*super::$engine().store);
            }
            #[test]
            fn scan_resumes_after_and_respects_limit() {
                super::scan_resumes_after_and_respects_limit(&*super::$engine().store);
            }
        }
    };
}

conformance!(memory);
conformance!(fjall);

/// What a scan should return, computed from a plain map by ring offsets.
fn model_scan(
    model: &BTreeMap<(u64, Vec<u8>), Vec<u8>>,
    start: u64,
    end: u64,
    after: Option<&(u64, Vec<u8>)>,
    limit: usize,
) -> Vec<Entry> {
    // Position of a token in ring order from `start`: start + 1 comes first.
    let offset = |t: u64| t.wrapping_sub(start).wrapping_sub(1);
    let mut hits: Vec<_> = model
        .iter()
        .filter(|((t, _), _)| offset(*t) <= offset(end))
        .filter(|((t, k), _)| after.is_none_or(|(at, ak)| (offset(*t), k) > (offset(*at), ak)))
        .map(|((t, k), v)| {
            (
                offset(*t),
                Entry {
                    token: *t,
                    key: k.clone(),
                    value: v.clone(),
                },
            )
        })
        .collect();
    hits.sort_by(|a, b| (a.0, &a.1.key).cmp(&(b.0, &b.1.key)));
    hits.into_iter().take(limit).map(|(_, e)| e).collect()
}

fn token() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(u64::MAX),
        0..8u64,
        (u64::MAX - 8)..,
        any::<u64>()
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Both engines agree with a plain sorted map on every scan.
    #[test]
    fn scans_match_a_model(
        writes in proptest::collection::vec((token(), "[a-c]{0,2}", proptest::option::of("[x-z]")), 0..40),
        scans in proptest::collection::vec(
            (token(), token(), proptest::option::of((token(), "[a-c]{0,2}")), 0..10usize), 1..8),
    ) {
        let fixtures = [memory(), fjall()];
        let mut model = BTreeMap::new();
        for (t, k, v) in &writes {
            for f in &fixtures {
                match v {
                    Some(v) => f.store.put(*t, k.as_bytes(), v.as_bytes()).unwrap(),
                    None => f.store.delete(*t, k.as_bytes()).unwrap(),
                }
            }
            match v {
                Some(v) => model.insert((*t, k.as_bytes().to_vec()), v.as_bytes().to_vec()),
                None => model.remove(&(*t, k.as_bytes().to_vec())),
            };
        }
        for (start, end, after, limit) in scans {
            let after = after.map(|(t, k)| (t, k.into_bytes()));
            let expected = model_scan(&model, start, end, after.as_ref(), limit);
            for f in &fixtures {
                prop_assert_eq!(&f.store.scan(start, end, after.clone(), limit).unwrap(), &expected);
            }
        }
    }
}
