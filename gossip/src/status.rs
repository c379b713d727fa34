//! Node status (joining, up, leaving) carried as a versioned foca custom broadcast.
//!
//! Each node owns one status record, `{ id, version, status }`; a record replaces another of
//! the same name when its `(bump, version)` is higher, so a restarted node (higher bump)
//! starts afresh and a newer status invalidates an older one still being disseminated.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use foca::{BroadcastHandler, Invalidates};
use serde::{Deserialize, Serialize};

use crate::digest::StatusMark;
use crate::identity::{IdentityError, NodeId};

/// Where a node stands in its life cycle, as told to the whole cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeStatus {
    /// Member of the cluster, not yet serving its share of the ring.
    Joining,
    /// Serving. The status of a live member that never said otherwise.
    Up,
    /// Handing its data off before going away.
    Leaving,
}

/// The broadcast item: one node's status at one version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StatusUpdate {
    pub(crate) id: NodeId,
    pub(crate) version: u64,
    pub(crate) status: NodeStatus,
}

/// Why a status broadcast item was rejected.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The item is not a postcard-encoded status record.
    #[error("undecodable node status broadcast: {0}")]
    Decode(#[from] postcard::Error),
    /// Bytes follow the record.
    #[error("node status broadcast has {0} trailing bytes")]
    TrailingBytes(usize),
    /// The record's identity breaks the identity rules.
    #[error("node status broadcast names an invalid identity: {0}")]
    Identity(#[from] IdentityError),
}

impl StatusUpdate {
    /// Ordering of records of one name: a higher bump wins, then a higher version.
    fn rank(&self) -> (u64, u64) {
        (self.id.bump, self.version)
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(self)
    }

    fn decode(data: &[u8]) -> Result<Self, StatusError> {
        let (update, rest) = Self::decode_prefix(data)?;
        if !rest.is_empty() {
            return Err(StatusError::TrailingBytes(rest.len()));
        }
        Ok(update)
    }

    /// Decodes one record at the start of `data` (records are self-delimiting), and the
    /// bytes after it.
    pub(crate) fn decode_prefix(data: &[u8]) -> Result<(Self, &[u8]), StatusError> {
        let (update, rest): (Self, _) = postcard::take_from_bytes(data)?;
        update.id.validate()?;
        Ok((update, rest))
    }
}

/// Dissemination key of a status record: a record invalidates older ones of the same name.
#[derive(Debug)]
pub(crate) struct StatusKey {
    name: String,
    rank: (u64, u64),
}

impl Invalidates for StatusKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.name == other.name && self.rank >= other.rank
    }
}

/// What the handler knows: the latest record of every other node, bounded.
#[derive(Debug)]
struct StatusTable {
    me: String,
    /// Rank of our own latest record, to notice a peer claiming a newer one about us.
    own_rank: (u64, u64),
    records: BTreeMap<String, StatusUpdate>,
    capacity: usize,
    /// Effective status changes not yet reported, in arrival order.
    changes: Vec<(NodeId, NodeStatus)>,
    /// Highest rank a peer claimed for our own name above ours, if any.
    refute: Option<(u64, u64)>,
    /// Addresses of identities whose record changed since the membership last looked: the
    /// digest's status part of whatever live identity is there must be recomputed.
    touched: Vec<SocketAddr>,
    /// While set, broadcast data goes to this member only.
    only_to: Option<NodeId>,
}

/// foca's broadcast handler for status records, sharing its table with [`crate::Membership`].
///
/// foca owns its handler and offers no way back to it, hence the shared table; it is only
/// ever touched by the one owner of the `Foca` value, so the lock is never contended.
#[derive(Debug, Clone)]
pub(crate) struct StatusBoard {
    table: Arc<Mutex<StatusTable>>,
}

