//! Tombstone garbage collection: a delete's tombstone is removed only once every replica of
//! its range holds exactly that tombstone (or has already removed it) and the grace period
//! has passed, so a replica that was away cannot bring the deleted value back.
//!
//! Each replica decides for itself, one key at a time, by asking the others what they hold.
//! The grace period must outlast anything that could still carry the old value to a replica:
//! hints (`HintConfig::max_age`) and ownership transfers.

use super::calls::CallError;
use std::collections::{HashSet, VecDeque};

use super::calls::{CallId, Calls, Owner};
use super::Effect;
use crate::merkle::item_hash;
use crate::proto::{PeerReply, PeerRequest};
use crate::version::{decode_record, Record};

/// A tombstone to drop: (token, key, stored bytes it must still hold, its item hash).
pub type Drop = (u64, Vec<u8>, Vec<u8>, crate::merkle::Hash);

/// Keys read per scan page.
const PAGE: usize = 256;
/// Most ranges looked at in one tick.
const RANGES_PER_TICK: usize = 64;
/// Most stored keys read in one tick (10,240 a second): the pace of a short grace period.
const KEYS_PER_TICK: usize = 1024;
/// Least stored keys read in one tick (160 a second), whatever the grace period.
const MIN_KEYS_PER_TICK: usize = 16;
/// Sweeps of every stored key per grace period. Reading and decoding every key is the
/// collector's whole cost, paid with or without load, and an expired tombstone waits at most
/// one sweep, so a sweep takes an eighth of the grace period (3 h at the default 24 h), not
/// the fastest pace: a tombstone goes at most 12.5 % past its grace period.
const SWEEPS_PER_GRACE: u64 = 8;

/// What this mechanism sees of the node for one step.
pub type Ctx<'a> = super::View<'a>;

/// A tombstone whose removal waits for the other replicas' answers.
struct Check {
    token: u64,
    key: Vec<u8>,
    /// The stored bytes when checked: a key changed meanwhile is kept.
    stored: Vec<u8>,
    record: Record,
    awaiting: HashSet<CallId>,
    agreed: bool,
}

/// The node's tombstone collector.
pub struct Gc {
    grace_ms: u64,
    cursor: usize,
    /// Keys to read per tick in the current sweep (0: not yet known).
    budget: usize,
    /// Resume point inside the current range.
    after: Option<(u64, Vec<u8>)>,
    queue: VecDeque<(u64, Vec<u8>, Vec<u8>, Record)>,
    check: Option<Check>,
    calls: Calls,
    reaped: u64,
    /// Tombstones every replica agreed on: (token, key, stored bytes, item hash), for the
    /// core to drop if unchanged.
    drops: Vec<Drop>,
}

impl Gc {
    /// How often the collector takes its next step.
    pub(super) const INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

    /// A collector removing tombstones older than `grace_ms`.
    pub fn new(grace_ms: u64) -> Self {
        Self {
            grace_ms,
            cursor: 0,
            budget: 0,
            after: None,
            queue: VecDeque::new(),
            check: None,
            calls: Calls::new(Owner::Gc),
            reaped: 0,
            drops: Vec::new(),
        }
    }

    /// Tombstones ready to drop since the last call.
    pub fn take_drops(&mut self) -> Vec<Drop> {
        std::mem::take(&mut self.drops)
    }

    /// Count tombstones the core dropped.
    pub fn count_reaped(&mut self, n: u64) {
        self.reaped += n;
    }

    /// Tombstones removed since start.
    pub fn reaped(&self) -> u64 {
        self.reaped
    }

    /// The ring changed: forget the candidates, the replicas asked may not be the replicas.
    pub fn reset(&mut self) {
        self.queue.clear();
        self.check = None;
        self.after = None;
    }

