//! Bounds on what a hostile or broken peer can make a node's transport spend: connections
//! per IP address, a handshake that never completes, streams opened and never written, a
//! datagram flood. Each bound holds, is counted in the node's limit hits, and the node keeps
//! serving others.

mod net_common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use net_common::{bind, bounded, eventually, raw_endpoint, spawn_echo, Cluster};
use ringkv::limits::Limit;
use ringkv::net::tls::client_config;
use ringkv::net::{Transport, TransportConfig, TransportError};
use tokio::net::UdpSocket;

#[tokio::test]
async fn connections_beyond_the_per_address_bound_are_refused_and_counted() {
    bounded(async {
        let cluster = Cluster::new(&["n1"]);
        let cfg = TransportConfig {
            max_connections_per_address: 2,
            ..TransportConfig::default()
        };
        let (n1, in1, a1) = bind(&cluster.node("n1"), cfg).await;
        spawn_echo(in1);
        let client = || Transport::client(&cluster.client(), TransportConfig::default()).unwrap();
        let (first, second, third) = (client(), client(), client());
        assert_eq!(first.call(a1, b"1").await.unwrap(), b"echo:1");
        assert_eq!(second.call(a1, b"2").await.unwrap(), b"echo:2");

        // A third connection from 127.0.0.1 is one too many.
        let err = third.call(a1, b"3").await.unwrap_err();
        assert!(matches!(err, TransportError::Connect { .. }), "{err}");
        assert_eq!(n1.limit_hits().get(Limit::ConnectionsPerAddress), 1);
        assert_eq!(n1.limit_hits().get(Limit::Connections), 0);
        assert_eq!(n1.stats().connections_refused, 1);
        // Those admitted keep working; once one closes, its place is free again.
        assert_eq!(second.call(a1, b"4").await.unwrap(), b"echo:4");
        first.close().await;
        let mut answer = third.call(a1, b"5").await;
        while answer.is_err() {
            // The node frees the place once it sees the close; until then it still refuses.
            tokio::time::sleep(Duration::from_millis(50)).await;
            answer = third.call(a1, b"5").await;
        }
        assert_eq!(answer.unwrap(), b"echo:5");
    })
    .await;
}

/// Relays the first datagram `client` sends to `node`, then nothing either way: a peer that
/// starts a handshake and never finishes it.
async fn stall_after_first_datagram(node: SocketAddr) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let relay = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = relay.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        let Ok((n, _)) = relay.recv_from(&mut buf).await else {
            return;
        };
        let _ = relay.send_to(&buf[..n], node).await;
        // Swallow the rest (retransmissions, the node's answers) until the test ends.
        while relay.recv_from(&mut buf).await.is_ok() {}
    });
    (addr, task)
}

#[tokio::test]
async fn a_handshake_that_never_completes_holds_its_place_only_until_the_handshake_timeout() {
    bounded(async {
        let cluster = Cluster::new(&["n1"]);
        let cfg = TransportConfig {
            max_connections: 1,
            handshake_timeout: Duration::from_secs(2),
            ..TransportConfig::default()
        };
        let (n1, in1, a1) = bind(&cluster.node("n1"), cfg).await;
        spawn_echo(in1);

        let (relay, relay_task) = stall_after_first_datagram(a1).await;
        let endpoint =
            raw_endpoint(client_config(&cluster.client(), &TransportConfig::default()).unwrap());
        let stalled = endpoint.connect(relay, "127.0.0.1").unwrap();
        let stalled = tokio::spawn(stalled);
        eventually(|| n1.open_connections() == 1).await;

        // The half-open handshake holds the one place...
        let client = Transport::client(&cluster.client(), TransportConfig::default()).unwrap();
        let err = client.call(a1, b"early").await.unwrap_err();
        assert!(matches!(err, TransportError::Connect { .. }), "{err}");
        assert_eq!(n1.limit_hits().get(Limit::Connections), 1);
        // ...until the handshake timeout ends it and frees the place.
        eventually(|| n1.limit_hits().get(Limit::HandshakeTime) == 1).await;
        assert_eq!(client.call(a1, b"later").await.unwrap(), b"echo:later");
        stalled.abort();
        relay_task.abort();
    })
    .await;
}

