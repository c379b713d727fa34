//! Hybrid logical clock (HLC).
//!
//! A timestamp is the wall clock in milliseconds plus a logical counter that orders events
//! within one millisecond (or while the wall clock stands still or runs backwards). It stays
//! close to physical time, so last-writer-wins picks the write a human would call "later",
//! yet it never goes backwards on a node and always moves past every timestamp the node has
//! observed from a peer.
//!
//! The clock is sans-IO: the caller reads the wall clock and passes `wall_ms` in, which lets
//! the simulator drive it with simulated time.
//!
//! ```
//! use ringkv::hlc::Hlc;
//!
//! let mut clock = Hlc::new(500);
//! let a = clock.now(1_000);
//! let b = clock.now(999); // the wall clock stepped back
//! assert!(b > a);
//! ```

use std::fmt;

/// A point in hybrid logical time, ordered by `(millis, logical)`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Timestamp {
    /// Milliseconds since the Unix epoch (the physical part).
    pub millis: u64,
    /// Orders events that share the same `millis`.
    pub logical: u32,
}

impl Timestamp {
    /// The smallest timestamp strictly greater than `self`.
    ///
    /// When the logical counter is full, time moves on to the next millisecond instead of
    /// overflowing. At `u64::MAX` milliseconds (half a billion years away) it saturates.
    #[must_use]
    pub fn successor(self) -> Timestamp {
        match self.logical.checked_add(1) {
            Some(logical) => Timestamp {
                millis: self.millis,
                logical,
            },
            None => Timestamp {
                millis: self.millis.saturating_add(1),
                logical: 0,
            },
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.millis, self.logical)
    }
}

/// Why a remote timestamp was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    /// The peer's clock is further ahead of ours than the configured drift allows; accepting
    /// it would drag this node's clock (and every later write) into the future.
    #[error(
        "remote timestamp {remote} is {ahead_ms} ms ahead of local wall clock {wall_ms} \
         (max drift {max_drift_ms} ms)"
    )]
    TooFarAhead {
        /// The refused timestamp.
        remote: Timestamp,
        /// The local wall clock when it was refused.
        wall_ms: u64,
        /// How far ahead of `wall_ms` it was.
        ahead_ms: u64,
        /// The configured limit.
        max_drift_ms: u64,
    },
}

/// A hybrid logical clock for one node.
#[derive(Clone, Debug)]
pub struct Hlc {
    last: Timestamp,
    max_drift_ms: u64,
}

impl Hlc {
    /// A clock that refuses remote timestamps more than `max_drift_ms` ahead of the wall clock.
    #[must_use]
    pub fn new(max_drift_ms: u64) -> Self {
        Hlc {
            last: Timestamp::default(),
            max_drift_ms,
        }
    }

    /// A timestamp for a local event: strictly greater than every timestamp this clock has
    /// returned or observed, and equal to `(wall_ms, 0)` whenever the wall clock is ahead.
    pub fn now(&mut self, wall_ms: u64) -> Timestamp {
        self.last = Self::advance(self.last, wall_ms);
        self.last
    }

    /// Moves the clock past `remote` (a timestamp received from a peer) and returns a
    /// timestamp for the receive event, strictly greater than both `remote` and
    /// [`last`](Self::last).
    ///
    /// # Errors
    /// [`ClockError::TooFarAhead`] if `remote` is more than `max_drift_ms` ahead of `wall_ms`;
    /// the clock is then left unchanged.
    ///
    /// ```
    /// use ringkv::hlc::{Hlc, Timestamp};
    ///
    /// let mut clock = Hlc::new(100);
    /// let remote = Timestamp { millis: 1_050, logical: 7 };
    /// let seen = clock.observe(remote, 1_000).unwrap();
    /// assert!(seen > remote);
    /// assert!(clock.observe(Timestamp { millis: 1_101, logical: 0 }, 1_000).is_err());
    /// ```
    pub fn observe(&mut self, remote: Timestamp, wall_ms: u64) -> Result<Timestamp, ClockError> {
        let limit = wall_ms.saturating_add(self.max_drift_ms);
        if remote.millis > limit {
            return Err(ClockError::TooFarAhead {
                remote,
                wall_ms,
                ahead_ms: remote.millis - wall_ms,
                max_drift_ms: self.max_drift_ms,
            });
        }
        self.last = Self::advance(self.last.max(remote), wall_ms);
        Ok(self.last)
    }

    /// The latest timestamp this clock returned (the zero timestamp before the first event).
    #[must_use]
    pub fn last(&self) -> Timestamp {
        self.last
    }

