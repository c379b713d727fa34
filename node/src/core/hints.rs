//! Hinted handoff: a write meant for a replica that is down is kept by a fallback node as a
//! hint naming that replica, and delivered to it when it is back.
//!
//! Hints live in their own keyspace of the store, survive restarts of either side, and are
//! removed only after the owner acknowledged them (and only if no newer hint for the same key
//! arrived meanwhile). Storage is bounded in bytes and age; what is refused or expires is
//! counted and left to anti-entropy.

use super::calls::CallError;
use crate::limits::{Limit, LOG_INTERVAL};
use crate::proto::Refusal;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;

use ringkv_ring::Ring;

use super::calls::{CallId, Calls, Owner};
use super::Effect;
use crate::config::{HintConfig, Sabotage};
use crate::proto::{
    HintsPending, InspectHint, InspectSibling, PeerReply, PeerRequest, RangeStatus,
};
use crate::store::{Hint, Store};
use crate::version::{decode_record, encode_record, Record};

/// Most owners looked at per delivery tick.
const MAX_OWNERS: usize = 1024;
/// Hints read per page when the per-token counts are rebuilt at start.
const LOAD_PAGE: usize = 1024;

/// How a refusal for want of room begins (told apart from other refusals by it).
const FULL: &str = "hint storage full";

/// A delivery awaiting the owner's acknowledgement.
struct Delivery {
    owner: String,
    token: u64,
    key: Vec<u8>,
    /// The hint's value when sent: a newer one arriving meanwhile must not be deleted.
    value: Vec<u8>,
}

/// What this mechanism sees of the node for one step.
pub type Ctx<'a> = super::View<'a>;

/// What became of hints during this process's life. Every hint is accounted for:
/// `held_at_start + stored == delivered + dropped + held now` (the store's count).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HintTally {
    /// Hints in the store when the process started.
    pub held_at_start: u64,
    /// New hints stored (a record merged into a hint already held makes no new one).
    pub stored: u64,
    /// Hints removed after their owner acknowledged them.
    pub delivered: u64,
    /// Hints removed undelivered: too old, unreadable, or their owner left the ring.
    pub dropped: u64,
    /// Hints refused and never stored (storage full, a token that does not match the key).
    pub refused: u64,
    /// Of `refused`: those refused because hint storage was at `HintConfig::max_bytes`.
    pub full: u64,
}

/// The node's hinted-handoff state.
pub struct Hints {
    config: HintConfig,
    sabotage: Sabotage,
    in_flight: HashMap<CallId, Delivery>,
    calls: Calls,
    /// Hints held per token, every owner together, for `ringctl status` per range. Kept in
    /// step with every hint stored or removed here (the only writer of the hints keyspace)
    /// and rebuilt from the store at start. Counting at status time instead would scan every
    /// hint on the core's thread at each poll (`ringctl repair` polls five times a second);
    /// this costs one entry per hinted token, and hints are bounded by `max_bytes`.
    by_token: BTreeMap<u64, u32>,
    tally: HintTally,
    /// When (ms) a full hint storage was last logged: once per `LOG_INTERVAL` at most.
    full_logged_ms: Option<u64>,
}

impl Hints {
    /// The hints `store` holds, nothing in flight yet. Reads every hint once (bounded by the
    /// hint storage limit) to count them per token.
    pub fn load(config: HintConfig, sabotage: Sabotage, store: &dyn Store) -> Self {
        let mut by_token: BTreeMap<u64, u32> = BTreeMap::new();
        let mut held = 0;
        let owners = store.hint_owners(MAX_OWNERS).unwrap_or_else(|e| {
            tracing::warn!("cannot list hints at start: {e}");
            Vec::new()
        });
        for owner in owners {
            held += owner.count;
            let mut after = None;
            loop {
                let page = match store.hint_scan(&owner.owner, after.take(), LOAD_PAGE) {
                    Ok(page) => page,
                    Err(e) => {
                        tracing::warn!("cannot count hints for {}: {e}", owner.owner);
                        break;
                    }
                };
                for h in &page {
                    *by_token.entry(h.token).or_default() += 1;
                }
                match page.last() {
                    Some(last) if page.len() == LOAD_PAGE => {
                        after = Some((last.token, last.key.clone()));
                    }
                    _ => break,
                }
            }
        }
        Self {
            config,
            sabotage,
            in_flight: HashMap::new(),
            calls: Calls::new(Owner::Hints),
            by_token,
            tally: HintTally {
                held_at_start: held,
                ..HintTally::default()
            },
            full_logged_ms: None,
        }
    }

