//! The slot map `CLUSTER SHARDS/SLOTS/NODES` answer: a load-balancing map, not a routing
//! one.
//!
//! Any node coordinates any key, so the map only spreads a cluster-aware client's load: the
//! 16384 slots are split evenly over the live nodes in name order, and no node ever answers
//! `MOVED`. A peer's front is named at its QUIC address's IP and at the same port offset
//! from its QUIC port as this node's front (`cluster up` uses the QUIC port number itself).

use std::net::{IpAddr, SocketAddr};

use crate::proto::MemberRow;

/// Slots in a Redis Cluster.
pub(crate) const SLOTS: u32 = 16384;

/// One node of the map and the slots it is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    /// Node name.
    pub name: String,
    /// A 40-hex-digit id derived from the name (Redis node ids have this shape).
    pub id: String,
    /// Where its front listens.
    pub front: SocketAddr,
    /// Its QUIC port (the "cluster bus" port of `CLUSTER NODES`).
    pub bus_port: u16,
    /// Whether it is the node answering.
    pub myself: bool,
    /// First and last slot it is given.
    pub slots: (u32, u32),
}

/// The node id a name is shown under.
pub(crate) fn node_id(name: &str) -> String {
    blake3::hash(name.as_bytes()).to_hex()[..40].to_string()
}

/// Split the slots over the live members; `me`, `quic` and `front` describe this node.
pub(crate) fn map(
    members: &[MemberRow],
    me: &str,
    quic: SocketAddr,
    front: SocketAddr,
) -> Vec<Owner> {
    let offset = i32::from(front.port()) - i32::from(quic.port());
    let mut nodes: Vec<(String, SocketAddr, u16)> = members
        .iter()
        .filter(|m| m.name != me && m.state == "alive" && m.status != "leaving")
        .filter_map(|m| {
            let addr: SocketAddr = m.addr.parse().ok()?;
            let port = u16::try_from(i32::from(addr.port()) + offset).ok()?;
            Some((
                m.name.clone(),
                SocketAddr::new(addr.ip(), port),
                addr.port(),
            ))
        })
        .collect();
    let my_ip: IpAddr = if front.ip().is_unspecified() {
        quic.ip()
    } else {
        front.ip()
    };
    nodes.push((
        me.to_string(),
        SocketAddr::new(my_ip, front.port()),
        quic.port(),
    ));
    nodes.sort();
    let n = nodes.len() as u32;
    nodes
        .into_iter()
        .enumerate()
        .map(|(i, (name, front, bus_port))| {
            let i = i as u32;
            Owner {
                id: node_id(&name),
                myself: name == me,
                name,
                front,
                bus_port,
                slots: (i * SLOTS / n, (i + 1) * SLOTS / n - 1),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, addr: &str, state: &str) -> MemberRow {
        MemberRow {
            name: name.into(),
            addr: addr.into(),
            state: state.into(),
            status: "up".into(),
            zone: None,
        }
    }

    #[test]
    fn slots_split_evenly_over_live_nodes_with_the_same_port_offset() {
        let members = [
            member("a", "127.0.0.1:7000", "alive"),
            member("b", "127.0.0.1:7001", "alive"),
            member("c", "127.0.0.1:7002", "alive"),
            member("d", "127.0.0.1:7003", "down"),
        ];
        let map = map(
            &members,
            "a",
            "127.0.0.1:7000".parse().unwrap(),
            "127.0.0.1:8000".parse().unwrap(),
        );
        let names: Vec<&str> = map.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(map[0].slots, (0, 5460));
        assert_eq!(map[1].slots, (5461, 10921));
        assert_eq!(map[2].slots, (10922, 16383));
        assert_eq!(map[2].front, "127.0.0.1:8002".parse().unwrap());
        assert!(map[0].myself && !map[1].myself);
        assert_eq!(map[1].bus_port, 7001);
        assert_eq!(map[0].id.len(), 40);
    }

    #[test]
    fn a_node_alone_holds_every_slot() {
        let map = map(
            &[],
            "a",
            "127.0.0.1:7000".parse().unwrap(),
            "127.0.0.1:7000".parse().unwrap(),
        );
        assert_eq!(map.len(), 1);
        assert_eq!(map[0].slots, (0, SLOTS - 1));
    }
}
