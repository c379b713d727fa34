//! Errors of the QUIC transport, and how quinn's errors map onto them.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use quinn::{ConnectionError, ReadError, TransportErrorCode, WriteError};

use super::frame::{codes, FrameError};
use super::tls::TlsError;

/// What was under way when a timeout fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// Dialling: the QUIC and TLS handshake (bounded by `connect_timeout`).
    Connect,
    /// The whole call (bounded by `call_timeout`).
    Call,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Connect => "connecting to",
            TimeoutPhase::Call => "calling",
        })
    }
}

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Dialling failed before or outside the TLS handshake (refused, bad address, ...).
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The peer.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The TLS handshake was rejected by either side (unknown CA, no client certificate,
    /// another protocol version).
    #[error("TLS handshake with {addr} failed: {reason}")]
    Handshake {
        /// The peer.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// A bound on waiting was reached.
    #[error("timed out after {after:?} {phase} {addr}")]
    Timeout {
        /// The peer.
        addr: SocketAddr,
        /// The bound that was reached.
        after: Duration,
        /// What was under way.
        phase: TimeoutPhase,
    },
    /// A request or response frame over `max_frame`.
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Size of the frame body.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// An established connection broke.
    #[error("connection to {addr} lost: {reason}")]
    ConnectionLost {
        /// The peer.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The peer reset the request stream instead of responding.
    #[error("{addr} refused the request: {reason}")]
    Remote {
        /// The peer.
        addr: SocketAddr,
        /// What the peer's error code means.
        reason: String,
    },
    /// The peer's response was not a valid frame.
    #[error("malformed response from {addr}: {reason}")]
    BadResponse {
        /// The peer.
        addr: SocketAddr,
        /// What was wrong.
        reason: String,
    },
    /// The outgoing connection cache is full of live connections.
    #[error("too many connections (limit {max})")]
    TooManyConnections {
        /// The limit.
        max: usize,
    },
    /// This transport was closed.
    #[error("the transport is closed")]
    Closed,
    /// The configuration is unusable.
    #[error("invalid transport configuration: {0}")]
    Config(String),
    /// Binding or using the UDP socket failed.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// The TLS material could not be turned into a configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl TransportError {
    /// Maps a connection's close reason; handshake rejections by either side become
    /// [`TransportError::Handshake`].
    pub(crate) fn from_connection(addr: SocketAddr, e: &ConnectionError) -> Self {
        let reason = e.to_string();
        match e {
            ConnectionError::TransportError(t) if is_crypto(t.code) => {
                TransportError::Handshake { addr, reason }
            }
            ConnectionError::ConnectionClosed(c) if is_crypto(c.error_code) => {
                TransportError::Handshake { addr, reason }
            }
            ConnectionError::ConnectionClosed(c)
                if c.error_code == TransportErrorCode::CONNECTION_REFUSED =>
            {
                TransportError::Connect { addr, reason }
            }
            ConnectionError::VersionMismatch => TransportError::Connect { addr, reason },
            ConnectionError::LocallyClosed => TransportError::Closed,
            _ => TransportError::ConnectionLost { addr, reason },
        }
    }

    /// Maps a failure while reading a response.
    pub(crate) fn from_response(addr: SocketAddr, e: FrameError) -> Self {
        match e {
            FrameError::TooLarge { size, max } => TransportError::FrameTooLarge { size, max },
            FrameError::Truncated { .. } | FrameError::Stalled | FrameError::BadKind(_) => {
                TransportError::BadResponse {
                    addr,
                    reason: e.to_string(),
                }
            }
            FrameError::Read(e) => Self::from_read(addr, e),
            FrameError::Write(e) => Self::from_write(addr, e),
        }
    }

    pub(crate) fn from_read(addr: SocketAddr, e: ReadError) -> Self {
        match e {
            ReadError::Reset(code) => TransportError::Remote {
                addr,
                reason: codes::describe(code),
            },
            ReadError::ConnectionLost(c) => Self::from_connection(addr, &c),
            other => TransportError::ConnectionLost {
                addr,
                reason: other.to_string(),
            },
        }
    }

    pub(crate) fn from_write(addr: SocketAddr, e: WriteError) -> Self {
        match e {
            WriteError::Stopped(code) => TransportError::Remote {
                addr,
                reason: codes::describe(code),
            },
            WriteError::ConnectionLost(c) => Self::from_connection(addr, &c),
            other => TransportError::ConnectionLost {
                addr,
                reason: other.to_string(),
            },
        }
    }
}

/// QUIC carries TLS alerts as transport error codes 0x100..=0x1ff.
fn is_crypto(code: TransportErrorCode) -> bool {
    (0x100..0x200).contains(&u64::from(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypto_codes_are_handshake_errors() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let close = |code| {
            ConnectionError::ConnectionClosed(quinn::ConnectionClose {
                error_code: code,
                frame_type: None,
                reason: bytes::Bytes::new(),
            })
        };
        let rejected = close(TransportErrorCode::crypto(42));
        assert!(matches!(
            TransportError::from_connection(addr, &rejected),
            TransportError::Handshake { .. }
        ));
        let refused = close(TransportErrorCode::CONNECTION_REFUSED);
        assert!(matches!(
            TransportError::from_connection(addr, &refused),
            TransportError::Connect { .. }
        ));
        assert!(matches!(
            TransportError::from_connection(addr, &ConnectionError::TimedOut),
            TransportError::ConnectionLost { .. }
        ));
    }

    #[test]
    fn timeout_message_names_phase_and_peer() {
        let e = TransportError::Timeout {
            addr: "127.0.0.1:9".parse().unwrap(),
            after: Duration::from_millis(300),
            phase: TimeoutPhase::Connect,
        };
        assert_eq!(
            e.to_string(),
            "timed out after 300ms connecting to 127.0.0.1:9"
        );
    }
}
