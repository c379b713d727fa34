//! Chain topology across several nodes' replication state machines: who the primary sends to,
//! how replicas relay, how acknowledgements come back, and how dead replicas are skipped.

use crate::core::CallError;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;

use ringkv_gossip::{GossipConfig, GossipOutput, Membership, NodeId};
use ringkv_ring::{Ring, RingConfig, RingNode};

use super::leader::{Leader, SyncState};
use super::msg::{ReplReply, ReplRequest};
use super::tests::RING_ID;
use super::{majority, Ctx, ReplConfig, Replication, Role, Shard, ShardMeta};
use crate::core::coordinator::{CallId, ClientId};
use crate::core::{Effect, InboundId, View};
use crate::proto::{ClientResponse, PeerReply, PeerRequest, Refusal};
use crate::store::MemoryStore;

fn addr(i: usize) -> SocketAddr {
    ([127, 0, 0, 1], 7101 + i as u16).into()
}

fn primary_key(k: &[u8]) -> bool {
    k.starts_with(b"p/")
}

/// A message on its way: a call (from, to, call, request) or an answer to an inbound call.
enum Msg {
    Call(usize, usize, CallId, PeerRequest),
    Answer(InboundId, PeerReply),
}

/// `n` nodes of one ring with N = `n`; those in `up` run and see each other alive (through
/// real gossip), the others never started. Node 0 is the shard's primary at epoch 1, every
/// replica follows it at offset 0.
struct Cluster {
    names: Vec<String>,
    ring: Ring,
    stores: Vec<MemoryStore>,
    members: Vec<Membership>,
    addrs: BTreeMap<String, SocketAddr>,
    repls: Vec<Replication>,
    shard: Vec<String>,
    /// Calls to these nodes fail at the transport.
    unreachable: BTreeSet<usize>,
    /// Held back answers: inbound id -> (caller, its call).
    inbound: HashMap<InboundId, (usize, CallId)>,
    next_inbound: u64,
    queue: Vec<Msg>,
    now: u64,
    /// The primary streams to each replica itself (star) instead of down the chain.
    star: bool,
}

