//! The digest of a node's view: its live member identities and the status each announced,
//! stamped on every foca header so that a node learns within one exchange that a peer's view
//! differs, and split into [`BUCKETS`] buckets so that a sync exchanges only the members (and
//! status records) of the buckets where two views differ.
//!
//! Each live identity (alive or suspect, ourselves included) contributes one element: the
//! hash of the identity, XORed with a hash of the status record held for that very identity
//! (or of "no record"). The identity hash alone picks the bucket, so a member sits in the
//! same bucket on every node whatever status they hold for it.
//!
//! Nodes of the previous build digest identities only. We keep that digest as well: a peer
//! whose digest (or bucket) equals our identity-only one is such a node agreeing with us on
//! identities, and starts no sync. Our own elements never equal the identity-only ones (the
//! status part is never zero), so two nodes of this build are never mistaken for that case.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::identity::NodeId;
use crate::status::NodeStatus;

/// How many buckets the live member set is split into.
pub(crate) const BUCKETS: usize = 64;

/// Bytes of the digest after each foca header.
pub(crate) const DIGEST_LEN: usize = 8;

/// The digest that stands for "unknown": what a datagram of the previous protocol version
/// is given on arrival. A view's digest is never this value, and seeing it starts no sync.
pub const NO_DIGEST: u64 = 0;

/// The status a node holds for one identity, as far as the digest is concerned: the
/// version and status of the record announced by that very identity, `None` if none.
pub(crate) type StatusMark = Option<(u64, NodeStatus)>;

/// One identity's contribution to the identity-only digest: equal identities hash equal on
/// every node, and on nodes of the previous build.
fn element(id: &NodeId) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&(id.name.len() as u64).to_be_bytes());
    h.update(id.name.as_bytes());
    h.update(id.addr.to_string().as_bytes());
    h.update(&[0]);
    h.update(id.zone.as_deref().unwrap_or("").as_bytes());
    h.update(&[0]);
    h.update(&id.bump.to_be_bytes());
    first_word(h.finalize())
}

/// The status part of an element; never zero, so that a full element never equals the
/// identity-only one.
fn status_element(id_hash: u64, mark: StatusMark) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"ringkv status");
    h.update(&id_hash.to_be_bytes());
    match mark {
        None => {
            h.update(&[0]);
        }
        Some((version, status)) => {
            let code = match status {
                NodeStatus::Joining => 1u8,
                NodeStatus::Up => 2,
                NodeStatus::Leaving => 3,
            };
            h.update(&[code]);
            h.update(&version.to_be_bytes());
        }
    }
    first_word(h.finalize()).max(1)
}

fn first_word(hash: blake3::Hash) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_be_bytes(first)
}

fn bucket_of(hash: u64) -> usize {
    (hash % BUCKETS as u64) as usize
}

/// What one live identity contributes.
#[derive(Debug, Clone)]
struct Entry {
    id: NodeId,
    id_hash: u64,
    status_hash: u64,
}

impl Entry {
    fn new(id: &NodeId, mark: StatusMark) -> Self {
        let id_hash = element(id);
        Self {
            id: id.clone(),
            id_hash,
            status_hash: status_element(id_hash, mark),
        }
    }

    /// XORs this entry into (or out of) both bucket arrays.
    fn toggle(&self, ids: &mut [u64; BUCKETS], full: &mut [u64; BUCKETS]) {
        let bucket = bucket_of(self.id_hash);
        ids[bucket] ^= self.id_hash;
        full[bucket] ^= self.id_hash ^ self.status_hash;
    }
}

/// The view's digests, kept up to date one identity or status at a time.
#[derive(Debug, Clone)]
pub(crate) struct ViewDigest {
    /// The live identity at each address (foca keys members by address).
    live: BTreeMap<SocketAddr, Entry>,
    /// Buckets of identities only (what the previous build computes), ourselves left out.
    ids: [u64; BUCKETS],
    /// Buckets of identities and statuses, ourselves left out.
    full: [u64; BUCKETS],
    me: Entry,
}

/// Folds 64-bit bucket digests to the 32 bits sent in a sync request or reply.
fn to_wire(buckets: &[u64; BUCKETS]) -> Vec<u32> {
    buckets.iter().map(|b| (b >> 32) as u32).collect()
}

/// XOR of all buckets, never [`NO_DIGEST`].
fn total_of(buckets: &[u64; BUCKETS]) -> u64 {
    match buckets.iter().fold(0, |acc, b| acc ^ b) {
        NO_DIGEST => 1,
        total => total,
    }
}

impl ViewDigest {
    pub(crate) fn new(me: &NodeId, mark: StatusMark) -> Self {
        Self {
            live: BTreeMap::new(),
            ids: [0; BUCKETS],
            full: [0; BUCKETS],
            me: Entry::new(me, mark),
        }
    }

