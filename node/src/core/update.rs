//! Read-modify-write on a primary-mode key (Redis's INCR, APPEND, SETNX, SET NX/XX/GET,
//! GETDEL): the primary reads the key as its log holds it and logs the new value in the same
//! step, so no other write to the key can come between. Quorum-mode keys have no single node
//! ordering their writes and refuse these operations.

use crate::proto::Unavailable;
use std::collections::HashMap;

use super::coordinator::ClientId;
use super::replica::load;
use super::replication::read_result;
use super::{Effect, NodeCore};
use crate::proto::{ClientError, ClientResponse};

pub use crate::proto::update::{SetWhen, UpdateError, UpdateOp, UpdateResult};

impl UpdateOp {
    /// The new value given `previous`: `None` writes nothing, `Some(None)` deletes.
    pub fn apply(
        &self,
        previous: Option<&[u8]>,
        max_value: usize,
    ) -> Result<Option<Option<Vec<u8>>>, UpdateError> {
        let new = match self {
            UpdateOp::Add(by) => {
                let now = match previous {
                    None => 0,
                    Some(v) => std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .ok_or(UpdateError::NotAnInteger)?,
                };
                let sum = now.checked_add(*by).ok_or(UpdateError::Overflow)?;
                Some(sum.to_string().into_bytes())
            }
            UpdateOp::Append(tail) => {
                Some([previous.unwrap_or_default(), tail.as_slice()].concat())
            }
            UpdateOp::Set { value, when } => match (when, previous.is_some()) {
                (SetWhen::Absent, true) | (SetWhen::Present, false) => return Ok(None),
                _ => Some(value.clone()),
            },
            UpdateOp::Take if previous.is_none() => return Ok(None),
            UpdateOp::Take => return Ok(Some(None)),
        };
        match new {
            Some(v) if v.len() > max_value => Err(UpdateError::TooLarge {
                size: v.len(),
                max: max_value,
            }),
            other => Ok(Some(other)),
        }
    }

    /// The bytes the request carries (bounded like a written value at admission).
    pub fn argument(&self) -> Option<&Vec<u8>> {
        match self {
            UpdateOp::Append(v) | UpdateOp::Set { value: v, .. } => Some(v),
            UpdateOp::Add(_) | UpdateOp::Take => None,
        }
    }
}

/// Updates logged as writes and waiting for their acknowledgement: the value each read.
#[derive(Default)]
pub struct PendingUpdates {
    previous: HashMap<ClientId, Option<Vec<u8>>>,
}

impl PendingUpdates {
    /// Turn the plain write answers of pending updates into update answers.
    pub fn route_replies(&mut self, out: &mut [Effect]) {
        if self.previous.is_empty() {
            return;
        }
        for effect in out.iter_mut() {
            if let Effect::Reply { id, result } = effect {
                let Some(previous) = self.previous.remove(id) else {
                    continue;
                };
                if let Ok(ClientResponse::Written(w)) = result {
                    let write = Some(std::mem::take(w));
                    *result = Ok(ClientResponse::Updated(UpdateResult { previous, write }));
                }
            }
        }
    }
}

/// What the primary does with an update.
pub(super) enum Plan {
    /// Log this write (a tombstone when `None`); its answer becomes the update's.
    Write(Option<Vec<u8>>),
    /// Answer now.
    Answer(Result<ClientResponse, ClientError>),
}

impl NodeCore {
    /// As the key's primary: read `key` and decide the update's write.
    pub(super) fn plan_update(&mut self, id: ClientId, key: &[u8], op: &UpdateOp) -> Plan {
        let token = ringkv_ring::token(key);
        let record = match load(self.shared.store.as_ref(), token, key) {
            Ok(r) => r,
            Err(e) => {
                return Plan::Answer(Err(ClientError::Unavailable(Unavailable::Storage(
                    e.to_string(),
                ))))
            }
        };
        let previous = read_result(record, 1)
            .values
            .into_iter()
            .max_by_key(|v| v.ts)
            .map(|v| v.data);
        match op.apply(previous.as_deref(), self.shared.config.limits.max_value) {
            Ok(Some(value)) => {
                self.forwards.updates.previous.insert(id, previous);
                Plan::Write(value)
            }
            Ok(None) => Plan::Answer(Ok(ClientResponse::Updated(UpdateResult {
                previous,
                write: None,
            }))),
            Err(e) => Plan::Answer(Err(ClientError::Update(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_compute_the_new_value_from_the_previous() {
        let max = 16;
        assert_eq!(
            UpdateOp::Add(5).apply(None, max),
            Ok(Some(Some(b"5".to_vec())))
        );
        assert_eq!(
            UpdateOp::Add(-3).apply(Some(b"10"), max),
            Ok(Some(Some(b"7".to_vec())))
        );
        assert_eq!(
            UpdateOp::Add(1).apply(Some(b"x"), max),
            Err(UpdateError::NotAnInteger)
        );
        let top = i64::MAX.to_string();
        assert_eq!(
            UpdateOp::Add(1).apply(Some(top.as_bytes()), max),
            Err(UpdateError::Overflow)
        );
        let append = UpdateOp::Append(b"cd".to_vec());
        assert_eq!(
            append.apply(Some(b"ab"), max),
            Ok(Some(Some(b"abcd".to_vec())))
        );
        assert!(matches!(
            append.apply(Some(&[0; 15]), max),
            Err(UpdateError::TooLarge { size: 17, .. })
        ));
        let nx = UpdateOp::Set {
            value: b"v".to_vec(),
            when: SetWhen::Absent,
        };
        assert_eq!(nx.apply(Some(b"old"), max), Ok(None));
        assert_eq!(nx.apply(None, max), Ok(Some(Some(b"v".to_vec()))));
        let xx = UpdateOp::Set {
            value: b"v".to_vec(),
            when: SetWhen::Present,
        };
        assert_eq!(xx.apply(None, max), Ok(None));
        assert_eq!(UpdateOp::Take.apply(None, max), Ok(None));
        assert_eq!(UpdateOp::Take.apply(Some(b"x"), max), Ok(Some(None)));
    }
}
