//! Wire messages between clients and nodes and between nodes.
//!
//! Every request travels as one `postcard` frame and is answered by one frame: on a QUIC
//! stream of its own (version 2), or on one of a few streams shared by many calls (version 3,
//! see `net::mux`). The protocol version is negotiated in the TLS handshake (ALPN `ringkv/3`
//! and `ringkv/2`, these types; `ringkv/1` is transcoded by `net::compat`), so a node never
//! has to guess what an old or new peer meant. Changing these enums means a new version.

use serde::{Deserialize, Serialize};

use crate::hlc::Timestamp;
use crate::merkle::ExchangeMsg;
use crate::table::{Mode, RangeTable};
use crate::version::{Context, Record, VersionVector};

pub use crate::codec::{decode, encode, CodecError};
pub use crate::reason::{Refusal, Unavailable};
pub use crate::table::RuleRow;

pub mod repl;
pub mod shard;
pub mod update;

/// A request on a stream: from a client, or from another node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A client asks any node to coordinate.
    Client(ClientRequest),
    /// A node asks a replica.
    Peer {
        /// The asking node's name.
        from: String,
        /// What it asks.
        req: PeerRequest,
    },
    /// An admin asks a node started with fault injection to inject faults (test clusters
    /// only; answered by the node's shell, refused by any other node).
    Fault(crate::faults::FaultRequest),
    /// An admin asks a node for its own figures (`ringctl cluster status`; answered by the
    /// node's shell).
    Info,
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The answer to a client request.
    Client(Result<ClientResponse, ClientError>),
    /// The answer to a peer request.
    Peer(PeerReply),
    /// The answer to a fault request: the faults now in force.
    Fault(Result<crate::faults::FaultPlan, crate::faults::FaultError>),
    /// The answer to [`Request::Info`].
    Info(NodeInfo),
}

/// What a node says of itself for `ringctl cluster status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// The running version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// Data keys stored, approximate (see [`crate::store::StoreUsage`]); `None` if unknown.
    pub keys: Option<u64>,
    /// Bytes the store takes on disk; `None` for a node keeping data in memory.
    pub disk_bytes: Option<u64>,
}

/// What a client may ask of any node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Read a key at quorum `r` (the node's default when `None`).
    Get {
        /// The key.
        key: Vec<u8>,
        /// Replies to wait for.
        r: Option<u8>,
        /// Answer only once every reachable replica replied and the stale ones acknowledged
        /// the merged record (read repair done before the answer, not after).
        wait_repair: bool,
    },
    /// Write a value; `context` (from an earlier read) says which versions it replaces.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// Causal context of what the writer saw.
        context: Option<Context>,
        /// Acknowledgements to wait for.
        w: Option<u8>,
    },
    /// Delete a key by writing a tombstone that replaces what `context` covers.
    Delete {
        /// The key.
        key: Vec<u8>,
        /// Causal context of what the writer saw.
        context: Option<Context>,
        /// Acknowledgements to wait for.
        w: Option<u8>,
    },
    /// The membership as this node sees it.
    Members,
    /// The ring as this node computes it.
    Ring,
    /// What this node alone holds for a key, without coordinating (the operator's view of
    /// one replica).
    Inspect {
        /// The key.
        key: Vec<u8>,
    },
    /// Anti-entropy state of this node's ranges.
    Status,
    /// Start an anti-entropy round over every range this node replicates, now.
    Repair,
    /// Set the mode of a key prefix in the cluster's range table; answered with the table.
    RangeSet {
        /// The prefix (bytes).
        prefix: Vec<u8>,
        /// Quorum, or primary mode with its options.
        mode: Mode,
    },
    /// Serve the inner request here: never forward it to a key's primary (a replica refuses
    /// a primary-mode write with [`ClientError::ReadOnly`], as a Redis replica does).
    Direct(Box<ClientRequest>),
    /// Read-your-writes for a primary-mode key: a replica serving the inner `Get` answers only
    /// once it holds the write `after` names (the session a write returned).
    After {
        /// The write to wait for.
        after: Session,
        /// The read.
        req: Box<ClientRequest>,
    },
    /// Replication state of the shards this node holds in primary mode (`INFO replication`).
    Replication {
        /// Only the shard holding this key (all when `None`).
        key: Option<Vec<u8>>,
    },
    /// The range table as this node holds it.
    RangeList,
    /// Read-modify-write a primary-mode key atomically on its primary.
    Update {
        /// The key.
        key: Vec<u8>,
        /// What to do with its value.
        op: update::UpdateOp,
    },
    /// The live keys of one span of the token space, read from the replicas of the ring range
    /// holding `from` (Redis `SCAN`): the union of `R` replicas' keys with tokens from `from`
    /// to the range's end (or to `u64::MAX` where the range wraps), tombstones left out.
    Keys {
        /// First token of the span.
        from: u64,
        /// Most stored entries each replica reads (the node caps it).
        limit: u32,
    },
}

