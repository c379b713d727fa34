//! The cluster's certificate authority and mutual TLS for every QUIC connection.
//!
//! One directory holds the cluster's material:
//! - `ca.pem` / `ca.key`: the cluster CA (made once by [`init_cluster`]);
//! - `client.pem` / `client.key`: the certificate `ringctl` and library clients present;
//! - `node-NAME.pem` / `node-NAME.key`: one per node (made by [`issue_node`]).
//!
//! Every connection is mutually authenticated: a server accepts only clients whose certificate
//! the CA signed, and a client accepts only servers whose certificate the CA signed for the
//! dialled IP address. The ALPN value (`ringkv/N`, see [`alpn`]) carries the protocol
//! version: each side offers the versions it speaks, newest first, and a peer that speaks none
//! of them fails the handshake (logged with both sides' versions) instead of misreading frames.
//!
//! `ca.pem` may hold several CA certificates (a bundle): during a CA rotation every node trusts
//! the old and the new CA, so certificates of either are accepted. A running node reloads its
//! material on SIGHUP ([`crate::Node::reload_tls`]).
//!
//! Certificates use rcgen's validity window (1975 to 4096): rotation means a new CA directory.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use super::config::TransportConfig;

/// The protocol version this build speaks natively. Version 3 carries version 2's messages,
/// many calls per stream (see `net::mux`); version 2 one call per stream.
pub const PROTOCOL_VERSION: u32 = 3;

/// The first version whose gossip carries the membership digest and sync datagrams; the
/// transport converts gossip to and from the older format on older connections.
pub(crate) const GOSSIP_DIGEST_VERSION: u32 = 3;

/// Every protocol version this build speaks, newest first: its own and the previous ones
/// (version 2, a stream per call; version 1, spoken through `compat`'s frozen types).
pub const SPOKEN_VERSIONS: &[u32] = &[PROTOCOL_VERSION, 2, 1];

/// The ALPN value of [`PROTOCOL_VERSION`].
pub const ALPN: &[u8] = b"ringkv/3";

/// The ALPN value of protocol version `version`: `ringkv/N`.
pub fn alpn(version: u32) -> Vec<u8> {
    format!("ringkv/{version}").into_bytes()
}

