//! Routing of primary-mode requests inside whole cores.

use super::super::table::tests::{client, cluster, primary, range_set, receive};
use super::super::{Effect, InboundId, Input, NodeCore};
use crate::proto::{ClientRequest, ClientResponse, PeerReply, PeerRequest};
use crate::table::SyncReplicas;

/// Three cores that hold `p/` in primary mode (majority), no primary elected yet.
fn primary_cluster() -> Vec<NodeCore> {
    let (mut cores, _) = cluster(3);
    let (_, _) = client(
        &mut cores[0],
        range_set("p/", primary(SyncReplicas::Majority)),
    );
    let table = cores[0].table().clone();
    for core in &mut cores[1..] {
        receive(core, "n1", table.clone());
    }
    cores
}

/// What `core` answers a request another node forwarded to it.
fn forwarded(core: &mut NodeCore, req: ClientRequest) -> PeerReply {
    let effects = core.handle(
        1,
        Input::PeerRequest {
            id: InboundId(5),
            from: "n9".into(),
            req: PeerRequest::Forward(req),
        },
    );
    effects
        .into_iter()
        .find_map(|e| match e {
            Effect::Respond { reply, .. } => Some(reply),
            _ => None,
        })
        .expect("an answer to the forwarding node")
}

#[test]
fn a_forwarded_read_is_served_by_the_primary_only_never_from_a_replica_copy() {
    let mut cores = primary_cluster();
    let get = ClientRequest::Get {
        key: b"p/x".to_vec(),
        r: None,
        wait_repair: false,
    };
    for core in &mut cores {
        // Nobody is primary yet: each node either stands for election or points elsewhere,
        // and none answers from its own copy.
        let reply = forwarded(core, get.clone());
        assert!(
            matches!(reply, PeerReply::Forwarded(Err(_))),
            "{}: {reply:?}",
            core.me().name
        );
    }
    // A direct read is the one that a replica answers from its copy.
    let direct = ClientRequest::Direct(Box::new(get));
    let (result, _) = client(&mut cores[1], direct);
    assert!(matches!(result, Ok(ClientResponse::Got(_))), "{result:?}");
}
