//! Property tests for the version laws, driven by random histories of three replicas.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::hlc::Timestamp;

const ACTORS: [&str; 3] = ["a", "b", "c"];

/// One step of a history.
#[derive(Clone, Debug)]
enum Op {
    /// A client writes through replica `at`, with the context of an earlier read or none.
    Write { at: usize, context: Option<usize> },
    /// A client reads replica `at` and keeps the context.
    Read { at: usize },
    /// Replica `to` merges replica `from`'s set (replication or anti-entropy).
    Sync { from: usize, to: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3usize, proptest::option::of(any::<usize>()))
            .prop_map(|(at, context)| Op::Write { at, context }),
        1 => (0..3usize).prop_map(|at| Op::Read { at }),
        2 => (0..3usize, 0..3usize).prop_map(|(from, to)| Op::Sync { from, to }),
    ]
}

/// Every set a replica held and every context a client read during one history. Values are
/// unique, increasing write numbers, so a value names its dot.
struct History {
    states: Vec<DvvSet<u32>>,
    contexts: Vec<VersionVector>,
    next_value: u32,
}

fn run(ops: &[Op]) -> History {
    let mut replicas = vec![DvvSet::<u32>::empty(); 3];
    let mut h = History {
        states: vec![DvvSet::empty()],
        contexts: vec![VersionVector::new()],
        next_value: 1,
    };
    for op in ops {
        match *op {
            Op::Write { at, context } => {
                let value = h.next_value;
                h.next_value += 1;
                let new = match context {
                    Some(i) => DvvSet::new_with_context(&h.contexts[i % h.contexts.len()], value),
                    None => DvvSet::new(value),
                };
                replicas[at] = DvvSet::update(&new, &replicas[at], ACTORS[at]);
                h.states.push(replicas[at].clone());
            }
            Op::Read { at } => h.contexts.push(replicas[at].join()),
            Op::Sync { from, to } => {
                replicas[to] = replicas[to].sync(&replicas[from]);
                h.states.push(replicas[to].clone());
            }
        }
    }
    h
}

type Canonical<V> = (Vec<(String, u64, Vec<V>)>, Vec<V>);

/// Equality up to the order of anonymous values, which the model leaves unspecified.
fn canonical<V: Clone + Ord>(s: &DvvSet<V>) -> Canonical<V> {
    let entries = s
        .entries()
        .map(|(a, n, vs)| (a.to_owned(), n, vs.to_vec()))
        .collect();
    let mut anonymous = s.anonymous().to_vec();
    anonymous.sort();
    (entries, anonymous)
}

/// Each value with its dot.
fn dots(s: &DvvSet<u32>) -> Vec<(u32, String, u64)> {
    s.entries()
        .flat_map(|(a, n, vs)| {
            vs.iter()
                .enumerate()
                .map(move |(i, v)| (*v, a.to_owned(), n - i as u64))
        })
        .collect()
}

fn value_set<V: Ord + Clone>(s: &DvvSet<V>) -> BTreeSet<V> {
    s.values().into_iter().cloned().collect()
}

fn to_record(s: &DvvSet<u32>) -> Record {
    s.map(|v| Sibling {
        value: (v % 3 != 0).then(|| v.to_be_bytes().to_vec()),
        ts: Timestamp {
            millis: u64::from(*v),
            logical: 0,
        },
        origin: ACTORS[*v as usize % 3].to_owned(),
    })
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 0..40)
}

