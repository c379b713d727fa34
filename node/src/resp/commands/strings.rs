//! String commands on quorum-mode and primary-mode keys alike, through the node's API.
//!
//! A read of a key with siblings answers the one with the highest HLC timestamp. Commands on
//! several keys run one request per key, at once; they are not atomic.

use bytes::Bytes;
use futures_util::future::{try_join_all, FutureExt};

use super::{upper, Step};
use crate::api::{Api, ReadOptions, WriteOptions};
use crate::core::update::{SetWhen, UpdateOp, UpdateResult};
use crate::node::NodeHandle;
use crate::proto::{ClientRequest, ClientResponse, WriteResult};
use crate::resp::codec::Reply;
use crate::resp::errors;
use crate::Error;

/// Where a connection's requests go: through its node as any client's, or (after
/// `READONLY`) served by that node alone, as `ringctl --direct`: a replica of a primary-mode
/// key reads its own copy, possibly behind, and refuses writes with `READONLY`.
#[derive(Clone)]
pub(crate) struct Target {
    /// The node.
    pub node: NodeHandle,
    /// Whether requests are served by this node alone.
    pub direct: bool,
    /// Where the connection notes its writes for `WAIT`, and this command's place in it.
    pub writes: Option<(super::LastWrite, u64)>,
}

impl Target {
    /// Note an acknowledged write of `key` for `WAIT`.
    fn wrote(&self, key: &[u8], w: &WriteResult) {
        if let Some((log, seq)) = &self.writes {
            log.record(*seq, key, w);
        }
    }
}

impl Api for Target {
    async fn request(&self, req: ClientRequest) -> Result<ClientResponse, Error> {
        let req = if self.direct {
            ClientRequest::Direct(Box::new(req))
        } else {
            req
        };
        self.node.request(req).await
    }
}

/// The newest live value of `key`, if any.
async fn read(node: &Target, key: &Bytes) -> Result<Option<Vec<u8>>, Error> {
    let read = node.get(key.to_vec(), ReadOptions::default()).await?;
    Ok(read.values.into_iter().max_by_key(|v| v.ts).map(|v| v.data))
}

async fn write(node: &Target, key: &Bytes, value: &Bytes) -> Result<(), Error> {
    let w = node
        .put(key.to_vec(), value.to_vec(), WriteOptions::default())
        .await?;
    node.wrote(key, &w);
    Ok(())
}

/// A command answered once the node replied, its error mapped to Redis's words.
fn later<F>(f: F) -> Step
where
    F: std::future::Future<Output = Result<Reply, Error>> + Send + 'static,
{
    Step::Later(f.map(|r| r.unwrap_or_else(|e| errors::reply(&e))).boxed())
}

pub(super) fn get(node: &Target, args: &[Bytes]) -> Step {
    let (node, key) = (node.clone(), args[1].clone());
    later(async move { Ok(read(&node, &key).await?.map_or(Reply::Nil, Reply::bulk)) })
}

/// `RINGKV.SIBLINGS key`: every live value of a key, oldest first by HLC timestamp (`GET`
/// answers the last); one value unless concurrent quorum-mode writes left siblings.
pub(super) fn siblings(node: &Target, args: &[Bytes]) -> Step {
    let (node, key) = (node.clone(), args[1].clone());
    later(async move {
        let mut values = node.get(key.to_vec(), ReadOptions::default()).await?.values;
        values.sort_by_key(|v| v.ts);
        Ok(Reply::Array(
            values.into_iter().map(|v| Reply::bulk(v.data)).collect(),
        ))
    })
}

pub(super) fn strlen(node: &Target, args: &[Bytes]) -> Step {
    let (node, key) = (node.clone(), args[1].clone());
    later(async move {
        let len = read(&node, &key).await?.map_or(0, |v| v.len());
        Ok(Reply::Int(len as i64))
    })
}

/// `SET key value [NX|XX] [GET]`: a plain write, or with a condition or `GET` an update on
/// the key's primary. TTL options are refused by name.
pub(super) fn set(node: &Target, args: &[Bytes]) -> Step {
    let (mut when, mut get) = (SetWhen::Always, false);
    for opt in &args[3..] {
        match upper(opt).as_str() {
            "NX" if when == SetWhen::Always => when = SetWhen::Absent,
            "XX" if when == SetWhen::Always => when = SetWhen::Present,
            "GET" if !get => get = true,
            o @ ("EX" | "PX" | "EXAT" | "PXAT" | "KEEPTTL") => {
                return Reply::err(format!("SET {o}: key expiry (TTLs) is not supported yet"))
                    .into()
            }
            _ => return Reply::err("syntax error").into(),
        }
    }
    if when != SetWhen::Always || get {
        let op = UpdateOp::Set {
            value: args[2].to_vec(),
            when,
        };
        return updated(node, &args[1], op, move |r| match (get, r.write) {
            (true, _) => r.previous.map_or(Reply::Nil, Reply::bulk),
            (false, Some(_)) => Reply::OK,
            (false, None) => Reply::Nil,
        });
    }
    let (node, key, value) = (node.clone(), args[1].clone(), args[2].clone());
    later(async move {
        write(&node, &key, &value).await?;
        Ok(Reply::OK)
    })
}

