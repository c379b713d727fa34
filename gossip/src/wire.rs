//! Conversion between this format, where every foca header is followed by the sender's
//! 8-byte membership digest, and the previous one, which has no digest and no sync
//! datagrams. A shell speaking to a node of the previous protocol version strips the digest
//! from what it sends and inserts [`NO_DIGEST`] into what it receives.

use foca::{Codec, PostcardCodec};

use crate::codec::WireError;
use crate::digest::{DIGEST_LEN, NO_DIGEST};
use crate::identity::NodeId;
use crate::sync::SYNC_TAG;

/// Where the foca header of `datagram` ends, decoding it as [`crate::codec::WireCodec`]
/// does.
fn header_len(datagram: &[u8]) -> Result<usize, WireError> {
    if datagram.first() == Some(&SYNC_TAG) {
        return Err(WireError::NotGossip);
    }
    let mut rest = datagram;
    Codec::<NodeId>::decode_header(&mut PostcardCodec, &mut rest)?;
    Ok(datagram.len() - rest.len())
}

/// `datagram` in the previous format: the digest after its header removed. `None` for a
/// sync datagram, which the previous format has no counterpart for.
pub fn without_digest(datagram: &[u8]) -> Result<Option<Vec<u8>>, WireError> {
    if datagram.first() == Some(&SYNC_TAG) {
        return Ok(None);
    }
    let end = header_len(datagram)?;
    if datagram.len() - end < DIGEST_LEN {
        return Err(WireError::MissingDigest);
    }
    let mut out = Vec::with_capacity(datagram.len() - DIGEST_LEN);
    out.extend_from_slice(&datagram[..end]);
    out.extend_from_slice(&datagram[end + DIGEST_LEN..]);
    Ok(Some(out))
}

/// A datagram of the previous format in this one: [`NO_DIGEST`] inserted after its header,
/// which the membership reads as "digest unknown". The result is 8 bytes longer, which the
/// membership's bound leaves room for (its `max_packet_size` does not count the digest).
pub fn with_no_digest(datagram: &[u8]) -> Result<Vec<u8>, WireError> {
    let end = header_len(datagram)?;
    let mut out = Vec::with_capacity(datagram.len() + DIGEST_LEN);
    out.extend_from_slice(&datagram[..end]);
    out.extend_from_slice(&NO_DIGEST.to_be_bytes());
    out.extend_from_slice(&datagram[end..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use foca::{Header, Member, Message};

    use super::*;
    use crate::codec::WireCodec;
    use crate::digest::SharedDigest;

    fn id(name: &str, port: u16) -> crate::NodeId {
        crate::NodeId::new(name, SocketAddr::from(([10, 0, 0, 1], port)))
    }

    /// A datagram as foca lays it out: header (with digest), update count, updates.
    fn datagram(digest: u64) -> (Header<crate::NodeId>, Vec<Member<crate::NodeId>>, Vec<u8>) {
        let header = Header {
            src: id("a", 1),
            src_incarnation: 2,
            dst: id("b", 2),
            message: Message::Ping(7),
        };
        let updates = vec![Member::alive(id("c", 3)), Member::alive(id("d", 4))];
        let shared = SharedDigest::default();
        shared.set_own(digest, digest);
        let mut codec = WireCodec::new(shared);
        let mut data = Vec::new();
        codec.encode_header(&header, &mut data).unwrap();
        data.extend_from_slice(&(updates.len() as u16).to_be_bytes());
        for member in &updates {
            codec.encode_member(member, &mut data).unwrap();
        }
        (header, updates, data)
    }

    #[test]
    fn a_datagram_survives_the_round_trip_through_the_previous_format() {
        let (header, updates, data) = datagram(0x1234);
        let old = without_digest(&data).unwrap().unwrap();
        assert_eq!(old.len(), data.len() - DIGEST_LEN);
        // The previous format is foca's plain postcard layout.
        let mut rest = &old[..];
        assert_eq!(PostcardCodec.decode_header(&mut rest).unwrap(), header);

        let back = with_no_digest(&old).unwrap();
        let shared = SharedDigest::default();
        shared.set_own(0x1234, 0x1234);
        let mut codec = WireCodec::new(shared.clone());
        let mut rest = &back[..];
        assert_eq!(codec.decode_header(&mut rest).unwrap(), header);
        let count = u16::from_be_bytes([rest[0], rest[1]]);
        rest = &rest[2..];
        let got: Vec<_> = (0..count)
            .map(|_| codec.decode_member(&mut rest).unwrap())
            .collect();
        assert_eq!(got, updates);
        assert!(rest.is_empty());
        assert_eq!(back.len(), data.len());
    }

    #[test]
    fn the_missing_digest_never_triggers_a_sync() {
        let (_, _, data) = datagram(0x1234);
        let back = with_no_digest(&without_digest(&data).unwrap().unwrap()).unwrap();
        let shared = SharedDigest::default();
        shared.set_own(0x9999, 0x9999);
        WireCodec::new(shared.clone())
            .decode_header(&back[..])
            .unwrap();
        assert_eq!(shared.take_differing(), None);
        // The digest as sent does differ from ours.
        WireCodec::new(shared.clone())
            .decode_header(&data[..])
            .unwrap();
        assert_eq!(shared.take_differing(), Some(id("a", 1)));
    }

    #[test]
    fn sync_datagrams_are_withheld_and_garbage_is_refused() {
        assert!(without_digest(&[SYNC_TAG, 1, 2, 3]).unwrap().is_none());
        assert!(matches!(
            with_no_digest(&[SYNC_TAG, 1, 2, 3]),
            Err(WireError::NotGossip)
        ));
        assert!(without_digest(&[5, b'a']).is_err());
        assert!(with_no_digest(&[5, b'a']).is_err());
        // A header whose digest is cut short.
        let (_, _, data) = datagram(1);
        let mut rest = &data[..];
        Codec::<crate::NodeId>::decode_header(&mut PostcardCodec, &mut rest)
            .expect("the test datagram has a header");
        let end = data.len() - rest.len();
        assert!(matches!(
            without_digest(&data[..end + 3]),
            Err(WireError::MissingDigest)
        ));
    }
}
