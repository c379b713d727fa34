//! The bodies of ringkv's fuzz targets, one module each (`run` takes one input and panics
//! when the code under test breaks a promise), and the pieces they share: the framing of
//! multi-message inputs, the round-trip check of postcard types, and small clusters of cores
//! driven by hand.
//!
//! libFuzzer drives these bodies through the thin binaries in `fuzz/fuzz_targets/` (built with
//! `cargo +nightly fuzz`); `cargo test` replays every committed corpus file through them
//! (`tests/corpus.rs`), so a decoder that regresses on a known input fails the ordinary tests.

pub mod gossip;
pub mod merkle;
pub mod replication;
pub mod resp;
pub mod store;
pub mod tokens;
pub mod wire;

/// A target's body: feeds it one input.
pub type Body = fn(&[u8]);

/// Every target by name (its corpus is `fuzz/corpus/NAME`), with its body.
pub const TARGETS: [(&str, Body); 7] = [
    ("wire", wire::run),
    ("gossip", gossip::run),
    ("merkle", merkle::run),
    ("replication", replication::run),
    ("resp", resp::run),
    ("tokens", tokens::run),
    ("store", store::run),
];

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use ringkv::config::CoreConfig;
use ringkv::core::{Effect, Input, NodeCore, Timer};
use ringkv::store::MemoryStore;
use ringkv_gossip::{GossipConfig, NodeId};
use serde::{de::DeserializeOwned, Serialize};

/// Splits a fuzz input into `(kind, bytes)` steps: a kind byte, a little-endian `u16` length,
/// then that many bytes (fewer when the input ends first). The seed generator writes inputs
/// the same way, so a corpus entry reads as a sequence of real messages.
pub struct Steps<'a> {
    rest: &'a [u8],
}

impl<'a> Steps<'a> {
    /// The steps of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }
}

impl<'a> Iterator for Steps<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, rest) = self.rest.split_first()?;
        let (len, rest) = match rest {
            [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
            _ => (0, &[][..]),
        };
        let (body, rest) = rest.split_at(len.min(rest.len()));
        self.rest = rest;
        Some((kind, body))
    }
}

/// Appends one step to an input being written (the inverse of [`Steps`]).
pub fn push_step(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    let len = u16::try_from(body.len()).expect("seed step over 64 KiB");
    out.push(kind);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(body);
}

/// Decodes `bytes` as a `T`; when that succeeds, checks that the value re-encodes, and that
/// the encoding decodes to a value that encodes to the same bytes (byte equality, so that
/// values holding floats compare sanely). Returns the value.
pub fn round_trip<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let value: T = postcard::from_bytes(bytes).ok()?;
    let encoded = postcard::to_stdvec(&value).expect("a decoded value must encode");
    let again: T = postcard::from_bytes(&encoded).expect("an encoding must decode");
    let twice = postcard::to_stdvec(&again).expect("a decoded value must encode");
    assert_eq!(encoded, twice, "decode-encode-decode changed the value");
    Some(value)
}

/// The first step of a `merkle` input: the range, the tree depth and both sides' items.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct MerkleSetup {
    /// The side under test opens the exchange.
    pub initiator: bool,
    /// Range start (exclusive).
    pub start: u64,
    /// Range end (inclusive).
    pub end: u64,
    /// Tree depth, taken modulo 8, plus one.
    pub depth: u8,
    /// Tiny message limits, so that messages are paged.
    pub small_limits: bool,
    /// (key byte, version byte) held by the side under test.
    pub ours: Vec<(u8, u8)>,
    /// (key byte, version byte) held by the peer.
    pub theirs: Vec<(u8, u8)>,
}

