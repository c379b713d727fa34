//! Dotted version vector sets, after Riak's `dvvset` (Almeida, Baquero, Gonçalves et al.).
//!
//! A set holds, per actor, a counter `n` (the actor's events seen) and the values of its
//! still-live dots, newest first: the values of an entry `(actor, n, [v1, v2, ..])` are the
//! dots `(actor, n)`, `(actor, n - 1)`, ... Everything at or below `n - len` has been
//! overwritten. *Anonymous* values have no dot yet: they are a client's new value before a
//! replica gives it one in [`DvvSet::update`].
//!
//! The merge laws (commutative, associative, idempotent) hold for sets whose values all have
//! dots, which is everything a replica stores; anonymous values only live between a client
//! and the replica that takes its write.

use std::cmp::Ordering;

use super::{Actor, VersionError, VersionVector};

/// One actor's counter and the values of its live dots, newest first.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct DotEntry<V> {
    actor: Actor,
    counter: u64,
    values: Vec<V>,
}

/// The wire shape, checked by `TryFrom` before it becomes a [`DvvSet`].
#[derive(serde::Deserialize)]
pub(super) struct DvvSetRepr<V> {
    entries: Vec<DotEntry<V>>,
    anonymous: Vec<V>,
}

/// A dotted version vector set: a key's causal history and its concurrent values (siblings).
///
/// ```
/// use ringkv::version::DvvSet;
///
/// // A client writes without context; replica "a" gives the value dot (a, 1).
/// let v1 = DvvSet::update(&DvvSet::new("v1"), &DvvSet::empty(), "a");
/// // Another client read v1 and overwrites it through replica "b".
/// let v2 = DvvSet::update(&DvvSet::new_with_context(&v1.join(), "v2"), &DvvSet::empty(), "b");
/// // A third wrote concurrently through "a", without having read anything.
/// let v3 = DvvSet::update(&DvvSet::new("v3"), &v1, "a");
/// let merged = v2.sync(&v3);
/// assert_eq!(merged.values(), [&"v3", &"v2"]); // v1 is gone, v2 and v3 are siblings
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(
    try_from = "DvvSetRepr<V>",
    bound(deserialize = "V: serde::Deserialize<'de>")
)]
pub struct DvvSet<V> {
    /// Sorted by actor, no duplicates, no zero counters, `values.len() <= counter`.
    entries: Vec<DotEntry<V>>,
    anonymous: Vec<V>,
}

impl<V> TryFrom<DvvSetRepr<V>> for DvvSet<V> {
    type Error = VersionError;

    /// Checks the invariants every other function relies on.
    fn try_from(repr: DvvSetRepr<V>) -> Result<Self, VersionError> {
        let mut entries = Vec::with_capacity(repr.entries.len());
        for entry in repr.entries {
            if entry.values.len() as u64 > entry.counter {
                return Err(VersionError::Invalid(
                    "an entry has more values than its counter",
                ));
            }
            if let Some(prev) = entries.last() {
                let prev: &DotEntry<V> = prev;
                if prev.actor >= entry.actor {
                    return Err(VersionError::Invalid("entries are not sorted by actor"));
                }
            }
            if entry.counter > 0 {
                entries.push(entry);
            }
        }
        Ok(DvvSet {
            entries,
            anonymous: repr.anonymous,
        })
    }
}

impl<V> Default for DvvSet<V> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<V> DvvSet<V> {
    /// The set of a key nobody wrote: no history, no values.
    #[must_use]
    pub fn empty() -> Self {
        DvvSet {
            entries: Vec::new(),
            anonymous: Vec::new(),
        }
    }

    /// The number of values (siblings, anonymous ones included).
    #[must_use]
    pub fn size(&self) -> usize {
        self.entries.iter().map(|e| e.values.len()).sum::<usize>() + self.anonymous.len()
    }

    /// The causal context of everything in the set: each actor's counter.
    #[must_use]
    pub fn join(&self) -> VersionVector {
        self.entries
            .iter()
            .map(|e| (e.actor.clone(), e.counter))
            .collect()
    }

    /// All values: anonymous ones first, then each actor's, newest first.
    #[must_use]
    pub fn values(&self) -> Vec<&V> {
        self.anonymous
            .iter()
            .chain(self.entries.iter().flat_map(|e| e.values.iter()))
            .collect()
    }

