//! Exit statuses, so that a script tells an absent key from a cluster that could not answer
//! without reading text: 0 success, 1 not found (`get`) or any failure not listed here,
//! 2 usage error, 3 the cluster could not answer (unavailable, quorum not met, timeout,
//! unreachable: retrying later may work), 4 refused (TLS, `READONLY`, bad input: retrying the
//! same request fails the same way).

use std::process::ExitCode;

use ringkv::net::TransportError;
use ringkv::proto::ClientError;

/// The key has no live value (or a check failed).
pub const NOT_FOUND: u8 = 1;
/// The command line is wrong.
pub const USAGE: u8 = 2;
/// The cluster could not answer now.
pub const UNAVAILABLE: u8 = 3;
/// The request was refused as it stands.
pub const REFUSED: u8 = 4;

/// The text of `--help` that lists the statuses.
pub const HELP: &str = "Exit status: 0 success; 1 key not found (get) or another failure; \
2 usage error; 3 the cluster could not answer (unavailable, quorum not met, timeout: may \
succeed later); 4 refused (TLS, READONLY, bad input).";

/// The exit status and a stable kind name for a failed command.
pub fn classify(e: &anyhow::Error) -> (u8, &'static str) {
    for cause in e.chain() {
        if let Some(e) = cause.downcast_ref::<ringkv::Error>() {
            return of_node(e);
        }
        if let Some(e) = cause.downcast_ref::<ClientError>() {
            return of_request(e);
        }
        if let Some(e) = cause.downcast_ref::<TransportError>() {
            return of_transport(e);
        }
        if cause.downcast_ref::<ringkv::net::TlsError>().is_some() {
            return (REFUSED, "tls");
        }
    }
    (NOT_FOUND, "failed")
}

/// `code` as a process exit status.
pub fn code(code: u8) -> ExitCode {
    ExitCode::from(code)
}

fn of_node(e: &ringkv::Error) -> (u8, &'static str) {
    match e {
        ringkv::Error::Request(e) => of_request(e),
        ringkv::Error::Transport(e) => of_transport(e),
        ringkv::Error::Tls(_) => (REFUSED, "tls"),
        ringkv::Error::Config(_) | ringkv::Error::Redis(_) => (REFUSED, "config"),
        ringkv::Error::Fault(_) => (REFUSED, "fault_refused"),
        ringkv::Error::Codec(_) | ringkv::Error::Unexpected(_) => (UNAVAILABLE, "bad_response"),
        ringkv::Error::Shutdown => (UNAVAILABLE, "shutdown"),
        ringkv::Error::Store(_) | ringkv::Error::Table(_) | ringkv::Error::Gossip(_) => {
            (NOT_FOUND, "failed")
        }
    }
}

fn of_request(e: &ClientError) -> (u8, &'static str) {
    let status = if e.retryable() { UNAVAILABLE } else { REFUSED };
    (status, e.kind())
}

fn of_transport(e: &TransportError) -> (u8, &'static str) {
    match e {
        TransportError::Timeout { .. } => (UNAVAILABLE, "timeout"),
        TransportError::Connect { .. }
        | TransportError::ConnectionLost { .. }
        | TransportError::TooManyConnections { .. }
        | TransportError::Closed => (UNAVAILABLE, "unreachable"),
        TransportError::Remote { .. } | TransportError::BadResponse { .. } => {
            (UNAVAILABLE, "bad_response")
        }
        TransportError::Handshake { .. } | TransportError::Tls(_) => (REFUSED, "tls"),
        TransportError::FrameTooLarge { .. } => (REFUSED, "too_large"),
        TransportError::Config(_) | TransportError::Io(_) => (REFUSED, "config"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_node_and_a_refused_request_get_different_statuses() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let timeout = ringkv::Error::Transport(TransportError::Connect {
            addr,
            reason: "refused".into(),
        });
        let e = anyhow::Error::new(timeout).context("get \"k\" via 127.0.0.1:1");
        assert_eq!(classify(&e), (UNAVAILABLE, "unreachable"));
        let readonly = ringkv::Error::Request(ClientError::ReadOnly { primary: None });
        assert_eq!(
            classify(&anyhow::Error::new(readonly)),
            (REFUSED, "readonly")
        );
        let quorum = ClientError::QuorumFailed {
            op: "read".into(),
            needed: 2,
            replicas: 3,
            ok: 1,
            detail: String::new(),
        };
        assert_eq!(
            classify(&anyhow::Error::new(quorum)),
            (UNAVAILABLE, "quorum_failed")
        );
        assert_eq!(
            classify(&anyhow::anyhow!("no such file")),
            (NOT_FOUND, "failed")
        );
    }
}
