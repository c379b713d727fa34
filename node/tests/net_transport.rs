//! The QUIC transport between nodes of one cluster: calls, datagrams, limits, timeouts.

mod net_common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use net_common::{bind, bounded, eventually, raw_endpoint, spawn_echo, Cluster};
use ringkv::net::tls::client_config;
use ringkv::net::{TimeoutPhase, Transport, TransportConfig, TransportError};

#[tokio::test]
async fn nodes_call_each_other_and_exchange_datagrams() {
    bounded(async {
        let cluster = Cluster::new(&["n1", "n2"]);
        let (n1, in1, a1) = bind(&cluster.node("n1"), TransportConfig::default()).await;
        let (n2, in2, a2) = bind(&cluster.node("n2"), TransportConfig::default()).await;
        let mut datagrams1 = spawn_echo(in1);
        let _datagrams2 = spawn_echo(in2);

        // The first datagram has no connection yet: a task dials and sends it.
        assert_eq!(n2.max_datagram_size(a1), None);
        n2.send_datagram(a1, Bytes::from_static(b"gossip"));
        let (from, data) = datagrams1.recv().await.unwrap();
        assert_eq!((from, &data[..]), (a2, &b"gossip"[..]));
        assert!(n2.max_datagram_size(a1).is_some());

        assert_eq!(n2.call(a1, b"ping").await.unwrap(), b"echo:ping");
        assert_eq!(n1.call(a2, b"pong").await.unwrap(), b"echo:pong");
        assert_eq!(n1.call(a1, b"self").await.unwrap(), b"echo:self");

        let stats = n2.stats();
        assert_eq!((stats.datagrams_sent, stats.datagrams_dropped), (1, 0));
        let stats = n1.stats();
        assert_eq!(stats.datagrams_received, 1);
        assert_eq!(stats.requests_received, 2, "n2's ping and n1's own call");
    })
    .await;
}

#[tokio::test]
async fn concurrent_calls_share_one_connection() {
    bounded(async {
        let cluster = Cluster::new(&["n1", "n2"]);
        let (n1, in1, a1) = bind(&cluster.node("n1"), TransportConfig::default()).await;
        let (n2, _in2, _) = bind(&cluster.node("n2"), TransportConfig::default()).await;
        spawn_echo(in1);

        let mut calls = tokio::task::JoinSet::new();
        for i in 0..50u32 {
            let n2 = n2.clone();
            calls.spawn(async move { (i, n2.call(a1, &i.to_be_bytes()).await) });
        }
        while let Some(done) = calls.join_next().await {
            let (i, reply) = done.unwrap();
            assert_eq!(
                reply.unwrap(),
                [b"echo:".as_slice(), &i.to_be_bytes()].concat()
            );
        }
        assert_eq!(n1.stats().connections_accepted, 1);
        assert_eq!(n1.stats().requests_received, 50);
    })
    .await;
}

#[tokio::test]
async fn a_client_only_transport_with_the_client_certificate_calls_a_node() {
    bounded(async {
        let cluster = Cluster::new(&["n1"]);
        let (_n1, in1, a1) = bind(&cluster.node("n1"), TransportConfig::default()).await;
        spawn_echo(in1);
        let client = Transport::client(&cluster.client(), TransportConfig::default()).unwrap();
        assert!(client.local_addr().unwrap().is_ipv4());
        assert_eq!(client.call(a1, b"get k").await.unwrap(), b"echo:get k");
        client.close().await;
        assert!(client.call(a1, b"after close").await.is_err());
    })
    .await;
}

#[tokio::test]
async fn a_dropped_responder_fails_the_call_with_the_peers_reason() {
    bounded(async {
        let cluster = Cluster::new(&["n1"]);
        let (_n1, in1, a1) = bind(&cluster.node("n1"), TransportConfig::default()).await;
        spawn_echo(in1);
        let client = Transport::client(&cluster.client(), TransportConfig::default()).unwrap();
        let err = client.call(a1, b"drop").await.unwrap_err();
        assert!(matches!(err, TransportError::Remote { .. }), "{err}");
        assert!(err.to_string().contains("without responding"), "{err}");
        assert_eq!(client.call(a1, b"next").await.unwrap(), b"echo:next");
    })
    .await;
}

