//! Rolling upgrades: the protocol version in the handshake. Nodes of this release speak
//! version 3 (many calls per stream) and the previous releases' versions 2 (a stream per
//! call) and 1, so a cluster can mix them while it is upgraded one node at a time; any other
//! version is refused with a log line naming both.
//!
//! A node of a previous release is emulated by a node started with the hidden
//! `--protocol-version`: with `1` it offers only `ringkv/1`, so every connection to or from it
//! negotiates version 1 and carries version 1's encoding; with `2` and `1` it speaks what the
//! release before version 3 spoke.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ringkv::client::RetryPolicy;
use ringkv::core::update::{UpdateError, UpdateOp};
use ringkv::net::tls::negotiated_version;
use ringkv::net::{client_config, TlsMaterial, TransportConfig};
use ringkv::proto::{self, ClientError, ClientRequest, ClientResponse, Request};
use ringkv::table::{Mode, PrimaryOptions, SyncReplicas};
use ringkv::{Api, Error, ReadOptions, WriteOptions};
use ringkv_tests::{block_on, free_port, serial, Cluster};

/// Start n1..n3 through n1, each with its own extra flags; wait until all see 3 alive.
fn cluster(flags: [&[&str]; 3]) -> Cluster {
    let mut cluster = Cluster::prepare(&["n1", "n2", "n3"]).unwrap();
    for (i, extra) in flags.iter().enumerate() {
        let seeds: Vec<_> = cluster.nodes.first().map(|n| n.addr).into_iter().collect();
        let name = format!("n{}", i + 1);
        let node = cluster
            .spawn(&name, free_port().unwrap(), &seeds, extra)
            .unwrap();
        cluster.nodes.push(node);
    }
    cluster
}

#[test]
fn a_node_speaking_only_the_previous_version_serves_in_a_mixed_cluster() {
    let _serial = serial();
    let cluster = cluster([&[], &[], &["--protocol-version", "1"]]);
    cluster.wait_alive(3, Duration::from_secs(30)).unwrap();

    // W=3 and R=3: every write and read involves every node, so version 1 is spoken in
    // both directions (n1 and n2 dial n3; n3 dials them; clients of either version).
    writes_and_reads_through_every_node(&cluster, "mixed");
    // Errors cross version 1 too: an impossible quorum, answered by the version-1 node.
    let err = block_on(cluster.client(2).unwrap().put(
        b"k".to_vec(),
        b"v".to_vec(),
        WriteOptions {
            w: Some(9),
            context: None,
        },
    ))
    .unwrap_err();
    assert!(err.to_string().contains("w=9"), "{err}");
    // An atomic update crosses version 1 with its error intact (version 1 has updates; its
    // error enum is laid out differently): the key is not in primary mode, through either node.
    let update = |via: usize| {
        let client = cluster.client(via).unwrap();
        block_on(client.update(b"k".to_vec(), UpdateOp::Add(1))).unwrap_err()
    };
    for via in [0, 2] {
        let err = update(via);
        assert!(
            matches!(
                &err,
                Error::Request(ClientError::Update(UpdateError::NeedsPrimaryMode))
            ),
            "via n{}: {err}",
            via + 1
        );
    }
    // What version 1 cannot express is refused before it is sent, naming the versions; a
    // version-2 node answers the same request itself.
    let err = block_on(cluster.client(2).unwrap().info())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a node-info request needs protocol version 2; the peer speaks ringkv/1"),
        "{err}"
    );
    block_on(cluster.client(0).unwrap().info()).unwrap();
    for name in ["n1", "n2", "n3"] {
        assert!(
            !cluster.log(name).contains("refusing a handshake"),
            "{name}: {}",
            cluster.log(name)
        );
    }
}

