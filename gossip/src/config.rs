//! Tunables of the membership protocol and their translation into foca's `Config`.

use std::num::{NonZeroU32, NonZeroU8, NonZeroUsize};
use std::time::Duration;

/// Smallest accepted `max_packet_size`: a header holds up to three identities of about
/// 160 bytes each at their largest, and foca needs room past it.
pub const MIN_PACKET_SIZE: usize = 576;

/// Largest accepted `max_packet_size`: the largest UDP payload, less the membership digest
/// each datagram carries beyond it.
pub const MAX_PACKET_SIZE: usize = 65_507 - crate::digest::DIGEST_LEN;

/// Most members asked for help in an indirect probe, and most peers gossiped to at once.
pub const MAX_FANOUT: usize = 16;

/// Largest accepted `sync_max_bytes`.
pub const MAX_SYNC_BYTES: usize = 65_536;

/// Tunables of the membership protocol. [`GossipConfig::lan`] (also the `Default`) suits a
/// LAN or loopback cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GossipConfig {
    /// Largest datagram produced or accepted, in bytes, not counting the 8-byte membership
    /// digest after each header (default 1024; with the digest, 1032 fits a QUIC datagram).
    /// A datagram to or from a node of the previous protocol version, which has no digest,
    /// is held to this bound exactly, as that node holds it.
    pub max_packet_size: usize,
    /// How often each node probes one member (default 500 ms).
    pub probe_period: Duration,
    /// How long a direct probe may go unanswered before asking others to probe (default 200 ms).
    pub probe_rtt: Duration,
    /// How many members are asked to probe indirectly (default 3).
    pub num_indirect_probes: usize,
    /// How long a suspect member has to refute the suspicion before it is declared down
    /// (default 1 s).
    pub suspect_to_down_after: Duration,
    /// How long a down member is remembered before being forgotten (default 10 min).
    pub remove_down_after: Duration,
    /// How often to re-announce to the seeds while we have no live peer (default 1 s).
    pub announce_interval: Duration,
    /// How often pending updates are gossiped (default 200 ms).
    pub gossip_interval: Duration,
    /// How many members each periodic gossip goes to (default 3).
    pub gossip_fanout: usize,
    /// How often a connected node asks one member for more members (default 5 s).
    pub peer_announce_interval: Duration,
    /// How often a connected node announces to members it considers down, to heal
    /// partitions (default 5 s).
    pub down_announce_interval: Duration,
    /// Fewest times each node passes on each membership update or status record it learns
    /// (default 8: in clusters of up to about 16 nodes an update then reaches every node
    /// with high probability; probing repairs the rare miss).
    pub max_transmissions: u8,
    /// Larger clusters pass each update on `retransmit_mult × ⌈log10(n + 1)⌉` times for `n`
    /// live nodes, when that exceeds `max_transmissions` (default 4, as memberlist: 8 up to
    /// 99 nodes, 12 up to 999, 16 up to 9,999).
    pub retransmit_mult: u8,
    /// How often a node may start a membership sync with a peer whose digest differs from
    /// ours (default 1 s); also the period of the sync timer.
    pub sync_interval: Duration,
    /// How often a node syncs its member list with one random member even if no digest
    /// differed (default 10 s).
    pub push_pull_interval: Duration,
    /// Most bytes one sync reply or push carries, over one or more datagrams (default 4096).
    pub sync_max_bytes: usize,
    /// Most distinct node names whose status is remembered (default 1024).
    pub max_members: usize,
}

