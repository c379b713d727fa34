//! Bad input against real processes: oversized keys and values, garbage on the wire, a data
//! directory already in use, a seed that does not answer. Each is refused or survived with a
//! clear message, and the node keeps serving.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use ringkv::net::{client_config, TlsMaterial, Transport, TransportConfig};
use ringkv::proto::{self, ClientError, ClientRequest, ClientResponse, Request, Response};
use ringkv::{Api, Client, Error, ReadOptions, WriteOptions};
use ringkv_tests::{block_on, free_port, poll, runtime, serial, Cluster, Serve};

/// The defaults of `ringctl serve`.
const MAX_KEY: usize = 4 * 1024;
const MAX_VALUE: usize = 4 * 1024 * 1024;

/// Bound on a node noticing something or exiting (not a speed check).
const WITHIN: Duration = Duration::from_secs(20);

fn put(client: &Client, key: &[u8], value: &[u8]) -> Result<u8, Error> {
    let written = block_on(client.put(key.to_vec(), value.to_vec(), WriteOptions::default()))?;
    Ok(written.acked)
}

fn get(client: &Client, key: &[u8]) -> Vec<Vec<u8>> {
    let read = block_on(client.get(key.to_vec(), ReadOptions::default())).unwrap();
    read.values.into_iter().map(|v| v.data).collect()
}

#[test]
fn keys_over_4_kib_are_refused_as_bad_key_by_client_and_cli() {
    let _serial = serial();
    let cluster = Cluster::start(3).unwrap();
    let client = cluster.client(0).unwrap();

    let long = vec![b'k'; MAX_KEY + 1];
    match put(&client, &long, b"v") {
        Err(Error::Request(ClientError::BadKey { size, max })) => {
            assert_eq!((size, max), (MAX_KEY + 1, MAX_KEY));
        }
        other => panic!("put with a {} byte key: {other:?}", long.len()),
    }
    match block_on(client.get(long.clone(), ReadOptions::default())) {
        Err(Error::Request(ClientError::BadKey { size, .. })) => assert_eq!(size, MAX_KEY + 1),
        other => panic!("get with a long key: {other:?}"),
    }
    match put(&client, b"", b"v") {
        Err(Error::Request(ClientError::BadKey { size: 0, .. })) => {}
        other => panic!("put with an empty key: {other:?}"),
    }
    // The limit itself is accepted.
    let longest = vec![b'k'; MAX_KEY];
    assert!(put(&client, &longest, b"at the limit").unwrap() >= 2);
    assert_eq!(get(&client, &longest), vec![b"at the limit".to_vec()]);

    let long = String::from_utf8(long).unwrap();
    let out = cluster.ringctl(1, &["put", &long, "v"]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("key of 4097 bytes is not accepted"),
        "{stderr}"
    );
}

#[test]
fn values_over_4_mib_are_refused_as_value_too_large() {
    let _serial = serial();
    // Three copies of 4 MiB on a loaded debug build can take longer than the default 5 s
    // request and call bounds, in the nodes and in the client.
    let cluster = Cluster::start_with(3, &["--request-timeout", "30s"]).unwrap();
    let client = cluster.client(0).unwrap();
    match put(&client, b"big", &vec![7u8; MAX_VALUE + 1]) {
        Err(Error::Request(ClientError::ValueTooLarge { size, max })) => {
            assert_eq!((size, max), (MAX_VALUE + 1, MAX_VALUE));
        }
        other => panic!("put of a value over the limit: {other:?}"),
    }
    assert!(
        get(&client, b"big").is_empty(),
        "the refused value was stored"
    );
    // The limit itself is accepted and read back whole through another node.
    let patient = |i: usize| {
        let tls = TlsMaterial::load_client(&cluster.certs()).unwrap();
        let config = TransportConfig {
            call_timeout: Duration::from_secs(30),
            ..TransportConfig::default()
        };
        let _in_runtime = runtime().enter();
        Client::with_config(cluster.client(i).unwrap().node(), &tls, config).unwrap()
    };
    let largest = vec![7u8; MAX_VALUE];
    assert!(put(&patient(0), b"big", &largest).unwrap() >= 2);
    assert_eq!(get(&patient(1), b"big"), vec![largest]);
}

/// Opens a raw QUIC connection to `node` with the cluster's client certificate.
async fn raw_connection(certs: &std::path::Path, node: SocketAddr) -> quinn::Connection {
    let tls = TlsMaterial::load_client(certs).unwrap();
    let config = client_config(&tls, &TransportConfig::default()).unwrap();
    let endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
    endpoint
        .connect_with(config, node, &node.ip().to_string())
        .unwrap()
        .await
        .unwrap()
}

/// Sends `bytes` as is on a new stream and reads whatever comes back.
async fn raw_stream(conn: &quinn::Connection, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    // The node may reset the stream before everything is written; the read tells.
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    let read = recv.read_to_end(1 << 20);
    match tokio::time::timeout(Duration::from_secs(10), read).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err("no answer within 10 s".into()),
    }
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut frame = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