/// Versions as a log reads them: `ringkv/3, ringkv/2, ringkv/1`, or `none`.
fn describe(protocols: &[Vec<u8>]) -> String {
    if protocols.is_empty() {
        return "none".to_string();
    }
    protocols
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A failed dial's handshake error, naming the protocol versions this side offered when the
/// peer refused them all (TLS alert 120, `no_application_protocol`).
pub(crate) fn explain_handshake(reason: &str, offered: &[u32]) -> String {
    if !reason.contains("error 120") {
        return reason.to_string();
    }
    let ours: Vec<Vec<u8>> = offered.iter().map(|v| alpn(*v)).collect();
    format!(
        "{reason} (the peer speaks none of the protocol versions this node speaks: {})",
        describe(&ours)
    )
}

/// The protocol version a connection negotiated, if it is a `ringkv/N` one.
pub fn negotiated_version(conn: &quinn::Connection) -> Option<u32> {
    let data = conn.handshake_data()?;
    let data = data
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?;
    let protocol = data.protocol?;
    std::str::from_utf8(&protocol)
        .ok()?
        .strip_prefix("ringkv/")?
        .parse()
        .ok()
}

pub use crate::limits::MAX_NODE_NAME;

/// Largest certificate or key file read (a chain of a few certificates is a few KiB).
const MAX_PEM_FILE: u64 = 1024 * 1024;

pub(super) const CA_CERT: &str = "ca.pem";
pub(super) const CA_KEY: &str = "ca.key";
pub(super) const CLIENT_CERT: &str = "client.pem";
pub(super) const CLIENT_KEY: &str = "client.key";

/// Why TLS material could not be made, read or turned into a configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file holds no usable PEM item of the expected kind.
    #[error("invalid PEM in {}: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// [`init_cluster`] found an existing CA.
    #[error("certificate directory {} already has a CA", .0.display())]
    CaExists(PathBuf),
    /// A node name outside `[A-Za-z0-9._-]{1,64}`.
    #[error("invalid node name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A DNS subject alternative name that is not a valid DNS name.
    #[error("invalid DNS name {0:?}")]
    InvalidDnsName(String),
    /// Generating or signing a key or certificate failed.
    #[error("cannot generate certificate material: {0}")]
    Generate(#[from] rcgen::Error),
    /// The material does not make a valid TLS or QUIC configuration.
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

/// Creates a cluster CA and the shared client certificate in `dir` (created if missing).
///
/// Writes `ca.pem`, `ca.key`, `client.pem` and `client.key`; key files are readable by the
/// owner only. Refuses to touch a directory that already has a CA, so a CA is never lost.
pub fn init_cluster(dir: &Path) -> Result<(), TlsError> {
    if dir.join(CA_CERT).exists() || dir.join(CA_KEY).exists() {
        return Err(TlsError::CaExists(dir.to_path_buf()));
    }
    fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;

    let ca_key = KeyPair::generate()?;
    // A name unique to this CA, so a certificate from another cluster's CA fails as an
    // unknown issuer rather than matching this CA's name with a bad signature.
    let id = blake3::hash(ca_key.public_key_raw()).to_hex();
    let ca_name = format!("ringkv cluster CA {}", &id[..16]);
    let ca_cert = ca_params(&ca_name).self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params(&ca_name), ca_key);

    let mut client = leaf_params("ringkv-client");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate()?;
    let client_cert = client.signed_by(&client_key, &issuer)?;

    // Key first and create-new both: a concurrent or repeated init fails instead of replacing.
    write_new(dir, CA_KEY, issuer.key().serialize_pem().as_bytes(), true)?;
    write_new(dir, CA_CERT, ca_cert.pem().as_bytes(), false)?;
    write_replacing(
        &dir.join(CLIENT_KEY),
        client_key.serialize_pem().as_bytes(),
        true,
    )?;
    write_replacing(&dir.join(CLIENT_CERT), client_cert.pem().as_bytes(), false)?;
    Ok(())
}

/// Issues `node-NAME.pem` and `node-NAME.key` in `dir`, signed by the CA found there.
///
/// The certificate's common name is `name` and its subject alternative names are `ips` and
/// `dns`; when both are empty it gets `127.0.0.1` (a local cluster). Peers dial a node by
/// socket address and check its IP against these names, so list every address it is reached
/// at. The certificate serves both as server and client certificate. Issuing again for the
/// same name replaces the previous pair.
pub fn issue_node(dir: &Path, name: &str, ips: &[IpAddr], dns: &[String]) -> Result<(), TlsError> {
    validate_name(name)?;
    let ca_path = dir.join(CA_CERT);
    let cas = read_certs(&ca_path)?;
    let ca_key_path = dir.join(CA_KEY);
    let ca_key = KeyPair::from_pem(&read_text(&ca_key_path)?).map_err(|e| TlsError::Pem {
        path: ca_key_path.clone(),
        reason: e.to_string(),
    })?;
    // During a rotation ca.pem is a bundle: issue with the CA whose key ca.key is.
    let ca_cert = cas
        .into_iter()
        .find(|der| {
            x509_parser::parse_x509_certificate(der).is_ok_and(|(_, cert)| {
                cert.public_key().raw == ca_key.subject_public_key_info().as_slice()
            })
        })
        .ok_or_else(|| TlsError::Pem {
            path: ca_path.clone(),
            reason: format!(
                "no certificate in it belongs to the key in {}",
                ca_key_path.display()
            ),
        })?;
    let issuer = Issuer::from_ca_cert_der(&ca_cert, ca_key).map_err(|e| TlsError::Pem {
        path: ca_path,
        reason: e.to_string(),
    })?;

    let mut params = leaf_params(name);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let ips: Vec<IpAddr> = if ips.is_empty() && dns.is_empty() {
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
    } else {
        ips.to_vec()
    };
    params.subject_alt_names = ips.into_iter().map(SanType::IpAddress).collect();
    for d in dns {
        DnsName::try_from(d.as_str()).map_err(|_| TlsError::InvalidDnsName(d.clone()))?;
        let ia5 = d
            .clone()
            .try_into()
            .map_err(|_| TlsError::InvalidDnsName(d.clone()))?;
        params.subject_alt_names.push(SanType::DnsName(ia5));
    }
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let (cert_path, key_path) = node_paths(dir, name);
    write_replacing(&key_path, key.serialize_pem().as_bytes(), true)?;
    write_replacing(&cert_path, cert.pem().as_bytes(), false)?;
    Ok(())
}

/// The CA certificates to trust (one, or several during a rotation), plus this side's
/// certificate chain and private key.
#[derive(Clone)]
pub struct TlsMaterial {
    inner: Arc<Material>,
}

struct Material {
    cas: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("TlsMaterial")
            .field("cas", &self.inner.cas.len())
            .field("chain_len", &self.inner.chain.len())
            .finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// A secret derived from this identity's private key for `purpose`: the same for every
    /// process holding the key, unknown to anyone without it.
    pub(crate) fn derive_secret(&self, purpose: &str) -> [u8; 32] {
        blake3::derive_key(purpose, self.inner.key.secret_der())
    }

    /// Loads the CA bundle and node `name`'s certificate and key from `dir`. The key must
    /// belong to the certificate and every CA certificate must be usable as a trust anchor.
    pub fn load_node(dir: &Path, name: &str) -> Result<Self, TlsError> {
        validate_name(name)?;
        let (cert, key) = node_paths(dir, name);
        Self::load(&dir.join(CA_CERT), &cert, &key)
    }

    /// Loads the CA bundle and the shared client certificate and key from `dir`.
    pub fn load_client(dir: &Path) -> Result<Self, TlsError> {
        Self::load(
            &dir.join(CA_CERT),
            &dir.join(CLIENT_CERT),
            &dir.join(CLIENT_KEY),
        )
    }

    fn load(ca_path: &Path, cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let cas = read_certs(ca_path)?;
        let chain = read_certs(cert_path)?;
        let key =
            PrivateKeyDer::from_pem_slice(&read_bytes(key_path)?).map_err(|e| TlsError::Pem {
                path: key_path.to_path_buf(),
                reason: e.to_string(),
            })?;
        let m = TlsMaterial {
            inner: Arc::new(Material { cas, chain, key }),
        };
        // Catch a mismatched pair or an unusable CA now, naming the files, rather than at
        // the first handshake.
        m.roots().map_err(|e| TlsError::Pem {
            path: ca_path.to_path_buf(),
            reason: e.to_string(),
        })?;
        tls_server(&m).map_err(|e| TlsError::Pem {
            path: key_path.to_path_buf(),
            reason: format!(
                "does not make a usable identity with {}: {e}",
                cert_path.display()
            ),
        })?;
        Ok(m)
    }

    /// How many CA certificates this side trusts.
    pub fn ca_count(&self) -> usize {
        self.inner.cas.len()
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        for ca in &self.inner.cas {
            roots
                .add(ca.clone())
                .map_err(|e| TlsError::Config(format!("unusable CA certificate: {e}")))?;
        }
        Ok(Arc::new(roots))
    }
}

/// The QUIC server configuration: requires a client certificate signed by the CA, accepts
/// the protocol versions `t.protocol_versions` (preferring the first), and applies `t`'s
/// limits.
pub fn server_config(
    m: &TlsMaterial,
    t: &TransportConfig,
) -> Result<quinn::ServerConfig, TlsError> {
    let protocols: Vec<Vec<u8>> = t.protocol_versions.iter().map(|v| alpn(*v)).collect();
    let mut tls = tls_server_with(m, Some(protocols.clone()))?;
    tls.alpn_protocols = protocols;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(config_err)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(t.quic()?));
    // Handshakes waiting to be accepted or refused are bounded like connections.
    server.max_incoming(t.max_connections.max(1));
    Ok(server)
}

