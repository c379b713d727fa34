//! Shrinking a failing run: drop fault episodes one at a time while the run still breaks
//! the same invariant, and say how to replay the smallest schedule found.

use super::config::SimConfig;
use super::faults::Schedule;
use super::run::{run, RunReport};

/// The smallest failing run found.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The run of the smallest schedule (its own violations and trace).
    pub report: RunReport,
    /// How many runs shrinking took.
    pub runs: usize,
}

/// Greedily removes episodes from `failed`'s schedule while the run still breaks the
/// invariant it broke first; at most `max_runs` runs.
pub fn shrink(config: &SimConfig, failed: &RunReport, max_runs: usize) -> Shrunk {
    let Some(target) = failed.violations.first().map(|v| v.invariant) else {
        return Shrunk {
            report: failed.clone(),
            runs: 0,
        };
    };
    let mut best = failed.clone();
    let mut runs = 0;
    'outer: loop {
        for i in 0..best.schedule.episodes.len() {
            if runs >= max_runs {
                break 'outer;
            }
            let candidate = best.schedule.without(i);
            let report = run(failed.seed, config, Some(&candidate));
            runs += 1;
            if report.violations.iter().any(|v| v.invariant == target) {
                best = report;
                continue 'outer;
            }
        }
        break;
    }
    Shrunk { report: best, runs }
}

/// The command that replays `seed` with `schedule` under `config`, printing its trace.
///
/// ```
/// use ringkv_tests::sim::{config::SimConfig, faults::Schedule, shrink::replay_command};
/// let cmd = replay_command(42, &SimConfig::default(), &"1-2:crash:0".parse::<Schedule>().unwrap());
/// assert_eq!(cmd, "cargo run --release -p ringkv-tests --bin sim -- --seed 42 --schedule '1.000-2.000:crash:0' --trace 200");
/// ```
pub fn replay_command(seed: u64, config: &SimConfig, schedule: &Schedule) -> String {
    let mut cmd = format!(
        "cargo run --release -p ringkv-tests --bin sim -- --seed {seed} --schedule '{schedule}'"
    );
    for flag in config_flags(config) {
        cmd.push(' ');
        cmd.push_str(&flag);
    }
    cmd.push_str(" --trace 200");
    cmd
}

/// The `sim` flags that reproduce `config` (those that differ from the defaults; the fault
/// kinds are left out, since the schedule is given).
pub fn config_flags(config: &SimConfig) -> Vec<String> {
    let d = SimConfig::default();
    let mut flags = Vec::new();
    if config.nodes != d.nodes {
        flags.push(format!("--nodes {}-{}", config.nodes.0, config.nodes.1));
    }
    if let Some(policy) = config.policy {
        flags.push(format!("--policy {policy}"));
    }
    if config.durability != d.durability {
        flags.push(format!("--durability {}", config.durability));
    }
    for (name, value, default) in [
        ("--ops", config.ops, d.ops),
        ("--clients", config.clients, d.clients),
        ("--keys", config.keys, d.keys),
        ("--max-faults", config.max_faults, d.max_faults),
    ] {
        if value != default {
            flags.push(format!("{name} {value}"));
        }
    }
    if config.workload != d.workload {
        flags.push(format!("--workload-secs {}", config.workload.as_secs()));
    }
    if config.sabotage.ack_after_one {
        flags.push("--sabotage ack-after-one".into());
    }
    if config.sabotage.skip_read_merge {
        flags.push("--sabotage skip-read-merge".into());
    }
    if config.sabotage.drop_hints {
        flags.push("--sabotage drop-hints".into());
    }
    if config.sabotage.grant_every_vote {
        flags.push("--sabotage grant-every-vote".into());
    }
    if config.sabotage.ack_before_replicas {
        flags.push("--sabotage ack-before-replicas".into());
    }
    if config.sabotage.keep_replid {
        flags.push("--sabotage keep-replid".into());
    }
    if let Some(sync) = config.primary {
        flags.push(format!("--primary {sync}"));
        if config.topology != ringkv::Topology::Star {
            flags.push(format!("--topology {}", config.topology));
        }
    }
    if !config.capabilities.anti_entropy {
        flags.push("--no-anti-entropy".into());
    }
    if !config.capabilities.read_repair {
        flags.push("--no-read-repair".into());
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringkv::version::ConflictPolicy;

    #[test]
    fn replay_commands_carry_every_non_default_setting() {
        let mut config = SimConfig {
            policy: Some(ConflictPolicy::Lww),
            ops: 99,
            ..SimConfig::default()
        };
        config.sabotage.skip_read_merge = true;
        config.capabilities.anti_entropy = false;
        config.primary = Some(ringkv::SyncReplicas::Majority);
        config.topology = ringkv::Topology::Chain;
        let cmd = replay_command(5, &config, &Schedule::none());
        assert!(cmd.contains("--seed 5 --schedule 'none'"), "{cmd}");
        for flag in [
            "--policy lww",
            "--ops 99",
            "--sabotage skip-read-merge",
            "--no-anti-entropy",
            "--primary majority",
            "--topology chain",
        ] {
            assert!(cmd.contains(flag), "{cmd} lacks {flag}");
        }
    }
}
