//! Gossip datagrams (foca's postcard codec, ringkv's identity checks and status broadcasts)
//! fed to a node's membership, interleaved with the timers it arms.

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::Steps;
use ringkv_gossip::{GossipConfig, GossipOutput, Membership, NodeId};

/// Feeds one fuzz input; panics on a broken promise of the code under test.
pub fn run(data: &[u8]) {
    let config = GossipConfig {
        max_members: 8,
        ..GossipConfig::lan()
    };
    let me = NodeId::new("n1", SocketAddr::from(([127, 0, 0, 1], 7001)));
    let mut node = Membership::new(me, vec![], config.clone(), 1).expect("valid membership");
    let mut timers = VecDeque::new();
    let keep = |outputs: Vec<GossipOutput>, timers: &mut VecDeque<_>| {
        for output in outputs {
            match output {
                GossipOutput::Send { data, .. } => {
                    assert!(
                        data.len() <= config.max_packet_size,
                        "oversized datagram sent"
                    )
                }
                GossipOutput::Schedule { timer, .. } if timers.len() < 64 => {
                    timers.push_back(timer)
                }
                _ => {}
            }
        }
    };
    let outputs = node.start();
    keep(outputs, &mut timers);
    for (kind, body) in Steps::new(data).take(64) {
        if kind % 4 == 3 {
            if let Some(timer) = timers.pop_front() {
                let outputs = node.handle_timer(timer);
                keep(outputs, &mut timers);
            }
        } else if let Ok(outputs) = node.handle_datagram(body) {
            keep(outputs, &mut timers);
        }
        keep(node.take_pending_outputs(), &mut timers);
        for member in node.members() {
            assert!(
                member.id.validate().is_ok(),
                "an invalid identity got in: {member:?}"
            );
        }
    }
}
