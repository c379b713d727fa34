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

/// A client's write refused by a state that passes (here an election nobody can win: the
/// votes are never delivered) waits and is tried again inside its deadline instead of failing
/// at once, with growing waits; past the deadline it is answered with the typed refusal. The
/// same request forwarded by another node is answered at once: the forwarding node retries.
#[test]
fn a_write_refused_by_an_election_is_retried_until_its_deadline_and_a_forwarded_one_is_not() {
    use super::super::coordinator::ClientId;
    use super::super::Timer;
    use crate::proto::ClientError;

    let mut cores = primary_cluster();
    let key = b"p/x".to_vec();
    let first = cores[0].ring().preference_list(&key)[0].clone();
    let core = cores.iter_mut().find(|c| c.me().name == first).unwrap();
    let put = ClientRequest::Put {
        key: key.clone(),
        value: b"v".to_vec(),
        context: None,
        w: None,
    };
    let retry_timer = |effects: &[Effect]| {
        effects.iter().find_map(|e| match e {
            Effect::Schedule {
                after,
                timer: Timer::Forward(call),
            } => Some((*after, *call)),
            _ => None,
        })
    };
    let reply = |effects: &[Effect]| {
        effects.iter().find_map(|e| match e {
            Effect::Reply { id, result } => Some((*id, result.clone())),
            _ => None,
        })
    };
    let mut now = 1;
    let mut effects = core.handle(
        now,
        Input::Client {
            id: ClientId(7),
            req: put.clone(),
        },
    );
    let mut waits = Vec::new();
    let answer = loop {
        if let Some(answer) = reply(&effects) {
            break answer;
        }
        let (after, call) = retry_timer(&effects).expect("a refused write waits for a retry");
        waits.push(after.as_millis() as u64);
        now += after.as_millis() as u64;
        effects = core.handle(now, Input::Timer(Timer::Forward(call)));
    };
    assert_eq!(answer.0, ClientId(7));
    assert!(
        matches!(answer.1, Err(ClientError::Electing)),
        "{:?}",
        answer.1
    );
    assert_eq!(&waits[..4], &[50, 100, 200, 400], "{waits:?}");
    assert!(waits[4..].iter().all(|&w| w == 800), "{waits:?}");
    // Answered once the next wait would pass the 5 s request timeout, not before.
    assert!(now <= 5_001 && now + 800 >= 5_001, "answered at {now} ms");

    let forwarded_reply = forwarded(core, put);
    assert!(
        matches!(
            forwarded_reply,
            PeerReply::Forwarded(Err(ClientError::Electing))
        ),
        "{forwarded_reply:?}"
    );
}
