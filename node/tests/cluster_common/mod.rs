//! Helpers for in-process cluster tests: nodes of the library on loopback.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use ringkv::config::CoreConfig;
use ringkv::net::{init_cluster, issue_node, TlsMaterial};
use ringkv::{Api, Node};

/// Certificates for `names` under `dir/certs`.
pub fn certs(dir: &Path, names: &[&str]) -> std::path::PathBuf {
    let certs = dir.join("certs");
    init_cluster(&certs).unwrap();
    for name in names {
        issue_node(&certs, name, &[IpAddr::V4(Ipv4Addr::LOCALHOST)], &[]).unwrap();
    }
    certs
}

/// Start node `name` on `port` with its data under `data`.
pub async fn start(
    certs: &Path,
    data: &Path,
    name: &str,
    port: u16,
    seed: Option<SocketAddr>,
    config: CoreConfig,
) -> Node {
    let mut b = Node::builder(name)
        .listen(([127, 0, 0, 1], port).into())
        .data_dir(data.join(name))
        .config(config)
        .tls(TlsMaterial::load_node(certs, name).unwrap());
    if let Some(seed) = seed {
        b = b.seed(seed);
    }
    b.start().await.unwrap()
}

/// Nodes n1, n2 and n3 on free ports with their data and certificates under `dir`, n2 and n3
/// joined through n1, once n1 sees all three alive; and the certificates' directory.
pub async fn start_three(dir: &Path, config: CoreConfig) -> (std::path::PathBuf, [Node; 3]) {
    let certs = certs(dir, &["n1", "n2", "n3"]);
    let n1 = start(&certs, dir, "n1", free_port(), None, config.clone()).await;
    let n2 = start(
        &certs,
        dir,
        "n2",
        free_port(),
        Some(n1.addr()),
        config.clone(),
    )
    .await;
    let n3 = start(&certs, dir, "n3", free_port(), Some(n1.addr()), config).await;
    wait_alive(&n1, 3).await;
    (certs, [n1, n2, n3])
}

/// Wait (bounded) until `node` sees `n` members alive.
pub async fn wait_alive(node: &Node, n: usize) {
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

/// A loopback UDP port free right now.
pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How many of `keys` `node` holds nothing for.
pub async fn count_missing(node: &Node, keys: &[Vec<u8>]) -> usize {
    let mut missing = 0;
    for k in keys {
        if node.inspect(k.clone()).await.unwrap().siblings.is_empty() {
            missing += 1;
        }
    }
    missing
}

/// Poll `missing` until it is zero or `within` passes; the last count.
pub async fn wait_none_missing(node: &Node, keys: &[Vec<u8>], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let missing = count_missing(node, keys).await;
        if missing == 0 || Instant::now() >= deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
