//! The simulated network: delays (so messages overtake each other), loss, duplication and
//! partitions, symmetric or one-way, that form and heal.

use std::collections::{BTreeMap, BTreeSet};

use super::config::NetConfig;
use super::rng::SimRng;
use super::trace::DropReason;

/// Links and their faults. Nodes are world indices.
///
/// ```
/// use ringkv_tests::sim::config::NetConfig;
/// use ringkv_tests::sim::network::Network;
/// let mut net = Network::new(NetConfig::default());
/// net.partition(1, &[0], &[1, 2], false);
/// assert!(net.blocked(0, 1) && net.blocked(2, 0));
/// assert!(!net.blocked(1, 2));
/// net.heal(1);
/// assert!(!net.blocked(0, 1));
/// ```
#[derive(Clone, Debug)]
pub struct Network {
    config: NetConfig,
    /// Random datagram loss is on.
    pub loss: bool,
    /// Random datagram duplication is on.
    pub dup: bool,
    /// Random peer-call failures are on.
    pub call_loss: bool,
    /// Active partitions by id: the directed links each blocks.
    partitions: BTreeMap<u32, BTreeSet<(usize, usize)>>,
}

/// What happens to one gossip datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Delivered once per listed delay (more than one: duplicated).
    Deliver(Vec<u64>),
    /// Never delivered.
    Lost(DropReason),
}

impl Network {
    /// A healthy network; switch faults on through the public fields and [`Self::partition`].
    pub fn new(config: NetConfig) -> Self {
        Self {
            config,
            loss: false,
            dup: false,
            call_loss: false,
            partitions: BTreeMap::new(),
        }
    }

    /// The network's settings.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// Blocks traffic from every node of `a` to every node of `b` (and back unless
    /// `one_way`), until [`Self::heal`] with the same `id`.
    pub fn partition(&mut self, id: u32, a: &[usize], b: &[usize], one_way: bool) {
        let mut links = BTreeSet::new();
        for &x in a {
            for &y in b {
                if x != y {
                    links.insert((x, y));
                    if !one_way {
                        links.insert((y, x));
                    }
                }
            }
        }
        self.partitions.insert(id, links);
    }

    /// Removes partition `id`.
    pub fn heal(&mut self, id: u32) {
        self.partitions.remove(&id);
    }

    /// Removes every partition.
    pub fn heal_all(&mut self) {
        self.partitions.clear();
    }

    /// Whether any partition is active.
    pub fn partitioned(&self) -> bool {
        !self.partitions.is_empty()
    }

    /// Whether traffic from `from` to `to` is blocked now.
    pub fn blocked(&self, from: usize, to: usize) -> bool {
        self.partitions.values().any(|l| l.contains(&(from, to)))
    }

    /// A one-way delay.
    pub fn delay(&self, rng: &mut SimRng) -> u64 {
        rng.between(self.config.min_delay_us, self.config.max_delay_us)
    }

    /// What happens to a datagram sent now from `from` to `to`.
    pub fn datagram(&self, rng: &mut SimRng, from: usize, to: usize) -> Fate {
        if self.blocked(from, to) {
            return Fate::Lost(DropReason::Partition);
        }
        if self.loss && rng.chance(self.config.loss) {
            return Fate::Lost(DropReason::Loss);
        }
        let mut delays = vec![self.delay(rng)];
        if self.dup && rng.chance(self.config.dup) {
            delays.push(self.delay(rng));
        }
        Fate::Deliver(delays)
    }

    /// What happens to a call's request or reply sent now: its delay, or why it is lost.
    /// Streams are reliable, so only a partition or a connection reset loses one; each is
    /// never duplicated.
    pub fn stream(&self, rng: &mut SimRng, from: usize, to: usize) -> Result<u64, DropReason> {
        if self.blocked(from, to) {
            return Err(DropReason::Partition);
        }
        if self.call_loss && rng.chance(self.config.call_loss) {
            return Err(DropReason::Loss);
        }
        Ok(self.delay(rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::rng::Stream;

    #[test]
    fn one_way_partitions_block_one_direction_only() {
        let mut net = Network::new(NetConfig::default());
        net.partition(7, &[0, 1], &[2], true);
        assert!(net.blocked(0, 2) && net.blocked(1, 2));
        assert!(!net.blocked(2, 0) && !net.blocked(0, 1));
        let mut rng = SimRng::new(1, Stream::Network);
        assert_eq!(
            net.datagram(&mut rng, 1, 2),
            Fate::Lost(DropReason::Partition)
        );
        assert!(matches!(net.datagram(&mut rng, 2, 1), Fate::Deliver(_)));
        assert_eq!(net.stream(&mut rng, 0, 2), Err(DropReason::Partition));
    }

    #[test]
    fn overlapping_partitions_heal_independently() {
        let mut net = Network::new(NetConfig::default());
        net.partition(1, &[0], &[1], false);
        net.partition(2, &[0], &[1, 2], false);
        net.heal(2);
        assert!(net.blocked(0, 1) && !net.blocked(0, 2));
        net.heal_all();
        assert!(!net.partitioned());
    }

    #[test]
    fn loss_and_duplication_happen_only_when_switched_on() {
        let config = NetConfig {
            loss: 0.5,
            dup: 0.5,
            ..NetConfig::default()
        };
        let mut net = Network::new(config);
        let mut rng = SimRng::new(2, Stream::Network);
        let fates: Vec<Fate> = (0..200).map(|_| net.datagram(&mut rng, 0, 1)).collect();
        assert!(fates
            .iter()
            .all(|f| matches!(f, Fate::Deliver(d) if d.len() == 1)));
        net.loss = true;
        net.dup = true;
        let fates: Vec<Fate> = (0..200).map(|_| net.datagram(&mut rng, 0, 1)).collect();
        assert!(fates
            .iter()
            .any(|f| matches!(f, Fate::Lost(DropReason::Loss))));
        assert!(fates
            .iter()
            .any(|f| matches!(f, Fate::Deliver(d) if d.len() == 2)));
        for f in fates {
            if let Fate::Deliver(delays) = f {
                assert!(delays.iter().all(|d| (100..=4_000).contains(d)));
            }
        }
    }
}
