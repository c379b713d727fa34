//! The stored record of one key, conflict policies and the record codec.

use std::fmt;
use std::str::FromStr;

use super::dvvset::DvvSetRepr;
use super::{Actor, DvvSet, VersionError};
use crate::hlc::Timestamp;

/// One version of a key's value.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sibling {
    /// The value; `None` is a tombstone (a delete that still carries causal history).
    pub value: Option<Vec<u8>>,
    /// When it was written, stamped by `origin`'s hybrid logical clock as it made the dot, so
    /// an actor's newer dots carry larger timestamps: last-writer-wins relies on that (see
    /// [`DvvSet::lww`]).
    pub ts: Timestamp,
    /// The node that made the dot; breaks last-writer-wins ties between equal timestamps.
    pub origin: Actor,
}

/// Everything stored for one key.
pub type Record = DvvSet<Sibling>;

/// What a read does with concurrent versions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ConflictPolicy {
    /// Keep only the version with the highest `(ts, origin)`.
    #[default]
    Lww,
    /// Keep every concurrent version and let the client resolve them.
    Siblings,
}

/// A conflict policy name that is neither `lww` nor `siblings`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown conflict policy {0:?}: expected \"lww\" or \"siblings\"")]
pub struct UnknownConflictPolicy(pub String);

impl FromStr for ConflictPolicy {
    type Err = UnknownConflictPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lww" => Ok(ConflictPolicy::Lww),
            "siblings" => Ok(ConflictPolicy::Siblings),
            other => Err(UnknownConflictPolicy(other.to_owned())),
        }
    }
}

impl fmt::Display for ConflictPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConflictPolicy::Lww => "lww",
            ConflictPolicy::Siblings => "siblings",
        })
    }
}

/// Applies `policy` to a record: [`ConflictPolicy::Lww`] collapses it to the sibling with the
/// highest `(ts, origin)` (keeping the whole causal history, see [`DvvSet::lww`]);
/// [`ConflictPolicy::Siblings`] returns it unchanged.
#[must_use]
pub fn apply_policy(record: &Record, policy: ConflictPolicy) -> Record {
    match policy {
        ConflictPolicy::Lww => record.lww(|s| (s.ts, s.origin.clone())),
        ConflictPolicy::Siblings => record.clone(),
    }
}

/// The siblings that hold a value (tombstones left out): what a read returns.
#[must_use]
pub fn live_values(record: &Record) -> Vec<&Sibling> {
    record
        .values()
        .into_iter()
        .filter(|s| s.value.is_some())
        .collect()
}

/// The format byte written before every encoded record.
pub const RECORD_FORMAT: u8 = 1;

/// The largest encoded record accepted (64 MiB); decoding never reads more.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

const WHAT: &str = "record";

/// Encodes a record for storage or the wire: [`RECORD_FORMAT`] then postcard.
///
/// # Errors
/// [`VersionError::TooLarge`] over [`MAX_RECORD_BYTES`], or [`VersionError::Encode`].
pub fn encode_record(record: &Record) -> Result<Vec<u8>, VersionError> {
    let out = postcard::to_extend(record, vec![RECORD_FORMAT])
        .map_err(|source| VersionError::Encode { what: WHAT, source })?;
    if out.len() > MAX_RECORD_BYTES {
        return Err(VersionError::TooLarge {
            what: WHAT,
            len: out.len(),
            max: MAX_RECORD_BYTES,
        });
    }
    Ok(out)
}