/// Why a [`GossipConfig`] is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `max_packet_size` is outside [`MIN_PACKET_SIZE`]..=[`MAX_PACKET_SIZE`].
    #[error("max_packet_size {0} is outside {MIN_PACKET_SIZE}..={MAX_PACKET_SIZE}")]
    PacketSize(usize),
    /// A duration that must be positive is zero.
    #[error("{0} must be longer than zero")]
    ZeroDuration(&'static str),
    /// The probe round trip does not fit in a probe period.
    #[error("probe_rtt ({rtt:?}) must be shorter than probe_period ({period:?})")]
    ProbeRttTooLong {
        /// The configured round trip.
        rtt: Duration,
        /// The configured period.
        period: Duration,
    },
    /// A count is zero or above [`MAX_FANOUT`].
    #[error("{name} is {value}, it must be within 1..={MAX_FANOUT}")]
    Fanout {
        /// Which setting.
        name: &'static str,
        /// Its value.
        value: usize,
    },
    /// `sync_max_bytes` is outside `max_packet_size..=`[`MAX_SYNC_BYTES`].
    #[error("sync_max_bytes {0} is outside max_packet_size..={MAX_SYNC_BYTES}")]
    SyncBytes(usize),
    /// `push_pull_interval` is shorter than `sync_interval`.
    #[error("push_pull_interval must be at least sync_interval")]
    PushPullTooOften,
    /// `max_transmissions`, `retransmit_mult` or `max_members` is zero.
    #[error("{0} must be at least 1")]
    ZeroCount(&'static str),
}

impl GossipConfig {
    /// Settings for a LAN or loopback cluster, tuned so that a node killed without warning is
    /// declared down by every survivor within about 3 s in clusters of up to about 16 nodes:
    /// it is probed within a period or two, suspected after the next period, declared down
    /// one second later, and that news spreads by gossip every 200 ms.
    pub fn lan() -> Self {
        Self {
            max_packet_size: 1024,
            probe_period: Duration::from_millis(500),
            probe_rtt: Duration::from_millis(200),
            num_indirect_probes: 3,
            suspect_to_down_after: Duration::from_secs(1),
            remove_down_after: Duration::from_secs(600),
            announce_interval: Duration::from_secs(1),
            gossip_interval: Duration::from_millis(200),
            gossip_fanout: 3,
            peer_announce_interval: Duration::from_secs(5),
            down_announce_interval: Duration::from_secs(5),
            max_transmissions: 8,
            retransmit_mult: 4,
            sync_interval: Duration::from_secs(1),
            push_pull_interval: Duration::from_secs(10),
            sync_max_bytes: 4096,
            max_members: 1024,
        }
    }

    /// Checks every bound; [`crate::Membership::new`] calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_PACKET_SIZE..=MAX_PACKET_SIZE).contains(&self.max_packet_size) {
            return Err(ConfigError::PacketSize(self.max_packet_size));
        }
        let durations = [
            ("probe_period", self.probe_period),
            ("probe_rtt", self.probe_rtt),
            ("suspect_to_down_after", self.suspect_to_down_after),
            ("remove_down_after", self.remove_down_after),
            ("announce_interval", self.announce_interval),
            ("gossip_interval", self.gossip_interval),
            ("peer_announce_interval", self.peer_announce_interval),
            ("down_announce_interval", self.down_announce_interval),
            ("sync_interval", self.sync_interval),
            ("push_pull_interval", self.push_pull_interval),
        ];
        if let Some((name, _)) = durations.iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::ZeroDuration(name));
        }
        if self.probe_rtt >= self.probe_period {
            return Err(ConfigError::ProbeRttTooLong {
                rtt: self.probe_rtt,
                period: self.probe_period,
            });
        }
        for (name, value) in [
            ("num_indirect_probes", self.num_indirect_probes),
            ("gossip_fanout", self.gossip_fanout),
        ] {
            if !(1..=MAX_FANOUT).contains(&value) {
                return Err(ConfigError::Fanout { name, value });
            }
        }
        if self.max_transmissions == 0 {
            return Err(ConfigError::ZeroCount("max_transmissions"));
        }
        if self.retransmit_mult == 0 {
            return Err(ConfigError::ZeroCount("retransmit_mult"));
        }
        if self.max_members == 0 {
            return Err(ConfigError::ZeroCount("max_members"));
        }
        if !(self.max_packet_size..=MAX_SYNC_BYTES).contains(&self.sync_max_bytes) {
            return Err(ConfigError::SyncBytes(self.sync_max_bytes));
        }
        if self.push_pull_interval < self.sync_interval {
            return Err(ConfigError::PushPullTooOften);
        }
        Ok(())
    }

    /// How many times an update is passed on in a cluster of `live` nodes (ourselves
    /// included): `retransmit_mult × ⌈log10(live + 1)⌉`, at least `max_transmissions`.
    pub fn transmissions_for(&self, live: usize) -> u8 {
        let mut digits = 0u32;
        let mut reach = 1usize;
        while reach < live.saturating_add(1) {
            reach = reach.saturating_mul(10);
            digits += 1;
        }
        let scaled = u32::from(self.retransmit_mult).saturating_mul(digits);
        u8::try_from(scaled)
            .unwrap_or(u8::MAX)
            .max(self.max_transmissions)
    }

    /// foca's configuration: `Config::new_lan` with our timings, retransmissions and
    /// periodic tasks, and down-member notification on.
    pub(crate) fn to_foca(&self) -> Result<foca::Config, ConfigError> {
        self.validate()?;
        let nonzero =
            |name, value| NonZeroUsize::new(value).ok_or(ConfigError::Fanout { name, value });
        let one = nonzero("num_members", 1)?;
        let mut config = foca::Config::new_lan(NonZeroU32::MIN);
        config.max_transmissions = NonZeroU8::new(self.max_transmissions)
            .ok_or(ConfigError::ZeroCount("max_transmissions"))?;
        config.probe_period = self.probe_period;
        config.probe_rtt = self.probe_rtt;
        config.num_indirect_probes = nonzero("num_indirect_probes", self.num_indirect_probes)?;
        config.suspect_to_down_after = self.suspect_to_down_after;
        config.remove_down_after = Some(self.remove_down_after);
        // foca's bound includes the digest the codec adds after each header, so the room for
        // updates is what it was before digests, and a datagram stripped of its digest for a
        // node of the previous version fits that node's bound.
        config.max_packet_size =
            NonZeroUsize::new(self.max_packet_size + crate::digest::DIGEST_LEN)
                .ok_or(ConfigError::PacketSize(self.max_packet_size))?;
        config.notify_down_members = true;
        config.periodic_announce = Some(foca::PeriodicParams {
            frequency: self.peer_announce_interval,
            num_members: one,
        });
        config.periodic_announce_to_down_members = Some(foca::PeriodicParams {
            frequency: self.down_announce_interval,
            num_members: nonzero("num_members", 2)?,
        });
        config.periodic_gossip = Some(foca::PeriodicParams {
            frequency: self.gossip_interval,
            num_members: nonzero("gossip_fanout", self.gossip_fanout)?,
        });
        Ok(config)
    }
}