#[tokio::test]
async fn streams_opened_and_never_finished_are_reset_at_the_call_timeout() {
    bounded(async {
        let cluster = Cluster::new(&["n1"]);
        let cfg = TransportConfig {
            max_concurrent_streams: 4,
            call_timeout: Duration::from_millis(500),
            ..TransportConfig::default()
        };
        let (n1, in1, a1) = bind(&cluster.node("n1"), cfg).await;
        spawn_echo(in1);
        let endpoint =
            raw_endpoint(client_config(&cluster.client(), &TransportConfig::default()).unwrap());
        let conn = endpoint.connect(a1, "127.0.0.1").unwrap().await.unwrap();

        // Twice the streams the node allows at once, each with half a frame header and then
        // silence: the node waits for none of them past its call timeout.
        let mut stalls = Vec::new();
        for _ in 0..8 {
            let conn = conn.clone();
            stalls.push(tokio::spawn(async move {
                let (mut send, mut recv) = conn.open_bi().await.unwrap();
                send.write_all(&[0, 0]).await.unwrap();
                let outcome = recv.read_to_end(1024).await;
                drop(send);
                outcome
            }));
        }
        // Meanwhile the node serves others.
        let client = Transport::client(&cluster.client(), TransportConfig::default()).unwrap();
        assert_eq!(
            client.call(a1, b"meanwhile").await.unwrap(),
            b"echo:meanwhile"
        );

        for stall in stalls {
            match stall.await.unwrap() {
                Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => {
                    assert_eq!(code.into_inner(), 5, "reset as too slow");
                }
                other => panic!("a stalled stream ended with {other:?}"),
            }
        }
        assert_eq!(n1.limit_hits().get(Limit::FrameTime), 8);
        assert!(n1.limit_hits().get(Limit::StreamsPerConnection) >= 1);
        // The connection itself carries a whole request afterwards.
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(b"\x00\x00\x00\x02ok").await.unwrap();
        send.finish().unwrap();
        assert_eq!(
            recv.read_to_end(1024).await.unwrap(),
            b"\x00\x00\x00\x07echo:ok"
        );

        // A header announcing more than `max_frame` is refused as soon as it is read.
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(b"\xff\xff\xff\xff").await.unwrap();
        assert!(recv.read_to_end(1024).await.is_err());
        assert_eq!(n1.limit_hits().get(Limit::FrameSize), 1);
    })
    .await;
}

#[tokio::test]
async fn a_peer_flooding_datagrams_is_held_to_its_rate_and_others_still_get_through() {
    bounded(async {
        let cluster = Cluster::new(&["n1"]);
        const RATE: u32 = 50;
        let cfg = TransportConfig {
            max_datagrams_per_sec: RATE,
            ..TransportConfig::default()
        };
        let (n1, in1, a1) = bind(&cluster.node("n1"), cfg).await;
        let mut delivered = spawn_echo(in1);
        let endpoint =
            raw_endpoint(client_config(&cluster.client(), &TransportConfig::default()).unwrap());
        let conn = endpoint.connect(a1, "127.0.0.1").unwrap().await.unwrap();

        let started = Instant::now();
        const SENT: u64 = 600;
        for i in 0..SENT {
            conn.send_datagram_wait(Bytes::from(i.to_be_bytes().to_vec()))
                .await
                .unwrap();
        }
        eventually(|| n1.stats().datagrams_received == SENT).await;
        let elapsed = started.elapsed();

        // Another peer's datagrams are not held back by the flood.
        let other = Transport::client(&cluster.client(), TransportConfig::default()).unwrap();
        other.call(a1, b"connect").await.unwrap();
        for _ in 0..3 {
            other.send_datagram(a1, Bytes::from_static(b"gossip"));
        }
        let (mut from_flooder, mut from_other) = (0u64, 0u64);
        while from_other < 3 {
            let (_, data) = delivered.recv().await.unwrap();
            if data.as_ref() == b"gossip" {
                from_other += 1;
            } else {
                from_flooder += 1;
            }
        }
        while let Ok((_, data)) = delivered.try_recv() {
            assert_ne!(data.as_ref(), b"gossip");
            from_flooder += 1;
        }
        // Every flooded datagram was either handed on within the rate or dropped and counted.
        let dropped = n1.limit_hits().get(Limit::DatagramRate);
        assert_eq!(from_flooder + dropped, SENT);
        let windows = elapsed.as_secs() + 1;
        assert!(
            from_flooder >= u64::from(RATE) && from_flooder <= u64::from(RATE) * windows,
            "{from_flooder} datagrams handed on over {elapsed:?} at {RATE}/s"
        );
        assert_eq!(n1.stats().inbound_datagrams_dropped, dropped);
    })
    .await;
}

/// Connects to a Redis front and sends `PING`: the connection and the first answer.
async fn redis_ping(front: SocketAddr) -> (tokio::net::TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(front).await.unwrap();
    // A refused connection may be closed before the request is written.
    let _ = s.write_all(b"*1\r\n$4\r\nPING\r\n").await;
    let mut buf = [0u8; 128];
    let n = s.read(&mut buf).await.unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    (s, answer)
}

#[tokio::test]
async fn redis_connections_past_the_bound_are_told_so_and_counted() {
    bounded(async {
        let cluster = Cluster::new(&["n1"]);
        let mut redis = ringkv::resp::RedisConfig::plaintext("127.0.0.1:0".parse().unwrap());
        redis.limits.max_connections = 2;
        let node = ringkv::Node::builder("n1")
            .tls(cluster.node("n1"))
            .redis(redis)
            .start()
            .await
            .unwrap();
        let front = node.redis_addr().unwrap();
        let mut held = Vec::new();
        for _ in 0..2 {
            let (s, answer) = redis_ping(front).await;
            assert_eq!(answer, "+PONG\r\n");
            held.push(s);
        }
        let (_third, answer) = redis_ping(front).await;
        assert!(
            answer.contains("max number of clients reached"),
            "{answer:?}"
        );
        assert_eq!(node.limit_hits().get(Limit::RedisConnections), 1);

        // Once a client leaves, its place is free again.
        drop(held.pop());
        let mut answer = redis_ping(front).await.1;
        while answer != "+PONG\r\n" {
            tokio::time::sleep(Duration::from_millis(50)).await;
            answer = redis_ping(front).await.1;
        }
        node.stop().await.unwrap();
    })
    .await;
}