/// Decodes what [`encode_record`] wrote. Never panics, whatever the bytes.
///
/// ```
/// use ringkv::version::{decode_record, encode_record, Record, Sibling};
///
/// let record = Record::new(Sibling { value: Some(b"hi".to_vec()), ts: Default::default(), origin: "n1".into() });
/// assert_eq!(decode_record(&encode_record(&record).unwrap()).unwrap(), record);
/// assert!(decode_record(b"\x01garbage").is_err());
/// ```
///
/// # Errors
/// Empty, oversized, unknown format, malformed, trailing bytes or broken set invariants.
pub fn decode_record(bytes: &[u8]) -> Result<Record, VersionError> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(VersionError::TooLarge {
            what: WHAT,
            len: bytes.len(),
            max: MAX_RECORD_BYTES,
        });
    }
    let (&format, body) = bytes
        .split_first()
        .ok_or(VersionError::Empty { what: WHAT })?;
    if format != RECORD_FORMAT {
        return Err(VersionError::UnknownFormat {
            what: WHAT,
            found: format,
            expected: RECORD_FORMAT,
        });
    }
    let (repr, rest) = postcard::take_from_bytes::<DvvSetRepr<Sibling>>(body)
        .map_err(|source| VersionError::Decode { what: WHAT, source })?;
    if !rest.is_empty() {
        return Err(VersionError::TrailingBytes {
            what: WHAT,
            extra: rest.len(),
        });
    }
    DvvSet::try_from(repr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::dvvset::tests::set;

    fn sib(value: Option<&str>, millis: u64, origin: &str) -> Sibling {
        Sibling {
            value: value.map(|v| v.as_bytes().to_vec()),
            ts: Timestamp { millis, logical: 0 },
            origin: origin.to_owned(),
        }
    }

    #[test]
    fn policy_parses_and_prints() {
        for p in [ConflictPolicy::Lww, ConflictPolicy::Siblings] {
            assert_eq!(p.to_string().parse::<ConflictPolicy>(), Ok(p));
        }
        let err = "LWW!".parse::<ConflictPolicy>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown conflict policy \"LWW!\": expected \"lww\" or \"siblings\""
        );
        assert_eq!(ConflictPolicy::default(), ConflictPolicy::Lww);
    }

    #[test]
    fn lww_policy_picks_highest_timestamp_then_origin() {
        let r = set(
            vec![
                ("a", 2, vec![sib(Some("x"), 10, "a")]),
                ("b", 1, vec![sib(Some("y"), 12, "b")]),
                ("c", 1, vec![sib(Some("z"), 12, "c")]),
            ],
            vec![],
        );
        let won = apply_policy(&r, ConflictPolicy::Lww);
        assert_eq!(won.values(), [&sib(Some("z"), 12, "c")]);
        assert_eq!(won.join(), r.join());
        assert_eq!(apply_policy(&r, ConflictPolicy::Siblings), r);
    }

    #[test]
    fn a_newer_tombstone_wins_lww_and_hides_the_value() {
        let r = set(
            vec![
                ("a", 1, vec![sib(Some("x"), 10, "a")]),
                ("b", 1, vec![sib(None, 11, "b")]),
            ],
            vec![],
        );
        assert_eq!(live_values(&r), [&sib(Some("x"), 10, "a")]);
        let won = apply_policy(&r, ConflictPolicy::Lww);
        assert_eq!(won.size(), 1);
        assert!(live_values(&won).is_empty());
    }

    #[test]
    fn decode_rejects_empty_unknown_format_and_trailing_bytes() {
        assert!(matches!(
            decode_record(&[]),
            Err(VersionError::Empty { .. })
        ));
        assert!(matches!(
            decode_record(&[2, 0, 0]),
            Err(VersionError::UnknownFormat { found: 2, .. })
        ));
        let mut bytes = encode_record(&Record::empty()).unwrap();
        bytes.push(0);
        assert!(matches!(
            decode_record(&bytes),
            Err(VersionError::TrailingBytes { extra: 1, .. })
        ));
    }

    #[test]
    fn decode_reports_broken_invariants() {
        // Counter 1 with two values: well-formed postcard, invalid set.
        let mut bytes = vec![RECORD_FORMAT, 1, 1, b'a', 1, 2];
        for _ in 0..2 {
            bytes.extend(postcard::to_allocvec(&sib(None, 1, "a")).unwrap());
        }
        bytes.push(0);
        let err = decode_record(&bytes).unwrap_err();
        assert!(matches!(err, VersionError::Invalid(_)), "{err}");
    }
}
