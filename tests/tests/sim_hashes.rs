//! The simulator's fingerprint of a fixed list of runs. A change meant to keep the core's
//! behaviour (a restructuring, a new type for call ids or errors) must leave every hash
//! unchanged: the hash covers every message, timer, sync, client operation and replica write
//! of the run, in order. A change meant to alter behaviour updates this list in the same
//! commit, and says why; print the new values with
//! `cargo test -p ringkv-tests --test sim_hashes -- --nocapture`.

use ringkv::{SyncReplicas, Topology};
use ringkv_tests::sim::config::SimConfig;
use ringkv_tests::sim::run::run;

/// A short run of `config` (fault kinds as the simulator's `--faults` names them).
fn config(faults: &str, primary: Option<SyncReplicas>) -> SimConfig {
    let mut c = SimConfig {
        faults: faults.parse().expect("fault kinds"),
        primary,
        ops: 80,
        ..SimConfig::default()
    };
    if primary.is_some() {
        c.keys = 2;
        c.clients = 4;
    }
    c
}

#[test]
fn trace_hashes_of_a_fixed_seed_list_are_unchanged() {
    let majority = Some(SyncReplicas::Majority);
    let cases: Vec<(&str, SimConfig, u64, u64)> = vec![
        (
            "quorum, every fault",
            config("all", None),
            1,
            0xf86f635966689363,
        ),
        (
            "quorum, crash",
            config("crash", None),
            2,
            0x25967db2ad6b7497,
        ),
        (
            "quorum, partition",
            config("partition", None),
            3,
            0x671025bf10b866f6,
        ),
        (
            "quorum, one-way",
            config("one-way", None),
            4,
            0x1a9cd9691c62814e,
        ),
        (
            "quorum, pause",
            config("pause", None),
            5,
            0x259746814380eafb,
        ),
        (
            "quorum, clock",
            config("clock", None),
            6,
            0xc31a735746200f9f,
        ),
        (
            "quorum, join and leave",
            config("join,leave", None),
            7,
            0x0e62849d11138507,
        ),
        (
            "quorum, loss, dup, call-loss",
            config("loss,dup,call-loss", None),
            8,
            0x804f0a46a0e2ee73,
        ),
        (
            "primary majority, every fault",
            config("all", majority),
            9,
            0x29a6e585638b0ca7,
        ),
        (
            "primary majority, crash",
            config("crash", majority),
            10,
            0x4f6ea37952c28919,
        ),
        (
            "primary none, partition",
            config("partition", Some(SyncReplicas::None)),
            11,
            0x500918a52670bdef,
        ),
        (
            "primary 1, pause and clock",
            config("pause,clock", Some(SyncReplicas::Count(1))),
            12,
            0x7ee9c2118a9e64b6,
        ),
        (
            "primary majority, chain, crash",
            SimConfig {
                topology: Topology::Chain,
                ..config("crash,partition", majority)
            },
            13,
            0x74281f99a0d92c13,
        ),
    ];
    let mut changed = Vec::new();
    for (name, config, seed, want) in &cases {
        let report = run(*seed, config, None);
        println!("{name}: seed {seed} hash {:#018x}", report.trace_hash);
        if report.trace_hash != *want {
            changed.push(format!(
                "{name} (seed {seed}): {:#018x}, recorded {want:#018x}",
                report.trace_hash
            ));
        }
    }
    assert!(
        changed.is_empty(),
        "trace hashes changed:\n{}",
        changed.join("\n")
    );
}
