//! The replica side: what a node does with one key when a coordinator asks.
//!
//! Plain functions over the store and the clock: no I/O of their own besides the store's
//! buffered writes, so the simulator runs them as they are.

use crate::hlc::{Hlc, Timestamp};
use crate::merkle::{item_hash, Hash};
use crate::proto::Refusal;
use crate::proto::{PeerReply, PeerRequest};
use crate::store::{Store, StoreError};
use crate::version::{
    apply_policy, decode_record, encode_record, ConflictPolicy, DvvSet, Record, Sibling,
    VersionError, VersionVector,
};

/// Why a replica could not serve a request.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A stored or received record could not be read.
    #[error("record: {0}")]
    Record(#[from] VersionError),
    /// The token sent does not belong to the key.
    #[error("token {sent} does not match the key (expected {expected})")]
    WrongToken {
        /// Token in the request.
        sent: u64,
        /// Token of the key.
        expected: u64,
    },
    /// A write would leave more concurrent versions than allowed.
    #[error("key would have {count} siblings, over the limit of {max}: read it and write with its context to resolve them")]
    TooManySiblings {
        /// Siblings the write would leave.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// What a replica needs to serve requests.
pub struct Replica<'a> {
    /// This node's name: the actor of the dots it makes.
    pub me: &'a str,
    /// The node's store.
    pub store: &'a dyn Store,
    /// The node's clock.
    pub hlc: &'a mut Hlc,
    /// Cluster conflict policy.
    pub policy: ConflictPolicy,
    /// Most siblings a write may leave on a key.
    pub max_siblings: usize,
    /// Every key this replica changed, for the Merkle trees to follow.
    pub changes: Vec<Change>,
}

/// A key whose stored record changed: the Merkle tree of its range swaps `old` for `new`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The key's token.
    pub token: u64,
    /// Item hash of what was stored before, if anything.
    pub old: Option<Hash>,
    /// Item hash of what is stored now; `None` once the key is gone (a reaped tombstone).
    pub new: Option<Hash>,
}

impl Replica<'_> {
    /// Serve one request. The answer says whether the store was written, so the caller knows
    /// the reply must wait for a sync under `Durability::Sync`.
    pub fn handle(&mut self, now_ms: u64, req: PeerRequest) -> (PeerReply, bool) {
        let wrote = !matches!(req, PeerRequest::Read { .. });
        match self.serve(now_ms, req) {
            Ok(reply) => (reply, wrote),
            Err(e) => (PeerReply::Failed(Refusal::Replica(e.to_string())), false),
        }
    }

    fn serve(&mut self, now_ms: u64, req: PeerRequest) -> Result<PeerReply, ReplicaError> {
        match req {
            PeerRequest::Write {
                token,
                key,
                value,
                context,
                ts,
            } => {
                check_token(token, &key)?;
                let ts = self.stamp(ts, now_ms);
                let record = self.write(token, &key, value, context.as_ref(), ts)?;
                Ok(PeerReply::Written(record))
            }
            PeerRequest::Replicate { token, key, record } => {
                check_token(token, &key)?;
                self.merge(token, &key, &record)?;
                Ok(PeerReply::Replicated)
            }
            PeerRequest::Read { token, key } => {
                check_token(token, &key)?;
                Ok(PeerReply::Read(load(self.store, token, &key)?))
            }
            PeerRequest::Handoff { entries } => {
                for (token, key, record) in &entries {
                    check_token(*token, key)?;
                    self.merge(*token, key, record)?;
                }
                Ok(PeerReply::Replicated)
            }
            PeerRequest::Exchange { .. }
            | PeerRequest::Hint { .. }
            | PeerRequest::Table { .. }
            | PeerRequest::Members
            | PeerRequest::Keys { .. }
            | PeerRequest::Repl(..)
            | PeerRequest::Forward(_) => Ok(PeerReply::Failed(Refusal::NotReplicaRequest)),
        }
    }

    /// Take the coordinator's timestamp when it is sane, our own clock otherwise.
    fn stamp(&mut self, coordinator: Timestamp, now_ms: u64) -> Timestamp {
        match self.hlc.observe(coordinator, now_ms) {
            Ok(ts) => ts,
            Err(_) => self.hlc.now(now_ms),
        }
    }

    /// Add the write's one new dot under our actor and store the result.
    fn write(
        &mut self,
        token: u64,
        key: &[u8],
        value: Option<Vec<u8>>,
        context: Option<&VersionVector>,
        ts: Timestamp,
    ) -> Result<Record, ReplicaError> {
        let sibling = Sibling {
            value,
            ts,
            origin: self.me.to_string(),
        };
        let new = match context {
            Some(ctx) => DvvSet::new_with_context(ctx, sibling),
            None => DvvSet::new(sibling),
        };
        let local = load(self.store, token, key)?;
        let base = local.clone().unwrap_or_default();
        let record = apply_policy(&DvvSet::update(&new, &base, self.me), self.policy);
        if record.size() > self.max_siblings {
            return Err(ReplicaError::TooManySiblings {
                count: record.size(),
                max: self.max_siblings,
            });
        }
        self.persist(token, key, local.as_ref(), &record)?;
        Ok(record)
    }

    /// Merge a record made elsewhere into ours.
    pub fn merge(&mut self, token: u64, key: &[u8], incoming: &Record) -> Result<(), ReplicaError> {
        let local = load(self.store, token, key)?;
        let merged = match &local {
            Some(local) => local.sync(incoming),
            None => incoming.clone(),
        };
        let merged = apply_policy(&merged, self.policy);
        if local.as_ref() != Some(&merged) {
            self.persist(token, key, local.as_ref(), &merged)?;
        }
        Ok(())
    }

    /// Write a key's new record and note the change for the Merkle trees.
    fn persist(
        &mut self,
        token: u64,
        key: &[u8],
        old: Option<&Record>,
        new: &Record,
    ) -> Result<(), ReplicaError> {
        self.store.put(token, key, &encode_record(new)?)?;
        self.changes.push(Change {
            token,
            old: old.map(|r| item_hash(key, r)),
            new: Some(item_hash(key, new)),
        });
        Ok(())
    }
}