    /// Check the next candidate, or find more.
    pub fn on_tick(&mut self, ctx: &Ctx<'_>, out: &mut Vec<Effect>) {
        if self.check.is_some() {
            return;
        }
        // Empty ranges cost one seek each: look at several per tick until something turns up
        // or the tick's key budget is spent.
        let n = ctx.ring.vnode_count().max(1);
        if self.budget == 0 || (self.cursor.is_multiple_of(n) && self.after.is_none()) {
            self.budget = self.keys_per_tick(ctx);
        }
        let budget = self.budget;
        let mut read = 0;
        for _ in 0..RANGES_PER_TICK {
            if !self.queue.is_empty() || read >= budget {
                break;
            }
            match self.scan(ctx) {
                Ok(n) => read += n,
                Err(e) => {
                    tracing::warn!("tombstone scan: {e}");
                    break;
                }
            }
        }
        while let Some((token, key, stored, record)) = self.queue.pop_front() {
            if self.ask(ctx, token, key, stored, record, out) {
                return;
            }
        }
    }

    /// Keys to read per tick so that a sweep of every stored key takes the grace period over
    /// [`SWEEPS_PER_GRACE`], from the store's estimate of its key count at the sweep's start
    /// (the fastest pace where it has none).
    fn keys_per_tick(&self, ctx: &Ctx<'_>) -> usize {
        let Some(keys) = ctx.store.usage().keys else {
            return KEYS_PER_TICK;
        };
        let sweep_ms = self.grace_ms / SWEEPS_PER_GRACE;
        let interval_ms = u64::try_from(Self::INTERVAL.as_millis()).unwrap_or(u64::MAX);
        let ticks = (sweep_ms / interval_ms).max(1);
        usize::try_from(keys.div_ceil(ticks))
            .unwrap_or(usize::MAX)
            .clamp(MIN_KEYS_PER_TICK, KEYS_PER_TICK)
    }

    /// The next page of this node's ranges, keeping tombstones past their grace period; says
    /// how many keys it read.
    fn scan(&mut self, ctx: &Ctx<'_>) -> Result<usize, String> {
        let n = ctx.ring.vnode_count();
        if n == 0 {
            return Ok(0);
        }
        let idx = self.cursor % n;
        let (start, end) = ctx.ring.range_bounds(idx).ok_or("no such range")?;
        let mine = ctx.ring.preference_list_at(idx).iter().any(|x| x == ctx.me);
        let page = if mine {
            ctx.store
                .scan(start, end, self.after.take(), PAGE)
                .map_err(|e| e.to_string())?
        } else {
            Vec::new()
        };
        if page.len() < PAGE {
            self.cursor = self.cursor.wrapping_add(1);
            self.after = None;
        } else {
            self.after = page.last().map(|e| (e.token, e.key.clone()));
        }
        let read = page.len();
        for e in page {
            let record = decode_record(&e.value).map_err(|err| err.to_string())?;
            if self.expired(&record, ctx.now_ms) {
                self.queue.push_back((e.token, e.key, e.value, record));
            }
        }
        Ok(read)
    }

    /// Only tombstones, the newest older than the grace period.
    fn expired(&self, record: &Record, now_ms: u64) -> bool {
        let values = record.values();
        !values.is_empty()
            && values.iter().all(|s| s.value.is_none())
            && values
                .iter()
                .map(|s| s.ts.millis)
                .max()
                .is_some_and(|newest| newest.saturating_add(self.grace_ms) <= now_ms)
    }

    /// Ask every other replica what it holds; false when one is unreachable (try later).
    fn ask(
        &mut self,
        ctx: &Ctx<'_>,
        token: u64,
        key: Vec<u8>,
        stored: Vec<u8>,
        record: Record,
        out: &mut Vec<Effect>,
    ) -> bool {
        let replicas = ctx.ring.preference_list_for(token);
        let mut targets = Vec::new();
        for name in replicas.iter().filter(|n| *n != ctx.me) {
            match ctx
                .addrs
                .get(name)
                .filter(|_| ctx.membership.is_alive(name))
            {
                Some(addr) => targets.push(*addr),
                None => return false,
            }
        }
        let mut awaiting = HashSet::new();
        for to in targets {
            let call = self.calls.next_id();
            awaiting.insert(call);
            let req = PeerRequest::Read {
                token,
                key: key.clone(),
            };
            out.push(Effect::Call { call, to, req });
        }
        let check = Check {
            token,
            key,
            stored,
            record,
            awaiting,
            agreed: true,
        };
        if check.awaiting.is_empty() {
            self.decide(check);
        } else {
            self.check = Some(check);
        }
        true
    }

