//! Versions: version vectors, Riak's dotted version vector sets (DVVSet), the stored record
//! of one key and the causal context handed to clients.
//!
//! Every write under a replica's actor gets one *dot* `(actor, counter)`. A [`DvvSet`] keeps
//! the causal history of a key as one counter per actor plus the still-live values
//! (siblings), each identified by its dot. Merging two sets ([`DvvSet::sync`]) drops exactly
//! the values the other side has seen overwritten and keeps concurrent ones. A client reads
//! a key together with a [`Context`] (the [`DvvSet::join`] of what it saw) and passes it back
//! with its next write, so that write replaces exactly the siblings it saw.

mod context;
mod dvvset;
mod record;
mod vector;

#[cfg(test)]
mod proptests;

pub use context::{Context, MAX_CONTEXT_ACTORS, MAX_CONTEXT_BYTES};
pub use dvvset::DvvSet;
pub use record::{
    apply_policy, decode_record, encode_record, live_values, ConflictPolicy, Record, Sibling,
    UnknownConflictPolicy, MAX_RECORD_BYTES, RECORD_FORMAT,
};
pub use vector::VersionVector;

/// The name of a node that makes dots (a replica's node name).
pub type Actor = String;

/// Why a record, a set or a context token could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// Serialization failed (for example a value the format cannot express).
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The codec's error.
        source: postcard::Error,
    },
    /// The bytes are not a valid encoding.
    #[error("malformed {what}: {source}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The codec's error.
        source: postcard::Error,
    },
    /// Nothing to decode.
    #[error("{what} is empty")]
    Empty {
        /// What was being decoded.
        what: &'static str,
    },
    /// Written by a newer (or foreign) format this build cannot read.
    #[error("{what} has unknown format version {found} (this build reads version {expected})")]
    UnknownFormat {
        /// What was being decoded.
        what: &'static str,
        /// The format byte found.
        found: u8,
        /// The format byte this build writes and reads.
        expected: u8,
    },
    /// A valid encoding followed by bytes that belong to nothing.
    #[error("{what} has {extra} trailing bytes")]
    TrailingBytes {
        /// What was being decoded.
        what: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
    /// Over a size limit.
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A context token that is not lowercase hexadecimal.
    #[error("context token is not lowercase hex: {reason}")]
    BadHex {
        /// What is wrong with it.
        reason: String,
    },
    /// A context naming more actors than any real cluster has.
    #[error("context names {count} actors, over the limit of {max}")]
    TooManyActors {
        /// Actors in the context.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Well-formed bytes that break a [`DvvSet`] invariant.
    #[error("invalid dotted version vector set: {0}")]
    Invalid(&'static str),
}
