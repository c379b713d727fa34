//! Handover between preference lists: a node closes the log of a shard its ring moved away
//! from, so that no primary of the old list gets anything from it again, and the next primary
//! of whatever list now holds those ranges gathers the keys before serving (see
//! ARCHITECTURE.md, "Handover between preference lists").

use ringkv_ring::Ring;

use super::audit::LogEvent;
use super::follower::shard_ranges;
use super::msg::ClosedLog;
use super::{Ctx, Replication, Role, ShardMeta};
use crate::core::Effect;
use crate::store::{Store, StoreError};

/// Store metadata name of the logs this node closed.
const CLOSED_LOGS: &str = "closed-logs";
/// Most closed logs a node remembers, the oldest forgotten first (a ring change closes at
/// most the shards this node is in).
const MAX_CLOSED_LOGS: usize = 1024;

fn digest(h: blake3::Hasher) -> u64 {
    let bytes = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes.as_bytes()[..8]);
    u64::from_be_bytes(first).max(1)
}

fn hash_list(shard: &[String]) -> blake3::Hasher {
    let mut h = blake3::Hasher::new();
    for n in shard {
        h.update(&(n.len() as u64).to_be_bytes());
        h.update(n.as_bytes());
    }
    h
}

/// A digest of the token ranges whose preference list is `shard` in `ring` (never 0, which
/// marks a log kept before ranges were recorded).
pub(super) fn ranges_digest(ring: &Ring, shard: &[String]) -> u64 {
    let mut h = hash_list(shard);
    for (start, end) in shard_ranges(ring, shard) {
        h.update(&start.to_be_bytes());
        h.update(&end.to_be_bytes());
    }
    digest(h)
}

/// A digest naming the preference list `shard` in a [`ClosedLog`].
pub(super) fn list_digest(shard: &[String]) -> u64 {
    digest(hash_list(shard))
}

/// `(start, end]` on the token circle as at most two inclusive intervals.
fn linear((start, end): (u64, u64)) -> [Option<(u64, u64)>; 2] {
    if start < end {
        [Some((start + 1, end)), None]
    } else {
        [start.checked_add(1).map(|s| (s, u64::MAX)), Some((0, end))]
    }
}

pub(super) fn overlap(a: (u64, u64), b: (u64, u64)) -> bool {
    linear(a).into_iter().flatten().any(|(lo, hi)| {
        linear(b)
            .into_iter()
            .flatten()
            .any(|(l, h)| lo <= h && l <= hi)
    })
}

/// The logs of `logs` kept for some of `ranges`, cut to the ranges that meet those.
pub(super) fn closed_within(logs: &[ClosedLog], ranges: &[(u64, u64)]) -> Vec<ClosedLog> {
    logs.iter()
        .filter_map(|log| {
            let ranges: Vec<(u64, u64)> = log
                .ranges
                .iter()
                .copied()
                .filter(|r| ranges.iter().any(|s| overlap(*r, *s)))
                .collect();
            (!ranges.is_empty()).then(|| ClosedLog {
                ranges,
                ..log.clone()
            })
        })
        .collect()
}

/// The newest of `logs` kept for `token`.
pub(super) fn covering(logs: &[ClosedLog], token: u64) -> Option<&ClosedLog> {
    logs.iter().rev().find(|l| l.covers(token))
}

impl ShardMeta {
    /// Whether this node ever took part in the shard (voted, followed or logged).
    fn used(&self) -> bool {
        self.promised > 0 || self.offset > 0 || !self.replid.is_empty()
    }

    /// Bind the log to the shard's ranges `digest`: a log kept under other ranges is closed
    /// (emptied, and the promised epoch raised past every epoch this node followed). Says
    /// whether it was closed; the caller saves.
    pub(super) fn bind(&mut self, digest: u64) -> bool {
        if self.ranges == digest {
            return false;
        }
        let close = self.used();
        if close {
            self.promised += 1;
            self.log_epoch = 0;
            self.offset = 0;
            self.replid.clear();
            self.prev_replid.clear();
            self.prev_end = 0;
        }
        self.ranges = digest;
        close
    }

