//! A token-aware client sends each key's request to a node of the key's preference list, so
//! it keeps serving when the node it learned the ring from is gone; a plain client does not.

mod cluster_common;

use std::time::Duration;

use cluster_common::start_three;
use ringkv::config::CoreConfig;
use ringkv::net::{TlsMaterial, TransportConfig};
use ringkv::{Api, Client, ReadOptions, WriteOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_aware_client_reaches_every_key_without_the_node_it_learned_from() {
    let dir = tempfile::tempdir().unwrap();
    let (certs, [n1, n2, n3]) = start_three(dir.path(), CoreConfig::default()).await;

    let tls = TlsMaterial::load_client(&certs).unwrap();
    let transport = TransportConfig {
        connect_timeout: Duration::from_millis(300),
        call_timeout: Duration::from_secs(3),
        ..TransportConfig::default()
    };
    let plain = Client::with_config(n1.addr(), &tls, transport.clone()).unwrap();
    let routed = Client::with_config(n1.addr(), &tls, transport)
        .unwrap()
        .token_aware()
        .await
        .unwrap();
    let keys: Vec<Vec<u8>> = (0..30)
        .map(|i| format!("routed-{i}").into_bytes())
        .collect();
    for k in &keys {
        routed
            .put(k.clone(), k.clone(), WriteOptions::default())
            .await
            .unwrap();
    }

    n1.stop().await.unwrap();
    let read = ReadOptions::default();
    assert!(
        plain.get(keys[0].clone(), read.clone()).await.is_err(),
        "the plain client talks to n1 alone"
    );
    for k in &keys {
        let got = routed.get(k.clone(), read.clone()).await.unwrap();
        assert_eq!(got.values.len(), 1, "{k:?}");
        assert_eq!(&got.values[0].data, k);
    }
    drop((n2, n3));
}
