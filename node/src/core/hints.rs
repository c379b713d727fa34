//! Hinted handoff: a write meant for a replica that is down is kept by a fallback node as a
//! hint naming that replica, and delivered to it when it is back.
//!
//! Hints live in their own keyspace of the store, survive restarts of either side, and are
//! removed only after the owner acknowledged them (and only if no newer hint for the same key
//! arrived meanwhile). Storage is bounded in bytes and age; what is refused or expires is
//! counted and left to anti-entropy.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use ringkv_ring::Ring;

use super::coordinator::CallId;
use super::Effect;
use crate::config::HintConfig;
use crate::proto::{HintsPending, InspectHint, InspectSibling, PeerReply, PeerRequest};
use crate::store::{Hint, Store};
use crate::version::{decode_record, encode_record, Record};

/// Call ids of hint deliveries carry this bit, so replies find their way back here.
pub const HINT_CALL_BIT: u64 = 1 << 62;
/// Most owners looked at per delivery tick.
const MAX_OWNERS: usize = 1024;

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

/// The node's hinted-handoff state.
pub struct Hints {
    config: HintConfig,
    in_flight: HashMap<CallId, Delivery>,
    next_call: u64,
    delivered: u64,
    dropped: u64,
}

impl Hints {
    /// Nothing in flight yet.
    pub fn new(config: HintConfig) -> Self {
        Self {
            config,
            in_flight: HashMap::new(),
            next_call: 0,
            delivered: 0,
            dropped: 0,
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
            Ok(()) => PeerReply::Replicated,
            Err(e) => {
                self.dropped += 1;
                PeerReply::Failed(format!("hint for {owner} not kept: {e}"))
            }
        }
    }

    fn try_keep(
        &self,
        store: &dyn Store,
        owner: &str,
        token: u64,
        key: &[u8],
        record: &Record,
        now_ms: u64,
    ) -> Result<(), String> {
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
                "hint storage full ({used} of {} bytes)",
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
        store.hint_put(&hint).map_err(|e| e.to_string())
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
        self.next_call = self.next_call.wrapping_add(1) & !(HINT_CALL_BIT | (HINT_CALL_BIT << 1));
        let call = CallId(self.next_call | HINT_CALL_BIT);
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
    pub fn on_reply(&mut self, store: &dyn Store, call: CallId, reply: Result<PeerReply, String>) {
        let Some(d) = self.in_flight.remove(&call) else {
            return;
        };
        match reply {
            Ok(PeerReply::Replicated) => {
                let unchanged = matches!(
                    store.hint_get(&d.owner, d.token, &d.key),
                    Ok(Some(h)) if h.value == d.value
                );
                if unchanged {
                    if let Err(e) = store.hint_delete(&d.owner, d.token, &d.key) {
                        tracing::warn!("cannot remove a delivered hint: {e}");
                    }
                }
                self.delivered += 1;
            }
            Ok(other) => tracing::debug!(owner = %d.owner, "hint not taken: {other:?}"),
            Err(e) => tracing::debug!(owner = %d.owner, "hint not delivered: {e}"),
        }
    }

    fn drop_hint(&mut self, store: &dyn Store, hint: &Hint) {
        match store.hint_delete(&hint.owner, hint.token, &hint.key) {
            Ok(()) => self.dropped += 1,
            Err(e) => tracing::warn!("cannot drop a hint: {e}"),
        }
    }

    /// Hints held per owner and the delivery counters, for `ringctl status`.
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
        (pending, self.delivered, self.dropped)
    }
}

/// The hints `store` holds for `key`, one per owner, for `ringctl inspect`. One lookup per
/// owner with hints, and owners are bounded by [`MAX_OWNERS`].
pub fn held_for(store: &dyn Store, token: u64, key: &[u8]) -> Result<Vec<InspectHint>, String> {
    let owners = store.hint_owners(MAX_OWNERS).map_err(|e| e.to_string())?;
    let mut held = Vec::new();
    for owner in owners {
        let hint = store
            .hint_get(&owner.owner, token, key)
            .map_err(|e| e.to_string())?;
        if let Some(hint) = hint {
            let record = decode_record(&hint.value).map_err(|e| e.to_string())?;
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
mod tests {
    use super::*;
    use crate::hlc::Timestamp;
    use crate::store::MemoryStore;
    use crate::version::{DvvSet, Sibling};

    fn record(value: Option<&[u8]>, actor: &str) -> Record {
        let sib = Sibling {
            value: value.map(<[u8]>::to_vec),
            ts: Timestamp::default(),
            origin: actor.into(),
        };
        DvvSet::update(&DvvSet::new(sib), &DvvSet::default(), actor)
    }

    fn keep(hints: &mut Hints, store: &dyn Store, owner: &str, key: &[u8], r: &Record, at: u64) {
        let token = ringkv_ring::token(key);
        let reply = hints.keep(store, owner, token, key, r, at);
        assert_eq!(reply, PeerReply::Replicated);
    }

    #[test]
    fn held_for_lists_the_key_s_hints_of_every_owner_and_no_other_key() {
        let store = MemoryStore::new();
        let mut hints = Hints::new(HintConfig::default());
        let (a, b) = (record(Some(b"a"), "n1"), record(None, "n2"));
        keep(&mut hints, &store, "n3", b"k", &a, 1_000);
        keep(&mut hints, &store, "n4", b"k", &b, 2_000);
        keep(&mut hints, &store, "n4", b"other", &a, 3_000);
        let token = ringkv_ring::token(b"k");
        let held = held_for(&store, token, b"k").unwrap();
        assert_eq!(held.len(), 2);
        assert_eq!((held[0].owner.as_str(), held[0].stored_ms), ("n3", 1_000));
        assert_eq!(held[0].siblings, siblings(&a));
        assert_eq!(held[0].siblings[0].data.as_deref(), Some(&b"a"[..]));
        let bytes = encode_record(&a).unwrap().len() as u64;
        assert_eq!(held[0].bytes, bytes);
        assert_eq!((held[1].owner.as_str(), held[1].stored_ms), ("n4", 2_000));
        assert_eq!(held[1].siblings[0].data, None, "a tombstone");
        assert!(held_for(&store, ringkv_ring::token(b"none"), b"none")
            .unwrap()
            .is_empty());
    }
}
