//! One run: build the world from a seed, warm it up, run the workload under the fault
//! schedule, heal, settle, read everything back, and check.

use std::collections::BTreeSet;
use std::time::Duration;

use ringkv::config::CoreConfig;
use ringkv::store::{Durability, Store};
use ringkv::version::ConflictPolicy;
use ringkv_gossip::GossipConfig;

use super::checker::primary::primary_table;
use super::checker::{
    hint_accounting, membership_converged, replicas_agree, replicas_caught_up, written_keys,
    Checker, RunFacts, Violation,
};
use super::config::SimConfig;
use super::faults::{Episode, Schedule, MAX_NODES, MIN_NODES};
use super::history::Outcome;
use super::node::{addr_of, NodeState};
use super::rng::{SimRng, Stream};
use super::workload::Workload;
use super::world::{Mode, Wake, World, WorldConfig};

const SEC: u64 = 1_000_000;
/// Longest the cluster may take to form before the workload starts.
const WARMUP_LIMIT: u64 = 30 * SEC;
/// How long a client waits for an answer before giving up on it.
const CLIENT_TIMEOUT: u64 = 12 * SEC;
/// Longest the run waits for operations and calls still in flight after settling.
const DRAIN_LIMIT: u64 = 20 * SEC;
/// Longest a leaving node hands off before it leaves anyway (the shell's limit on SIGTERM).
const HANDOFF_LIMIT: u64 = 10 * SEC;
/// How often a leaving node is asked whether it handed everything off.
const HANDOFF_POLL: u64 = SEC / 10;

/// What one run did and found.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// The fault schedule it ran.
    pub schedule: Schedule,
    /// Initial cluster size.
    pub nodes: usize,
    /// Conflict policy.
    pub policy: ConflictPolicy,
    /// Hash of the whole event trace: equal for equal runs.
    pub trace_hash: u64,
    /// Events handled.
    pub events: u64,
    /// Simulated time at the end, microseconds.
    pub sim_us: u64,
    /// Client operations issued (the final reads included).
    pub ops: usize,
    /// Whether no replica missed a write (so convergence was checked).
    pub clean: bool,
    /// Graceful leaves that ended at the handoff limit, before everything was handed off.
    pub handoff_timeouts: usize,
    /// Primary-mode log entries the watch saw appended or applied (0 in quorum mode).
    pub log_entries: u64,
    /// Appends a replica passed on to the next one (chain topology; 0 otherwise).
    pub relayed_appends: u64,
    /// Broken invariants, first found first.
    pub violations: Vec<Violation>,
    /// The last events (as many as the configuration's `trace_tail`).
    pub trace_tail: String,
}

impl RunReport {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// External wake-ups of the driver, packed in a `u64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    Client(usize),
    GiveUp(u64),
    Fault(usize),
    Heal,
    Leaving(usize),
}

impl Tag {
    fn pack(self) -> u64 {
        let (kind, v) = match self {
            Tag::Client(c) => (0, c as u64),
            Tag::GiveUp(op) => (1, op),
            Tag::Fault(i) => (2, i as u64),
            Tag::Heal => (3, 0),
            Tag::Leaving(n) => (4, n as u64),
        };
        kind << 56 | (v & ((1 << 56) - 1))
    }

    fn unpack(x: u64) -> Tag {
        let v = x & ((1 << 56) - 1);
        match x >> 56 {
            0 => Tag::Client(usize::try_from(v).unwrap_or(0)),
            1 => Tag::GiveUp(v),
            2 => Tag::Fault(usize::try_from(v).unwrap_or(0)),
            3 => Tag::Heal,
            _ => Tag::Leaving(usize::try_from(v).unwrap_or(0)),
        }
    }
}

/// The run's shape drawn from its seed: cluster size and policy.
pub fn shape(seed: u64, config: &SimConfig) -> (usize, ConflictPolicy) {
    let mut rng = SimRng::new(seed.rotate_left(29) ^ 0x5348_4150_4500_0000, Stream::Faults);
    let (lo, hi) = config.nodes;
    let nodes = usize::try_from(rng.between(lo as u64, hi as u64)).unwrap_or(lo);
    let nodes = nodes.clamp(MIN_NODES, MAX_NODES);
    let drawn = if rng.chance(0.75) {
        ConflictPolicy::Siblings
    } else {
        ConflictPolicy::Lww
    };
    (nodes, config.policy.unwrap_or(drawn))
}

