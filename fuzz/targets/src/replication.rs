//! A node of a three-node cluster running primary mode (a leader of some shards, a follower
//! of the others), fed hostile replication traffic between honest steps: peer requests
//! (appends, snapshot pages, votes, pre-votes, collects, and every other peer request) as
//! the wire carries them, forged answers to its own calls, and gossip datagrams.

use crate::{primary_cluster, Delivery, Steps};
use ringkv::core::{CallError, ClientId, InboundId};
use ringkv::proto::{PeerReply, Request};

/// Feeds one fuzz input; panics on a broken promise of the code under test.
pub fn run(data: &[u8]) {
    let mut sim = primary_cluster();
    for (n, (kind, body)) in Steps::new(data).take(64).enumerate() {
        let id = 1_000_000 + n as u64;
        match kind % 4 {
            0 => match postcard::from_bytes::<Request>(body) {
                Ok(Request::Peer { from, req }) => {
                    sim.deliver(0, Delivery::Request(InboundId(id), from, req))
                }
                Ok(Request::Client(req)) => sim.deliver(0, Delivery::Client(ClientId(id), req)),
                _ => {}
            },
            1 => {
                let Some((&pick, body)) = body.split_first() else {
                    continue;
                };
                let reply = postcard::from_bytes::<PeerReply>(body)
                    .map_err(|e| CallError::BadAnswer(e.to_string()));
                sim.forge_reply(0, usize::from(pick), reply);
            }
            2 => {
                // Honest progress: everything due within the next few hundred milliseconds.
                let ms = body.first().map_or(50, |&b| u64::from(b) * 4);
                let until = sim.now + ms;
                sim.run_until(until, 20_000);
            }
            _ => sim.deliver(0, Delivery::Datagram(bytes::Bytes::copy_from_slice(body))),
        }
    }
    sim.run_until(sim.now + 1_000, 20_000);
}
