//! The replica side: votes, appends, snapshot pages and collect requests from a shard's
//! primary or candidates.

use ringkv_ring::Ring;

use super::audit::{Audit, LogEvent};
use super::msg::{ClosedLog, Cursor, LogEntry, ReplReply, ReplRequest, SnapshotSpan};
use super::{Ctx, PrimaryKeys, ReplConfig, Role, Shard};
use crate::config::Sabotage;
use crate::core::replica::load;
use crate::store::{Store, StoreError};
use crate::version::{decode_record, encode_record, Record};

/// Keys a collect page or a snapshot page's clean-up reads at most.
const PAGE_KEYS: usize = 256;
/// Local keys a snapshot page may drop at most (a bound on one message's work).
const MAX_DROPS: usize = 10_000;

/// What a replica's handling needs besides the shard: settings, and where log changes go.
pub(super) struct Env<'a> {
    pub config: &'a ReplConfig,
    pub sabotage: Sabotage,
    pub audit: &'a mut Audit,
    /// For a gather's first page: the logs this node closed over the shard's ranges.
    pub closed: Vec<ClosedLog>,
}

/// Serve one request for shard `id`; says whether the reply must wait for a sync.
pub(super) fn handle(
    st: &mut Shard,
    env: Env<'_>,
    ctx: &Ctx<'_>,
    id: &[String],
    from: &str,
    req: ReplRequest,
) -> Result<(ReplReply, bool), StoreError> {
    match req {
        ReplRequest::Vote {
            epoch,
            log_epoch,
            offset,
            ..
        } => vote(st, &env, ctx, id, from, epoch, (log_epoch, offset), true),
        ReplRequest::PreVote {
            epoch,
            log_epoch,
            offset,
            ..
        } => vote(st, &env, ctx, id, from, epoch, (log_epoch, offset), false),
        ReplRequest::Append {
            epoch,
            replid,
            prev_replid,
            prev_end,
            from: at,
            entries,
            commit,
            relay,
            ..
        } => {
            // A relayed append comes from another replica: follow the primary it names.
            let primary = relay.as_ref().map_or(from, |r| r.primary.as_str());
            if let Some(fenced) = follow(st, ctx, id, primary, epoch)? {
                return Ok((fenced, false));
            }
            st.commit = st.commit.max(commit);
            let same = !replid.is_empty() && st.meta.replid == replid;
            let inherited = !prev_replid.is_empty()
                && st.meta.replid == prev_replid
                && st.meta.offset <= prev_end;
            let last = at + entries.len() as u64;
            if !(same || inherited) || st.meta.offset < at || st.meta.offset > last {
                return Ok((ReplReply::Behind(st.meta.position()), false));
            }
            let wrote = append(st, ctx.view.store, id, &replid, entries, env.audit)?;
            Ok((ReplReply::acked(st.meta.offset), wrote))
        }
        ReplRequest::Snapshot {
            epoch,
            replid,
            at,
            at_epoch,
            span,
            items,
            done,
            ..
        } => {
            if let Some(fenced) = follow(st, ctx, id, from, epoch)? {
                return Ok((fenced, false));
            }
            let store = ctx.view.store;
            let first = !st.meta.replid.is_empty();
            if first {
                // The first page: until the last one lands this node holds no usable log.
                st.meta.replid.clear();
                st.meta.offset = 0;
                st.meta.log_epoch = 0;
                st.backlog.clear();
                st.meta.save(store, id)?;
                env.audit.push(|| LogEvent::Reset {
                    shard: id.to_vec(),
                    replid: String::new(),
                    at: 0,
                });
            }
            let changed = replace_span(store, ctx.primary_key, &span, &items)?;
            if done {
                env.audit.push(|| LogEvent::Reset {
                    shard: id.to_vec(),
                    replid: replid.clone(),
                    at,
                });
                st.meta.replid = replid;
                st.meta.offset = at;
                st.meta.log_epoch = at_epoch;
                st.meta.save(store, id)?;
                st.full_syncs += 1;
            }
            let offset = st.meta.offset;
            // A page that changed nothing (an empty range) need not wait for a sync: what the
            // snapshot stands for counts only from the last page, which does.
            Ok((ReplReply::acked(offset), first || changed || done))
        }
        ReplRequest::Flush { offset, .. } => Ok((ReplReply::acked(offset), true)),
        ReplRequest::Collect { epoch, cursor, .. } => {
            if let Some(fenced) = follow(st, ctx, id, from, epoch)? {
                return Ok((fenced, false));
            }
            let (items, next) = collect(
                ctx.view.ring,
                ctx.view.store,
                id,
                cursor,
                env.config.max_batch_bytes,
            )?;
            Ok((ReplReply::Collected { items, next }, false))
        }
        ReplRequest::Gather { epoch, cursor, .. } => {
            if let Some(fenced) = follow(st, ctx, id, from, epoch)? {
                return Ok((fenced, false));
            }
            let (items, next) = collect(
                ctx.view.ring,
                ctx.view.store,
                id,
                cursor,
                env.config.max_batch_bytes,
            )?;
            let closed = env.closed;
            Ok((
                ReplReply::Gathered {
                    items,
                    closed,
                    next,
                },
                false,
            ))
        }
    }
}