/// The schedule a seed draws under `config`.
pub fn schedule_for(seed: u64, config: &SimConfig) -> Schedule {
    let (nodes, _) = shape(seed, config);
    let window = u64::try_from(config.workload.as_millis()).unwrap_or(u64::MAX);
    Schedule::generate(
        seed,
        config.drawn_faults(),
        config.max_faults,
        nodes,
        window,
    )
}

/// Runs `seed` under `config` with its own schedule, or the one given.
pub fn run(seed: u64, config: &SimConfig, schedule: Option<&Schedule>) -> RunReport {
    let schedule = schedule
        .cloned()
        .unwrap_or_else(|| schedule_for(seed, config));
    let mut driver = Driver::new(seed, config, schedule);
    driver.run();
    driver.report()
}

struct Driver<'a> {
    seed: u64,
    config: &'a SimConfig,
    schedule: Schedule,
    actions: Vec<(u64, usize, bool)>,
    nodes: usize,
    policy: ConflictPolicy,
    world: World,
    workload: Workload,
    checker: Checker,
    rng: SimRng,
    workload_start: u64,
    workload_end: u64,
    healed: bool,
    /// Episodes started and not ended.
    open: Vec<bool>,
    clock_jumps: Vec<i64>,
    net_faults: [u32; 3],
    disrupted: bool,
    stopped: bool,
    /// Failed calls and `Down` events before the workload began.
    baseline: (u64, u64),
    /// Nodes handing off before they leave, with when they leave anyway (µs).
    leaving: std::collections::BTreeMap<usize, u64>,
    handoff_timeouts: usize,
    /// Why the primary-mode range table could not be built.
    table_error: Option<String>,
}

impl<'a> Driver<'a> {
    fn new(seed: u64, config: &'a SimConfig, schedule: Schedule) -> Self {
        let (nodes, policy) = shape(seed, config);
        let mut core = CoreConfig {
            quorum: config.quorum,
            vnodes: config.vnodes,
            conflict_policy: policy,
            durability: config.durability,
            sabotage: config.sabotage,
            ..CoreConfig::default()
        };
        if config.primary.is_some() {
            core.replication.audit_log = true;
        }
        if let Some(tweak) = config.core_overrides {
            tweak(&mut core);
        }
        let table = config
            .primary
            .map(|sync| primary_table(sync, config.topology, &ringkv::TableLimits::of(&core)));
        let (table, table_error) = match table {
            Some(Ok(t)) => (Some(t), None),
            Some(Err(e)) => (None, Some(e.to_string())),
            None => (None, None),
        };
        let sloppy_quorum = core.hints.sloppy_quorum;
        let world = World::new(
            seed,
            WorldConfig {
                core,
                gossip: GossipConfig::lan(),
                net: config.net.clone(),
                mode: Mode::Full,
                trace_tail: config.trace_tail.max(1),
                hash_payloads: true,
                table,
            },
        );
        let has_crash = schedule
            .episodes
            .iter()
            .any(|t| matches!(t.episode, Episode::Crash(_)));
        let facts = RunFacts {
            n: config.quorum.n,
            policy,
            durable_acks: config.durability == Durability::Sync || !has_crash,
            capabilities: config.capabilities,
            sloppy_quorum,
            settled_at: None,
            primary: config.primary,
        };
        let actions = schedule.actions();
        let episodes = schedule.episodes.len();
        Self {
            seed,
            config,
            actions,
            nodes,
            policy,
            world,
            // One client more than configured: the auditor doing the final reads.
            workload: Workload::new(
                seed,
                config.clients + 1,
                config.keys,
                config.ops,
                config.quorum.n,
                u64::try_from(config.workload.as_micros()).unwrap_or(u64::MAX),
            ),
            checker: Checker::new(facts),
            rng: SimRng::new(seed ^ 0x636f_6f72_6469_6e61, Stream::Workload),
            workload_start: 0,
            workload_end: 0,
            healed: false,
            open: vec![false; episodes],
            clock_jumps: vec![0; episodes],
            net_faults: [0; 3],
            disrupted: false,
            stopped: false,
            baseline: (0, 0),
            leaving: std::collections::BTreeMap::new(),
            handoff_timeouts: 0,
            table_error,
            schedule,
        }
    }

    fn violation(&mut self, invariant: &'static str, detail: String) {
        self.checker.report(Violation {
            invariant,
            at_us: self.world.now_us(),
            detail,
        });
    }

