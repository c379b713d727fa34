//! Hinted handoff storage: records a fallback node keeps for a replica that was down, as
//! Dynamo, Riak and Cassandra keep hints, until it can deliver them to their owner.
//!
//! Stored keys are `owner length (u8) ‖ owner ‖ token (u64 big-endian) ‖ user key`, so one
//! owner's hints are one contiguous scan in ring order; stored values are
//! `stored_ms (u64 big-endian) ‖ record bytes`.
//!
//! Per-owner counts and bytes are kept in memory ([`HintTallies`]) and updated by every hint
//! write, so [`Store::hint_owners`](super::Store::hint_owners) costs O(owners listed), not
//! O(hints). [`FjallStore`](super::FjallStore) rebuilds them with one scan of its hints at
//! open, which is O(hints stored): bounded by the caller's hint storage limit.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{check_len, KeyRange, StoreError, MAX_KEY_LEN, MAX_VALUE_LEN, TOKEN_LEN};

/// The longest owner (node) name a hint may carry, in bytes.
pub const MAX_OWNER_LEN: usize = 64;

/// Bytes of the `stored_ms` stamp in front of every stored hint value.
pub(super) const STAMP_LEN: usize = 8;

/// Bytes of the longest hint prefix (`owner length ‖ owner`): what a data key leaves room for.
pub(super) const MAX_OWNER_PREFIX_LEN: usize = 1 + MAX_OWNER_LEN;

/// One stored hint: a record meant for `owner`, kept by a fallback node until it can be
/// delivered.
///
/// ```
/// use ringkv::store::{Hint, HintOwner, MemoryStore, Store};
///
/// let store = MemoryStore::new();
/// let hint = Hint {
///     owner: "node-b".into(),
///     token: 42,
///     key: b"k".to_vec(),
///     value: b"record".to_vec(),
///     stored_ms: 1_700_000_000_000,
/// };
/// store.hint_put(&hint)?;
/// store.sync()?;
/// assert_eq!(store.hint_scan("node-b", None, 100)?, [hint.clone()]);
/// let owners = store.hint_owners(10)?;
/// assert_eq!(owners, [HintOwner { owner: "node-b".into(), count: 1, bytes: 6 }]);
/// // Delivered: forget it.
/// store.hint_delete("node-b", 42, b"k")?;
/// assert!(store.hint_owners(10)?.is_empty());
/// # Ok::<(), ringkv::store::StoreError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hint {
    /// The name of the node the record is meant for (1..=[`MAX_OWNER_LEN`] bytes).
    pub owner: String,
    /// The key's ring token.
    pub token: u64,
    /// The user key.
    pub key: Vec<u8>,
    /// The stored bytes (an encoded record).
    pub value: Vec<u8>,
    /// The caller's wall-clock milliseconds when the hint was first stored (to expire old
    /// hints).
    pub stored_ms: u64,
}

/// One owner's pending hints, as listed by [`Store::hint_owners`](super::Store::hint_owners).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HintOwner {
    /// The node the hints are meant for.
    pub owner: String,
    /// How many hints it has.
    pub count: u64,
    /// The sum of their record (value) bytes, without keys or stamps.
    pub bytes: u64,
}

/// The stored prefix of every hint for `owner`: `owner length ‖ owner`.
fn owner_prefix(owner: &str) -> Result<Vec<u8>, StoreError> {
    let len = owner.len();
    let Ok(len_byte) = u8::try_from(len) else {
        return Err(StoreError::HintOwner { len });
    };
    if len == 0 || len > MAX_OWNER_LEN {
        return Err(StoreError::HintOwner { len });
    }
    let mut out = Vec::with_capacity(1 + len + TOKEN_LEN);
    out.push(len_byte);
    out.extend_from_slice(owner.as_bytes());
    Ok(out)
}

/// The stored hint key: `owner length ‖ owner ‖ token (big-endian) ‖ key`.
pub(super) fn hint_key(owner: &str, token: u64, key: &[u8]) -> Result<Vec<u8>, StoreError> {
    check_len("key", key.len(), MAX_KEY_LEN)?;
    let mut out = owner_prefix(owner)?;
    out.reserve(key.len());
    out.extend_from_slice(&token.to_be_bytes());
    out.extend_from_slice(key);
    Ok(out)
}

