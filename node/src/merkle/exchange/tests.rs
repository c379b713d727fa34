use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use crate::merkle::*;

/// A replica of one range: its tree, its items by token, and the keys it was told to push.
struct Replica {
    tree: RangeTree,
    items: BTreeMap<u64, Vec<Item>>,
    pushed: BTreeSet<Vec<u8>>,
}

impl Replica {
    fn new(start: u64, end: u64, depth: u8, items: &[(u64, Vec<u8>, Hash)]) -> Self {
        let tree = RangeTree::from_items(start, end, depth, items.iter().map(|(t, _, h)| (*t, *h)))
            .unwrap();
        let mut by_token: BTreeMap<u64, Vec<Item>> = BTreeMap::new();
        for (t, k, h) in items {
            by_token.entry(*t).or_default().push((k.clone(), *h));
        }
        Replica {
            tree,
            items: by_token,
            pushed: BTreeSet::new(),
        }
    }

    /// A store scan of `(lo, hi]`, wrapping when `lo >= hi`.
    fn scan(&self, lo: u64, hi: u64) -> Vec<Item> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let pick = |r: std::collections::btree_map::Range<'_, u64, Vec<Item>>| {
            r.flat_map(|(_, v)| v.iter().cloned()).collect::<Vec<_>>()
        };
        if lo < hi {
            pick(self.items.range((Excluded(lo), Included(hi))))
        } else {
            let mut out = pick(self.items.range((Excluded(lo), Unbounded)));
            out.extend(pick(self.items.range(..=hi)));
            out
        }
    }
}

/// Messages survive postcard unchanged.
fn wire(msg: ExchangeMsg) -> ExchangeMsg {
    let bytes = postcard::to_allocvec(&msg).unwrap();
    let back: ExchangeMsg = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, msg);
    back
}

/// Carries out `ex`'s actions until it waits for the peer; returns what it sent.
fn settle(ex: &mut Exchange, r: &mut Replica) -> Result<Vec<ExchangeMsg>, ExchangeError> {
    let mut out = Vec::new();
    while let Some(action) = ex.poll() {
        match action {
            Action::Send(m) => out.push(wire(m)),
            Action::ScanLeaf { leaf, start, end } => ex.leaf_items(leaf, r.scan(start, end))?,
            Action::Push(keys) => r.pushed.extend(keys),
        }
    }
    Ok(out)
}

/// Runs a whole exchange between `i` (initiator) and `r` (responder).
fn run(
    i: &mut Replica,
    r: &mut Replica,
    limits: ExchangeLimits,
) -> Result<(ExchangeStats, ExchangeStats), ExchangeError> {
    let mut ei = Exchange::initiate(&mut i.tree, limits)?;
    let mut er = Exchange::respond(&r.tree, limits)?;
    let mut to_r = settle(&mut ei, i)?;
    let mut rounds = 0;
    while !to_r.is_empty() {
        let mut to_i = Vec::new();
        for m in to_r {
            er.handle(&mut r.tree, m)?;
            to_i.extend(settle(&mut er, r)?);
        }
        to_r = Vec::new();
        for m in to_i {
            ei.handle(&mut i.tree, m)?;
            to_r.extend(settle(&mut ei, i)?);
        }
        rounds += 1;
        assert!(rounds < 1_000_000, "exchange does not terminate");
    }
    assert!(ei.is_finished(), "initiator finished");
    assert!(er.is_finished(), "responder finished");
    Ok((ei.stats(), er.stats()))
}

fn token_in(start: u64, end: u64, offset: u64) -> u64 {
    let span = if start < end {
        u128::from(end - start)
    } else {
        (1u128 << 64) - u128::from(start) + u128::from(end)
    };
    start
        .wrapping_add(1)
        .wrapping_add((u128::from(offset) % span) as u64)
}

fn h(seed: u64) -> Hash {
    *blake3::hash(&seed.to_le_bytes()).as_bytes()
}

/// What happens to a key on the way from the shared base to the two replicas.
#[derive(Clone, Copy, Debug)]
enum Fate {
    Same,
    MissingOnInitiator,
    MissingOnResponder,
    Differs,
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        12 => Just(Fate::Same),
        1 => Just(Fate::MissingOnInitiator),
        1 => Just(Fate::MissingOnResponder),
        1 => Just(Fate::Differs),
    ]
}

