//! Certificate rotation on a running cluster: SIGHUP reloads a node's certificate, key and CA
//! bundle; new connections use the new material, open ones keep going; bad material is
//! refused with a log line and the node keeps its old material.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringkv::client::RetryPolicy;
use ringkv::net::issue_node;
use ringkv::{Api, ReadOptions, WriteOptions};
use ringkv_tests::{block_on, client_at, free_port, ringctl_bin, run_bounded, serial, Cluster};

const RELOADED: &str = "SIGHUP: reloaded the node certificate";
const RELOAD_FAILED: &str = "SIGHUP: certificate reload failed, keeping the current certificates";

/// Runs `ringctl certs rotate STEP --dir DIR`; its output.
fn rotate(dir: &Path, step: &str) -> String {
    let out = run_bounded(
        Command::new(ringctl_bin().unwrap())
            .args(["certs", "rotate", step, "--dir"])
            .arg(dir),
        Duration::from_secs(30),
    )
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "rotate {step}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn copy(from: &Path, to: &Path, files: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for f in files {
        std::fs::copy(from.join(f), to.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
}

/// SIGHUP every running node and wait until each has logged `needle` `times` times.
fn reload_all(cluster: &mut Cluster, needle: &str, times: usize) {
    for node in &mut cluster.nodes {
        node.reload();
    }
    for node in &cluster.nodes {
        let name = node.name.clone();
        let seen = ringkv_tests::poll(Duration::from_secs(10), || {
            (cluster.log(&name).matches(needle).count() >= times).then_some(())
        });
        assert!(
            seen.is_some(),
            "{name} did not log {needle:?}:\n{}",
            cluster.log(&name)
        );
    }
}

/// Whether a fresh client with the material in `dir` can read through node `addr`.
fn fresh_client_works(addr: std::net::SocketAddr, dir: &Path) -> bool {
    let Ok(client) = client_at(addr, dir) else {
        return false;
    };
    let client = client.with_retry(RetryPolicy::none());
    block_on(client.get(b"probe".to_vec(), ReadOptions::default())).is_ok()
}

/// Whether `redis-cli` over TLS with the material in `dir` gets PONG from the front.
fn redis_ping(port: &str, dir: &Path) -> bool {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", port, "--tls", "--cacert"])
        .arg(dir.join("ca.pem"))
        .arg("--cert")
        .arg(dir.join("client.pem"))
        .arg("--key")
        .arg(dir.join("client.key"))
        .arg("PING");
    let out = run_bounded(&mut cmd, Duration::from_secs(30)).expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).trim() == "PONG"
}

