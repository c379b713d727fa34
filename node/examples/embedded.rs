//! Three ringkv nodes inside one program: write through one, read through another.
//!
//! Run with `cargo run -p ringkv --example embedded`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ringkv::net::{init_cluster, issue_node, TlsMaterial};
use ringkv::{Api, Node, ReadOptions, WriteOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let certs = dir.path().join("certs");
    init_cluster(&certs)?;
    let loopback = [IpAddr::V4(Ipv4Addr::LOCALHOST)];

    let mut nodes: Vec<Node> = Vec::new();
    for name in ["n1", "n2", "n3"] {
        issue_node(&certs, name, &loopback, &[])?;
        let mut builder = Node::builder(name)
            .listen("127.0.0.1:0".parse()?)
            .data_dir(dir.path().join(name))
            .tls(TlsMaterial::load_node(&certs, name)?);
        if let Some(seed) = nodes.first() {
            builder = builder.seed(seed.addr());
        }
        nodes.push(builder.start().await?);
    }

    // Wait (bounded) until the first node sees all three alive.
    for _ in 0..100 {
        let alive = nodes[0]
            .members()
            .await?
            .iter()
            .filter(|m| m.state == "alive")
            .count();
        if alive == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    nodes[0]
        .put(
            b"greeting".to_vec(),
            b"hello".to_vec(),
            WriteOptions::default(),
        )
        .await?;
    let read = nodes[2]
        .get(
            b"greeting".to_vec(),
            ReadOptions {
                r: Some(3),
                ..Default::default()
            },
        )
        .await?;
    for value in &read.values {
        println!("greeting = {}", String::from_utf8_lossy(&value.data));
    }

    for node in nodes {
        node.shutdown().await?;
    }
    Ok(())
}