    /// The next timestamp after `floor`: the wall clock if it has moved past `floor`,
    /// otherwise `floor`'s successor.
    fn advance(floor: Timestamp, wall_ms: u64) -> Timestamp {
        if wall_ms > floor.millis {
            Timestamp {
                millis: wall_ms,
                logical: 0,
            }
        } else {
            floor.successor()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(millis: u64, logical: u32) -> Timestamp {
        Timestamp { millis, logical }
    }

    #[test]
    fn now_follows_the_wall_clock_when_it_moves_forward() {
        let mut clock = Hlc::new(1_000);
        assert_eq!(clock.now(10), ts(10, 0));
        assert_eq!(clock.now(20), ts(20, 0));
        assert_eq!(clock.last(), ts(20, 0));
    }

    #[test]
    fn now_counts_logically_when_the_wall_clock_stalls_or_goes_back() {
        let mut clock = Hlc::new(1_000);
        assert_eq!(clock.now(10), ts(10, 0));
        assert_eq!(clock.now(10), ts(10, 1));
        assert_eq!(clock.now(5), ts(10, 2));
        assert_eq!(clock.now(11), ts(11, 0));
    }

    #[test]
    fn logical_overflow_moves_to_the_next_millisecond() {
        let mut clock = Hlc::new(1_000);
        clock.last = ts(10, u32::MAX);
        assert_eq!(clock.now(3), ts(11, 0));
        // The one place the order cannot grow any more: it saturates instead of panicking.
        assert_eq!(ts(u64::MAX, u32::MAX).successor(), ts(u64::MAX, 0));
    }

    #[test]
    fn observe_moves_past_a_remote_timestamp_ahead_of_us() {
        let mut clock = Hlc::new(100);
        clock.now(1_000);
        assert_eq!(clock.observe(ts(1_050, 3), 1_000), Ok(ts(1_050, 4)));
        // A local event afterwards stays ahead of what was observed.
        assert_eq!(clock.now(1_001), ts(1_050, 5));
    }

    #[test]
    fn observe_of_an_older_remote_timestamp_still_ticks() {
        let mut clock = Hlc::new(100);
        clock.now(1_000);
        assert_eq!(clock.observe(ts(900, 9), 1_000), Ok(ts(1_000, 1)));
        assert_eq!(clock.observe(ts(900, 9), 1_200), Ok(ts(1_200, 0)));
    }

    #[test]
    fn observe_with_equal_millis_takes_the_larger_counter() {
        let mut clock = Hlc::new(100);
        clock.now(1_000); // (1000, 0)
        assert_eq!(clock.observe(ts(1_000, 7), 1_000), Ok(ts(1_000, 8)));
    }

    #[test]
    fn observe_rejects_too_far_ahead_and_leaves_state_unchanged() {
        let mut clock = Hlc::new(100);
        let before = clock.now(1_000);
        // Exactly at the limit is accepted on a fresh clone.
        assert!(clock.clone().observe(ts(1_100, 0), 1_000).is_ok());
        let err = clock.observe(ts(1_101, 0), 1_000).unwrap_err();
        assert_eq!(
            err,
            ClockError::TooFarAhead {
                remote: ts(1_101, 0),
                wall_ms: 1_000,
                ahead_ms: 101,
                max_drift_ms: 100,
            }
        );
        assert!(err.to_string().contains("101 ms ahead"));
        assert_eq!(clock.last(), before);
    }

    #[test]
    fn observe_does_not_overflow_near_the_end_of_time() {
        let mut clock = Hlc::new(u64::MAX);
        let seen = clock.observe(ts(u64::MAX, 1), u64::MAX).unwrap();
        assert_eq!(seen, ts(u64::MAX, 2));
    }

    #[derive(Clone, Debug)]
    enum Event {
        Local(u64),
        Remote(Timestamp, u64),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (0u64..2_000).prop_map(Event::Local),
            (0u64..2_000, any::<u32>(), 0u64..2_000)
                .prop_map(|(m, l, w)| Event::Remote(ts(m, l), w)),
        ]
    }

    proptest! {
        /// Whatever the wall clock does, every accepted event gets a fresh, larger timestamp,
        /// larger than the remote one it observed; refused events change nothing.
        #[test]
        fn timestamps_strictly_increase(events in proptest::collection::vec(event(), 1..200)) {
            let mut clock = Hlc::new(250);
            let mut last = clock.last();
            for e in events {
                match e {
                    Event::Local(wall) => {
                        let t = clock.now(wall);
                        prop_assert!(t > last);
                        prop_assert!(t.millis >= wall);
                        last = t;
                    }
                    Event::Remote(remote, wall) => match clock.observe(remote, wall) {
                        Ok(t) => {
                            prop_assert!(t > last && t > remote);
                            last = t;
                        }
                        Err(_) => {
                            prop_assert!(remote.millis > wall + 250);
                            prop_assert_eq!(clock.last(), last);
                        }
                    },
                }
            }
        }
    }
}
