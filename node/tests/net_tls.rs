//! Cluster CA and certificate files: creation, refusal to overwrite, validation, loading.

use std::fs;

use ringkv::net::tls::{init_cluster, issue_node};
use ringkv::net::{TlsError, TlsMaterial};

#[test]
fn init_cluster_writes_the_four_files_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    init_cluster(dir.path()).unwrap();
    for file in ["ca.pem", "ca.key", "client.pem", "client.key"] {
        assert!(dir.path().join(file).is_file(), "{file} missing");
    }
    let ca_before = fs::read(dir.path().join("ca.pem")).unwrap();
    let key_before = fs::read(dir.path().join("ca.key")).unwrap();

    let err = init_cluster(dir.path()).unwrap_err();
    assert!(matches!(err, TlsError::CaExists(_)), "{err}");
    assert!(err.to_string().contains("already has a CA"), "{err}");
    assert_eq!(fs::read(dir.path().join("ca.pem")).unwrap(), ca_before);
    assert_eq!(fs::read(dir.path().join("ca.key")).unwrap(), key_before);
}

#[test]
fn init_cluster_refuses_a_directory_with_only_a_ca_key() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("ca.key"), b"precious").unwrap();
    assert!(matches!(
        init_cluster(dir.path()),
        Err(TlsError::CaExists(_))
    ));
    assert_eq!(fs::read(dir.path().join("ca.key")).unwrap(), b"precious");
}

#[test]
fn init_cluster_creates_a_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("a/b/certs");
    init_cluster(&certs).unwrap();
    TlsMaterial::load_client(&certs).unwrap();
}

#[test]
fn issue_node_rejects_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    init_cluster(dir.path()).unwrap();
    for bad in ["", "../escape", "a/b", "with space", "ünï", &"n".repeat(65)] {
        let err = issue_node(dir.path(), bad, &[], &[]).unwrap_err();
        assert!(
            matches!(err, TlsError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
        assert!(err.to_string().contains("invalid node name"), "{err}");
    }
    // Nothing was written for any of them.
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("node-"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn issue_node_writes_a_loadable_pair_and_can_reissue() {
    let dir = tempfile::tempdir().unwrap();
    init_cluster(dir.path()).unwrap();
    let ips = ["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
    issue_node(dir.path(), "node.a_1-B", &ips, &["localhost".into()]).unwrap();
    let first = fs::read(dir.path().join("node-node.a_1-B.pem")).unwrap();
    TlsMaterial::load_node(dir.path(), "node.a_1-B").unwrap();

    issue_node(dir.path(), "node.a_1-B", &ips, &[]).unwrap();
    let second = fs::read(dir.path().join("node-node.a_1-B.pem")).unwrap();
    assert_ne!(first, second, "reissuing replaces the certificate");
    TlsMaterial::load_node(dir.path(), "node.a_1-B").unwrap();
}

#[test]
fn issue_node_without_a_ca_names_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = issue_node(dir.path(), "n1", &[], &[]).unwrap_err();
    assert!(matches!(err, TlsError::Read { .. }), "{err}");
    let expected = format!("cannot read {}", dir.path().join("ca.pem").display());
    assert!(err.to_string().starts_with(&expected), "{err}");
}

#[test]
fn loading_a_missing_file_names_its_path() {
    let dir = tempfile::tempdir().unwrap();
    init_cluster(dir.path()).unwrap();
    let err = TlsMaterial::load_node(dir.path(), "absent").unwrap_err();
    let path = dir.path().join("node-absent.pem");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read {}", path.display())),
        "{err}"
    );

    fs::remove_file(dir.path().join("client.key")).unwrap();
    let err = TlsMaterial::load_client(dir.path()).unwrap_err();
    assert!(err.to_string().contains("client.key"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    let err = TlsMaterial::load_client(empty.path()).unwrap_err();
    assert!(err.to_string().contains("ca.pem"), "{err}");
}

#[test]
fn loading_rejects_a_bad_node_name() {
    let dir = tempfile::tempdir().unwrap();
    init_cluster(dir.path()).unwrap();
    assert!(matches!(
        TlsMaterial::load_node(dir.path(), "../client"),
        Err(TlsError::InvalidName { .. })
    ));
}
