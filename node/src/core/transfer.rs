//! Ownership transfer: data this node holds for ranges it no longer replicates (a node
//! joined and took them over, or this node is leaving) goes to the range's current
//! replicas, page by page, and is dropped here only after every one of them confirmed it.
//!
//! Stateless across ring changes: each pass looks at the store and the current ring, so a
//! ring that changes again mid-transfer just redirects what is left.

use super::calls::CallError;
use std::collections::HashSet;
use std::net::SocketAddr;

use ringkv_ring::Ring;

use super::calls::{CallId, Calls, Owner};
use super::Effect;
use crate::limits::{Limit, LimitCounts};
use crate::proto::{PeerReply, PeerRequest};
use crate::version::decode_record;

/// Keys per page.
const PAGE: usize = 256;
/// Record bytes per page (a frame must stay well under the transport's limit).
const PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Ranges looked at per tick when nothing is moving.
const RANGES_PER_TICK: usize = 64;

/// What this mechanism sees of the node for one step.
pub type Ctx<'a> = super::View<'a>;

/// One page on its way to a range's replicas.
struct Page {
    range: usize,
    /// (token, key, stored bytes as sent): a key changed meanwhile is kept.
    entries: Vec<(u64, Vec<u8>, Vec<u8>)>,
    awaiting: HashSet<CallId>,
    failed: bool,
}

/// What one look at a range found.
enum Range {
    /// A page is on its way.
    Sent,
    /// Nothing here to move.
    Clean,
    /// Data to move, but not every replica of the range can be reached now.
    Waiting,
}

/// The node's ownership-transfer state.
pub struct Transfer {
    cursor: usize,
    page: Option<Page>,
    calls: Calls,
    /// Ranges in a row found with nothing to move; a whole ring's worth means done. A range
    /// with data whose replicas cannot all be reached is not clean: a leaving node that
    /// counted it so would leave with the data.
    clean: usize,
    moved: u64,
    /// Keys every replica confirmed, for the core to drop if unchanged.
    drops: Vec<(u64, Vec<u8>, Vec<u8>)>,
    /// Pages cut at [`PAGE`] keys or [`PAGE_BYTES`].
    limit_counts: LimitCounts,
}

impl Default for Transfer {
    fn default() -> Self {
        Self {
            cursor: 0,
            page: None,
            calls: Calls::new(Owner::Transfer),
            clean: 0,
            moved: 0,
            drops: Vec::new(),
            limit_counts: LimitCounts::default(),
        }
    }
}

impl Transfer {
    /// How often transfer looks for data to move.
    pub(super) const INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

    /// The ring changed: look at every range again.
    pub fn reset(&mut self) {
        self.clean = 0;
    }

    /// Whether the last full pass over the ring found nothing to move.
    pub fn is_idle(&self, ring: &Ring) -> bool {
        self.page.is_none() && self.clean >= ring.vnode_count()
    }

    /// Keys confirmed by every new replica: (token, key, bytes as sent). The core drops each
    /// one still holding those bytes (a write that landed meanwhile stays for the next pass).
    pub fn take_drops(&mut self) -> Vec<(u64, Vec<u8>, Vec<u8>)> {
        std::mem::take(&mut self.drops)
    }

    /// Count keys the core dropped.
    pub fn count_moved(&mut self, n: u64) {
        self.moved += n;
    }

    /// Keys handed to their new owners since start.
    pub fn moved(&self) -> u64 {
        self.moved
    }

    /// Pages cut short by the page bounds.
    pub fn limit_counts(&self) -> &LimitCounts {
        &self.limit_counts
    }

