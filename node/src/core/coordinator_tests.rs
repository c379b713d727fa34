//! Coordinator state machine tests: writes, reads, quorums, read repair.

use super::*;
use crate::core::CallError;
use crate::version::{DvvSet, Sibling};

fn addr(i: u8) -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, i], 7000)))
}

fn targets(down: &[&str]) -> Vec<Target> {
    ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let a = if down.contains(n) {
                None
            } else {
                addr(i as u8 + 1)
            };
            Target::new((*n).into(), a)
        })
        .collect()
}

fn record(value: &[u8], actor: &str) -> Record {
    let sib = Sibling {
        value: Some(value.to_vec()),
        ts: Timestamp::default(),
        origin: actor.into(),
    };
    DvvSet::update(&DvvSet::new(sib), &DvvSet::default(), actor)
}

fn spec(w: usize) -> WriteSpec {
    WriteSpec {
        key: b"k".to_vec(),
        value: Some(b"v".to_vec()),
        context: None,
        ts: Timestamp::default(),
        w,
    }
}

fn read_spec(r: usize, wait_repair: bool) -> ReadSpec {
    ReadSpec {
        key: b"k".to_vec(),
        r,
        wait_repair,
    }
}

fn calls(out: &[Action]) -> Vec<(CallId, SocketAddr, PeerRequest)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Call { call, to, req } => Some((*call, *to, req.clone())),
            Action::Reply { .. } => None,
        })
        .collect()
}

fn reply(out: &[Action]) -> Option<&Result<ClientResponse, ClientError>> {
    out.iter().find_map(|a| match a {
        Action::Reply { result, .. } => Some(result),
        Action::Call { .. } => None,
    })
}

#[test]
fn write_goes_to_the_leader_then_fans_out_and_answers_at_w() {
    let mut c = Coordinator::new(ConflictPolicy::Siblings, Sabotage::default());
    let mut out = Vec::new();
    c.write(ClientId(1), targets(&[]), spec(2), &mut out);
    let first = calls(&out);
    assert_eq!(first.len(), 1, "only the leader is called first");
    assert!(matches!(first[0].2, PeerRequest::Write { .. }));
    assert_eq!(first[0].1, addr(1).unwrap());

    let mut out = Vec::new();
    c.on_reply(
        first[0].0,
        Ok(PeerReply::Written(record(b"v", "a"))),
        &mut out,
    );
    let fan = calls(&out);
    assert_eq!(fan.len(), 2);
    assert!(fan
        .iter()
        .all(|(_, _, r)| matches!(r, PeerRequest::Replicate { .. })));
    assert!(reply(&out).is_none(), "one ack is not W=2");

    let mut out = Vec::new();
    c.on_reply(fan[0].0, Ok(PeerReply::Replicated), &mut out);
    match reply(&out) {
        Some(Ok(ClientResponse::Written(w))) => assert_eq!(w.acked, 2),
        other => panic!("expected a write at W=2, got {other:?}"),
    }
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn a_failed_leader_hands_the_write_to_the_next_replica() {
    let mut c = Coordinator::new(ConflictPolicy::Siblings, Sabotage::default());
    let mut out = Vec::new();
    c.write(ClientId(1), targets(&[]), spec(2), &mut out);
    let first = calls(&out);
    let mut out = Vec::new();
    c.on_reply(
        first[0].0,
        Err(CallError::Lost("connection lost".into())),
        &mut out,
    );
    let next = calls(&out);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].1, addr(2).unwrap());
    assert!(matches!(next[0].2, PeerRequest::Write { .. }));
}

#[test]
fn an_impossible_quorum_fails_at_once_naming_the_down_replica() {
    let mut c = Coordinator::new(ConflictPolicy::Siblings, Sabotage::default());
    let mut out = Vec::new();
    c.write(ClientId(1), targets(&["c"]), spec(3), &mut out);
    match reply(&out) {
        Some(Err(ClientError::QuorumFailed {
            needed, ok, detail, ..
        })) => {
            assert_eq!((*needed, *ok), (3, 0));
            assert!(detail.contains("c: down"), "{detail}");
        }
        other => panic!("expected QuorumFailed, got {other:?}"),
    }
    assert!(calls(&out).is_empty());
}

#[test]
fn a_write_with_one_replica_down_still_meets_w2() {
    let mut c = Coordinator::new(ConflictPolicy::Siblings, Sabotage::default());
    let mut out = Vec::new();
    c.write(ClientId(1), targets(&["b"]), spec(2), &mut out);
    let first = calls(&out);
    let mut out = Vec::new();
    c.on_reply(
        first[0].0,
        Ok(PeerReply::Written(record(b"v", "a"))),
        &mut out,
    );
    let fan = calls(&out);
    assert_eq!(fan.len(), 1, "the down replica is not called");
    let mut out = Vec::new();
    c.on_reply(fan[0].0, Ok(PeerReply::Replicated), &mut out);
    assert!(matches!(reply(&out), Some(Ok(ClientResponse::Written(_)))));
}

