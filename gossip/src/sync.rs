//! Anti-entropy of membership: a digest of the live member set, stamped on every foca header
//! so that a node learns within one exchange that a peer's view differs, and a push-pull of
//! the members in the buckets where two views differ, bounded in bytes.
//!
//! The digest is an XOR of one hash per live identity (alive or suspect, ourselves
//! included), split into [`BUCKETS`] buckets by hash. Two nodes compare bucket digests and
//! exchange only the members of differing buckets, so a join a node missed costs about
//! `n / BUCKETS` members on the wire, not the whole list.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Buf, BufMut};
use foca::{Codec, Member};
use serde::{Deserialize, Serialize};

use crate::codec::{WireCodec, WireError};
use crate::identity::NodeId;

/// How many buckets the live member set is split into.
pub(crate) const BUCKETS: usize = 64;

/// First byte of a sync datagram. A foca datagram starts with the sender's name length,
/// which is never zero, so the two cannot be confused.
pub(crate) const SYNC_TAG: u8 = 0;

/// Bytes of the digest after each foca header.
pub(crate) const DIGEST_LEN: usize = 8;

/// The digest that stands for "unknown": what a datagram of the previous protocol version
/// is given on arrival. A view's digest is never this value, and seeing it starts no sync.
pub const NO_DIGEST: u64 = 0;

/// The live member set's digest, kept up to date one identity at a time.
#[derive(Debug, Clone)]
pub(crate) struct ViewDigest {
    /// Element hash of the live identity at each address (foca keys members by address).
    live: BTreeMap<SocketAddr, u64>,
    buckets: [u64; BUCKETS],
    /// Our own identity and its element hash.
    me: (NodeId, u64),
}

/// One identity's contribution: equal identities hash equal on every node.
fn element(id: &NodeId) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&(id.name.len() as u64).to_be_bytes());
    h.update(id.name.as_bytes());
    h.update(id.addr.to_string().as_bytes());
    h.update(&[0]);
    h.update(id.zone.as_deref().unwrap_or("").as_bytes());
    h.update(&[0]);
    h.update(&id.bump.to_be_bytes());
    let bytes = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes.as_bytes()[..8]);
    u64::from_be_bytes(first)
}

fn bucket_of(hash: u64) -> usize {
    (hash % BUCKETS as u64) as usize
}

impl ViewDigest {
    pub(crate) fn new(me: &NodeId) -> Self {
        Self {
            live: BTreeMap::new(),
            buckets: [0; BUCKETS],
            me: (me.clone(), element(me)),
        }
    }

    /// Records that `addr` now holds the live identity `id`, or (`None`) no live one.
    pub(crate) fn set(&mut self, addr: SocketAddr, id: Option<&NodeId>) {
        if let Some(old) = self.live.remove(&addr) {
            self.buckets[bucket_of(old)] ^= old;
        }
        if let Some(id) = id {
            let hash = element(id);
            self.buckets[bucket_of(hash)] ^= hash;
            self.live.insert(addr, hash);
        }
    }

    /// Whether `id` is the live identity we hold at its address.
    pub(crate) fn holds(&self, id: &NodeId) -> bool {
        self.live.get(&id.addr) == Some(&element(id))
    }

    /// Whether the live identity at `addr` falls into one of the flagged buckets.
    pub(crate) fn in_buckets(&self, addr: &SocketAddr, flagged: &[bool; BUCKETS]) -> bool {
        self.live.get(addr).is_some_and(|h| flagged[bucket_of(*h)])
    }

    /// Follows a change of our own identity (a rejoin under a new bump).
    pub(crate) fn set_me(&mut self, me: &NodeId) {
        if self.me.0 != *me {
            self.me = (me.clone(), element(me));
        }
    }

    fn with_me(&self) -> [u64; BUCKETS] {
        let mut buckets = self.buckets;
        buckets[bucket_of(self.me.1)] ^= self.me.1;
        buckets
    }

    /// The digest of the whole view, ourselves included, as stamped on headers; never
    /// [`NO_DIGEST`].
    pub(crate) fn total(&self) -> u64 {
        match self.with_me().iter().fold(0, |acc, b| acc ^ b) {
            NO_DIGEST => 1,
            total => total,
        }
    }

    /// Bucket digests as sent in a sync request or reply.
    pub(crate) fn wire(&self) -> Vec<u32> {
        self.with_me().iter().map(|b| (b >> 32) as u32).collect()
    }