    /// `(actor, counter, values newest first)` in actor order: the value at index `i` has the
    /// dot `(actor, counter - i)`. Meant for hashing and debugging.
    pub fn entries(&self) -> impl Iterator<Item = (&str, u64, &[V])> + '_ {
        self.entries
            .iter()
            .map(|e| (e.actor.as_str(), e.counter, e.values.as_slice()))
    }

    /// Values that have no dot yet (a client's write before a replica took it).
    #[must_use]
    pub fn anonymous(&self) -> &[V] {
        &self.anonymous
    }

    /// Whether `other`'s history strictly contains this one's, so all of this set's values
    /// are outdated by it.
    #[must_use]
    pub fn less(&self, other: &Self) -> bool {
        strictly_dominates(&other.entries, &self.entries)
    }

    /// The same history with `f` applied to every value.
    #[must_use]
    pub fn map<W>(&self, f: impl Fn(&V) -> W) -> DvvSet<W> {
        DvvSet {
            entries: self
                .entries
                .iter()
                .map(|e| DotEntry {
                    actor: e.actor.clone(),
                    counter: e.counter,
                    values: e.values.iter().map(&f).collect(),
                })
                .collect(),
            anonymous: self.anonymous.iter().map(&f).collect(),
        }
    }
}

impl<V: Clone + PartialEq> DvvSet<V> {
    /// A client's value with no causal context: it will replace nothing.
    #[must_use]
    pub fn new(value: V) -> Self {
        DvvSet {
            entries: Vec::new(),
            anonymous: vec![value],
        }
    }

    /// A client's value written with the context of an earlier read: it will replace exactly
    /// the values covered by `context`.
    #[must_use]
    pub fn new_with_context(context: &VersionVector, value: V) -> Self {
        DvvSet {
            entries: context
                .iter()
                .map(|(actor, counter)| DotEntry {
                    actor: actor.to_owned(),
                    counter,
                    values: Vec::new(),
                })
                .collect(),
            anonymous: vec![value],
        }
    }

    /// Takes a client's write at the replica `actor` (Riak's `dvvset:update/3`).
    ///
    /// `new` comes from [`new`](Self::new) or [`new_with_context`](Self::new_with_context);
    /// `local` is what this replica stores for the key ([`empty`](Self::empty) if nothing).
    /// The result merges both histories, drops the local values `new`'s context covers,
    /// keeps the concurrent ones, and gives the new value the next dot of `actor`. Should
    /// `new` carry several anonymous values, the first gets the dot and the others stay
    /// anonymous; with none, the result is just the merged history.
    #[must_use]
    pub fn update(new: &Self, local: &Self, actor: &str) -> Self {
        let context = DvvSet {
            entries: new.entries.clone(),
            anonymous: Vec::new(),
        };
        let mut merged = context.sync(local);
        let mut fresh = new.anonymous.iter();
        if let Some(value) = fresh.next() {
            merged.event(actor, value.clone());
        }
        for value in fresh {
            if !merged.anonymous.contains(value) {
                merged.anonymous.push(value.clone());
            }
        }
        merged
    }

    /// Merges two replicas' sets (Riak's `dvvset:sync`): the union of both histories, keeping
    /// every value that neither side has seen overwritten.
    #[must_use]
    pub fn sync(&self, other: &Self) -> Self {
        let anonymous = if self.less(other) {
            other.anonymous.clone()
        } else if other.less(self) {
            self.anonymous.clone()
        } else {
            let mut union = self.anonymous.clone();
            for value in &other.anonymous {
                if !union.contains(value) {
                    union.push(value.clone());
                }
            }
            union
        };
        let mut entries = Vec::with_capacity(self.entries.len().max(other.entries.len()));
        let (mut left, mut right) = (
            self.entries.iter().peekable(),
            other.entries.iter().peekable(),
        );
        loop {
            match (left.peek(), right.peek()) {
                (Some(l), Some(r)) => match l.actor.cmp(&r.actor) {
                    Ordering::Less => entries.extend(left.next().cloned()),
                    Ordering::Greater => entries.extend(right.next().cloned()),
                    Ordering::Equal => {
                        entries.push(merge_entry(l, r));
                        left.next();
                        right.next();
                    }
                },
                (Some(_), None) => entries.extend(left.next().cloned()),
                (None, Some(_)) => entries.extend(right.next().cloned()),
                (None, None) => break,
            }
        }
        DvvSet { entries, anonymous }
    }

