//! Writes the seed corpora, `corpus/TARGET/`, from real messages: those a simulated
//! three-node cluster exchanges while it settles, turns a prefix to primary mode and takes
//! writes, and values built from the product's types.
//!
//! Built with the targets (it shares their build); run from `fuzz/`:
//! `cargo +nightly fuzz run seeds` writes the seeds at start-up and exits (replacing the seed
//! files it names, keeping any other corpus entry).

#![no_main]
// The seeds are written by the init block, which then exits: the fuzz body never runs.
#![allow(unreachable_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use ringkv::core::Timer;
use ringkv::merkle::{Action, Exchange, ExchangeLimits, ExchangeMsg, RangeTree};
use ringkv::proto::repl::ReplRequest;
use ringkv::proto::update::{SetWhen, UpdateOp};
use ringkv::proto::{
    ClientError, ClientRequest, ClientResponse, PeerRequest, Request, Response, Session,
    WriteResult,
};
use ringkv::store::Store;
use ringkv::table::{
    Mode, PrimaryOptions, RangeTable, ReadFrom, SyncReplicas, TableLimits, Topology,
};
use ringkv::version::{encode_record, Context, Record, Sibling, VersionVector};
use ringkv_fuzz_targets::{merkle_item, primary_cluster, push_step, Delivery, MerkleSetup, Sim};

/// Seeds of one target, at most `max`, deduplicated by the label given with each.
struct Corpus {
    name: &'static str,
    max: usize,
    per_label: usize,
    files: BTreeMap<String, Vec<u8>>,
    labels: BTreeMap<String, usize>,
}

impl Corpus {
    fn new(name: &'static str, max: usize, per_label: usize) -> Self {
        Corpus {
            name,
            max,
            per_label,
            files: BTreeMap::new(),
            labels: BTreeMap::new(),
        }
    }

    fn add(&mut self, label: &str, bytes: Vec<u8>) {
        let seen = self.labels.entry(label.to_string()).or_default();
        if *seen >= self.per_label || self.files.len() >= self.max {
            return;
        }
        let file = format!("seed-{label}-{seen}");
        *seen += 1;
        self.files.insert(file, bytes);
    }

    fn write(&self) {
        let dir = Path::new("corpus").join(self.name);
        fs::create_dir_all(&dir).expect("corpus directory");
        for (file, bytes) in &self.files {
            fs::write(dir.join(file), bytes).expect("seed written");
        }
        let total: usize = self.files.values().map(Vec::len).sum();
        println!("{}: {} seeds, {total} bytes", self.name, self.files.len());
    }
}

/// A short label naming a value's variants, from its debug form.
fn label(debug: &str) -> String {
    debug
        .chars()
        .take_while(|c| c.is_alphanumeric() || "({ ".contains(*c))
        .filter(|c| c.is_alphanumeric() || *c == '(')
        .take(40)
        .collect::<String>()
        .replace('(', "-")
}

fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("encodes")
}

fn record(value: &[u8], origin: &str) -> Record {
    Record::new(Sibling {
        value: Some(value.to_vec()),
        ts: Default::default(),
        origin: origin.into(),
    })
}

fn context() -> Context {
    let mut vv = VersionVector::new();
    vv.witness("n1", 3);
    vv.witness("n2~1", 7);
    Context(vv)
}

fn primary(sync: SyncReplicas) -> Mode {
    Mode::Primary(PrimaryOptions {
        sync,
        read_from: ReadFrom::Replica,
        topology: Topology::Chain,
    })
}

/// The cluster under test in `replication`, then writes to its primary-mode keys through
/// every node: what `n1` is fed meanwhile.
fn workload() -> Sim {
    let mut sim = primary_cluster();
    let start = sim.log[0].len();
    for (n, i) in [1usize, 2, 0, 1, 2, 0].into_iter().enumerate() {
        let key = format!("p/{n}").into_bytes();
        let put = ClientRequest::Put {
            key: key.clone(),
            value: b"v".to_vec(),
            context: None,
            w: None,
        };
        sim.client(i, 100 + n as u64, put);
        let update = ClientRequest::Update {
            key,
            op: UpdateOp::Add(1),
        };
        sim.client(i, 200 + n as u64, update);
        let until = sim.now + 300;
        sim.run_until(until, 200_000);
    }
    sim.client(
        2,
        300,
        ClientRequest::Get {
            key: b"p/1".to_vec(),
            r: None,
            wait_repair: false,
        },
    );
    sim.client(
        0,
        301,
        ClientRequest::Put {
            key: b"q".to_vec(),
            value: b"w".to_vec(),
            context: None,
            w: None,
        },
    );
    let until = sim.now + 2_000;
    sim.run_until(until, 200_000);
    sim.log[0].drain(..start);
    sim
}