    /// Which buckets differ from a peer's `wire` digests.
    pub(crate) fn differing(&self, theirs: &[u32]) -> [bool; BUCKETS] {
        let mut flagged = [false; BUCKETS];
        for ((flag, ours), theirs) in flagged.iter_mut().zip(self.wire()).zip(theirs) {
            *flag = ours != *theirs;
        }
        flagged
    }
}

/// What the codec shares with the membership: the digest to stamp on outgoing headers, and
/// the first peer seen stamping a different one since the membership last looked.
#[derive(Debug, Default)]
struct DigestSlot {
    own: u64,
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

    pub(crate) fn set_own(&self, digest: u64) {
        self.lock().own = digest;
    }

    /// Notes a header's digest from `src`; [`NO_DIGEST`] tells nothing.
    pub(crate) fn observe(&self, src: &NodeId, digest: u64) {
        let mut slot = self.lock();
        if digest != NO_DIGEST && digest != slot.own && slot.differing.is_none() {
            slot.differing = Some(src.clone());
        }
    }

    /// The first peer seen with a different digest, since the last call.
    pub(crate) fn take_differing(&self) -> Option<NodeId> {
        self.lock().differing.take()
    }
}

/// Which step of a push-pull a sync datagram is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum SyncKind {
    /// "Here are my bucket digests": the receiver answers with its members in the buckets
    /// that differ, and its own digests.
    Request,
    /// The answer to a request; the requester applies the members, then pushes its own
    /// members of the buckets that still differ.
    Reply,
    /// Members to apply, nothing to answer.
    Push,
}

#[derive(Debug, Serialize, Deserialize)]
struct SyncHead {
    kind: SyncKind,
    from: NodeId,
    /// [`BUCKETS`] bucket digests in a request or reply; empty in a push.
    buckets: Vec<u32>,
}

/// A decoded sync datagram.
#[derive(Debug)]
pub(crate) struct SyncMessage {
    pub(crate) kind: SyncKind,
    pub(crate) from: NodeId,
    pub(crate) buckets: Vec<u32>,
    pub(crate) members: Vec<Member<NodeId>>,
}

