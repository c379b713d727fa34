//! Version vectors: one event counter per actor.

use std::collections::BTreeMap;

use super::Actor;

/// A version vector: for each actor, how many of its events are known.
///
/// A missing actor and a zero counter mean the same thing, so zeros are never stored (also
/// not when decoding), which keeps equality meaningful.
///
/// ```
/// use ringkv::version::VersionVector;
///
/// let a: VersionVector = [("n1".to_string(), 2), ("n2".to_string(), 1)].into_iter().collect();
/// let b: VersionVector = [("n1".to_string(), 1)].into_iter().collect();
/// assert!(a.descends(&b) && !b.descends(&a));
/// assert_eq!(a.get("n3"), 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "BTreeMap<Actor, u64>")]
pub struct VersionVector(BTreeMap<Actor, u64>);

impl VersionVector {
    /// The empty vector (nothing seen).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter of `actor` (0 when absent).
    #[must_use]
    pub fn get(&self, actor: &str) -> u64 {
        self.0.get(actor).copied().unwrap_or(0)
    }

    /// Whether `self` has seen everything `other` has (`self >= other` pointwise).
    #[must_use]
    pub fn descends(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(actor, &n)| self.get(actor) >= n)
    }

    /// Pointwise maximum: afterwards `self` descends both its old value and `other`.
    pub fn merge(&mut self, other: &VersionVector) {
        for (actor, &n) in &other.0 {
            self.witness(actor, n);
        }
    }

    /// Raises `actor`'s counter to at least `counter`.
    pub fn witness(&mut self, actor: &str, counter: u64) {
        if counter == 0 {
            return;
        }
        match self.0.get_mut(actor) {
            Some(known) => *known = (*known).max(counter),
            None => {
                self.0.insert(actor.to_owned(), counter);
            }
        }
    }

    /// Whether no event is known.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of actors with a non-zero counter.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `(actor, counter)` pairs in actor order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.0.iter().map(|(actor, &n)| (actor.as_str(), n))
    }
}

impl From<BTreeMap<Actor, u64>> for VersionVector {
    fn from(mut map: BTreeMap<Actor, u64>) -> Self {
        map.retain(|_, n| *n > 0);
        VersionVector(map)
    }
}

impl FromIterator<(Actor, u64)> for VersionVector {
    /// Collects pairs; a repeated actor keeps its largest counter.
    fn from_iter<I: IntoIterator<Item = (Actor, u64)>>(iter: I) -> Self {
        let mut vv = VersionVector::new();
        for (actor, n) in iter {
            vv.witness(&actor, n);
        }
        vv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vv(pairs: &[(&str, u64)]) -> VersionVector {
        pairs.iter().map(|&(a, n)| (a.to_owned(), n)).collect()
    }

    #[test]
    fn zero_counters_are_not_stored() {
        assert_eq!(vv(&[("a", 0)]), VersionVector::new());
        let decoded: VersionVector = postcard::from_bytes(
            &postcard::to_allocvec(&BTreeMap::from([("a".to_owned(), 0u64)])).unwrap(),
        )
        .unwrap();
        assert!(decoded.is_empty());
    }

    #[test]
    fn descends_is_pointwise_greater_or_equal() {
        let a = vv(&[("a", 2), ("b", 1)]);
        assert!(a.descends(&a));
        assert!(a.descends(&vv(&[("a", 2)])));
        assert!(!a.descends(&vv(&[("c", 1)])));
        assert!(!vv(&[("a", 1)]).descends(&vv(&[("b", 1)])));
        assert!(a.descends(&VersionVector::new()));
    }

    #[test]
    fn merge_takes_the_pointwise_maximum() {
        let mut a = vv(&[("a", 2), ("b", 1)]);
        a.merge(&vv(&[("b", 3), ("c", 1)]));
        assert_eq!(a, vv(&[("a", 2), ("b", 3), ("c", 1)]));
        assert_eq!(a.len(), 3);
        assert_eq!(a.iter().collect::<Vec<_>>(), [("a", 2), ("b", 3), ("c", 1)]);
    }
}