    /// What became of hints since start.
    pub fn tally(&self) -> HintTally {
        self.tally
    }

    /// Hints held with a token in each range of `ring`, by range index.
    fn per_range(&self, ring: &Ring) -> Vec<u64> {
        let mut counts = vec![0; ring.vnode_count()];
        for (&token, &n) in &self.by_token {
            if let Some(c) = ring.range_index(token).and_then(|i| counts.get_mut(i)) {
                *c += u64::from(n);
            }
        }
        counts
    }

    /// The ranges this node replicates, each with the hints it keeps there, and in ring order
    /// among them the ranges it does not replicate but keeps hints in (a stand-in's hints are
    /// outside its own ranges by construction).
    pub fn range_status(&self, ring: &Ring, replicated: Vec<RangeStatus>) -> Vec<RangeStatus> {
        let counts = self.per_range(ring);
        let mut replicated = replicated.into_iter().peekable();
        let mut ranges = Vec::new();
        for (i, &hints_pending) in counts.iter().enumerate() {
            let Some((start, end)) = ring.range_bounds(i) else {
                continue;
            };
            match replicated.next_if(|r| (r.start, r.end) == (start, end)) {
                Some(r) => ranges.push(RangeStatus { hints_pending, ..r }),
                None if hints_pending > 0 => ranges.push(RangeStatus {
                    start,
                    end,
                    replica: false,
                    last_exchange_ms: None,
                    keys_repaired: 0,
                    hints_pending,
                }),
                None => {}
            }
        }
        ranges.extend(replicated); // none when both follow the same ring
        ranges
    }

    /// Whether this node keeps hints for a node that `deliverable` says can take them.
    pub fn holds_for(&self, store: &dyn Store, deliverable: impl Fn(&str) -> bool) -> bool {
        match store.hint_owners(MAX_OWNERS) {
            Ok(owners) => owners.iter().any(|o| deliverable(&o.owner)),
            Err(_) => true, // unknown: say so rather than claim it is all handed off
        }
    }

    fn count_in(&mut self, token: u64) {
        *self.by_token.entry(token).or_default() += 1;
    }