/// Decide a vote. A voter gives at most one vote per epoch (it promises the epoch), never to
/// a candidate whose log is behind its own, and not while it still hears a live primary. A
/// pre-vote (`promise` false) answers the same without promising or changing anything.
#[allow(clippy::too_many_arguments)]
fn vote(
    st: &mut Shard,
    env: &Env<'_>,
    ctx: &Ctx<'_>,
    id: &[String],
    from: &str,
    epoch: u64,
    candidate: (u64, u64),
    promise: bool,
) -> Result<(ReplReply, bool), StoreError> {
    let refuse = |st: &Shard, ahead: bool, reason: &str| {
        Ok((
            ReplReply::Refused {
                promised: st.meta.promised,
                ahead,
                reason: reason.into(),
            },
            false,
        ))
    };
    if !env.sabotage.grant_every_vote {
        if epoch <= st.meta.promised {
            return refuse(st, false, "epoch already promised");
        }
        if candidate < (st.meta.log_epoch, st.meta.offset) {
            if matches!(st.role, Role::Replica) {
                st.run_now = true;
            }
            st.outbid = st.outbid.max(epoch);
            return refuse(st, true, "the candidate's log is behind this replica's");
        }
        let lease = u64::try_from(env.config.lease.as_millis()).unwrap_or(u64::MAX);
        let recent = ctx.now().saturating_sub(st.heard_ms) < lease;
        match &st.role {
            Role::Primary(leader) if leader.holds_lease(ctx.now(), lease, id.len()) => {
                return refuse(st, false, "the primary still holds its lease");
            }
            Role::Replica if recent && st.primary.as_deref().is_some_and(|p| p != from) => {
                return refuse(st, false, "the primary was heard within its lease");
            }
            _ => {}
        }
    }
    if !promise {
        return Ok((ReplReply::Granted, false));
    }
    st.meta.promised = st.meta.promised.max(epoch);
    st.meta.save(ctx.view.store, id)?;
    // A candidate's vote for itself keeps its candidacy.
    let own = from == ctx.view.me && matches!(&st.role, Role::Candidate(c) if c.epoch == epoch);
    if own {
        return Ok((ReplReply::Granted, true));
    }
    st.step_down("a newer epoch was elected");
    st.primary = None;
    st.heard_ms = ctx.now();
    Ok((ReplReply::Granted, true))
}

/// Take `from` as the primary of `epoch`, unless an epoch newer than that was promised (then
/// the answer that fences the sender).
fn follow(
    st: &mut Shard,
    ctx: &Ctx<'_>,
    id: &[String],
    from: &str,
    epoch: u64,
) -> Result<Option<ReplReply>, StoreError> {
    if epoch < st.meta.promised {
        return Ok(Some(ReplReply::Fenced {
            promised: st.meta.promised,
        }));
    }
    if epoch > st.meta.promised {
        st.meta.promised = epoch;
        st.meta.save(ctx.view.store, id)?;
    }
    if !matches!(st.role, Role::Replica) {
        st.step_down("another node is primary of this epoch");
    }
    st.primary = Some(from.to_string());
    st.heard_ms = ctx.now();
    Ok(None)
}

/// Fold `record` into what the store holds for the key (a join: nothing held is lost); says
/// whether the stored record changed.
fn merge(store: &dyn Store, token: u64, key: &[u8], record: &Record) -> Result<bool, StoreError> {
    let local = load(store, token, key).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let merged = match &local {
        Some(local) => local.sync(record),
        None => record.clone(),
    };
    let changed = local.as_ref() != Some(&merged);
    if changed {
        let bytes = encode_record(&merged).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        store.put(token, key, &bytes)?;
    }
    Ok(changed)
}

