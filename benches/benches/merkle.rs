//! Anti-entropy efficiency: two in-memory replicas of one whole-ring range, 1,000,000 keys,
//! 1,000 of them differing (a third missing on each side, a third with another version).
//! Builds both `RangeTree`s, runs the `Exchange` between them in-process with every message
//! serialised by postcard, and reports keys and bytes exchanged against sending the full
//! `(key, hash)` list, plus `RangeTree` update throughput.
//!
//! `cargo bench -p ringkv-bench --bench merkle` (optional arguments: keys, differing keys,
//! depths as a comma list, e.g. `-- 1000000 1000 12,16,18,20`).

use std::collections::BTreeSet;
use std::error::Error;
use std::time::{Duration, Instant};

use ringkv::hlc::Timestamp;
use ringkv::merkle::{
    item_hash, Action, Exchange, ExchangeLimits, ExchangeMsg, Hash, Item, RangeTree,
};
use ringkv::version::{Record, Sibling};
use ringkv_ring::token;

/// One stored key on one replica.
#[derive(Clone)]
struct Stored {
    token: u64,
    key: Vec<u8>,
    hash: Hash,
}

/// A replica: its items sorted by (token, key), and the keys it was told to push.
struct Replica {
    items: Vec<Stored>,
    pushed: BTreeSet<Vec<u8>>,
}

impl Replica {
    fn new(mut items: Vec<Stored>) -> Self {
        items.sort_unstable_by(|a, b| (a.token, &a.key).cmp(&(b.token, &b.key)));
        Replica {
            items,
            pushed: BTreeSet::new(),
        }
    }

    /// The store scan of `(lo, hi]`, wrapping when `lo >= hi`.
    fn scan(&self, lo: u64, hi: u64) -> Vec<Item> {
        let after = |t: u64| self.items.partition_point(|s| s.token <= t);
        let pick = |r: std::ops::Range<usize>| {
            self.items[r]
                .iter()
                .map(|s| (s.key.clone(), s.hash))
                .collect::<Vec<_>>()
        };
        if lo < hi {
            pick(after(lo)..after(hi))
        } else {
            let mut out = pick(after(lo)..self.items.len());
            out.extend(pick(0..after(hi)));
            out
        }
    }
}

/// A deterministic generator (splitmix64), so every run picks the same keys.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("user:{i:012}").into_bytes()
}

/// A 100-byte value written through `actor` at a time that depends on `i`.
fn sibling(i: u64, actor: &str) -> Sibling {
    Sibling {
        value: Some(vec![0xab; 100]),
        ts: Timestamp {
            millis: 1_700_000_000_000 + i,
            logical: 0,
        },
        origin: actor.to_owned(),
    }
}

/// A record as one write through `actor` leaves it.
fn written(i: u64, actor: &str) -> Record {
    Record::update(&Record::new(sibling(i, actor)), &Record::empty(), actor)
}

/// What the exchange cost.
#[derive(Default)]
struct Cost {
    bytes: u64,
    messages: u64,
    round_trips: u64,
    hash_bytes: u64,
    item_bytes: u64,
    /// Keys the initiator listed in `Items` messages.
    keys_listed: u64,
}

/// Carries out `ex`'s actions until it waits for the peer; returns the encoded messages.
fn settle(
    ex: &mut Exchange,
    r: &mut Replica,
    cost: &mut Cost,
) -> Result<Vec<Vec<u8>>, Box<dyn Error>> {
    let mut out = Vec::new();
    while let Some(action) = ex.poll() {
        match action {
            Action::Send(msg) => {
                let bytes = postcard::to_allocvec(&msg)?;
                cost.bytes += bytes.len() as u64;
                cost.messages += 1;
                match msg {
                    ExchangeMsg::Open { .. }
                    | ExchangeMsg::Hashes { .. }
                    | ExchangeMsg::Differ { .. } => cost.hash_bytes += bytes.len() as u64,
                    ExchangeMsg::Items { .. } | ExchangeMsg::Want { .. } => {
                        cost.item_bytes += bytes.len() as u64
                    }
                }
                out.push(bytes);
            }
            Action::ScanLeaf { leaf, start, end } => ex.leaf_items(leaf, r.scan(start, end))?,
            Action::Push(keys) => r.pushed.extend(keys),
        }
    }
    Ok(out)
}

/// Runs one exchange, initiator `a`, responder `b`.
fn exchange(
    a: &mut Replica,
    ta: &mut RangeTree,
    b: &mut Replica,
    tb: &mut RangeTree,
) -> Result<Cost, Box<dyn Error>> {
    let mut cost = Cost::default();
    let limits = ExchangeLimits::default();
    let mut ea = Exchange::initiate(ta, limits)?;
    let mut eb = Exchange::respond(tb, limits)?;
    let mut to_b = settle(&mut ea, a, &mut cost)?;
    while !to_b.is_empty() {
        cost.round_trips += to_b.len() as u64;
        let mut to_a = Vec::new();
        for bytes in to_b {
            eb.handle(tb, postcard::from_bytes(&bytes)?)?;
            to_a.extend(settle(&mut eb, b, &mut cost)?);
        }
        to_b = Vec::new();
        for bytes in to_a {
            ea.handle(ta, postcard::from_bytes(&bytes)?)?;
            to_b.extend(settle(&mut ea, a, &mut cost)?);
        }
    }
    if !(ea.is_finished() && eb.is_finished()) {
        return Err("the exchange stopped before finishing".into());
    }
    cost.keys_listed = ea.stats().items_sent;
    Ok(cost)
}