#[test]
fn garbage_on_streams_and_datagrams_is_refused_and_the_node_keeps_serving() {
    let _serial = serial();
    let cluster = Cluster::start(3).unwrap();
    let client = cluster.client(0).unwrap();
    put(&client, b"steady", b"before").unwrap();
    let node = cluster.nodes[0].addr;

    // A well-framed body that is not a request.
    let tls = TlsMaterial::load_client(&cluster.certs()).unwrap();
    let transport = {
        let _in_runtime = runtime().enter();
        Transport::client(&tls, TransportConfig::default()).unwrap()
    };
    let answer = block_on(transport.call(node, b"\xff\xfe garbage"));
    assert!(answer.is_err(), "garbage got an answer: {answer:?}");

    // Broken frames, each on its own stream of one connection.
    let conn = block_on(raw_connection(&cluster.certs(), node));
    let broken: [(&str, Vec<u8>); 4] = [
        (
            "a 4 GiB length prefix",
            vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        ),
        ("a truncated body", vec![0, 0, 0, 100, 1, 2, 3]),
        ("a truncated length prefix", vec![0, 0]),
        ("an empty stream", Vec::new()),
    ];
    for (what, bytes) in &broken {
        let answer = block_on(raw_stream(&conn, bytes));
        assert!(answer.is_err(), "{what} got an answer: {answer:?}");
    }
    // The same connection still carries a well-formed request.
    let request = proto::encode(&Request::Client(ClientRequest::Get {
        key: b"steady".to_vec(),
        r: None,
        wait_repair: false,
    }))
    .unwrap();
    let reply = block_on(raw_stream(&conn, &framed(&request))).unwrap();
    match proto::decode::<Response>(&reply[4..]).unwrap() {
        Response::Client(Ok(ClientResponse::Got(read))) => {
            assert_eq!(read.values[0].data, b"before");
        }
        other => panic!("a valid request after garbage got {other:?}"),
    }

    // Datagrams that are not QUIC at all.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for len in [1usize, 40, 1200] {
        udp.send_to(&vec![0xa5; len], node).unwrap();
    }

    // The node keeps serving: reads, writes, and its place in the cluster.
    assert_eq!(get(&client, b"steady"), vec![b"before".to_vec()]);
    put(&client, b"steady", b"after").unwrap();
    assert_eq!(
        get(&cluster.client(1).unwrap(), b"steady"),
        vec![b"after".to_vec()]
    );
    cluster.wait_alive(3, Duration::from_secs(5)).unwrap();
    assert!(cluster.log("n1").contains("does not decode"));
}

#[test]
fn a_second_node_on_a_data_directory_in_use_exits_saying_so() {
    let _serial = serial();
    let mut cluster = Cluster::prepare(&["n1", "n2"]).unwrap();
    let first = cluster.spawn("n1", free_port().unwrap(), &[], &[]).unwrap();
    cluster.nodes.push(first);
    cluster.wait_alive(1, WITHIN).unwrap();
    put_at_w1(&cluster);

    let mut second = cluster
        .launch(&Serve {
            name: "n2",
            port: free_port().unwrap(),
            seeds: &[],
            certs: cluster.certs(),
            data: cluster.data_dir("n1"),
            log: "second",
            extra: &[],
        })
        .unwrap();
    let exited = second.wait_exit(WITHIN);
    let log = cluster.log("second");
    let status = exited
        .unwrap_or_else(|| panic!("second node still running: {log}"))
        .status;
    assert!(!status.success(), "second node exited with {status}");
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains("is in use by another ringkv process")
            && errors[0].contains(&cluster.data_dir("n1").display().to_string()),
        "{log}"
    );
    // The first node is untouched.
    assert!(cluster.nodes[0].is_running());
    let read = block_on(cluster.client(0).unwrap().get(
        b"mine".to_vec(),
        ReadOptions {
            r: Some(1),
            ..Default::default()
        },
    ))
    .unwrap();
    assert_eq!(read.values[0].data, b"still here");
}

/// One node alone holds every replica: write at W=1 so its own store answers.
fn put_at_w1(cluster: &Cluster) {
    let opts = WriteOptions {
        w: Some(1),
        context: None,
    };
    let client = cluster.client(0).unwrap();
    block_on(client.put(b"mine".to_vec(), b"still here".to_vec(), opts)).unwrap();
}

#[test]
fn a_node_whose_seed_is_silent_keeps_running_says_so_and_joins_once_the_seed_starts() {
    let _serial = serial();
    let mut cluster = Cluster::prepare(&["early", "seed"]).unwrap();
    let seed_port = free_port().unwrap();
    let seed_addr: SocketAddr = ([127, 0, 0, 1], seed_port).into();
    let early = cluster
        .spawn("early", free_port().unwrap(), &[seed_addr], &[])
        .unwrap();
    cluster.nodes.push(early);

    // One warning line that names the seed and says the node keeps trying.
    let warned = |l: &&str| {
        l.contains("WARN") && l.contains(&seed_addr.to_string()) && l.contains("no answer")
    };
    let line = poll(WITHIN, || {
        cluster.log("early").lines().find(warned).map(str::to_owned)
    })
    .unwrap_or_else(|| panic!("no word about the silent seed: {}", cluster.log("early")));
    assert!(line.contains("still trying"), "{line}");
    assert!(cluster.nodes[0].is_running(), "{}", cluster.log("early"));

    let seed = cluster.spawn("seed", seed_port, &[], &[]).unwrap();
    cluster.nodes.push(seed);
    cluster.wait_alive(2, WITHIN).unwrap();
}
