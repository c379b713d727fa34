//! Watching a cluster: `serve --metrics` (`/health` before and after the node joined,
//! `/metrics` families moving with puts and gets, the scrape passing `promtool check
//! metrics`) and `ringctl cluster status` (healthy, then degraded with a node down).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use ringkv::{Api, ReadOptions, WriteOptions};
use ringkv_tests::{block_on, free_port, poll, serial, Cluster};

/// A loopback TCP port free right now.
fn free_tcp_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `METHOD path` over plain HTTP: the status code and the body.
fn http(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// The value of one series (`name{labels}` exactly as rendered), 0 when absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Sum of every series of a family whose labels contain `labels` (a substring).
fn sum(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            (rest.starts_with('{') && rest.contains(labels)).then(|| v.parse::<f64>().ok())?
        })
        .sum()
}

#[test]
fn metrics_move_with_requests_and_health_follows_joining() {
    let _serial = serial();
    let mut cluster = Cluster::prepare(&["n1", "n2", "n3"]).unwrap();
    let (p1, p2, p3) = (
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    let seed: SocketAddr = ([127, 0, 0, 1], p1).into();
    let metrics: SocketAddr = ([127, 0, 0, 1], free_tcp_port()).into();
    let flag = metrics.to_string();

    // n2 starts first, its seed not there yet: it cannot have joined.
    let n2 = cluster
        .spawn("n2", p2, &[seed], &["--metrics", &flag])
        .unwrap();
    let health = poll(Duration::from_secs(15), || {
        http(metrics, "GET", "/health").ok()
    });
    let (status, body) = health.expect("the metrics port never answered");
    assert_eq!(status, 503, "before joining: {body}");
    assert!(body.contains("joining"), "{body}");

    let n1 = cluster.spawn("n1", p1, &[], &[]).unwrap();
    let n3 = cluster.spawn("n3", p3, &[seed], &[]).unwrap();
    cluster.nodes = vec![n1, n2, n3];
    cluster
        .wait_members(1, Duration::from_secs(30), |rows| {
            rows.len() == 3 && rows.iter().all(|m| m.state == "alive" && m.status == "up")
        })
        .unwrap();
    let ready = poll(Duration::from_secs(30), || {
        http(metrics, "GET", "/health")
            .ok()
            .filter(|(s, _)| *s == 200)
    });
    let (_, body) = ready.expect("/health never answered 200 after joining");
    assert_eq!(body, "ready\n");

    let (_, before) = http(metrics, "GET", "/metrics").unwrap();
    let client = cluster.client(1).unwrap();
    block_on(async {
        for i in 0..20 {
            let key = format!("metrics-{i}").into_bytes();
            client
                .put(key.clone(), b"v".to_vec(), WriteOptions::default())
                .await
                .unwrap();
            let read = client.get(key, ReadOptions::default()).await.unwrap();
            assert_eq!(read.values.len(), 1);
        }
    });
    let (status, after) = http(metrics, "GET", "/metrics").unwrap();
    assert_eq!(status, 200);

    let delta = |series: &str| value(&after, series) - value(&before, series);
    let ok = |kind: &str| {
        format!("ringkv_requests_total{{kind=\"{kind}\",mode=\"quorum\",outcome=\"ok\"}}")
    };
    assert_eq!(delta(&ok("put")), 20.0, "{after}");
    assert_eq!(delta(&ok("get")), 20.0);
    let count = |kind: &str| {
        format!("ringkv_request_duration_seconds_count{{kind=\"{kind}\",mode=\"quorum\"}}")
    };
    assert_eq!(delta(&count("put")), 20.0);
    assert_eq!(delta(&count("get")), 20.0);
    // Every write's first replica or replication, and every read, calls peers.
    let calls = |text: &str| sum(text, "ringkv_peer_calls_total", "outcome=\"ok\"");
    assert!(calls(&after) - calls(&before) >= 40.0, "{after}");
    let call_count = |t: &str| sum(t, "ringkv_peer_call_duration_seconds_count", "kind=");
    assert!(call_count(&after) > call_count(&before));
    let sent = |t: &str| sum(t, "ringkv_peer_call_bytes_total", "direction=\"sent\"");
    assert!(sent(&after) > sent(&before));
    // Sync durability: replicas' answers wait for group commits.
    let fsyncs = "ringkv_store_fsync_duration_seconds_count";
    assert!(delta(fsyncs) > 0.0);
    assert!(delta("ringkv_group_commit_batch_size_count") > 0.0);
    assert!(value(&after, "ringkv_store_keys") >= 20.0);
    assert!(value(&after, "ringkv_store_disk_bytes") > 0.0);
    assert_eq!(
        value(&after, "ringkv_members{state=\"alive\",status=\"up\"}"),
        3.0
    );
    assert_eq!(value(&after, "ringkv_node_ready"), 1.0);
    assert!(value(&after, "ringkv_gossip_bytes_total{direction=\"sent\"}") > 0.0);
    assert!(value(&after, "ringkv_transport_connections_accepted_total") > 0.0);
    assert!(value(&after, "ringkv_transport_connections") > 0.0);
    assert!(
        sum(&after, "ringkv_member_events_total", "event=\"up\"") >= 2.0,
        "{after}"
    );
    assert!(after.contains("ringkv_build_info{version=\""));
    // The scrape's own questions to the node are not client requests.
    assert_eq!(sum(&after, "ringkv_requests_total", "kind=\"status\""), 0.0);

    promtool_check(&after);

    let (status, _) = http(metrics, "GET", "/nowhere").unwrap();
    assert_eq!(status, 404);
    let (status, _) = http(metrics, "POST", "/metrics").unwrap();
    assert_eq!(status, 405);
    // A request head over 8 KiB is refused, and the port keeps serving.
    let long = format!("/{}", "x".repeat(9000));
    let (status, _) = http(metrics, "GET", &long).unwrap();
    assert_eq!(status, 431);
    let (status, _) = http(metrics, "GET", "/health").unwrap();
    assert_eq!(status, 200);
}

/// `promtool check metrics` accepts the scrape (names, types, help, units by convention).
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is needed (Debian package prometheus; .ci/run installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cluster_status_shows_a_stopped_node_down_and_the_cluster_degraded() {
    let _serial = serial();
    let mut cluster = Cluster::start_with(3, &["--on-signal", "stop"]).unwrap();
    let out = cluster.ringctl(0, &["put", "status-key", "v"]).unwrap();
    assert!(out.status.success());
    let status = |cluster: &Cluster| -> serde_json::Value {
        let out = cluster
            .ringctl(0, &["-o", "json", "cluster", "status"])
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // Nodes show `joining` (UJ, degraded) until they pulled their ranges.
    let healthy = poll(Duration::from_secs(30), || {
        Some(status(&cluster)).filter(|s| s["summary"]["healthy"] == true)
    })
    .unwrap_or_else(|| panic!("never healthy: {}", status(&cluster)));
    assert_eq!(healthy["summary"]["ranges_below_n"], 0);
    let rows = healthy["members"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for row in rows {
        assert_eq!(row["letters"], "UN", "{row}");
        assert_eq!(row["version"], env!("CARGO_PKG_VERSION"));
        assert!(row["keys"].as_u64().unwrap() >= 1, "{row}");
        assert!(row["disk_bytes"].as_u64().unwrap() > 0);
        // Three nodes, N=3: each holds a copy of every key.
        assert_eq!(row["ownership"], 1.0);
    }

    assert!(
        cluster.nodes[2].terminate(Duration::from_secs(10)),
        "n3 ignored SIGTERM"
    );
    let degraded = poll(Duration::from_secs(20), || {
        Some(status(&cluster)).filter(|s| s["members"][2]["letters"] == "DN")
    })
    .expect("n3 never shown down");
    let summary = &degraded["summary"];
    assert_eq!(summary["healthy"], false);
    assert_eq!(summary["up"], 2);
    assert_eq!(summary["answered"], 2);
    // Every range has n3 among its three replicas.
    assert_eq!(summary["ranges_below_n"], summary["ranges"]);
    assert!(degraded["members"][2]["error"].is_string());
    assert!(degraded["members"][2]["version"].is_null());

    let text = cluster.ringctl_text(0, &["cluster", "status"]).unwrap();
    let n3 = text.lines().find(|l| l.contains(" n3 ")).unwrap_or("");
    assert!(n3.starts_with("DN  down, up"), "{text}");
    assert!(
        text.contains("cluster degraded: 2 of 3 members up"),
        "{text}"
    );

    // Asked through the stopped node, the cluster cannot answer: exit status 3.
    let out = cluster
        .ringctl(2, &["--timeout", "2s", "cluster", "status"])
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
