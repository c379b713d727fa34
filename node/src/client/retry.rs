//! When the library client sends a request again, and how long it waits first.
//!
//! A request is sent again only when that cannot apply it twice: a read on any retryable
//! error; a write only when the error says nothing was written (the request never reached a
//! node, or a node refused it before writing: an election, a lost lease, a gathering primary,
//! replicas catching up, an overloaded node). A write that may have been applied (a timeout,
//! a lost connection, a quorum that failed half-way, a primary that did not answer) is
//! returned to the caller, who knows whether writing it again is right.

use std::time::Duration;

use rand::RngExt;

use crate::net::{TimeoutPhase, TransportError};
use crate::proto::{ClientError, ClientRequest};
use crate::Error;

/// How the client retries: attempts start only while `budget` since the first one has not
/// passed; waits grow from `first_wait` to `max_wait`, each drawn at random up to that bound
/// (full jitter, so clients refused together do not come back together).
///
/// ```
/// use std::time::Duration;
/// use ringkv::client::RetryPolicy;
/// let never = RetryPolicy::none();
/// assert_eq!(never.budget, Duration::ZERO);
/// let default = RetryPolicy::default();
/// assert!(default.first_wait <= default.max_wait);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// No attempt starts later than this after the first.
    pub budget: Duration,
    /// Bound of the first wait.
    pub first_wait: Duration,
    /// Bound of every wait (the bound doubles up to it).
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            budget: Duration::from_secs(5),
            first_wait: Duration::from_millis(50),
            max_wait: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub const fn none() -> Self {
        Self {
            budget: Duration::ZERO,
            first_wait: Duration::ZERO,
            max_wait: Duration::ZERO,
        }
    }

    /// The wait before attempt `attempt + 1` (attempt 0 was the first), drawn at random.
    pub fn wait(&self, attempt: u32) -> Duration {
        let bound = self
            .first_wait
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_wait);
        let micros = u64::try_from(bound.as_micros()).unwrap_or(u64::MAX);
        if micros == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(rand::rng().random_range(0..=micros))
    }
}

/// Whether `req`, which failed with `e`, may be sent again (see the module's docs).
pub fn may_retry(req: &ClientRequest, e: &Error) -> bool {
    allowed(is_read(req), e)
}

/// [`may_retry`] for a request known to be a read or not.
pub(super) fn allowed(read: bool, e: &Error) -> bool {
    match e {
        Error::Transport(t) if never_sent(t) => true,
        Error::Transport(
            TransportError::Timeout { .. } | TransportError::ConnectionLost { .. },
        ) => read,
        Error::Request(e) if nothing_written(e) => true,
        Error::Request(e) => e.retryable() && read,
        _ => false,
    }
}

/// The request surely never reached the node: sending it again cannot apply it twice.
pub(super) fn never_sent(e: &TransportError) -> bool {
    matches!(
        e,
        TransportError::Connect { .. }
            | TransportError::Handshake { .. }
            | TransportError::Timeout {
                phase: TimeoutPhase::Connect,
                ..
            }
    )
}

/// The node refused the request before writing anything, for a reason that passes.
fn nothing_written(e: &ClientError) -> bool {
    e.passing_refusal()
        || matches!(
            e,
            ClientError::Overloaded { .. } | ClientError::NoReplicas { .. }
        )
}

/// Requests that change nothing, so sending them twice is harmless.
pub(super) fn is_read(req: &ClientRequest) -> bool {
    match req {
        ClientRequest::Get { .. }
        | ClientRequest::Members
        | ClientRequest::Ring
        | ClientRequest::Inspect { .. }
        | ClientRequest::Status
        | ClientRequest::Replication { .. }
        | ClientRequest::RangeList => true,
        ClientRequest::Direct(req) | ClientRequest::After { req, .. } => is_read(req),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Unavailable;

    fn get() -> ClientRequest {
        ClientRequest::Get {
            key: b"k".to_vec(),
            r: None,
            wait_repair: false,
        }
    }

    fn put() -> ClientRequest {
        ClientRequest::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            context: None,
            w: None,
        }
    }

    fn timeout(phase: TimeoutPhase) -> Error {
        Error::Transport(TransportError::Timeout {
            addr: "127.0.0.1:1".parse().unwrap(),
            after: Duration::from_secs(1),
            phase,
        })
    }

    #[test]
    fn a_write_is_retried_only_when_nothing_was_written() {
        let refused = Error::Request(ClientError::Electing);
        assert!(may_retry(&put(), &refused));
        assert!(may_retry(&put(), &timeout(TimeoutPhase::Connect)));
        let overloaded = Error::Request(ClientError::Overloaded { in_flight: 9 });
        assert!(may_retry(&put(), &overloaded));
        // Any of these may have applied it.
        assert!(!may_retry(&put(), &timeout(TimeoutPhase::Call)));
        let unknown = Error::Request(ClientError::Unavailable(Unavailable::PrimaryDown(
            "n1".into(),
        )));
        assert!(!may_retry(&put(), &unknown));
        // Refused before anything was written: a write may go again.
        let no_replica = Error::Request(ClientError::Unavailable(Unavailable::NoReplicaUp));
        assert!(may_retry(&put(), &no_replica));
    }

    #[test]
    fn a_read_is_retried_on_any_retryable_error_and_a_final_one_is_not() {
        assert!(may_retry(&get(), &timeout(TimeoutPhase::Call)));
        let unknown = Error::Request(ClientError::Unavailable(Unavailable::PrimaryTimedOut));
        assert!(may_retry(&get(), &unknown));
        let bad = Error::Request(ClientError::BadKey { size: 0, max: 1 });
        assert!(!may_retry(&get(), &bad));
        let readonly = Error::Request(ClientError::ReadOnly { primary: None });
        assert!(!may_retry(
            &ClientRequest::Direct(Box::new(put())),
            &readonly
        ));
    }

    #[test]
    fn waits_are_bounded_by_a_doubling_bound_up_to_the_maximum() {
        let p = RetryPolicy::default();
        for attempt in 0..40 {
            let bound = (p.first_wait * 2u32.pow(attempt.min(16))).min(p.max_wait);
            assert!(p.wait(attempt) <= bound, "attempt {attempt}");
        }
        assert_eq!(RetryPolicy::none().wait(3), Duration::ZERO);
    }
}
