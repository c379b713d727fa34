//! Resource bounds against a real `ringctl serve`: one host taking every connection, a client
//! that opens streams and never finishes them, a peer flooding datagrams, a `KEYS` over the
//! whole keyspace. Each bound holds, shows in `ringkv_limit_hits_total`, and the node keeps
//! serving throughout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use ringkv::net::{client_config, TlsMaterial, TransportConfig};
use ringkv::{Api, Client, ReadOptions, WriteOptions};
use ringkv_tests::{block_on, free_port_pair, poll, runtime, serial, Cluster};

/// Bound on a node noticing something (not a speed check).
const WITHIN: Duration = Duration::from_secs(20);
/// `--max-connections-per-address` of the node under test.
const PER_ADDRESS: usize = 6;
/// `--redis-max-keys` of the node under test.
const MAX_KEYS: usize = 5;

fn free_tcp_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `GET path` over plain HTTP: the body.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer
        .split_once("\r\n\r\n")
        .map_or(answer.clone(), |(_, b)| b.to_owned()))
}

/// `ringkv_limit_hits_total{limit="<limit>"}` in a scrape of `metrics`.
fn hits(metrics: SocketAddr, limit: &str) -> u64 {
    let text = http_get(metrics, "/metrics").unwrap();
    let series = format!("ringkv_limit_hits_total{{limit=\"{limit}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in the scrape:\n{text}"))
}

/// Waits until `limit` has been hit at least `n` times.
fn wait_hits(metrics: SocketAddr, limit: &str, n: u64) -> u64 {
    poll(WITHIN, || Some(hits(metrics, limit)).filter(|h| *h >= n))
        .unwrap_or_else(|| panic!("{limit} hit {} times, expected {n}", hits(metrics, limit)))
}

async fn raw_connection(
    certs: &std::path::Path,
    node: SocketAddr,
) -> Result<quinn::Connection, String> {
    let tls = TlsMaterial::load_client(certs).map_err(|e| e.to_string())?;
    let config = client_config(&tls, &TransportConfig::default()).map_err(|e| e.to_string())?;
    let endpoint =
        quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).map_err(|e| e.to_string())?;
    let connecting = endpoint
        .connect_with(config, node, &node.ip().to_string())
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(10), connecting).await {
        Ok(conn) => conn.map_err(|e| e.to_string()),
        Err(_) => Err("no handshake within 10 s".into()),
    }
}

fn put(client: &Client, key: &str, value: &str) {
    block_on(client.put(
        key.as_bytes().to_vec(),
        value.as_bytes().to_vec(),
        WriteOptions::default(),
    ))
    .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

fn get(client: &Client, key: &str) -> Vec<Vec<u8>> {
    let read = block_on(client.get(key.as_bytes().to_vec(), ReadOptions::default())).unwrap();
    read.values.into_iter().map(|v| v.data).collect()
}

/// One RESP request and the first line of its answer.
fn redis_line(port: u16, args: &[&str]) -> String {
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend(format!("${}\r\n{a}\r\n", a.len()).bytes());
    }
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&req).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(2).any(|w| w == b"\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn hostile_clients_hit_bounds_that_are_counted_while_the_node_keeps_serving() {
    let _serial = serial();
    let mut cluster = Cluster::prepare(&["n1"]).unwrap();
    let port = free_port_pair().unwrap();
    let metrics: SocketAddr = ([127, 0, 0, 1], free_tcp_port()).into();
    let (metrics_flag, redis_flag) = (metrics.to_string(), format!("127.0.0.1:{port}"));
    let (per_address, max_keys) = (PER_ADDRESS.to_string(), MAX_KEYS.to_string());
    let flags = [
        "--n",
        "1",
        "--r",
        "1",
        "--w",
        "1",
        "--metrics",
        &metrics_flag,
        "--redis",
        &redis_flag,
        "--redis-plaintext",
        "--redis-max-keys",
        &max_keys,
        "--max-connections-per-address",
        &per_address,
        "--max-datagrams-per-sec",
        "100",
    ];
    let node = cluster.spawn("n1", port, &[], &flags).unwrap();
    cluster.nodes.push(node);
    cluster.wait_alive(1, WITHIN).unwrap();
    let addr = cluster.nodes[0].addr;
    let certs = cluster.certs();
    let client = cluster.client(0).unwrap();
    put(&client, "steady", "before");

    // One host takes every place it may have; its next connection is refused. (The client
    // above holds one place, and `ringctl` runs of the harness may hold others a while.)
    let mut held = Vec::new();
    let mut refused = None;
    for _ in 0..PER_ADDRESS {
        match block_on(raw_connection(&certs, addr)) {
            Ok(conn) => held.push(conn),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert!(
        refused.is_some(),
        "{PER_ADDRESS} more connections from one address were accepted"
    );
    wait_hits(metrics, "connections_per_address", 1);
    // Connections already admitted keep being served.
    assert_eq!(get(&client, "steady"), vec![b"before".to_vec()]);
    for conn in held.drain(..) {
        conn.close(0u32.into(), b"done");
    }

    // A client opens streams, writes half a frame header on each and stalls: each is reset at
    // the call timeout, and meanwhile the node serves others.
    let conn =
        poll(WITHIN, || block_on(raw_connection(&certs, addr)).ok()).expect("a place frees up");
    let stalls: Vec<_> = (0..20)
        .map(|_| {
            let conn = conn.clone();
            runtime().spawn(async move {
                let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
                send.write_all(&[0, 0]).await.map_err(|e| e.to_string())?;
                let answer = recv.read_to_end(1024).await;
                drop(send);
                Ok::<_, String>(answer)
            })
        })
        .collect();
    put(&client, "steady", "during a stall");
    for stall in stalls {
        let answer = block_on(stall).unwrap().unwrap();
        assert!(
            matches!(answer, Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) if code.into_inner() == 5),
            "a stalled stream ended with {answer:?}"
        );
    }
    assert!(wait_hits(metrics, "frame_time", 20) >= 20);

    // A peer floods datagrams: those past its rate are dropped and counted, the node stays up.
    for i in 0..2000u32 {
        block_on(conn.send_datagram_wait(Bytes::from(i.to_be_bytes().to_vec()))).unwrap();
    }
    wait_hits(metrics, "datagram_rate", 1);
    conn.close(0u32.into(), b"done");
    put(&client, "steady", "after a flood");
    assert_eq!(get(&client, "steady"), vec![b"after a flood".to_vec()]);

    // KEYS over more keys than it may answer is refused (use SCAN), and counted.
    for i in 0..=MAX_KEYS {
        put(&client, &format!("many:{i}"), "v");
    }
    let answer = redis_line(port, &["KEYS", "many:*"]);
    assert!(
        answer.starts_with('-') && answer.contains("use SCAN"),
        "{answer}"
    );
    wait_hits(metrics, "redis_keys", 1);
    let answer = redis_line(port, &["GET", "steady"]);
    assert!(answer.starts_with('$'), "{answer}");

    // A key-listing page asked past its bound is clamped by the replica, which counts it in
    // the core: the scrape adds the core's counts to the transport's.
    let page = block_on(client.keys(0, 5_000)).unwrap();
    assert!(page.keys.len() <= 1_000, "{} keys", page.keys.len());
    wait_hits(metrics, "key_page", 1);

    // Nothing the node was sent made it lose its footing.
    assert!(cluster.nodes[0].is_running(), "{}", cluster.log("n1"));
    assert!(!cluster.log("n1").contains("panicked"));
    assert!(cluster.log("n1").contains("limit reached"));
}