/// `ClientError::NoReplicas` moved one index up in version 2: it crosses two version-1 hops
/// (primary n1 to coordinator n3, n3 to the client) and must arrive as itself, not as the
/// `Gathering` its version-1 index means in version 2.
#[test]
fn an_error_whose_index_moved_keeps_its_meaning_across_version_1() {
    let _serial = serial();
    let mut cluster = cluster([&[], &[], &["--protocol-version", "1"]]);
    cluster.wait_alive(3, Duration::from_secs(30)).unwrap();
    let mode = Mode::Primary(PrimaryOptions {
        sync: SyncReplicas::Count(2),
        ..PrimaryOptions::default()
    });
    cluster
        .set_mode(0, "p:", mode, Duration::from_secs(10))
        .unwrap();
    // Writes elect primaries; find a key whose primary is n1.
    let n1 = cluster.client(0).unwrap();
    let keys: Vec<String> = (0..30).map(|k| format!("p:{k}")).collect();
    let key = ringkv_tests::poll(Duration::from_secs(30), || {
        for k in &keys {
            let _ = block_on(n1.put(
                k.clone().into_bytes(),
                b"v".to_vec(),
                WriteOptions::default(),
            ));
        }
        keys.iter()
            .find(|k| matches!(cluster.primary_of(k), Some((0, _))))
            .cloned()
    })
    .expect("some key has n1 as its primary");

    // With n2 gone, n1 has one replica online where the writes need two.
    cluster.nodes[1].kill();
    let via_n3 = cluster.client(2).unwrap().with_retry(RetryPolicy::none());
    let mut seen = Vec::new();
    let refused = ringkv_tests::poll(Duration::from_secs(30), || {
        match block_on(via_n3.put(
            key.clone().into_bytes(),
            b"w".to_vec(),
            WriteOptions::default(),
        )) {
            Err(ringkv::Error::Request(e @ ClientError::NoReplicas { .. })) => Some(e),
            other => {
                seen.push(format!("{other:?}"));
                None
            }
        }
    });
    let Some(ClientError::NoReplicas { needed, online, .. }) = refused else {
        panic!("never refused with NoReplicas; saw {seen:?}");
    };
    assert_eq!((needed, online), (2, 1));
    assert!(
        seen.iter().all(|s| !s.contains("Gathering")),
        "misread as Gathering: {seen:?}"
    );

    // On the wire, independently of the node's own transcoding: a client of the previous
    // release (offering only ringkv/1) gets version 1's bytes, from the version-2 node and
    // from the version-1 one: Response::Client (0), Err (1), NoReplicas at its version-1
    // index 14 (version 2 says 15), needed 2, online 1, syncing 0.
    let put = proto::encode(&Request::Client(ClientRequest::Put {
        key: key.clone().into_bytes(),
        value: b"raw".to_vec(),
        context: None,
        w: None,
    }))
    .unwrap();
    for via in [0, 2] {
        let addr = cluster.nodes[via].addr;
        let answer = block_on(old_call(&cluster.certs(), addr, &put, 1));
        assert_eq!(answer, [0, 1, 14, 2, 1, 0], "via n{}", via + 1);
    }
}

/// Version 3 beside a node of the release before it (versions 2 and 1): with W=3 and R=3
/// every call crosses version 2 both ways, and version 3 between the new nodes.
#[test]
fn a_node_speaking_versions_2_and_1_serves_beside_version_3() {
    let _serial = serial();
    let old = ["--protocol-version", "2", "--protocol-version", "1"];
    let cluster = cluster([&[], &[], &old]);
    cluster.wait_alive(3, Duration::from_secs(30)).unwrap();
    writes_and_reads_through_every_node(&cluster, "v2");
    // A client of the release before (offering only ringkv/2) is served one call per stream
    // by the new nodes and the old one alike; the new ones' own clients negotiate version 3.
    let get = proto::encode(&Request::Client(ClientRequest::Get {
        key: b"v2-0-1".to_vec(),
        r: None,
        wait_repair: false,
    }))
    .unwrap();
    for via in 0..3 {
        let addr = cluster.nodes[via].addr;
        let answer = block_on(old_call(&cluster.certs(), addr, &get, 2));
        let Ok(proto::Response::Client(Ok(ClientResponse::Got(read)))) = proto::decode(&answer)
        else {
            panic!("via n{}: {answer:?}", via + 1);
        };
        let got: Vec<&[u8]> = read.values.iter().map(|v| v.data.as_slice()).collect();
        assert_eq!(got, [b"v1".as_slice()], "via n{}", via + 1);
    }
    let newest = block_on(async {
        let tls = TlsMaterial::load_client(&cluster.certs()).unwrap();
        let config = client_config(&tls, &TransportConfig::default()).unwrap();
        let endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
        let mut versions = Vec::new();
        for node in &cluster.nodes {
            let conn = endpoint
                .connect_with(config.clone(), node.addr, &node.addr.ip().to_string())
                .unwrap()
                .await
                .unwrap();
            versions.push(negotiated_version(&conn));
        }
        versions
    });
    assert_eq!(newest, [Some(3), Some(3), Some(2)]);
}