    /// Last-writer-wins (Riak's `dvvset:lww`): the same history with only the value of
    /// largest `key` left.
    ///
    /// Candidates are each actor's newest value and the anonymous values: an actor's older
    /// values lost to its newer ones, and only a newest value can stay without changing its
    /// dot. Ties go to the first candidate in actor order, anonymous values last. A set with
    /// no values is returned unchanged.
    #[must_use]
    pub fn lww<K: Ord>(&self, key: impl Fn(&V) -> K) -> Self {
        // Where the winner lives: Some(entry index) or None for anonymous index.
        let mut best: Option<(K, Option<usize>, usize)> = None;
        let heads = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.values.first().map(|v| (Some(i), 0, v)));
        let anonymous = self.anonymous.iter().enumerate().map(|(j, v)| (None, j, v));
        for (entry, index, value) in heads.chain(anonymous) {
            let k = key(value);
            if best.as_ref().is_none_or(|(top, _, _)| k > *top) {
                best = Some((k, entry, index));
            }
        }
        let Some((_, entry, index)) = best else {
            return self.clone();
        };
        let mut out = DvvSet {
            entries: self
                .entries
                .iter()
                .map(|e| DotEntry {
                    actor: e.actor.clone(),
                    counter: e.counter,
                    values: Vec::new(),
                })
                .collect(),
            anonymous: Vec::new(),
        };
        match entry {
            Some(i) => {
                if let (Some(slot), Some(src)) = (out.entries.get_mut(i), self.entries.get(i)) {
                    slot.values.extend(src.values.first().cloned());
                }
            }
            None => out.anonymous.extend(self.anonymous.get(index).cloned()),
        }
        out
    }

    /// Records a new event of `actor` carrying `value`.
    fn event(&mut self, actor: &str, value: V) {
        match self
            .entries
            .binary_search_by(|e| e.actor.as_str().cmp(actor))
        {
            Ok(i) => {
                if let Some(e) = self.entries.get_mut(i) {
                    // 2^64 events of one actor cannot happen; saturate rather than panic.
                    e.counter = e.counter.saturating_add(1);
                    e.values.insert(0, value);
                }
            }
            Err(i) => self.entries.insert(
                i,
                DotEntry {
                    actor: actor.to_owned(),
                    counter: 1,
                    values: vec![value],
                },
            ),
        }
    }
}

/// Merges one actor's entry from two sets: the larger counter, and the values neither side
/// has seen overwritten (those above both sides' overwritten prefixes).
fn merge_entry<V: Clone>(a: &DotEntry<V>, b: &DotEntry<V>) -> DotEntry<V> {
    let (hi, lo) = if a.counter >= b.counter {
        (a, b)
    } else {
        (b, a)
    };
    let gone = (hi.counter.saturating_sub(hi.values.len() as u64))
        .max(lo.counter.saturating_sub(lo.values.len() as u64));
    let keep = usize::try_from(hi.counter - gone.min(hi.counter)).unwrap_or(usize::MAX);
    DotEntry {
        actor: hi.actor.clone(),
        counter: hi.counter,
        values: hi.values.iter().take(keep).cloned().collect(),
    }
}

