//! The operations a [`Node`](crate::Node) and a [`Client`](crate::Client) both offer.

use crate::core::replication::ShardInfo;
use crate::core::update::{UpdateOp, UpdateResult};
use crate::proto::Session;
use crate::proto::{
    ClientRequest, ClientResponse, InspectResult, MemberRow, ReadResult, RepairProgress, RingInfo,
    RuleRow, StatusReport, WriteResult,
};
use crate::table::Mode;
use crate::version::Context;
use crate::Error;

/// Options of a write or delete.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// Acknowledgements to wait for; the node's default W when `None`.
    pub w: Option<u8>,
    /// Context from an earlier read: the write replaces exactly the versions it covers.
    pub context: Option<Context>,
}

/// Options of a read.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Replies to wait for; the node's default R when `None`.
    pub r: Option<u8>,
    /// Answer only after every reachable replica replied and the stale ones were repaired
    /// ([`ReadResult::repaired`] says how many).
    pub wait_repair: bool,
    /// Primary mode, read-your-writes: a replica answers only once it holds this write (the
    /// session a write returned); ignored for quorum-mode keys.
    pub after: Option<Session>,
}

/// Key-value operations against a cluster, through a local node or a remote one.
///
/// ```no_run
/// use ringkv::{Api, ReadOptions, WriteOptions};
/// # async fn demo(node: &ringkv::Node) -> Result<(), ringkv::Error> {
/// node.put(b"k".to_vec(), b"v".to_vec(), WriteOptions::default()).await?;
/// let read = node.get(b"k".to_vec(), ReadOptions::default()).await?;
/// assert_eq!(read.values[0].data, b"v");
/// # Ok(()) }
/// ```
#[allow(async_fn_in_trait)]
pub trait Api {
    /// Send one request and wait for its answer.
    async fn request(&self, req: ClientRequest) -> Result<ClientResponse, Error>;

    /// Write `value` under `key`.
    async fn put(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
        opts: WriteOptions,
    ) -> Result<WriteResult, Error> {
        let req = ClientRequest::Put {
            key,
            value,
            context: opts.context,
            w: opts.w,
        };
        match self.request(req).await? {
            ClientResponse::Written(w) => Ok(w),
            other => Err(unexpected(other)),
        }
    }

    /// Read `key`: every live sibling and the causal context.
    async fn get(&self, key: Vec<u8>, opts: ReadOptions) -> Result<ReadResult, Error> {
        let mut req = ClientRequest::Get {
            key,
            r: opts.r,
            wait_repair: opts.wait_repair,
        };
        if let Some(after) = opts.after {
            req = ClientRequest::After {
                after,
                req: Box::new(req),
            };
        }
        match self.request(req).await? {
            ClientResponse::Got(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Delete `key` (a tombstone replacing what the context covers).
    async fn delete(&self, key: Vec<u8>, opts: WriteOptions) -> Result<WriteResult, Error> {
        let req = ClientRequest::Delete {
            key,
            context: opts.context,
            w: opts.w,
        };
        match self.request(req).await? {
            ClientResponse::Written(w) => Ok(w),
            other => Err(unexpected(other)),
        }
    }

    /// The membership as the node sees it.
    async fn members(&self) -> Result<Vec<MemberRow>, Error> {
        match self.request(ClientRequest::Members).await? {
            ClientResponse::Members(m) => Ok(m),
            other => Err(unexpected(other)),
        }
    }

    /// The ring as the node computes it.
    async fn ring(&self) -> Result<RingInfo, Error> {
        match self.request(ClientRequest::Ring).await? {
            ClientResponse::Ring(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// What this one node holds for `key`, without asking any other replica.
    async fn inspect(&self, key: Vec<u8>) -> Result<InspectResult, Error> {
        match self.request(ClientRequest::Inspect { key }).await? {
            ClientResponse::Inspect(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// The node's anti-entropy state: per range, the last exchange and keys repaired.
    async fn status(&self) -> Result<StatusReport, Error> {
        match self.request(ClientRequest::Status).await? {
            ClientResponse::Status(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Start an anti-entropy round over every range the node replicates (or report on the
    /// one running); poll [`Api::status`] for progress.
    async fn repair(&self) -> Result<RepairProgress, Error> {
        match self.request(ClientRequest::Repair).await? {
            ClientResponse::Repair(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Set the mode of the keys under `prefix` across the cluster (the node stamps the rule
    /// and spreads it); answers the node's range table afterwards.
    async fn range_set(&self, prefix: Vec<u8>, mode: Mode) -> Result<Vec<RuleRow>, Error> {
        match self
            .request(ClientRequest::RangeSet { prefix, mode })
            .await?
        {
            ClientResponse::RangeTable(rows) => Ok(rows),
            other => Err(unexpected(other)),
        }
    }

    /// Replication state of the node's primary-mode shards (all, or the one holding `key`), as
    /// Redis `INFO replication` shows a master's.
    async fn replication(&self, key: Option<Vec<u8>>) -> Result<Vec<ShardInfo>, Error> {
        match self.request(ClientRequest::Replication { key }).await? {
            ClientResponse::Replication(rows) => Ok(rows),
            other => Err(unexpected(other)),
        }
    }

    /// Read-modify-write `key` atomically on its primary (primary-mode keys only; a
    /// quorum-mode key answers [`UpdateError::NeedsPrimaryMode`](crate::core::update::UpdateError)).
    async fn update(&self, key: Vec<u8>, op: UpdateOp) -> Result<UpdateResult, Error> {
        match self.request(ClientRequest::Update { key, op }).await? {
            ClientResponse::Updated(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// One page of the live keys with tokens from `from` on, read from the replicas of the
    /// ring range holding `from` (each reading at most `limit` stored entries). Walk the
    /// whole key space by starting at 0 and going on after each page's
    /// [`through`](crate::proto::KeyPage::through) until it is `u64::MAX`.
    async fn keys(&self, from: u64, limit: u32) -> Result<crate::proto::KeyPage, Error> {
        match self.request(ClientRequest::Keys { from, limit }).await? {
            ClientResponse::Keys(page) => Ok(page),
            other => Err(unexpected(other)),
        }
    }

    /// The range table as the node holds it: which prefixes run in primary mode.
    async fn range_list(&self) -> Result<Vec<RuleRow>, Error> {
        match self.request(ClientRequest::RangeList).await? {
            ClientResponse::RangeTable(rows) => Ok(rows),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(resp: ClientResponse) -> Error {
    Error::Unexpected(format!("{resp:?}"))
}
