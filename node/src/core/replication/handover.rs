//! Handover between preference lists: a node closes the log of a shard its ring moved away
//! from, so that no primary of the old list gets anything from it again, and the next primary
//! of whatever list now holds those ranges gathers the keys before serving (see
//! ARCHITECTURE.md, "Handover between preference lists").

use ringkv_ring::Ring;

use super::audit::LogEvent;
use super::follower::shard_ranges;
use super::{Ctx, Replication, ShardMeta};
use crate::core::Effect;
use crate::store::{Store, StoreError};

/// A digest of the token ranges whose preference list is `shard` in `ring` (never 0, which
/// marks a log kept before ranges were recorded).
pub(super) fn ranges_digest(ring: &Ring, shard: &[String]) -> u64 {
    let mut h = blake3::Hasher::new();
    for n in shard {
        h.update(&(n.len() as u64).to_be_bytes());
        h.update(n.as_bytes());
    }
    for (start, end) in shard_ranges(ring, shard) {
        h.update(&start.to_be_bytes());
        h.update(&end.to_be_bytes());
    }
    let bytes = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes.as_bytes()[..8]);
    u64::from_be_bytes(first).max(1)
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

    /// Load `shard`'s state bound to its ranges in `ring`, closing a log kept under others.
    pub(super) fn load_bound(
        store: &dyn Store,
        ring: &Ring,
        shard: &[String],
    ) -> Result<(Self, bool), StoreError> {
        let mut meta = Self::load(store, shard)?;
        let digest = ranges_digest(ring, shard);
        let before = meta.ranges;
        let closed = meta.bind(digest);
        if meta.ranges != before {
            meta.save(store, shard)?;
        }
        Ok((meta, closed))
    }
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
        let ids: Vec<Vec<String>> = self.shards.keys().cloned().collect();
        for id in ids {
            let digest = ranges_digest(ring, &id);
            let Some(st) = self.shards.get_mut(&id) else {
                continue;
            };
            if st.meta.ranges == digest {
                continue;
            }
            if st.meta.bind(digest) {
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
                // Its keys now belong to other shards of this node: take those up at once,
                // or a write the closed log held but never committed could wait for a request.
                self.take_up_all = true;
            }
            if let Err(e) = st.meta.save(ctx.view.store, &id) {
                tracing::warn!(shard = ?id, error = %e, "cannot close a shard's log");
            }
            self.drain_abandoned(&id, out);
            let member = id.iter().any(|n| n == ctx.view.me);
            if !member || shard_ranges(ring, &id).is_empty() {
                self.shards.remove(&id);
            }
        }
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
        let before = ring(&["a", "b", "c"]);
        let shard = before.preference_list(b"p/x").to_vec();
        let (mut meta, closed) = ShardMeta::load_bound(&store, &before, &shard).unwrap();
        assert!(!closed, "nothing to close in a fresh state");
        meta.promised = 4;
        meta.log_epoch = 4;
        meta.offset = 17;
        meta.replid = "r4".into();
        meta.save(&store, &shard).unwrap();
        let (same, closed) = ShardMeta::load_bound(&store, &before, &shard).unwrap();
        assert!(!closed && same == meta, "same ranges: the log stays");

        // A fourth node takes some of the list's ranges: the log closes.
        let after = ring(&["a", "b", "c", "d"]);
        assert_ne!(
            ranges_digest(&before, &shard),
            ranges_digest(&after, &shard)
        );
        let (closed_meta, closed) = ShardMeta::load_bound(&store, &after, &shard).unwrap();
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
        // Back to the old ring: the old log does not come back, and the fence stays.
        let (back, closed) = ShardMeta::load_bound(&store, &before, &shard).unwrap();
        assert!(closed && back.offset == 0 && back.promised == 6, "{back:?}");
    }

    #[test]
    fn a_state_written_before_ranges_were_recorded_is_read_and_closed() {
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
        let probe = ShardMeta::default();
        probe.save(&store, &shard).unwrap();
        // Overwrite with the old layout under the same name.
        let name = {
            let mut h = blake3::Hasher::new();
            for n in &shard {
                h.update(&(n.len() as u64).to_be_bytes());
                h.update(n.as_bytes());
            }
            format!("repl-{}", &h.finalize().to_hex()[..32])
        };
        store
            .meta_put(&name, &postcard::to_stdvec(&old).unwrap())
            .unwrap();
        let loaded = ShardMeta::load(&store, &shard).unwrap();
        assert_eq!((loaded.promised, loaded.offset, loaded.ranges), (2, 9, 0));
        let (bound, closed) = ShardMeta::load_bound(&store, &ring, &shard).unwrap();
        assert!(closed && bound.promised == 3 && bound.offset == 0);
    }
}
