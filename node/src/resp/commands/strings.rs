//! String commands on quorum-mode and primary-mode keys alike, through the node's API.
//!
//! A read of a key with siblings answers the one with the highest HLC timestamp. Commands on
//! several keys run one request per key, at once; they are not atomic.

use bytes::Bytes;
use futures_util::future::{try_join_all, FutureExt};

use super::{upper, Step};
use crate::api::{Api, ReadOptions, WriteOptions};
use crate::node::NodeHandle;
use crate::resp::codec::Reply;
use crate::resp::errors;
use crate::Error;

/// The newest live value of `key`, if any.
async fn read(node: &NodeHandle, key: &Bytes) -> Result<Option<Vec<u8>>, Error> {
    let read = node.get(key.to_vec(), ReadOptions::default()).await?;
    Ok(read.values.into_iter().max_by_key(|v| v.ts).map(|v| v.data))
}

async fn write(node: &NodeHandle, key: &Bytes, value: &Bytes) -> Result<(), Error> {
    node.put(key.to_vec(), value.to_vec(), WriteOptions::default())
        .await
        .map(drop)
}

/// A command answered once the node replied, its error mapped to Redis's words.
fn later<F>(f: F) -> Step
where
    F: std::future::Future<Output = Result<Reply, Error>> + Send + 'static,
{
    Step::Later(f.map(|r| r.unwrap_or_else(|e| errors::reply(&e))).boxed())
}

pub(super) fn get(node: &NodeHandle, args: &[Bytes]) -> Step {
    let (node, key) = (node.clone(), args[1].clone());
    later(async move { Ok(read(&node, &key).await?.map_or(Reply::Nil, Reply::bulk)) })
}

pub(super) fn strlen(node: &NodeHandle, args: &[Bytes]) -> Step {
    let (node, key) = (node.clone(), args[1].clone());
    later(async move {
        let len = read(&node, &key).await?.map_or(0, |v| v.len());
        Ok(Reply::Int(len as i64))
    })
}

/// `SET key value`; the options that need a read-modify-write or TTLs are refused by name.
pub(super) fn set(node: &NodeHandle, args: &[Bytes]) -> Step {
    if let Some(opt) = args.get(3) {
        let opt = upper(opt);
        let why = match opt.as_str() {
            "EX" | "PX" | "EXAT" | "PXAT" | "KEEPTTL" => "key expiry (TTLs) is not supported yet",
            "NX" | "XX" | "GET" => "it needs an atomic read-modify-write on the key's primary, which the Redis front does not do yet",
            _ => return Reply::err("syntax error").into(),
        };
        return Reply::err(format!("SET {opt}: {why}")).into();
    }
    let (node, key, value) = (node.clone(), args[1].clone(), args[2].clone());
    later(async move {
        write(&node, &key, &value).await?;
        Ok(Reply::OK)
    })
}

pub(super) fn mget(node: &NodeHandle, args: &[Bytes]) -> Step {
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

pub(super) fn mset(node: &NodeHandle, args: &[Bytes]) -> Step {
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
pub(super) fn del(node: &NodeHandle, args: &[Bytes]) -> Step {
    let (node, keys) = (node.clone(), args[1..].to_vec());
    later(async move {
        let removed = try_join_all(keys.iter().map(|k| remove(&node, k))).await?;
        Ok(Reply::Int(removed.into_iter().filter(|r| *r).count() as i64))
    })
}

async fn remove(node: &NodeHandle, key: &Bytes) -> Result<bool, Error> {
    let read = node.get(key.to_vec(), ReadOptions::default()).await?;
    if read.values.is_empty() {
        return Ok(false);
    }
    let opts = WriteOptions {
        context: Some(read.context),
        ..WriteOptions::default()
    };
    node.delete(key.to_vec(), opts).await?;
    Ok(true)
}

/// `EXISTS`: keys holding a value, a key named twice counted twice (as Redis does).
pub(super) fn exists(node: &NodeHandle, args: &[Bytes]) -> Step {
    let (node, keys) = (node.clone(), args[1..].to_vec());
    later(async move {
        let found = try_join_all(keys.iter().map(|k| read(&node, k))).await?;
        Ok(Reply::Int(
            found.iter().filter(|v| v.is_some()).count() as i64
        ))
    })
}