/// A successful answer to a [`ClientRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientResponse {
    /// The outcome of a read.
    Got(ReadResult),
    /// A write or delete reached its quorum.
    Written(WriteResult),
    /// Every node this node knows, itself included.
    Members(Vec<MemberRow>),
    /// Share of the key space per node.
    Ring(RingInfo),
    /// One replica's record for a key.
    Inspect(InspectResult),
    /// Anti-entropy state.
    Status(StatusReport),
    /// A repair round started (or one already running continues).
    Repair(RepairProgress),
    /// Replication state per shard.
    Replication(Vec<shard::ShardInfo>),
    /// The node's range table, one row per prefix in prefix order.
    RangeTable(Vec<RuleRow>),
    /// The outcome of an update.
    Updated(update::UpdateResult),
    /// One page of keys.
    Keys(KeyPage),
}

/// The answer to [`ClientRequest::Keys`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPage {
    /// Live keys with tokens from `from` to `through`, each once, in token order then key
    /// order.
    pub keys: Vec<Vec<u8>>,
    /// The token through which the page is complete: no key of the span up to it is
    /// missing from the replicas that answered. The next page starts after it; `u64::MAX`
    /// when the page reached the end of the token space.
    pub through: u64,
    /// Replicas whose keys the page is the union of.
    pub replicas: u8,
}

/// What one node holds for a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectResult {
    /// The node answering.
    pub node: String,
    /// Whether this node is in the key's preference list.
    pub replica: bool,
    /// The key's token.
    pub token: u64,
    /// Every sibling, tombstones included (`data: None`).
    pub siblings: Vec<InspectSibling>,
    /// The stored version vector.
    pub context: Context,
    /// Hints this node keeps for the key on behalf of replicas that were down, per owner.
    pub hints: Vec<InspectHint>,
}

/// A hint one node keeps for a key, as `ringctl inspect` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectHint {
    /// The replica the hint is meant for.
    pub owner: String,
    /// Wall-clock milliseconds when this node first stored it.
    pub stored_ms: u64,
    /// Bytes of the hinted record.
    pub bytes: u64,
    /// The hinted record's siblings, tombstones included.
    pub siblings: Vec<InspectSibling>,
}

/// One stored version, as `ringctl inspect` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectSibling {
    /// The value, `None` for a tombstone.
    pub data: Option<Vec<u8>>,
    /// When it was written.
    pub ts: Timestamp,
    /// The node that made its dot.
    pub origin: String,
}

/// Anti-entropy state of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The node answering.
    pub node: String,
    /// Per range this node replicates, and per range it keeps hints in without replicating it
    /// (`replica: false`), in ring order.
    pub ranges: Vec<RangeStatus>,
    /// Progress of the current repair round.
    pub repair: RepairProgress,
    /// Exchanges completed since start.
    pub exchanges: u64,
    /// Exchanges that failed (peer gone, ring changed, bad message).
    pub exchange_failures: u64,
    /// Hints this node holds for replicas that were down, per intended owner.
    pub hints: Vec<HintsPending>,
    /// Hints delivered to their owner since start.
    pub hints_delivered: u64,
    /// Hints dropped since start (storage full, too old, owner gone): anti-entropy repairs those.
    pub hints_dropped: u64,
    /// Keys handed to new owners since start (ownership transfer) and dropped here.
    pub keys_handed_off: u64,
    /// Tombstones removed since start (every replica held them, grace period passed).
    pub tombstones_reaped: u64,
}

/// Hints waiting for one owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HintsPending {
    /// The replica they are meant for.
    pub owner: String,
    /// How many.
    pub count: u64,
    /// Their record bytes.
    pub bytes: u64,
}

/// Anti-entropy and hinted-handoff state of one range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeStatus {
    /// Range start (exclusive).
    pub start: u64,
    /// Range end (inclusive).
    pub end: u64,
    /// Whether this node replicates the range; `false` for a range listed only for the hints
    /// it keeps there for a replica that was down.
    pub replica: bool,
    /// Wall-clock milliseconds of the last completed exchange, if any.
    pub last_exchange_ms: Option<u64>,
    /// Keys this node sent to a peer replica of this range to repair it.
    pub keys_repaired: u64,
    /// Hints this node keeps for keys of this range, every owner together.
    pub hints_pending: u64,
}

