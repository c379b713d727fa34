//! Anti-entropy of membership: the sync datagrams of a push-pull of the members (and their
//! status records) in the digest buckets where two views differ, bounded in bytes.
//!
//! The digest itself lives in [`crate::digest`]. Two nodes compare bucket digests and
//! exchange only the members of differing buckets, so a join a node missed costs about
//! `n / BUCKETS` members on the wire, not the whole list.

use bytes::{Buf, BufMut};
use foca::{Codec, Member};
use serde::{Deserialize, Serialize};

use crate::codec::{WireCodec, WireError};
use crate::digest::BUCKETS;
use crate::identity::NodeId;
use crate::status::{StatusError, StatusUpdate};

/// First byte of a sync datagram. A foca datagram starts with the sender's name length,
/// which is never zero, so the two cannot be confused.
pub(crate) const SYNC_TAG: u8 = 0;

/// Which step of a push-pull a sync datagram is.
///
/// The variants' order is their wire encoding: new ones go at the end. A node of the
/// previous build cannot decode [`SyncKind::Status`] and drops it as malformed, which costs
/// it nothing but the datagram.
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
    /// Status records of the members in the buckets that differ, sent beside a reply or a
    /// push: to apply, nothing to answer. Status broadcasts stop after a bounded number of
    /// transmissions, so this is how a node that missed one catches up.
    Status,
}

impl SyncKind {
    /// Whether the datagram carries bucket digests.
    fn has_buckets(self) -> bool {
        matches!(self, Self::Request | Self::Reply)
    }

