//! The simulator's randomness: every choice comes from the run's seed.
//!
//! One seed makes the whole run. It is split into independent streams, one per concern
//! (network, workload, fault schedule, node seeds), so that shrinking the fault schedule
//! leaves the workload's choices as they were.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// What a stream of randomness is for; each gets its own generator from the run's seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Message delays, loss and duplication.
    Network,
    /// Which client does what, on which key, through which node.
    Workload,
    /// The fault schedule and the run's shape (cluster size, policy).
    Faults,
    /// Seeds handed to each node core (foca's randomness).
    Nodes,
}

/// A seeded generator with the few helpers the simulator needs.
///
/// ```
/// use ringkv_tests::sim::rng::{SimRng, Stream};
/// let mut a = SimRng::new(7, Stream::Network);
/// let mut b = SimRng::new(7, Stream::Network);
/// assert_eq!(a.below(1000), b.below(1000));
/// ```
#[derive(Clone, Debug)]
pub struct SimRng(Xoshiro256PlusPlus);

impl SimRng {
    /// The generator of `stream` for the run `seed`.
    pub fn new(seed: u64, stream: Stream) -> Self {
        let salt = match stream {
            Stream::Network => 0x6e65_7477_6f72_6b00,
            Stream::Workload => 0x776f_726b_6c6f_6164,
            Stream::Faults => 0x6661_756c_7473_0000,
            Stream::Nodes => 0x6e6f_6465_7300_0000,
        };
        Self(Xoshiro256PlusPlus::seed_from_u64(splitmix(seed ^ salt)))
    }

    /// A uniform number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.0.random_range(0..n)
        }
    }

    /// A uniform number in `lo..=hi` (`lo` when `hi < lo`).
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            self.0.random_range(lo..=hi)
        }
    }

    /// A uniform index into a collection of `len` items (0 when empty).
    pub fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).unwrap_or(0)
    }

    /// True with probability `p` (clamped to `0..=1`).
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            false
        } else if p >= 1.0 {
            true
        } else {
            self.0.random_bool(p)
        }
    }

    /// A fresh 64-bit seed (for a node core).
    pub fn seed(&mut self) -> u64 {
        self.0.random()
    }
}

/// SplitMix64: spreads a seed's bits so that nearby seeds give unrelated streams.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_of_one_seed_differ_and_repeat() {
        let draw = |seed, stream| {
            let mut r = SimRng::new(seed, stream);
            (0..8).map(|_| r.below(1 << 40)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1, Stream::Network), draw(1, Stream::Network));
        assert_ne!(draw(1, Stream::Network), draw(1, Stream::Workload));
        assert_ne!(draw(1, Stream::Network), draw(2, Stream::Network));
    }

    #[test]
    fn helpers_stay_in_bounds() {
        let mut r = SimRng::new(3, Stream::Faults);
        for _ in 0..1000 {
            assert!(r.below(5) < 5);
            let x = r.between(10, 12);
            assert!((10..=12).contains(&x));
            assert!(r.index(3) < 3);
        }
        assert_eq!(r.below(0), 0);
        assert_eq!(r.between(4, 2), 4);
        assert!(!r.chance(0.0));
        assert!(r.chance(1.0));
    }
}