pub(super) fn mget(node: &Target, args: &[Bytes]) -> Step {
    let (node, keys) = (node.clone(), args[1..].to_vec());
    later(async move {
        let values = try_join_all(keys.iter().map(|k| read(&node, k))).await?;
        Ok(Reply::Array(
            values
                .into_iter()
                .map(|v| v.map_or(Reply::Nil, Reply::bulk))
                .collect(),
        ))
    })
}

pub(super) fn mset(node: &Target, args: &[Bytes]) -> Step {
    if args.len().is_multiple_of(2) {
        return Reply::err("wrong number of arguments for 'mset' command").into();
    }
    let (node, pairs) = (node.clone(), args[1..].to_vec());
    later(async move {
        try_join_all(pairs.chunks(2).map(|kv| write(&node, &kv[0], &kv[1]))).await?;
        Ok(Reply::OK)
    })
}

/// `DEL`/`UNLINK`: each key is read, then deleted with the context read, so the count is
/// the keys that held a value when read.
pub(super) fn del(node: &Target, args: &[Bytes]) -> Step {
    let (node, keys) = (node.clone(), args[1..].to_vec());
    later(async move {
        let removed = try_join_all(keys.iter().map(|k| remove(&node, k))).await?;
        Ok(Reply::Int(removed.into_iter().filter(|r| *r).count() as i64))
    })
}

async fn remove(node: &Target, key: &Bytes) -> Result<bool, Error> {
    let read = node.get(key.to_vec(), ReadOptions::default()).await?;
    if read.values.is_empty() {
        return Ok(false);
    }
    let opts = WriteOptions {
        context: Some(read.context),
        ..WriteOptions::default()
    };
    let w = node.delete(key.to_vec(), opts).await?;
    node.wrote(key, &w);
    Ok(true)
}

/// `INCR`, `DECR`, `INCRBY n`, `DECRBY n`: the new value.
pub(super) fn incr(node: &Target, name: &str, args: &[Bytes]) -> Step {
    let by = match args.get(2) {
        None => 1,
        Some(n) => match std::str::from_utf8(n)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        {
            Some(n) => n,
            None => return Reply::err("value is not an integer or out of range").into(),
        },
    };
    let by = if name.starts_with("decr") {
        by.checked_neg()
    } else {
        Some(by)
    };
    let Some(by) = by else {
        return Reply::err("decrement would overflow").into();
    };
    let op = UpdateOp::Add(by);
    updated(node, &args[1], op.clone(), move |r| {
        match op.apply(r.previous.as_deref(), usize::MAX) {
            Ok(Some(Some(v))) => String::from_utf8_lossy(&v)
                .parse()
                .map_or_else(|_| Reply::err("value is not an integer"), Reply::Int),
            _ => Reply::err("value is not an integer or out of range"),
        }
    })
}

/// `APPEND` (the new length), `SETNX` (1 if set), `GETSET` and `GETDEL` (the old value).
pub(super) fn update(node: &Target, name: &str, args: &[Bytes]) -> Step {
    let old = |r: UpdateResult| r.previous.map_or(Reply::Nil, Reply::bulk);
    let set = |when| UpdateOp::Set {
        value: args[2].to_vec(),
        when,
    };
    match name {
        "append" => {
            let tail = args[2].len();
            updated(
                node,
                &args[1],
                UpdateOp::Append(args[2].to_vec()),
                move |r| Reply::Int((r.previous.map_or(0, |p| p.len()) + tail) as i64),
            )
        }
        "setnx" => updated(node, &args[1], set(SetWhen::Absent), |r| {
            Reply::Int(i64::from(r.write.is_some()))
        }),
        "getset" => updated(node, &args[1], set(SetWhen::Always), old),
        _ => updated(node, &args[1], UpdateOp::Take, old),
    }
}

/// An update on the key's primary, answered by `answer`.
fn updated(
    node: &Target,
    key: &Bytes,
    op: UpdateOp,
    answer: impl FnOnce(UpdateResult) -> Reply + Send + 'static,
) -> Step {
    let (node, key) = (node.clone(), key.to_vec());
    later(async move {
        let r = node.update(key.clone(), op).await?;
        if let Some(w) = &r.write {
            node.wrote(&key, w);
        }
        Ok(answer(r))
    })
}

/// `EXISTS`: keys holding a value, a key named twice counted twice (as Redis does).
pub(super) fn exists(node: &Target, args: &[Bytes]) -> Step {
    let (node, keys) = (node.clone(), args[1..].to_vec());
    later(async move {
        let found = try_join_all(keys.iter().map(|k| read(&node, k))).await?;
        Ok(Reply::Int(
            found.iter().filter(|v| v.is_some()).count() as i64
        ))
    })
}
