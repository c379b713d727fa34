//! Turning a node's effects into scheduled events, and events into its inputs: the part of
//! the world that plays the tokio shell.

use bytes::Bytes;
use ringkv::core::{Effect, Input, Timer};
use ringkv::proto::{PeerReply, PeerRequest};
use ringkv_gossip::{GossipOutput, MemberEvent};

use super::network::Fate;
use super::node::{AfterSync, NodeState, Process, ReplyTo};
use super::queue::Event;
use super::trace::What;
use super::world::{Answer, Mode, PendingCall, World};

impl World {
    /// Feeds `input` to `node`, then every input it made for itself.
    pub(crate) fn input(&mut self, node: usize, input: Input) {
        self.nodes[node].queue.push_back(input);
        self.drain(node);
    }

    /// Handles the inputs a node queued for itself, in order (the shell's `queue`).
    pub(crate) fn drain(&mut self, node: usize) {
        while let Some(next) = self.nodes[node].queue.pop_front() {
            match &next {
                Input::PeerRequest {
                    req: PeerRequest::Write { value, context, .. },
                    ..
                } => {
                    let what = match value {
                        Some(v) => {
                            *self.stats.leader_writes.entry(v.clone()).or_default() += 1;
                            String::from_utf8_lossy(v).into_owned()
                        }
                        None => "a delete".into(),
                    };
                    let text = format!("lead {what}, context {}", vv_text(context.as_ref()));
                    self.trace.record(self.now, Some(node), What::Replica(text));
                }
                Input::PeerReply {
                    reply: Err(_) | Ok(PeerReply::Failed(_)),
                    ..
                } => self.stats.failed_calls += 1,
                _ => {}
            }
            let now_ms = self.nodes[node].wall_ms(self.now);
            let n = &mut self.nodes[node];
            if n.state != NodeState::Running {
                n.queue.clear();
                return;
            }
            let Some(Process::Full(core)) = n.process.as_mut() else {
                n.queue.clear();
                return;
            };
            let effects = core.handle(now_ms, next);
            if let Some(watch) = self.watch.as_mut() {
                for note in watch.observe(node, &n.name, core, self.now) {
                    self.trace.record(self.now, Some(node), What::Replica(note));
                }
            }
            self.apply(node, effects);
        }
    }

    pub(crate) fn datagram_in(&mut self, node: usize, data: Bytes) {
        match self.nodes[node].process.as_mut() {
            Some(Process::Full(_)) => self.input(node, Input::Datagram(data)),
            Some(Process::Gossip(m)) => {
                let outputs = match m.handle_datagram(&data) {
                    Ok(outputs) => outputs,
                    Err(_) => m.take_pending_outputs(),
                };
                self.apply_gossip(node, outputs);
            }
            None => {}
        }
    }

    pub(crate) fn timer_in(&mut self, node: usize, timer: Timer) {
        match (self.nodes[node].process.as_mut(), timer) {
            (Some(Process::Full(_)), timer) => self.input(node, Input::Timer(timer)),
            (Some(Process::Gossip(m)), Timer::Gossip(t)) => {
                let outputs = m.handle_timer(t);
                self.apply_gossip(node, outputs);
            }
            _ => {}
        }
    }

