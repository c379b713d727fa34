//! Moving a certificate directory to a new cluster CA in the three steps that keep every
//! connection working (`ringctl certs rotate begin|reissue|finish`):
//!
//! 1. [`begin`]: a new CA is made in `DIR/rotate/` and appended to `DIR/ca.pem`, so a node
//!    given this bundle trusts certificates of both CAs;
//! 2. [`reissue`]: `ca.key` becomes the new CA's key, and every `node-NAME.pem` in `DIR` is
//!    issued again by the new CA for the same addresses and names (the client certificate too);
//! 3. [`finish`]: `ca.pem` holds the new CA only, and `DIR/rotate/` is removed.
//!
//! Between steps the operator copies the directory's files to every node and sends each a
//! SIGHUP; a step must reach every node before the next one starts. Each step checks that the
//! one before it was done and refuses otherwise, so running them out of order changes nothing.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use super::tls::{
    init_cluster, issue_node, read_certs, read_text, write_replacing, TlsError, CA_CERT, CA_KEY,
    CLIENT_CERT, CLIENT_KEY,
};

/// Where the new CA waits while a rotation is under way.
pub const ROTATE_DIR: &str = "rotate";

/// Most directory entries [`node_names`] reads (a bound on the listing).
const MAX_DIR_ENTRIES: usize = 10_000;

/// Why a rotation step was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// The step's precondition does not hold: the previous step was not done.
    #[error("{0}")]
    OutOfOrder(String),
    /// Reading, writing or making certificate material failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A node certificate whose addresses cannot be read back.
    #[error("cannot read the addresses of {}: {reason}", path.display())]
    Certificate {
        /// The certificate file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Step 1: make the new CA and trust it beside the old one. Returns the new CA's directory.
pub fn begin(dir: &Path) -> Result<PathBuf, RotateError> {
    let next = dir.join(ROTATE_DIR);
    if next.exists() {
        return Err(RotateError::OutOfOrder(format!(
            "a rotation is already under way ({} exists): run `reissue`, then `finish`",
            next.display()
        )));
    }
    read_certs(&dir.join(CA_CERT))?;
    init_cluster(&next)?;
    let bundle = format!(
        "{}{}",
        read_text(&dir.join(CA_CERT))?.trim_end_matches('\n'),
        format_args!("\n{}", read_text(&next.join(CA_CERT))?)
    );
    write_replacing(&dir.join(CA_CERT), bundle.as_bytes(), false)?;
    Ok(next)
}

/// Step 2: sign with the new CA from now on and reissue every node certificate (for the same
/// addresses and names) and the client certificate. Returns the nodes reissued.
pub fn reissue(dir: &Path) -> Result<Vec<String>, RotateError> {
    let next = under_way(dir)?;
    let new_ca = first_cert(&next.join(CA_CERT))?;
    if !read_certs(&dir.join(CA_CERT))?.contains(&new_ca) {
        return Err(RotateError::OutOfOrder(format!(
            "{} does not trust the new CA yet: run `begin` first",
            dir.join(CA_CERT).display()
        )));
    }
    let names = node_names(dir)?;
    // Read every node's addresses before anything changes, so a bad certificate stops the
    // step with the directory as it was.
    let mut sans = Vec::with_capacity(names.len());
    for name in &names {
        sans.push(addresses(&dir.join(format!("node-{name}.pem")))?);
    }
    copy(&next.join(CA_KEY), &dir.join(CA_KEY), true)?;
    for (name, (ips, dns)) in names.iter().zip(sans) {
        issue_node(dir, name, &ips, &dns)?;
    }
    copy(&next.join(CLIENT_KEY), &dir.join(CLIENT_KEY), true)?;
    copy(&next.join(CLIENT_CERT), &dir.join(CLIENT_CERT), false)?;
    Ok(names)
}

/// Step 3: trust the new CA only and end the rotation.
pub fn finish(dir: &Path) -> Result<(), RotateError> {
    let next = under_way(dir)?;
    let client = first_cert(&dir.join(CLIENT_CERT))?;
    if client == first_cert(&next.join(CLIENT_CERT))? && key_is(dir, &next)? {
        copy(&next.join(CA_CERT), &dir.join(CA_CERT), false)?;
        fs::remove_dir_all(&next).map_err(|source| TlsError::Write { path: next, source })?;
        return Ok(());
    }
    Err(RotateError::OutOfOrder(format!(
        "the certificates in {} are not the new CA's yet: run `reissue` first",
        dir.display()
    )))
}

/// The new CA's directory, when a rotation is under way.
fn under_way(dir: &Path) -> Result<PathBuf, RotateError> {
    let next = dir.join(ROTATE_DIR);
    if next.join(CA_CERT).exists() {
        Ok(next)
    } else {
        Err(RotateError::OutOfOrder(format!(
            "no rotation is under way in {}: run `begin` first",
            dir.display()
        )))
    }
}

/// Whether `dir/ca.key` is the new CA's key.
fn key_is(dir: &Path, next: &Path) -> Result<bool, RotateError> {
    Ok(read_text(&dir.join(CA_KEY))? == read_text(&next.join(CA_KEY))?)
}

fn first_cert(path: &Path) -> Result<CertificateDer<'static>, RotateError> {
    let mut certs = read_certs(path)?;
    Ok(certs.swap_remove(0))
}