    /// What a log that is about to close leaves to remember: where it stood, for the ranges
    /// it was kept for (nothing for an empty log, or one whose ranges were not recorded).
    fn closing(&self, shard: &[String], kept_for: Vec<(u64, u64)>) -> Option<ClosedLog> {
        let logged = self.offset > 0 || !self.replid.is_empty();
        (logged && !kept_for.is_empty()).then(|| ClosedLog {
            list: list_digest(shard),
            log_epoch: self.log_epoch,
            offset: self.offset,
            ranges: kept_for,
        })
    }

    /// The ranges the shard's log is kept for, as last bound (empty: not recorded).
    fn load_ranges(store: &dyn Store, shard: &[String]) -> Result<Vec<(u64, u64)>, StoreError> {
        let name = Self::named("ranges", shard);
        let Some(bytes) = store.meta_get(&name)? else {
            return Ok(Vec::new());
        };
        postcard::from_bytes(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("shard ranges {name} do not decode: {e}")))
    }

    fn save_ranges(
        store: &dyn Store,
        shard: &[String],
        ranges: &[(u64, u64)],
    ) -> Result<(), StoreError> {
        let bytes = postcard::to_stdvec(ranges).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        store.meta_put(&Self::named("ranges", shard), &bytes)
    }

    /// Bind the state to the shard's ranges in `ring` and save it, closing a log kept for
    /// other ranges (remembered in `closed` first, see [`remember`]): says whether it closed.
    /// An `unsettled` log (a first lineage still gathering: it served nothing, and its store
    /// holds only part of what the replicas had) is not remembered: it would rank this node's
    /// values above the log they were really written under.
    fn rebind(
        &mut self,
        store: &dyn Store,
        ring: &Ring,
        shard: &[String],
        closed: &mut Option<Vec<ClosedLog>>,
        unsettled: bool,
    ) -> Result<bool, StoreError> {
        let digest = ranges_digest(ring, shard);
        if self.ranges == digest {
            return Ok(false);
        }
        let log = self
            .closing(shard, Self::load_ranges(store, shard)?)
            .filter(|_| !unsettled);
        let was = self.clone();
        let close = self.bind(digest);
        if let Some(log) = log.filter(|_| close) {
            if let Err(e) = remember(store, closed, log) {
                *self = was;
                return Err(e);
            }
        }
        self.save(store, shard)?;
        Self::save_ranges(store, shard, &shard_ranges(ring, shard))?;
        Ok(close)
    }

    /// Load `shard`'s state bound to its ranges in `ring`, closing a log kept under others;
    /// says whether it closed.
    pub(super) fn load_bound(
        store: &dyn Store,
        ring: &Ring,
        shard: &[String],
        closed: &mut Option<Vec<ClosedLog>>,
    ) -> Result<(Self, bool), StoreError> {
        let mut meta = Self::load(store, shard)?;
        let was_closed = meta.rebind(store, ring, shard, closed, false)?;
        Ok((meta, was_closed))
    }
}

/// The logs this node closed, newest last (`cache` is loaded from the store the first time).
pub(super) fn closed_logs<'a>(
    store: &dyn Store,
    cache: &'a mut Option<Vec<ClosedLog>>,
) -> Result<&'a [ClosedLog], StoreError> {
    if cache.is_none() {
        let logs = match store.meta_get(CLOSED_LOGS)? {
            Some(bytes) => postcard::from_bytes(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("{CLOSED_LOGS} does not decode: {e}")))?,
            None => Vec::new(),
        };
        *cache = Some(logs);
    }
    Ok(cache.as_deref().unwrap_or_default())
}

/// Remember a log that is closing, durably, before it is emptied: without the record a
/// gather could keep an uncommitted write of this node beside a committed one.
fn remember(
    store: &dyn Store,
    cache: &mut Option<Vec<ClosedLog>>,
    log: ClosedLog,
) -> Result<(), StoreError> {
    closed_logs(store, cache)?;
    let all = cache.get_or_insert_with(Vec::new);
    all.push(log);
    let excess = all.len().saturating_sub(MAX_CLOSED_LOGS);
    all.drain(..excess);
    let bytes = postcard::to_stdvec(&*all).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    store.meta_put(CLOSED_LOGS, &bytes)
}