/// How far a repair round is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairProgress {
    /// Exchanges the round holds.
    pub total: u64,
    /// Exchanges done (completed or failed).
    pub done: u64,
    /// Whether a round is running.
    pub running: bool,
}

/// The outcome of a read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadResult {
    /// Live values (no tombstones): empty when the key is absent or deleted; more than one
    /// when concurrent writes are kept as siblings.
    pub values: Vec<Value>,
    /// Pass this back with the next write to replace exactly what was read.
    pub context: Context,
    /// Replicas that answered.
    pub replied: u8,
    /// Stale replicas that acknowledged their repair before the answer: always 0 unless the
    /// read asked to wait for its repairs (a failed repair is not counted).
    pub repaired: u8,
}

/// One version of a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Value {
    /// The bytes.
    pub data: Vec<u8>,
    /// When it was written (hybrid logical clock).
    pub ts: Timestamp,
}

/// The outcome of a write.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteResult {
    /// Causal context of the version now stored.
    pub context: Context,
    /// Replicas that acknowledged before the answer.
    pub acked: u8,
    /// Primary mode: where the write sits in its shard's log (pass it to a later read for
    /// read-your-writes on a replica).
    pub session: Option<Session>,
}

/// A position in a primary-mode shard's log, as `REPLID:OFFSET`.
///
/// ```
/// use ringkv::proto::Session;
/// let s: Session = "ab12:7".parse().unwrap();
/// assert_eq!((s.replid.as_str(), s.offset), ("ab12", 7));
/// assert_eq!(s.to_string(), "ab12:7");
/// assert!("no-offset".parse::<Session>().is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Replication id of the log the write was ordered in.
    pub replid: String,
    /// Its offset there.
    pub offset: u64,
}

impl std::fmt::Display for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.replid, self.offset)
    }
}

impl std::str::FromStr for Session {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (replid, offset) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?} is not a session token (REPLID:OFFSET)"))?;
        let offset = offset
            .parse()
            .map_err(|_| format!("{s:?}: the offset is not a number"))?;
        if replid.is_empty() || replid.len() > 64 {
            return Err(format!(
                "{s:?}: the replication id must be 1 to 64 characters"
            ));
        }
        Ok(Self {
            replid: replid.to_string(),
            offset,
        })
    }
}

/// One line of `ringctl members`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRow {
    /// Stable node name.
    pub name: String,
    /// Address of its QUIC endpoint.
    pub addr: String,
    /// `alive`, `suspect` or `down`, as the failure detector sees it.
    pub state: String,
    /// `joining`, `up` or `leaving`, as the node itself announced.
    pub status: String,
    /// Zone, if set.
    pub zone: Option<String>,
}

/// The ring as one node computes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RingInfo {
    /// Replicas per key.
    pub n: u8,
    /// Virtual nodes per node.
    pub vnodes: u32,
    /// Per node: name, share of the key space it is first replica of, share it holds a copy of.
    pub nodes: Vec<(String, f64, f64)>,
}