/// One request, on a stream of its own, from a client that speaks only protocol version
/// `version` (1 or 2); the raw response body.
async fn old_call(certs: &Path, node: SocketAddr, body: &[u8], version: u32) -> Vec<u8> {
    let tls = TlsMaterial::load_client(certs).unwrap();
    let cfg = TransportConfig {
        protocol_versions: vec![version],
        ..TransportConfig::default()
    };
    let config = client_config(&tls, &cfg).unwrap();
    let endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
    let conn = endpoint
        .connect_with(config, node, &node.ip().to_string())
        .unwrap()
        .await
        .unwrap();
    assert_eq!(negotiated_version(&conn), Some(version));
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let mut frame = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    send.write_all(&frame).await.unwrap();
    send.finish().unwrap();
    let read = tokio::time::timeout(Duration::from_secs(10), recv.read_to_end(1 << 20));
    let response = read.await.expect("an answer within 10 s").unwrap();
    assert!(response.len() >= 4, "{response:?}");
    response[4..].to_vec()
}

#[test]
fn a_node_of_an_unknown_version_is_refused_and_both_versions_are_logged() {
    let _serial = serial();
    let mut cluster = Cluster::prepare(&["n1", "n2"]).unwrap();
    let n1 = cluster.spawn("n1", free_port().unwrap(), &[], &[]).unwrap();
    let seeds = [n1.addr];
    cluster.nodes.push(n1);
    let n2 = cluster
        .spawn(
            "n2",
            free_port().unwrap(),
            &seeds,
            &["--protocol-version", "7"],
        )
        .unwrap();
    cluster.nodes.push(n2);

    let refused = "refusing a handshake: the peer speaks protocol version ringkv/7, \
                   this node speaks ringkv/3, ringkv/2, ringkv/1";
    assert!(
        cluster
            .wait_log("n1", refused, Duration::from_secs(20))
            .is_some(),
        "{}",
        cluster.log("n1")
    );
    let dialler = "the peer speaks none of the protocol versions this node speaks: ringkv/7";
    assert!(
        cluster
            .wait_log("n2", dialler, Duration::from_secs(20))
            .is_some(),
        "{}",
        cluster.log("n2")
    );
    // n1 never admits n2.
    let members = cluster
        .wait_members(0, Duration::from_secs(1), |_| true)
        .unwrap();
    assert!(members.iter().all(|m| m.name != "n2"), "{members:?}");
}

/// Through each node, 20 writes at W=3; then through each node, every key read at R=3 with
/// the value written: every write and read involves every node, so each pair of nodes speaks
/// whatever version it negotiated, both ways.
fn writes_and_reads_through_every_node(cluster: &Cluster, tag: &str) {
    let all = WriteOptions {
        w: Some(3),
        context: None,
    };
    let read_all = ReadOptions {
        r: Some(3),
        ..Default::default()
    };
    for via in [0, 2, 1] {
        let client = cluster.client(via).unwrap();
        for k in 0..20 {
            let key = format!("{tag}-{via}-{k}").into_bytes();
            block_on(client.put(key, format!("v{k}").into_bytes(), all.clone()))
                .unwrap_or_else(|e| panic!("put via n{}: {e}", via + 1));
        }
    }
    for via in 0..3 {
        let client = cluster.client(via).unwrap();
        for from in 0..3 {
            for k in 0..20 {
                let key = format!("{tag}-{from}-{k}").into_bytes();
                let read = block_on(client.get(key, read_all.clone()))
                    .unwrap_or_else(|e| panic!("get via n{}: {e}", via + 1));
                let got: Vec<&[u8]> = read.values.iter().map(|v| v.data.as_slice()).collect();
                assert_eq!(got, [format!("v{k}").as_bytes()], "{tag}-{from}-{k}");
            }
        }
    }
}
