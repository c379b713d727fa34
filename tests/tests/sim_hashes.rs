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
            0x8034016fe8008dac,
        ),
        (
            "quorum, crash",
            config("crash", None),
            2,
            0x724a0b7d2e5c81ca,
        ),
        (
            "quorum, partition",
            config("partition", None),
            3,
            0x8d4dffed53d9ca2c,
        ),
        (
            "quorum, one-way",
            config("one-way", None),
            4,
            0x12757e38feaa7d38,
        ),
        (
            "quorum, pause",
            config("pause", None),
            5,
            0xafe6badb158c6055,
        ),
        (
            "quorum, clock",
            config("clock", None),
            6,
            0xefb7213f6e460aea,
        ),
        (
            "quorum, join and leave",
            config("join,leave", None),
            7,
            0x59808b05d85c2d44,
        ),
        (
            "quorum, loss, dup, call-loss",
            config("loss,dup,call-loss", None),
            8,
            0x6dd8d519ebc8f44c,
        ),
        (
            "primary majority, every fault",
            config("all", majority),
            9,
            0xe82410d02cf8bf03,
        ),
        (
            "primary majority, crash",
            config("crash", majority),
            10,
            0xf23976f4e487cb94,
        ),
        (
            "primary none, partition",
            config("partition", Some(SyncReplicas::None)),
            11,
            0x0977bc371fdc78d8,
        ),
        (
            "primary 1, pause and clock",
            config("pause,clock", Some(SyncReplicas::Count(1))),
            12,
            0xe1ab3ab3e337e023,
        ),
        (
            "primary majority, chain, crash",
            SimConfig {
                topology: Topology::Chain,
                ..config("crash,partition", majority)
            },
            13,
            0xa7fc12c077380362,
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