fn wire_seeds(sim: &Sim, c: &mut Corpus) {
    for log in &sim.log {
        for (_, d) in log {
            match d {
                Delivery::Request(_, from, req) => {
                    let r = Request::Peer {
                        from: from.clone(),
                        req: req.clone(),
                    };
                    c.add(&label(&format!("Peer({req:?}")), enc(&r));
                }
                Delivery::Reply(_, Ok(reply)) => {
                    let r = Response::Peer(reply.clone());
                    c.add(&label(&format!("{r:?}")), enc(&r));
                }
                Delivery::Client(_, req) => {
                    let r = Request::Client(req.clone());
                    c.add(&label(&format!("{r:?}")), enc(&r));
                }
                _ => {}
            }
        }
    }
    let ctx = Some(context());
    let clients = [
        ClientRequest::Get {
            key: b"k".to_vec(),
            r: Some(2),
            wait_repair: true,
        },
        ClientRequest::Delete {
            key: b"k".to_vec(),
            context: ctx.clone(),
            w: Some(2),
        },
        ClientRequest::Members,
        ClientRequest::Ring,
        ClientRequest::Inspect { key: b"k".to_vec() },
        ClientRequest::Status,
        ClientRequest::Repair,
        ClientRequest::RangeList,
        ClientRequest::Replication {
            key: Some(b"p/1".to_vec()),
        },
        ClientRequest::Keys {
            from: 0,
            limit: 100,
        },
        ClientRequest::RangeSet {
            prefix: b"u/".to_vec(),
            mode: primary(SyncReplicas::Count(1)),
        },
        ClientRequest::Direct(Box::new(ClientRequest::Update {
            key: b"p/2".to_vec(),
            op: UpdateOp::Set {
                value: b"x".to_vec(),
                when: SetWhen::Absent,
            },
        })),
        ClientRequest::After {
            after: Session {
                replid: "ab12".into(),
                offset: 7,
            },
            req: Box::new(ClientRequest::Get {
                key: b"p/1".to_vec(),
                r: None,
                wait_repair: false,
            }),
        },
    ];
    for req in clients {
        let r = Request::Client(req);
        c.add(&label(&format!("{r:?}")), enc(&r));
    }
    c.add("Info", enc(&Request::Info));
    let answers: [Result<ClientResponse, ClientError>; 3] = [
        Ok(ClientResponse::Written(WriteResult {
            context: context(),
            acked: 2,
            session: None,
        })),
        Err(ClientError::NotPrimary {
            primary: Some("n2".into()),
            epoch: 3,
        }),
        Err(ClientError::BadRequest("no".into())),
    ];
    for a in answers {
        let r = Response::Client(a);
        c.add(&label(&format!("{r:?}")), enc(&r));
    }
    let exchange = PeerRequest::Exchange {
        session: 1,
        start: 0,
        end: 1 << 40,
        msg: ExchangeMsg::Want {
            keys: vec![b"k".to_vec()],
        },
    };
    c.add(
        "Exchange",
        enc(&Request::Peer {
            from: "n2".into(),
            req: exchange,
        }),
    );
    c.add(
        "Record",
        encode_record(&record(b"v", "n1")).expect("record"),
    );
}

fn gossip_seeds(c: &mut Corpus) {
    // n1 (alone, no seeds) as the target has it, joined by n2 and n3.
    let mut sim = Sim::new(3, &ringkv_fuzz_targets::small_config());
    sim.run_until(3_000, 200_000);
    let datagrams: Vec<Vec<u8>> = sim.log[0]
        .iter()
        .filter_map(|(_, d)| match d {
            Delivery::Datagram(data) => Some(data.to_vec()),
            _ => None,
        })
        .collect();
    for (n, d) in datagrams.iter().enumerate().step_by(7).take(20) {
        let mut input = Vec::new();
        push_step(&mut input, 0, d);
        c.add(&format!("datagram{n}"), input);
    }
    // Sequences as they arrived, with timers fired between them.
    for chunk in datagrams.chunks(12).take(6) {
        let mut input = Vec::new();
        for d in chunk {
            push_step(&mut input, 0, d);
            push_step(&mut input, 3, &[]);
        }
        c.add("sequence", input);
    }
}

