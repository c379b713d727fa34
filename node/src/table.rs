//! The range table: which key prefixes run in primary mode, and with which options.
//!
//! Cluster metadata every node holds whole. Each prefix has at most one rule, stamped
//! `(counter, node)` when it was set; merging keeps, per prefix, the rule with the higher
//! stamp (last writer wins). Merge is therefore commutative, associative and idempotent, so
//! nodes that saw the same rules hold the same table whatever the order they saw them in; the
//! tables spread by push-pull exchanges between nodes (`core::table`) and are kept in the
//! store. Setting a prefix back to [`Mode::Quorum`] keeps a rule with that mode rather than
//! removing it, so the change spreads and beats the older `Primary` rule.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::codec::CodecError;
use crate::config::CoreConfig;
use crate::limits::MAX_NODE_NAME;
use crate::store::{Store, StoreError};

/// The store metadata entry holding the table.
pub const TABLE_META_KEY: &str = "range-table";

/// Which key prefixes run in primary mode; see the [module docs](self).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeTable {
    rules: BTreeMap<Vec<u8>, Rule>,
}

/// What one prefix runs in, and when that was decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Quorum (the masterless default) or primary mode with its options.
    pub mode: Mode,
    /// When the rule was set: the higher stamp wins a merge.
    pub stamp: Stamp,
}

/// Orders the rules of one prefix: by counter, then by the name of the node that set it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// One more than the highest counter in the setting node's table at the time.
    pub counter: u64,
    /// The node that set the rule.
    pub node: String,
}

/// How the keys under a prefix are replicated.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// Masterless quorum reads and writes (the default for every key).
    Quorum,
    /// One primary per key range takes the writes and replicates them to the other replicas.
    Primary(PrimaryOptions),
}

/// Options of a prefix in primary mode.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PrimaryOptions {
    /// Replicas a write waits for before it is acknowledged.
    pub sync: SyncReplicas,
    /// Which replicas serve reads.
    pub read_from: ReadFrom,
    /// How writes flow from the primary to the replicas.
    pub topology: Topology,
}

/// Replicas a primary-mode write waits for, besides the primary.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum SyncReplicas {
    /// None: asynchronous replication (the Redis default).
    #[default]
    None,
    /// This many replicas, 1 to N-1.
    Count(u8),
    /// A majority of the N copies, the primary included.
    Majority,
}

/// Which replicas serve primary-mode reads.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum ReadFrom {
    /// The primary only: reads see every acknowledged write.
    #[default]
    Primary,
    /// A replica (possibly behind the primary).
    Replica,
    /// Whichever copy answers.
    Any,
}

/// How a primary's writes reach its replicas.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum Topology {
    /// The primary sends to every replica.
    #[default]
    Star,
    /// Each replica forwards to the next.
    Chain,
}

/// Bounds a table must respect, from the node's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableLimits {
    /// Most rules a table holds (`Quorum` rules included).
    pub max_rules: usize,
    /// Longest prefix, in bytes (the longest key).
    pub max_prefix: usize,
    /// Replicas per key (N): a write can wait for at most N-1 replicas besides the primary.
    pub replicas: usize,
}

impl TableLimits {
    /// The limits of a node running `config`.
    pub fn of(config: &CoreConfig) -> Self {
        Self {
            max_rules: config.limits.max_table_rules,
            max_prefix: config.limits.max_key,
            replicas: config.quorum.n,
        }
    }
}

