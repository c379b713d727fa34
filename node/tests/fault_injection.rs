//! Fault injection end to end: a node started without it refuses fault requests; one started
//! with it checks their bounds, cuts a peer off (which then sees it down), cuts a peer it has
//! not met yet once it appears, and shifts the clock its writes are stamped with; a one-way
//! cut drops exactly one direction of datagrams, requests and responses.

mod cluster_common;
mod net_common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cluster_common::{certs, free_port, wait_alive};
use ringkv::faults::{FaultError, FaultPlan, FaultRequest, MAX_CLOCK_OFFSET_MS, MAX_SYNC_DELAY_MS};
use ringkv::net::TlsMaterial;
use ringkv::{Api, Client, Error, Node, ReadOptions, WriteOptions};

async fn node(certs: &std::path::Path, name: &str, seed: Option<&Node>, faults: bool) -> Node {
    let mut b = Node::builder(name)
        .listen(([127, 0, 0, 1], free_port()).into())
        .tls(TlsMaterial::load_node(certs, name).unwrap())
        .fault_injection(faults);
    if let Some(seed) = seed {
        b = b.seed(seed.addr());
    }
    b.start().await.unwrap()
}

fn names(n: &[&str]) -> BTreeSet<String> {
    n.iter().map(|s| s.to_string()).collect()
}

fn fault_error(r: Result<FaultPlan, Error>) -> FaultError {
    match r {
        Err(Error::Fault(e)) => e,
        other => panic!("expected a fault refusal, got {other:?}"),
    }
}

/// Waits (bounded) until `node` sees `peer` in `state`.
async fn wait_state(node: &Node, peer: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let members = node.members().await.unwrap();
        if members.iter().any(|m| m.name == peer && m.state == state) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} never saw {peer} {state}", node.name());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_requests_are_refused_without_the_switch_and_bounded_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path(), &["n1", "n2"]);
    let n1 = node(&certs, "n1", None, true).await;
    let n2 = node(&certs, "n2", Some(&n1), false).await;
    wait_alive(&n1, 2).await;
    let tls = TlsMaterial::load_client(&certs).unwrap();
    let c1 = Client::connect(n1.addr(), &tls).unwrap();
    let c2 = Client::connect(n2.addr(), &tls).unwrap();

    // Without the switch: refused, whatever is asked, and the node keeps serving.
    let cut = FaultPlan {
        drop_to: names(&["n1"]),
        ..FaultPlan::default()
    };
    let refused = fault_error(c2.faults(FaultRequest::Set(cut)).await);
    assert_eq!(refused, FaultError::Disabled("n2".into()));
    assert!(
        refused.to_string().contains("--fault-injection"),
        "{refused}"
    );
    assert!(matches!(
        fault_error(c2.faults(FaultRequest::Get).await),
        FaultError::Disabled(_)
    ));
    c2.put(b"k".to_vec(), b"v".to_vec(), WriteOptions::default())
        .await
        .unwrap();

    // With it: every bound is checked and nothing is set by a refused request.
    let set = |plan: FaultPlan| c1.faults(FaultRequest::Set(plan));
    let e = fault_error(
        set(FaultPlan {
            drop_from: names(&[""]),
            ..FaultPlan::default()
        })
        .await,
    );
    assert_eq!(e, FaultError::BadPeer(String::new()));
    let e = fault_error(
        set(FaultPlan {
            drop_to: names(&[&n1.addr().to_string()]),
            ..FaultPlan::default()
        })
        .await,
    );
    assert!(matches!(e, FaultError::SelfNamed(_)));
    let e = fault_error(
        set(FaultPlan {
            drop_to: names(&["n1"]),
            ..FaultPlan::default()
        })
        .await,
    );
    assert_eq!(e, FaultError::SelfNamed("n1".into()));
    let e = fault_error(
        set(FaultPlan {
            clock_offset_ms: MAX_CLOCK_OFFSET_MS + 1,
            ..FaultPlan::default()
        })
        .await,
    );
    assert!(matches!(e, FaultError::ClockOffset { .. }));
    let e = fault_error(
        set(FaultPlan {
            sync_delay_ms: MAX_SYNC_DELAY_MS + 1,
            ..FaultPlan::default()
        })
        .await,
    );
    assert!(matches!(e, FaultError::SyncDelay { .. }));
    assert_eq!(
        c1.faults(FaultRequest::Get).await.unwrap(),
        FaultPlan::default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_node_is_seen_down_and_a_shifted_clock_stamps_its_writes() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path(), &["n1", "n2"]);
    let n1 = node(&certs, "n1", None, true).await;
    let n2 = node(&certs, "n2", Some(&n1), false).await;
    wait_alive(&n2, 2).await;
    let c1 = Client::connect(n1.addr(), &TlsMaterial::load_client(&certs).unwrap()).unwrap();

    // Both directions cut on n1 alone: n2's probes go unanswered.
    let cut = FaultPlan {
        drop_from: names(&["n2"]),
        drop_to: names(&["n2"]),
        ..FaultPlan::default()
    };
    let set = c1.faults(FaultRequest::Set(cut.clone())).await.unwrap();
    assert_eq!(set, cut);
    assert_eq!(c1.faults(FaultRequest::Get).await.unwrap(), cut);
    wait_state(&n2, "n1", "down").await;
    c1.faults(FaultRequest::Set(FaultPlan::default()))
        .await
        .unwrap();
    wait_state(&n2, "n1", "alive").await;

    // Ten minutes ahead: a write n1 coordinates alone carries its shifted clock.
    let ahead = 600_000;
    c1.faults(FaultRequest::Set(FaultPlan {
        clock_offset_ms: ahead,
        ..FaultPlan::default()
    }))
    .await
    .unwrap();
    let key = b"clock".to_vec();
    let w1 = WriteOptions {
        w: Some(1),
        ..WriteOptions::default()
    };
    n1.put(key.clone(), b"v".to_vec(), w1).await.unwrap();
    // Both replicas answer the read: with R=1 it could be n2's, which a W=1 write need not
    // have reached yet.
    let read = n1
        .get(
            key,
            ReadOptions {
                r: Some(2),
                ..ReadOptions::default()
            },
        )
        .await
        .unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let now = u64::try_from(now.as_millis()).unwrap();
    let stamped = read.values[0].ts.millis;
    assert!(
        stamped >= now + u64::try_from(ahead).unwrap() - 60_000,
        "stamped {stamped}, wall clock {now}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_of_a_peer_not_met_yet_applies_once_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs(dir.path(), &["n1", "n2"]);
    let n1 = node(&certs, "n1", None, true).await;
    let c1 = Client::connect(n1.addr(), &TlsMaterial::load_client(&certs).unwrap()).unwrap();

    // n2 does not exist yet: the cut is accepted and kept for it.
    let cut = FaultPlan {
        drop_from: names(&["n2"]),
        drop_to: names(&["n2"]),
        ..FaultPlan::default()
    };
    assert_eq!(
        c1.faults(FaultRequest::Set(cut.clone())).await.unwrap(),
        cut
    );

    // n2 joins through n1; once n1 learns its address the cut applies and n1's probes of it
    // go unanswered.
    let n2 = node(&certs, "n2", Some(&n1), false).await;
    wait_state(&n1, "n2", "down").await;
    c1.faults(FaultRequest::Set(FaultPlan::default()))
        .await
        .unwrap();
    wait_state(&n1, "n2", "alive").await;
    drop(n2);
}

