//! Read-your-writes on a replica: a read carrying the session of a write waits until this
//! replica's log holds it (or its deadline passes).

use super::{Ctx, Replication, Shard, ShardMeta};
use crate::core::coordinator::ClientId;
use crate::core::replica::load;
use crate::core::Effect;
use crate::proto::Unavailable;
use crate::proto::{ClientError, ClientResponse, Session};

/// A read waiting for this replica to catch up with a session.
#[derive(Debug)]
pub(super) struct SessionRead {
    client: ClientId,
    key: Vec<u8>,
    after: Session,
    deadline_ms: u64,
}

/// Whether a node at `meta` holds the write `after` names: its log is that lineage at or past
/// the offset, or continued that lineage past the offset.
fn holds(meta: &ShardMeta, after: &Session) -> bool {
    !meta.replid.is_empty()
        && ((meta.replid == after.replid && meta.offset >= after.offset)
            || (meta.prev_replid == after.replid && after.offset <= meta.prev_end))
}

impl Replication {
    /// Read `key` from this replica's copy once it holds `after`.
    pub fn session_read(
        &mut self,
        ctx: &Ctx<'_>,
        client: ClientId,
        key: Vec<u8>,
        after: Session,
        deadline_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let id = Self::shard_of(ctx.view.ring, &key);
        let max = self.config.max_waiting;
        let st = match self.shard(ctx, &id) {
            Ok(st) => st,
            Err(e) => {
                return out.push(Effect::Reply {
                    id: client,
                    result: Err(e),
                })
            }
        };
        if st.session_reads.len() >= max {
            let in_flight = st.session_reads.len();
            let counts = &mut self.limit_counts;
            super::leader::count_waiting(counts, ctx.now(), "session reads", in_flight);
            let e = ClientError::Overloaded { in_flight };
            return out.push(Effect::Reply {
                id: client,
                result: Err(e),
            });
        }
        st.session_reads.push(SessionRead {
            client,
            key,
            after,
            deadline_ms,
        });
        release(st, ctx, out);
    }

    /// Answer the session reads of shard `id` that can be answered.
    pub(super) fn release_reads(&mut self, ctx: &Ctx<'_>, id: &[String], out: &mut Vec<Effect>) {
        if let Some(st) = self.shards.get_mut(id) {
            release(st, ctx, out);
        }
    }
}

/// Serve the reads this replica now holds the writes of; fail the overdue ones.
fn release(st: &mut Shard, ctx: &Ctx<'_>, out: &mut Vec<Effect>) {
    let now = ctx.now();
    let meta = &st.meta;
    let (ready, waiting): (Vec<_>, Vec<_>) = st
        .session_reads
        .drain(..)
        .partition(|r| holds(meta, &r.after) || now >= r.deadline_ms);
    st.session_reads = waiting;
    for r in ready {
        let result = if holds(&st.meta, &r.after) {
            load(ctx.view.store, ringkv_ring::token(&r.key), &r.key)
                .map(|rec| ClientResponse::Got(super::read_result(rec, 1)))
                .map_err(|e| ClientError::Unavailable(Unavailable::Storage(e.to_string())))
        } else {
            Err(ClientError::Unavailable(Unavailable::SessionBehind {
                session: r.after.to_string(),
                replid: st.meta.replid.to_string(),
                offset: st.meta.offset,
            }))
        };
        out.push(Effect::Reply {
            id: r.client,
            result,
        });
    }
}
