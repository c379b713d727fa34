//! A tiny in-memory harness: several `Membership`s, a simulated clock, a queue of due timers
//! and datagrams in flight (optionally dropped). One thread, no sleeping, fully seeded.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use ringkv_gossip::{
    GossipConfig, GossipError, GossipOutput, GossipTimer, MemberEvent, MemberInfo, MemberState,
    Membership, NodeId,
};

/// One-way delay of every datagram.
pub const LATENCY: Duration = Duration::from_millis(1);

pub struct Node {
    pub membership: Membership,
    pub running: bool,
    /// Bumped on restart so that timers of the previous run are dropped.
    generation: u32,
    seeds: Vec<SocketAddr>,
}

enum Item {
    Timer {
        node: usize,
        generation: u32,
        timer: GossipTimer,
    },
    Datagram {
        to: SocketAddr,
        data: Bytes,
    },
}

pub struct Sim {
    pub now: Duration,
    pub nodes: Vec<Node>,
    queue: BinaryHeap<Reverse<(Duration, u64)>>,
    items: BTreeMap<u64, Item>,
    next_seq: u64,
    seed: u64,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Pairs (from, to) of nodes whose datagrams are dropped.
    pub blocked: BTreeSet<(usize, usize)>,
    loss_rng: SmallRng,
    /// Every output of every node, in order: (time, node, output).
    pub trace: Vec<(Duration, usize, GossipOutput)>,
    /// Datagrams to addresses where no node runs.
    pub undeliverable: Vec<(Duration, SocketAddr)>,
    /// Datagrams a node rejected.
    pub rejected: usize,
    /// Settings of nodes added from now on.
    pub config: GossipConfig,
}

pub fn addr_of(index: usize) -> SocketAddr {
    let host = u8::try_from(index + 1).unwrap();
    SocketAddr::from(([10, 0, 0, host], 7000))
}

pub fn name_of(index: usize) -> String {
    format!("node-{index}")
}

impl Sim {
    pub fn new(seed: u64) -> Self {
        Self {
            now: Duration::ZERO,
            nodes: Vec::new(),
            queue: BinaryHeap::new(),
            items: BTreeMap::new(),
            next_seq: 0,
            seed,
            loss: 0.0,
            blocked: BTreeSet::new(),
            loss_rng: SmallRng::seed_from_u64(seed ^ 0x5eed),
            trace: Vec::new(),
            undeliverable: Vec::new(),
            rejected: 0,
            config: GossipConfig::lan(),
        }
    }

    /// A cluster of `n` nodes, all joining through node 0, started 10 ms apart.
    pub fn cluster(n: usize, seed: u64) -> Self {
        let mut sim = Self::new(seed);
        for i in 0..n {
            let seeds = if i == 0 { vec![] } else { vec![addr_of(0)] };
            let node = sim.add_node(NodeId::new(name_of(i), addr_of(i)).with_bump(1), seeds);
            sim.start(node);
            sim.run_for(Duration::from_millis(10));
        }
        sim
    }

    pub fn add_node(&mut self, id: NodeId, seeds: Vec<SocketAddr>) -> usize {
        let index = self.nodes.len();
        let membership = self.membership(index, id, seeds.clone());
        self.nodes.push(Node {
            membership,
            running: true,
            generation: 0,
            seeds,
        });
        index
    }

    fn membership(&self, index: usize, id: NodeId, seeds: Vec<SocketAddr>) -> Membership {
        let rng_seed = self.seed ^ ((index as u64) << 32) ^ id.bump;
        Membership::new(id, seeds, self.config.clone(), rng_seed).unwrap()
    }

    pub fn start(&mut self, node: usize) {
        let outputs = self.nodes[node].membership.start();
        self.apply(node, outputs);
    }

    /// Stops a node as SIGKILL would: no more inputs, no more outputs, its timers are lost.
    pub fn stop(&mut self, node: usize) {
        self.nodes[node].running = false;
    }

    /// Replaces node `node` by a fresh process with identity `id` and starts it.
    pub fn replace(&mut self, node: usize, id: NodeId) {
        let seeds = self.nodes[node].seeds.clone();
        let membership = self.membership(node, id, seeds);
        let slot = &mut self.nodes[node];
        slot.membership = membership;
        slot.running = true;
        slot.generation += 1;
        self.start(node);
    }

    /// Restarts a stopped node on the same address and name with the next bump.
    pub fn restart(&mut self, node: usize) {
        let id = self.id(node).with_bump(self.id(node).bump + 1);
        self.replace(node, id);
    }