    fn run(&mut self) {
        if let Some(e) = self.table_error.take() {
            self.violation("world", format!("no range table: {e}"));
            return;
        }
        if let Err(e) = self.form_cluster() {
            self.violation("world", e);
            return;
        }
        if !self.run_until(
            |d| membership_converged(&d.world).is_ok(),
            WARMUP_LIMIT,
            250_000,
        ) {
            let why = membership_converged(&self.world).err().unwrap_or_default();
            self.violation(
                "membership-forms",
                format!("no agreement {}s after start: {why}", WARMUP_LIMIT / SEC),
            );
            return;
        }
        self.workload_phase();
        if self.stopped {
            return;
        }
        let settle = u64::try_from(self.config.settle.as_micros()).unwrap_or(u64::MAX);
        self.run_until(|d| membership_converged(&d.world).is_ok(), settle, 500_000);
        self.run_until(
            |d| d.workload.history.pending() == 0 && d.world.calls_in_flight() == 0,
            DRAIN_LIMIT,
            100_000,
        );
        if self.checker.facts().sloppy_quorum {
            // Hints are handed off in rounds once their owners are back.
            let rounds = self.config.settle.min(Duration::from_secs(10));
            let wait = u64::try_from(rounds.as_micros()).unwrap_or(0);
            self.run_until(|_| false, wait, wait.max(1));
        }
        if self.config.capabilities.anti_entropy {
            let keys = written_keys(&self.workload.history);
            let bound = u64::try_from(self.config.convergence_bound.as_micros()).unwrap_or(0);
            self.run_until(|d| replicas_agree(&d.world, &keys), bound, SEC);
        }
        if self.config.primary.is_some() {
            let bound = u64::try_from(self.config.convergence_bound.as_micros()).unwrap_or(0);
            self.run_until(|d| replicas_caught_up(&d.world).is_ok(), bound, SEC);
        }
        let clean = self.clean();
        self.checker
            .at_settled(&self.world, &self.workload.history, clean);
        self.final_reads();
        if self.stopped {
            return;
        }
        // Let the reads' repairs land; the reads may also have shaken membership (a slow
        // node suspected): give it the settle time again before judging.
        self.run_until(|d| d.world.calls_in_flight() == 0, DRAIN_LIMIT, 100_000);
        self.run_until(|d| membership_converged(&d.world).is_ok(), settle, 500_000);
        let auditor = self.config.clients;
        let audited: Vec<usize> = self
            .workload
            .history
            .ops()
            .iter()
            .filter(|o| o.client == auditor && matches!(o.outcome, Outcome::Read { .. }))
            .map(|o| o.key)
            .collect();
        self.availability_reads();
        if self.stopped {
            return;
        }
        self.checker
            .at_end(&self.world, &self.workload.history, clean, &audited);
    }

    fn form_cluster(&mut self) -> Result<(), String> {
        for i in 0..self.nodes {
            let seeds = (0..self.nodes.min(3))
                .filter(|&s| s != i)
                .map(addr_of)
                .collect();
            self.world.add_node(seeds);
        }
        for i in 0..self.nodes {
            self.world.start(i).map_err(|e| e.to_string())?;
            let gap = self.rng.between(0, 50_000);
            let until = self.world.now_us() + gap;
            self.run_until(|_| false, gap, gap.max(1));
            self.world.advance_to(until);
        }
        Ok(())
    }

    /// Steps the world until `done` holds (checked every `every` µs) or `limit` µs passed;
    /// returns whether `done` held.
    fn run_until(&mut self, done: impl Fn(&Self) -> bool, limit: u64, every: u64) -> bool {
        let deadline = self.world.now_us().saturating_add(limit);
        let mut next_check = self.world.now_us();
        loop {
            if self.world.now_us() >= next_check {
                if done(self) {
                    return true;
                }
                next_check = self.world.now_us() + every;
            }
            if self.world.now_us() >= deadline || self.stopped {
                return false;
            }
            match self.world.next_event_at() {
                Some(t) if t <= next_check.min(deadline) => self.step(),
                _ => self.world.advance_to(next_check.min(deadline)),
            }
        }
    }