    /// Records that `addr` now holds the live identity `id` with the status `mark`, or
    /// (`None`) no live one.
    pub(crate) fn set(&mut self, addr: SocketAddr, id: Option<(&NodeId, StatusMark)>) {
        if let Some(old) = self.live.remove(&addr) {
            old.toggle(&mut self.ids, &mut self.full);
        }
        if let Some((id, mark)) = id {
            let entry = Entry::new(id, mark);
            entry.toggle(&mut self.ids, &mut self.full);
            self.live.insert(addr, entry);
        }
    }

    /// Recomputes the status part of the live identity at `addr`, if any, from `mark_of`.
    pub(crate) fn refresh_status(
        &mut self,
        addr: &SocketAddr,
        mark_of: impl FnOnce(&NodeId) -> StatusMark,
    ) {
        let Some(entry) = self.live.get_mut(addr) else {
            return;
        };
        let status_hash = status_element(entry.id_hash, mark_of(&entry.id));
        if status_hash != entry.status_hash {
            self.full[bucket_of(entry.id_hash)] ^= entry.status_hash ^ status_hash;
            entry.status_hash = status_hash;
        }
    }

    /// Whether `id` is the live identity we hold at its address.
    pub(crate) fn holds(&self, id: &NodeId) -> bool {
        self.live.get(&id.addr).is_some_and(|e| e.id == *id)
    }

    /// Whether the live identity at `addr` falls into one of the flagged buckets.
    pub(crate) fn in_buckets(&self, addr: &SocketAddr, flagged: &[bool; BUCKETS]) -> bool {
        self.live
            .get(addr)
            .is_some_and(|e| flagged[bucket_of(e.id_hash)])
    }

    /// Whether our own identity falls into one of the flagged buckets.
    pub(crate) fn me_in_buckets(&self, flagged: &[bool; BUCKETS]) -> bool {
        flagged[bucket_of(self.me.id_hash)]
    }

    /// Follows a change of our own identity (a rejoin under a new bump) or status.
    pub(crate) fn set_me(&mut self, me: &NodeId, mark: StatusMark) {
        if self.me.id != *me {
            self.me = Entry::new(me, mark);
        } else {
            self.me.status_hash = status_element(self.me.id_hash, mark);
        }
    }

    fn with_me(&self) -> ([u64; BUCKETS], [u64; BUCKETS]) {
        let (mut ids, mut full) = (self.ids, self.full);
        self.me.toggle(&mut ids, &mut full);
        (ids, full)
    }

    /// The digest of the whole view, ourselves included, as stamped on headers; never
    /// [`NO_DIGEST`].
    pub(crate) fn total(&self) -> u64 {
        total_of(&self.with_me().1)
    }

    /// The digest a node of the previous build with our live identities stamps.
    pub(crate) fn identity_total(&self) -> u64 {
        total_of(&self.with_me().0)
    }

    /// Bucket digests as sent in a sync request or reply.
    pub(crate) fn wire(&self) -> Vec<u32> {
        to_wire(&self.with_me().1)
    }

    /// Which buckets differ from a peer's `wire` digests. A bucket equal to our
    /// identity-only one is a node of the previous build that agrees on its identities:
    /// nothing it could apply differs there.
    pub(crate) fn differing(&self, theirs: &[u32]) -> [bool; BUCKETS] {
        let (ids, full) = self.with_me();
        let mut flagged = [false; BUCKETS];
        let ours = to_wire(&full).into_iter().zip(to_wire(&ids));
        for ((flag, (full, ids)), theirs) in flagged.iter_mut().zip(ours).zip(theirs) {
            *flag = *theirs != full && *theirs != ids;
        }
        flagged
    }
}

/// What the codec shares with the membership: the digests a peer may stamp when it agrees
/// with us (ours, and the identity-only one of a node of the previous build), and the first
/// peer seen stamping another one since the membership last looked.
#[derive(Debug, Default)]
struct DigestSlot {
    own: u64,
    own_identities: u64,
    differing: Option<NodeId>,
}

/// The codec's side of the digest; foca owns the codec, hence the shared slot. Only the one
/// owner of the `Foca` value touches it, so the lock is never contended.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedDigest(Arc<Mutex<DigestSlot>>);