impl Cluster {
    fn new(n: usize, up: &[usize]) -> Self {
        let all: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let ring = Ring::new(
            all.iter().map(|s| RingNode::new(s.as_str())),
            RingConfig::new(4, n).unwrap(),
        );
        // Node i is the shard's i-th replica.
        let names = ring.preference_list(b"p/x").to_vec();
        let ranges = super::handover::ranges_digest(&ring, &names);
        let addrs = names
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), addr(i)))
            .collect();
        let mut c = Self {
            members: mesh(&names, up),
            shard: names.clone(),
            names,
            ring,
            stores: (0..n).map(|_| MemoryStore::new()).collect(),
            addrs,
            repls: (0..n)
                .map(|_| Replication::new(ReplConfig::default()))
                .collect(),
            unreachable: BTreeSet::new(),
            inbound: HashMap::new(),
            next_inbound: 0,
            queue: Vec::new(),
            now: 10_000,
            star: false,
        };
        for i in 0..n {
            let meta = ShardMeta {
                promised: 1,
                log_epoch: 1,
                offset: 0,
                replid: "r1".into(),
                ranges,
                ..ShardMeta::default()
            };
            let mut st = Shard::new(meta, 1 << 20, c.now);
            st.primary = Some(c.names[0].clone());
            if i == 0 {
                let followers = c.names[1..].to_vec();
                let mut leader = Leader::new(1, followers, c.now);
                for f in leader.followers.values_mut() {
                    f.state = SyncState::Stream;
                    f.heard_ms = c.now;
                }
                leader.barrier = 0;
                st.role = Role::Primary(Box::new(leader));
            }
            c.repls[i].shards.insert(c.shard.clone(), st);
        }
        c
    }

    fn ctx(&self, i: usize) -> Ctx<'_> {
        Ctx {
            view: View {
                me: &self.names[i],
                ring: &self.ring,
                store: &self.stores[i],
                membership: &self.members[i],
                addrs: &self.addrs,
                now_ms: self.now,
            },
            primary_key: &primary_key,
            durable: true,
            ring_id: RING_ID,
            chain: !self.star,
        }
    }

    fn index_of(&self, to: SocketAddr) -> usize {
        let name = self.addrs.iter().find(|(_, a)| **a == to).unwrap().0;
        self.names.iter().position(|n| n == name).unwrap()
    }

    /// Queue node `i`'s effects; the client replies among them.
    fn take(&mut self, i: usize, out: Vec<Effect>) -> Vec<Effect> {
        let mut replies = Vec::new();
        for e in out {
            match e {
                Effect::Call { call, to, req } => {
                    let to = self.index_of(to);
                    self.queue.push(Msg::Call(i, to, call, req));
                }
                Effect::Respond { id, reply, .. } => self.queue.push(Msg::Answer(id, reply)),
                other => replies.push(other),
            }
        }
        replies
    }

    /// Deliver the oldest message; the client replies it led to.
    fn step(&mut self) -> Vec<Effect> {
        let msg = self.queue.remove(0);
        match msg {
            Msg::Call(from, to, call, req) => {
                if self.unreachable.contains(&to) {
                    return self.answer(
                        from,
                        call,
                        Err(CallError::Unreachable("connection refused".into())),
                    );
                }
                let PeerRequest::Repl(req, ring) = req else {
                    panic!("not a replication call: {req:?}");
                };
                self.next_inbound += 1;
                let inbound = InboundId(self.next_inbound);
                let mut out = Vec::new();
                let mut repl =
                    std::mem::replace(&mut self.repls[to], Replication::new(ReplConfig::default()));
                let ctx = self.ctx(to);
                let answer =
                    repl.on_request(&ctx, (&self.names[from], inbound), (req, ring), &mut out);
                self.repls[to] = repl;
                let mut replies = self.take(to, out);
                match answer {
                    Some((reply, _)) => replies.extend(self.answer(from, call, Ok(reply))),
                    None => {
                        self.inbound.insert(inbound, (from, call));
                    }
                }
                replies
            }
            Msg::Answer(id, reply) => {
                let (caller, call) = self.inbound.remove(&id).expect("an answer to a held call");
                self.answer(caller, call, Ok(reply))
            }
        }
    }

    fn answer(
        &mut self,
        i: usize,
        call: CallId,
        reply: Result<PeerReply, CallError>,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut repl =
            std::mem::replace(&mut self.repls[i], Replication::new(ReplConfig::default()));
        repl.on_reply(&self.ctx(i), call, reply, &mut out);
        self.repls[i] = repl;
        self.take(i, out)
    }

    /// Run node `i`'s replication tick.
    fn tick(&mut self, i: usize) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut repl =
            std::mem::replace(&mut self.repls[i], Replication::new(ReplConfig::default()));
        repl.on_tick(&self.ctx(i), &mut out);
        self.repls[i] = repl;
        self.take(i, out)
    }

    /// Deliver everything queued; the client replies.
    fn settle(&mut self) -> Vec<Effect> {
        let mut replies = Vec::new();
        let mut steps = 0;
        while !self.queue.is_empty() {
            replies.extend(self.step());
            steps += 1;
            assert!(steps < 1_000, "messages never stop");
        }
        replies
    }

    /// Appends queued now: (from, to, relay route).
    fn appends(&self) -> Vec<(String, String, Option<Vec<String>>)> {
        self.queue
            .iter()
            .filter_map(|m| match m {
                Msg::Call(from, to, _, PeerRequest::Repl(ReplRequest::Append { relay, .. }, _)) => {
                    Some((
                        self.names[*from].clone(),
                        self.names[*to].clone(),
                        relay.as_ref().map(|r| r.next.clone()),
                    ))
                }
                _ => None,
            })
            .collect()
    }

    /// The primary's view of replica `name`: (offset acked, following the log).
    fn follower(&self, name: &str) -> (u64, bool) {
        let Role::Primary(leader) = &self.repls[0].shards[&self.shard].role else {
            panic!("node 0 is not primary");
        };
        let f = &leader.followers[name];
        (f.acked, matches!(f.state, SyncState::Stream))
    }

    fn offset(&self, i: usize) -> u64 {
        self.repls[i].shards[&self.shard].meta.offset
    }

    /// The primary logs a write of `p/x` and waits for `need` replicas.
    fn write(&mut self, need: usize) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut repl =
            std::mem::replace(&mut self.repls[0], Replication::new(ReplConfig::default()));
        let key = b"p/x".to_vec();
        let record = super::tests::record("v");
        let token = ringkv_ring::token(&key);
        repl.logged_write(
            &self.ctx(0),
            ClientId(1),
            token,
            key,
            record,
            need,
            u64::MAX,
            &mut out,
        );
        self.repls[0] = repl;
        self.take(0, out)
    }
}