/// Why a client request failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ClientError {
    /// The key is empty or larger than the node accepts.
    #[error("key of {size} bytes is not accepted (must be 1 to {max} bytes)")]
    BadKey {
        /// Size of the key sent.
        size: usize,
        /// Largest accepted.
        max: usize,
    },
    /// The value is larger than the node accepts.
    #[error("value of {size} bytes is over the limit of {max} bytes")]
    ValueTooLarge {
        /// Size of the value sent.
        size: usize,
        /// Largest accepted.
        max: usize,
    },
    /// R or W outside 1..=N.
    #[error("{which}={asked} is not possible with N={n} (use 1 to {n})")]
    BadQuorum {
        /// `r` or `w`.
        which: String,
        /// What was asked.
        asked: u8,
        /// Replication factor.
        n: u8,
    },
    /// Fewer replicas answered than the quorum needs.
    #[error(
        "quorum not met: {op} needed {needed} of {replicas} replicas, {ok} answered ({detail})"
    )]
    QuorumFailed {
        /// `read` or `write`.
        op: String,
        /// R or W.
        needed: u8,
        /// Size of the preference list.
        replicas: u8,
        /// Replicas that answered successfully.
        ok: u8,
        /// What went wrong with the others.
        detail: String,
    },
    /// The node coordinates too many requests already.
    #[error("node overloaded: {in_flight} requests in flight")]
    Overloaded {
        /// Requests in flight.
        in_flight: usize,
    },
    /// The causal context could not be used.
    #[error("bad context: {0}")]
    BadContext(String),
    /// A primary-mode write reached a replica and the client asked it not to forward.
    #[error("READONLY this node is a replica of the key's range, not its primary{}", primary.as_ref().map(|p| format!(" ({p})")).unwrap_or_default())]
    ReadOnly {
        /// The primary, if known.
        primary: Option<String>,
    },
    /// The node cannot serve the request now; the reason says why.
    #[error("node unavailable: {0}")]
    Unavailable(Unavailable),
    /// The request is malformed (a modifier given twice, an argument out of its domain).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A range table rule that breaks the table's bounds.
    #[error("range rule refused: {0}")]
    BadRange(String),
    /// A request forwarded to a node as to the key's primary reached a node that is not the
    /// primary. `primary` is the node it follows under `epoch`, when it knows one: the
    /// forwarding node tries that one next. Retryable.
    #[error("this node is not the key's primary ({}); retry", match primary {
        Some(p) => format!("{p} is, as of epoch {epoch}"),
        None => "it knows of none yet".to_string(),
    })]
    NotPrimary {
        /// The primary this node follows, if it knows one.
        primary: Option<String>,
        /// The epoch in which it heard of that primary.
        epoch: u64,
    },
    /// A read-modify-write that could not be done.
    #[error(transparent)]
    Update(#[from] update::UpdateError),
    /// No primary serves the key's range now: an election is under way. Nothing was written.
    #[error("electing a primary for the key's range; retry")]
    Electing,
    /// The key's primary has not heard a majority of its replicas within its lease and takes
    /// no write until it does (or another is elected). Nothing was written.
    #[error("this primary has not heard a majority of its replicas within its lease; retry")]
    LeaseExpired,
    /// The key's range has a new primary, gathering the keys its replicas hold before it
    /// serves. Nothing was written.
    #[error("the key's range has a new primary, gathering the keys its replicas hold; retry")]
    Gathering,
    /// Fewer replicas online than the write must wait for (Redis `NOREPLICAS`). Nothing was
    /// written.
    #[error(
        "NOREPLICAS not enough good replicas to write: {needed} needed, {online} online, \
         {syncing} catching up"
    )]
    NoReplicas {
        /// Replicas the write must wait for.
        needed: usize,
        /// Replicas online and following the log.
        online: usize,
        /// Replicas that answer but are still catching up (a resync or their first snapshot).
        syncing: usize,
    },
}

impl ClientError {
    /// Whether the same request may succeed later unchanged: the cluster could not answer
    /// now (a quorum not met, an election, an overloaded or unreachable node). Final errors
    /// (bad input, `READONLY`) fail the same way however often they are retried.
    ///
    /// ```
    /// use ringkv::proto::ClientError;
    /// assert!(ClientError::NotPrimary { primary: None, epoch: 0 }.retryable());
    /// assert!(!ClientError::ReadOnly { primary: None }.retryable());
    /// ```
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ClientError::QuorumFailed { .. }
                | ClientError::Overloaded { .. }
                | ClientError::Unavailable(_)
                | ClientError::NotPrimary { .. }
                | ClientError::Electing
                | ClientError::LeaseExpired
                | ClientError::Gathering
                | ClientError::NoReplicas { .. }
        )
    }

    /// Whether the request was refused before anything was written, because of a state that
    /// passes (an election, a lease, a first primary gathering, replicas that answer but are
    /// still catching up, a ring this node has not fully learned yet, see
    /// [`Unavailable::nothing_written`]): sending it again cannot apply it twice. Nodes retry these
    /// themselves within the request's deadline; `NOREPLICAS` with too few replicas even
    /// counting those catching up is answered at once, as Redis does.
    ///
    /// ```
    /// use ringkv::proto::{ClientError, Unavailable};
    /// assert!(ClientError::Electing.passing_refusal());
    /// // A primary that did not answer may have applied the write.
    /// assert!(!ClientError::Unavailable(Unavailable::PrimaryTimedOut).passing_refusal());
    /// // A node that restarted and has not yet heard that the key's replicas are up.
    /// assert!(ClientError::Unavailable(Unavailable::NoReplicaUp).passing_refusal());
    /// ```
    pub fn passing_refusal(&self) -> bool {
        matches!(
            self,
            ClientError::NotPrimary { .. }
                | ClientError::Electing
                | ClientError::LeaseExpired
                | ClientError::Gathering
        ) || matches!(self, ClientError::NoReplicas { needed, online, syncing }
                if online + syncing >= *needed)
            || matches!(self, ClientError::Unavailable(u) if u.nothing_written())
    }

    /// A stable name of the variant, for machine-readable output (`ringctl -o json`).
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::BadKey { .. } => "bad_key",
            ClientError::ValueTooLarge { .. } => "value_too_large",
            ClientError::BadQuorum { .. } => "bad_quorum",
            ClientError::QuorumFailed { .. } => "quorum_failed",
            ClientError::Overloaded { .. } => "overloaded",
            ClientError::BadContext(_) => "bad_context",
            ClientError::ReadOnly { .. } => "readonly",
            ClientError::Unavailable(_) => "unavailable",
            ClientError::BadRequest(_) => "bad_request",
            ClientError::BadRange(_) => "bad_range",
            ClientError::NotPrimary { .. } => "not_primary",
            ClientError::Update(_) => "update",
            ClientError::Electing => "electing",
            ClientError::LeaseExpired => "lease_expired",
            ClientError::Gathering => "gathering",
            ClientError::NoReplicas { .. } => "no_replicas",
        }
    }
}