#[tokio::test]
async fn frames_over_max_frame_are_refused_and_the_node_keeps_serving() {
    bounded(async {
        let cluster = Cluster::new(&["big", "small"]);
        let small = TransportConfig {
            max_frame: 1024,
            ..TransportConfig::default()
        };
        let (_big, in_big, a_big) = bind(&cluster.node("big"), TransportConfig::default()).await;
        let (n_small, in_small, a_small) = bind(&cluster.node("small"), small.clone()).await;
        spawn_echo(in_big);
        spawn_echo(in_small);

        // Refused locally before anything is sent.
        let client_small = Transport::client(&cluster.client(), small).unwrap();
        let err = client_small.call(a_small, &[7; 1025]).await.unwrap_err();
        assert!(
            matches!(
                err,
                TransportError::FrameTooLarge {
                    size: 1025,
                    max: 1024
                }
            ),
            "{err}"
        );
        // A response over the caller's limit is refused ("echo:" makes it 1025 bytes).
        let err = client_small.call(a_big, &[7; 1020]).await.unwrap_err();
        assert!(
            matches!(
                err,
                TransportError::FrameTooLarge {
                    size: 1025,
                    max: 1024
                }
            ),
            "{err}"
        );

        // A caller with a larger limit is refused by the node, which resets that stream.
        let client = Transport::client(&cluster.client(), TransportConfig::default()).unwrap();
        let err = client.call(a_small, &[7; 4096]).await.unwrap_err();
        assert!(matches!(err, TransportError::Remote { .. }), "{err}");
        assert!(err.to_string().contains("too large"), "{err}");
        assert_eq!(n_small.stats().streams_refused, 1);
        // A response over the node's own limit is not sent; the stream is reset instead.
        let err = client.call(a_small, &[7; 1020]).await.unwrap_err();
        assert!(err.to_string().contains("too large"), "{err}");

        assert_eq!(client.call(a_small, b"ok").await.unwrap(), b"echo:ok");
    })
    .await;
}

/// Opens a stream on `conn`, writes `bytes`, finishes, and returns what reading yields.
async fn raw_exchange(
    conn: &quinn::Connection,
    bytes: &[u8],
) -> Result<Vec<u8>, quinn::ReadToEndError> {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    // The node may reset the stream before all is written; the read reports it.
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    recv.read_to_end(64 * 1024).await
}

#[tokio::test]
async fn garbage_on_a_stream_closes_only_that_stream() {
    bounded(async {
        let cluster = Cluster::new(&["n1"]);
        let (n1, in1, a1) = bind(&cluster.node("n1"), TransportConfig::default()).await;
        spawn_echo(in1);
        let config = client_config(&cluster.client(), &TransportConfig::default()).unwrap();
        let endpoint = raw_endpoint(config);
        let conn = endpoint.connect(a1, "127.0.0.1").unwrap().await.unwrap();

        let reset = |r: Result<Vec<u8>, quinn::ReadToEndError>| {
            matches!(
                r,
                Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(_)))
            )
        };
        // A length prefix of 4 GiB - 1.
        assert!(reset(raw_exchange(&conn, b"\xff\xff\xff\xffjunk").await));
        // A frame that announces 16 bytes and ends after 3.
        assert!(reset(raw_exchange(&conn, b"\x00\x00\x00\x10abc").await));
        // Not even a whole header.
        assert!(reset(raw_exchange(&conn, b"\x01").await));
        assert_eq!(n1.stats().streams_refused, 3);

        // The same connection still carries a well-formed request.
        let reply = raw_exchange(&conn, b"\x00\x00\x00\x04ping").await.unwrap();
        assert_eq!(reply, b"\x00\x00\x00\x09echo:ping");
        assert!(conn.close_reason().is_none());

        let client = Transport::client(&cluster.client(), TransportConfig::default()).unwrap();
        assert_eq!(client.call(a1, b"still").await.unwrap(), b"echo:still");
    })
    .await;
}