/// Apply the entries past this node's offset; says whether anything was written.
///
/// An entry is merged into the key's record rather than replacing it. A replica that takes
/// appends continues the primary's lineage, so for keys that stayed in primary mode its record
/// is an ancestor of the entry's and the merge is the entry. What else it holds came from quorum
/// mode (written before this node learned the prefix's rule, or after the prefix went back to
/// quorum while this replica was still catching up) and must not be lost.
fn append(
    st: &mut Shard,
    store: &dyn Store,
    id: &[String],
    replid: &str,
    entries: Vec<LogEntry>,
    audit: &mut Audit,
) -> Result<bool, StoreError> {
    let mut wrote = st.meta.replid != replid;
    st.meta.replid = replid.to_string();
    for e in entries {
        if e.offset <= st.meta.offset {
            continue;
        }
        audit.entry(id, replid, st.meta.offset, &e, false);
        if !e.key.is_empty() {
            merge(store, e.token, &e.key, &e.record)?;
        }
        st.meta.offset = e.offset;
        st.meta.log_epoch = e.epoch;
        st.backlog.push(e);
        wrote = true;
    }
    if wrote {
        st.meta.save(store, id)?;
    }
    Ok(wrote)
}

/// Make the primary-mode keys of a snapshot page's span exactly the page's items. An item this
/// node holds in quorum mode (the prefix went back to quorum meanwhile) is merged instead.
/// Says whether anything changed.
fn replace_span(
    store: &dyn Store,
    primary_key: &dyn PrimaryKeys,
    span: &SnapshotSpan,
    items: &[(u64, Vec<u8>, Record)],
) -> Result<bool, StoreError> {
    let keep: std::collections::HashSet<(u64, &[u8])> =
        items.iter().map(|(t, k, _)| (*t, k.as_slice())).collect();
    let mut after = span.after.clone();
    let mut dropped = 0;
    'scan: loop {
        let page = store.scan(span.start, span.end, after.clone(), PAGE_KEYS)?;
        let Some(last) = page.last() else { break };
        after = Some((last.token, last.key.clone()));
        for e in &page {
            let here = (e.token, e.key.clone());
            if span
                .upto
                .as_ref()
                .is_some_and(|u| ring_order(span.start, &here) > ring_order(span.start, u))
            {
                break 'scan;
            }
            if primary_key.covers(&e.key) && !keep.contains(&(e.token, e.key.as_slice())) {
                store.delete(e.token, &e.key)?;
                dropped += 1;
                if dropped >= MAX_DROPS {
                    break 'scan;
                }
            }
        }
        if page.len() < PAGE_KEYS {
            break;
        }
    }
    let mut changed = dropped > 0;
    for (token, key, record) in items {
        if primary_key.covers(key) {
            let bytes = encode_record(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if store.get(*token, key)?.as_deref() != Some(bytes.as_slice()) {
                store.put(*token, key, &bytes)?;
                changed = true;
            }
        } else {
            changed |= merge(store, *token, key, record)?;
        }
    }
    Ok(changed)
}

/// Position of a key in a scan starting after token `start` (the scan wraps past `u64::MAX`).
fn ring_order(start: u64, (token, key): &(u64, Vec<u8>)) -> (u64, Vec<u8>) {
    (token.wrapping_sub(start).wrapping_sub(1), key.clone())
}

/// The token ranges whose preference list is `shard`, in ring order.
pub(super) fn shard_ranges(ring: &Ring, shard: &[String]) -> Vec<(u64, u64)> {
    (0..ring.vnode_count())
        .filter(|i| ring.preference_list_at(*i) == shard)
        .filter_map(|i| ring.range_bounds(i))
        .collect()
}

/// A key and its record, with its token.
pub(super) type KeyRecord = (u64, Vec<u8>, Record);

/// One page (at most [`PAGE_KEYS`] keys, about `max_bytes`) of the keys this node holds in the
/// shard's ranges. Every key goes, whatever this node's range table says: it may not have
/// learned the prefix's rule yet, and the primary keeps those under its own rules.
pub(super) fn collect(
    ring: &Ring,
    store: &dyn Store,
    shard: &[String],
    mut cursor: Cursor,
    max_bytes: usize,
) -> Result<(Vec<KeyRecord>, Option<Cursor>), StoreError> {
    let ranges = shard_ranges(ring, shard);
    let mut items = Vec::new();
    let mut bytes = 0;
    while let Some(&(start, end)) = ranges.get(cursor.range as usize) {
        let page = store.scan(start, end, cursor.after.take(), PAGE_KEYS)?;
        let full = page.len() == PAGE_KEYS;
        let mut cut = false;
        for e in page {
            if bytes >= max_bytes {
                cut = true;
                break;
            }
            cursor.after = Some((e.token, e.key.clone()));
            bytes += e.key.len() + e.value.len();
            let record = decode_record(&e.value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            items.push((e.token, e.key, record));
        }
        if full || cut {
            return Ok((items, Some(cursor)));
        }
        cursor = Cursor {
            range: cursor.range + 1,
            after: None,
        };
        if items.len() >= PAGE_KEYS {
            break;
        }
    }
    let more = (cursor.range as usize) < ranges.len();
    Ok((items, more.then_some(cursor)))
}