    /// A replica said what it holds; once all did, remove the tombstone if they agree.
    pub fn on_reply(&mut self, call: CallId, reply: Result<PeerReply, CallError>) {
        let Some(check) = self.check.as_mut().filter(|c| c.awaiting.contains(&call)) else {
            return;
        };
        check.awaiting.remove(&call);
        let same = match reply {
            Ok(PeerReply::Read(None)) => true,
            Ok(PeerReply::Read(Some(theirs))) => theirs == check.record,
            _ => false,
        };
        check.agreed &= same;
        if check.awaiting.is_empty() {
            if let Some(check) = self.check.take() {
                self.decide(check);
            }
        }
    }

    fn decide(&mut self, check: Check) {
        if check.agreed {
            let hash = item_hash(&check.key, &check.record);
            self.drops
                .push((check.token, check.key, check.stored, hash));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ringkv_gossip::{GossipConfig, Membership, NodeId};
    use ringkv_ring::{Ring, RingConfig, RingNode};

    use super::*;
    use crate::store::{MemoryStore, Store};
    use crate::version::{encode_record, DvvSet, Sibling};

    /// Ticks of a collector with `grace_ms` until it has swept every range of a node holding
    /// `5 × KEYS_PER_TICK` live keys in 24 ranges (all its own: N=3 of 3 nodes), and the ranges.
    fn sweep(grace_ms: u64) -> (usize, usize) {
        let store = MemoryStore::new();
        let live = Sibling {
            value: Some(b"v".to_vec()),
            ts: crate::hlc::Timestamp::default(),
            origin: "a".into(),
        };
        let bytes = encode_record(&DvvSet::new(live)).unwrap();
        for i in 0..5 * KEYS_PER_TICK {
            let key = format!("k{i}");
            store
                .put(ringkv_ring::token(key.as_bytes()), key.as_bytes(), &bytes)
                .unwrap();
        }
        let me = NodeId {
            name: "a".into(),
            addr: ([127, 0, 0, 1], 7001).into(),
            zone: None,
            bump: 0,
        };
        let membership = Membership::new(me, Vec::new(), GossipConfig::default(), 1).unwrap();
        let ring = Ring::new(
            ["a", "b", "c"].map(RingNode::new),
            RingConfig::new(8, 3).unwrap(),
        );
        let addrs = BTreeMap::new();
        let ctx = Ctx {
            me: "a",
            ring: &ring,
            store: &store,
            membership: &membership,
            addrs: &addrs,
            now_ms: 1_000,
        };
        let ranges = ring.vnode_count();
        let mut gc = Gc::new(grace_ms);
        let mut out = Vec::new();
        let mut ticks = 0;
        while gc.cursor < ranges {
            gc.on_tick(&ctx, &mut out);
            ticks += 1;
            assert!(ticks <= 10 * ranges, "no sweep after {ticks} ticks");
        }
        assert!(out.is_empty(), "no tombstone, nothing to ask: {out:?}");
        (ticks, ranges)
    }

    #[test]
    fn a_short_grace_sweeps_at_the_key_budget_of_a_tick() {
        // Five budgets' worth of keys cannot be read in one tick, nor need many more than five.
        let (ticks, _) = sweep(0);
        assert!((5..=8).contains(&ticks), "a sweep took {ticks} ticks");
    }

    #[test]
    fn a_long_grace_sweeps_at_the_least_pace() {
        // A day's grace: a sweep may take three hours, so each tick reads the least budget,
        // which one page of a range (about 200 keys here) already exceeds: a range or a page
        // per tick (a short grace reads several ranges per tick).
        let (ticks, ranges) = sweep(24 * 3600 * 1000);
        assert!(ticks >= ranges, "{ticks} ticks swept {ranges} ranges");
        assert!(ticks < 2 * ranges, "{ticks} ticks for {ranges} ranges");
    }
}