fn copy(from: &Path, to: &Path, secret: bool) -> Result<(), RotateError> {
    Ok(write_replacing(to, read_text(from)?.as_bytes(), secret)?)
}

/// The IP addresses and DNS names a node certificate was issued for.
fn addresses(path: &Path) -> Result<(Vec<IpAddr>, Vec<String>), RotateError> {
    let bad = |reason: String| RotateError::Certificate {
        path: path.to_path_buf(),
        reason,
    };
    let der = first_cert(path)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| bad(e.to_string()))?;
    let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| bad(e.to_string()))?
    else {
        return Err(bad("it names no address".into()));
    };
    let (mut ips, mut dns) = (Vec::new(), Vec::new());
    for name in &san.value.general_names {
        match name {
            GeneralName::IPAddress(b) => {
                let ip = <[u8; 4]>::try_from(*b)
                    .map(IpAddr::from)
                    .or_else(|_| <[u8; 16]>::try_from(*b).map(IpAddr::from))
                    .map_err(|_| bad(format!("an IP address of {} bytes", b.len())))?;
                ips.push(ip);
            }
            GeneralName::DNSName(d) => dns.push((*d).to_string()),
            _ => {}
        }
    }
    Ok((ips, dns))
}

/// Names of the nodes with a certificate (`node-NAME.pem`) in `dir`, sorted.
pub fn node_names(dir: &Path) -> Result<Vec<String>, TlsError> {
    let list_err = |source| TlsError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(list_err)?.take(MAX_DIR_ENTRIES) {
        let file = entry.map_err(list_err)?.file_name();
        let name = file
            .to_str()
            .and_then(|f| f.strip_prefix("node-"))
            .and_then(|f| f.strip_suffix(".pem"));
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::TlsMaterial;

    #[test]
    fn three_steps_move_a_directory_to_a_new_ca_and_refuse_to_run_out_of_order() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        init_cluster(dir).unwrap();
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        issue_node(dir, "n1", &[ip], &["n1.ringkv.local".into()]).unwrap();
        let old_ca = first_cert(&dir.join(CA_CERT)).unwrap();

        assert!(matches!(reissue(dir), Err(RotateError::OutOfOrder(_))));
        assert!(matches!(finish(dir), Err(RotateError::OutOfOrder(_))));

        let next = begin(dir).unwrap();
        let new_ca = first_cert(&next.join(CA_CERT)).unwrap();
        assert_eq!(
            read_certs(&dir.join(CA_CERT)).unwrap(),
            [old_ca.clone(), new_ca.clone()]
        );
        assert!(matches!(begin(dir), Err(RotateError::OutOfOrder(_))));
        assert!(matches!(finish(dir), Err(RotateError::OutOfOrder(_))));

        assert_eq!(reissue(dir).unwrap(), ["n1"]);
        // Same addresses, new issuer; the node's material loads against the bundle.
        let node = dir.join("node-n1.pem");
        assert_eq!(
            addresses(&node).unwrap(),
            (vec![ip], vec!["n1.ringkv.local".to_string()])
        );
        let der = first_cert(&node).unwrap();
        let (_, leaf) = x509_parser::parse_x509_certificate(&der).unwrap();
        let (_, ca) = x509_parser::parse_x509_certificate(&new_ca).unwrap();
        assert_eq!(leaf.issuer(), ca.subject());
        TlsMaterial::load_node(dir, "n1").unwrap();

        finish(dir).unwrap();
        assert_eq!(read_certs(&dir.join(CA_CERT)).unwrap(), [new_ca]);
        assert!(!next.exists());
        TlsMaterial::load_node(dir, "n1").unwrap();
        TlsMaterial::load_client(dir).unwrap();
        assert!(matches!(finish(dir), Err(RotateError::OutOfOrder(_))));
    }
}