    /// Look for data outside this node's ranges and send the next page of it.
    pub fn on_tick(&mut self, ctx: &Ctx<'_>, out: &mut Vec<Effect>) {
        let n = ctx.ring.vnode_count();
        if self.page.is_some() || n == 0 {
            return;
        }
        for _ in 0..RANGES_PER_TICK.min(n) {
            let idx = self.cursor % n;
            match self.try_range(ctx, idx, out) {
                Ok(Range::Sent) => return,
                Ok(Range::Clean) => self.clean = self.clean.saturating_add(1),
                Ok(Range::Waiting) => self.clean = 0,
                Err(e) => {
                    tracing::warn!("ownership transfer of range {idx}: {e}");
                    self.clean = 0;
                }
            }
            self.cursor = self.cursor.wrapping_add(1);
        }
    }

    /// Send range `idx`'s next page if this node holds data there it does not replicate.
    fn try_range(
        &mut self,
        ctx: &Ctx<'_>,
        idx: usize,
        out: &mut Vec<Effect>,
    ) -> Result<Range, String> {
        let owners = ctx.ring.preference_list_at(idx);
        if owners.iter().any(|o| o == ctx.me) {
            return Ok(Range::Clean);
        }
        let Some((start, end)) = ctx.ring.range_bounds(idx) else {
            return Ok(Range::Clean);
        };
        let entries = ctx
            .store
            .scan(start, end, None, PAGE)
            .map_err(|e| e.to_string())?;
        if entries.is_empty() {
            return Ok(Range::Clean);
        }
        // Every current replica must be there to confirm, or the data stays here for now.
        let targets: Option<Vec<SocketAddr>> = owners
            .iter()
            .map(|o| {
                ctx.addrs
                    .get(o)
                    .copied()
                    .filter(|_| ctx.membership.is_alive(o))
            })
            .collect();
        let Some(targets) = targets.filter(|t| !t.is_empty()) else {
            return Ok(Range::Waiting);
        };
        let mut records = Vec::new();
        let mut sent = Vec::new();
        let mut bytes = 0;
        // A page at either bound leaves the rest of the range to the next pages.
        let mut cut = entries.len() >= PAGE;
        for e in entries {
            if bytes > 0 && bytes + e.value.len() > PAGE_BYTES {
                cut = true;
                break;
            }
            bytes += e.value.len();
            let record = decode_record(&e.value).map_err(|err| err.to_string())?;
            records.push((e.token, e.key.clone(), record));
            sent.push((e.token, e.key, e.value));
        }
        if cut {
            self.limit_counts.hit(
                Limit::TransferPage,
                ctx.now_ms,
                format_args!(
                    "an ownership-transfer page of range {idx} holds {} keys, the most of {PAGE} \
                     keys or {PAGE_BYTES} bytes; the rest follows",
                    records.len()
                ),
            );
        }
        let mut awaiting = HashSet::new();
        for to in targets {
            let call = self.calls.next_id();
            awaiting.insert(call);
            let req = PeerRequest::Handoff {
                entries: records.clone(),
            };
            out.push(Effect::Call { call, to, req });
        }
        self.clean = 0;
        self.page = Some(Page {
            range: idx,
            entries: sent,
            awaiting,
            failed: false,
        });
        Ok(Range::Sent)
    }

    /// A replica answered a page; once all did, the page's keys are ready to drop here.
    pub fn on_reply(&mut self, call: CallId, reply: Result<PeerReply, CallError>) {
        let Some(page) = self.page.as_mut().filter(|p| p.awaiting.contains(&call)) else {
            return;
        };
        page.awaiting.remove(&call);
        if !matches!(reply, Ok(PeerReply::Replicated)) {
            tracing::debug!("ownership transfer page refused: {reply:?}");
            page.failed = true;
        }
        if !page.awaiting.is_empty() {
            return;
        }
        let Some(page) = self.page.take() else { return };
        if page.failed {
            self.cursor = self.cursor.wrapping_add(1);
            return;
        }
        // The core drops them (after marking its actor) and calls `on_tick` to go on with
        // the same range: it may hold more pages.
        self.drops = page.entries;
        self.cursor = page.range;
    }
}