impl SharedDigest {
    fn lock(&self) -> MutexGuard<'_, DigestSlot> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn own(&self) -> u64 {
        self.lock().own
    }

    /// Sets the digest we stamp (`own`) and the one a node of the previous build that
    /// agrees with us stamps (`identities`).
    pub(crate) fn set_own(&self, own: u64, identities: u64) {
        let mut slot = self.lock();
        slot.own = own;
        slot.own_identities = identities;
    }

    /// Notes a header's digest from `src`; [`NO_DIGEST`] tells nothing.
    pub(crate) fn observe(&self, src: &NodeId, digest: u64) {
        let mut slot = self.lock();
        let agrees = digest == NO_DIGEST || digest == slot.own || digest == slot.own_identities;
        if !agrees && slot.differing.is_none() {
            slot.differing = Some(src.clone());
        }
    }

    /// The first peer seen with a different digest, since the last call.
    pub(crate) fn take_differing(&self) -> Option<NodeId> {
        self.lock().differing.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, port: u16) -> NodeId {
        NodeId::new(name, SocketAddr::from(([10, 0, 0, 1], port)))
    }

    #[test]
    fn digests_agree_on_equal_views_and_locate_the_difference() {
        let (a, b) = (id("a", 1), id("b", 2));
        let mut on_a = ViewDigest::new(&a, None);
        let mut on_b = ViewDigest::new(&b, None);
        on_a.set(b.addr, Some((&b, None)));
        on_b.set(a.addr, Some((&a, None)));
        assert_eq!(on_a.total(), on_b.total());
        assert_eq!(on_a.differing(&on_b.wire()), [false; BUCKETS]);

        let c = id("c", 3);
        on_a.set(c.addr, Some((&c, None)));
        assert_ne!(on_a.total(), on_b.total());
        let flagged = on_a.differing(&on_b.wire());
        assert_eq!(flagged.iter().filter(|f| **f).count(), 1);
        assert!(on_a.in_buckets(&c.addr, &flagged));
        assert!(on_a.holds(&c));
        assert!(!on_a.holds(&c.clone().with_bump(1)));

        // Down, then back under a new bump: the old identity no longer counts.
        on_a.set(c.addr, None);
        assert_eq!(on_a.total(), on_b.total());
        on_a.set(c.addr, Some((&c.clone().with_bump(1), None)));
        on_b.set(c.addr, Some((&c, None)));
        assert_ne!(on_a.total(), on_b.total());
    }

    #[test]
    fn views_that_differ_only_in_a_status_differ_in_that_members_bucket() {
        let (a, b, c) = (id("a", 1), id("b", 2), id("c", 3));
        let mut on_a = ViewDigest::new(&a, Some((1, NodeStatus::Up)));
        let mut on_b = ViewDigest::new(&b, None);
        on_a.set(b.addr, Some((&b, None)));
        on_b.set(a.addr, Some((&a, Some((1, NodeStatus::Up)))));
        on_a.set(c.addr, Some((&c, Some((1, NodeStatus::Joining)))));
        on_b.set(c.addr, Some((&c, Some((1, NodeStatus::Joining)))));
        assert_eq!(on_a.total(), on_b.total());

        // b learns that c is up; a does not.
        on_b.refresh_status(&c.addr, |_| Some((2, NodeStatus::Up)));
        assert_ne!(on_a.total(), on_b.total());
        assert_eq!(on_a.identity_total(), on_b.identity_total());
        let flagged = on_a.differing(&on_b.wire());
        assert_eq!(flagged.iter().filter(|f| **f).count(), 1);
        assert!(on_a.in_buckets(&c.addr, &flagged));
        on_a.refresh_status(&c.addr, |_| Some((2, NodeStatus::Up)));
        assert_eq!(on_a.total(), on_b.total());

        // Our own status counts as well.
        on_a.set_me(&a, Some((2, NodeStatus::Leaving)));
        assert_ne!(on_a.total(), on_b.total());
        let flagged = on_b.differing(&on_a.wire());
        assert!(on_b.in_buckets(&a.addr, &flagged));
        assert!(on_a.me_in_buckets(&on_a.differing(&on_b.wire())));
    }

    #[test]
    fn a_node_of_the_previous_build_that_agrees_on_identities_differs_nowhere() {
        let (a, b) = (id("a", 1), id("b", 2));
        let mut ours = ViewDigest::new(&a, Some((3, NodeStatus::Up)));
        ours.set(b.addr, Some((&b, Some((2, NodeStatus::Up)))));
        // The previous build's buckets: identities only.
        let mut old = [0u64; BUCKETS];
        for member in [&a, &b] {
            let hash = element(member);
            old[bucket_of(hash)] ^= hash;
        }
        assert_eq!(ours.identity_total(), total_of(&old));
        assert_ne!(ours.total(), total_of(&old));
        assert_eq!(ours.differing(&to_wire(&old)), [false; BUCKETS]);

        let shared = SharedDigest::default();
        shared.set_own(ours.total(), ours.identity_total());
        shared.observe(&b, total_of(&old));
        shared.observe(&b, NO_DIGEST);
        assert_eq!(shared.take_differing(), None);
        shared.observe(&b, total_of(&old) ^ 1);
        assert_eq!(shared.take_differing(), Some(b));
    }
}
