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
            0xa1a86f6ca794c232,
        ),
        (
            "quorum, crash",
            config("crash", None),
            2,
            0x8961802f124b2d38,
        ),
        (
            "quorum, partition",
            config("partition", None),
            3,
            0x3944a6a6a399692a,
        ),
        (
            "quorum, one-way",
            config("one-way", None),
            4,
            0x1f187724ab7508ec,
        ),
        (
            "quorum, pause",
            config("pause", None),
            5,
            0x90bf913b45be2d61,
        ),
        (
            "quorum, clock",
            config("clock", None),
            6,
            0x495bda58c2c891f6,
        ),
        (
            "quorum, join and leave",
            config("join,leave", None),
            7,
            0x238f67d555d75726,
        ),
        (
            "quorum, loss, dup, call-loss",
            config("loss,dup,call-loss", None),
            8,
            0xc3c9e9a975fb4587,
        ),
        (
            "primary majority, every fault",
            config("all", majority),
            9,
            0x16f8b6144d7f32d2,
        ),
        (
            "primary majority, crash",
            config("crash", majority),
            10,
            0xe6d15e0dacc2d673,
        ),
        (
            "primary none, partition",
            config("partition", Some(SyncReplicas::None)),
            11,
            0x877910696e11b7ce,
        ),
        (
            "primary 1, pause and clock",
            config("pause,clock", Some(SyncReplicas::Count(1))),
            12,
            0x1f221882c4c03aa9,
        ),
        (
            "primary majority, chain, crash",
            SimConfig {
                topology: Topology::Chain,
                ..config("crash,partition", majority)
            },
            13,
            0xc838db74852c1a28,
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
