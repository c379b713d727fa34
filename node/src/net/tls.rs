//! The cluster's certificate authority and mutual TLS for every QUIC connection.
//!
//! One directory holds the cluster's material:
//! - `ca.pem` / `ca.key`: the cluster CA (made once by [`init_cluster`]);
//! - `client.pem` / `client.key`: the certificate `ringctl` and library clients present;
//! - `node-NAME.pem` / `node-NAME.key`: one per node (made by [`issue_node`]).
//!
//! Every connection is mutually authenticated: a server accepts only clients whose certificate
//! the CA signed, and a client accepts only servers whose certificate the CA signed for the
//! dialled IP address. The ALPN value [`ALPN`] carries the protocol version, so a peer that
//! speaks another version fails the handshake instead of misreading frames.
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
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use super::config::TransportConfig;

/// The application protocol (and its version) negotiated in every handshake.
pub const ALPN: &[u8] = b"ringkv/1";

pub use crate::limits::MAX_NODE_NAME;

/// Largest certificate or key file read (a chain of a few certificates is a few KiB).
const MAX_PEM_FILE: u64 = 1024 * 1024;

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const CLIENT_CERT: &str = "client.pem";
const CLIENT_KEY: &str = "client.key";

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
    let ca_cert_pem = read_text(&dir.join(CA_CERT))?;
    let ca_key_path = dir.join(CA_KEY);
    let ca_key = KeyPair::from_pem(&read_text(&ca_key_path)?).map_err(|e| TlsError::Pem {
        path: ca_key_path,
        reason: e.to_string(),
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key).map_err(|e| TlsError::Pem {
        path: dir.join(CA_CERT),
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

/// The CA certificate to trust, plus this side's certificate chain and private key.
#[derive(Clone)]
pub struct TlsMaterial {
    inner: Arc<Material>,
}

struct Material {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("TlsMaterial")
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

    /// Loads the CA certificate and node `name`'s certificate and key from `dir`.
    pub fn load_node(dir: &Path, name: &str) -> Result<Self, TlsError> {
        validate_name(name)?;
        let (cert, key) = node_paths(dir, name);
        Self::load(&dir.join(CA_CERT), &cert, &key)
    }

    /// Loads the CA certificate and the shared client certificate and key from `dir`.
    pub fn load_client(dir: &Path) -> Result<Self, TlsError> {
        Self::load(
            &dir.join(CA_CERT),
            &dir.join(CLIENT_CERT),
            &dir.join(CLIENT_KEY),
        )
    }

    fn load(ca_path: &Path, cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let ca = read_certs(ca_path)?.swap_remove(0);
        let chain = read_certs(cert_path)?;
        let key =
            PrivateKeyDer::from_pem_slice(&read_bytes(key_path)?).map_err(|e| TlsError::Pem {
                path: key_path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Ok(TlsMaterial {
            inner: Arc::new(Material { ca, chain, key }),
        })
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.inner.ca.clone())
            .map_err(|e| TlsError::Config(format!("unusable CA certificate: {e}")))?;
        Ok(Arc::new(roots))
    }
}

/// The QUIC server configuration: requires a client certificate signed by the CA, offers
/// [`ALPN`], and applies `t`'s limits.
pub fn server_config(
    m: &TlsMaterial,
    t: &TransportConfig,
) -> Result<quinn::ServerConfig, TlsError> {
    let mut tls = tls_server(m)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
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
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(m.roots()?, provider.clone())
        .build()
        .map_err(config_err)?;
    rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(m.inner.chain.clone(), m.inner.key.clone_key())
        .map_err(config_err)
}

/// The QUIC client configuration: verifies servers against the CA, presents this side's
/// certificate, offers [`ALPN`], and applies `t`'s limits.
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
    tls.alpn_protocols = vec![ALPN.to_vec()];
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

fn read_text(path: &Path) -> Result<String, TlsError> {
    String::from_utf8(read_bytes(path)?).map_err(|_| TlsError::Pem {
        path: path.to_path_buf(),
        reason: "not UTF-8 text".to_string(),
    })
}

/// Every certificate in a PEM file; at least one.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
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
fn write_replacing(path: &Path, data: &[u8], secret: bool) -> Result<(), TlsError> {
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
