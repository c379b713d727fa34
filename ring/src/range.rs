//! Token ranges: the pieces the vnode tokens cut the ring into.

use crate::token::{Token, TOKEN_SPACE};

/// The tokens `(start, end]`: `start` exclusive, `end` inclusive, with the nodes that
/// replicate them.
///
/// When `start >= end` the range wraps past `u64::MAX`; `start == end` is the whole ring
/// (a ring with a single vnode).
///
/// ```
/// use ringkv_ring::TokenRange;
/// let wrapping = TokenRange { start: u64::MAX - 1, end: 1, preference_list: vec![] };
/// assert!(wrapping.contains(u64::MAX) && wrapping.contains(0) && wrapping.contains(1));
/// assert!(!wrapping.contains(u64::MAX - 1) && !wrapping.contains(2));
/// assert_eq!(wrapping.len(), 3);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRange {
    /// Exclusive lower bound: the previous vnode's token.
    pub start: Token,
    /// Inclusive upper bound: the token of the vnode that owns this range.
    pub end: Token,
    /// Names of the replicas, coordinator (primary) first.
    pub preference_list: Vec<String>,
}

impl TokenRange {
    /// Whether `t` lies in `(start, end]`, wrapping when `start >= end`.
    pub fn contains(&self, t: Token) -> bool {
        if self.start < self.end {
            self.start < t && t <= self.end
        } else {
            t > self.start || t <= self.end
        }
    }

    /// Number of tokens in the range, from 1 up to 2^64 (hence `u128`).
    #[allow(clippy::len_without_is_empty)] // a range always holds at least one token
    pub fn len(&self) -> u128 {
        span(self.start, self.end)
    }

    /// Fraction of the whole ring this range covers, in `(0, 1]`.
    pub fn fraction(&self) -> f64 {
        self.len() as f64 / TOKEN_SPACE as f64
    }
}

/// Number of tokens in `(start, end]`, wrapping when `start >= end`.
pub(crate) fn span(start: Token, end: Token) -> u128 {
    if start < end {
        u128::from(end - start)
    } else {
        TOKEN_SPACE - u128::from(start) + u128::from(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: Token, end: Token) -> TokenRange {
        TokenRange {
            start,
            end,
            preference_list: Vec::new(),
        }
    }

    #[test]
    fn plain_range_excludes_start_and_includes_end() {
        let r = range(10, 20);
        assert!(!r.contains(10));
        assert!(r.contains(11));
        assert!(r.contains(20));
        assert!(!r.contains(21));
        assert!(!r.contains(0));
        assert_eq!(r.len(), 10);
    }

    #[test]
    fn wrapping_range_covers_both_ends_of_the_space() {
        let r = range(u64::MAX - 5, 5);
        assert!(r.contains(u64::MAX));
        assert!(r.contains(0));
        assert!(r.contains(5));
        assert!(!r.contains(6));
        assert!(!r.contains(u64::MAX - 5));
        assert_eq!(r.len(), 11);
    }

    #[test]
    fn range_ending_at_zero_wraps() {
        let r = range(100, 0);
        assert!(r.contains(101) && r.contains(u64::MAX) && r.contains(0));
        assert!(!r.contains(1) && !r.contains(100));
        assert_eq!(r.len(), TOKEN_SPACE - 100);
    }

    #[test]
    fn equal_bounds_mean_the_whole_ring() {
        let r = range(7, 7);
        for t in [0, 6, 7, 8, u64::MAX] {
            assert!(r.contains(t), "{t}");
        }
        assert_eq!(r.len(), TOKEN_SPACE);
        assert_eq!(r.fraction(), 1.0);
    }
}