/// Splits a stored hint key into owner, token and user key.
pub(super) fn split_hint_key(stored: &[u8]) -> Result<(&str, u64, &[u8]), StoreError> {
    let corrupt = |why: &str| {
        StoreError::Corrupt(format!(
            "hint key of {} bytes does not follow the layout: {why}",
            stored.len()
        ))
    };
    let Some((&len, rest)) = stored.split_first() else {
        return Err(corrupt("empty"));
    };
    let len = usize::from(len);
    if len == 0 || len > MAX_OWNER_LEN {
        return Err(corrupt("owner length outside 1..=64"));
    }
    let Some((owner, rest)) = rest.split_at_checked(len) else {
        return Err(corrupt("shorter than its owner"));
    };
    let Some((token, key)) = rest.split_first_chunk::<TOKEN_LEN>() else {
        return Err(corrupt("shorter than its token"));
    };
    let owner = std::str::from_utf8(owner).map_err(|_| corrupt("owner is not UTF-8"))?;
    Ok((owner, u64::from_be_bytes(*token), key))
}

/// The stored hint value: `stored_ms (big-endian) ‖ record`.
pub(super) fn hint_value(stored_ms: u64, record: &[u8]) -> Result<Vec<u8>, StoreError> {
    check_len("value", record.len(), MAX_VALUE_LEN)?;
    let mut out = Vec::with_capacity(STAMP_LEN + record.len());
    out.extend_from_slice(&stored_ms.to_be_bytes());
    out.extend_from_slice(record);
    Ok(out)
}

/// Splits a stored hint value into its stamp and record.
pub(super) fn split_hint_value(stored: &[u8]) -> Result<(u64, &[u8]), StoreError> {
    match stored.split_first_chunk::<STAMP_LEN>() {
        Some((stamp, record)) => Ok((u64::from_be_bytes(*stamp), record)),
        None => Err(short_value(stored.len())),
    }
}

/// The record bytes of a stored hint value of `stored_len` bytes.
pub(super) fn record_len(stored_len: usize) -> Result<u64, StoreError> {
    match stored_len.checked_sub(STAMP_LEN) {
        Some(n) => Ok(n as u64),
        None => Err(short_value(stored_len)),
    }
}

fn short_value(len: usize) -> StoreError {
    StoreError::Corrupt(format!(
        "hint value of {len} bytes is shorter than its {STAMP_LEN}-byte stamp"
    ))
}

/// Decodes one stored hint.
pub fn decode_hint(key: &[u8], value: &[u8]) -> Result<Hint, StoreError> {
    let (owner, token, key) = split_hint_key(key)?;
    let (stored_ms, value) = split_hint_value(value)?;
    Ok(Hint {
        owner: owner.to_owned(),
        token,
        key: key.to_vec(),
        value: value.to_vec(),
        stored_ms,
    })
}

/// The stored-key range of `owner`'s hints strictly after `after` (in (token, key) order).
pub(super) fn owner_range(
    owner: &str,
    after: Option<&(u64, Vec<u8>)>,
) -> Result<KeyRange, StoreError> {
    let prefix = owner_prefix(owner)?;
    let lower = match after {
        Some((token, key)) => Bound::Excluded(hint_key(owner, *token, key)?),
        None => Bound::Included(prefix.clone()),
    };
    Ok((lower, prefix_end(prefix)))
}

/// The first key after every key starting with `prefix`.
fn prefix_end(mut prefix: Vec<u8>) -> Bound<Vec<u8>> {
    while let Some(last) = prefix.pop() {
        if last < u8::MAX {
            prefix.push(last + 1);
            return Bound::Excluded(prefix);
        }
    }
    // Only an all-0xFF prefix has no successor; hint prefixes start with a length <= 64.
    Bound::Unbounded
}

/// Per-owner hint counts and record bytes, kept beside the stored hints.
#[derive(Debug, Default)]
pub(super) struct HintTallies {
    owners: BTreeMap<String, Tally>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    count: u64,
    bytes: u64,
}

impl HintTallies {
    /// Counts one more hint of `bytes` record bytes for `owner`.
    pub(super) fn add(&mut self, owner: &str, bytes: u64) {
        let tally = match self.owners.get_mut(owner) {
            Some(tally) => tally,
            None => self.owners.entry(owner.to_owned()).or_default(),
        };
        tally.count = tally.count.saturating_add(1);
        tally.bytes = tally.bytes.saturating_add(bytes);
    }

    /// Counts one hint of `bytes` record bytes fewer for `owner`.
    pub(super) fn remove(&mut self, owner: &str, bytes: u64) {
        if let Some(tally) = self.owners.get_mut(owner) {
            tally.count = tally.count.saturating_sub(1);
            tally.bytes = tally.bytes.saturating_sub(bytes);
            if tally.count == 0 {
                self.owners.remove(owner);
            }
        }
    }

