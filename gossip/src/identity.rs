//! The identity a node carries in SWIM: its name, address, zone and restart counter.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Longest node name accepted, in bytes. Identities ride in every datagram (up to three of
/// them in one header), so they must stay small for packets to fit.
pub const MAX_NAME_LEN: usize = 64;

/// Longest zone name accepted, in bytes (same reason as [`MAX_NAME_LEN`]).
pub const MAX_ZONE_LEN: usize = 64;

/// Identity of a node in SWIM.
///
/// foca's `Identity::Addr` is the socket address, so announcing to a seed known only by its
/// address works (foca accepts an announce whose destination address matches its own), and a
/// node restarted on the same address with a higher `bump` replaces its previous identity.
/// The ring is keyed by `name`, never by `bump`.
///
/// ```
/// use ringkv_gossip::NodeId;
/// use foca::Identity;
///
/// let id = NodeId::new("node-a", "127.0.0.1:7000".parse().unwrap()).with_zone("rack-1");
/// assert!(id.validate().is_ok());
/// let renewed = id.renew().unwrap();
/// assert_eq!(renewed.bump, id.bump + 1);
/// assert!(renewed.win_addr_conflict(&id));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId {
    /// Stable, cluster-unique node name; the key of the ring.
    pub name: String,
    /// Address the node's gossip is reached at.
    pub addr: SocketAddr,
    /// Failure domain (rack, availability zone) used to spread replicas, if any.
    pub zone: Option<String>,
    /// Restart counter: a restarted node must come back with a higher bump than before.
    pub bump: u64,
}

