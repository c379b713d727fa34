//! The wire codec: foca's postcard codec, plus a check of every identity a peer sends and
//! the sender's membership digest after each header.

use bytes::{Buf, BufMut};
use foca::{Codec, Header, Member, Message, PostcardCodec};

use crate::digest::{SharedDigest, DIGEST_LEN};
use crate::identity::{IdentityError, NodeId};

/// Why a datagram's identities could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The bytes are not a postcard encoding of what foca expects.
    #[error("undecodable gossip data: {0}")]
    Postcard(#[from] postcard::Error),
    /// An identity in the datagram breaks the identity rules.
    #[error("peer sent an invalid identity: {0}")]
    Identity(#[from] IdentityError),
    /// The header ends before the sender's membership digest.
    #[error("gossip header lacks the membership digest")]
    MissingDigest,
    /// A membership sync datagram where only a foca datagram can be.
    #[error("a membership sync datagram is not a foca datagram")]
    NotGossip,
}

/// [`PostcardCodec`] that rejects oversized or unprintable identities coming from peers, so
/// that nothing a peer sends can grow our membership table's entries past the identity limits.
/// Each header is followed by the sender's 8-byte membership digest.
#[derive(Debug, Clone, Default)]
pub(crate) struct WireCodec {
    digest: SharedDigest,
}

impl WireCodec {
    /// A codec that stamps and observes digests through `digest`.
    pub(crate) fn new(digest: SharedDigest) -> Self {
        Self { digest }
    }
}

impl Codec<NodeId> for WireCodec {
    type Error = WireError;

    fn encode_header(
        &mut self,
        header: &Header<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), WireError> {
        let mut buf = buf;
        PostcardCodec.encode_header(header, &mut buf)?;
        buf.put_u64(self.digest.own());
        Ok(())
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<NodeId>, WireError> {
        let mut buf = buf;
        let header: Header<NodeId> = PostcardCodec.decode_header(&mut buf)?;
        header.src.validate()?;
        // The destination may be the placeholder we announce to seeds with.
        header.dst.check_bounds()?;
        match &header.message {
            Message::PingReq { target: id, .. }
            | Message::IndirectPing { origin: id, .. }
            | Message::IndirectAck { target: id, .. }
            | Message::ForwardedAck { origin: id, .. } => id.validate()?,
            Message::Ping(_)
            | Message::Ack(_)
            | Message::Announce
            | Message::Feed
            | Message::Gossip
            | Message::Broadcast
            | Message::TurnUndead => {}
        }
        if buf.remaining() < DIGEST_LEN {
            return Err(WireError::MissingDigest);
        }
        self.digest.observe(&header.src, buf.get_u64());
        Ok(header)
    }

    fn encode_member(
        &mut self,
        member: &Member<NodeId>,
        buf: impl BufMut,
    ) -> Result<(), WireError> {
        Ok(PostcardCodec.encode_member(member, buf)?)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<NodeId>, WireError> {
        let member: Member<NodeId> = PostcardCodec.decode_member(buf)?;
        member.id().validate()?;
        Ok(member)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn id(name: &str) -> NodeId {
        NodeId::new(name, SocketAddr::from(([10, 0, 0, 1], 7000)))
    }

    fn encode(header: &Header<NodeId>) -> Vec<u8> {
        let mut buf = Vec::new();
        WireCodec::default()
            .encode_header(header, &mut buf)
            .unwrap();
        buf
    }

    #[test]
    fn round_trips_a_header_to_a_seed_placeholder() {
        let header = Header {
            src: id("a"),
            src_incarnation: 3,
            dst: NodeId::seed(SocketAddr::from(([10, 0, 0, 2], 7000))),
            message: Message::Announce,
        };
        let bytes = encode(&header);
        assert_eq!(
            WireCodec::default().decode_header(&bytes[..]).unwrap(),
            header
        );
    }

    #[test]
    fn rejects_a_sender_with_an_oversized_name() {
        let header = Header {
            src: id(&"x".repeat(200)),
            src_incarnation: 0,
            dst: id("b"),
            message: Message::Gossip,
        };
        let bytes = encode(&header);
        assert!(matches!(
            WireCodec::default().decode_header(&bytes[..]),
            Err(WireError::Identity(IdentityError::NameTooLong { .. }))
        ));
    }

    #[test]
    fn rejects_an_invalid_probe_target_and_member() {
        let header = Header {
            src: id("a"),
            src_incarnation: 0,
            dst: id("b"),
            message: Message::PingReq {
                target: id(""),
                probe_number: 1,
            },
        };
        assert!(WireCodec::default()
            .decode_header(&encode(&header)[..])
            .is_err());

        let mut buf = Vec::new();
        WireCodec::default()
            .encode_member(&Member::alive(id("bad name")), &mut buf)
            .unwrap();
        assert!(WireCodec::default().decode_member(&buf[..]).is_err());
    }
}