    /// At most `limit` owners with hints, in byte order of their names.
    pub(super) fn list(&self, limit: usize) -> Vec<HintOwner> {
        self.owners
            .iter()
            .take(limit)
            .map(|(owner, t)| HintOwner {
                owner: owner.clone(),
                count: t.count,
                bytes: t.bytes,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn hint_keys_round_trip() {
        let stored = hint_key("node-a", 258, b"user").unwrap();
        assert_eq!(stored[0], 6);
        assert_eq!(&stored[1..7], b"node-a");
        assert_eq!(
            split_hint_key(&stored).unwrap(),
            ("node-a", 258, &b"user"[..])
        );
        let value = hint_value(7, b"rec").unwrap();
        assert_eq!(split_hint_value(&value).unwrap(), (7, &b"rec"[..]));
        assert_eq!(
            decode_hint(&stored, &value).unwrap(),
            Hint {
                owner: "node-a".into(),
                token: 258,
                key: b"user".to_vec(),
                value: b"rec".to_vec(),
                stored_ms: 7,
            }
        );
    }

    #[test]
    fn owner_names_outside_1_to_64_bytes_are_refused() {
        for owner in [
            String::new(),
            "x".repeat(65),
            "é".repeat(33),
            "x".repeat(300),
        ] {
            match hint_key(&owner, 1, b"k") {
                Err(StoreError::HintOwner { len }) => assert_eq!(len, owner.len()),
                other => panic!("{owner:?} gave {other:?}"),
            }
        }
        assert!(hint_key(&"x".repeat(64), 1, b"k").is_ok());
        assert!(hint_key("n", 1, &vec![0; MAX_KEY_LEN + 1]).is_err());
        // The longest key of the longest owner still fits the engine's key limit.
        let longest = hint_key(&"x".repeat(64), 1, &vec![0; MAX_KEY_LEN]).unwrap();
        assert_eq!(longest.len(), usize::from(u16::MAX));
    }

    #[test]
    fn garbage_keys_and_values_are_corrupt() {
        let cases: [&[u8]; 6] = [
            b"",
            b"\x00node\x00\x00\x00\x00\x00\x00\x00\x01",
            b"\x41xxxxxxxxx",
            b"\x05ab",
            b"\x02ab\x00\x00\x00",
            b"\x02\xff\xfe\x00\x00\x00\x00\x00\x00\x00\x01",
        ];
        for stored in cases {
            assert!(
                matches!(split_hint_key(stored), Err(StoreError::Corrupt(_))),
                "{stored:?}"
            );
        }
        assert!(matches!(
            split_hint_value(b"1234567"),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(record_len(3), Err(StoreError::Corrupt(_))));
        assert_eq!(record_len(8).unwrap(), 0);
    }

    #[test]
    fn prefix_end_is_the_first_key_after_the_prefix() {
        assert_eq!(prefix_end(vec![1, 2]), Bound::Excluded(vec![1, 3]));
        assert_eq!(prefix_end(vec![1, 0xff]), Bound::Excluded(vec![2]));
        assert_eq!(prefix_end(vec![0xff]), Bound::Unbounded);
    }

    #[test]
    fn tallies_count_and_forget_empty_owners() {
        let mut t = HintTallies::default();
        t.add("b", 10);
        t.add("a", 1);
        t.add("b", 5);
        t.remove("a", 1);
        t.remove("missing", 3);
        assert_eq!(
            t.list(10),
            [HintOwner {
                owner: "b".into(),
                count: 2,
                bytes: 15
            }]
        );
        t.add("a", 0);
        assert_eq!(t.list(1).len(), 1);
        assert_eq!(t.list(1)[0].owner, "a");
    }

    proptest! {
        /// Within one owner, stored keys sort as (token, key) do; different owners never
        /// interleave, and every key splits back to what was encoded.
        #[test]
        fn stored_order_is_owner_then_ring_order(
            a in ("[a-c]{1,3}", any::<u64>(), proptest::collection::vec(any::<u8>(), 0..4)),
            b in ("[a-c]{1,3}", any::<u64>(), proptest::collection::vec(any::<u8>(), 0..4)),
        ) {
            let ka = hint_key(&a.0, a.1, &a.2).unwrap();
            let kb = hint_key(&b.0, b.1, &b.2).unwrap();
            prop_assert_eq!(split_hint_key(&ka).unwrap(), (a.0.as_str(), a.1, &a.2[..]));
            if a.0 == b.0 {
                prop_assert_eq!(ka.cmp(&kb), (a.1, &a.2).cmp(&(b.1, &b.2)));
            } else {
                let (lo, hi) = owner_range(&a.0, None).unwrap();
                let inside = (lo, hi);
                prop_assert!(std::ops::RangeBounds::contains(&inside, &ka));
                prop_assert!(!std::ops::RangeBounds::contains(&inside, &kb));
            }
        }
    }
}