/// The messages an honest peer sends the side under test, in order.
fn honest_exchange(setup: &MerkleSetup) -> Vec<ExchangeMsg> {
    let (start, end) = (setup.start, setup.end);
    let items = |keys: &[(u8, u8)]| -> Vec<(u64, Vec<u8>, [u8; 32])> {
        let keys: BTreeMap<u8, u8> = keys.iter().copied().collect();
        keys.iter()
            .map(|(&k, &h)| {
                let (t, (key, hash)) = merkle_item(start, end, k, h);
                (t, key, hash)
            })
            .collect()
    };
    let (ours, theirs) = (items(&setup.ours), items(&setup.theirs));
    let depth = 1 + setup.depth % 8;
    let tree = |items: &[(u64, Vec<u8>, [u8; 32])]| {
        RangeTree::from_items(start, end, depth, items.iter().map(|(t, _, h)| (*t, *h)))
            .expect("tree")
    };
    let (mut ta, mut tb) = (tree(&ours), tree(&theirs));
    let limits = if setup.small_limits {
        ExchangeLimits {
            max_hashes: 3,
            max_items: 3,
            max_item_bytes: 120,
            max_leaf_items: 64,
        }
    } else {
        ExchangeLimits::default()
    };
    let (mut a, mut b) = if setup.initiator {
        (
            Exchange::initiate(&mut ta, limits).expect("a"),
            Exchange::respond(&tb, limits).expect("b"),
        )
    } else {
        (
            Exchange::respond(&ta, limits).expect("a"),
            Exchange::initiate(&mut tb, limits).expect("b"),
        )
    };
    let scan = |items: &[(u64, Vec<u8>, [u8; 32])], lo: u64, hi: u64| {
        items
            .iter()
            .filter(|(t, _, _)| {
                if lo < hi {
                    lo < *t && *t <= hi
                } else {
                    lo < *t || *t <= hi
                }
            })
            .map(|(_, k, h)| (k.clone(), *h))
            .collect()
    };
    let mut to_a = Vec::new();
    for _ in 0..1000 {
        let mut progress = false;
        while let Some(action) = a.poll() {
            progress = true;
            match action {
                Action::Send(msg) => {
                    let _ = b.handle(&mut tb, msg);
                }
                Action::ScanLeaf { leaf, start, end } => {
                    let _ = a.leaf_items(leaf, scan(&ours, start, end));
                }
                Action::Push(_) => {}
            }
        }
        while let Some(action) = b.poll() {
            progress = true;
            match action {
                Action::Send(msg) => {
                    to_a.push(msg.clone());
                    let _ = a.handle(&mut ta, msg);
                }
                Action::ScanLeaf { leaf, start, end } => {
                    let _ = b.leaf_items(leaf, scan(&theirs, start, end));
                }
                Action::Push(_) => {}
            }
        }
        if !progress {
            break;
        }
    }
    to_a
}

fn merkle_seeds(c: &mut Corpus) {
    let keys = |n: u8, salt: u8| -> Vec<(u8, u8)> {
        (0..n).map(|k| (k.wrapping_mul(37), k ^ salt)).collect()
    };
    let setups = [
        MerkleSetup {
            initiator: true,
            start: 0,
            end: 1 << 32,
            depth: 3,
            small_limits: false,
            ours: keys(20, 0),
            theirs: keys(24, 0),
        },
        MerkleSetup {
            initiator: false,
            start: 0,
            end: 1 << 32,
            depth: 3,
            small_limits: false,
            ours: keys(20, 0),
            theirs: keys(20, 5),
        },
        MerkleSetup {
            initiator: true,
            start: u64::MAX - 1_000_000,
            end: 1_000_000,
            depth: 5,
            small_limits: true,
            ours: keys(60, 1),
            theirs: keys(50, 2),
        },
        MerkleSetup {
            initiator: false,
            start: 7,
            end: 7,
            depth: 7,
            small_limits: true,
            ours: keys(100, 0),
            theirs: vec![],
        },
        MerkleSetup {
            initiator: true,
            start: 0,
            end: 1 << 20,
            depth: 1,
            small_limits: false,
            ours: vec![],
            theirs: keys(5, 3),
        },
    ];
    for (n, setup) in setups.iter().enumerate() {
        let msgs = honest_exchange(setup);
        // Honest steps only: the target's peer sends them.
        let mut honest = Vec::new();
        push_step(&mut honest, 0, &enc(setup));
        for _ in 0..msgs.len() + 2 {
            push_step(&mut honest, 0, &[]);
        }
        c.add(&format!("honest{n}"), honest);
        // The same messages as frames (the fuzzer's own path), and a wrong leaf scan.
        let mut framed = Vec::new();
        push_step(&mut framed, 0, &enc(setup));
        for m in &msgs {
            push_step(&mut framed, 1, &enc(m));
        }
        push_step(
            &mut framed,
            2,
            &enc(&(1u32, vec![(b"k".to_vec(), [9u8; 32])])),
        );
        c.add(&format!("framed{n}"), framed);
    }
}

