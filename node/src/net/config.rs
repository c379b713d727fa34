//! Limits and timeouts of the QUIC transport.

use std::time::Duration;

use quinn::{IdleTimeout, VarInt};

use super::tls::TlsError;

/// Limits and timeouts of one node's (or client's) QUIC endpoint.
///
/// ```
/// let cfg = ringkv::net::TransportConfig::default();
/// assert!(cfg.max_frame >= 4 * 1024 * 1024 + 64 * 1024);
/// ```
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Largest request or response frame body, in bytes (must fit a 4 MiB value, its key and
    /// the message overhead).
    pub max_frame: usize,
    /// Bound on a whole call: dial, request, response.
    pub call_timeout: Duration,
    /// Bound on dialling a peer (QUIC and TLS handshake).
    pub connect_timeout: Duration,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Interval of keep-alive packets on open connections (keep below `idle_timeout`).
    pub keep_alive: Duration,
    /// Concurrent request streams a peer may open on one connection.
    pub max_concurrent_streams: u32,
    /// Capacity of the queue of inbound events handed to the node.
    pub max_inbound_queue: usize,
    /// Connections accepted at once; further incoming connections are refused. Also bounds
    /// the cache of outgoing connections.
    pub max_connections: usize,
    /// Incoming connections accepted at once from one IP address; further ones from it are
    /// refused, so one host cannot take every place of `max_connections`.
    pub max_connections_per_address: usize,
    /// Bound on an incoming connection's QUIC and TLS handshake; a peer that starts one and
    /// never finishes holds its place no longer.
    pub handshake_timeout: Duration,
    /// Datagrams per second the node reads from one connection; beyond, they are dropped
    /// unread, so a flooding peer cannot fill the inbound queue others share.
    pub max_datagrams_per_sec: u32,
    /// Dials started only to send a datagram that may be pending at once; beyond, datagrams
    /// to unconnected peers are dropped.
    pub max_pending_dials: usize,
    /// Bytes of datagrams buffered per connection, each way.
    pub datagram_buffer: usize,
    /// Injected faults (test clusters only; off by default): peers whose traffic is dropped.
    pub faults: crate::faults::Faults,
    /// Protocol versions offered and accepted in the handshake (ALPN `ringkv/N`), preferred
    /// first. The default is every version this build speaks; tests narrow it to emulate a
    /// node of another version.
    pub protocol_versions: Vec<u32>,
    /// Where hits of these bounds are counted and logged (one tally shared by the node's
    /// layers: clones of a config count together).
    pub limit_hits: crate::limits::LimitHits,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            max_frame: 8 * 1024 * 1024,
            call_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(2),
            max_concurrent_streams: 256,
            max_inbound_queue: 1024,
            max_connections: 1024,
            max_connections_per_address: 256,
            handshake_timeout: Duration::from_secs(10),
            max_datagrams_per_sec: 1000,
            max_pending_dials: 64,
            datagram_buffer: 1024 * 1024,
            faults: crate::faults::Faults::off(),
            protocol_versions: super::tls::SPOKEN_VERSIONS.to_vec(),
            limit_hits: crate::limits::LimitHits::default(),
        }
    }
}

impl TransportConfig {
    /// Checks that every limit is usable (non-zero, representable on the wire).
    pub fn validate(&self) -> Result<(), String> {
        let nonzero = [
            ("max_frame", self.max_frame),
            (
                "max_concurrent_streams",
                self.max_concurrent_streams as usize,
            ),
            ("max_inbound_queue", self.max_inbound_queue),
            ("max_connections", self.max_connections),
            (
                "max_connections_per_address",
                self.max_connections_per_address,
            ),
            ("max_datagrams_per_sec", self.max_datagrams_per_sec as usize),
            ("max_pending_dials", self.max_pending_dials),
            ("datagram_buffer", self.datagram_buffer),
        ];
        if let Some((name, _)) = nonzero.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be greater than zero"));
        }
        if self.protocol_versions.is_empty() || self.protocol_versions.len() > 8 {
            return Err("protocol_versions must list 1 to 8 versions".to_string());
        }
        if u32::try_from(self.max_frame).is_err() {
            return Err(format!("max_frame {} exceeds u32::MAX", self.max_frame));
        }
        for (name, d) in [
            ("call_timeout", self.call_timeout),
            ("connect_timeout", self.connect_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("idle_timeout", self.idle_timeout),
            ("keep_alive", self.keep_alive),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must be greater than zero"));
            }
        }
        IdleTimeout::try_from(self.idle_timeout)
            .map_err(|_| format!("idle_timeout {:?} is too large", self.idle_timeout))?;
        Ok(())
    }

    /// The QUIC transport parameters both sides of a connection use.
    pub(crate) fn quic(&self) -> Result<quinn::TransportConfig, TlsError> {
        self.validate().map_err(TlsError::Config)?;
        let idle = IdleTimeout::try_from(self.idle_timeout)
            .map_err(|_| TlsError::Config("idle_timeout is too large".to_string()))?;
        let mut t = quinn::TransportConfig::default();
        t.max_idle_timeout(Some(idle))
            .keep_alive_interval(Some(self.keep_alive))
            .max_concurrent_bidi_streams(VarInt::from_u32(self.max_concurrent_streams))
            .max_concurrent_uni_streams(VarInt::from_u32(0))
            .datagram_receive_buffer_size(Some(self.datagram_buffer))
            .datagram_send_buffer_size(self.datagram_buffer)
            // Unread data per connection is bounded: two full frames in flight.
            .receive_window(VarInt::from_u64(2 * self.max_frame as u64).unwrap_or(VarInt::MAX));
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_zero_limits_are_not() {
        assert_eq!(TransportConfig::default().validate(), Ok(()));
        let zero_streams = TransportConfig {
            max_concurrent_streams: 0,
            ..TransportConfig::default()
        };
        assert!(zero_streams
            .validate()
            .unwrap_err()
            .contains("max_concurrent_streams"));
        let zero_timeout = TransportConfig {
            call_timeout: Duration::ZERO,
            ..TransportConfig::default()
        };
        assert!(zero_timeout.quic().is_err());
    }
}