/// What a coordinator asks a replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Be the first replica of this write: make its one new dot, store it, return the result.
    Write {
        /// The key's token.
        token: u64,
        /// The key.
        key: Vec<u8>,
        /// The value, or `None` for a tombstone.
        value: Option<Vec<u8>>,
        /// What the client saw; `None` for a blind write.
        context: Option<VersionVector>,
        /// The coordinator's clock when it took the request.
        ts: Timestamp,
    },
    /// Merge this record into yours.
    Replicate {
        /// The key's token.
        token: u64,
        /// The key.
        key: Vec<u8>,
        /// The record made by the first replica.
        record: Record,
    },
    /// Keep this record as a hint for `owner`, a replica that is down, and deliver it later.
    Hint {
        /// The replica the record is meant for.
        owner: String,
        /// The key's token.
        token: u64,
        /// The key.
        key: Vec<u8>,
        /// The record made by the first replica.
        record: Record,
    },
    /// Take over these keys: this node replicates their range now (ownership transfer).
    Handoff {
        /// (token, key, record) of each key.
        entries: Vec<(u64, Vec<u8>, Record)>,
    },
    /// Send what you hold for this key.
    Read {
        /// The key's token.
        token: u64,
        /// The key.
        key: Vec<u8>,
    },
    /// A client request for a primary-mode key, forwarded to the key's primary.
    Forward(ClientRequest),
    /// A primary-mode replication message.
    /// With the sender's ring id: nodes whose rings differ could disagree on a key's shard, so
    /// they refuse each other's replication messages until their rings agree.
    Repl(repl::ReplRequest, u64),
    /// One step of a Merkle-tree exchange for the range `(start, end]`.
    Exchange {
        /// The initiator's session id.
        session: u64,
        /// Range start (exclusive).
        start: u64,
        /// Range end (inclusive).
        end: u64,
        /// The step.
        msg: ExchangeMsg,
    },
    /// Merge my range table into yours, and answer with yours if it still differs (one call
    /// is a push and a pull).
    Table {
        /// The caller's whole table.
        table: RangeTable,
    },
    /// Which nodes are in your ring? Asked by a node that restarted with members it saved and
    /// gossip has not mentioned yet (one may have left meanwhile).
    Members,
    /// Send the live keys you hold with tokens in `from..=upto`, in token order, reading at
    /// most `limit` stored entries.
    Keys {
        /// First token.
        from: u64,
        /// Last token.
        upto: u64,
        /// Most stored entries read.
        limit: u32,
    },
}

/// A replica's answer to a [`PeerRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerReply {
    /// The record after the new dot was added.
    Written(Record),
    /// The record was merged and stored.
    Replicated,
    /// What the replica holds, if anything.
    Read(Option<Record>),
    /// The responder's next exchange step; `None` once it has nothing more to say.
    Exchange(Option<ExchangeMsg>),
    /// The answer to a forwarded client request.
    Forwarded(Result<ClientResponse, ClientError>),
    /// The answer to a replication message.
    Repl(repl::ReplReply),
    /// The peer refused the request.
    Failed(Refusal),
    /// The responder's range table after merging the caller's, if it differs from the
    /// caller's.
    Table(Option<RangeTable>),
    /// The names of the responder's ring members, when its own view is settled (it is up and
    /// holds no saved member gossip has not confirmed); `None` otherwise.
    Members(Option<Vec<String>>),
    /// Live keys with their tokens, in token order, and the token through which the list is
    /// complete.
    Keys {
        /// (token, key) of each live key.
        keys: Vec<(u64, Vec<u8>)>,
        /// Every live key held with a token from the request's `from` up to this one is
        /// listed.
        through: u64,
    },
}
