//! `ringctl certs`: the cluster's certificate authority and one certificate per node.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::output;
use crate::Global;

/// Longest directory listing scanned when looking for node certificates.
const MAX_DIR_ENTRIES: usize = 10_000;

/// `ringctl certs ...`.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create the cluster CA and the client certificate (ca.pem, ca.key, client.pem, client.key).
    Init(InitArgs),
    /// Issue node-NAME.pem and node-NAME.key, signed by the CA in the directory.
    Issue(IssueArgs),
}

/// `ringctl certs init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to create the material in (default: --certs).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `ringctl certs issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Directory holding the CA (default: --certs).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Node name: 1 to 64 of `A-Z a-z 0-9 . _ -`; the node serves with the same --name.
    #[arg(long)]
    pub name: String,
    /// An IP address the node is reached at (repeat for several; default 127.0.0.1).
    #[arg(long = "ip")]
    pub ips: Vec<IpAddr>,
    /// A DNS name the node is reached at (repeat for several).
    #[arg(long = "dns")]
    pub dns: Vec<String>,
}

/// Runs a `certs` subcommand.
pub fn run(g: &Global, cmd: CertsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CertsCommand::Init(a) => {
            let dir = a.dir.unwrap_or_else(|| g.certs.clone());
            ringkv::net::init_cluster(&dir)
                .with_context(|| format!("cannot create the cluster CA in {}", dir.display()))?;
            output::emit(&format!(
                "created the cluster CA and client certificate in {}\n\
                 keep ca.key secret; issue node certificates with \
                 `ringctl certs issue --dir {} --name NAME --ip ADDRESS`\n",
                dir.display(),
                dir.display()
            ))?;
        }
        CertsCommand::Issue(a) => {
            let dir = a.dir.unwrap_or_else(|| g.certs.clone());
            ringkv::net::issue_node(&dir, &a.name, &a.ips, &a.dns).with_context(|| {
                format!(
                    "cannot issue a certificate for node {:?} in {}",
                    a.name,
                    dir.display()
                )
            })?;
            output::emit(&format!(
                "issued node-{0}.pem and node-{0}.key in {1}\n",
                a.name,
                dir.display()
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Names of the nodes with a certificate (`node-NAME.pem`) in `dir`, sorted.
pub fn node_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list certificate directory {}", dir.display()))?;
    let mut names = Vec::new();
    for entry in entries.take(MAX_DIR_ENTRIES) {
        let entry = entry
            .with_context(|| format!("cannot list certificate directory {}", dir.display()))?;
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        if let Some(name) = file
            .strip_prefix("node-")
            .and_then(|rest| rest.strip_suffix(".pem"))
        {
            if !name.is_empty() {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_come_from_node_pem_files_only() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "node-b.pem",
            "node-a.pem",
            "node-a.key",
            "ca.pem",
            "client.pem",
            "node-.pem",
        ] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        assert_eq!(node_names(dir.path()).unwrap(), ["a", "b"]);
    }

    #[test]
    fn listing_a_missing_directory_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = format!("{:#}", node_names(&missing).unwrap_err());
        assert!(err.contains(&missing.display().to_string()), "{err}");
    }
}
