//! Ring parameters: virtual nodes per physical node and the replication factor N.

/// Largest accepted number of virtual nodes per physical node.
///
/// Bounds the ring's memory: 1,000 nodes at this limit already make 4M ranges.
pub const MAX_VNODES: u32 = 4096;

/// Largest accepted replication factor N.
///
/// Bounds the size of every precomputed preference list.
pub const MAX_REPLICAS: usize = 16;

/// Why a [`RingConfig`] was refused by [`RingConfig::validate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `vnodes` was 0 or above [`MAX_VNODES`].
    #[error("vnodes must be between 1 and {MAX_VNODES}, got {0}")]
    Vnodes(u32),
    /// `replicas` was 0 or above [`MAX_REPLICAS`].
    #[error("replicas must be between 1 and {MAX_REPLICAS}, got {0}")]
    Replicas(usize),
}

/// Shape of a ring: how many virtual nodes each physical node places and how many
/// distinct replicas (N) each key gets.
///
/// Every member must use the same configuration, or they compute different rings.
///
/// ```
/// use ringkv_ring::RingConfig;
/// let config = RingConfig::default();
/// assert_eq!((config.vnodes, config.replicas), (256, 3));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Virtual nodes (tokens) placed per physical node, 1..=[`MAX_VNODES`].
    pub vnodes: u32,
    /// Replication factor N: distinct physical nodes per preference list, 1..=[`MAX_REPLICAS`].
    pub replicas: usize,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            vnodes: 256,
            replicas: 3,
        }
    }
}

impl RingConfig {
    /// A validated configuration; use this for values that came from a flag or a file.
    ///
    /// ```
    /// use ringkv_ring::{ConfigError, RingConfig};
    /// assert!(RingConfig::new(64, 3).is_ok());
    /// assert_eq!(RingConfig::new(0, 3), Err(ConfigError::Vnodes(0)));
    /// ```
    pub fn new(vnodes: u32, replicas: usize) -> Result<RingConfig, ConfigError> {
        let config = RingConfig { vnodes, replicas };
        config.validate()?;
        Ok(config)
    }

    /// Checks that both fields are within their bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.vnodes == 0 || self.vnodes > MAX_VNODES {
            return Err(ConfigError::Vnodes(self.vnodes));
        }
        if self.replicas == 0 || self.replicas > MAX_REPLICAS {
            return Err(ConfigError::Replicas(self.replicas));
        }
        Ok(())
    }

    /// The nearest valid configuration: each field clamped into its bounds.
    ///
    /// [`Ring::new`](crate::Ring::new) uses this so that it cannot fail or exhaust memory.
    ///
    /// ```
    /// use ringkv_ring::{RingConfig, MAX_REPLICAS};
    /// let config = RingConfig { vnodes: 0, replicas: 1_000 }.clamped();
    /// assert_eq!((config.vnodes, config.replicas), (1, MAX_REPLICAS));
    /// ```
    pub fn clamped(self) -> RingConfig {
        RingConfig {
            vnodes: self.vnodes.clamp(1, MAX_VNODES),
            replicas: self.replicas.clamp(1, MAX_REPLICAS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_256_vnodes_and_3_replicas_and_valid() {
        let config = RingConfig::default();
        assert_eq!(config.vnodes, 256);
        assert_eq!(config.replicas, 3);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn validate_rejects_out_of_bounds_fields() {
        assert_eq!(RingConfig::new(0, 3), Err(ConfigError::Vnodes(0)));
        assert_eq!(
            RingConfig::new(MAX_VNODES + 1, 3),
            Err(ConfigError::Vnodes(MAX_VNODES + 1))
        );
        assert_eq!(RingConfig::new(8, 0), Err(ConfigError::Replicas(0)));
        assert_eq!(
            RingConfig::new(8, MAX_REPLICAS + 1),
            Err(ConfigError::Replicas(MAX_REPLICAS + 1))
        );
        assert_eq!(
            RingConfig::new(MAX_VNODES, MAX_REPLICAS),
            Ok(RingConfig {
                vnodes: MAX_VNODES,
                replicas: MAX_REPLICAS
            })
        );
    }

    #[test]
    fn clamped_is_valid_and_keeps_valid_values() {
        let wild = RingConfig {
            vnodes: u32::MAX,
            replicas: 0,
        }
        .clamped();
        assert_eq!(wild.validate(), Ok(()));
        assert_eq!((wild.vnodes, wild.replicas), (MAX_VNODES, 1));
        let fine = RingConfig {
            vnodes: 17,
            replicas: 5,
        };
        assert_eq!(fine.clamped(), fine);
    }
}