/// The TLS (over TCP) server configuration of the Redis front: the same certificate and the
/// same rule as QUIC (a client certificate signed by the cluster CA), without ALPN, which
/// Redis clients do not send.
pub fn tcp_server_config(m: &TlsMaterial) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    Ok(Arc::new(tls_server(m)?))
}

fn tls_server(m: &TlsMaterial) -> Result<rustls::ServerConfig, TlsError> {
    tls_server_with(m, None)
}

/// The node's one certificate, and a log line for a client that offers none of the
/// protocol versions this side speaks (the handshake then fails with
/// `no_application_protocol`; only here are the client's offers visible).
#[derive(Debug)]
struct Identity {
    key: Arc<CertifiedKey>,
    protocols: Option<Vec<Vec<u8>>>,
    mismatches: std::sync::atomic::AtomicU64,
}

/// Log the first refusal for another protocol version, then every 100th.
const MISMATCH_LOG_EVERY: u64 = 100;

impl ResolvesServerCert for Identity {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(ours) = &self.protocols {
            let offered: Vec<Vec<u8>> = hello
                .alpn()
                .map(|it| it.map(<[u8]>::to_vec).collect())
                .unwrap_or_default();
            if !offered.iter().any(|p| ours.contains(p)) {
                let n = self
                    .mismatches
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n.is_multiple_of(MISMATCH_LOG_EVERY) {
                    tracing::warn!(
                        "refusing a handshake: the peer speaks protocol version {}, this node \
                         speaks {} (sampled: first, then every {MISMATCH_LOG_EVERY}th)",
                        describe(&offered),
                        describe(ours)
                    );
                }
            }
        }
        Some(self.key.clone())
    }
}

