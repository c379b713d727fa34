//! `CLUSTER SHARDS|SLOTS|NODES|INFO|MYID|KEYSLOT`: the load-balancing slot map of
//! [`slots`](crate::resp::slots), in each command's shape.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;

use super::{upper, Step};
use crate::api::Api;
use crate::resp::codec::Reply;
use crate::resp::errors;
use crate::resp::slots::{self, Owner};
use crate::resp::Shared;

pub(super) fn cluster(args: &[Bytes], shared: &Arc<Shared>) -> Step {
    let sub = upper(&args[1]);
    match (sub.as_str(), args.len()) {
        ("MYID", 2) => return Reply::text(slots::node_id(&shared.facts.name)).into(),
        ("KEYSLOT", 3) => return Reply::Int(i64::from(redis_protocol::redis_keyslot(&args[2]))).into(),
        ("SHARDS" | "SLOTS" | "NODES" | "INFO", 2) => {}
        _ => {
            return Reply::err(format!(
                "unknown subcommand or wrong number of arguments for 'CLUSTER|{sub}' (supported: SHARDS, SLOTS, NODES, INFO, MYID, KEYSLOT)"
            ))
            .into()
        }
    }
    let shared = shared.clone();
    Step::Later(
        async move {
            let members = match shared.node.members().await {
                Ok(m) => m,
                Err(e) => return errors::reply(&e),
            };
            let map = slots::map(&members, &shared.facts.name, shared.facts.addr, shared.addr);
            match sub.as_str() {
                "SHARDS" => Reply::Array(map.iter().map(|o| shard(o, shared.tls)).collect()),
                "SLOTS" => Reply::Array(map.iter().map(slot_range).collect()),
                "NODES" => Reply::text(nodes(&map)),
                _ => Reply::text(info(map.len())),
            }
        }
        .boxed(),
    )
}

fn shard(o: &Owner, tls: bool) -> Reply {
    let ip = o.front.ip().to_string();
    let port = if tls { "tls-port" } else { "port" };
    let node = Reply::Map(vec![
        (Reply::text("id"), Reply::text(&o.id)),
        (Reply::text(port), Reply::Int(i64::from(o.front.port()))),
        (Reply::text("ip"), Reply::text(&ip)),
        (Reply::text("endpoint"), Reply::text(&ip)),
        (Reply::text("role"), Reply::text("master")),
        (Reply::text("replication-offset"), Reply::Int(0)),
        (Reply::text("health"), Reply::text("online")),
    ]);
    Reply::Map(vec![
        (
            Reply::text("slots"),
            Reply::Array(vec![
                Reply::Int(o.slots.0.into()),
                Reply::Int(o.slots.1.into()),
            ]),
        ),
        (Reply::text("nodes"), Reply::Array(vec![node])),
    ])
}

fn slot_range(o: &Owner) -> Reply {
    Reply::Array(vec![
        Reply::Int(o.slots.0.into()),
        Reply::Int(o.slots.1.into()),
        Reply::Array(vec![
            Reply::text(o.front.ip().to_string()),
            Reply::Int(i64::from(o.front.port())),
            Reply::text(&o.id),
        ]),
    ])
}

fn nodes(map: &[Owner]) -> String {
    let mut text = String::new();
    for o in map {
        let flags = if o.myself { "myself,master" } else { "master" };
        let _ = writeln!(
            text,
            "{} {}@{} {flags} - 0 0 0 connected {}-{}",
            o.id, o.front, o.bus_port, o.slots.0, o.slots.1
        );
    }
    text
}

fn info(nodes: usize) -> String {
    let slots = slots::SLOTS;
    format!(
        "cluster_enabled:1\r\ncluster_state:ok\r\ncluster_slots_assigned:{slots}\r\ncluster_slots_ok:{slots}\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:{nodes}\r\ncluster_size:{nodes}\r\ncluster_current_epoch:0\r\ncluster_my_epoch:0\r\n"
    )
}