    pub fn id(&self, node: usize) -> NodeId {
        self.nodes[node].membership.me().clone()
    }

    pub fn node(&mut self, node: usize) -> &mut Membership {
        &mut self.nodes[node].membership
    }

    pub fn members(&self, node: usize) -> Vec<MemberInfo> {
        self.nodes[node].membership.members()
    }

    /// The member entry for `name` as `node` sees it.
    pub fn member(&self, node: usize, name: &str) -> Option<MemberInfo> {
        self.members(node).into_iter().find(|m| m.id.name == name)
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].running)
            .collect()
    }

    /// Whether every running node sees every other running node alive.
    pub fn converged(&self) -> bool {
        let running = self.running();
        running.iter().all(|&i| {
            running.iter().filter(|&&j| j != i).all(|&j| {
                self.member(i, &self.id(j).name)
                    .is_some_and(|m| m.id == self.id(j) && m.state == MemberState::Alive)
            })
        })
    }

    /// Events of `node` since `since`, with their time.
    pub fn events(&self, node: usize, since: Duration) -> Vec<(Duration, MemberEvent)> {
        self.trace
            .iter()
            .filter(|(at, n, _)| *n == node && *at >= since)
            .filter_map(|(at, _, output)| match output {
                GossipOutput::Event(event) => Some((*at, event.clone())),
                _ => None,
            })
            .collect()
    }

    /// Hands `data` to `node` as if it came from the network.
    pub fn inject(&mut self, node: usize, data: &[u8]) -> Result<(), GossipError> {
        let result = self.nodes[node].membership.handle_datagram(data);
        let outputs = match result {
            Ok(outputs) => outputs,
            Err(error) => {
                let pending = self.nodes[node].membership.take_pending_outputs();
                self.apply(node, pending);
                return Err(error);
            }
        };
        self.apply(node, outputs);
        Ok(())
    }

    pub fn apply(&mut self, node: usize, outputs: Vec<GossipOutput>) {
        for output in outputs {
            match &output {
                GossipOutput::Send { to, data } => {
                    let cut = self
                        .index_of(*to)
                        .is_some_and(|t| self.blocked.contains(&(node, t)));
                    if !cut && !self.loss_rng.random_bool(self.loss) {
                        let item = Item::Datagram {
                            to: *to,
                            data: data.clone(),
                        };
                        self.push(self.now + LATENCY, item);
                    }
                }
                GossipOutput::Schedule { after, timer } => {
                    let item = Item::Timer {
                        node,
                        generation: self.nodes[node].generation,
                        timer: timer.clone(),
                    };
                    self.push(self.now + *after, item);
                }
                GossipOutput::Event(_) => {}
            }
            self.trace.push((self.now, node, output));
        }
    }

    /// Drops every datagram between `a` and `b`, both ways.
    pub fn partition(&mut self, a: usize, b: usize) {
        self.blocked.insert((a, b));
        self.blocked.insert((b, a));
    }

    fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        (0..self.nodes.len())
            .find(|&i| self.nodes[i].running && self.nodes[i].membership.me().addr == addr)
    }

    fn push(&mut self, due: Duration, item: Item) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.items.insert(seq, item);
        self.queue.push(Reverse((due, seq)));
    }

    /// Runs everything due within `span` of now, then moves the clock to its end.
    pub fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        while let Some(&Reverse((due, seq))) = self.queue.peek() {
            if due > end {
                break;
            }
            self.queue.pop();
            self.now = due;
            let Some(item) = self.items.remove(&seq) else {
                continue;
            };
            self.deliver(item);
        }
        self.now = end;
    }

    /// Runs in steps of `step` until `done` holds or `limit` passed; returns whether it held.
    pub fn run_until(
        &mut self,
        limit: Duration,
        step: Duration,
        done: impl Fn(&Sim) -> bool,
    ) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.run_for(step);
        }
        done(self)
    }

    fn deliver(&mut self, item: Item) {
        match item {
            Item::Timer {
                node,
                generation,
                timer,
            } => {
                let slot = &mut self.nodes[node];
                if slot.running && slot.generation == generation {
                    let outputs = slot.membership.handle_timer(timer);
                    self.apply(node, outputs);
                }
            }
            Item::Datagram { to, data } => match self.index_of(to) {
                Some(node) => {
                    if self.inject(node, &data).is_err() {
                        self.rejected += 1;
                    }
                }
                None => self.undeliverable.push((self.now, to)),
            },
        }
    }
}