/// Why a sync datagram was rejected.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The datagram does not decode as a sync message.
    #[error("undecodable membership sync: {0}")]
    Decode(#[from] postcard::Error),
    /// A member or the sender breaks the identity rules, or the member list is cut short.
    #[error("membership sync carries a bad member: {0}")]
    Member(#[from] WireError),
    /// The bucket digests are neither absent nor one per bucket.
    #[error("membership sync carries {0} bucket digests, expected 0 or {BUCKETS}")]
    Buckets(usize),
    /// Bytes follow the member list, or it is cut short.
    #[error("membership sync is truncated or has trailing bytes")]
    Framing,
}

impl SyncMessage {
    pub(crate) fn decode(mut data: &[u8]) -> Result<Self, SyncError> {
        if data.first() != Some(&SYNC_TAG) {
            return Err(SyncError::Framing);
        }
        data.advance(1);
        let (head, mut rest): (SyncHead, &[u8]) = postcard::take_from_bytes(data)?;
        head.from.validate().map_err(WireError::from)?;
        let expected = match head.kind {
            SyncKind::Push => 0,
            SyncKind::Request | SyncKind::Reply => BUCKETS,
        };
        if head.buckets.len() != expected {
            return Err(SyncError::Buckets(head.buckets.len()));
        }
        if rest.remaining() < 2 {
            return Err(SyncError::Framing);
        }
        let count = rest.get_u16();
        let mut members = Vec::new();
        for _ in 0..count {
            if !rest.has_remaining() {
                return Err(SyncError::Framing);
            }
            members.push(WireCodec::default().decode_member(&mut rest)?);
        }
        if rest.has_remaining() {
            return Err(SyncError::Framing);
        }
        Ok(Self {
            kind: head.kind,
            from: head.from,
            buckets: head.buckets,
            members,
        })
    }

    /// Encodes `kind` with `buckets`, then as many `members` as fit in `max_packet_size`
    /// bytes per datagram and `max_bytes` in all. The first datagram carries `kind` and the
    /// buckets; any further ones are pushes. Members that do not fit are left out.
    pub(crate) fn encode(
        kind: SyncKind,
        from: &NodeId,
        buckets: Vec<u32>,
        members: &[Member<NodeId>],
        max_packet_size: usize,
        max_bytes: usize,
    ) -> Vec<Vec<u8>> {
        let mut datagrams = Vec::new();
        let mut spent = 0usize;
        let mut head = SyncHead {
            kind,
            from: from.clone(),
            buckets,
        };
        let mut rest = members;
        loop {
            let mut data = vec![SYNC_TAG];
            let Ok(encoded) = postcard::to_stdvec(&head) else {
                break;
            };
            data.extend_from_slice(&encoded);
            let count_at = data.len();
            data.put_u16(0);
            let mut count: u16 = 0;
            let limit = max_packet_size.min(max_bytes.saturating_sub(spent));
            while let Some((member, tail)) = rest.split_first() {
                let mut one = Vec::new();
                if WireCodec::default()
                    .encode_member(member, &mut one)
                    .is_err()
                {
                    rest = tail;
                    continue;
                }
                if data.len() + one.len() > limit || count == u16::MAX {
                    break;
                }
                data.extend_from_slice(&one);
                count += 1;
                rest = tail;
            }
            if data.len() > limit || (count == 0 && head.kind == SyncKind::Push) {
                break;
            }
            data[count_at..count_at + 2].copy_from_slice(&count.to_be_bytes());
            spent += data.len();
            datagrams.push(data);
            if rest.is_empty() || count == 0 {
                break;
            }
            head.kind = SyncKind::Push;
            head.buckets = Vec::new();
        }
        datagrams
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
        let mut on_a = ViewDigest::new(&a);
        let mut on_b = ViewDigest::new(&b);
        on_a.set(b.addr, Some(&b));
        on_b.set(a.addr, Some(&a));
        assert_eq!(on_a.total(), on_b.total());
        assert_eq!(on_a.differing(&on_b.wire()), [false; BUCKETS]);

        let c = id("c", 3);
        on_a.set(c.addr, Some(&c));
        assert_ne!(on_a.total(), on_b.total());
        let flagged = on_a.differing(&on_b.wire());
        assert_eq!(flagged.iter().filter(|f| **f).count(), 1);
        assert!(on_a.in_buckets(&c.addr, &flagged));
        assert!(on_a.holds(&c));
        assert!(!on_a.holds(&c.clone().with_bump(1)));

        // Down, then back under a new bump: the old identity no longer counts.
        on_a.set(c.addr, None);
        assert_eq!(on_a.total(), on_b.total());
        on_a.set(c.addr, Some(&c.clone().with_bump(1)));
        on_b.set(c.addr, Some(&c));
        assert_ne!(on_a.total(), on_b.total());
    }

    #[test]
    fn sync_messages_round_trip_and_split_within_the_bounds() {
        let from = id("a", 1);
        let members: Vec<_> = (0..300)
            .map(|i| Member::alive(id(&format!("n{i}"), 100 + i)))
            .collect();
        let datagrams = SyncMessage::encode(
            SyncKind::Reply,
            &from,
            vec![7; BUCKETS],
            &members,
            1024,
            2048,
        );
        assert!(datagrams.len() >= 2);
        assert!(datagrams.iter().all(|d| d.len() <= 1024));
        assert!(datagrams.iter().map(Vec::len).sum::<usize>() <= 2048);
        let decoded: Vec<_> = datagrams
            .iter()
            .map(|d| SyncMessage::decode(d).unwrap())
            .collect();
        assert_eq!(decoded[0].kind, SyncKind::Reply);
        assert_eq!(decoded[0].buckets, vec![7; BUCKETS]);
        assert!(decoded[1..].iter().all(|m| m.kind == SyncKind::Push));
        let got: Vec<_> = decoded.iter().flat_map(|m| m.members.clone()).collect();
        assert!(!got.is_empty() && got.len() < members.len());
        assert_eq!(got[..], members[..got.len()]);
    }

    #[test]
    fn rejects_bad_sync_datagrams() {
        let from = id("a", 1);
        let good = SyncMessage::encode(SyncKind::Request, &from, vec![1; BUCKETS], &[], 1024, 1024);
        let mut trailing = good[0].clone();
        trailing.push(0);
        assert!(matches!(
            SyncMessage::decode(&trailing),
            Err(SyncError::Framing)
        ));
        let short = SyncMessage::encode(SyncKind::Request, &from, vec![1; 3], &[], 1024, 1024);
        assert!(matches!(
            SyncMessage::decode(&short[0]),
            Err(SyncError::Buckets(3))
        ));
        let bad_sender = SyncMessage::encode(
            SyncKind::Push,
            &id("", 1),
            vec![],
            &[Member::alive(from)],
            1024,
            1024,
        );
        assert!(SyncMessage::decode(&bad_sender[0]).is_err());
        assert!(SyncMessage::decode(&[SYNC_TAG, 9, 9]).is_err());
    }
}
