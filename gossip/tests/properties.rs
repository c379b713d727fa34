//! Laws of identities and of datagram handling.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use foca::Identity;
use proptest::prelude::*;
use ringkv_gossip::NodeId;

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u16; 8]>(), any::<u16>()).prop_map(|(ip, port)| {
            let [a, b, c, d, e, f, g, h] = ip;
            SocketAddr::new(IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)), port)
        }),
    ]
}

fn node_id() -> impl Strategy<Value = NodeId> {
    (
        "\\PC{1,20}",
        socket_addr(),
        proptest::option::of("[a-z0-9-]{1,20}"),
        any::<u64>(),
    )
        .prop_map(|(name, addr, zone, bump)| NodeId {
            name,
            addr,
            zone,
            bump,
        })
}

proptest! {
    #[test]
    fn node_id_round_trips_through_postcard(id in node_id()) {
        let bytes = postcard::to_stdvec(&id).unwrap();
        let back: NodeId = postcard::from_bytes(&bytes).unwrap();
        prop_assert_eq!(back, id);
    }

    #[test]
    fn addr_conflicts_have_one_winner_the_higher_bump(a in node_id(), b in node_id()) {
        prop_assume!(a.bump != b.bump);
        prop_assert_ne!(a.win_addr_conflict(&b), b.win_addr_conflict(&a));
        prop_assert_eq!(a.win_addr_conflict(&b), a.bump > b.bump);
    }

    #[test]
    fn a_renewed_identity_wins_over_the_old_one(id in node_id()) {
        prop_assume!(id.bump < u64::MAX);
        let renewed = id.renew().unwrap();
        prop_assert!(renewed.win_addr_conflict(&id));
        prop_assert_eq!(&renewed.name, &id.name);
        prop_assert_eq!(renewed.addr(), id.addr());
    }
}
