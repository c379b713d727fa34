//! The deploy files in `deploy/` are valid for the tools that read them and match the README:
//! the systemd unit passes `systemd-analyze verify`, the compose file parses and names the
//! services, volumes and ports deploy/README.md lists, every Kubernetes manifest validates
//! offline against the Kubernetes schemas (`kubernetes-validate`), and every `ringctl serve`
//! flag they use exists. `.ci/run` installs systemd, PyYAML and kubernetes-validate.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ringkv_tests::{ringctl_bin, run_bounded};
use serde_json::Value;

/// Bound on one external validator run.
const TOOL_LIMIT: Duration = Duration::from_secs(120);

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A YAML file as JSON (PyYAML; merge keys and anchors resolved). Multi-document files give
/// an array of documents.
fn yaml(path: &Path) -> Value {
    const SCRIPT: &str = "import json, sys, yaml\n\
        docs = list(yaml.safe_load_all(open(sys.argv[1])))\n\
        json.dump(docs, sys.stdout)\n";
    let out = run_bounded(
        Command::new("python3").args(["-c", SCRIPT]).arg(path),
        TOOL_LIMIT,
    )
    .expect("python3 runs (with PyYAML: `pip install pyyaml`)");
    assert!(
        out.status.success(),
        "{} does not parse as YAML: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Value = serde_json::from_slice(&out.stdout).expect("PyYAML's JSON");
    match docs.as_array().map(Vec::as_slice) {
        Some([one]) => one.clone(),
        _ => docs,
    }
}

/// The `--flag` words of `ringctl serve --help`.
fn serve_flags() -> BTreeSet<String> {
    let out = run_bounded(
        Command::new(ringctl_bin().unwrap()).args(["serve", "--help"]),
        TOOL_LIMIT,
    )
    .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split(|c: char| c.is_whitespace() || c == ',' || c == '=')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_string)
        .collect()
}

/// Asserts every `--flag` in `words` is a `ringctl serve` flag.
fn assert_serve_flags(what: &str, words: &[String]) {
    let known = serve_flags();
    for w in words.iter().filter(|w| w.starts_with("--")) {
        let flag = w.split('=').next().unwrap_or(w);
        assert!(
            known.contains(flag),
            "{what} passes {flag}, which `ringctl serve` does not have"
        );
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

/// The words after each occurrence of `flag`.
fn flag_values(words: &[String], flag: &str) -> Vec<String> {
    words
        .windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].clone())
        .collect()
}

#[test]
fn systemd_unit_is_hardened_and_passes_systemd_analyze_verify() {
    let unit = read(&deploy_dir().join("systemd/ringkv.service"));
    for directive in [
        "User=ringkv",
        "StateDirectory=ringkv",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == directive),
            "missing {directive}"
        );
    }
    // ExecStart, continuation lines joined.
    let exec = unit
        .replace("\\\n", " ")
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=").map(str::to_string))
        .expect("an ExecStart line");
    let words: Vec<String> = exec.split_whitespace().map(str::to_string).collect();
    assert_eq!(words[..2], ["/usr/local/bin/ringctl", "serve"]);
    assert_eq!(flag_values(&words, "--on-signal"), ["stop"]);
    assert_eq!(flag_values(&words, "--data"), ["/var/lib/ringkv"]);
    assert_serve_flags("the systemd unit", &words);

    // verify needs ExecStart's binary to exist: check a copy that runs the built one.
    let dir = tempfile::tempdir().unwrap();
    let bin = ringctl_bin().unwrap();
    let copy = dir.path().join("ringkv.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/ringctl", &bin.display().to_string()),
    )
    .unwrap();
    let out = run_bounded(
        Command::new("systemd-analyze").arg("verify").arg(&copy),
        TOOL_LIMIT,
    )
    .expect("systemd-analyze runs (Debian's systemd package)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verify failed: {stderr}");
    // Unknown keys and bad values are warnings with exit status 0: none is allowed either.
    assert!(stderr.trim().is_empty(), "verify warned: {stderr}");
}