/// The item of key byte `k` at version `h` in the range `(start, end]`: keys spread over the
/// range (byte k at the (k + 1)-th of 257 equal steps), with a well-spread hash, since the
/// tree XORs item hashes and equal or zero ones would cancel out.
pub fn merkle_item(start: u64, end: u64, k: u8, h: u8) -> (u64, ringkv::merkle::Item) {
    let span = end.wrapping_sub(start);
    let step = if span == 0 {
        u64::MAX / 257
    } else {
        (span / 257).max(1)
    };
    let token = start.wrapping_add((u64::from(k) + 1).wrapping_mul(step));
    let mut x = (u64::from(k) << 8 | u64::from(h)).wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut hash = [0u8; 32];
    for chunk in hash.chunks_mut(8) {
        // splitmix64
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    (token, (vec![k], hash))
}

/// Address of node `i` of a [`cluster`].
pub fn addr(i: usize) -> SocketAddr {
    ([127, 0, 0, 1], 7001 + i as u16).into()
}

/// Name of node `i` of a [`cluster`].
pub fn name(i: usize) -> String {
    format!("n{}", i + 1)
}

fn core(i: usize, store: Arc<MemoryStore>, config: CoreConfig) -> NodeCore {
    let me = NodeId {
        name: name(i),
        addr: addr(i),
        zone: None,
        bump: 0,
    };
    let seeds = if i == 0 { Vec::new() } else { vec![addr(0)] };
    NodeCore::new(me, seeds, config, GossipConfig::default(), store, i as u64)
        .expect("a core over an empty memory store starts")
}

/// `n` cores that see each other alive: gossip datagrams delivered at once and gossip timers
/// fired in time order over three simulated seconds; every other effect is dropped. Returns
/// the cores and the simulated time reached.
pub fn cluster(n: usize, config: &CoreConfig) -> (Vec<NodeCore>, u64) {
    let mut cores: Vec<NodeCore> = (0..n)
        .map(|i| core(i, Arc::new(MemoryStore::new()), config.clone()))
        .collect();
    let mut timers: BTreeMap<(u64, u64), (usize, Timer)> = BTreeMap::new();
    let mut seq = 0;
    let mut pending: Vec<(usize, u64, Vec<Effect>)> = Vec::new();
    for (i, c) in cores.iter_mut().enumerate() {
        pending.push((i, 0, c.start()));
    }
    let mut now = 0;
    loop {
        while let Some((from, at, effects)) = pending.pop() {
            for effect in effects {
                match effect {
                    Effect::Datagram { to, data } => {
                        if let Some(to) = (0..n).find(|&j| addr(j) == to) {
                            let out = cores[to].handle(at, Input::Datagram(data));
                            pending.push((to, at, out));
                        }
                    }
                    Effect::Schedule {
                        after,
                        timer: timer @ Timer::Gossip(_),
                    } => {
                        seq += 1;
                        let due = at + after.as_millis() as u64;
                        timers.insert((due, seq), (from, timer));
                    }
                    _ => {}
                }
            }
        }
        let Some(((due, _), (i, timer))) = timers.pop_first() else {
            break;
        };
        if due > 3_000 {
            break;
        }
        now = due;
        let out = cores[i].handle(due, Input::Timer(timer));
        pending.push((i, due, out));
    }
    (cores, now)
}

/// A core's settings for the fuzzed clusters: few virtual nodes and small trees, so a cluster
/// settles in milliseconds of real time.
pub fn small_config() -> CoreConfig {
    let defaults = CoreConfig::default();
    CoreConfig {
        vnodes: 4,
        anti_entropy: ringkv::config::AeConfig {
            depth: 3,
            ..defaults.anti_entropy.clone()
        },
        ..defaults
    }
}

/// Something delivered to a core, kept so it can be fed again (see [`Sim::inputs_of`]).
#[derive(Clone, Debug)]
pub enum Delivery {
    /// A gossip datagram.
    Datagram(bytes::Bytes),
    /// A timer.
    Timer(Timer),
    /// A peer's request.
    Request(InboundId, String, ringkv::proto::PeerRequest),
    /// The answer to one of the core's calls.
    Reply(CallId, Result<ringkv::proto::PeerReply, CallError>),
    /// A client's request.
    Client(ClientId, ringkv::proto::ClientRequest),
}

impl Delivery {
    /// The core's input.
    pub fn input(self) -> Input {
        match self {
            Delivery::Datagram(data) => Input::Datagram(data),
            Delivery::Timer(timer) => Input::Timer(timer),
            Delivery::Request(id, from, req) => Input::PeerRequest { id, from, req },
            Delivery::Reply(call, reply) => Input::PeerReply { call, reply },
            Delivery::Client(id, req) => Input::Client { id, req },
        }
    }
}

/// Cores of one cluster whose every message (gossip, calls, pushes, replies) and timer is
/// carried in simulated time, in order; records what reaches each core.
pub struct Sim {
    /// The cores, `n1` first.
    pub cores: Vec<NodeCore>,
    /// Their stores.
    pub stores: Vec<Arc<MemoryStore>>,
    /// Simulated milliseconds.
    pub now: u64,
    timers: BTreeMap<(u64, u64), (usize, Timer)>,
    seq: u64,
    queue: std::collections::VecDeque<(usize, Delivery)>,
    /// (callee, inbound id) → (caller, call).
    inbound: BTreeMap<(usize, u64), (usize, CallId)>,
    next_inbound: u64,
    /// What each core was fed, with the time.
    pub log: Vec<Vec<(u64, Delivery)>>,
}

use ringkv::core::{CallError, CallId, ClientId, InboundId};

impl Sim {
    /// `n` started cores with `config`.
    pub fn new(n: usize, config: &CoreConfig) -> Self {
        let stores: Vec<Arc<MemoryStore>> = (0..n).map(|_| Arc::new(MemoryStore::new())).collect();
        let cores = (0..n)
            .map(|i| core(i, stores[i].clone(), config.clone()))
            .collect();
        let mut sim = Sim {
            cores,
            stores,
            now: 0,
            timers: BTreeMap::new(),
            seq: 0,
            queue: Default::default(),
            inbound: BTreeMap::new(),
            next_inbound: 0,
            log: vec![Vec::new(); n],
        };
        for i in 0..n {
            let out = sim.cores[i].start();
            sim.effects(i, out);
        }
        sim
    }

    fn index(&self, to: SocketAddr) -> Option<usize> {
        (0..self.cores.len()).find(|&j| addr(j) == to)
    }

    /// Carries out core `i`'s effects at the current time.
    pub fn effects(&mut self, i: usize, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Datagram { to, data } => {
                    if let Some(j) = self.index(to) {
                        self.queue.push_back((j, Delivery::Datagram(data)));
                    }
                }
                Effect::Schedule { after, timer } => {
                    self.seq += 1;
                    let due = self.now + after.as_millis() as u64;
                    self.timers.insert((due, self.seq), (i, timer));
                }
                Effect::Call { call, to, req } => {
                    if let Some(j) = self.index(to) {
                        self.next_inbound += 1;
                        let id = self.next_inbound;
                        self.inbound.insert((j, id), (i, call));
                        let d = Delivery::Request(InboundId(id), name(i), req);
                        self.queue.push_back((j, d));
                    }
                }
                Effect::Push { to, req, .. } => {
                    if let Some(j) = self.index(to) {
                        self.next_inbound += 1;
                        let d = Delivery::Request(InboundId(self.next_inbound), name(i), req);
                        self.queue.push_back((j, d));
                    }
                }
                Effect::Respond { id, reply, .. } => {
                    if let Some((caller, call)) = self.inbound.remove(&(i, id.0)) {
                        self.queue
                            .push_back((caller, Delivery::Reply(call, Ok(reply))));
                    }
                }
                _ => {}
            }
        }
    }

    /// Feeds core `i` one delivery now.
    pub fn deliver(&mut self, i: usize, d: Delivery) {
        self.log[i].push((self.now, d.clone()));
        let out = self.cores[i].handle(self.now, d.input());
        self.effects(i, out);
    }

    /// Answers one of core `i`'s calls with `reply` instead of its callee: a reply already on
    /// its way (the `pick`-th, wrapping) is replaced; else a call still unanswered gets this
    /// answer at once (and the callee's own later, a duplicate). `false` when none is open.
    pub fn forge_reply(
        &mut self,
        i: usize,
        pick: usize,
        reply: Result<ringkv::proto::PeerReply, CallError>,
    ) -> bool {
        let queued: Vec<usize> = (0..self.queue.len())
            .filter(|&q| matches!(self.queue[q], (to, Delivery::Reply(..)) if to == i))
            .collect();
        if !queued.is_empty() {
            let q = queued[pick % queued.len()];
            if let (_, Delivery::Reply(_, r)) = &mut self.queue[q] {
                *r = reply;
            }
            return true;
        }
        let open: Vec<CallId> = self
            .inbound
            .values()
            .filter(|(caller, _)| *caller == i)
            .map(|(_, call)| *call)
            .collect();
        if open.is_empty() {
            return false;
        }
        let call = open[pick % open.len()];
        self.deliver(i, Delivery::Reply(call, reply));
        true
    }

    /// Asks core `i` as a client.
    pub fn client(&mut self, i: usize, id: u64, req: ringkv::proto::ClientRequest) {
        self.queue
            .push_back((i, Delivery::Client(ClientId(id), req)));
    }

    /// Runs every delivery and timer due up to `until` (bounded: at most `max` steps).
    pub fn run_until(&mut self, until: u64, max: usize) {
        for _ in 0..max {
            if let Some((i, d)) = self.queue.pop_front() {
                self.deliver(i, d);
                continue;
            }
            let Some((&(due, seq), _)) = self.timers.first_key_value() else {
                return;
            };
            if due > until {
                self.now = until;
                return;
            }
            let (i, timer) = self.timers.remove(&(due, seq)).expect("just seen");
            self.now = due;
            self.deliver(i, Delivery::Timer(timer));
        }
    }
}

/// A three-node cluster whose keys under `p/` run in primary mode with a majority of
/// replicas, settled for five simulated seconds.
pub fn primary_cluster() -> Sim {
    use ringkv::table::{Mode, PrimaryOptions, SyncReplicas};
    let mut sim = Sim::new(3, &small_config());
    sim.run_until(2_000, 200_000);
    let mode = Mode::Primary(PrimaryOptions {
        sync: SyncReplicas::Majority,
        ..PrimaryOptions::default()
    });
    sim.client(
        0,
        1,
        ringkv::proto::ClientRequest::RangeSet {
            prefix: b"p/".to_vec(),
            mode,
        },
    );
    sim.run_until(5_000, 200_000);
    sim
}
