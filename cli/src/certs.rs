//! `ringctl certs`: the cluster's certificate authority and one certificate per node.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::output;
use crate::Global;

/// `ringctl certs ...`.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create the cluster CA and the client certificate (ca.pem, ca.key, client.pem, client.key).
    Init(InitArgs),
    /// Issue node-NAME.pem and node-NAME.key, signed by the CA in the directory.
    Issue(IssueArgs),
    /// Move the directory to a new CA in three steps, run in order (begin, reissue, finish);
    /// after each, copy the files to every node and client and send every node a SIGHUP
    /// before the next step.
    Rotate(RotateArgs),
}

/// `ringctl certs rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// begin: make a new CA and trust it beside the old one (ca.pem becomes a bundle);
    /// reissue: sign with the new CA and reissue every node certificate (same addresses)
    /// and the client certificate; finish: trust the new CA only.
    #[arg(value_enum)]
    pub step: RotateStep,
    /// Directory holding the CA and the certificates (default: --certs).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// One step of a CA rotation.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum RotateStep {
    /// Make the new CA; ca.pem trusts both.
    Begin,
    /// Reissue every certificate from the new CA.
    Reissue,
    /// Trust the new CA only.
    Finish,
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
        CertsCommand::Rotate(a) => {
            let dir = a.dir.unwrap_or_else(|| g.certs.clone());
            output::emit(&rotate(&dir, a.step)?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs one rotation step on `dir`; what was done and what to do next.
fn rotate(dir: &Path, step: RotateStep) -> anyhow::Result<String> {
    use ringkv::net::rotate;
    let spread = format!(
        "copy {}/ca.pem to every node and client (ca.key stays where it is), then send every \
         node a SIGHUP (`systemctl reload ringkv`)",
        dir.display()
    );
    let text = match step {
        RotateStep::Begin => {
            let next = rotate::begin(dir)?;
            format!(
                "step 1 of 3: a new CA is in {}, and {}/ca.pem trusts both CAs\n\
                 next: {spread}; once every node has it: `ringctl certs rotate reissue`\n",
                next.display(),
                dir.display()
            )
        }
        RotateStep::Reissue => {
            let names = rotate::reissue(dir)?;
            format!(
                "step 2 of 3: reissued {} node certificate(s) ({}) and client.pem from the new CA\n\
                 next: copy each node-NAME.pem/.key to its node and client.pem/.key to the clients, \
                 send every node a SIGHUP; once every node has it: `ringctl certs rotate finish`\n",
                names.len(),
                names.join(", ")
            )
        }
        RotateStep::Finish => {
            rotate::finish(dir)?;
            format!(
                "step 3 of 3: {}/ca.pem trusts the new CA only\n\
                 next: {spread}; certificates of the old CA are refused from then on\n",
                dir.display()
            )
        }
    };
    Ok(text)
}

/// Names of the nodes with a certificate (`node-NAME.pem`) in `dir`, sorted.
pub fn node_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    ringkv::net::rotate::node_names(dir)
        .with_context(|| format!("cannot list certificate directory {}", dir.display()))
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