/// Whether history `big` strictly contains history `small` (both sorted by actor).
fn strictly_dominates<V>(big: &[DotEntry<V>], small: &[DotEntry<V>]) -> bool {
    let mut strict = false;
    let mut b = big.iter().peekable();
    for s in small {
        // Actors only `big` knows make it strictly bigger.
        while b.peek().is_some_and(|e| e.actor < s.actor) {
            b.next();
            strict = true;
        }
        match b.next() {
            Some(e) if e.actor == s.actor => match e.counter.cmp(&s.counter) {
                Ordering::Less => return false,
                Ordering::Greater => strict = true,
                Ordering::Equal => {}
            },
            // `small` knows an actor `big` does not.
            _ => return false,
        }
    }
    strict || b.next().is_some()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Builds a set from raw parts, checking invariants as decoding does.
    pub(crate) fn set<V>(entries: Vec<(&str, u64, Vec<V>)>, anonymous: Vec<V>) -> DvvSet<V> {
        DvvSet::try_from(DvvSetRepr {
            entries: entries
                .into_iter()
                .map(|(actor, counter, values)| DotEntry {
                    actor: actor.to_owned(),
                    counter,
                    values,
                })
                .collect(),
            anonymous,
        })
        .unwrap()
    }

    fn ctx(s: &DvvSet<&'static str>, v: &'static str) -> DvvSet<&'static str> {
        DvvSet::new_with_context(&s.join(), v)
    }

    #[test]
    fn join_is_the_counter_of_each_actor() {
        let a = DvvSet::new("v1");
        assert!(a.join().is_empty());
        let a1 = DvvSet::update(&a, &DvvSet::empty(), "a");
        let b1 = DvvSet::update(&ctx(&a1, "v2"), &a1, "b");
        let expected: VersionVector = [("a".to_owned(), 1), ("b".to_owned(), 1)]
            .into_iter()
            .collect();
        assert_eq!(b1.join(), expected);
    }

    #[test]
    fn update_replaces_what_the_context_covers() {
        let a0 = DvvSet::update(&DvvSet::new("v1"), &DvvSet::empty(), "a");
        let a1 = DvvSet::update(&ctx(&a0, "v2"), &a0, "a");
        assert_eq!(a1, set(vec![("a", 2, vec!["v2"])], vec![]));
        let a2 = DvvSet::update(&ctx(&a1, "v3"), &a1, "b");
        assert_eq!(
            a2,
            set(vec![("a", 2, vec![]), ("b", 1, vec!["v3"])], vec![])
        );
        // An old context keeps the value written since as a sibling.
        let a3 = DvvSet::update(&ctx(&a0, "v4"), &a1, "b");
        assert_eq!(
            a3,
            set(vec![("a", 2, vec!["v2"]), ("b", 1, vec!["v4"])], vec![])
        );
        let a4 = DvvSet::update(&ctx(&a0, "v5"), &a1, "a");
        assert_eq!(a4, set(vec![("a", 3, vec!["v5", "v2"])], vec![]));
    }

    #[test]
    fn update_without_context_keeps_everything() {
        let a0 = DvvSet::update(&DvvSet::new("v1"), &DvvSet::empty(), "a");
        let a1 = DvvSet::update(&DvvSet::new("v2"), &a0, "a");
        assert_eq!(a1, set(vec![("a", 2, vec!["v2", "v1"])], vec![]));
        // Then a writer who read v1 only replaces v1.
        let a2 = DvvSet::update(&ctx(&a0, "v3"), &a1, "a");
        assert_eq!(a2, set(vec![("a", 3, vec!["v3", "v2"])], vec![]));
    }

    #[test]
    fn sync_drops_overwritten_values_and_keeps_concurrent_ones() {
        let w = set::<&str>(vec![("a", 1, vec![])], vec![]);
        let z = set(vec![("a", 2, vec!["v2", "v1"])], vec![]);
        assert_eq!(w.sync(&z), set(vec![("a", 2, vec!["v2"])], vec![]));
        assert_eq!(z.sync(&w), w.sync(&z));

        let a = DvvSet::update(&DvvSet::new("v1"), &DvvSet::empty(), "a");
        let a1 = DvvSet::update(&ctx(&a, "v2"), &DvvSet::empty(), "a");
        let a3 = DvvSet::update(&ctx(&a1, "v3"), &DvvSet::empty(), "b");
        let a4 = DvvSet::update(&ctx(&a1, "v3"), &DvvSet::empty(), "c");
        let expected = set(
            vec![("a", 2, vec![]), ("b", 1, vec!["v3"]), ("c", 1, vec!["v3"])],
            vec![],
        );
        assert_eq!(a4.sync(&a3), expected);
        assert_eq!(a3.sync(&a4), expected);

        let x = set::<&str>(vec![("x", 1, vec![])], vec![]);
        assert_eq!(
            x.sync(&a),
            set(vec![("a", 1, vec!["v1"]), ("x", 1, vec![])], vec![])
        );
        assert_eq!(a.sync(&x), x.sync(&a));
    }

    #[test]
    fn sync_keeps_anonymous_values_of_the_newer_side_only() {
        let older = set(vec![("a", 1, vec![])], vec!["old"]);
        let newer = set(vec![("a", 2, vec![])], vec!["new"]);
        assert_eq!(older.sync(&newer).anonymous(), ["new"]);
        assert_eq!(newer.sync(&older).anonymous(), ["new"]);
        let other = set(vec![("b", 1, vec![])], vec!["other", "new"]);
        assert_eq!(newer.sync(&other).anonymous(), ["new", "other"]);
    }

    #[test]
    fn less_is_strict_domination() {
        let a1 = set::<u8>(vec![("a", 1, vec![])], vec![]);
        let a2 = set::<u8>(vec![("a", 2, vec![])], vec![]);
        let a1b1 = set::<u8>(vec![("a", 1, vec![]), ("b", 1, vec![])], vec![]);
        let b1 = set::<u8>(vec![("b", 1, vec![])], vec![]);
        assert!(a1.less(&a2) && !a2.less(&a1));
        assert!(a1.less(&a1b1) && b1.less(&a1b1));
        assert!(!a1.less(&a1), "not strict");
        assert!(!a1.less(&b1) && !b1.less(&a1), "concurrent");
        assert!(!a2.less(&a1b1) && !a1b1.less(&a2), "concurrent");
        assert!(DvvSet::<u8>::empty().less(&a1));
        assert!(!a1.less(&DvvSet::empty()));
    }

    #[test]
    fn lww_keeps_the_history_and_only_the_winning_value() {
        let x = set(
            vec![("a", 4, vec![5, 2]), ("b", 1, vec![]), ("c", 1, vec![3])],
            vec![],
        );
        assert_eq!(
            x.lww(|v| *v),
            set(
                vec![("a", 4, vec![5]), ("b", 1, vec![]), ("c", 1, vec![])],
                vec![]
            )
        );
        let y = set(
            vec![("a", 4, vec![5, 2]), ("b", 1, vec![]), ("c", 1, vec![3])],
            vec![10, 0],
        );
        assert_eq!(
            y.lww(|v| *v),
            set(
                vec![("a", 4, vec![]), ("b", 1, vec![]), ("c", 1, vec![])],
                vec![10]
            )
        );
        // Only newest values compete: a's older 9 lost to its newer 5 already.
        let z = set(vec![("a", 4, vec![5, 9]), ("b", 1, vec![1])], vec![]);
        assert_eq!(
            z.lww(|v| *v),
            set(vec![("a", 4, vec![5]), ("b", 1, vec![])], vec![])
        );
        // Syncing the result with the original keeps the result.
        assert_eq!(x.sync(&x.lww(|v| *v)), x.lww(|v| *v));
        let empty = set::<u8>(vec![("a", 1, vec![])], vec![]);
        assert_eq!(empty.lww(|v| *v), empty);
    }

    #[test]
    fn size_and_values_count_every_sibling() {
        let y = set(vec![("a", 4, vec![5, 2]), ("c", 1, vec![3])], vec![10]);
        assert_eq!(y.size(), 4);
        assert_eq!(y.values(), [&10, &5, &2, &3]);
        assert_eq!(
            y.entries()
                .map(|(a, n, v)| (a, n, v.len()))
                .collect::<Vec<_>>(),
            [("a", 4, 2), ("c", 1, 1)]
        );
        assert_eq!(y.map(|v| v * 2).values(), [&20, &10, &4, &6]);
    }

    #[test]
    fn decoding_rejects_broken_invariants_and_drops_zero_counters() {
        let too_many = DvvSetRepr {
            entries: vec![DotEntry {
                actor: "a".into(),
                counter: 1,
                values: vec![1u8, 2],
            }],
            anonymous: vec![],
        };
        assert!(matches!(
            DvvSet::try_from(too_many),
            Err(VersionError::Invalid(_))
        ));
        let unsorted = DvvSetRepr {
            entries: vec![
                DotEntry {
                    actor: "b".into(),
                    counter: 1,
                    values: vec![1u8],
                },
                DotEntry {
                    actor: "a".into(),
                    counter: 1,
                    values: vec![],
                },
            ],
            anonymous: vec![],
        };
        assert!(matches!(
            DvvSet::try_from(unsorted),
            Err(VersionError::Invalid(_))
        ));
        let zero = set::<u8>(vec![("a", 0, vec![]), ("b", 1, vec![])], vec![]);
        assert_eq!(zero, set(vec![("b", 1, vec![])], vec![]));
    }

    #[test]
    fn serde_round_trip_validates() {
        let x = set(vec![("a", 4, vec![5u32, 2]), ("c", 1, vec![3])], vec![10]);
        let bytes = postcard::to_allocvec(&x).unwrap();
        assert_eq!(postcard::from_bytes::<DvvSet<u32>>(&bytes).unwrap(), x);
        let bad = DvvSet {
            entries: vec![DotEntry {
                actor: "a".into(),
                counter: 1,
                values: vec![1u32, 2],
            }],
            anonymous: vec![],
        };
        let bytes = postcard::to_allocvec(&bad).unwrap();
        assert!(postcard::from_bytes::<DvvSet<u32>>(&bytes).is_err());
    }
}