    /// The kind of the datagrams that carry what did not fit in the first one.
    fn continued(self) -> Self {
        match self {
            Self::Status => Self::Status,
            Self::Request | Self::Reply | Self::Push => Self::Push,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SyncHead {
    kind: SyncKind,
    from: NodeId,
    /// [`BUCKETS`] bucket digests in a request or reply; empty otherwise.
    buckets: Vec<u32>,
}

/// A decoded sync datagram.
#[derive(Debug)]
pub(crate) struct SyncMessage {
    pub(crate) kind: SyncKind,
    pub(crate) from: NodeId,
    pub(crate) buckets: Vec<u32>,
    /// Members, in a request, reply or push.
    pub(crate) members: Vec<Member<NodeId>>,
    /// Status records, in a [`SyncKind::Status`] datagram.
    pub(crate) statuses: Vec<StatusUpdate>,
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
    /// A status record is undecodable or names an invalid identity.
    #[error("membership sync carries a bad status record: {0}")]
    Status(#[from] StatusError),
    /// The bucket digests are neither absent nor one per bucket.
    #[error("membership sync carries {0} bucket digests, expected 0 or {BUCKETS}")]
    Buckets(usize),
    /// Bytes follow the item list, or it is cut short.
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
        let expected = if head.kind.has_buckets() { BUCKETS } else { 0 };
        if head.buckets.len() != expected {
            return Err(SyncError::Buckets(head.buckets.len()));
        }
        if rest.remaining() < 2 {
            return Err(SyncError::Framing);
        }
        let count = rest.get_u16();
        let (mut members, mut statuses) = (Vec::new(), Vec::new());
        for _ in 0..count {
            if !rest.has_remaining() {
                return Err(SyncError::Framing);
            }
            if head.kind == SyncKind::Status {
                let (update, tail) = StatusUpdate::decode_prefix(rest)?;
                statuses.push(update);
                rest = tail;
            } else {
                members.push(WireCodec::default().decode_member(&mut rest)?);
            }
        }
        if rest.has_remaining() {
            return Err(SyncError::Framing);
        }
        Ok(Self {
            kind: head.kind,
            from: head.from,
            buckets: head.buckets,
            members,
            statuses,
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
        let head = SyncHead {
            kind,
            from: from.clone(),
            buckets,
        };
        let encode = |member: &Member<NodeId>, buf: &mut Vec<u8>| {
            WireCodec::default().encode_member(member, buf).is_ok()
        };
        encode_items(head, members, encode, max_packet_size, max_bytes)
    }

    /// Encodes as many status `records` as fit in `max_packet_size` bytes per datagram and
    /// `max_bytes` in all, as [`SyncKind::Status`] datagrams; none if there are no records.
    pub(crate) fn encode_statuses(
        from: &NodeId,
        records: &[StatusUpdate],
        max_packet_size: usize,
        max_bytes: usize,
    ) -> Vec<Vec<u8>> {
        let head = SyncHead {
            kind: SyncKind::Status,
            from: from.clone(),
            buckets: Vec::new(),
        };
        let encode = |record: &StatusUpdate, buf: &mut Vec<u8>| match record.encode() {
            Ok(bytes) => {
                buf.extend_from_slice(&bytes);
                true
            }
            Err(_) => false,
        };
        encode_items(head, records, encode, max_packet_size, max_bytes)
    }
}

/// Encodes `head`, then as many `items` as fit in `max_packet_size` bytes per datagram and
/// `max_bytes` in all; the further datagrams are of the head kind's [`SyncKind::continued`]
/// kind, without buckets. An item `encode` refuses is skipped; one that does not fit ends
/// the message. A datagram of items alone is never sent empty.
fn encode_items<T>(
    mut head: SyncHead,
    items: &[T],
    encode: impl Fn(&T, &mut Vec<u8>) -> bool,
    max_packet_size: usize,
    max_bytes: usize,
) -> Vec<Vec<u8>> {
    let mut datagrams = Vec::new();
    let mut spent = 0usize;
    let mut rest = items;
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
        while let Some((item, tail)) = rest.split_first() {
            let mut one = Vec::new();
            if !encode(item, &mut one) {
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
        if data.len() > limit || (count == 0 && !head.kind.has_buckets()) {
            break;
        }
        data[count_at..count_at + 2].copy_from_slice(&count.to_be_bytes());
        spent += data.len();
        datagrams.push(data);
        if rest.is_empty() || count == 0 {
            break;
        }
        head.kind = head.kind.continued();
        head.buckets = Vec::new();
    }
    datagrams
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn id(name: &str, port: u16) -> NodeId {
        NodeId::new(name, SocketAddr::from(([10, 0, 0, 1], port)))
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
    fn status_records_round_trip_and_bad_ones_are_refused() {
        use crate::status::NodeStatus;
        let from = id("a", 1);
        let records: Vec<_> = (0..300)
            .map(|i| StatusUpdate {
                id: id(&format!("n{i}"), 100 + i),
                version: u64::from(i),
                status: NodeStatus::Up,
            })
            .collect();
        let datagrams = SyncMessage::encode_statuses(&from, &records, 1024, 2048);
        assert!(datagrams.len() >= 2);
        assert!(datagrams.iter().map(Vec::len).sum::<usize>() <= 2048);
        let decoded: Vec<_> = datagrams
            .iter()
            .map(|d| SyncMessage::decode(d).unwrap())
            .collect();
        assert!(decoded.iter().all(|m| m.kind == SyncKind::Status));
        assert!(decoded.iter().all(|m| m.members.is_empty()));
        let got: Vec<_> = decoded.iter().flat_map(|m| m.statuses.clone()).collect();
        assert!(!got.is_empty() && got.len() < records.len());
        assert_eq!(got[..], records[..got.len()]);
        assert!(SyncMessage::encode_statuses(&from, &[], 1024, 2048).is_empty());

        let bad = StatusUpdate {
            id: id("bad name", 1),
            version: 1,
            status: NodeStatus::Up,
        };
        let datagrams = SyncMessage::encode_statuses(&from, &[bad], 1024, 2048);
        assert!(matches!(
            SyncMessage::decode(&datagrams[0]),
            Err(SyncError::Status(_))
        ));
        let mut cut = SyncMessage::encode_statuses(&from, &records[..1], 1024, 2048).remove(0);
        cut.pop();
        assert!(SyncMessage::decode(&cut).is_err());
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