/// Why a rule or a table was refused, or could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// Every key would fall under an empty prefix: name one.
    #[error("a range prefix must not be empty")]
    EmptyPrefix,
    /// Longer than any key could be.
    #[error("a range prefix of {len} bytes is over the key limit of {max} bytes")]
    PrefixTooLong {
        /// Its length.
        len: usize,
        /// The longest key.
        max: usize,
    },
    /// The table would hold more rules than allowed.
    #[error("the range table would hold {rules} rules, over the limit of {max}")]
    TooManyRules {
        /// Rules it would hold.
        rules: usize,
        /// The limit.
        max: usize,
    },
    /// A count of synchronous replicas outside 1 to N-1.
    #[error(
        "sync replicas {asked} is not possible with N={n}: a primary has {} other replica(s) \
         (use 1 to {}, majority or none)",
        n.saturating_sub(1),
        n.saturating_sub(1)
    )]
    BadSyncReplicas {
        /// What was asked.
        asked: u8,
        /// Replicas per key.
        n: usize,
    },
    /// A stamp whose node name no node can have.
    #[error("a rule stamp names a node of {len} bytes (must be 1 to {MAX_NODE_NAME})")]
    BadStamp {
        /// The name's length.
        len: usize,
    },
    /// The counter cannot grow any more.
    #[error("the range table's stamp counter is exhausted")]
    StampExhausted,
    /// The store failed.
    #[error("range table: {0}")]
    Store(#[from] StoreError),
    /// The stored table does not decode, or the table does not encode.
    #[error("range table: {0}")]
    Codec(#[from] CodecError),
}

impl RangeTable {
    /// An empty table: every key in quorum mode.
    pub fn new() -> Self {
        Self::default()
    }

    /// Options for `key` if it falls under a primary prefix: the longest prefix with a rule
    /// decides (a longer `Quorum` rule carves an exception out of a shorter `Primary` one).
    ///
    /// ```
    /// use ringkv::{Mode, PrimaryOptions, RangeTable, TableLimits};
    /// let limits = TableLimits { max_rules: 8, max_prefix: 64, replicas: 3 };
    /// let mut t = RangeTable::new();
    /// t.set(b"user/".to_vec(), Mode::Primary(PrimaryOptions::default()), "n1", &limits)?;
    /// t.set(b"user/tmp/".to_vec(), Mode::Quorum, "n1", &limits)?;
    /// assert!(t.lookup(b"user/42").is_some());
    /// assert!(t.lookup(b"user/tmp/1").is_none());
    /// assert!(t.lookup(b"other").is_none());
    /// # Ok::<(), ringkv::TableError>(())
    /// ```
    pub fn lookup(&self, key: &[u8]) -> Option<&PrimaryOptions> {
        match &self.rule_for(key)?.1.mode {
            Mode::Primary(options) => Some(options),
            Mode::Quorum => None,
        }
    }

    /// The rule of the longest prefix of `key` that has one.
    pub fn rule_for(&self, key: &[u8]) -> Option<(&[u8], &Rule)> {
        // The greatest rule prefix ≤ `bound` is the longest prefix of `bound` with a rule if it
        // is a prefix at all; if not, every prefix of `bound` with a rule is also a prefix of
        // what the two share, so look again below that (`bound` shrinks every turn).
        let mut bound = key;
        loop {
            let (prefix, rule) = self
                .rules
                .range::<[u8], _>((Bound::Unbounded, Bound::Included(bound)))
                .next_back()?;
            if bound.starts_with(prefix) {
                return Some((prefix, rule));
            }
            let shared = prefix.iter().zip(bound).take_while(|(a, b)| a == b).count();
            if shared == 0 {
                return None;
            }
            bound = &bound[..shared];
        }
    }

    /// Set a prefix's mode, stamped (max counter in the table + 1, this node's name).
    ///
    /// # Errors
    /// A rule outside `limits` (empty or long prefix, sync replicas outside 1 to N-1, a
    /// node name no node can have), a table already full, or an exhausted counter.
    pub fn set(
        &mut self,
        prefix: Vec<u8>,
        mode: Mode,
        node: &str,
        limits: &TableLimits,
    ) -> Result<(), TableError> {
        let stamp = Stamp {
            counter: self
                .max_counter()
                .checked_add(1)
                .ok_or(TableError::StampExhausted)?,
            node: node.to_owned(),
        };
        let rule = Rule { mode, stamp };
        rule.check(&prefix, limits)?;
        if !self.rules.contains_key(&prefix) && self.rules.len() >= limits.max_rules {
            return Err(TableError::TooManyRules {
                rules: self.rules.len() + 1,
                max: limits.max_rules,
            });
        }
        self.rules.insert(prefix, rule);
        Ok(())
    }

    /// Merge another node's table: per prefix the higher stamp wins. Says whether anything
    /// changed.
    pub fn merge(&mut self, other: &RangeTable) -> bool {
        let mut changed = false;
        for (prefix, theirs) in &other.rules {
            match self.rules.get_mut(prefix) {
                Some(ours) if !theirs.beats(ours) => {}
                Some(ours) => {
                    *ours = theirs.clone();
                    changed = true;
                }
                None => {
                    self.rules.insert(prefix.clone(), theirs.clone());
                    changed = true;
                }
            }
        }
        changed
    }

    /// [`merge`](Self::merge) a table from a peer, unless it or the result breaks `limits`;
    /// a refused table leaves this one as it was.
    ///
    /// # Errors
    /// The first rule of `other` outside the limits, or too many rules after the merge.
    pub fn merge_within(
        &mut self,
        other: &RangeTable,
        limits: &TableLimits,
    ) -> Result<bool, TableError> {
        other.check(limits)?;
        let added = other
            .rules
            .keys()
            .filter(|p| !self.rules.contains_key(*p))
            .count();
        let rules = self.rules.len().saturating_add(added);
        if rules > limits.max_rules {
            return Err(TableError::TooManyRules {
                rules,
                max: limits.max_rules,
            });
        }
        Ok(self.merge(other))
    }

    /// Whether every rule respects `limits`.
    ///
    /// # Errors
    /// The first rule (or the count) that does not.
    pub fn check(&self, limits: &TableLimits) -> Result<(), TableError> {
        if self.rules.len() > limits.max_rules {
            return Err(TableError::TooManyRules {
                rules: self.rules.len(),
                max: limits.max_rules,
            });
        }
        self.rules
            .iter()
            .try_for_each(|(prefix, rule)| rule.check(prefix, limits))
    }

    /// blake3 over the canonical encoding (postcard of the rules in prefix order): equal
    /// tables, equal digests.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        // Cannot fail: every field has a fixed-shape encoding and hashing never fails a write.
        let _ = postcard::to_io(self, &mut hasher);
        hasher.finalize().into()
    }

    /// Every rule, in prefix order.
    pub fn rules(&self) -> impl Iterator<Item = (&[u8], &Rule)> {
        self.rules.iter().map(|(p, r)| (p.as_slice(), r))
    }

    /// The rule of exactly `prefix`, if any.
    pub fn get(&self, prefix: &[u8]) -> Option<&Rule> {
        self.rules.get(prefix)
    }

    /// Number of rules (`Quorum` rules included).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the table has no rule at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any prefix runs in primary mode.
    pub fn has_primary(&self) -> bool {
        self.rules
            .values()
            .any(|r| matches!(r.mode, Mode::Primary(_)))
    }

    /// How shards stream their log: one log carries every primary prefix of a shard, so it
    /// goes by chain as soon as any primary-mode rule asks for it, else star.
    pub fn topology(&self) -> Topology {
        let chain = self
            .rules
            .values()
            .any(|r| matches!(&r.mode, Mode::Primary(o) if o.topology == Topology::Chain));
        if chain {
            Topology::Chain
        } else {
            Topology::Star
        }
    }

    /// The rules as `ringctl range list` shows them.
    pub fn rows(&self) -> Vec<RuleRow> {
        self.rules
            .iter()
            .map(|(prefix, rule)| RuleRow {
                prefix: prefix.clone(),
                mode: rule.mode.clone(),
                stamp: rule.stamp.clone(),
            })
            .collect()
    }

    /// The table kept in `store`, empty if none was ever saved.
    ///
    /// # Errors
    /// The store fails or holds bytes that are not a table.
    pub fn load(store: &dyn Store) -> Result<Self, TableError> {
        match store.meta_get(TABLE_META_KEY)? {
            None => Ok(Self::default()),
            Some(bytes) => Ok(crate::codec::decode(&bytes)?),
        }
    }

    /// Keep the table in `store` (durable after the store's next sync).
    ///
    /// # Errors
    /// The store fails.
    pub fn save(&self, store: &dyn Store) -> Result<(), TableError> {
        store.meta_put(TABLE_META_KEY, &crate::codec::encode(self)?)?;
        Ok(())
    }

    fn max_counter(&self) -> u64 {
        self.rules
            .values()
            .map(|r| r.stamp.counter)
            .max()
            .unwrap_or(0)
    }
}