/// Why a [`NodeId`] is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The name is the empty string.
    #[error("node name is empty")]
    EmptyName,
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("node name is {len} bytes long, the limit is {max}")]
    NameTooLong {
        /// Length of the rejected name, in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name holds a control or whitespace character.
    #[error("node name {0:?} holds a control or whitespace character")]
    NameNotPrintable(String),
    /// The zone is present but empty.
    #[error("zone name is empty (leave the zone out instead)")]
    EmptyZone,
    /// The zone is longer than [`MAX_ZONE_LEN`].
    #[error("zone name is {len} bytes long, the limit is {max}")]
    ZoneTooLong {
        /// Length of the rejected zone, in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The zone holds a control or whitespace character.
    #[error("zone name {0:?} holds a control or whitespace character")]
    ZoneNotPrintable(String),
}

impl NodeId {
    /// A node named `name` gossiping at `addr`, without zone, at bump 0.
    pub fn new(name: impl Into<String>, addr: SocketAddr) -> Self {
        Self {
            name: name.into(),
            addr,
            zone: None,
            bump: 0,
        }
    }

    /// The same identity placed in `zone`.
    #[must_use]
    pub fn with_zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// The same identity with restart counter `bump`.
    #[must_use]
    pub fn with_bump(mut self, bump: u64) -> Self {
        self.bump = bump;
        self
    }

    /// Checks the name (non-empty, at most [`MAX_NAME_LEN`] bytes, no control or whitespace
    /// character) and the zone (likewise, at most [`MAX_ZONE_LEN`] bytes).
    pub fn validate(&self) -> Result<(), IdentityError> {
        if self.name.is_empty() {
            return Err(IdentityError::EmptyName);
        }
        self.check_bounds()
    }

    /// The placeholder identity used to announce to a seed known only by its address.
    ///
    /// Its empty name marks it as a placeholder: it is only ever a destination, never a member.
    pub(crate) fn seed(addr: SocketAddr) -> Self {
        Self::new(String::new(), addr)
    }

    /// Every rule of [`Self::validate`] except a non-empty name, so that a seed placeholder
    /// passes as a destination.
    pub(crate) fn check_bounds(&self) -> Result<(), IdentityError> {
        if self.name.len() > MAX_NAME_LEN {
            return Err(IdentityError::NameTooLong {
                len: self.name.len(),
                max: MAX_NAME_LEN,
            });
        }
        if !is_printable(&self.name) {
            return Err(IdentityError::NameNotPrintable(self.name.clone()));
        }
        if let Some(zone) = &self.zone {
            if zone.is_empty() {
                return Err(IdentityError::EmptyZone);
            }
            if zone.len() > MAX_ZONE_LEN {
                return Err(IdentityError::ZoneTooLong {
                    len: zone.len(),
                    max: MAX_ZONE_LEN,
                });
            }
            if !is_printable(zone) {
                return Err(IdentityError::ZoneNotPrintable(zone.clone()));
            }
        }
        Ok(())
    }

    /// Total order used to settle two identities claiming one address: the higher bump wins;
    /// on equal bumps name then zone decide, so two distinct identities never both lose
    /// (which would make them replace each other forever).
    fn conflict_rank(&self) -> (u64, &str, Option<&str>) {
        (self.bump, &self.name, self.zone.as_deref())
    }
}

fn is_printable(text: &str) -> bool {
    text.chars().all(|c| !c.is_control() && !c.is_whitespace())
}

impl foca::Identity for NodeId {
    type Addr = SocketAddr;

    /// The same identity with `bump + 1`, so that a node the cluster declared down rejoins at
    /// once; `None` once the bump is exhausted.
    fn renew(&self) -> Option<Self> {
        let bump = self.bump.checked_add(1)?;
        Some(self.clone().with_bump(bump))
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The higher bump wins (see [`NodeId::bump`]).
    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.conflict_rank() > adversary.conflict_rank()
    }
}

#[cfg(test)]
mod tests {
    use foca::Identity;

    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 7000))
    }

    #[test]
    fn accepts_a_plain_identity_with_zone() {
        let id = NodeId::new("node-1", addr()).with_zone("eu-west-1a");
        assert_eq!(id.validate(), Ok(()));
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(
            NodeId::new("", addr()).validate(),
            Err(IdentityError::EmptyName)
        );
        let long = "n".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            NodeId::new(long, addr()).validate(),
            Err(IdentityError::NameTooLong {
                len: MAX_NAME_LEN + 1,
                max: MAX_NAME_LEN
            })
        );
        assert!(NodeId::new("n".repeat(MAX_NAME_LEN), addr())
            .validate()
            .is_ok());
        assert!(matches!(
            NodeId::new("bad name", addr()).validate(),
            Err(IdentityError::NameNotPrintable(_))
        ));
        assert!(matches!(
            NodeId::new("bad\u{7}", addr()).validate(),
            Err(IdentityError::NameNotPrintable(_))
        ));
    }

    #[test]
    fn rejects_bad_zones() {
        let id = NodeId::new("n", addr());
        assert_eq!(
            id.clone().with_zone("").validate(),
            Err(IdentityError::EmptyZone)
        );
        assert!(matches!(
            id.clone()
                .with_zone("z".repeat(MAX_ZONE_LEN + 1))
                .validate(),
            Err(IdentityError::ZoneTooLong { .. })
        ));
        assert!(matches!(
            id.with_zone("a\tb").validate(),
            Err(IdentityError::ZoneNotPrintable(_))
        ));
    }

    #[test]
    fn seed_placeholder_passes_bounds_but_not_validation() {
        let seed = NodeId::seed(addr());
        assert_eq!(seed.check_bounds(), Ok(()));
        assert_eq!(seed.validate(), Err(IdentityError::EmptyName));
    }

    #[test]
    fn renew_bumps_and_wins() {
        let id = NodeId::new("n", addr()).with_bump(7);
        let renewed = id.renew().unwrap();
        assert_eq!(renewed.bump, 8);
        assert_eq!(renewed.name, id.name);
        assert!(renewed.win_addr_conflict(&id));
        assert!(!id.win_addr_conflict(&renewed));
    }

    #[test]
    fn renew_gives_up_at_the_last_bump() {
        assert_eq!(NodeId::new("n", addr()).with_bump(u64::MAX).renew(), None);
    }

    #[test]
    fn equal_bumps_still_have_exactly_one_winner() {
        let a = NodeId::new("a", addr());
        let b = NodeId::new("b", addr());
        assert_ne!(a.win_addr_conflict(&b), b.win_addr_conflict(&a));
    }
}