impl Default for GossipConfig {
    fn default() -> Self {
        Self::lan()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_is_valid_and_maps_onto_foca() {
        let lan = GossipConfig::lan();
        assert_eq!(lan.validate(), Ok(()));
        let foca = lan.to_foca().unwrap();
        assert_eq!(foca.probe_period, lan.probe_period);
        assert_eq!(foca.suspect_to_down_after, lan.suspect_to_down_after);
        // foca's bound counts the membership digest after the header; ours does not.
        assert_eq!(foca.max_packet_size.get(), 1024 + 8);
        assert!(foca.notify_down_members);
        assert!(foca.periodic_announce_to_down_members.is_some());
    }

    #[test]
    fn rejects_out_of_bounds_settings() {
        let mut c = GossipConfig::lan();
        c.max_packet_size = 100;
        assert_eq!(c.validate(), Err(ConfigError::PacketSize(100)));

        let mut c = GossipConfig::lan();
        c.announce_interval = Duration::ZERO;
        assert_eq!(
            c.validate(),
            Err(ConfigError::ZeroDuration("announce_interval"))
        );

        let mut c = GossipConfig::lan();
        c.probe_rtt = c.probe_period;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::ProbeRttTooLong { .. })
        ));

        let mut c = GossipConfig::lan();
        c.gossip_fanout = 0;
        assert!(matches!(c.validate(), Err(ConfigError::Fanout { .. })));

        let mut c = GossipConfig::lan();
        c.max_members = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroCount("max_members")));

        let mut c = GossipConfig::lan();
        c.sync_max_bytes = 100;
        assert_eq!(c.validate(), Err(ConfigError::SyncBytes(100)));

        let mut c = GossipConfig::lan();
        c.push_pull_interval = Duration::from_millis(10);
        assert_eq!(c.validate(), Err(ConfigError::PushPullTooOften));
    }

    #[test]
    fn transmissions_grow_with_the_log_of_the_cluster() {
        let lan = GossipConfig::lan();
        assert_eq!(lan.transmissions_for(1), 8);
        assert_eq!(lan.transmissions_for(16), 8);
        assert_eq!(lan.transmissions_for(99), 8);
        assert_eq!(lan.transmissions_for(100), 12);
        assert_eq!(lan.transmissions_for(999), 12);
        assert_eq!(lan.transmissions_for(1000), 16);
        assert_eq!(lan.transmissions_for(5000), 16);
        assert_eq!(lan.transmissions_for(usize::MAX), 80);
        let mut big = lan.clone();
        big.retransmit_mult = 200;
        assert_eq!(big.transmissions_for(1000), u8::MAX);
    }
}