impl Replication {
    /// [`Self::hand_over`] where no effect list is at hand: the answers go out with the next
    /// step's effects.
    pub(super) fn ring_moved(&mut self, ctx: &Ctx<'_>) {
        let mut out = Vec::new();
        self.hand_over(ctx, &mut out);
        self.pending_effects.extend(out);
    }

    /// The ring changed: close the log of every shard this node holds whose ranges moved, and
    /// drop those no longer a preference list of the ring. Clients waiting on a primary that
    /// closed its log are answered with a retryable refusal.
    pub(super) fn hand_over(&mut self, ctx: &Ctx<'_>, out: &mut Vec<Effect>) {
        if self.handed_over == Some(ctx.ring_id) || ctx.view.ring.vnode_count() == 0 {
            return;
        }
        self.handed_over = Some(ctx.ring_id);
        let ring = ctx.view.ring;
        let store = ctx.view.store;
        let leaving = ctx.view.membership.status() == ringkv_gossip::NodeStatus::Leaving;
        let mut closed_now = Vec::new();
        let ids: Vec<Vec<String>> = self.shards.keys().cloned().collect();
        for id in ids {
            let Some(st) = self.shards.get_mut(&id) else {
                continue;
            };
            let unsettled = matches!(&st.role, Role::Primary(leader) if leader.gathering());
            // Its keys now belong to other shards of this node: take those up at once, or a
            // write it held could wait for a request. So too for a log never used (a shard taken
            // up for a ring that lasted less than an election).
            let moved = st.meta.ranges != ranges_digest(ring, &id);
            if moved {
                self.take_up_all = true;
            }
            // What a log closing here was kept for (see `leaving.rs`).
            let kept_for = if moved {
                ShardMeta::load_ranges(store, &id).unwrap_or_default()
            } else {
                Vec::new()
            };
            let closed = match st
                .meta
                .rebind(store, ring, &id, &mut self.closed, unsettled)
            {
                Ok(closed) => {
                    if closed {
                        closed_now.extend(kept_for);
                    }
                    closed
                }
                Err(e) => {
                    tracing::warn!(shard = ?id, error = %e, "cannot close a shard's log");
                    false
                }
            };
            if closed {
                st.step_down("the key's range moved to another preference list");
                st.primary = None;
                st.commit = 0;
                st.heard_ms = ctx.now();
                st.relays_to = None;
                st.backlog.clear();
                self.audit.push(|| LogEvent::Reset {
                    shard: id.clone(),
                    replid: String::new(),
                    at: 0,
                });
                tracing::info!(shard = ?id, "ring changed: closed the shard's log");
            }
            self.drain_abandoned(&id, out);
            let member = id.iter().any(|n| n == ctx.view.me);
            if !member || shard_ranges(ring, &id).is_empty() {
                self.shards.remove(&id);
            }
        }
        self.owed.ring_changed(&closed_now, leaving);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use ringkv_ring::{RingConfig, RingNode};

    fn ring(names: &[&str]) -> Ring {
        Ring::new(
            names.iter().map(|s| RingNode::new(*s)),
            RingConfig::new(4, 3).unwrap(),
        )
    }

    #[test]
    fn a_log_kept_under_other_ranges_is_closed_and_fences_its_epoch() {
        let store = MemoryStore::new();
        let mut logs = None;
        let before = ring(&["a", "b", "c"]);
        let shard = before.preference_list(b"p/x").to_vec();
        let (mut meta, closed) = ShardMeta::load_bound(&store, &before, &shard, &mut logs).unwrap();
        assert!(!closed, "nothing to close in a fresh state");
        meta.promised = 4;
        meta.log_epoch = 4;
        meta.offset = 17;
        meta.replid = "r4".into();
        meta.save(&store, &shard).unwrap();
        let (same, closed) = ShardMeta::load_bound(&store, &before, &shard, &mut logs).unwrap();
        assert!(!closed && same == meta, "same ranges: the log stays");

        // A fourth node takes some of the list's ranges: the log closes.
        let after = ring(&["a", "b", "c", "d"]);
        assert_ne!(
            ranges_digest(&before, &shard),
            ranges_digest(&after, &shard)
        );
        let (closed_meta, closed) =
            ShardMeta::load_bound(&store, &after, &shard, &mut logs).unwrap();
        assert!(closed);
        assert_eq!(
            (
                closed_meta.offset,
                closed_meta.log_epoch,
                closed_meta.replid.as_str()
            ),
            (0, 0, ""),
            "emptied: the next primary gathers the keys"
        );
        assert_eq!(closed_meta.promised, 5, "epoch 4's primary is fenced");
        // Where it stood is remembered, for the ranges it was kept for, durably.
        let remembered = closed_logs(&store, &mut None).unwrap().to_vec();
        assert_eq!(
            remembered,
            vec![ClosedLog {
                list: list_digest(&shard),
                log_epoch: 4,
                offset: 17,
                ranges: shard_ranges(&before, &shard),
            }]
        );
        let token = ringkv_ring::token(b"p/x");
        assert!(covering(&remembered, token).is_some());
        assert_eq!(
            closed_within(&remembered, &shard_ranges(&after, &shard)).len(),
            1,
            "the closed log meets the list's ranges in the new ring"
        );
        // Back to the old ring: the old log does not come back, and the fence stays.
        let (back, closed) = ShardMeta::load_bound(&store, &before, &shard, &mut logs).unwrap();
        assert!(closed && back.offset == 0 && back.promised == 6, "{back:?}");
        assert_eq!(
            closed_logs(&store, &mut None).unwrap().len(),
            1,
            "an empty log leaves nothing to remember"
        );
    }

    #[test]
    fn a_gathering_primarys_log_is_closed_and_fenced_but_not_remembered() {
        let store = MemoryStore::new();
        let mut logs = None;
        let before = ring(&["a", "b", "c"]);
        let shard = before.preference_list(b"p/x").to_vec();
        let (mut meta, _) = ShardMeta::load_bound(&store, &before, &shard, &mut logs).unwrap();
        meta.promised = 2;
        meta.log_epoch = 2;
        meta.offset = 3;
        meta.replid = "r2".into();
        let after = ring(&["a", "b", "c", "d"]);
        let closed = meta
            .rebind(&store, &after, &shard, &mut logs, true)
            .unwrap();
        assert!(closed && meta.offset == 0 && meta.promised == 3, "{meta:?}");
        assert!(
            closed_logs(&store, &mut None).unwrap().is_empty(),
            "a log that never served ranks nothing"
        );
    }

    #[test]
    fn a_state_written_before_ranges_were_recorded_is_read_and_closed() {
        let mut logs = None;
        #[derive(serde::Serialize)]
        struct Old {
            promised: u64,
            log_epoch: u64,
            offset: u64,
            replid: String,
            prev_replid: String,
            prev_end: u64,
        }
        let store = MemoryStore::new();
        let ring = ring(&["a", "b", "c"]);
        let shard = ring.preference_list(b"p/x").to_vec();
        let old = Old {
            promised: 2,
            log_epoch: 2,
            offset: 9,
            replid: "r".into(),
            prev_replid: String::new(),
            prev_end: 0,
        };
        let name = ShardMeta::unbound_name(&shard);
        store
            .meta_put(&name, &postcard::to_stdvec(&old).unwrap())
            .unwrap();
        let loaded = ShardMeta::load(&store, &shard).unwrap();
        assert_eq!((loaded.promised, loaded.offset, loaded.ranges), (2, 9, 0));
        let (bound, closed) = ShardMeta::load_bound(&store, &ring, &shard, &mut logs).unwrap();
        assert!(closed && bound.promised == 3 && bound.offset == 0);
    }
}
