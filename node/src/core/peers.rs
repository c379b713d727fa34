//! Ring members remembered across a restart, as Cassandra keeps its peers table: a node that
//! starts again places keys on the ring it left, not on the few members gossip has told it
//! about so far. Otherwise two restarted nodes could agree on a smaller ring, map a key to
//! another preference list and elect a second primary for it.

use super::calls::{CallId, Owner};
use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::store::Store;

/// Where the rotation over live peers for members questions starts (any value serves; this
/// one keeps recorded simulator runs replaying unchanged).
const MEMBERS_ROTATION_START: u64 = 1 << 56;

/// Store metadata name of the saved ring members.
const META: &str = "ring-peers";

/// At most this many members are saved or loaded (a bound on a file read at start).
const MAX_PEERS: usize = 4096;

/// One other ring member, as saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Peer {
    pub name: String,
    pub addr: SocketAddr,
    pub zone: Option<String>,
}

/// Members loaded at start that gossip has not mentioned yet, and what was saved last.
#[derive(Debug)]
pub(super) struct Peers {
    /// Not yet heard of through gossip: they stay in the ring until then or until `until_ms`.
    remembered: BTreeMap<String, Peer>,
    /// How long a remembered member stays without news: as long as gossip keeps a member
    /// that went down (after that, every node's ring drops it too).
    keep_ms: u64,
    until_ms: Option<u64>,
    saved: Vec<Peer>,
    calls: u64,
}

impl Peers {
    /// What the store holds; nothing (a first start) when it holds nothing readable.
    pub fn load(store: &dyn Store, me: &str, keep_ms: u64) -> Self {
        let saved: Vec<Peer> = match store.meta_get(META) {
            Ok(Some(bytes)) => postcard::from_bytes(&bytes).unwrap_or_else(|e| {
                tracing::warn!("ignoring the saved ring members: {e}");
                Vec::new()
            }),
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::warn!("cannot read the saved ring members: {e}");
                Vec::new()
            }
        };
        let remembered = saved
            .iter()
            .filter(|p| p.name != me)
            .take(MAX_PEERS)
            .map(|p| (p.name.clone(), p.clone()))
            .collect();
        Self {
            remembered,
            keep_ms,
            until_ms: None,
            saved,
            calls: 0,
        }
    }

    /// Called with every step's clock: true when the remembered members just expired (the
    /// ring must be rebuilt without them).
    pub fn expire(&mut self, now_ms: u64) -> bool {
        let until = *self
            .until_ms
            .get_or_insert(now_ms.saturating_add(self.keep_ms));
        if now_ms < until || self.remembered.is_empty() {
            return false;
        }
        tracing::info!(
            count = self.remembered.len(),
            "forgetting ring members remembered from before the restart: gossip never mentioned them"
        );
        self.remembered.clear();
        true
    }

    /// Gossip knows `name`: from now on its state decides.
    pub fn confirm(&mut self, name: &str) {
        self.remembered.remove(name);
    }

    /// Members remembered and not yet confirmed.
    pub fn remembered(&self) -> impl Iterator<Item = &Peer> {
        self.remembered.values()
    }

    /// Whether members gossip has not confirmed are still in the ring.
    pub fn unsettled(&self) -> bool {
        !self.remembered.is_empty()
    }

    /// A settled peer's ring: forget the remembered members it lacks (they left, or stayed
    /// down long enough for gossip to drop them). Says whether any was forgotten.
    pub fn refute(&mut self, ring: &[String]) -> bool {
        let before = self.remembered.len();
        self.remembered.retain(|name, _| ring.contains(name));
        let gone = before - self.remembered.len();
        if gone > 0 {
            tracing::info!(
                count = gone,
                "forgetting saved ring members a peer's ring lacks"
            );
        }
        gone > 0
    }

    /// The next members question: its call id, and the turn that picks the live peer to ask
    /// (one after another).
    pub fn next_call(&mut self) -> (CallId, u64) {
        self.calls = self.calls.wrapping_add(1) & (MEMBERS_ROTATION_START - 1);
        let call = CallId {
            owner: Owner::Members,
            seq: self.calls,
        };
        (call, self.calls | MEMBERS_ROTATION_START)
    }

    /// Save the ring's other members when they changed (synced with the next group commit).
    pub fn save(&mut self, store: &dyn Store, peers: Vec<Peer>) {
        if peers == self.saved || peers.len() > MAX_PEERS {
            return;
        }
        let saved = postcard::to_stdvec(&peers)
            .map_err(|e| e.to_string())
            .and_then(|bytes| store.meta_put(META, &bytes).map_err(|e| e.to_string()));
        match saved {
            Ok(()) => self.saved = peers,
            Err(e) => tracing::warn!("cannot save the ring members: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn peer(name: &str, port: u16) -> Peer {
        Peer {
            name: name.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            zone: None,
        }
    }

    #[test]
    fn saved_members_come_back_until_confirmed_or_expired() {
        let store = MemoryStore::default();
        let mut first = Peers::load(&store, "a", 1_000);
        assert_eq!(first.remembered().count(), 0);
        first.save(&store, vec![peer("b", 1), peer("c", 2)]);

        let mut again = Peers::load(&store, "a", 1_000);
        let names: Vec<_> = again.remembered().map(|p| p.name.clone()).collect();
        assert_eq!(names, ["b", "c"]);
        again.confirm("b");
        let names: Vec<_> = again.remembered().map(|p| p.name.clone()).collect();
        assert_eq!(names, ["c"]);
        assert!(!again.expire(5_000), "the clock starts at the first step");
        assert!(!again.expire(5_999));
        assert!(again.expire(6_000));
        assert_eq!(again.remembered().count(), 0);
        assert!(!again.expire(7_000), "nothing left to forget");
    }

    #[test]
    fn a_settled_peers_ring_refutes_members_that_left() {
        let store = MemoryStore::default();
        Peers::load(&store, "a", 1_000).save(&store, vec![peer("b", 1), peer("c", 2)]);
        let mut again = Peers::load(&store, "a", 1_000);
        assert!(again.unsettled());
        assert!(!again.refute(&["a".into(), "b".into(), "c".into()]));
        assert!(again.refute(&["a".into(), "b".into(), "d".into()]));
        let names: Vec<_> = again.remembered().map(|p| p.name.clone()).collect();
        assert_eq!(names, ["b"], "c left: the peer's ring lacks it");
        again.confirm("b");
        assert!(!again.unsettled());
    }

    #[test]
    fn unreadable_saved_members_start_empty() {
        let store = MemoryStore::default();
        store.meta_put(META, &[0xff, 0xff, 0xff]).unwrap();
        assert_eq!(Peers::load(&store, "a", 1_000).remembered().count(), 0);
    }
}