fn tls_server_with(
    m: &TlsMaterial,
    protocols: Option<Vec<Vec<u8>>>,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(m.roots()?, provider.clone())
        .build()
        .map_err(config_err)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_err)?
        .with_client_cert_verifier(verifier);
    let key = CertifiedKey::from_der(m.inner.chain.clone(), m.inner.key.clone_key(), &provider)
        .map_err(config_err)?;
    Ok(builder.with_cert_resolver(Arc::new(Identity {
        key: Arc::new(key),
        protocols,
        mismatches: std::sync::atomic::AtomicU64::new(0),
    })))
}

/// The QUIC client configuration: verifies servers against the CA, presents this side's
/// certificate, offers the protocol versions `t.protocol_versions` (newest first), and
/// applies `t`'s limits.
pub fn client_config(
    m: &TlsMaterial,
    t: &TransportConfig,
) -> Result<quinn::ClientConfig, TlsError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_err)?
        .with_root_certificates(m.roots()?)
        .with_client_auth_cert(m.inner.chain.clone(), m.inner.key.clone_key())
        .map_err(config_err)?;
    tls.alpn_protocols = t.protocol_versions.iter().map(|v| alpn(*v)).collect();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(config_err)?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(Arc::new(t.quic()?));
    Ok(client)
}

/// The one crypto provider, passed explicitly so nothing relies on a process-wide default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_err(e: impl fmt::Display) -> TlsError {
    TlsError::Config(e.to_string())
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn leaf_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params
}

fn validate_name(name: &str) -> Result<(), TlsError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_NODE_NAME {
        "it is longer than 64 characters"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        "only letters, digits, '.', '_' and '-' are allowed"
    } else {
        return Ok(());
    };
    Err(TlsError::InvalidName {
        name: name.to_string(),
        reason,
    })
}

fn node_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("node-{name}.pem")),
        dir.join(format!("node-{name}.key")),
    )
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, TlsError> {
    let read_err = |source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(MAX_PEM_FILE + 1).read_to_end(&mut bytes))
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(read_err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_PEM_FILE} bytes"),
        )));
    }
    Ok(bytes)
}

pub(super) fn read_text(path: &Path) -> Result<String, TlsError> {
    String::from_utf8(read_bytes(path)?).map_err(|_| TlsError::Pem {
        path: path.to_path_buf(),
        reason: "not UTF-8 text".to_string(),
    })
}

/// Every certificate in a PEM file; at least one.
pub(super) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |reason: String| TlsError::Pem {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = read_bytes(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err("no certificate found".to_string()));
    }
    Ok(certs)
}

fn open_options(secret: bool) -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    options
}

/// Writes a file that must not exist yet; an existing one means `dir` already has a CA.
fn write_new(dir: &Path, file: &str, data: &[u8], secret: bool) -> Result<(), TlsError> {
    let path = dir.join(file);
    let mut options = open_options(secret);
    options.create_new(true);
    let mut f = options.open(&path).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            TlsError::CaExists(dir.to_path_buf())
        } else {
            TlsError::Write {
                path: path.clone(),
                source,
            }
        }
    })?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|source| TlsError::Write { path, source })
}

