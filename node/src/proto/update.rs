//! Read-modify-write requests (Redis INCR, APPEND, SET NX/XX/GET, GETDEL) that a key's
//! primary plans in one step.

use serde::{Deserialize, Serialize};

use super::WriteResult;

/// What to do with a key's current value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateOp {
    /// Add to the value read as a decimal integer (an absent key counts as 0): INCRBY, DECRBY.
    Add(i64),
    /// Append bytes (an absent key counts as empty): APPEND.
    Append(Vec<u8>),
    /// Write a value when the condition holds: SET NX|XX [GET], SETNX, SET GET.
    Set {
        /// The value.
        value: Vec<u8>,
        /// When to write it.
        when: SetWhen,
    },
    /// Delete the key: GETDEL.
    Take,
}

/// The condition of an [`UpdateOp::Set`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetWhen {
    /// Always.
    Always,
    /// Only if the key holds no value (NX).
    Absent,
    /// Only if the key holds a value (XX).
    Present,
}

/// The outcome of an update.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateResult {
    /// The value before (the newest sibling, if several).
    pub previous: Option<Vec<u8>>,
    /// The write, when the update wrote (`None`: a condition did not hold, or nothing to
    /// delete).
    pub write: Option<WriteResult>,
}

/// Why an update was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum UpdateError {
    /// The key is in quorum mode, where no node orders its writes.
    #[error("this read-modify-write needs the key's prefix in primary mode (ringctl range set --prefix PREFIX --mode primary)")]
    NeedsPrimaryMode,
    /// `Add` on a value that is not a decimal 64-bit integer.
    #[error("value is not an integer or out of range")]
    NotAnInteger,
    /// `Add` past the 64-bit range.
    #[error("increment or decrement would overflow")]
    Overflow,
    /// The new value would be larger than the node accepts.
    #[error("the value would be {size} bytes, over the limit of {max}")]
    TooLarge {
        /// Size it would have.
        size: usize,
        /// Largest accepted.
        max: usize,
    },
}
