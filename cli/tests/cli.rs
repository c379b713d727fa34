//! Offline behaviour of the `ringctl` binary: argument checks, certificate commands and
//! failures that need no running cluster. Multi-process cluster tests live in `tests/`.

use std::io::Read;
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Guard against a hang: no command here should come close (this is not a speed check).
const HANG_LIMIT: Duration = Duration::from_secs(60);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn failed_with_one_error_line(&self) -> &str {
        assert_ne!(
            self.code,
            Some(0),
            "expected failure, stdout: {}",
            self.stdout
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "stderr should be one line: {:?}",
            self.stderr
        );
        assert!(lines[0].starts_with("error: "), "{:?}", lines[0]);
        lines[0]
    }
}

fn ringctl(args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringctl"))
        .args(args)
        .env_remove("RINGKV_NODE")
        .env_remove("RINGKV_CERTS")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > HANG_LIMIT {
            child.kill().unwrap();
            panic!("ringctl {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Run {
        code: status.code(),
        stdout,
        stderr,
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn init_certs(dir: &Path) {
    let run = ringctl(&["certs", "init", "--dir", path(dir)]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}

#[test]
fn certs_init_twice_refuses_to_replace_the_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    init_certs(&certs);
    for file in ["ca.pem", "ca.key", "client.pem", "client.key"] {
        assert!(certs.join(file).is_file(), "{file} missing");
    }
    let ca = std::fs::read(certs.join("ca.pem")).unwrap();

    let again = ringctl(&["certs", "init", "--dir", path(&certs)]);
    let line = again.failed_with_one_error_line();
    assert!(line.contains("already has a CA"), "{line}");
    assert!(line.contains(path(&certs)), "{line}");
    assert_eq!(std::fs::read(certs.join("ca.pem")).unwrap(), ca);
}

#[test]
fn certs_issue_with_a_bad_name_fails_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    init_certs(tmp.path());
    let before = std::fs::read_dir(tmp.path()).unwrap().count();

    let run = ringctl(&[
        "certs",
        "issue",
        "--dir",
        path(tmp.path()),
        "--name",
        "../evil",
    ]);
    let line = run.failed_with_one_error_line();
    assert!(line.contains("invalid node name"), "{line}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), before);

    let ok = ringctl(&["certs", "issue", "--dir", path(tmp.path()), "--name", "n1"]);
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert!(tmp.path().join("node-n1.pem").is_file());
    assert!(tmp.path().join("node-n1.key").is_file());
}

#[test]
fn certs_issue_with_a_bad_ip_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let run = ringctl(&[
        "certs",
        "issue",
        "--dir",
        path(tmp.path()),
        "--name",
        "n1",
        "--ip",
        "10.0.0",
    ]);
    assert_eq!(run.code, Some(2));
    let line = run.failed_with_one_error_line();
    assert!(line.contains("--ip"), "{line}");
}

#[test]
fn serve_with_a_missing_certs_dir_names_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-certs");
    let data = tmp.path().join("data");
    let run = ringctl(&[
        "serve",
        "--data",
        path(&data),
        "--listen",
        "127.0.0.1:0",
        "--certs",
        path(&missing),
        "--name",
        "n1",
    ]);
    let line = run.failed_with_one_error_line();
    assert!(line.contains(path(&missing)), "{line}");
    assert!(
        !data.exists(),
        "no data directory is made for a node that cannot start"
    );
}

#[test]
fn serve_without_a_name_lists_the_certificates_to_choose_from() {
    let tmp = tempfile::tempdir().unwrap();
    init_certs(tmp.path());
    for name in ["n1", "n2"] {
        let run = ringctl(&["certs", "issue", "--dir", path(tmp.path()), "--name", name]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
    }
    let data = tmp.path().join("data");
    let run = ringctl(&[
        "serve",
        "--data",
        path(&data),
        "--listen",
        "127.0.0.1:0",
        "--certs",
        path(tmp.path()),
    ]);
    let line = run.failed_with_one_error_line();
    assert!(line.contains("n1, n2") && line.contains("--name"), "{line}");
}

#[test]
fn get_against_a_silent_address_fails_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    init_certs(tmp.path());
    // A port nobody listens on: bind one, note it, release it.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let node = format!("127.0.0.1:{port}");
    let run = ringctl(&[
        "get",
        "k",
        "--node",
        &node,
        "--certs",
        path(tmp.path()),
        "--timeout",
        "2s",
    ]);
    let line = run.failed_with_one_error_line();
    assert!(line.contains(&node), "{line}");
    assert!(run.stdout.is_empty());
}

#[test]
fn client_commands_name_a_missing_certs_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nothing-here");
    for args in [
        &["get", "k"][..],
        &["put", "k", "v"],
        &["members"],
        &["ring"],
        &["inspect", "k"],
        &["status"],
        &["repair"],
        &["range", "list"],
        &["range", "set", "--prefix", "p", "--mode", "primary"],
    ] {
        let mut all = args.to_vec();
        all.extend(["--certs", path(&missing)]);
        let run = ringctl(&all);
        let line = run.failed_with_one_error_line();
        assert!(line.contains(path(&missing)), "{args:?}: {line}");
    }
}

#[test]
fn zero_quorums_are_rejected_before_anything_runs() {
    for args in [
        &["get", "k", "--r", "0"][..],
        &["put", "k", "v", "--w", "0"],
        &["del", "k", "--w", "0"],
        &["bench", "--r", "0"],
        &[
            "serve",
            "--data",
            "d",
            "--listen",
            "127.0.0.1:0",
            "--r",
            "0",
        ],
    ] {
        let run = ringctl(args);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        let line = run.failed_with_one_error_line();
        assert!(line.contains("'0'"), "{args:?}: {line}");
    }
}