    fn step(&mut self) {
        if self.world.stats().events >= self.config.max_events {
            let budget = self.config.max_events;
            self.violation("bounded-run", format!("event budget of {budget} exhausted"));
            self.stopped = true;
            return;
        }
        let bound = u64::try_from(self.config.max_sim.as_micros()).unwrap_or(u64::MAX);
        if self.world.now_us() > bound {
            let secs = self.config.max_sim.as_secs();
            self.violation("bounded-run", format!("simulated time past {secs} s"));
            self.stopped = true;
            return;
        }
        let wake = self.world.step();
        for found in self.world.take_findings() {
            self.checker.report(found);
        }
        match wake {
            Some(Wake::External(tag)) => self.wake(Tag::unpack(tag)),
            Some(Wake::Client {
                tag,
                answer,
                preference,
            }) => {
                let now = self.world.now_us();
                if let Some(client) = self.workload.answered(tag, answer, preference, now) {
                    self.checker
                        .on_complete(&self.world, &self.workload.history, tag);
                    self.next_turn(client);
                }
            }
            Some(Wake::Nothing) | None => {}
        }
    }

    fn next_turn(&mut self, client: usize) {
        if client < self.config.clients && !self.healed {
            let at = self.world.now_us() + self.workload.think_us();
            self.world.wake_at(at, Tag::Client(client).pack());
        }
    }

    fn wake(&mut self, tag: Tag) {
        let now = self.world.now_us();
        match tag {
            Tag::Client(c) if !self.healed && now < self.workload_end => {
                let coordinators = self.coordinators();
                if let Some(op) = self.workload.issue(&mut self.world, c, &coordinators) {
                    self.world
                        .wake_at(now + CLIENT_TIMEOUT, Tag::GiveUp(op).pack());
                }
            }
            Tag::Client(_) => {}
            Tag::GiveUp(op) => {
                if let Some(client) = self.workload.give_up(op, now) {
                    self.next_turn(client);
                }
            }
            Tag::Fault(i) => {
                if let Some(&(_, episode, start)) = self.actions.get(i) {
                    if !self.healed {
                        self.apply(episode, start);
                    }
                }
            }
            Tag::Heal => self.heal_all(),
            Tag::Leaving(n) => self.check_leaving(n),
        }
    }

    /// A leaving node leaves once it handed everything off, or at the handoff limit. One that
    /// crashed meanwhile and came back is asked to leave again (its new process knows nothing
    /// of it); one that is not running at the limit does not leave.
    fn check_leaving(&mut self, n: usize) {
        let Some(&deadline) = self.leaving.get(&n) else {
            return;
        };
        let now = self.world.now_us();
        let node = &self.world.nodes()[n];
        let running = node.state == NodeState::Running;
        let (leaving, handed_off) = node
            .core()
            .map_or((false, false), |c| (c.is_leaving(), c.handed_off()));
        if running && !leaving {
            self.world.note(Some(n), "asked to leave again".into());
            self.world.begin_leave(n);
        } else if running && handed_off {
            return self.finish_leave(n, false);
        }
        if now < deadline {
            self.world
                .wake_at(now + HANDOFF_POLL, Tag::Leaving(n).pack());
        } else if running {
            self.finish_leave(n, true);
        } else {
            self.leaving.remove(&n);
            self.world
                .note(Some(n), "leave abandoned: not running at the limit".into());
        }
    }

    fn finish_leave(&mut self, n: usize, timed_out: bool) {
        self.leaving.remove(&n);
        if timed_out {
            self.handoff_timeouts += 1;
            self.world
                .note(Some(n), "handoff timed out: leaving anyway".into());
        }
        let node = &self.world.nodes()[n];
        let accounting = node.core().map(|c| hint_accounting(c, &node.store));
        // A node that says it handed everything off holds no key any more.
        let held = node.store.scan(0, 0, None, 1).map_or(0, |keys| keys.len());
        if let Some(Err(e)) = accounting {
            self.violation(super::checker::hints::NAME, format!("n{n} leaving: {e}"));
        }
        if !timed_out && held > 0 {
            let detail = format!("n{n} left saying it had handed off, yet still holds keys");
            self.violation("leave-hands-off", detail);
        }
        self.world.leave(n);
    }

    /// Nodes a client may send to: every node ever started that did not leave.
    fn coordinators(&self) -> Vec<usize> {
        (0..self.world.nodes().len())
            .filter(|&i| {
                !matches!(
                    self.world.nodes()[i].state,
                    NodeState::Left | NodeState::Idle
                )
            })
            .collect()
    }

    fn running(&self) -> Vec<usize> {
        (0..self.world.nodes().len())
            .filter(|&i| self.world.nodes()[i].state == NodeState::Running)
            .collect()
    }

