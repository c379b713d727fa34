//! Primary-mode keys stay readable through every node after failovers, including nodes
//! outside the key's shard: five nodes (N=3, so each shard leaves two nodes out), twenty keys
//! under a `majority` prefix, and twice the acting primary of a key is SIGKILLed and restarted
//! 3 s later. A node outside a shard forwards to the primary it guesses; an answer naming the
//! real primary corrects the guess and the request goes there within its deadline.

use std::time::{Duration, Instant};

use ringkv::table::{Mode, PrimaryOptions, SyncReplicas};
use ringkv::{Api, Client, ReadOptions};
use ringkv_tests::{block_on, poll, serial, Cluster};

const NODES: usize = 5;
const KEYS: usize = 20;
/// Bound on a rule spreading, an election or a first write.
const WITHIN: Duration = Duration::from_secs(30);
/// Every key must be readable through every node this soon after the last restart.
const READABLE_WITHIN: Duration = Duration::from_secs(10);
/// One read's bound (a read that would wait out the 5 s call timeout counts as failed).
const READ_LIMIT: Duration = Duration::from_secs(3);

fn key(i: usize) -> String {
    format!("pr/{i}")
}

/// Put through node `via` until acknowledged (the first writes meet the first election).
fn put(cluster: &Cluster, via: usize, key: &str, value: &str) {
    let mut last = String::new();
    let done = poll(WITHIN, || {
        match cluster.ringctl_text(via, &["put", key, value]) {
            Ok(_) => Some(()),
            Err(e) => {
                last = e;
                None
            }
        }
    });
    assert!(
        done.is_some(),
        "put {key} via n{} never acknowledged: {last}",
        via + 1
    );
}

/// A node's answer for `key` within [`READ_LIMIT`]: the value, or why not.
fn read(client: &Client, key: &str) -> Result<String, String> {
    let get = client.get(key.as_bytes().to_vec(), ReadOptions::default());
    match block_on(async { tokio::time::timeout(READ_LIMIT, get).await }) {
        Ok(Ok(read)) => match read.values.as_slice() {
            [one] => Ok(String::from_utf8_lossy(&one.data).into_owned()),
            other => Err(format!("{} values", other.len())),
        },
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {READ_LIMIT:?}")),
    }
}

/// SIGKILL the acting primary of `key`, restart it 3 s later; returns when it was restarted.
fn kill_primary(cluster: &mut Cluster, key: &str) -> Instant {
    let (i, shard) =
        poll(WITHIN, || cluster.primary_of(key)).unwrap_or_else(|| panic!("no primary for {key}"));
    eprintln!(
        "killing n{} (primary of {key} at epoch {})",
        i + 1,
        shard.epoch
    );
    cluster.nodes[i].kill();
    std::thread::sleep(Duration::from_secs(3));
    let seed = cluster.nodes[(i + 1) % NODES].addr;
    cluster.restart(i, &[seed]).unwrap();
    Instant::now()
}

#[test]
fn primary_keys_are_readable_through_every_node_after_failovers() {
    let _serial = serial();
    let mut cluster = Cluster::start(NODES).unwrap();
    let mode = Mode::Primary(PrimaryOptions {
        sync: SyncReplicas::Majority,
        ..PrimaryOptions::default()
    });
    cluster.set_mode(0, "pr/", mode, WITHIN).unwrap();
    for i in 0..KEYS {
        put(&cluster, i % NODES, &key(i), &format!("v{i}"));
    }

    kill_primary(&mut cluster, &key(7));
    let last = kill_primary(&mut cluster, &key(13));

    // Every (key, node) pair must read back its value within the bound: pairs are read
    // again until each succeeded once, then a last sweep reads them all.
    let deadline = last + READABLE_WITHIN;
    let clients: Vec<_> = (0..NODES).map(|i| cluster.client(i).unwrap()).collect();
    let mut pending: Vec<(usize, usize, String)> = (0..KEYS)
        .flat_map(|k| (0..NODES).map(move |via| (k, via, String::new())))
        .collect();
    while !pending.is_empty() && Instant::now() < deadline {
        for (k, via, why) in &mut pending {
            match read(&clients[*via], &key(*k)) {
                Ok(v) if v == format!("v{k}") => why.clear(),
                Ok(v) => panic!("{} via n{} read {v:?}, wrote v{k}", key(*k), *via + 1),
                Err(e) => *why = e,
            }
        }
        pending.retain(|(_, _, why)| !why.is_empty());
    }
    let after = last.elapsed();
    let show = |rows: &[(usize, usize, String)]| {
        rows.iter()
            .map(|(k, via, why)| format!("{} via n{}: {why}", key(*k), via + 1))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        pending.is_empty(),
        "{} of {} (key, node) pairs not readable {after:?} after the last restart:\n{}",
        pending.len(),
        KEYS * NODES,
        show(&pending)
    );
    let mut failing = Vec::new();
    for k in 0..KEYS {
        for (via, client) in clients.iter().enumerate() {
            if let Err(e) = read(client, &key(k)) {
                failing.push((k, via, e));
            }
        }
    }
    assert!(
        failing.is_empty(),
        "reads failing again:\n{}",
        show(&failing)
    );
    eprintln!("every key readable through every node {after:?} after the last restart");
}
