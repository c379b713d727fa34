//! Mutual TLS: only certificates from the cluster CA, for the dialled address, speaking the
//! same protocol version, get a connection; the node keeps serving after refusing.

mod net_common;

use std::fs;
use std::sync::Arc;

use net_common::{bind, bounded, eventually, raw_endpoint, spawn_echo, Cluster};
use ringkv::net::tls::issue_node;
use ringkv::net::{TlsMaterial, Transport, TransportConfig, TransportError, ALPN};

fn is_handshake(err: &TransportError) -> bool {
    matches!(err, TransportError::Handshake { .. })
}

/// Whether a raw connection attempt ended in a TLS alert (a QUIC crypto error code).
async fn rejected_by_tls(connecting: quinn::Connecting) -> bool {
    let err = match connecting.await {
        Err(e) => e,
        // TLS 1.3 clients finish before the server checks their certificate.
        Ok(conn) => conn.closed().await,
    };
    let code = match &err {
        quinn::ConnectionError::TransportError(t) => t.code,
        quinn::ConnectionError::ConnectionClosed(c) => c.error_code,
        _ => return false,
    };
    (0x100..0x200).contains(&u64::from(code))
}

/// A rustls client config trusting `cluster`'s CA, with the given client auth and ALPN.
fn raw_tls(cluster: &Cluster, with_cert: bool, alpn: &[u8]) -> quinn::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(cluster.path().join("ca.pem")).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut tls = if with_cert {
        let cert = CertificateDer::from_pem_file(cluster.path().join("client.pem")).unwrap();
        let key = PrivateKeyDer::from_pem_file(cluster.path().join("client.key")).unwrap();
        builder.with_client_auth_cert(vec![cert], key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    tls.alpn_protocols = vec![alpn.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    quinn::ClientConfig::new(Arc::new(quic))
}

#[tokio::test]
async fn nodes_of_different_cas_cannot_connect_either_way() {
    bounded(async {
        let ours = Cluster::new(&["n1"]);
        let theirs = Cluster::new(&["n9"]);
        let (n1, in1, a1) = bind(&ours.node("n1"), TransportConfig::default()).await;
        let (n9, in9, a9) = bind(&theirs.node("n9"), TransportConfig::default()).await;
        spawn_echo(in1);
        spawn_echo(in9);

        let err = n9.call(a1, b"let me in").await.unwrap_err();
        assert!(is_handshake(&err), "{err}");
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");
        let err = n1.call(a9, b"hello?").await.unwrap_err();
        assert!(is_handshake(&err), "{err}");
        assert!(err.to_string().contains(&a9.to_string()), "{err}");

        // Each side saw the other's failed handshake; neither accepted a connection.
        eventually(|| n1.stats().handshakes_refused >= 1 && n9.stats().handshakes_refused >= 1)
            .await;
        assert_eq!(n1.stats().connections_accepted, 0);
        assert_eq!(n9.stats().connections_accepted, 0);
        assert_eq!(n1.call(a1, b"self").await.unwrap(), b"echo:self");
    })
    .await;
}

#[tokio::test]
async fn the_server_refuses_a_client_certificate_from_another_ca() {
    bounded(async {
        let ours = Cluster::new(&["n1"]);
        let theirs = Cluster::new(&[]);
        // Trusts our CA (so it accepts n1), presents a certificate signed by theirs.
        let mixed = tempfile::tempdir().unwrap();
        fs::copy(ours.path().join("ca.pem"), mixed.path().join("ca.pem")).unwrap();
        for file in ["client.pem", "client.key"] {
            fs::copy(theirs.path().join(file), mixed.path().join(file)).unwrap();
        }
        let (n1, in1, a1) = bind(&ours.node("n1"), TransportConfig::default()).await;
        spawn_echo(in1);

        let intruder = Transport::client(
            &TlsMaterial::load_client(mixed.path()).unwrap(),
            TransportConfig::default(),
        )
        .unwrap();
        let err = intruder.call(a1, b"let me in").await.unwrap_err();
        assert!(is_handshake(&err), "{err}");
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");
        eventually(|| n1.stats().handshakes_refused >= 1).await;
        assert_eq!(n1.stats().connections_accepted, 0);
        assert_eq!(n1.stats().requests_received, 0);

        let client = Transport::client(&ours.client(), TransportConfig::default()).unwrap();
        assert_eq!(client.call(a1, b"ok").await.unwrap(), b"echo:ok");
    })
    .await;
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_at_the_handshake() {
    bounded(async {
        let cluster = Cluster::new(&["n1"]);
        let (n1, in1, a1) = bind(&cluster.node("n1"), TransportConfig::default()).await;
        spawn_echo(in1);

        let endpoint = raw_endpoint(raw_tls(&cluster, false, ALPN));
        let connecting = endpoint.connect(a1, "127.0.0.1").unwrap();
        assert!(rejected_by_tls(connecting).await);
        eventually(|| n1.stats().handshakes_refused >= 1).await;
        assert_eq!(n1.stats().connections_accepted, 0);

        // The same raw setup with the client certificate is served: the refusal was the
        // missing certificate.
        let endpoint = raw_endpoint(raw_tls(&cluster, true, ALPN));
        let conn = endpoint.connect(a1, "127.0.0.1").unwrap().await.unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(b"\x00\x00\x00\x02hi").await.unwrap();
        send.finish().unwrap();
        assert_eq!(
            recv.read_to_end(1024).await.unwrap(),
            b"\x00\x00\x00\x07echo:hi"
        );
    })
    .await;
}

#[tokio::test]
async fn a_peer_speaking_another_protocol_version_fails_the_handshake() {
    bounded(async {
        let cluster = Cluster::new(&["n1"]);
        let (n1, in1, a1) = bind(&cluster.node("n1"), TransportConfig::default()).await;
        spawn_echo(in1);

        let endpoint = raw_endpoint(raw_tls(&cluster, true, b"ringkv/0"));
        let connecting = endpoint.connect(a1, "127.0.0.1").unwrap();
        assert!(rejected_by_tls(connecting).await);
        eventually(|| n1.stats().handshakes_refused >= 1).await;
        assert_eq!(n1.stats().connections_accepted, 0);
    })
    .await;
}

#[tokio::test]
async fn a_node_certificate_must_name_the_dialled_address() {
    bounded(async {
        let cluster = Cluster::new(&[]);
        issue_node(
            cluster.path(),
            "elsewhere",
            &["10.9.9.9".parse().unwrap()],
            &[],
        )
        .unwrap();
        let (_n, in_n, addr) = bind(&cluster.node("elsewhere"), TransportConfig::default()).await;
        spawn_echo(in_n);

        let client = Transport::client(&cluster.client(), TransportConfig::default()).unwrap();
        let err = client.call(addr, b"who are you").await.unwrap_err();
        assert!(is_handshake(&err), "{err}");
    })
    .await;
}