fn limits() -> impl Strategy<Value = ExchangeLimits> {
    prop_oneof![
        Just(ExchangeLimits::default()),
        (1usize..=6, 1usize..=5, 38usize..=140).prop_map(|(h, i, b)| ExchangeLimits {
            max_hashes: h,
            max_items: i,
            max_item_bytes: b,
            max_leaf_items: 1000,
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn an_exchange_finds_exactly_the_differing_keys_both_ways(
        start in any::<u64>(),
        end in any::<u64>(),
        depth in 1u8..=8,
        keys in prop::collection::vec(
            (prop_oneof![any::<u64>(), 0u64..4], any::<u64>(), fate()),
            0..120,
        ),
        limits in limits(),
    ) {
        let (mut on_i, mut on_r) = (Vec::new(), Vec::new());
        let (mut expect_i, mut expect_r) = (BTreeSet::new(), BTreeSet::new());
        for (n, &(offset, version, fate)) in keys.iter().enumerate() {
            let key = format!("k{n}").into_bytes();
            let token = token_in(start, end, offset);
            let item = (token, key.clone(), h(version));
            match fate {
                Fate::Same => {
                    on_i.push(item.clone());
                    on_r.push(item);
                }
                Fate::MissingOnInitiator => {
                    on_r.push(item);
                    expect_r.insert(key);
                }
                Fate::MissingOnResponder => {
                    on_i.push(item);
                    expect_i.insert(key);
                }
                Fate::Differs => {
                    on_i.push(item);
                    on_r.push((token, key.clone(), h(!version)));
                    expect_i.insert(key.clone());
                    expect_r.insert(key);
                }
            }
        }
        let mut i = Replica::new(start, end, depth, &on_i);
        let mut r = Replica::new(start, end, depth, &on_r);
        let (si, sr) = run(&mut i, &mut r, limits).unwrap();
        prop_assert_eq!(&i.pushed, &expect_i);
        prop_assert_eq!(&r.pushed, &expect_r);
        prop_assert_eq!(si.keys_pushed, expect_i.len() as u64, "no key pushed twice");
        prop_assert_eq!(sr.keys_pushed, expect_r.len() as u64, "no key pushed twice");
        if expect_i.is_empty() && expect_r.is_empty() {
            prop_assert_eq!(si.messages_sent, 1, "equal roots end after Open");
        }
    }

    #[test]
    fn hostile_messages_never_panic(
        msgs in prop::collection::vec(any_msg(), 1..12),
        to_initiator in any::<bool>(),
        feed in prop::collection::vec((0u32..16, prop::collection::vec(item(), 0..4)), 0..3),
    ) {
        let base = [(3u64, b"a".to_vec(), h(1)), (9, b"b".to_vec(), h(2))];
        let mut mine = Replica::new(0, 16, 2, &base);
        let mut ex = if to_initiator {
            Exchange::initiate(&mut mine.tree, ExchangeLimits::default()).unwrap()
        } else {
            Exchange::respond(&mine.tree, ExchangeLimits::default()).unwrap()
        };
        for (n, msg) in msgs.into_iter().enumerate() {
            while ex.poll().is_some() {}
            let _ = ex.handle(&mut mine.tree, msg);
            if let Some((leaf, items)) = feed.get(n) {
                let _ = ex.leaf_items(*leaf, items.clone());
            }
        }
    }
}

fn item() -> impl Strategy<Value = Item> {
    (prop::collection::vec(any::<u8>(), 0..3), any::<u8>()).prop_map(|(k, b)| (k, [b; 32]))
}

fn any_msg() -> impl Strategy<Value = ExchangeMsg> {
    prop_oneof![
        (0u64..20, 0u64..20, 0u8..4, any::<u8>()).prop_map(|(start, end, depth, b)| {
            ExchangeMsg::Open {
                start,
                end,
                depth,
                root: [b; 32],
            }
        }),
        (0u8..4, 0u32..6, prop::collection::vec(any::<u8>(), 0..6)).prop_map(
            |(level, from, hs)| {
                ExchangeMsg::Hashes {
                    level,
                    from,
                    hashes: hs.into_iter().map(|b| [b; 32]).collect(),
                }
            }
        ),
        (0u8..4, 0u32..6, prop::collection::vec(any::<u8>(), 0..3))
            .prop_map(|(level, from, bits)| ExchangeMsg::Differ { level, from, bits }),
        prop::collection::vec(
            (0u32..6, prop::collection::vec(item(), 0..4), any::<bool>())
                .prop_map(|(leaf, items, more)| LeafItems { leaf, items, more }),
            0..3,
        )
        .prop_map(|leaves| ExchangeMsg::Items { leaves }),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3), 0..3)
            .prop_map(|keys| ExchangeMsg::Want { keys }),
    ]
}

#[path = "hostile_tests.rs"]
mod hostile;