impl StatusBoard {
    pub(crate) fn new(me: &NodeId, own_version: u64, capacity: usize) -> Self {
        Self {
            table: Arc::new(Mutex::new(StatusTable {
                me: me.name.clone(),
                own_rank: (me.bump, own_version),
                records: BTreeMap::new(),
                capacity,
                changes: Vec::new(),
                refute: None,
                touched: Vec::new(),
                only_to: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, StatusTable> {
        // A panic cannot leave the table half-updated in a harmful way; keep serving.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the rank of our own latest record.
    pub(crate) fn set_own_rank(&self, bump: u64, version: u64) {
        self.lock().own_rank = (bump, version);
    }

    /// The status `id` announced for this very identity; `None` if it announced none
    /// (records of an earlier bump do not count).
    pub(crate) fn status_of(&self, id: &NodeId) -> Option<NodeStatus> {
        let table = self.lock();
        let record = table.records.get(&id.name)?;
        if record.id.bump == id.bump {
            return Some(record.status);
        }
        // A later incarnation of the same node left: the one we know is gone as well (a
        // member that never saw the rejoin must still drop the node from its ring).
        (record.id.bump > id.bump && record.status == NodeStatus::Leaving)
            .then_some(NodeStatus::Leaving)
    }

    /// The version and status of the record `id` announced for this very identity (the
    /// digest's view of it: records of another bump or address do not count).
    pub(crate) fn mark_of(&self, id: &NodeId) -> StatusMark {
        self.lock()
            .records
            .get(&id.name)
            .filter(|record| record.id == *id)
            .map(|record| (record.version, record.status))
    }

    /// The latest record we hold of the node named `name`, whatever its identity.
    pub(crate) fn record_named(&self, name: &str) -> Option<StatusUpdate> {
        self.lock().records.get(name).cloned()
    }

    /// Takes a record a peer sent outside foca (a membership sync): whether it was news.
    pub(crate) fn receive_from_peer(&self, update: StatusUpdate) -> bool {
        self.lock().receive(update, true).is_some()
    }

    /// Addresses whose record changed since the last call.
    pub(crate) fn take_touched(&self) -> Vec<SocketAddr> {
        std::mem::take(&mut self.lock().touched)
    }

    /// Effective status changes seen since the last call.
    pub(crate) fn take_changes(&self) -> Vec<(NodeId, NodeStatus)> {
        std::mem::take(&mut self.lock().changes)
    }

    /// The highest rank a peer claimed for our name above ours, since the last call.
    pub(crate) fn take_refute(&self) -> Option<(u64, u64)> {
        self.lock().refute.take()
    }

    /// Restricts (or with `None`, stops restricting) which member broadcasts go to.
    pub(crate) fn set_only_to(&self, member: Option<NodeId>) {
        self.lock().only_to = member;
    }

    /// Encoded records of members that announced they are leaving: re-sent to a member that
    /// comes up, since it may have missed the leave while cut off and would otherwise keep a
    /// departed node in its ring.
    pub(crate) fn leaving_records(&self) -> Vec<Vec<u8>> {
        self.lock()
            .records
            .values()
            .filter(|r| r.status == NodeStatus::Leaving)
            .filter_map(|r| r.encode().ok())
            .collect()
    }

    /// Forgets records whose name no member in `known` carries.
    pub(crate) fn retain_names<'a>(&self, known: impl Iterator<Item = &'a str>) {
        let known: std::collections::BTreeSet<&str> = known.collect();
        self.lock()
            .records
            .retain(|name, _| known.contains(name.as_str()));
    }
}

impl StatusTable {
    fn receive(&mut self, update: StatusUpdate, from_peer: bool) -> Option<StatusKey> {
        let key = StatusKey {
            name: update.id.name.clone(),
            rank: update.rank(),
        };
        if update.id.name == self.me {
            if !from_peer {
                // Our own record, (re-)added for dissemination.
                return Some(key);
            }
            if update.rank() > self.own_rank {
                // Someone claims a newer status for us than we have: stale news of an earlier
                // run with the same bump. Answer with a newer record of our own.
                self.refute = self.refute.max(Some(update.rank()));
            }
            return None;
        }
        let previous = self.records.get(&update.id.name);
        if !from_peer && previous.is_some_and(|p| p.rank() == update.rank()) {
            // A record we hold, re-added by us for a member that may have missed it.
            return Some(key);
        }
        if previous.is_some_and(|p| p.rank() >= update.rank()) {
            return None;
        }
        if previous.is_none() && self.records.len() >= self.capacity {
            tracing::debug!(name = %update.id.name, "status table full, dropping status");
            return None;
        }
        // A record of another bump is another identity's: the new one was `Up` until now (a
        // node declared down that rejoined while leaving is leaving again, which the ring
        // must hear of).
        let before = previous
            .filter(|p| p.id.bump == update.id.bump)
            .map_or(NodeStatus::Up, |p| p.status);
        if before != update.status {
            self.changes.push((update.id.clone(), update.status));
        }
        if let Some(previous) = previous.filter(|p| p.id.addr != update.id.addr) {
            self.touched.push(previous.id.addr);
        }
        self.touched.push(update.id.addr);
        self.records.insert(update.id.name.clone(), update);
        Some(key)
    }
}

impl BroadcastHandler<NodeId> for StatusBoard {
    type Key = StatusKey;
    type Error = StatusError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&NodeId>,
    ) -> Result<Option<StatusKey>, StatusError> {
        let update = StatusUpdate::decode(data)?;
        Ok(self.lock().receive(update, sender.is_some()))
    }

    fn should_add_broadcast_data(&self, member: &NodeId) -> bool {
        self.lock()
            .only_to
            .as_ref()
            .is_none_or(|only| only == member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, bump: u64) -> NodeId {
        NodeId::new(name, SocketAddr::from(([10, 0, 0, 1], 7000))).with_bump(bump)
    }

    fn item(name: &str, bump: u64, version: u64, status: NodeStatus) -> Vec<u8> {
        StatusUpdate {
            id: id(name, bump),
            version,
            status,
        }
        .encode()
        .unwrap()
    }

    fn board() -> StatusBoard {
        StatusBoard::new(&id("me", 1), 1, 4)
    }

    #[test]
    fn accepts_newer_and_drops_stale_records() {
        let mut board = board();
        let peer = id("peer", 9);
        let recv = |b: &mut StatusBoard, data: Vec<u8>| b.receive_item(&data, Some(&peer));
        assert!(recv(&mut board, item("a", 1, 2, NodeStatus::Leaving))
            .unwrap()
            .is_some());
        assert!(recv(&mut board, item("a", 1, 2, NodeStatus::Leaving))
            .unwrap()
            .is_none());
        assert!(recv(&mut board, item("a", 1, 1, NodeStatus::Up))
            .unwrap()
            .is_none());
        assert_eq!(board.status_of(&id("a", 1)), Some(NodeStatus::Leaving));
        // A restart (higher bump) wins over any version of the earlier run.
        assert!(recv(&mut board, item("a", 2, 0, NodeStatus::Joining))
            .unwrap()
            .is_some());
        assert_eq!(board.status_of(&id("a", 1)), None);
        assert_eq!(board.status_of(&id("a", 2)), Some(NodeStatus::Joining));
        assert_eq!(
            board.take_changes(),
            vec![
                (id("a", 1), NodeStatus::Leaving),
                (id("a", 2), NodeStatus::Joining)
            ]
        );
    }

    /// A leaving node declared down that rejoins under a new bump republishes `Leaving`: for
    /// the new identity that is a change (it counted as up meanwhile), so the ring hears of it.
    #[test]
    fn a_leaving_record_under_a_new_bump_is_a_change() {
        let mut board = board();
        let peer = id("peer", 9);
        let recv = |b: &mut StatusBoard, data: Vec<u8>| b.receive_item(&data, Some(&peer));
        assert!(recv(&mut board, item("a", 1, 2, NodeStatus::Leaving))
            .unwrap()
            .is_some());
        assert_eq!(
            board.take_changes(),
            vec![(id("a", 1), NodeStatus::Leaving)]
        );
        assert!(recv(&mut board, item("a", 2, 2, NodeStatus::Leaving))
            .unwrap()
            .is_some());
        assert_eq!(
            board.take_changes(),
            vec![(id("a", 2), NodeStatus::Leaving)]
        );
        assert_eq!(board.status_of(&id("a", 2)), Some(NodeStatus::Leaving));
    }

    #[test]
    fn accepts_our_own_item_again_but_never_from_a_peer() {
        let mut board = board();
        let data = item("me", 1, 1, NodeStatus::Up);
        assert!(board.receive_item(&data, None).unwrap().is_some());
        assert!(board.receive_item(&data, None).unwrap().is_some());
        assert!(board
            .receive_item(&data, Some(&id("peer", 0)))
            .unwrap()
            .is_none());
        assert_eq!(board.take_refute(), None);
        let newer = item("me", 1, 5, NodeStatus::Leaving);
        assert!(board
            .receive_item(&newer, Some(&id("peer", 0)))
            .unwrap()
            .is_none());
        assert_eq!(board.take_refute(), Some((1, 5)));
        assert!(board.take_changes().is_empty());
    }

    #[test]
    fn rejects_garbage_trailing_bytes_and_bad_identities() {
        let mut board = board();
        let peer = id("peer", 0);
        assert!(board.receive_item(&[0xff; 3], Some(&peer)).is_err());
        let mut data = item("a", 1, 1, NodeStatus::Up);
        data.push(0);
        assert!(matches!(
            board.receive_item(&data, Some(&peer)),
            Err(StatusError::TrailingBytes(1))
        ));
        let bad = item("bad name", 1, 1, NodeStatus::Up);
        assert!(matches!(
            board.receive_item(&bad, Some(&peer)),
            Err(StatusError::Identity(_))
        ));
    }

    #[test]
    fn table_is_bounded() {
        let mut board = board();
        let peer = id("peer", 0);
        for n in 0..10 {
            let _ = board.receive_item(
                &item(&format!("n{n}"), 1, 1, NodeStatus::Joining),
                Some(&peer),
            );
        }
        assert_eq!(board.lock().records.len(), 4);
        board.retain_names(["n0", "n3"].into_iter());
        assert_eq!(board.lock().records.len(), 2);
    }

    #[test]
    fn newer_key_invalidates_older_of_the_same_name_only() {
        let key = |name: &str, rank| StatusKey {
            name: name.to_string(),
            rank,
        };
        assert!(key("a", (1, 2)).invalidates(&key("a", (1, 1))));
        assert!(key("a", (2, 0)).invalidates(&key("a", (1, 9))));
        assert!(!key("a", (1, 1)).invalidates(&key("a", (1, 2))));
        assert!(!key("a", (9, 9)).invalidates(&key("b", (1, 1))));
    }

    #[test]
    fn only_to_restricts_broadcast_targets() {
        let board = board();
        assert!(board.should_add_broadcast_data(&id("x", 0)));
        board.set_only_to(Some(id("y", 0)));
        assert!(!board.should_add_broadcast_data(&id("x", 0)));
        assert!(board.should_add_broadcast_data(&id("y", 0)));
        board.set_only_to(None);
        assert!(board.should_add_broadcast_data(&id("x", 0)));
    }
}