#[test]
fn a_fallback_keeps_a_hint_for_a_down_replica_and_counts_toward_w() {
    let mut c = Coordinator::new(ConflictPolicy::Siblings, Sabotage::default());
    let mut t = targets(&["c"]);
    t.push(Target::fallback("d".into(), addr(4).unwrap(), "c".into()));
    let mut out = Vec::new();
    c.write(ClientId(1), t, spec(3), &mut out);
    let first = calls(&out);
    assert_eq!(first[0].1, addr(1).unwrap(), "a real replica leads");
    let mut out = Vec::new();
    c.on_reply(
        first[0].0,
        Ok(PeerReply::Written(record(b"v", "a"))),
        &mut out,
    );
    let fan = calls(&out);
    assert_eq!(fan.len(), 2);
    let hint = fan
        .iter()
        .find(|(_, to, _)| *to == addr(4).unwrap())
        .unwrap();
    assert!(matches!(&hint.2, PeerRequest::Hint { owner, .. } if owner == "c"));
    let mut out = Vec::new();
    for (call, _, _) in &fan {
        c.on_reply(*call, Ok(PeerReply::Replicated), &mut out);
    }
    match reply(&out) {
        Some(Ok(ClientResponse::Written(w))) => assert_eq!(w.acked, 3),
        other => panic!("expected W=3 met with the hint, got {other:?}"),
    }
}

#[test]
fn a_fallback_never_leads_a_write() {
    let mut c = Coordinator::new(ConflictPolicy::Siblings, Sabotage::default());
    let mut t = targets(&["a", "b", "c"]);
    t.push(Target::fallback("d".into(), addr(4).unwrap(), "a".into()));
    let mut out = Vec::new();
    c.write(ClientId(1), t, spec(1), &mut out);
    assert!(calls(&out).is_empty());
    assert!(matches!(
        reply(&out),
        Some(Err(ClientError::QuorumFailed { .. }))
    ));
}

#[test]
fn a_read_merges_siblings_from_r_replicas() {
    let mut c = Coordinator::new(ConflictPolicy::Siblings, Sabotage::default());
    let mut out = Vec::new();
    c.read(ClientId(7), targets(&[]), read_spec(2, false), &mut out);
    let asked = calls(&out);
    assert_eq!(asked.len(), 3, "every live replica is asked");
    let mut out = Vec::new();
    c.on_reply(
        asked[0].0,
        Ok(PeerReply::Read(Some(record(b"x", "a")))),
        &mut out,
    );
    assert!(reply(&out).is_none());
    c.on_reply(
        asked[1].0,
        Ok(PeerReply::Read(Some(record(b"y", "b")))),
        &mut out,
    );
    match reply(&out) {
        Some(Ok(ClientResponse::Got(r))) => {
            let mut values: Vec<&[u8]> = r.values.iter().map(|v| v.data.as_slice()).collect();
            values.sort();
            assert_eq!(values, vec![b"x".as_slice(), b"y".as_slice()]);
            assert_eq!(r.context.0.get("a"), 1);
            assert_eq!(r.context.0.get("b"), 1);
        }
        other => panic!("expected a merged read, got {other:?}"),
    }
}

#[test]
fn after_every_reply_a_read_repairs_exactly_the_stale_replicas() {
    let mut c = Coordinator::new(ConflictPolicy::Siblings, Sabotage::default());
    let mut out = Vec::new();
    c.read(ClientId(7), targets(&[]), read_spec(2, false), &mut out);
    let asked = calls(&out);
    let full = record(b"x", "a");
    let mut out = Vec::new();
    c.on_reply(
        asked[0].0,
        Ok(PeerReply::Read(Some(full.clone()))),
        &mut out,
    );
    c.on_reply(
        asked[1].0,
        Ok(PeerReply::Read(Some(full.clone()))),
        &mut out,
    );
    match reply(&out) {
        Some(Ok(ClientResponse::Got(r))) => {
            assert_eq!((r.replied, r.repaired), (2, 0), "answered at R=2")
        }
        other => panic!("expected a read at R=2, got {other:?}"),
    }
    assert!(
        calls(&out).is_empty(),
        "no repair before every replica answered"
    );
    assert_eq!(c.in_flight(), 1, "the read waits for the last replica");
    let mut out = Vec::new();
    c.on_reply(asked[2].0, Ok(PeerReply::Read(None)), &mut out);
    let repairs = calls(&out);
    assert_eq!(
        repairs.len(),
        1,
        "only the replica without the key is repaired"
    );
    assert_eq!(repairs[0].1, addr(3).unwrap());
    assert!(matches!(&repairs[0].2, PeerRequest::Replicate { record, .. } if *record == full));
    assert_eq!(c.in_flight(), 0);
}