    fn workload_phase(&mut self) {
        let now = self.world.now_us();
        self.workload_start = now;
        let stats = self.world.stats();
        self.baseline = (stats.failed_calls, stats.downs);
        let window = u64::try_from(self.config.workload.as_micros()).unwrap_or(u64::MAX);
        self.workload_end = now + window;
        let schedule = self.schedule.to_string();
        self.world
            .note(None, format!("workload starts; faults: {schedule}"));
        for c in 0..self.config.clients {
            let at = now + self.workload.think_us();
            self.world.wake_at(at, Tag::Client(c).pack());
        }
        for (i, &(ms, _, _)) in self.actions.iter().enumerate() {
            self.world.wake_at(now + ms * 1000, Tag::Fault(i).pack());
        }
        self.world.wake_at(self.workload_end, Tag::Heal.pack());
        self.run_until(|d| d.healed, window + SEC, SEC / 10);
        if !self.healed {
            self.heal_all();
        }
    }

    fn apply(&mut self, index: usize, start: bool) {
        let Some(timed) = self.schedule.episodes.get(index).cloned() else {
            return;
        };
        if start == self.open[index] {
            return; // ended before it started, or started twice
        }
        // Episodes without an end (join, leave) never stay open.
        self.open[index] = start && timed.end_ms.is_some();
        if !start && timed.end_ms.is_none() {
            return;
        }
        let verb = if start { "start" } else { "end" };
        self.world.note(None, format!("{verb} {timed}"));
        let exists = |n: usize, w: &World| n < w.nodes().len();
        match (&timed.episode, start) {
            (Episode::Crash(n), true) if exists(*n, &self.world) => {
                self.disrupted = true;
                self.world.crash(*n);
            }
            (Episode::Crash(n), false) if exists(*n, &self.world) => {
                if let Err(e) = self.world.restart(*n) {
                    self.violation("world", format!("restart of n{n} failed: {e}"));
                }
            }
            (Episode::Pause(n), true) if exists(*n, &self.world) => self.world.pause(*n),
            (Episode::Pause(n), false) if exists(*n, &self.world) => self.world.resume(*n),
            (Episode::Partition { a, b, one_way }, true) => {
                let id = u32::try_from(index).unwrap_or(u32::MAX);
                self.world.net.partition(id, a, b, *one_way);
            }
            (Episode::Partition { .. }, false) => {
                self.world
                    .net
                    .heal(u32::try_from(index).unwrap_or(u32::MAX));
            }
            (Episode::Clock(n, jump), start) if exists(*n, &self.world) => {
                let delta = if start {
                    *jump
                } else {
                    -self.clock_jumps[index]
                };
                self.clock_jumps[index] = if start { *jump } else { 0 };
                let offset = self.world.nodes()[*n].clock_offset_ms.saturating_add(delta);
                self.world.set_clock(*n, offset);
            }
            (Episode::Join, true) if self.running().len() < MAX_NODES => {
                self.disrupted = true;
                // Seeds as an operator would give them: members that have not left (a
                // joiner whose seeds all left could never find the cluster).
                let members: Vec<usize> = (0..self.world.nodes().len())
                    .filter(|&i| {
                        let state = self.world.nodes()[i].state;
                        state != NodeState::Left && state != NodeState::Idle
                    })
                    .filter(|i| !self.leaving.contains_key(i))
                    .take(3)
                    .collect();
                let seeds = if members.is_empty() {
                    (0..self.nodes.min(3)).map(addr_of).collect()
                } else {
                    members.into_iter().map(addr_of).collect()
                };
                let node = self.world.add_node(seeds);
                if let Err(e) = self.world.start(node) {
                    self.violation("world", format!("join of n{node} failed: {e}"));
                }
            }
            (Episode::Leave(n), true) => {
                let floor = MIN_NODES.max(self.config.quorum.n);
                let staying = self.running().len().saturating_sub(self.leaving.len());
                let fresh = !self.leaving.contains_key(n);
                if exists(*n, &self.world) && staying > floor && fresh {
                    self.disrupted = true;
                    let now = self.world.now_us();
                    self.leaving.insert(*n, now + HANDOFF_LIMIT);
                    self.world.begin_leave(*n);
                    self.world
                        .wake_at(now + HANDOFF_POLL, Tag::Leaving(*n).pack());
                }
            }
            (Episode::Loss | Episode::Dup | Episode::CallLoss, start) => {
                let slot = match timed.episode {
                    Episode::Loss => 0,
                    Episode::Dup => 1,
                    _ => 2,
                };
                let count = &mut self.net_faults[slot];
                *count = if start {
                    *count + 1
                } else {
                    count.saturating_sub(1)
                };
                let on = *count > 0;
                match slot {
                    0 => self.world.net.loss = on,
                    1 => self.world.net.dup = on,
                    _ => self.world.net.call_loss = on,
                }
            }
            _ => {}
        }
    }

