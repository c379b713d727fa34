//! Anti-entropy end to end: a replica that missed writes while stopped gets them from a
//! repair round, without any read or write of those keys.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use ringkv::net::{init_cluster, issue_node, TlsMaterial};
use ringkv::{Api, Node, ReadOptions, WriteOptions};

async fn start(
    certs: &Path,
    data: &Path,
    name: &str,
    port: u16,
    seed: Option<std::net::SocketAddr>,
) -> Node {
    let mut b = Node::builder(name)
        .listen(([127, 0, 0, 1], port).into())
        .data_dir(data.join(name))
        .tls(TlsMaterial::load_node(certs, name).unwrap());
    if let Some(seed) = seed {
        b = b.seed(seed);
    }
    b.start().await.unwrap()
}

async fn wait_alive(node: &Node, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let members = node.members().await.unwrap();
        if members.iter().filter(|m| m.state == "alive").count() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} never saw {n} members alive", node.name());
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_round_brings_a_replica_that_missed_writes_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    init_cluster(&certs).unwrap();
    for name in ["n1", "n2", "n3"] {
        issue_node(&certs, name, &[IpAddr::V4(Ipv4Addr::LOCALHOST)], &[]).unwrap();
    }
    let ports = [free_port(), free_port(), free_port()];
    let n1 = start(&certs, dir.path(), "n1", ports[0], None).await;
    let n2 = start(&certs, dir.path(), "n2", ports[1], Some(n1.addr())).await;
    let n3 = start(&certs, dir.path(), "n3", ports[2], Some(n1.addr())).await;
    wait_alive(&n1, 3).await;
    n3.shutdown().await.unwrap();

    let keys: Vec<Vec<u8>> = (0..200).map(|i| format!("key-{i}").into_bytes()).collect();
    for k in &keys {
        let opts = WriteOptions {
            w: Some(2),
            ..Default::default()
        };
        n1.put(k.clone(), b"v".to_vec(), opts).await.unwrap();
    }

    let n3 = start(&certs, dir.path(), "n3", ports[2], Some(n1.addr())).await;
    wait_alive(&n3, 3).await;
    let missing_before = count_missing(&n3, &keys).await;
    assert_eq!(missing_before, keys.len(), "n3 was down for every write");

    let started = n3.repair().await.unwrap();
    assert!(started.running && started.total > 0, "{started:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = n3.status().await.unwrap();
        if !status.repair.running {
            assert!(status.exchanges > 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "repair round did not finish: {:?}",
            status.repair
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Pushed records land asynchronously; give the last ones a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while count_missing(&n3, &keys).await > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        count_missing(&n3, &keys).await,
        0,
        "every key reached n3 by anti-entropy"
    );
    let read = n3
        .get(keys[0].clone(), ReadOptions { r: Some(1) })
        .await
        .unwrap();
    assert_eq!(read.values[0].data, b"v");

    for node in [n1, n2, n3] {
        node.shutdown().await.unwrap();
    }
}

async fn count_missing(node: &Node, keys: &[Vec<u8>]) -> usize {
    let mut missing = 0;
    for k in keys {
        if node.inspect(k.clone()).await.unwrap().siblings.is_empty() {
            missing += 1;
        }
    }
    missing
}