/// Memberships of `names`: those in `up` gossip until they all see each other alive.
fn mesh(names: &[String], up: &[usize]) -> Vec<Membership> {
    let mut ms: Vec<Membership> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let me = NodeId {
                name: name.clone(),
                addr: addr(i),
                zone: None,
                bump: 0,
            };
            let seeds = if i == up[0] {
                Vec::new()
            } else {
                vec![addr(up[0])]
            };
            Membership::new(me, seeds, GossipConfig::default(), i as u64).unwrap()
        })
        .collect();
    let mut timers = BTreeMap::new();
    let mut seq = 0u64;
    let mut pending: Vec<(usize, u64, Vec<GossipOutput>)> = Vec::new();
    for &i in up {
        pending.push((i, 0, ms[i].start()));
    }
    loop {
        while let Some((from, at, outputs)) = pending.pop() {
            for o in outputs {
                match o {
                    GossipOutput::Send { to, data } => {
                        let Some(j) = up.iter().copied().find(|&j| addr(j) == to) else {
                            continue;
                        };
                        if let Ok(out) = ms[j].handle_datagram(&data) {
                            pending.push((j, at, out));
                        }
                    }
                    GossipOutput::Schedule { after, timer } => {
                        seq += 1;
                        timers.insert((at + after.as_millis() as u64, seq), (from, timer));
                    }
                    GossipOutput::Event(_) => {}
                }
            }
        }
        let Some(((due, _), (i, timer))) = timers.pop_first() else {
            break;
        };
        if due > 3_000 {
            break;
        }
        let out = ms[i].handle_timer(timer);
        pending.push((i, due, out));
    }
    for &i in up {
        for &j in up {
            assert!(
                i == j || ms[i].is_alive(&names[j]),
                "{} does not see {}",
                names[i],
                names[j]
            );
        }
    }
    ms
}

#[test]
fn the_primary_sends_to_the_first_replica_which_relays_to_the_next() {
    let mut c = Cluster::new(3, &[0, 1, 2]);
    let (p, r1, r2) = (c.names[0].clone(), c.names[1].clone(), c.names[2].clone());
    c.write(0);
    assert_eq!(
        c.appends(),
        vec![(p.clone(), r1.clone(), Some(vec![r2.clone()]))],
        "one append, to the first replica, routed on to the second"
    );
    c.step(); // the flush of the primary's own store
    c.step(); // r1 applies and relays
    assert_eq!(c.appends(), vec![(r1.clone(), r2.clone(), Some(vec![]))]);
    assert_eq!(c.offset(1), 1);
    assert_eq!(c.follower(&r2), (0, true), "nothing known of r2 yet");
    c.settle();
    assert_eq!(c.offset(2), 1);
    assert_eq!(c.follower(&r1), (1, true));
    assert_eq!(c.follower(&r2), (1, true), "r2's ack came back through r1");
    let info = c.repls[0].info(&c.ctx(0));
    let via: Vec<_> = info[0]
        .replicas
        .iter()
        .map(|r| (r.name.clone(), r.via.clone()))
        .collect();
    let mut want = vec![(r1.clone(), None), (r2.clone(), Some(r1.clone()))];
    want.sort();
    assert_eq!(via, want);
    assert_eq!(info[0].relays_to.as_deref(), Some(r1.as_str()));
    let info = c.repls[1].info(&c.ctx(1));
    assert_eq!(info[0].topology, "chain");
    assert_eq!(info[0].relays_to.as_deref(), Some(r2.as_str()));
    assert_eq!(
        info[0].primary.as_deref(),
        Some(p.as_str()),
        "r2 follows the primary, not r1"
    );
    let info = c.repls[2].info(&c.ctx(2));
    assert_eq!(info[0].primary.as_deref(), Some(p.as_str()));

    // Heartbeats take the same way.
    c.now += 1_000;
    c.tick(0);
    assert_eq!(c.appends(), vec![(p, r1, Some(vec![r2]))]);
}