#[test]
fn containerfile_builds_in_two_stages_and_runs_unprivileged_with_a_data_volume() {
    let file = read(&deploy_dir().join("Containerfile"));
    let instr: Vec<&str> = file
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<&&str> = instr.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "a build stage and a runtime stage");
    assert!(froms[0].ends_with(" AS build"), "{}", froms[0]);
    assert!(instr
        .iter()
        .any(|l| l.contains("cargo build --release --locked -p ringctl")));
    assert!(instr
        .iter()
        .any(|l| l.starts_with("COPY --from=build /usr/local/bin/ringctl")));
    let user = instr
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "{user}"
    );
    assert!(instr.contains(&r#"VOLUME ["/var/lib/ringkv"]"#));
    // The build context is the workspace: its build output stays out of it.
    let ignore = read(&deploy_dir().join("../.dockerignore"));
    assert!(ignore.lines().any(|l| l.trim() == "target"), "{ignore}");
    assert!(instr.contains(&r#"ENTRYPOINT ["/usr/local/bin/ringctl"]"#));
}

/// One row of deploy/README.md's compose table: service, QUIC port, metrics port, volume.
#[derive(Debug)]
struct ComposeRow {
    service: String,
    quic: String,
    metrics: String,
    volume: String,
}

fn readme_compose_rows() -> Vec<ComposeRow> {
    let readme = read(&deploy_dir().join("README.md"));
    let section = readme
        .split("<!-- compose-table -->")
        .nth(1)
        .expect("deploy/README.md has the compose table between <!-- compose-table --> markers");
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<String> = l
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_string())
                .filter(|c| !c.is_empty())
                .collect();
            assert_eq!(cells.len(), 4, "{l}");
            ComposeRow {
                service: cells[0].clone(),
                quic: cells[1].clone(),
                metrics: cells[2].clone(),
                volume: cells[3].clone(),
            }
        })
        .collect()
}

#[test]
fn compose_file_names_the_services_volumes_and_ports_the_readme_lists() {
    let compose = yaml(&deploy_dir().join("compose.yaml"));
    let services = compose["services"].as_object().expect("services");
    let rows = readme_compose_rows();
    assert_eq!(rows.len(), 3, "three nodes in the README table");

    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    let mut expected: BTreeSet<&str> = rows.iter().map(|r| r.service.as_str()).collect();
    expected.insert("cert-init");
    assert_eq!(names, expected);

    let volumes: BTreeSet<&str> = compose["volumes"]
        .as_object()
        .expect("volumes")
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected: BTreeSet<&str> = rows.iter().map(|r| r.volume.as_str()).collect();
    expected.insert("certs");
    assert_eq!(volumes, expected);

    let init = strings(&services["cert-init"]["command"]).join("\n");
    assert!(init.contains("ringctl certs init"), "{init}");
    let all_addrs: Vec<String> = rows
        .iter()
        .map(|r| {
            services[&r.service]["networks"]["ringkv"]["ipv4_address"]
                .as_str()
                .expect("a fixed address")
                .to_string()
        })
        .collect();
    for (row, addr) in rows.iter().zip(&all_addrs) {
        let s = &services[&row.service];
        assert_eq!(
            s["depends_on"]["cert-init"]["condition"], "service_completed_successfully",
            "{} waits for its certificate",
            row.service
        );
        let ports = strings(&s["ports"]);
        assert_eq!(ports, [row.quic.clone(), row.metrics.clone()]);
        let mounts = strings(&s["volumes"]);
        assert!(mounts.contains(&format!("{}:/var/lib/ringkv", row.volume)));
        assert!(mounts.contains(&"certs:/certs:ro".to_string()));

        let cmd = strings(&s["command"]);
        assert_eq!(cmd[0], "serve");
        assert_serve_flags(&row.service, &cmd);
        assert_eq!(flag_values(&cmd, "--name"), [row.service.as_str()]);
        assert_eq!(flag_values(&cmd, "--on-signal"), ["stop"]);
        assert_eq!(flag_values(&cmd, "--data"), ["/var/lib/ringkv"]);
        assert_eq!(
            flag_values(&cmd, "--certs"),
            [format!("/certs/{}", row.service)]
        );
        assert_eq!(flag_values(&cmd, "--advertise"), [format!("{addr}:7000")]);
        // The published ports lead to the node's QUIC and metrics ports.
        assert!(row.quic.ends_with(":7000/udp"), "{}", row.quic);
        assert_eq!(flag_values(&cmd, "--metrics"), ["0.0.0.0:9100"]);
        assert!(row.metrics.ends_with(":9100/tcp"), "{}", row.metrics);
        // Seeds are the other nodes; the certificate names the node's address.
        let mut seeds = flag_values(&cmd, "--seed");
        seeds.sort();
        let mut others: Vec<String> = all_addrs
            .iter()
            .filter(|a| *a != addr)
            .map(|a| format!("{a}:7000"))
            .collect();
        others.sort();
        assert_eq!(seeds, others);
        // cert-init issues node n<i>'s certificate for 172.28.0.1<i>.
        let i = row.service.trim_start_matches('n');
        assert_eq!(addr, &format!("172.28.0.1{i}"));
        assert!(init.contains("for i in 1 2 3"), "{init}");
        assert!(init.contains("--name n$$i --ip 172.28.0.1$$i"), "{init}");
    }
}