#[test]
fn missing_required_flags_are_named_on_one_line() {
    let run = ringctl(&["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(run.code, Some(2));
    let line = run.failed_with_one_error_line();
    assert!(line.contains("--data"), "{line}");
}

#[test]
fn help_still_prints_in_full() {
    let run = ringctl(&["serve", "--help"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for flag in [
        "--data",
        "--listen",
        "--seed",
        "--durability",
        "--conflict",
        "--max-value",
    ] {
        assert!(run.stdout.contains(flag), "{flag} missing from help");
    }
}

#[test]
fn malformed_flags_are_usage_errors() {
    for (args, mentions) in [
        (&["-o", "yaml", "members"][..], "yaml"),
        (&["put", "k", "v", "--context", "zz"], "--context"),
        (&["bench", "--concurrency", "5000"], "--concurrency"),
        (&["bench", "--duration", "2h"], "--duration"),
        (&["bench", "--read-ratio", "2"], "--read-ratio"),
        (&["cluster", "up", "--nodes", "0"], "--nodes"),
        (&["--timeout", "forever", "members"], "--timeout"),
    ] {
        let run = ringctl(args);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        let line = run.failed_with_one_error_line();
        assert!(line.contains(mentions), "{args:?}: {line}");
    }
}

#[test]
fn bench_takes_a_key_prefix_of_bounded_length() {
    let help = ringctl(&["bench", "--help"]);
    assert_eq!(help.code, Some(0), "{}", help.stderr);
    assert!(help.stdout.contains("--prefix"), "{}", help.stdout);
    let long = "p".repeat(1025);
    let run = ringctl(&["bench", "--prefix", &long]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let line = run.failed_with_one_error_line();
    assert!(line.contains("--prefix"), "{line}");
}

#[test]
fn inspect_status_and_repair_check_their_arguments() {
    for (args, mentions) in [
        (&["inspect"][..], "<KEY>"),
        (&["inspect", "a", "b"], "'b'"),
        (&["status", "--ranges=yes"], "--ranges"),
        (&["status", "k"], "'k'"),
        (&["repair", "--within", "forever"], "--within"),
        (&["repair", "--within", "0s"], "--within"),
        (&["repair", "--within", "25h"], "--within"),
        (&["repair", "--no-wait=1"], "--no-wait"),
    ] {
        let run = ringctl(args);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        let line = run.failed_with_one_error_line();
        assert!(line.contains(mentions), "{args:?}: {line}");
    }
}

#[test]
fn range_set_checks_its_arguments_before_dialling() {
    let set = ["range", "set", "--prefix", "p"];
    for (extra, mentions) in [
        (
            &["--mode", "quorum", "--sync-replicas", "2"][..],
            "--sync-replicas",
        ),
        (
            &[
                "--mode",
                "quorum",
                "--read-from",
                "any",
                "--topology",
                "chain",
            ],
            "--read-from, --topology only apply to --mode primary",
        ),
        (&["--mode", "primary", "--sync-replicas", "0"], "none"),
        (
            &["--mode", "primary", "--sync-replicas", "all"],
            "--sync-replicas",
        ),
        (
            &["--mode", "primary", "--read-from", "nearest"],
            "--read-from",
        ),
        (&["--mode", "primary", "--topology", "ring"], "--topology"),
        (&["--mode", "master"], "--mode"),
        (&[], "--mode"),
    ] {
        let args: Vec<&str> = set.iter().chain(extra).copied().collect();
        let run = ringctl(&args);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        let line = run.failed_with_one_error_line();
        assert!(line.contains(mentions), "{args:?}: {line}");
    }
    let run = ringctl(&["range", "set", "--mode", "primary"]);
    assert_eq!(run.code, Some(2));
    assert!(run.failed_with_one_error_line().contains("--prefix"));
    let run = ringctl(&["range", "list", "extra"]);
    assert_eq!(run.code, Some(2));
    assert!(run.failed_with_one_error_line().contains("'extra'"));
}

#[test]
fn help_of_range_set_names_its_flags_and_values() {
    let run = ringctl(&["range", "set", "--help"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for flag in [
        "--prefix",
        "--mode",
        "--sync-replicas",
        "--read-from",
        "--topology",
        "majority",
        "replica",
        "chain",
    ] {
        assert!(
            run.stdout.contains(flag),
            "{flag} missing from range set help"
        );
    }
}

#[test]
fn help_of_inspect_status_and_repair_names_their_flags() {
    for (command, flags) in [
        ("inspect", &["<KEY>", "--node"][..]),
        ("status", &["--ranges", "--node"]),
        ("repair", &["--no-wait", "--within", "--node"]),
    ] {
        let run = ringctl(&[command, "--help"]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        for flag in flags {
            assert!(
                run.stdout.contains(flag),
                "{flag} missing from {command} help"
            );
        }
    }
}

#[test]
fn admin_commands_against_a_silent_address_fail_with_one_line_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    init_certs(tmp.path());
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let node = format!("127.0.0.1:{port}");
    for command in ["repair", "status", "inspect"] {
        let mut args = vec![command];
        if command == "inspect" {
            args.push("k");
        }
        args.extend([
            "--node",
            &node,
            "--certs",
            path(tmp.path()),
            "--timeout",
            "1s",
        ]);
        let run = ringctl(&args);
        let line = run.failed_with_one_error_line();
        assert!(line.contains(&node), "{command}: {line}");
        assert!(run.stdout.is_empty(), "{command}: {}", run.stdout);
    }
}