#[test]
fn a_majority_write_commits_once_the_downstream_ack_comes_back() {
    // Five replicas, two of them down: the majority (3) needs the primary, r1 and r2.
    let mut c = Cluster::new(5, &[0, 1, 2]);
    let (r1, r2) = (c.names[1].clone(), c.names[2].clone());
    let need = majority(5) - 1;
    let mut replies = c.write(need);
    assert_eq!(
        c.appends().iter().map(|a| a.1.clone()).collect::<Vec<_>>(),
        vec![r1.clone()],
        "down replicas are left out of the chain"
    );
    replies.extend(c.step()); // the primary's own flush
    replies.extend(c.step()); // r1 applies, relays, waits for r2
    replies.extend(c.step()); // r2 applies and answers r1
    assert!(replies.is_empty(), "only r1 confirmed so far: {replies:?}");
    assert_eq!(c.follower(&r1).0, 0, "r1's answer waits for r2's");
    replies.extend(c.settle());
    let acked: Vec<u8> = replies
        .iter()
        .filter_map(|e| match e {
            Effect::Reply {
                result: Ok(ClientResponse::Written(w)),
                ..
            } => Some(w.acked),
            _ => None,
        })
        .collect();
    assert_eq!(acked, vec![3], "committed with r2's ack relayed by r1");
    assert_eq!(c.follower(&r2), (1, true));
}

#[test]
fn a_dead_first_replica_is_skipped_by_the_primary() {
    let mut c = Cluster::new(3, &[0, 2]);
    let (p, r2) = (c.names[0].clone(), c.names[2].clone());
    c.write(0);
    assert_eq!(c.appends(), vec![(p, r2.clone(), Some(vec![]))]);
    c.settle();
    assert_eq!(c.follower(&r2), (1, true));
}

#[test]
fn a_replica_skips_an_unreachable_successor_and_the_primary_probes_it_directly() {
    let mut c = Cluster::new(4, &[0, 1, 2, 3]);
    let (p, r1, r2, r3) = (
        c.names[0].clone(),
        c.names[1].clone(),
        c.names[2].clone(),
        c.names[3].clone(),
    );
    c.unreachable.insert(2);
    c.write(0);
    c.step(); // flush
    c.step(); // r1 relays to r2...
    assert_eq!(
        c.appends(),
        vec![(r1.clone(), r2.clone(), Some(vec![r3.clone()]))]
    );
    c.step(); // ...which fails: on to r3
    assert_eq!(c.appends(), vec![(r1.clone(), r3.clone(), Some(vec![]))]);
    c.step(); // r3 applies and answers r1, which answers the primary
    c.step(); // the primary learns both
    assert_eq!(c.follower(&r1), (1, true));
    assert_eq!(c.follower(&r3), (1, true), "r3 was reached past r2");
    assert_eq!(
        c.follower(&r2),
        (0, false),
        "r2 goes back to a direct probe"
    );
    assert_eq!(c.appends(), vec![(p.clone(), r2, None)]);
    c.queue.clear(); // the transport would take its time to fail this one
                     // The next heartbeat goes down the chain without r2.
    c.now += 1_000;
    c.tick(0);
    assert_eq!(c.appends(), vec![(p, r1, Some(vec![r3]))]);
}

#[test]
fn a_replica_answers_with_what_it_has_when_its_successor_is_silent() {
    let mut c = Cluster::new(3, &[0, 1, 2]);
    let (r1, r2) = (c.names[1].clone(), c.names[2].clone());
    c.write(0);
    c.step(); // flush
    c.step(); // r1 relays to r2; r2 never answers
    let lost = c.queue.remove(0);
    assert!(matches!(lost, Msg::Call(1, 2, ..)));
    c.now += super::millis(ReplConfig::default().relay_timeout);
    c.tick(1);
    c.step(); // r1's answer, without r2's
    assert_eq!(
        c.follower(&r1),
        (1, true),
        "r1's own ack reached the primary"
    );
    assert_eq!(
        c.follower(&r2),
        (0, false),
        "r2 was not reported: probed directly"
    );
    c.settle();
    assert_eq!(c.follower(&r2), (1, true), "r2 caught up from its probe");
}