fn replication_seeds(sim: &Sim, c: &mut Corpus) {
    let mut input = Vec::new();
    let mut count = 0;
    let mut kinds = BTreeMap::<String, usize>::new();
    for (_, d) in &sim.log[0] {
        let (kind, bytes, what) = match d {
            Delivery::Request(_, from, req) => {
                let r = Request::Peer {
                    from: from.clone(),
                    req: req.clone(),
                };
                (0u8, enc(&r), label(&format!("Peer({req:?}")))
            }
            Delivery::Reply(_, Ok(reply)) => {
                let mut b = vec![0u8];
                b.extend(enc(reply));
                (1, b, label(&format!("{reply:?}")))
            }
            Delivery::Client(_, req) => {
                let r = Request::Client(req.clone());
                (0, enc(&r), label(&format!("{r:?}")))
            }
            Delivery::Timer(Timer::Replication) => (2, vec![25], "tick".into()),
            _ => continue,
        };
        if bytes.len() > 4096 {
            continue;
        }
        // One file per kind of message (the first few of each), and sequences of them.
        let seen = kinds.entry(what.clone()).or_default();
        if *seen < 2 {
            let mut one = Vec::new();
            push_step(&mut one, kind, &bytes);
            push_step(&mut one, 2, &[50]);
            c.add(&what, one);
        }
        *seen += 1;
        push_step(&mut input, kind, &bytes);
        count += 1;
        if count == 24 {
            c.add("sequence", std::mem::take(&mut input));
            count = 0;
        }
    }
    // Votes and appends from a node claiming a newer epoch, from a stranger, and a snapshot
    // page for a shard that is not one.
    let shard: Vec<String> = vec!["n2".into(), "n1".into(), "n3".into()];
    let hostile = [
        ReplRequest::Vote {
            shard: shard.clone(),
            epoch: 99,
            log_epoch: 99,
            offset: u64::MAX,
        },
        ReplRequest::PreVote {
            shard: shard.clone(),
            epoch: 2,
            log_epoch: 0,
            offset: 0,
        },
        ReplRequest::Snapshot {
            shard: vec!["x".into()],
            epoch: 1,
            replid: "r".into(),
            at: 5,
            at_epoch: 1,
            span: Default::default(),
            items: vec![(1, b"p/1".to_vec(), record(b"v", "n2"))],
            done: true,
        },
    ];
    for req in hostile {
        let what = label(&format!("Hostile({req:?}"));
        let r = Request::Peer {
            from: "n2".into(),
            req: PeerRequest::Repl(req, 0),
        };
        let mut one = Vec::new();
        push_step(&mut one, 0, &enc(&r));
        push_step(&mut one, 2, &[100]);
        c.add(&what, one);
    }
    let mut one = Vec::new();
    push_step(&mut one, 1, &[3, 0xff, 0xff]);
    c.add("garbage-reply", one);
}

fn resp_seeds(c: &mut Corpus) {
    let reqs: [&[u8]; 9] = [
        b"\x00*1\r\n$4\r\nPING\r\n",
        b"\x03*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n",
        b"\x01*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
        b"\x07*4\r\n$3\r\nSET\r\n$3\r\np/1\r\n$2\r\n10\r\n$2\r\nNX\r\n",
        b"\x02*2\r\n$4\r\nINCR\r\n$3\r\np/1\r\n",
        b"\x05*3\r\n$4\r\nSCAN\r\n$1\r\n0\r\n$5\r\nCOUNT\r\n",
        b"\x00*1\r\n$-1\r\n",
        b"\x04*0\r\n",
        b"\x09*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*1\r\n$7\r\nCOMMAND\r\n",
    ];
    for (n, r) in reqs.iter().enumerate() {
        c.add(&format!("req{n}"), r.to_vec());
    }
}