impl Rule {
    /// Whether this rule wins over `other` for the same prefix. Equal stamps with different
    /// modes (a node that lost its table and reused a counter) are ordered by mode, so every
    /// node still picks the same rule.
    fn beats(&self, other: &Rule) -> bool {
        (&self.stamp, &self.mode) > (&other.stamp, &other.mode)
    }

    fn check(&self, prefix: &[u8], limits: &TableLimits) -> Result<(), TableError> {
        if prefix.is_empty() {
            return Err(TableError::EmptyPrefix);
        }
        if prefix.len() > limits.max_prefix {
            return Err(TableError::PrefixTooLong {
                len: prefix.len(),
                max: limits.max_prefix,
            });
        }
        let len = self.stamp.node.len();
        if len == 0 || len > MAX_NODE_NAME {
            return Err(TableError::BadStamp { len });
        }
        match self.mode {
            Mode::Primary(PrimaryOptions {
                sync: SyncReplicas::Count(k),
                ..
            }) if k == 0 || usize::from(k) >= limits.replicas => Err(TableError::BadSyncReplicas {
                asked: k,
                n: limits.replicas,
            }),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Quorum => "quorum",
            Mode::Primary(_) => "primary",
        })
    }
}

impl fmt::Display for SyncReplicas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncReplicas::None => f.write_str("none"),
            SyncReplicas::Count(k) => write!(f, "{k}"),
            SyncReplicas::Majority => f.write_str("majority"),
        }
    }
}

impl fmt::Display for ReadFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReadFrom::Primary => "primary",
            ReadFrom::Replica => "replica",
            ReadFrom::Any => "any",
        })
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Topology::Star => "star",
            Topology::Chain => "chain",
        })
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.counter, self.node)
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests;

/// One rule of the range table, as `ringctl range list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRow {
    /// The key prefix.
    pub prefix: Vec<u8>,
    /// Quorum, or primary mode with its options.
    pub mode: Mode,
    /// When and where the rule was set.
    pub stamp: Stamp,
}
