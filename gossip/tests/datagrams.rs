//! Hostile datagrams: rejected with an error, the membership intact and still working.

use std::net::SocketAddr;

use bytes::BufMut;
use foca::{Codec, Header, Message, PostcardCodec};
use proptest::prelude::*;
use ringkv_gossip::{GossipConfig, GossipError, GossipOutput, MemberEvent, Membership, NodeId};

/// Two memberships that know each other, joined by delivering datagrams by hand.
fn joined_pair() -> (Membership, Membership) {
    let a_addr = SocketAddr::from(([10, 0, 0, 1], 7000));
    let b_addr = SocketAddr::from(([10, 0, 0, 2], 7000));
    let config = GossipConfig::lan;
    let mut a = Membership::new(NodeId::new("a", a_addr), vec![], config(), 1).unwrap();
    let mut b = Membership::new(NodeId::new("b", b_addr), vec![a_addr], config(), 2).unwrap();
    let mut in_flight: Vec<_> = b.start();
    while let Some(output) = in_flight.pop() {
        if let GossipOutput::Send { to, data } = output {
            let node = if to == a_addr { &mut a } else { &mut b };
            in_flight.extend(node.handle_datagram(&data).unwrap());
        }
    }
    assert!(a.is_alive("b") && b.is_alive("a"));
    (a, b)
}

#[test]
fn a_datagram_rejected_after_partly_applying_hands_over_its_outputs() {
    let (mut a, _b) = joined_pair();
    let c = NodeId::new("c", SocketAddr::from(([10, 0, 0, 3], 7000)));
    // A valid gossip header from a member `a` has not met yet, no updates, then a truncated
    // status record: foca learns of `c` before it finds the garbage.
    let header = Header {
        src: c.clone(),
        src_incarnation: 0,
        dst: a.me().clone(),
        message: Message::Gossip,
    };
    let mut data = Vec::new();
    PostcardCodec.encode_header(&header, &mut data).unwrap();
    // The sender's membership digest follows every header.
    data.put_u64(0);
    data.put_u16(0);
    data.extend_from_slice(&[0, 5, 1]);

    assert!(matches!(
        a.handle_datagram(&data),
        Err(GossipError::Malformed(_))
    ));
    let pending = a.take_pending_outputs();
    assert!(pending.contains(&GossipOutput::Event(MemberEvent::Up(c))));
    assert!(a.take_pending_outputs().is_empty());
}

proptest! {
    #[test]
    fn random_bytes_are_rejected_without_changing_the_membership(
        data in proptest::collection::vec(any::<u8>(), 0..1500)
    ) {
        let (mut a, _b) = joined_pair();
        let before = a.members();
        prop_assert!(a.handle_datagram(&data).is_err());
        prop_assert_eq!(a.members(), before);
        prop_assert!(a.take_pending_outputs().is_empty());
        prop_assert!(a.is_alive("b"));
    }
}