/// Replaces a file atomically (temporary file then rename), so a crash leaves old or new.
pub(super) fn write_replacing(path: &Path, data: &[u8], secret: bool) -> Result<(), TlsError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let write_err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let _ = fs::remove_file(&tmp);
    let mut options = open_options(secret);
    options.create_new(true);
    let mut f = options.open(&tmp).map_err(write_err)?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_alphabet_and_length() {
        for good in ["a", "node-1", "n.a_b-C9", &"x".repeat(64)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a/b", "a b", "ü", "../x", &"x".repeat(65)] {
            assert!(
                matches!(validate_name(bad), Err(TlsError::InvalidName { .. })),
                "{bad}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_private_to_the_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        init_cluster(dir.path()).unwrap();
        issue_node(dir.path(), "n1", &[], &[]).unwrap();
        for key in ["ca.key", "client.key", "node-n1.key"] {
            let mode = fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }

    #[test]
    fn loaded_material_makes_server_and_client_configs() {
        let dir = tempfile::tempdir().unwrap();
        init_cluster(dir.path()).unwrap();
        issue_node(
            dir.path(),
            "n1",
            &["10.0.0.1".parse().unwrap()],
            &["db.local".into()],
        )
        .unwrap();
        let t = TransportConfig::default();
        let node = TlsMaterial::load_node(dir.path(), "n1").unwrap();
        server_config(&node, &t).unwrap();
        client_config(&node, &t).unwrap();
        let client = TlsMaterial::load_client(dir.path()).unwrap();
        client_config(&client, &t).unwrap();
    }

    #[test]
    fn a_ca_bundle_is_trusted_whole_and_a_foreign_key_is_refused() {
        let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        init_cluster(old.path()).unwrap();
        init_cluster(new.path()).unwrap();
        issue_node(old.path(), "n1", &[], &[]).unwrap();
        issue_node(new.path(), "n2", &[], &[]).unwrap();
        let mut bundle = fs::read(old.path().join("ca.pem")).unwrap();
        bundle.extend(fs::read(new.path().join("ca.pem")).unwrap());
        fs::write(old.path().join("ca.pem"), bundle).unwrap();
        assert_eq!(
            TlsMaterial::load_node(old.path(), "n1").unwrap().ca_count(),
            2
        );
        // n1's certificate with n2's key: refused at load, naming the key file.
        fs::copy(
            new.path().join("node-n2.key"),
            old.path().join("node-n1.key"),
        )
        .unwrap();
        let err = TlsMaterial::load_node(old.path(), "n1").unwrap_err();
        assert!(err.to_string().contains("node-n1.key"), "{err}");
    }

    #[test]
    fn issuing_from_a_bundle_uses_the_ca_of_the_key() {
        let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        init_cluster(old.path()).unwrap();
        init_cluster(new.path()).unwrap();
        let new_ca = fs::read(new.path().join("ca.pem")).unwrap();
        // Old CA first, new CA's key: the certificate must chain to the new CA.
        let mut bundle = fs::read(old.path().join("ca.pem")).unwrap();
        bundle.extend(&new_ca);
        fs::write(new.path().join("ca.pem"), &bundle).unwrap();
        issue_node(new.path(), "n1", &[], &[]).unwrap();
        let cert = read_certs(&new.path().join("node-n1.pem")).unwrap();
        let (_, leaf) = x509_parser::parse_x509_certificate(&cert[0]).unwrap();
        let ca = CertificateDer::from_pem_slice(&new_ca).unwrap();
        let (_, ca) = x509_parser::parse_x509_certificate(&ca).unwrap();
        assert_eq!(leaf.issuer(), ca.subject());
        leaf.verify_signature(Some(ca.public_key())).unwrap();
        // A key that belongs to no certificate in ca.pem is refused, naming both files.
        fs::copy(old.path().join("ca.key"), new.path().join("ca.key")).unwrap();
        fs::write(new.path().join("ca.pem"), &new_ca).unwrap();
        let err = issue_node(new.path(), "n2", &[], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ca.pem") && err.contains("ca.key"), "{err}");
    }

    #[test]
    fn invalid_dns_names_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        init_cluster(dir.path()).unwrap();
        let err = issue_node(dir.path(), "n1", &[], &["bad name!".into()]).unwrap_err();
        assert!(matches!(err, TlsError::InvalidDnsName(_)), "{err}");
    }

    #[test]
    fn garbage_pem_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        init_cluster(dir.path()).unwrap();
        fs::write(dir.path().join("client.pem"), b"not a certificate").unwrap();
        let err = TlsMaterial::load_client(dir.path()).unwrap_err();
        assert!(matches!(err, TlsError::Pem { .. }), "{err}");
        assert!(err.to_string().contains("client.pem"), "{err}");
    }
}