#[test]
fn a_chain_nobody_answers_is_dropped_and_its_head_probed_directly() {
    let mut c = Cluster::new(3, &[0, 1, 2]);
    let (p, r1, r2) = (c.names[0].clone(), c.names[1].clone(), c.names[2].clone());
    c.write(0);
    c.step(); // flush
    let lost = c.queue.remove(0);
    assert!(
        matches!(lost, Msg::Call(0, 1, ..)),
        "the chain append to r1"
    );
    c.now += 2 * super::millis(ReplConfig::default().relay_timeout);
    c.tick(0);
    let mut sent = c.appends();
    sent.sort();
    assert_eq!(sent, vec![(p.clone(), r1, None), (p, r2, Some(vec![]))]);
}

#[test]
fn relayed_appends_and_answers_outside_the_bounds_are_refused() {
    let mut c = Cluster::new(3, &[0, 1, 2]);
    let r1 = c.names[1].clone();
    c.write(0);
    c.step(); // flush
    let Msg::Call(_, _, call, PeerRequest::Repl(mut req, ring)) = c.queue.remove(0) else {
        panic!("the chain append");
    };
    // More downstream offsets than the shard has replicas: the answer counts as a failure.
    let flood = (0..4).map(|i| (format!("x{i}"), 1)).collect();
    let reply = ReplReply::Acked {
        offset: 1,
        downstream: flood,
    };
    c.answer(0, call, Ok(PeerReply::Repl(reply)));
    assert_eq!(c.follower(&r1), (0, false), "not counted; probed directly");

    // A route naming a node outside the shard is refused before anything is applied.
    if let ReplRequest::Append { relay: Some(r), .. } = &mut req {
        r.next = vec!["stranger".into()];
    }
    let ctx = c.ctx(1);
    let mut repl = Replication::new(ReplConfig::default());
    let answer = repl.on_request(
        &ctx,
        (&c.names[0], InboundId(9)),
        (req, ring),
        &mut Vec::new(),
    );
    assert!(
        matches!(answer, Some((PeerReply::Failed(_), _))),
        "{answer:?}"
    );
}

/// Hits of `limit` counted by node `i`'s replication.
fn hits(c: &Cluster, i: usize, limit: crate::limits::Limit) -> u64 {
    c.repls[i].limit_counts().get(limit)
}

/// Ticks and delivers until every replica holds `offset` (a bounded number of rounds).
fn catch_up(c: &mut Cluster, offset: u64) {
    for _ in 0..50 {
        c.settle();
        if (1..c.names.len()).all(|i| c.offset(i) == offset) {
            return;
        }
        c.now += 100;
        c.tick(0);
    }
    panic!(
        "replicas at {:?}, not {offset}",
        (1..c.names.len()).map(|i| c.offset(i)).collect::<Vec<_>>()
    );
}

#[test]
fn an_append_batch_cut_by_max_batch_bytes_is_counted_and_the_rest_follows() {
    use crate::limits::Limit;
    let mut c = Cluster::new(3, &[0, 1, 2]);
    c.repls[0].config.max_batch_bytes = 1;
    c.write(0);
    assert_eq!(
        hits(&c, 0, Limit::ReplBatchBytes),
        0,
        "one entry fits any bound"
    );
    // Two more while the first is in flight: the next batch holds one of them.
    c.write(0);
    c.write(0);
    catch_up(&mut c, 3);
    assert!(hits(&c, 0, Limit::ReplBatchBytes) >= 1);
}

#[test]
fn a_replica_behind_the_backlog_resyncs_from_a_snapshot_and_is_counted() {
    use crate::limits::Limit;
    let mut c = Cluster::new(3, &[0, 1, 2]);
    // A backlog that keeps only the newest entry.
    let shard = c.shard.clone();
    c.repls[0].shards.get_mut(&shard).unwrap().backlog = super::log::Backlog::new(1);
    c.write(0);
    c.write(0);
    c.write(0);
    assert_eq!(hits(&c, 0, Limit::ReplBacklog), 0);
    // The replicas acknowledge offset 1; offset 2 has left the backlog.
    catch_up(&mut c, 3);
    assert!(hits(&c, 0, Limit::ReplBacklog) >= 1);
}

