//! Protocol version 1 on the wire: what a connection that negotiated `ringkv/1` carries.
//!
//! Version 1 is the release whose nodes announced `ringkv/1` after the Redis front and fault
//! injection had changed the message enums without a bump. Version 2 (this build's own, see
//! [`crate::proto`]) differs from it in:
//! - variants version 1 lacks, all appended at their enum's end: `Request::Info`,
//!   `Response::Info` (and those that come with the key listing of SCAN and DBSIZE);
//! - `ClientError::BadRequest`, inserted before `BadRange`: the later error variants moved
//!   up, so a version-1 error read as version 2 is another error;
//! - typed reasons: version 1's `ClientError::Unavailable` and `PeerReply::Failed` carry text
//!   where version 2 carries [`Unavailable`] and [`Refusal`] (which print the same texts);
//! - fault injection's errors (a test-cluster admin request): not carried across versions.
//!
//! So a version-1 request is also a valid version-2 encoding of the same request, and only
//! responses (which carry `ClientError`) need the frozen types below. A version-2 request
//! that version 1 cannot express is refused before it is sent.

use serde::{Deserialize, Serialize};

use crate::core::replication::msg::ReplReply;
use crate::merkle::ExchangeMsg;
use crate::proto::{
    self, ClientRequest, ClientResponse, PeerRequest, Refusal, Request, Unavailable,
};
use crate::table::RangeTable;
use crate::version::Record;

/// The version-1 wire version.
pub(crate) const V1: u32 = 1;