    fn heal_all(&mut self) {
        if self.healed {
            return;
        }
        for index in 0..self.open.len() {
            if self.open[index] {
                self.apply(index, false);
            }
        }
        self.healed = true;
        self.world.net.heal_all();
        self.world.net.loss = false;
        self.world.net.dup = false;
        self.world.net.call_loss = false;
        for n in 0..self.world.nodes().len() {
            match self.world.nodes()[n].state {
                NodeState::Paused => self.world.resume(n),
                NodeState::Crashed => {
                    if let Err(e) = self.world.restart(n) {
                        self.violation("world", format!("restart of n{n} failed: {e}"));
                    }
                }
                _ => {}
            }
        }
        self.world.note(None, "every fault healed".into());
    }

    fn final_reads(&mut self) {
        let auditor = self.config.clients;
        let running = self.running();
        if running.is_empty() {
            return;
        }
        let n = u8::try_from(self.config.quorum.n).unwrap_or(u8::MAX);
        for key in 0..self.config.keys {
            let node = running[self.rng.index(running.len())];
            self.workload.read(&mut self.world, auditor, key, n, node);
            self.run_until(
                |d| d.workload.history.pending() == 0,
                CLIENT_TIMEOUT,
                10_000,
            );
        }
        if self.workload.history.pending() > 0 {
            self.violation("final-reads", "a final read got no answer".into());
        }
    }

    /// Availability once healed: every key with an acknowledged write is read (at the default
    /// R) through every running node, and each read must succeed at its first try. Catches a
    /// node that forwards to a primary that is not one and never learns better.
    fn availability_reads(&mut self) {
        let prober = self.config.clients;
        let keys: BTreeSet<usize> = self
            .workload
            .history
            .ops()
            .iter()
            .filter(|o| o.is_write() && matches!(o.outcome, Outcome::Written))
            .map(|o| o.key)
            .collect();
        let r = u8::try_from(self.config.quorum.r).unwrap_or(u8::MAX);
        for key in keys {
            for node in self.running() {
                let op = self.workload.read(&mut self.world, prober, key, r, node);
                self.run_until(
                    |d| d.workload.history.pending() == 0,
                    CLIENT_TIMEOUT,
                    10_000,
                );
                if self.stopped {
                    return;
                }
                match self.workload.history.get(op).map(|o| &o.outcome) {
                    Some(Outcome::Read { .. }) => {}
                    other => {
                        let detail = format!("key{key} through n{node} after healing: {other:?}");
                        self.violation("availability", detail);
                    }
                }
            }
        }
    }

    /// No replica can have missed a write: nothing crashed, joined or left, no call failed
    /// and nobody was seen down since the workload began.
    fn clean(&self) -> bool {
        let stats = self.world.stats();
        !self.disrupted && stats.failed_calls == self.baseline.0 && stats.downs == self.baseline.1
    }

    fn report(&self) -> RunReport {
        let violations = self.checker.violations().to_vec();
        let trace_tail = self.world.trace().render_tail(self.config.trace_tail);
        let stats = self.world.stats();
        RunReport {
            seed: self.seed,
            schedule: self.schedule.clone(),
            nodes: self.nodes,
            policy: self.policy,
            trace_hash: self.world.trace().hash(),
            events: stats.events,
            sim_us: self.world.now_us(),
            ops: self.workload.history.ops().len(),
            clean: self.clean(),
            handoff_timeouts: self.handoff_timeouts,
            log_entries: self.world.log_watch().map_or(0, |w| w.entries_seen),
            relayed_appends: stats.relayed_appends,
            violations,
            trace_tail,
        }
    }
}

/// A run's duration in simulated time.
pub fn sim_time(report: &RunReport) -> Duration {
    Duration::from_micros(report.sim_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        for tag in [
            Tag::Client(3),
            Tag::GiveUp(1 << 40),
            Tag::Fault(17),
            Tag::Heal,
            Tag::Leaving(4),
        ] {
            assert_eq!(Tag::unpack(tag.pack()), tag);
        }
    }
}