    /// Carries out a full node's effects.
    pub(crate) fn apply(&mut self, node: usize, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Reply { id, result } => {
                    if let Some(slot) = self.nodes[node].clients.remove(&id) {
                        let answer = match result {
                            Ok(r) => Answer::Ok(r),
                            Err(e) => Answer::Refused(e),
                        };
                        self.reply_client(slot.tag, answer, Some(slot.preference));
                    }
                }
                Effect::Respond { id, reply, sync } => {
                    let Some(to) = self.nodes[node].inbound.remove(&id) else {
                        continue;
                    };
                    if let PeerReply::Written(record) = &reply {
                        let text = format!("wrote {}", record_text(record));
                        self.trace.record(self.now, Some(node), What::Replica(text));
                    }
                    if sync {
                        let item = AfterSync::Respond(to, reply);
                        self.nodes[node].pending_sync.push(item);
                        self.arm_sync(node);
                    } else {
                        self.deliver(node, to, reply);
                    }
                }
                Effect::Push { to, req, sync } => {
                    if sync {
                        self.nodes[node].pending_sync.push(AfterSync::Push(to, req));
                        self.arm_sync(node);
                    } else {
                        self.push(node, to, req);
                    }
                }
                Effect::Call { call, to, req } if to == self.nodes[node].addr => {
                    let n = &mut self.nodes[node];
                    let id = n.inbound_id(ReplyTo::Local(call));
                    let from = n.name.clone();
                    n.queue.push_back(Input::PeerRequest { id, from, req });
                }
                Effect::Call { call, to, req } => self.send_call(node, call, to, req),
                Effect::Datagram { to, data } => self.send_datagram(node, to, data),
                Effect::Schedule { after, timer } => self.arm(node, after, timer),
                Effect::Member(event) => self.observe(node, &event),
            }
        }
    }

    /// Carries out a membership-only node's outputs.
    pub(crate) fn apply_gossip(&mut self, node: usize, outputs: Vec<GossipOutput>) {
        for output in outputs {
            match output {
                GossipOutput::Send { to, data } => self.send_datagram(node, to, data),
                GossipOutput::Schedule { after, timer } => {
                    self.arm(node, after, Timer::Gossip(timer));
                }
                GossipOutput::Event(event) => self.observe(node, &event),
            }
        }
    }

    fn arm(&mut self, node: usize, after: std::time::Duration, timer: Timer) {
        let after_us = u64::try_from(after.as_micros()).unwrap_or(u64::MAX / 2);
        let inc = self.nodes[node].incarnation;
        self.queue.push(
            self.now.saturating_add(after_us),
            Event::Timer { node, inc, timer },
        );
    }

    fn arm_sync(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        if !n.sync_armed {
            n.sync_armed = true;
            let inc = n.incarnation;
            let net = &self.config.net;
            let at = self.now + self.rng.between(net.fsync_min_us, net.fsync_max_us);
            self.queue.push(at, Event::SyncDone { node, inc });
        }
    }

    /// Sends a replica's response where it belongs.
    pub(crate) fn deliver(&mut self, node: usize, to: ReplyTo, reply: PeerReply) {
        match to {
            ReplyTo::Local(call) => self.nodes[node].queue.push_back(Input::PeerReply {
                call,
                reply: Ok(reply),
            }),
            ReplyTo::Remote { key, caller } => match self.net.stream(&mut self.rng, node, caller) {
                Ok(delay) => self
                    .queue
                    .push(self.now + delay, Event::CallReply { key, reply }),
                Err(why) => {
                    let what = What::Dropped {
                        from: node,
                        kind: "reply",
                        why,
                    };
                    self.trace.record(self.now, Some(caller), what);
                }
            },
        }
    }

    /// Sends `req` to the replica at `to` with nobody waiting for the answer (the shell's
    /// pushes). A push to the node itself is handled as a call to itself whose answer is
    /// dropped.
    pub(crate) fn push(&mut self, node: usize, to: std::net::SocketAddr, req: PeerRequest) {
        let Some(&dest) = self.by_addr.get(&to) else {
            return;
        };
        self.stats.calls += 1;
        self.next_call += 1;
        let key = self.next_call;
        match self.net.stream(&mut self.rng, node, dest) {
            Ok(delay) => {
                let to_inc = self.nodes[dest].incarnation;
                let event = Event::CallArrive {
                    key,
                    to: dest,
                    to_inc,
                    from: node,
                    req,
                };
                self.queue.push(self.now + delay, event);
            }
            Err(why) => {
                let what = What::Dropped {
                    from: node,
                    kind: "push",
                    why,
                };
                self.trace.record(self.now, Some(dest), what);
            }
        }
    }

    fn send_call(
        &mut self,
        node: usize,
        call: ringkv::core::CallId,
        to: std::net::SocketAddr,
        req: PeerRequest,
    ) {
        self.stats.calls += 1;
        self.next_call += 1;
        let key = self.next_call;
        let inc = self.nodes[node].incarnation;
        self.calls.insert(
            key,
            PendingCall {
                caller: node,
                inc,
                call,
            },
        );
        let timeout = u64::try_from(self.config.net.call_timeout.as_micros()).unwrap_or(0);
        self.queue
            .push(self.now + timeout, Event::CallTimeout { key });
        let Some(&dest) = self.by_addr.get(&to) else {
            return; // nobody there: the transport times out
        };
        match self.net.stream(&mut self.rng, node, dest) {
            Ok(delay) => {
                let to_inc = self.nodes[dest].incarnation;
                self.queue.push(
                    self.now + delay,
                    Event::CallArrive {
                        key,
                        to: dest,
                        to_inc,
                        from: node,
                        req,
                    },
                );
            }
            Err(why) => {
                let what = What::Dropped {
                    from: node,
                    kind: "call",
                    why,
                };
                self.trace.record(self.now, Some(dest), what);
            }
        }
    }

    fn send_datagram(&mut self, node: usize, to: std::net::SocketAddr, data: Bytes) {
        self.stats.datagrams += 1;
        self.stats.datagram_bytes += data.len() as u64;
        let Some(&dest) = self.by_addr.get(&to) else {
            return;
        };
        match self.net.datagram(&mut self.rng, node, dest) {
            Fate::Deliver(delays) => {
                for delay in delays {
                    let event = Event::Datagram {
                        to: dest,
                        from: node,
                        data: data.clone(),
                    };
                    self.queue.push(self.now + delay, event);
                }
            }
            Fate::Lost(why) => {
                let what = What::Dropped {
                    from: node,
                    kind: "datagram",
                    why,
                };
                self.trace.record(self.now, Some(dest), what);
            }
        }
    }

    fn observe(&mut self, node: usize, event: &MemberEvent) {
        if let MemberEvent::Down(id) = event {
            self.stats.downs += 1;
            if let Some(log) = self.stats.down_log.as_mut() {
                log.push((self.now, node, id.name.clone()));
            }
        }
        // Membership-only worlds (scale mode) see a million of these: not traced.
        if self.config.mode == Mode::Full {
            let text = match event {
                MemberEvent::Up(id) => format!("up {}#{}", id.name, id.bump),
                MemberEvent::Down(id) => format!("down {}#{}", id.name, id.bump),
                MemberEvent::StatusChanged(id, s) => format!("{}#{} is {s:?}", id.name, id.bump),
                MemberEvent::Rejoined(id) => format!("rejoined as #{}", id.bump),
                other => format!("{other:?}"),
            };
            self.trace.record(self.now, Some(node), What::Member(text));
        }
    }
}

/// A version vector in a few characters: `{n0:3,n2:1}`.
pub(crate) fn vv_text(vv: Option<&ringkv::version::VersionVector>) -> String {
    let Some(vv) = vv else {
        return "none".into();
    };
    let parts: Vec<String> = vv.iter().map(|(a, c)| format!("{a}:{c}")).collect();
    format!("{{{}}}", parts.join(","))
}

/// A record's values with their dots: `v12@n0:3 del@n1:2 {n0:3,n1:2}`.
pub(crate) fn record_text(record: &ringkv::version::Record) -> String {
    let mut parts = Vec::new();
    for (actor, counter, values) in record.entries() {
        for (i, s) in values.iter().enumerate() {
            let v = s.value.as_ref().map_or_else(
                || "del".to_string(),
                |v| String::from_utf8_lossy(v).into_owned(),
            );
            parts.push(format!("{v}@{actor}:{}", counter - i as u64));
        }
    }
    parts.push(vv_text(Some(&record.join())));
    parts.join(" ")
}