/// What a test endpoint received: request bodies and datagrams, in arrival order.
fn record(mut inbound: ringkv::net::Inbound) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = inbound.recv().await {
            match event {
                ringkv::net::InboundEvent::Datagram { data, .. } => {
                    let _ = tx.send(format!("datagram {}", String::from_utf8_lossy(&data)));
                }
                ringkv::net::InboundEvent::Request { data, respond, .. } => {
                    let _ = tx.send(format!("request {}", String::from_utf8_lossy(&data)));
                    respond.respond(b"ok".to_vec());
                }
            }
        }
    });
    rx
}

/// Everything received so far.
fn received(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(m) = rx.try_recv() {
        out.push(m);
    }
    out
}

/// Waits (bounded) for `what` to arrive.
async fn arrives(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, what: &str) {
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
    assert_eq!(got.ok().flatten().as_deref(), Some(what));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_cut_drops_one_direction_exactly() {
    use ringkv::faults::Faults;
    use ringkv::net::TransportConfig;
    net_common::bounded(async {
        let certs = net_common::Cluster::new(&["a", "b"]);
        let short = TransportConfig {
            call_timeout: Duration::from_millis(800),
            ..TransportConfig::default()
        };
        let faults = Faults::on();
        let with_faults = TransportConfig {
            faults: faults.clone(),
            ..short.clone()
        };
        let (a, in_a, a_addr) = net_common::bind(&certs.node("a"), with_faults).await;
        let (b, in_b, b_addr) = net_common::bind(&certs.node("b"), short).await;
        let (mut at_a, mut at_b) = (record(in_a), record(in_b));
        // Connections both ways before any cut.
        assert_eq!(a.call(b_addr, b"hello").await.unwrap(), b"ok");
        assert_eq!(b.call(a_addr, b"hello").await.unwrap(), b"ok");
        arrives(&mut at_b, "request hello").await;
        arrives(&mut at_a, "request hello").await;
        let cut = |from: &[&str], to: &[&str]| {
            let plan = FaultPlan {
                drop_from: names(from),
                drop_to: names(to),
                ..FaultPlan::default()
            };
            faults
                .set("a", plan.resolve("a", a_addr, &[]).unwrap())
                .unwrap();
        };
        let b_named = b_addr.to_string();

        // a -> b cut: b's request reaches a, but a's answer does not reach b; nothing a sends
        // reaches b.
        cut(&[], &[&b_named]);
        assert!(
            b.call(a_addr, b"b1").await.is_err(),
            "a's answer is dropped"
        );
        arrives(&mut at_a, "request b1").await;
        b.send_datagram(a_addr, bytes::Bytes::from_static(b"b2"));
        arrives(&mut at_a, "datagram b2").await;
        a.send_datagram(b_addr, bytes::Bytes::from_static(b"a1"));
        assert!(a.call(b_addr, b"a2").await.is_err());
        assert_eq!(received(&mut at_b), Vec::<String>::new());

        // b -> a cut: a's request reaches b, but b's answer does not reach a; nothing b sends
        // reaches a.
        cut(&[&b_named], &[]);
        assert!(
            a.call(b_addr, b"a3").await.is_err(),
            "b's answer is dropped"
        );
        arrives(&mut at_b, "request a3").await;
        a.send_datagram(b_addr, bytes::Bytes::from_static(b"a4"));
        arrives(&mut at_b, "datagram a4").await;
        b.send_datagram(a_addr, bytes::Bytes::from_static(b"b3"));
        assert!(b.call(a_addr, b"b4").await.is_err());
        assert_eq!(received(&mut at_a), Vec::<String>::new());

        // Healed: both ways again.
        cut(&[], &[]);
        assert_eq!(a.call(b_addr, b"a5").await.unwrap(), b"ok");
        assert_eq!(b.call(a_addr, b"b5").await.unwrap(), b"ok");
        arrives(&mut at_b, "request a5").await;
        arrives(&mut at_a, "request b5").await;
    })
    .await;
}