/// Why a message cannot cross a version-1 connection.
#[derive(Debug, thiserror::Error)]
pub enum CompatError {
    /// The message uses something version 1 does not have.
    #[error("{0} needs protocol version 2; the peer speaks ringkv/1")]
    NotInV1(&'static str),
    /// The frame is not a message of the expected version.
    #[error("bad frame: {0}")]
    Codec(#[from] proto::CodecError),
}

/// Version 1's `Response` (frozen).
#[derive(Debug, Serialize, Deserialize)]
enum Response {
    Client(Result<ClientResponse, ClientError>),
    Peer(PeerReply),
}

/// Version 1's `PeerReply` (frozen).
#[derive(Debug, Serialize, Deserialize)]
enum PeerReply {
    Written(Record),
    Replicated,
    Read(Option<Record>),
    Exchange(Option<ExchangeMsg>),
    Forwarded(Result<ClientResponse, ClientError>),
    Repl(ReplReply),
    Failed(String),
    Table(Option<RangeTable>),
    Members(Option<Vec<String>>),
}

/// Version 1's `ClientError` (frozen): version 2's without `BadRequest`, reasons as text.
#[derive(Debug, Serialize, Deserialize)]
enum ClientError {
    BadKey {
        size: usize,
        max: usize,
    },
    ValueTooLarge {
        size: usize,
        max: usize,
    },
    BadQuorum {
        which: String,
        asked: u8,
        n: u8,
    },
    QuorumFailed {
        op: String,
        needed: u8,
        replicas: u8,
        ok: u8,
        detail: String,
    },
    Overloaded {
        in_flight: usize,
    },
    BadContext(String),
    ReadOnly {
        primary: Option<String>,
    },
    Unavailable(String),
    BadRange(String),
    NotPrimary {
        primary: Option<String>,
        epoch: u64,
    },
    Update(crate::proto::update::UpdateError),
    Electing,
    LeaseExpired,
    Gathering,
    NoReplicas {
        needed: usize,
        online: usize,
        syncing: usize,
    },
}

/// Checks that a version-2 request frame can go to a version-1 peer; the same bytes are its
/// version-1 encoding.
pub fn check_request_for_v1(frame: &[u8]) -> Result<(), CompatError> {
    match proto::decode::<Request>(frame)? {
        Request::Client(req) => check_client_request(&req),
        Request::Peer { req, .. } => match req {
            PeerRequest::Forward(req) => check_client_request(&req),
            PeerRequest::Keys { .. } => Err(CompatError::NotInV1("a key listing")),
            _ => Ok(()),
        },
        Request::Fault(_) => Err(CompatError::NotInV1("a fault-injection request")),
        Request::Info => Err(CompatError::NotInV1("a node-info request")),
    }
}

fn check_client_request(req: &ClientRequest) -> Result<(), CompatError> {
    match req {
        ClientRequest::Keys { .. } => Err(CompatError::NotInV1("a key listing")),
        ClientRequest::Direct(inner) | ClientRequest::After { req: inner, .. } => {
            check_client_request(inner)
        }
        _ => Ok(()),
    }
}

/// A version-1 response frame as this build's (version 2) encoding.
pub fn response_from_v1(frame: &[u8]) -> Result<Vec<u8>, CompatError> {
    let current = match proto::decode::<Response>(frame)? {
        Response::Client(r) => proto::Response::Client(r.map_err(error_from_v1)),
        Response::Peer(reply) => proto::Response::Peer(reply_from_v1(reply)),
    };
    Ok(proto::encode(&current)?)
}

/// This build's response frame as version 1 encodes it. What version 1 cannot express
/// becomes an `Unavailable` error saying so (it answers a request a version-1 peer cannot
/// have sent).
pub fn response_to_v1(frame: &[u8]) -> Result<Vec<u8>, CompatError> {
    let old = match proto::decode::<proto::Response>(frame)? {
        proto::Response::Client(r) => Response::Client(result_to_v1(r)),
        proto::Response::Peer(reply) => Response::Peer(reply_to_v1(reply)),
        proto::Response::Fault(_) => Response::Client(Err(not_in_v1(CompatError::NotInV1(
            "a fault-injection answer",
        )))),
        proto::Response::Info(_) => {
            Response::Client(Err(not_in_v1(CompatError::NotInV1("a node-info answer"))))
        }
    };
    Ok(proto::encode(&old)?)
}

fn not_in_v1(e: CompatError) -> ClientError {
    ClientError::Unavailable(e.to_string())
}

fn result_to_v1(
    r: Result<ClientResponse, proto::ClientError>,
) -> Result<ClientResponse, ClientError> {
    match r {
        Ok(ClientResponse::Keys(_)) => Err(not_in_v1(CompatError::NotInV1("a key listing"))),
        Ok(resp) => Ok(resp),
        Err(e) => Err(error_to_v1(e)),
    }
}

fn reply_from_v1(r: PeerReply) -> proto::PeerReply {
    match r {
        PeerReply::Written(rec) => proto::PeerReply::Written(rec),
        PeerReply::Replicated => proto::PeerReply::Replicated,
        PeerReply::Read(rec) => proto::PeerReply::Read(rec),
        PeerReply::Exchange(m) => proto::PeerReply::Exchange(m),
        PeerReply::Forwarded(r) => proto::PeerReply::Forwarded(r.map_err(error_from_v1)),
        PeerReply::Repl(r) => proto::PeerReply::Repl(r),
        PeerReply::Failed(s) => proto::PeerReply::Failed(refusal_from_v1(s)),
        PeerReply::Table(t) => proto::PeerReply::Table(t),
        PeerReply::Members(m) => proto::PeerReply::Members(m),
    }
}

fn reply_to_v1(r: proto::PeerReply) -> PeerReply {
    match r {
        proto::PeerReply::Written(rec) => PeerReply::Written(rec),
        proto::PeerReply::Replicated => PeerReply::Replicated,
        proto::PeerReply::Read(rec) => PeerReply::Read(rec),
        proto::PeerReply::Exchange(m) => PeerReply::Exchange(m),
        proto::PeerReply::Forwarded(r) => PeerReply::Forwarded(result_to_v1(r)),
        proto::PeerReply::Repl(r) => PeerReply::Repl(r),
        proto::PeerReply::Failed(r) => PeerReply::Failed(r.to_string()),
        proto::PeerReply::Table(t) => PeerReply::Table(t),
        proto::PeerReply::Members(m) => PeerReply::Members(m),
        // Answers a request a version-1 peer cannot have sent.
        proto::PeerReply::Keys { .. } => {
            PeerReply::Failed(CompatError::NotInV1("a key listing").to_string())
        }
    }
}

/// Version 1 gave reasons as text; version 2's typed reasons print the same texts. A text
/// of a reason without data maps back to it; any other is kept as `Storage`, whose handling
/// is the cautious one (the node may have written).
fn unavailable_from_v1(text: String) -> Unavailable {
    [
        Unavailable::RingEmpty,
        Unavailable::RingChanging,
        Unavailable::NoReplicaUp,
        Unavailable::ShardVanished,
        Unavailable::PrimaryTimedOut,
        Unavailable::NotLeading,
        Unavailable::LeadUnconfirmed,
        Unavailable::TableUnknown,
    ]
    .into_iter()
    .find(|u| u.to_string() == text)
    .unwrap_or(Unavailable::Storage(text))
}

/// Like [`unavailable_from_v1`], for a peer's refusal.
fn refusal_from_v1(text: String) -> Refusal {
    [
        Refusal::Leaving,
        Refusal::PrimaryPrefix,
        Refusal::NotReplicaRequest,
        Refusal::Closing,
        Refusal::RingDiffers,
    ]
    .into_iter()
    .find(|r| r.to_string() == text)
    .unwrap_or(Refusal::Storage(text))
}

fn error_from_v1(e: ClientError) -> proto::ClientError {
    use proto::ClientError as E;
    match e {
        ClientError::BadKey { size, max } => E::BadKey { size, max },
        ClientError::ValueTooLarge { size, max } => E::ValueTooLarge { size, max },
        ClientError::BadQuorum { which, asked, n } => E::BadQuorum { which, asked, n },
        ClientError::QuorumFailed {
            op,
            needed,
            replicas,
            ok,
            detail,
        } => E::QuorumFailed {
            op,
            needed,
            replicas,
            ok,
            detail,
        },
        ClientError::Overloaded { in_flight } => E::Overloaded { in_flight },
        ClientError::BadContext(s) => E::BadContext(s),
        ClientError::ReadOnly { primary } => E::ReadOnly { primary },
        ClientError::Unavailable(s) => E::Unavailable(unavailable_from_v1(s)),
        ClientError::BadRange(s) => E::BadRange(s),
        ClientError::NotPrimary { primary, epoch } => E::NotPrimary { primary, epoch },
        ClientError::Update(e) => E::Update(e),
        ClientError::Electing => E::Electing,
        ClientError::LeaseExpired => E::LeaseExpired,
        ClientError::Gathering => E::Gathering,
        ClientError::NoReplicas {
            needed,
            online,
            syncing,
        } => E::NoReplicas {
            needed,
            online,
            syncing,
        },
    }
}

fn error_to_v1(e: proto::ClientError) -> ClientError {
    use proto::ClientError as E;
    match e {
        E::BadKey { size, max } => ClientError::BadKey { size, max },
        E::ValueTooLarge { size, max } => ClientError::ValueTooLarge { size, max },
        E::BadQuorum { which, asked, n } => ClientError::BadQuorum { which, asked, n },
        E::QuorumFailed {
            op,
            needed,
            replicas,
            ok,
            detail,
        } => ClientError::QuorumFailed {
            op,
            needed,
            replicas,
            ok,
            detail,
        },
        E::Overloaded { in_flight } => ClientError::Overloaded { in_flight },
        E::BadContext(s) => ClientError::BadContext(s),
        E::ReadOnly { primary } => ClientError::ReadOnly { primary },
        E::Unavailable(u) => ClientError::Unavailable(u.to_string()),
        // Only requests version 1 cannot send are malformed this way; said as text.
        E::BadRequest(_) => ClientError::Unavailable(e.to_string()),
        E::BadRange(s) => ClientError::BadRange(s),
        E::NotPrimary { primary, epoch } => ClientError::NotPrimary { primary, epoch },
        E::Update(e) => ClientError::Update(e),
        E::Electing => ClientError::Electing,
        E::LeaseExpired => ClientError::LeaseExpired,
        E::Gathering => ClientError::Gathering,
        E::NoReplicas {
            needed,
            online,
            syncing,
        } => ClientError::NoReplicas {
            needed,
            online,
            syncing,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ClientError as E, Response as R};

    #[test]
    fn a_version_1_lease_error_keeps_its_meaning() {
        // Version 1's bytes: Response::Client (0), Err (1), LeaseExpired (index 12).
        let v1 = proto::encode(&Response::Client(Err(ClientError::LeaseExpired))).unwrap();
        assert_eq!(v1, [0, 1, 12]);
        // Read as version 2 without transcoding it is not LeaseExpired: why the bump.
        assert_ne!(
            proto::decode::<R>(&v1).ok(),
            Some(R::Client(Err(E::LeaseExpired)))
        );
        let v2: R = proto::decode(&response_from_v1(&v1).unwrap()).unwrap();
        assert_eq!(v2, R::Client(Err(E::LeaseExpired)));
        // And back.
        let again = response_to_v1(&proto::encode(&v2).unwrap()).unwrap();
        assert_eq!(again, v1);
    }

    #[test]
    fn forwarded_errors_and_replies_cross_both_ways() {
        let v2 = R::Peer(proto::PeerReply::Forwarded(Err(E::NoReplicas {
            needed: 2,
            online: 1,
            syncing: 0,
        })));
        let v1 = response_to_v1(&proto::encode(&v2).unwrap()).unwrap();
        let back: R = proto::decode(&response_from_v1(&v1).unwrap()).unwrap();
        assert_eq!(back, v2);
        let members = R::Peer(proto::PeerReply::Members(Some(vec!["n1".into()])));
        let v1 = response_to_v1(&proto::encode(&members).unwrap()).unwrap();
        // Unchanged variants encode alike in both versions.
        assert_eq!(v1, proto::encode(&members).unwrap());
    }

    #[test]
    fn typed_reasons_cross_as_their_texts() {
        let v2 = R::Client(Err(E::Unavailable(Unavailable::NoReplicaUp)));
        let v1 = response_to_v1(&proto::encode(&v2).unwrap()).unwrap();
        let text: Response = proto::decode(&v1).unwrap();
        assert!(
            matches!(&text, Response::Client(Err(ClientError::Unavailable(t))) if t == "no replica of the key is up"),
            "{text:?}"
        );
        let back: R = proto::decode(&response_from_v1(&v1).unwrap()).unwrap();
        assert_eq!(back, v2);
        // A text with data is kept, under the cautious reason.
        let v1 = proto::encode(&Response::Peer(PeerReply::Failed("disk full".into()))).unwrap();
        let back: R = proto::decode(&response_from_v1(&v1).unwrap()).unwrap();
        assert_eq!(
            back,
            R::Peer(proto::PeerReply::Failed(Refusal::Storage(
                "disk full".into()
            )))
        );
        let leaving = R::Peer(proto::PeerReply::Failed(Refusal::Leaving));
        let v1 = response_to_v1(&proto::encode(&leaving).unwrap()).unwrap();
        let back: R = proto::decode(&response_from_v1(&v1).unwrap()).unwrap();
        assert_eq!(back, leaving);
    }

    #[test]
    fn requests_version_1_lacks_are_refused_before_sending() {
        let get = Request::Client(ClientRequest::Members);
        check_request_for_v1(&proto::encode(&get).unwrap()).unwrap();
        // Version 1 has atomic updates, also forwarded.
        let update = ClientRequest::Update {
            key: b"k".to_vec(),
            op: crate::proto::update::UpdateOp::Add(1),
        };
        let nested = Request::Peer {
            from: "n1".into(),
            req: PeerRequest::Forward(ClientRequest::Direct(Box::new(update))),
        };
        check_request_for_v1(&proto::encode(&nested).unwrap()).unwrap();
        let err = check_request_for_v1(&proto::encode(&Request::Info).unwrap()).unwrap_err();
        assert!(err.to_string().contains("ringkv/1"), "{err}");
        assert!(check_request_for_v1(&[0xff, 0xff]).is_err());
    }
}