/// Every manifest in deploy/kubernetes, by file name.
fn manifests() -> Vec<(String, Value)> {
    let dir = deploy_dir().join("kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                yaml(&p),
            )
        })
        .collect()
}

fn kind<'a>(all: &'a [(String, Value)], kind: &str) -> &'a Value {
    let found: Vec<&Value> = all
        .iter()
        .map(|(_, v)| v)
        .filter(|v| v["kind"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

#[test]
fn kubernetes_manifests_validate_offline_against_the_schemas() {
    let dir = deploy_dir().join("kubernetes");
    for (file, _) in manifests() {
        let out = run_bounded(
            Command::new("kubernetes-validate")
                .args(["--strict", "--quiet"])
                .arg(dir.join(&file)),
            TOOL_LIMIT,
        )
        .expect("kubernetes-validate runs (`pip install kubernetes-validate`)");
        assert!(
            out.status.success(),
            "{file}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The validator rejects what the schema does not allow (so the pass above means something).
    let bad = tempfile::tempdir().unwrap();
    let path = bad.path().join("pdb.yaml");
    std::fs::write(
        &path,
        read(&dir.join("poddisruptionbudget.yaml"))
            .replace("maxUnavailable: 1", "maxUnavailable: 1\n  maxUnvailable: 1"),
    )
    .unwrap();
    let out = run_bounded(
        Command::new("kubernetes-validate")
            .args(["--strict", "--quiet"])
            .arg(&path),
        TOOL_LIMIT,
    )
    .unwrap();
    assert!(!out.status.success(), "a misspelt field is refused");
}

#[test]
fn kubernetes_statefulset_seeds_probes_stops_and_certificates_fit_together() {
    let all = manifests();
    let service = kind(&all, "Service");
    let set = kind(&all, "StatefulSet");
    let pdb = kind(&all, "PodDisruptionBudget");
    let name = service["metadata"]["name"].as_str().unwrap();

    // Headless, publishing not-ready pods, and the StatefulSet's governing service.
    assert_eq!(service["spec"]["clusterIP"], "None");
    assert_eq!(service["spec"]["publishNotReadyAddresses"], true);
    assert_eq!(set["spec"]["serviceName"], name);
    let labels = &set["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&service["spec"]["selector"], labels);
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);

    let pod = &set["spec"]["template"]["spec"];
    let node = &pod["containers"][0];
    let script = strings(&node["args"]).join("\n");
    // Seeds are the other pods' DNS names under the headless service.
    assert!(
        script.contains(&format!(
            "ringkv-$i.{name}.$POD_NAMESPACE.svc.cluster.local"
        )),
        "{script}"
    );
    assert_eq!(
        set["metadata"]["name"], "ringkv",
        "pod names ringkv-N, as the seeds say"
    );
    let replicas = set["spec"]["replicas"].as_u64().unwrap();
    let env = node["env"].as_array().unwrap();
    assert!(env
        .iter()
        .any(|e| e["name"] == "REPLICAS"
            && e["value"].as_str() == Some(replicas.to_string().as_str())));
    let serve: Vec<String> = script
        .split("exec ")
        .nth(1)
        .expect("exec ringctl serve")
        .replace("\\\n", " ")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(serve[..2], ["/usr/local/bin/ringctl", "serve"]);
    assert_serve_flags("the StatefulSet", &serve);
    assert_eq!(flag_values(&serve, "--metrics"), ["0.0.0.0:9100"]);
    assert_eq!(flag_values(&serve, "--on-signal"), ["\"$mode\""]);
    assert!(script.contains("mode=stop"));

    // Readiness is GET /health on the metrics port.
    let ready = &node["readinessProbe"]["httpGet"];
    assert_eq!(ready["path"], "/health");
    let metrics_port = node["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == ready["port"])
        .expect("the probe's port is a container port");
    assert_eq!(metrics_port["containerPort"], 9100);
    // preStop signals ringctl (PID 1 through exec) and waits for it to exit.
    let pre_stop = strings(&node["lifecycle"]["preStop"]["exec"]["command"]).join(" ");
    assert!(
        pre_stop.contains("kill -TERM 1") && pre_stop.contains("while kill -0 1"),
        "{pre_stop}"
    );
    // The certificates come from a Secret, through the init container that issues the
    // pod's own certificate.
    let volumes = pod["volumes"].as_array().unwrap();
    assert!(volumes
        .iter()
        .any(|v| v["name"] == "ca" && v["secret"]["secretName"] == "ringkv-ca"));
    let init = strings(&pod["initContainers"][0]["args"]).join("\n");
    assert!(
        init.contains("ringctl certs issue") && init.contains("--ip \"$POD_IP\""),
        "{init}"
    );
    assert!(init.contains("rm /certs/ca.key"), "{init}");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
}