fn tree(r: &Replica, depth: u8) -> Result<RangeTree, Box<dyn Error>> {
    // (0, 0] is the whole ring.
    Ok(RangeTree::from_items(
        0,
        0,
        depth,
        r.items.iter().map(|s| (s.token, s.hash)),
    )?)
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() -> Result<(), Box<dyn Error>> {
    // `cargo bench` passes `--bench`; take the numbers that follow it, if any.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let keys: u64 = args.first().map_or(Ok(1_000_000), |a| a.parse())?;
    let differing: u64 = args.get(1).map_or(Ok(1_000), |a| a.parse())?;
    let depths: Vec<u8> = match args.get(2) {
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => vec![12, 16, 18, 20],
    };
    if differing > keys {
        return Err("more differing keys than keys".into());
    }

    let started = Instant::now();
    let mut rng = Rng(42);
    let mut chosen = BTreeSet::new();
    while (chosen.len() as u64) < differing {
        chosen.insert(rng.next() % keys);
    }
    let (mut on_a, mut on_b) = (Vec::new(), Vec::new());
    let (mut expect_a, mut expect_b) = (BTreeSet::new(), BTreeSet::new());
    let mut key_bytes = 0u64;
    for i in 0..keys {
        let k = key(i);
        key_bytes += k.len() as u64;
        let record = written(i, "node-a");
        let item = Stored {
            token: token(&k),
            hash: item_hash(&k, &record),
            key: k.clone(),
        };
        match chosen.contains(&i).then_some(i % 3) {
            None => {
                on_a.push(item.clone());
                on_b.push(item);
            }
            Some(0) => {
                on_a.push(item); // b lacks it
                expect_a.insert(k);
            }
            Some(1) => {
                on_b.push(item); // a lacks it
                expect_b.insert(k);
            }
            Some(_) => {
                // b took a later overwrite.
                let later = Record::update(
                    &Record::new_with_context(&record.join(), sibling(i + 1, "node-b")),
                    &record,
                    "node-b",
                );
                on_b.push(Stored {
                    hash: item_hash(&k, &later),
                    ..item.clone()
                });
                on_a.push(item);
                expect_a.insert(k.clone());
                expect_b.insert(k);
            }
        }
    }
    let full_list = key_bytes + 32 * keys;
    println!(
        "{keys} keys ({key_bytes} key bytes), {differing} differing; data generated in {}",
        millis(started.elapsed())
    );
    println!("full (key, hash) list: {full_list} bytes\n");
    println!("| depth | tree memory | build + root (per tree) | differing leaves | keys pushed a→b / b→a | keys listed | messages | lock-step round trips | bytes (hashes / items) | ratio to full list | exchange time |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &depth in &depths {
        let mut a = Replica::new(on_a.clone());
        let mut b = Replica::new(on_b.clone());
        let t = Instant::now();
        let mut ta = tree(&a, depth)?;
        ta.root();
        let build = t.elapsed();
        let mut tb = tree(&b, depth)?;
        tb.root();
        let t = Instant::now();
        let cost = exchange(&mut a, &mut ta, &mut b, &mut tb)?;
        let took = t.elapsed();
        if a.pushed != expect_a || b.pushed != expect_b {
            return Err(format!(
                "depth {depth}: the exchange found other keys than the differing ones"
            )
            .into());
        }
        let differing_leaves = {
            let mut leaves: BTreeSet<usize> = BTreeSet::new();
            for k in expect_a.iter().chain(&expect_b) {
                leaves.extend(ta.leaf_of(token(k)));
            }
            leaves.len()
        };
        println!(
            "| {depth} | {:.1} MiB | {} | {differing_leaves} | {} / {} | {} | {} | {} | {} ({} / {}) | {:.2} % | {} |",
            RangeTree::memory_bytes(depth) as f64 / f64::from(1 << 20),
            millis(build),
            a.pushed.len(),
            b.pushed.len(),
            cost.keys_listed,
            cost.messages,
            cost.round_trips,
            cost.bytes,
            cost.hash_bytes,
            cost.item_bytes,
            100.0 * cost.bytes as f64 / full_list as f64,
            millis(took),
        );
    }

    // item_hash is computed for the old and the new record of every write.
    let record = written(0, "node-a");
    let sample: Vec<Vec<u8>> = (0..1024).map(key).collect();
    let (rounds, start) = (1_000_000usize, Instant::now());
    for i in 0..rounds {
        std::hint::black_box(item_hash(&sample[i % 1024], std::hint::black_box(&record)));
    }
    let hashing = start.elapsed();
    println!(
        "\nitem_hash of a one-sibling record: {:.2} M hashes/s",
        rounds as f64 / hashing.as_secs_f64() / 1e6
    );

    println!("\n| depth | updates | update throughput | root() after the updates |");
    println!("|---|---|---|---|");
    let hashes: Vec<(u64, Hash)> = on_a.iter().map(|s| (s.token, s.hash)).collect();
    for &depth in &depths {
        let mut t = RangeTree::from_items(0, 0, depth, hashes.iter().copied())?;
        t.root();
        // Replace every item's hash by another: one update per key, in key order.
        let fresh: Vec<Hash> = hashes.iter().map(|(_, h)| other(h)).collect();
        let start = Instant::now();
        for ((token, old), new) in hashes.iter().zip(&fresh) {
            t.update(*token, Some(*old), Some(*new))?;
        }
        let updating = start.elapsed();
        let start = Instant::now();
        std::hint::black_box(t.root());
        let root = start.elapsed();
        println!(
            "| {depth} | {} | {:.1} M updates/s | {} |",
            hashes.len(),
            hashes.len() as f64 / updating.as_secs_f64() / 1e6,
            millis(root),
        );
    }
    Ok(())
}

/// Another hash derived from `h` (a stand-in for the item hash of a newer version).
fn other(h: &Hash) -> Hash {
    let mut out = *h;
    out[0] ^= 0xff;
    out[31] ^= 0x5a;
    out
}