#[test]
fn ca_rotation_on_a_running_cluster_fails_no_request() {
    let _serial = serial();
    // n1 also serves Redis clients over TLS with the same material.
    let redis_port = free_port().unwrap().to_string();
    let redis_addr = format!("127.0.0.1:{redis_port}");
    let mut cluster = Cluster::prepare(&["n1", "n2", "n3"]).unwrap();
    for name in ["n1", "n2", "n3"] {
        let seeds: Vec<_> = cluster.nodes.first().map(|n| n.addr).into_iter().collect();
        let extra: &[&str] = if name == "n1" {
            &["--redis", &redis_addr]
        } else {
            &[]
        };
        let node = cluster
            .spawn(name, free_port().unwrap(), &seeds, extra)
            .unwrap();
        cluster.nodes.push(node);
    }
    cluster.wait_alive(3, Duration::from_secs(20)).unwrap();
    let certs = cluster.certs();
    let old_client: PathBuf = cluster.dir.path().join("old-client");
    copy(&certs, &old_client, &["ca.pem", "client.pem", "client.key"]);

    // A client keeps writing at W=3 (every replica, so every node's peer calls take part),
    // without retries: any failure is counted.
    let writer = client_at(cluster.nodes[0].addr, &old_client)
        .unwrap()
        .with_retry(RetryPolicy::none());
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handle = {
        let (writer, stop, written, failures) = (
            writer.clone(),
            stop.clone(),
            written.clone(),
            failures.clone(),
        );
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Acquire) {
                let opts = WriteOptions {
                    w: Some(3),
                    context: None,
                };
                let key = format!("rot-{i}").into_bytes();
                match block_on(writer.put(key, format!("v{i}").into_bytes(), opts)) {
                    Ok(_) => {
                        written.store(i + 1, Ordering::Release);
                    }
                    Err(e) => failures.lock().unwrap().push(format!("rot-{i}: {e}")),
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let progress = |cluster: &Cluster, what: &str| {
        let before = written.load(Ordering::Acquire);
        let moved = ringkv_tests::poll(Duration::from_secs(10), || {
            (written.load(Ordering::Acquire) > before + 5).then_some(())
        });
        assert!(
            moved.is_some(),
            "writes stalled {what}: {:?}\n{}",
            failures.lock().unwrap(),
            cluster.log("n1")
        );
    };
    progress(&cluster, "before the rotation");
    assert!(redis_ping(&redis_port, &old_client));

    // Bad material: n2 logs the failure and keeps serving with its old certificate.
    let good_key = std::fs::read(certs.join("node-n2.key")).unwrap();
    std::fs::write(certs.join("node-n2.key"), b"not a key").unwrap();
    cluster.nodes[1].reload();
    assert!(
        cluster
            .wait_log("n2", RELOAD_FAILED, Duration::from_secs(10))
            .is_some(),
        "{}",
        cluster.log("n2")
    );
    assert!(
        cluster.log("n2").contains("node-n2.key"),
        "the log names the file"
    );
    std::fs::write(certs.join("node-n2.key"), &good_key).unwrap();
    assert!(fresh_client_works(cluster.nodes[1].addr, &old_client));
    progress(&cluster, "after a failed reload");

    // The three steps of `ringctl certs rotate`, each spread by a SIGHUP to every node (the
    // nodes share one certificate directory here).
    // 1. Every node trusts the old and the new CA.
    let old_ca_pem = std::fs::read_to_string(certs.join("ca.pem")).unwrap();
    rotate(&certs, "begin");
    let new_ca = certs.join("rotate");
    let new_ca_pem = std::fs::read_to_string(new_ca.join("ca.pem")).unwrap();
    assert_eq!(
        std::fs::read_to_string(certs.join("ca.pem")).unwrap(),
        format!("{old_ca_pem}{new_ca_pem}")
    );
    reload_all(&mut cluster, RELOADED, 1);
    assert!(
        cluster.log("n1").contains("trusted_cas=2"),
        "{}",
        cluster.log("n1")
    );
    progress(&cluster, "after adding the new CA");

    // 2. Every node (and the admin's client) gets a certificate of the new CA.
    let out = rotate(&certs, "reissue");
    assert!(
        out.contains("reissued 3 node certificate(s) (n1, n2, n3)"),
        "{out}"
    );
    reload_all(&mut cluster, RELOADED, 2);
    progress(&cluster, "after reissuing");
    // New connections get the new certificates: a client trusting only the old CA is
    // refused by every node; one with the new client certificate is served.
    let new_client = cluster.dir.path().join("new-client");
    copy(
        &new_ca,
        &new_client,
        &["ca.pem", "client.pem", "client.key"],
    );
    for node in &cluster.nodes {
        assert!(!fresh_client_works(node.addr, &old_client), "{}", node.name);
        assert!(fresh_client_works(node.addr, &new_client), "{}", node.name);
    }
    // So does the Redis front.
    assert!(!redis_ping(&redis_port, &old_client));
    assert!(redis_ping(&redis_port, &new_client));

    // 3. The old CA is removed from every bundle.
    rotate(&certs, "finish");
    assert_eq!(
        std::fs::read_to_string(certs.join("ca.pem")).unwrap(),
        new_ca_pem
    );
    reload_all(&mut cluster, RELOADED, 3);
    progress(&cluster, "after removing the old CA");
    // A client certificate of the old CA is refused now, even by a client trusting both.
    let old_cert_both_cas = cluster.dir.path().join("old-cert-both-cas");
    copy(
        &old_client,
        &old_cert_both_cas,
        &["client.pem", "client.key"],
    );
    std::fs::write(
        old_cert_both_cas.join("ca.pem"),
        format!("{old_ca_pem}{new_ca_pem}"),
    )
    .unwrap();
    assert!(!fresh_client_works(
        cluster.nodes[0].addr,
        &old_cert_both_cas
    ));
    assert!(!redis_ping(&redis_port, &old_cert_both_cas));
    assert!(redis_ping(&redis_port, &new_client));

    stop.store(true, Ordering::Release);
    handle.join().unwrap();
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    // Every write is there, read through a client of the new CA.
    let reader = client_at(cluster.nodes[1].addr, &new_client).unwrap();
    let total = written.load(Ordering::Acquire);
    assert!(total > 20, "only {total} writes");
    for i in 0..total {
        let read =
            block_on(reader.get(format!("rot-{i}").into_bytes(), ReadOptions::default())).unwrap();
        let got: Vec<&[u8]> = read.values.iter().map(|v| v.data.as_slice()).collect();
        assert_eq!(got, [format!("v{i}").as_bytes()], "rot-{i}");
    }

    // Peers dial and accept with the new material: a node that knows only the new CA joins.
    issue_node(&certs, "n4", &[[127, 0, 0, 1].into()], &[]).unwrap();
    let n4_certs = cluster.dir.path().join("n4-certs");
    copy(
        &certs,
        &n4_certs,
        &[
            "ca.pem",
            "client.pem",
            "client.key",
            "node-n4.pem",
            "node-n4.key",
        ],
    );
    let seeds = [cluster.nodes[0].addr];
    let n4 = cluster
        .spawn_with_certs("n4", free_port().unwrap(), &seeds, &n4_certs, &[])
        .unwrap();
    cluster.nodes.push(n4);
    cluster.wait_alive(4, Duration::from_secs(30)).unwrap();
}
