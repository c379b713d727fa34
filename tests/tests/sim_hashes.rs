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
            0xb171da9cb3530a2d,
        ),
        (
            "quorum, crash",
            config("crash", None),
            2,
            0xdd1197a25a3769b3,
        ),
        (
            "quorum, partition",
            config("partition", None),
            3,
            0x6306e46b7f76ebd2,
        ),
        (
            "quorum, one-way",
            config("one-way", None),
            4,
            0x79b00fd9e59ea3db,
        ),
        (
            "quorum, pause",
            config("pause", None),
            5,
            0x8bb878ada8d1aef4,
        ),
        (
            "quorum, clock",
            config("clock", None),
            6,
            0x5b1c73e18ea5aa69,
        ),
        (
            "quorum, join and leave",
            config("join,leave", None),
            7,
            0x9e9c6049ef603a9a,
        ),
        (
            "quorum, loss, dup, call-loss",
            config("loss,dup,call-loss", None),
            8,
            0x74cde0b23507e40f,
        ),
        (
            "primary majority, every fault",
            config("all", majority),
            9,
            0x6ddffc43decac1cc,
        ),
        (
            "primary majority, crash",
            config("crash", majority),
            10,
            0x24deac55cb2538cc,
        ),
        (
            "primary none, partition",
            config("partition", Some(SyncReplicas::None)),
            11,
            0xe241be967ea8bb6a,
        ),
        (
            "primary 1, pause and clock",
            config("pause,clock", Some(SyncReplicas::Count(1))),
            12,
            0x08f39ca8d84b6377,
        ),
        (
            "primary majority, chain, crash",
            SimConfig {
                topology: Topology::Chain,
                ..config("crash,partition", majority)
            },
            13,
            0xacb388d31507d9a6,
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