proptest! {
    #[test]
    fn sync_is_commutative_associative_and_idempotent(
        ops in ops(), i in any::<usize>(), j in any::<usize>(), k in any::<usize>(),
    ) {
        let h = run(&ops);
        let n = h.states.len();
        let (a, b, c) = (&h.states[i % n], &h.states[j % n], &h.states[k % n]);
        prop_assert_eq!(canonical(&a.sync(b)), canonical(&b.sync(a)));
        prop_assert_eq!(canonical(&a.sync(b).sync(c)), canonical(&a.sync(&b.sync(c))));
        prop_assert_eq!(canonical(&a.sync(a)), canonical(a));
        // Merging never loses history.
        let ab = a.sync(b).join();
        prop_assert!(ab.descends(&a.join()) && ab.descends(&b.join()));
    }

    #[test]
    fn update_dominates_its_context_and_keeps_concurrent_siblings(
        ops in ops(), i in any::<usize>(), c in any::<usize>(), at in 0..3usize,
    ) {
        let h = run(&ops);
        let local = &h.states[i % h.states.len()];
        let context = &h.contexts[c % h.contexts.len()];
        let value = h.next_value;
        let written = DvvSet::update(&DvvSet::new_with_context(context, value), local, ACTORS[at]);

        prop_assert!(local.less(&written));
        prop_assert!(written.join().descends(context));
        let mut expected: BTreeSet<u32> = dots(local)
            .into_iter()
            .filter(|(_, actor, n)| context.get(actor) < *n)
            .map(|(v, _, _)| v)
            .collect();
        expected.insert(value);
        prop_assert_eq!(value_set(&written), expected);
    }

    #[test]
    fn a_write_with_a_read_context_replaces_exactly_what_was_read(
        ops in ops(), i in any::<usize>(),
    ) {
        let h = run(&ops);
        let read = &h.states[i % h.states.len()];
        let (mine, theirs) = (h.next_value, h.next_value + 1);
        // Someone writes without context after our read: it must survive our write.
        let concurrent = DvvSet::update(&DvvSet::new(theirs), read, "b");
        let ours = DvvSet::new_with_context(&read.join(), mine);
        let expected = BTreeSet::from([mine, theirs]);

        let same_replica = DvvSet::update(&ours, &concurrent, "b");
        prop_assert_eq!(value_set(&same_replica), expected.clone());
        // Through another replica that has seen nothing, merged later, either way round.
        let elsewhere = DvvSet::update(&ours, &DvvSet::empty(), "z");
        prop_assert_eq!(value_set(&elsewhere.sync(&concurrent)), expected.clone());
        prop_assert_eq!(value_set(&concurrent.sync(&elsewhere)), expected.clone());
        // Old copies of what was read do not come back.
        prop_assert_eq!(value_set(&same_replica.sync(read)), expected);
    }

    #[test]
    fn lww_picks_the_highest_timestamp(ops in ops(), i in any::<usize>()) {
        let h = run(&ops);
        let record = to_record(&h.states[i % h.states.len()]);
        let won = apply_policy(&record, ConflictPolicy::Lww);
        let newest = record.values().into_iter().max_by_key(|s| (s.ts, s.origin.clone()));
        prop_assert_eq!(won.values(), newest.into_iter().collect::<Vec<_>>());
        prop_assert_eq!(won.join(), record.join());
        // Replicas that merged the original and the collapsed record agree on the collapse.
        prop_assert_eq!(&record.sync(&won), &won);
        prop_assert_eq!(apply_policy(&record, ConflictPolicy::Siblings), record);
    }

    #[test]
    fn record_codec_round_trips(ops in ops(), i in any::<usize>()) {
        let h = run(&ops);
        let record = to_record(&h.states[i % h.states.len()]);
        let bytes = encode_record(&record).unwrap();
        prop_assert_eq!(decode_record(&bytes).unwrap(), record);
        // No strict prefix of an encoding decodes.
        for cut in 0..bytes.len() {
            prop_assert!(decode_record(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut framed = vec![RECORD_FORMAT];
        framed.extend_from_slice(&bytes);
        for input in [&bytes[..], &framed[..]] {
            if let Ok(record) = decode_record(input) {
                // Whatever decodes is a valid set: it encodes and decodes to itself.
                let again = encode_record(&record).unwrap();
                prop_assert_eq!(decode_record(&again).unwrap(), record);
            }
        }
        if bytes.first().is_some_and(|&b| b != RECORD_FORMAT) {
            prop_assert!(decode_record(&bytes).is_err());
        }
    }
}