/// The record stored for a key, if any.
pub fn load(store: &dyn Store, token: u64, key: &[u8]) -> Result<Option<Record>, ReplicaError> {
    match store.get(token, key)? {
        Some(bytes) => Ok(Some(decode_record(&bytes)?)),
        None => Ok(None),
    }
}

fn check_token(sent: u64, key: &[u8]) -> Result<(), ReplicaError> {
    let expected = ringkv_ring::token(key);
    if sent == expected {
        Ok(())
    } else {
        Err(ReplicaError::WrongToken { sent, expected })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use crate::version::{live_values, Context};

    fn write(
        store: &MemoryStore,
        hlc: &mut Hlc,
        policy: ConflictPolicy,
        value: &[u8],
        context: Option<VersionVector>,
    ) -> PeerReply {
        let mut replica = Replica {
            me: "a",
            store,
            hlc,
            policy,
            max_siblings: 3,
            changes: Vec::new(),
        };
        let req = PeerRequest::Write {
            token: ringkv_ring::token(b"k"),
            key: b"k".to_vec(),
            value: Some(value.to_vec()),
            context,
            ts: Timestamp::default(),
        };
        replica.handle(1_000, req).0
    }

    fn values(reply: &PeerReply) -> Vec<Vec<u8>> {
        match reply {
            PeerReply::Written(r) => live_values(r)
                .iter()
                .filter_map(|s| s.value.clone())
                .collect(),
            other => panic!("expected a written record, got {other:?}"),
        }
    }

    #[test]
    fn blind_writes_become_siblings_and_a_write_with_context_replaces_them() {
        let store = MemoryStore::new();
        let mut hlc = Hlc::new(60_000);
        write(&store, &mut hlc, ConflictPolicy::Siblings, b"x", None);
        let second = write(&store, &mut hlc, ConflictPolicy::Siblings, b"y", None);
        assert_eq!(values(&second).len(), 2);
        let PeerReply::Written(seen) = second else {
            unreachable!()
        };
        let ctx = Context(seen.join());
        let third = write(
            &store,
            &mut hlc,
            ConflictPolicy::Siblings,
            b"z",
            Some(ctx.0),
        );
        assert_eq!(values(&third), vec![b"z".to_vec()]);
    }

    #[test]
    fn a_blind_write_over_the_sibling_limit_is_refused_and_a_resolving_write_is_not() {
        let store = MemoryStore::new();
        let mut hlc = Hlc::new(60_000);
        for v in [b"1", b"2", b"3"] {
            write(&store, &mut hlc, ConflictPolicy::Siblings, v, None);
        }
        let over = write(&store, &mut hlc, ConflictPolicy::Siblings, b"4", None);
        assert!(
            matches!(&over, PeerReply::Failed(e) if e.to_string().contains("siblings")),
            "{over:?}"
        );
        let stored = load(&store, ringkv_ring::token(b"k"), b"k")
            .unwrap()
            .unwrap();
        assert_eq!(stored.size(), 3, "the refused write left nothing behind");
        let resolved = write(
            &store,
            &mut hlc,
            ConflictPolicy::Siblings,
            b"r",
            Some(stored.join()),
        );
        assert_eq!(values(&resolved), vec![b"r".to_vec()]);
    }

    #[test]
    fn lww_keeps_only_the_newest_write() {
        let store = MemoryStore::new();
        let mut hlc = Hlc::new(60_000);
        write(&store, &mut hlc, ConflictPolicy::Lww, b"x", None);
        let second = write(&store, &mut hlc, ConflictPolicy::Lww, b"y", None);
        assert_eq!(values(&second), vec![b"y".to_vec()]);
    }

    #[test]
    fn a_token_that_does_not_match_the_key_is_refused() {
        let store = MemoryStore::new();
        let mut hlc = Hlc::new(60_000);
        let mut replica = Replica {
            me: "a",
            store: &store,
            hlc: &mut hlc,
            policy: ConflictPolicy::Lww,
            max_siblings: 3,
            changes: Vec::new(),
        };
        let req = PeerRequest::Read {
            token: ringkv_ring::token(b"k").wrapping_add(1),
            key: b"k".to_vec(),
        };
        let (reply, wrote) = replica.handle(0, req);
        assert!(matches!(reply, PeerReply::Failed(e) if e.to_string().contains("token")));
        assert!(!wrote);
    }
}