fn tokens_seeds(c: &mut Corpus) {
    let limits = TableLimits {
        max_rules: 8,
        max_prefix: 32,
        replicas: 3,
    };
    let mut table = RangeTable::new();
    table
        .set(
            b"p/".to_vec(),
            primary(SyncReplicas::Majority),
            "n1",
            &limits,
        )
        .expect("rule");
    table
        .set(b"p/tmp/".to_vec(), Mode::Quorum, "n2", &limits)
        .expect("rule");
    let texts = [
        context().to_token(),
        "ab12:7".into(),
        "sync".into(),
        "buffered".into(),
        "lww".into(),
        "siblings".into(),
    ];
    for (n, t) in texts.iter().enumerate() {
        let mut input = Vec::new();
        push_step(&mut input, 0, t.as_bytes());
        c.add(&format!("token{n}"), input);
    }
    let mut input = Vec::new();
    push_step(
        &mut input,
        1,
        &enc(&(
            b"u/".to_vec(),
            primary(SyncReplicas::Count(1)),
            "n3".to_string(),
        )),
    );
    push_step(
        &mut input,
        1,
        &enc(&(b"u/a".to_vec(), Mode::Quorum, "n3".to_string())),
    );
    push_step(&mut input, 2, &enc(&table));
    push_step(&mut input, 0, context().to_token().as_bytes());
    c.add("rules", input);
    let mut input = Vec::new();
    push_step(&mut input, 2, &enc(&table));
    c.add("table", input);
}

fn store_seeds(sim: &Sim, c: &mut Corpus) {
    let store = &sim.stores[0];
    for (n, entry) in store.scan(0, 0, None, 8).expect("scan").iter().enumerate() {
        let mut input = Vec::new();
        push_step(&mut input, 0, &entry.value);
        c.add(&format!("record{n}"), input);
    }
    for (i, name) in [
        "actor-epoch",
        "actor-dropped",
        "ring-peers",
        ringkv::table::TABLE_META_KEY,
    ]
    .iter()
    .enumerate()
    {
        if let Some(value) = store.meta_get(name).expect("meta") {
            let mut body = vec![i as u8];
            body.extend(value);
            let mut input = Vec::new();
            push_step(&mut input, 1, &body);
            c.add(&format!("meta-{name}"), input);
        }
    }
    let mut epoch = vec![0u8];
    epoch.extend(3u64.to_be_bytes());
    let mut input = Vec::new();
    push_step(&mut input, 1, &epoch);
    c.add("meta-epoch", input);
    // A hint as the disk engine lays it out: owner length, owner, token, key; stamp, record.
    let rec = encode_record(&record(b"v", "n1")).expect("record");
    let mut key = vec![2u8];
    key.extend(b"n2");
    key.extend(42u64.to_be_bytes());
    key.extend(b"k");
    let mut body = vec![key.len() as u8];
    body.extend(&key);
    body.extend(1_000u64.to_be_bytes());
    body.extend(&rec);
    let mut input = Vec::new();
    push_step(&mut input, 2, &body);
    let mut data_key = 42u64.to_be_bytes().to_vec();
    data_key.extend(b"k");
    push_step(&mut input, 3, &data_key);
    push_step(&mut input, 0, &rec);
    c.add("layouts", input);
}

fn write_seeds() {
    let sim = workload();
    let mut wire = Corpus::new("wire", 60, 2);
    wire_seeds(&sim, &mut wire);
    let mut gossip = Corpus::new("gossip", 30, 6);
    gossip_seeds(&mut gossip);
    let mut merkle = Corpus::new("merkle", 20, 1);
    merkle_seeds(&mut merkle);
    let mut replication = Corpus::new("replication", 50, 8);
    replication_seeds(&sim, &mut replication);
    let mut resp = Corpus::new("resp", 20, 1);
    resp_seeds(&mut resp);
    let mut tokens = Corpus::new("tokens", 20, 1);
    tokens_seeds(&mut tokens);
    let mut store = Corpus::new("store", 30, 1);
    store_seeds(&sim, &mut store);
    for c in [
        &wire,
        &gossip,
        &merkle,
        &replication,
        &resp,
        &tokens,
        &store,
    ] {
        c.write();
    }
}

libfuzzer_sys::fuzz_target!(
    init: {
        write_seeds();
        std::process::exit(0);
    },
    |_data: &[u8]| {}
);