#[tokio::test]
async fn a_call_where_nothing_answers_fails_at_the_connect_timeout() {
    bounded(async {
        let cluster = Cluster::new(&[]);
        // A socket that receives but never answers, so the handshake cannot complete.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = silent.local_addr().unwrap();
        let cfg = TransportConfig {
            connect_timeout: Duration::from_millis(300),
            call_timeout: Duration::from_secs(20),
            ..TransportConfig::default()
        };
        let client = Transport::client(&cluster.client(), cfg).unwrap();
        let err = client.call(to, b"anyone?").await.unwrap_err();
        assert!(
            matches!(
                err,
                TransportError::Timeout { addr, after, phase: TimeoutPhase::Connect }
                    if addr == to && after == Duration::from_millis(300)
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!("timed out after 300ms connecting to {to}")
        );
    })
    .await;
}

#[tokio::test]
async fn a_call_to_a_closed_port_fails_without_waiting_for_the_call_timeout() {
    bounded(async {
        let cluster = Cluster::new(&[]);
        let to: SocketAddr = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        let cfg = TransportConfig {
            connect_timeout: Duration::from_millis(300),
            call_timeout: Duration::from_secs(20),
            ..TransportConfig::default()
        };
        let client = Transport::client(&cluster.client(), cfg).unwrap();
        let err = client.call(to, b"anyone?").await.unwrap_err();
        let connect_phase = matches!(
            err,
            TransportError::Timeout {
                phase: TimeoutPhase::Connect,
                ..
            } | TransportError::Connect { .. }
        );
        assert!(connect_phase, "{err}");
    })
    .await;
}

#[tokio::test]
async fn datagrams_over_the_size_limit_are_dropped_and_counted() {
    bounded(async {
        let cluster = Cluster::new(&["n1"]);
        let (_n1, in1, a1) = bind(&cluster.node("n1"), TransportConfig::default()).await;
        spawn_echo(in1);
        let client = Transport::client(&cluster.client(), TransportConfig::default()).unwrap();
        client.call(a1, b"connect").await.unwrap();
        let max = client.max_datagram_size(a1).unwrap();
        client.send_datagram(a1, Bytes::from(vec![0; max + 1]));
        assert_eq!(client.stats().datagrams_dropped, 1);
        assert_eq!(client.stats().datagrams_sent, 0);
    })
    .await;
}

#[tokio::test]
async fn closing_a_node_ends_its_inbound_queue_and_fails_calls_to_it() {
    bounded(async {
        let cluster = Cluster::new(&["n1"]);
        let (n1, mut in1, a1) = bind(&cluster.node("n1"), TransportConfig::default()).await;
        let cfg = TransportConfig {
            connect_timeout: Duration::from_millis(300),
            ..TransportConfig::default()
        };
        let client = Transport::client(&cluster.client(), cfg).unwrap();
        n1.close().await;
        assert!(in1.recv().await.is_none());
        assert!(client.call(a1, b"hello?").await.is_err());
    })
    .await;
}

#[tokio::test]
async fn an_invalid_config_is_refused_with_its_reason() {
    bounded(async {
        let cluster = Cluster::new(&[]);
        let cfg = TransportConfig {
            max_inbound_queue: 0,
            ..TransportConfig::default()
        };
        let err = Transport::client(&cluster.client(), cfg).unwrap_err();
        assert!(matches!(err, TransportError::Config(_)), "{err}");
        assert!(err.to_string().contains("max_inbound_queue"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn connections_beyond_max_connections_are_refused() {
    bounded(async {
        let cluster = Cluster::new(&["n1"]);
        let one = TransportConfig {
            max_connections: 1,
            ..TransportConfig::default()
        };
        let (n1, in1, a1) = bind(&cluster.node("n1"), one).await;
        spawn_echo(in1);
        let first = Transport::client(&cluster.client(), TransportConfig::default()).unwrap();
        let second = Transport::client(&cluster.client(), TransportConfig::default()).unwrap();
        assert_eq!(first.call(a1, b"1").await.unwrap(), b"echo:1");

        let err = second.call(a1, b"2").await.unwrap_err();
        assert!(matches!(err, TransportError::Connect { .. }), "{err}");
        assert_eq!(n1.stats().connections_refused, 1);
        // The connection already open keeps working.
        assert_eq!(first.call(a1, b"3").await.unwrap(), b"echo:3");
    })
    .await;
}

#[tokio::test]
async fn a_full_inbound_queue_drops_datagrams_and_refuses_requests_as_busy() {
    bounded(async {
        let cluster = Cluster::new(&["n1"]);
        let tiny = TransportConfig {
            max_inbound_queue: 1,
            call_timeout: Duration::from_millis(300),
            ..TransportConfig::default()
        };
        // Nobody reads `_in1`: after one event the queue is full.
        let (n1, _in1, a1) = bind(&cluster.node("n1"), tiny).await;
        let client = Transport::client(&cluster.client(), TransportConfig::default()).unwrap();
        client.send_datagram(a1, Bytes::from_static(b"first"));
        eventually(|| n1.stats().datagrams_received == 1).await;
        for _ in 0..4 {
            client.send_datagram(a1, Bytes::from_static(b"more"));
        }
        eventually(|| n1.stats().datagrams_received == 5).await;
        assert_eq!(n1.stats().inbound_datagrams_dropped, 4);

        let err = client.call(a1, b"request").await.unwrap_err();
        assert!(matches!(err, TransportError::Remote { .. }), "{err}");
        assert!(err.to_string().contains("busy"), "{err}");
        assert_eq!(n1.stats().requests_refused_busy, 1);
    })
    .await;
}

/// A version-3 frame: length, call id, kind (0 request, 1 response, 2 refused), body.
fn mux_frame(id: u64, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut frame = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(&id.to_be_bytes());
    frame.push(kind);
    frame.extend_from_slice(body);
    frame
}

#[tokio::test]
async fn a_multiplexed_stream_refuses_one_oversized_call_and_resets_on_garbage() {
    bounded(async {
        let cluster = Cluster::new(&["n1"]);
        let small = TransportConfig {
            max_frame: 1024,
            ..TransportConfig::default()
        };
        let (n1, in1, a1) = bind(&cluster.node("n1"), small).await;
        spawn_echo(in1);
        let config = client_config(&cluster.client(), &TransportConfig::default()).unwrap();
        let endpoint = raw_endpoint(config);
        let conn = endpoint.connect(a1, "127.0.0.1").unwrap().await.unwrap();
        assert_eq!(ringkv::net::tls::negotiated_version(&conn), Some(3));

        // An oversized request fails alone; the call after it on the stream is answered.
        let mut calls = b"\xffMUX".to_vec();
        calls.extend(mux_frame(5, 0, &[7; 2000]));
        calls.extend(mux_frame(6, 0, b"ping"));
        let answers = raw_exchange(&conn, &calls).await.unwrap();
        let mut expected = mux_frame(5, 2, &3u64.to_be_bytes());
        expected.extend(mux_frame(6, 1, b"echo:ping"));
        assert_eq!(answers, expected);
        assert_eq!(n1.stats().streams_refused, 1);

        // A frame of an unknown kind resets the stream.
        let mut garbage = b"\xffMUX".to_vec();
        garbage.extend(mux_frame(1, 9, b"x"));
        assert!(matches!(
            raw_exchange(&conn, &garbage).await,
            Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(_)))
        ));
        assert_eq!(n1.stats().streams_refused, 2);
        let client = Transport::client(&cluster.client(), TransportConfig::default()).unwrap();
        assert_eq!(client.call(a1, b"still").await.unwrap(), b"echo:still");
    })
    .await;
}

#[tokio::test]
async fn calls_carry_frames_of_the_largest_value_both_ways() {
    bounded(async {
        let cluster = Cluster::new(&["n1", "n2"]);
        let (_n1, in1, a1) = bind(&cluster.node("n1"), TransportConfig::default()).await;
        let (n2, _in2, _) = bind(&cluster.node("n2"), TransportConfig::default()).await;
        spawn_echo(in1);
        let big = vec![7u8; 4 * 1024 * 1024 + 1024];
        let echoed = n2.call(a1, &big).await.unwrap();
        assert_eq!(echoed.len(), big.len() + 5);
        assert_eq!(n2.call(a1, b"after").await.unwrap(), b"echo:after");
    })
    .await;
}

/// A gossip datagram as this build's membership sends it (an announce to `seed`), with its
/// membership digest.
fn announce_to(seed: SocketAddr) -> Bytes {
    use ringkv_gossip::{GossipConfig, GossipOutput, Membership, NodeId};
    let me = NodeId::new("a", "127.0.0.1:9".parse().unwrap());
    let mut membership = Membership::new(me, vec![seed], GossipConfig::lan(), 1).unwrap();
    membership
        .start()
        .into_iter()
        .find_map(|output| match output {
            GossipOutput::Send { data, .. } => Some(data),
            _ => None,
        })
        .expect("an announce to the seed")
}

#[tokio::test]
async fn gossip_crosses_a_version_2_connection_without_the_membership_digest() {
    use ringkv_gossip::wire::{with_no_digest, without_digest};
    bounded(async {
        let cluster = Cluster::new(&["n1", "n2"]);
        let old = TransportConfig {
            protocol_versions: vec![2],
            ..TransportConfig::default()
        };
        let (n1, in1, a1) = bind(&cluster.node("n1"), TransportConfig::default()).await;
        let (_n2, in2, a2) = bind(&cluster.node("n2"), old.clone()).await;
        let mut datagrams1 = spawn_echo(in1);
        let mut datagrams2 = spawn_echo(in2);
        let gossip = announce_to(a2);
        let plain = without_digest(&gossip)
            .unwrap()
            .expect("not a sync datagram");
        let unknown = with_no_digest(&plain).unwrap();
        assert_ne!(unknown, gossip);

        // Sent to a version-2 node: the sync datagram is withheld, the digest stripped (and
        // the receiver, being this build, puts the unknown digest in its place).
        n1.send_datagram(a2, gossip.clone());
        let (_, data) = datagrams2.recv().await.unwrap();
        assert_eq!(data, unknown);
        // The connection is up, so this send is decided before the call returns.
        n1.send_datagram(a2, Bytes::from_static(&[0, 1, 2, 3]));
        assert_eq!(n1.stats().datagrams_sent, 1);

        // What a node of the previous release sends (no digest) gets the unknown digest.
        let endpoint = raw_endpoint(client_config(&cluster.node("n2"), &old).unwrap());
        let conn = endpoint.connect(a1, "127.0.0.1").unwrap().await.unwrap();
        conn.send_datagram(Bytes::from(plain)).unwrap();
        let (_, data) = datagrams1.recv().await.unwrap();
        assert_eq!(data, unknown);
    })
    .await;
}