#[test]
fn writes_and_session_reads_past_max_waiting_are_refused_and_counted() {
    use crate::limits::Limit;
    use crate::proto::{ClientError, Session};
    let mut c = Cluster::new(3, &[0, 1, 2]);
    c.repls[0].config.max_waiting = 1;
    c.write(2);
    let mut repl = std::mem::replace(&mut c.repls[0], Replication::new(ReplConfig::default()));
    let admitted = repl.admit_write(&c.ctx(0), b"p/x", 2);
    c.repls[0] = repl;
    assert!(
        matches!(admitted, Err(ClientError::Overloaded { in_flight: 1 })),
        "{admitted:?}"
    );
    assert_eq!(hits(&c, 0, Limit::ReplWaiting), 1);

    c.repls[1].config.max_waiting = 1;
    let ahead = Session {
        replid: "r1".into(),
        offset: 99,
    };
    let mut outs = Vec::new();
    for client in [7, 8] {
        let mut out = Vec::new();
        let mut repl = std::mem::replace(&mut c.repls[1], Replication::new(ReplConfig::default()));
        let ctx = c.ctx(1);
        repl.session_read(
            &ctx,
            ClientId(client),
            b"p/x".to_vec(),
            ahead.clone(),
            u64::MAX,
            &mut out,
        );
        c.repls[1] = repl;
        outs.push(out);
    }
    assert!(outs[0].is_empty(), "the first read waits: {:?}", outs[0]);
    assert!(
        matches!(
            outs[1].as_slice(),
            [Effect::Reply {
                result: Err(ClientError::Overloaded { in_flight: 1 }),
                ..
            }]
        ),
        "{:?}",
        outs[1]
    );
    assert_eq!(hits(&c, 1, Limit::ReplWaiting), 1);
}

#[test]
fn a_gathering_primary_counts_replicas_whose_acks_come_down_the_chain() {
    let mut c = Cluster::new(3, &[0, 1, 2]);
    let shard = c.shard.clone();
    let Role::Primary(leader) = &mut c.repls[0].shards.get_mut(&shard).unwrap().role else {
        panic!("node 0 is not primary");
    };
    // A first lineage that has not heard from either replica yet.
    leader.first = true;
    assert!(leader.gathering());
    c.now += 1_000;
    c.tick(0);
    c.settle();
    let Role::Primary(leader) = &c.repls[0].shards[&shard].role else {
        panic!("node 0 is not primary");
    };
    let ready: Vec<_> = leader.ready.iter().cloned().collect();
    assert_eq!(ready, vec![c.names[1].clone(), c.names[2].clone()]);
    assert!(
        !leader.gathering(),
        "the last replica answered only through the chain, and still counts"
    );
}

#[test]
fn a_refused_append_goes_again_a_beat_later_not_at_once() {
    // Replicas whose ring differs from the primary's (one side still holds a member that left
    // while cut off, the other never heard of it) refuse every call at once: answering each
    // refusal with a new call at once spins without end.
    let mut c = Cluster::new(3, &[0, 1, 2]);
    c.star = true;
    let beat = u64::try_from(ReplConfig::default().beat_interval.as_millis()).unwrap();
    c.now += beat;
    c.tick(0);
    assert_eq!(c.appends().len(), 2, "a heartbeat to each replica");
    for _ in 0..2 {
        let calls: Vec<CallId> = std::mem::take(&mut c.queue)
            .into_iter()
            .filter_map(|m| match m {
                Msg::Call(_, _, call, _) => Some(call),
                Msg::Answer(..) => None,
            })
            .collect();
        for call in calls {
            c.answer(0, call, Ok(PeerReply::Failed(Refusal::RingDiffers)));
        }
        assert!(
            c.appends().is_empty(),
            "refused: nothing sent again at once"
        );
        c.now += beat / 2;
        c.tick(0);
        assert!(c.appends().is_empty(), "nor within the beat");
        c.now += beat / 2;
        c.tick(0);
        assert_eq!(c.appends().len(), 2, "a probe to each replica a beat later");
        assert_eq!(
            c.follower(&c.names[1].clone()),
            (0, false),
            "probing, not streaming"
        );
    }
    // Once the replicas answer, the primary streams again.
    c.settle();
    assert_eq!(c.follower(&c.names[1].clone()), (0, true));
    assert_eq!(c.follower(&c.names[2].clone()), (0, true));
}
