//! Every postcard message a node decodes from a peer or a client, and the version-1
//! transcoding of frames: the same bytes decoded as each type, each value round-tripped.

use crate::round_trip;
use ringkv::faults::{FaultError, FaultPlan, FaultRequest};
use ringkv::merkle::ExchangeMsg;
use ringkv::net::fuzzing::{check_request_for_v1, response_from_v1, response_to_v1};
use ringkv::proto::repl::{ReplReply, ReplRequest};
use ringkv::proto::{
    ClientError, ClientRequest, ClientResponse, NodeInfo, PeerReply, PeerRequest, Request, Response,
};
use ringkv::table::RangeTable;
use ringkv::version::{Record, VersionVector};

/// Feeds one fuzz input; panics on a broken promise of the code under test.
pub fn run(data: &[u8]) {
    if let Some(req) = round_trip::<Request>(data) {
        // A request this build decodes is also what it would send a version-1 peer: the
        // check must decide without failing to decode.
        if let Err(e) = check_request_for_v1(data) {
            assert!(!e.to_string().starts_with("bad frame"), "{e} for {req:?}");
        }
    }
    round_trip::<Response>(data);
    round_trip::<ClientRequest>(data);
    round_trip::<ClientResponse>(data);
    round_trip::<Result<ClientResponse, ClientError>>(data);
    round_trip::<PeerRequest>(data);
    round_trip::<PeerReply>(data);
    round_trip::<ReplRequest>(data);
    round_trip::<ReplReply>(data);
    round_trip::<ExchangeMsg>(data);
    round_trip::<RangeTable>(data);
    round_trip::<Record>(data);
    round_trip::<VersionVector>(data);
    round_trip::<NodeInfo>(data);
    round_trip::<FaultRequest>(data);
    round_trip::<Result<FaultPlan, FaultError>>(data);

    // A version-1 response becomes a version-2 one that decodes; a version-2 response
    // becomes a version-1 one that transcodes back.
    if let Ok(v2) = response_from_v1(data) {
        assert!(
            round_trip::<Response>(&v2).is_some(),
            "transcoded response does not decode"
        );
    }
    if let Ok(v1) = response_to_v1(data) {
        response_from_v1(&v1).expect("a version-1 encoding this build made must transcode back");
    }
}