/// A read that waits for its repairs, after `a` and `b` answered `full` and `c` nothing:
/// the coordinator and the repair call it sent to `c`.
fn waiting_read_with_c_stale() -> (Coordinator, Record, (CallId, SocketAddr, PeerRequest)) {
    let mut c = Coordinator::new(ConflictPolicy::Siblings, Sabotage::default());
    let mut out = Vec::new();
    c.read(ClientId(7), targets(&[]), read_spec(2, true), &mut out);
    let asked = calls(&out);
    let full = record(b"x", "a");
    let mut out = Vec::new();
    for call in &asked[..2] {
        c.on_reply(call.0, Ok(PeerReply::Read(Some(full.clone()))), &mut out);
    }
    assert!(reply(&out).is_none(), "R=2 met, but c has not replied yet");
    c.on_reply(asked[2].0, Ok(PeerReply::Read(None)), &mut out);
    assert!(
        reply(&out).is_none(),
        "the repair of c is not acknowledged yet"
    );
    let repairs = calls(&out);
    assert_eq!(repairs.len(), 1);
    assert_eq!(repairs[0].1, addr(3).unwrap());
    assert!(matches!(&repairs[0].2, PeerRequest::Replicate { record, .. } if *record == full));
    assert_eq!(c.in_flight(), 1);
    (c, full, repairs[0].clone())
}

#[test]
fn a_read_that_waits_for_repair_answers_only_after_the_repair_ack() {
    let (mut c, full, repair) = waiting_read_with_c_stale();
    let mut out = Vec::new();
    c.on_reply(repair.0, Ok(PeerReply::Replicated), &mut out);
    match reply(&out) {
        Some(Ok(ClientResponse::Got(r))) => {
            assert_eq!((r.replied, r.repaired), (3, 1));
            assert_eq!(r.values.len(), 1);
            assert_eq!(r.context.0, full.join());
        }
        other => panic!("expected the read after its repair, got {other:?}"),
    }
    assert!(calls(&out).is_empty(), "nothing more to repair");
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn a_failed_repair_is_not_counted_as_repaired() {
    let (mut c, _, repair) = waiting_read_with_c_stale();
    let mut out = Vec::new();
    c.on_reply(
        repair.0,
        Err(CallError::Lost("connection lost".into())),
        &mut out,
    );
    match reply(&out) {
        Some(Ok(ClientResponse::Got(r))) => assert_eq!((r.replied, r.repaired), (3, 0)),
        other => panic!("expected the read with nothing repaired, got {other:?}"),
    }
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn a_waiting_read_of_replicas_in_agreement_answers_once_all_replied() {
    let mut c = Coordinator::new(ConflictPolicy::Siblings, Sabotage::default());
    let mut out = Vec::new();
    c.read(ClientId(7), targets(&["c"]), read_spec(1, true), &mut out);
    let asked = calls(&out);
    assert_eq!(asked.len(), 2, "the down replica is not waited for");
    let full = record(b"x", "a");
    let mut out = Vec::new();
    c.on_reply(
        asked[0].0,
        Ok(PeerReply::Read(Some(full.clone()))),
        &mut out,
    );
    assert!(reply(&out).is_none(), "b has not replied yet");
    c.on_reply(asked[1].0, Ok(PeerReply::Read(Some(full))), &mut out);
    match reply(&out) {
        Some(Ok(ClientResponse::Got(r))) => assert_eq!((r.replied, r.repaired), (2, 0)),
        other => panic!("expected the read, got {other:?}"),
    }
    assert!(calls(&out).is_empty());
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn the_deadline_answers_a_waiting_read_that_met_r_and_repairs_unwatched() {
    let mut c = Coordinator::new(ConflictPolicy::Siblings, Sabotage::default());
    let mut out = Vec::new();
    let op = c.read(ClientId(7), targets(&[]), read_spec(2, true), &mut out);
    let asked = calls(&out);
    let mut out = Vec::new();
    c.on_reply(
        asked[0].0,
        Ok(PeerReply::Read(Some(record(b"x", "a")))),
        &mut out,
    );
    c.on_reply(asked[1].0, Ok(PeerReply::Read(None)), &mut out);
    assert!(reply(&out).is_none());
    let mut out = Vec::new();
    c.on_deadline(op, &mut out);
    match reply(&out) {
        Some(Ok(ClientResponse::Got(r))) => assert_eq!((r.replied, r.repaired), (2, 0)),
        other => panic!("expected the read at R=2, got {other:?}"),
    }
    let repairs = calls(&out);
    assert_eq!(repairs.len(), 1, "b is still repaired, unwatched");
    assert_eq!(repairs[0].1, addr(2).unwrap());
    assert_eq!(c.in_flight(), 0);
    // A late answer to the unwatched repair finds nothing to do.
    let mut out = Vec::new();
    c.on_reply(repairs[0].0, Ok(PeerReply::Replicated), &mut out);
    assert!(out.is_empty());
}

#[test]
fn the_deadline_answers_with_what_is_known() {
    let mut c = Coordinator::new(ConflictPolicy::Lww, Sabotage::default());
    let mut out = Vec::new();
    let op = c.read(ClientId(7), targets(&[]), read_spec(2, false), &mut out);
    let mut out = Vec::new();
    c.on_deadline(op, &mut out);
    match reply(&out) {
        Some(Err(ClientError::QuorumFailed { detail, .. })) => {
            assert!(
                detail.contains("timed out") && detail.contains("a: no answer"),
                "{detail}"
            )
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(c.in_flight(), 0);
}