    fn count_out(&mut self, token: u64) {
        if let Some(n) = self.by_token.get_mut(&token) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.by_token.remove(&token);
            }
        }
    }

    /// Whether coordinators may write to fallbacks when replicas are down.
    pub fn sloppy(&self) -> bool {
        self.config.sloppy_quorum
    }

    /// The delivery interval, for the core to arm its timer.
    pub fn interval(&self) -> std::time::Duration {
        self.config.deliver_interval
    }

    /// Keep `record` for `owner`, merged with any hint already held for the key.
    pub fn keep(
        &mut self,
        store: &dyn Store,
        owner: &str,
        token: u64,
        key: &[u8],
        record: &Record,
        now_ms: u64,
    ) -> PeerReply {
        match self.try_keep(store, owner, token, key, record, now_ms) {
            Ok(new) => {
                if new {
                    self.tally.stored += 1;
                    self.count_in(token);
                }
                PeerReply::Replicated
            }
            Err(e) => {
                self.tally.refused += 1;
                if e.starts_with(FULL) {
                    self.count_full(&e, now_ms);
                }
                PeerReply::Failed(Refusal::HintNotKept {
                    owner: owner.to_string(),
                    detail: e.to_string(),
                })
            }
        }
    }

    /// Counts a hint refused for want of room, logging it at most once per interval.
    fn count_full(&mut self, why: &str, now_ms: u64) {
        self.tally.full += 1;
        let interval = LOG_INTERVAL.as_millis() as u64;
        if self
            .full_logged_ms
            .is_none_or(|at| now_ms.saturating_sub(at) >= interval)
        {
            self.full_logged_ms = Some(now_ms);
            tracing::warn!(
                limit = Limit::HintBytes.name(),
                hits_total = self.tally.full,
                "limit reached: {why}; hints refused (counted in ringkv_limit_hits_total, \
                 logged at most once per {LOG_INTERVAL:?})"
            );
        }
    }

    /// Store the hint; says whether it is a new one (none was held for the key and owner).
    fn try_keep(
        &self,
        store: &dyn Store,
        owner: &str,
        token: u64,
        key: &[u8],
        record: &Record,
        now_ms: u64,
    ) -> Result<bool, String> {
        if ringkv_ring::token(key) != token {
            return Err("token does not match the key".into());
        }
        let held = store
            .hint_get(owner, token, key)
            .map_err(|e| e.to_string())?;
        let (merged, stored_ms, old_len) = match &held {
            Some(h) => {
                let old = decode_record(&h.value).map_err(|e| e.to_string())?;
                (old.sync(record), h.stored_ms, h.value.len() as u64)
            }
            None => (record.clone(), now_ms, 0),
        };
        let value = encode_record(&merged).map_err(|e| e.to_string())?;
        let used: u64 = store
            .hint_owners(MAX_OWNERS)
            .map_err(|e| e.to_string())?
            .iter()
            .map(|o| o.bytes)
            .sum();
        let after = used
            .saturating_sub(old_len)
            .saturating_add(value.len() as u64);
        if after > self.config.max_bytes {
            return Err(format!(
                "{FULL} ({used} of {} bytes)",
                self.config.max_bytes
            ));
        }
        let hint = Hint {
            owner: owner.to_string(),
            token,
            key: key.to_vec(),
            value,
            stored_ms,
        };
        store.hint_put(&hint).map_err(|e| e.to_string())?;
        Ok(held.is_none())
    }

    /// Deliver hints to owners that are alive, drop those too old or for nodes that left.
    pub fn on_tick(&mut self, ctx: &Ctx<'_>, out: &mut Vec<Effect>) {
        let owners = match ctx.store.hint_owners(MAX_OWNERS) {
            Ok(o) => o,
            Err(e) => return tracing::warn!("cannot list hints: {e}"),
        };
        let max_age = u64::try_from(self.config.max_age.as_millis()).unwrap_or(u64::MAX);
        for owner in owners {
            let busy: HashSet<(u64, Vec<u8>)> = self
                .in_flight
                .values()
                .filter(|d| d.owner == owner.owner)
                .map(|d| (d.token, d.key.clone()))
                .collect();
            if busy.len() >= self.config.batch {
                continue;
            }
            let gone = !ctx.ring.contains(&owner.owner);
            let addr = ctx
                .addrs
                .get(&owner.owner)
                .copied()
                .filter(|_| ctx.membership.is_alive(&owner.owner));
            let hints = match ctx.store.hint_scan(&owner.owner, None, self.config.batch) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!("cannot read hints for {}: {e}", owner.owner);
                    continue;
                }
            };
            for hint in hints {
                if busy.contains(&(hint.token, hint.key.clone())) {
                    continue;
                }
                let expired = ctx.now_ms.saturating_sub(hint.stored_ms) > max_age;
                if gone || expired {
                    self.drop_hint(ctx.store, &hint);
                } else if addr.is_some() && self.sabotage.drop_hints {
                    let _ = ctx.store.hint_delete(&hint.owner, hint.token, &hint.key);
                } else if let Some(to) = addr {
                    match decode_record(&hint.value) {
                        Ok(record) => self.deliver(hint, record, to, out),
                        Err(e) => {
                            tracing::warn!("dropping an unreadable hint for {}: {e}", hint.owner);
                            self.drop_hint(ctx.store, &hint);
                        }
                    }
                }
            }
        }
    }

    fn deliver(&mut self, hint: Hint, record: Record, to: SocketAddr, out: &mut Vec<Effect>) {
        let call = self.calls.next_id();
        out.push(Effect::Call {
            call,
            to,
            req: PeerRequest::Replicate {
                token: hint.token,
                key: hint.key.clone(),
                record,
            },
        });
        self.in_flight.insert(
            call,
            Delivery {
                owner: hint.owner,
                token: hint.token,
                key: hint.key,
                value: hint.value,
            },
        );
    }

    /// The owner answered a delivery: on success the hint goes, unless a newer one replaced it.
    pub fn on_reply(
        &mut self,
        store: &dyn Store,
        call: CallId,
        reply: Result<PeerReply, CallError>,
    ) {
        let Some(d) = self.in_flight.remove(&call) else {
            return;
        };
        match reply {
            Ok(PeerReply::Replicated) => {
                let unchanged = matches!(
                    store.hint_get(&d.owner, d.token, &d.key),
                    Ok(Some(h)) if h.value == d.value
                );
                // A newer hint that replaced it stays, for the next round.
                if unchanged {
                    match store.hint_delete(&d.owner, d.token, &d.key) {
                        Ok(()) => {
                            self.tally.delivered += 1;
                            self.count_out(d.token);
                        }
                        Err(e) => tracing::warn!("cannot remove a delivered hint: {e}"),
                    }
                }
            }
            Ok(other) => tracing::debug!(owner = %d.owner, "hint not taken: {other:?}"),
            Err(e) => tracing::debug!(owner = %d.owner, "hint not delivered: {e}"),
        }
    }

    fn drop_hint(&mut self, store: &dyn Store, hint: &Hint) {
        match store.hint_delete(&hint.owner, hint.token, &hint.key) {
            Ok(()) => {
                self.tally.dropped += 1;
                self.count_out(hint.token);
            }
            Err(e) => tracing::warn!("cannot drop a hint: {e}"),
        }
    }

    /// Hints held per owner, delivered and dropped (refusals included), for `ringctl status`.
    pub fn report(&self, store: &dyn Store) -> (Vec<HintsPending>, u64, u64) {
        let pending = store
            .hint_owners(MAX_OWNERS)
            .map(|owners| {
                owners
                    .into_iter()
                    .map(|o| HintsPending {
                        owner: o.owner,
                        count: o.count,
                        bytes: o.bytes,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let t = self.tally;
        (pending, t.delivered, t.dropped + t.refused)
    }
}

/// The hints `store` holds for `key`, one per owner, for `ringctl inspect`. One lookup per
/// owner with hints, and owners are bounded by [`MAX_OWNERS`].
pub fn held_for(
    store: &dyn Store,
    token: u64,
    key: &[u8],
) -> Result<Vec<InspectHint>, super::ReplicaError> {
    let owners = store.hint_owners(MAX_OWNERS)?;
    let mut held = Vec::new();
    for owner in owners {
        let hint = store.hint_get(&owner.owner, token, key)?;
        if let Some(hint) = hint {
            let record = decode_record(&hint.value)?;
            held.push(InspectHint {
                owner: hint.owner,
                stored_ms: hint.stored_ms,
                bytes: hint.value.len() as u64,
                siblings: siblings(&record),
            });
        }
    }
    Ok(held)
}

/// Every sibling of `record`, tombstones included, as `ringctl inspect` shows them.
pub fn siblings(record: &Record) -> Vec<InspectSibling> {
    record
        .values()
        .into_iter()
        .map(|s| InspectSibling {
            data: s.value.clone(),
            ts: s.ts,
            origin: s.origin.clone(),
        })
        .collect()
}

/// Up to `count` live nodes past the preference list in ring order, to stand in for down
/// replicas (Dynamo's sloppy quorum).
pub fn fallbacks(
    ring: &Ring,
    token: u64,
    exclude: &[String],
    live: impl Fn(&str) -> bool,
    count: usize,
) -> Vec<String> {
    let mut chosen: Vec<String> = Vec::new();
    let (Some(start), n) = (ring.range_index(token), ring.vnode_count()) else {
        return chosen;
    };
    for step in 1..n {
        if chosen.len() >= count {
            break;
        }
        for name in ring.preference_list_at((start + step) % n) {
            if chosen.len() < count
                && !exclude.contains(name)
                && !chosen.contains(name)
                && live(name)
            {
                chosen.push(name.clone());
            }
        }
    }
    chosen
}

#[cfg(test)]
#[path = "hints_tests.rs"]
mod tests;
