//! Shared helpers of the `net_*` tests: a cluster CA in a tempdir, nodes on 127.0.0.1:0, an
//! echo service, and time bounds so no test can hang.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use ringkv::net::tls::{init_cluster, issue_node};
use ringkv::net::{Inbound, InboundEvent, TlsMaterial, Transport, TransportConfig};
use tokio::sync::mpsc;

/// A cluster CA with node certificates for 127.0.0.1.
pub struct Cluster {
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub fn new(nodes: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        init_cluster(dir.path()).unwrap();
        for name in nodes {
            issue_node(dir.path(), name, &["127.0.0.1".parse().unwrap()], &[]).unwrap();
        }
        Cluster { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn node(&self, name: &str) -> TlsMaterial {
        TlsMaterial::load_node(self.path(), name).unwrap()
    }

    pub fn client(&self) -> TlsMaterial {
        TlsMaterial::load_client(self.path()).unwrap()
    }
}

pub async fn bind(tls: &TlsMaterial, cfg: TransportConfig) -> (Transport, Inbound, SocketAddr) {
    let (t, inbound) = Transport::bind("127.0.0.1:0".parse().unwrap(), tls, cfg)
        .await
        .unwrap();
    let addr = t.local_addr().unwrap();
    (t, inbound, addr)
}

/// Serves `inbound`: a request `drop` is dropped unanswered, any other request is answered
/// with `echo:` and its body; datagrams are forwarded to the returned channel.
pub fn spawn_echo(mut inbound: Inbound) -> mpsc::UnboundedReceiver<(SocketAddr, Bytes)> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = inbound.recv().await {
            match event {
                InboundEvent::Datagram { from, data } => {
                    let _ = tx.send((from, data));
                }
                InboundEvent::Request { data, respond, .. } => {
                    if data == b"drop" {
                        drop(respond);
                    } else {
                        respond.respond([b"echo:".as_slice(), &data].concat());
                    }
                }
            }
        }
    });
    rx
}

/// Runs a test body, failing it instead of hanging if it takes longer than 30 s.
pub async fn bounded<F: Future>(body: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), body)
        .await
        .expect("test exceeded its 30 s bound")
}

/// Waits until `cond` holds (callers run inside [`bounded`]).
pub async fn eventually(mut cond: impl FnMut() -> bool) {
    while !cond() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A raw quinn client endpoint using `tls` (for tests that step outside `Transport`).
pub fn raw_endpoint(config: quinn::ClientConfig) -> quinn::Endpoint {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(config);
    endpoint
}
