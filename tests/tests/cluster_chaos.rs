//! `ringctl chaos` end to end: a short run with faults of every kind finishes with a clean
//! verdict and a report that parses, the HTML report renders in a real browser, and a run
//! against a cluster `ringctl cluster up` runs faults it and leaves it running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use ringkv_tests::{ringctl_bin, serial};

/// Bound on one chaos run: its workload, start-up, heal, settle and check.
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// A `ringctl chaos` child: asked to stop (it then stops its nodes) and killed on drop.
struct ChaosProc(Option<Child>);

impl Drop for ChaosProc {
    fn drop(&mut self) {
        let Some(mut c) = self.0.take() else { return };
        if let Ok(None) = c.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
        }
        let _ = c.wait();
    }
}

/// What a finished run left.
struct Run {
    status: Option<i32>,
    stdout: String,
    stderr: String,
    report: PathBuf,
}

/// Runs `ringctl chaos ARGS --report DIR/report --dir DIR/cluster` with `env` set.
fn chaos(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Run> {
    chaos_on(
        dir,
        &["--dir", &dir.join("cluster").display().to_string()],
        args,
        env,
    )
}

/// Runs `ringctl chaos ON ARGS --report DIR/report` with `env` set.
fn chaos_on(dir: &Path, on: &[&str], args: &[&str], env: &[(&str, &str)]) -> Result<Run> {
    let report = dir.join("report");
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut cmd = Command::new(ringctl_bin()?);
    cmd.arg("chaos")
        .args(args)
        .arg("--report")
        .arg(&report)
        .args(on)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out)?)
        .stderr(std::fs::File::create(&err)?);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut guard = ChaosProc(Some(cmd.spawn().context("starting ringctl chaos")?));
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        let child = guard.0.as_mut().context("no child")?;
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            bail!("ringctl chaos still running after {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    Ok(Run {
        status: status.code(),
        stdout: std::fs::read_to_string(out)?,
        stderr: std::fs::read_to_string(err)?,
        report,
    })
}

/// The one clean run both tests look at (30 s of workload, every kind of fault).
fn clean_run() -> &'static (tempfile::TempDir, Run) {
    static RUN: OnceLock<(tempfile::TempDir, Run)> = OnceLock::new();
    RUN.get_or_init(|| {
        let _serial = serial();
        let dir = tempfile::tempdir().expect("temporary directory");
        let args = [
            "--nodes",
            "5",
            "--duration",
            "30s",
            "--seed",
            "11",
            "--settle",
            "5s",
            "--concurrency",
            "8",
        ];
        let run = chaos(dir.path(), &args, &[]).expect("ringctl chaos ran");
        (dir, run)
    })
}

#[test]
fn a_short_chaos_run_with_every_kind_of_fault_has_a_clean_verdict_and_a_report() {
    let (_dir, run) = clean_run();
    assert_eq!(
        run.status,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.contains("verdict: CLEAN"), "{}", run.stdout);
    assert!(run.stdout.contains("schedule: ") && run.stdout.contains("replay: ringctl chaos"));
    let json = std::fs::read_to_string(run.report.join("report.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["clean"], true);
    assert!(report["ok"].as_u64().unwrap() > 100, "{}", report["ok"]);
    assert!(report["findings"]["keys_checked"].as_u64().unwrap() > 50);
    let kinds: Vec<&str> = report["faults"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    for kind in ["kill", "pause", "partition", "clock", "slow-disk"] {
        assert!(kinds.contains(&kind), "no {kind} fault in {kinds:?}");
    }
    assert!(report["series"].as_array().unwrap().len() >= 30);
    assert!(run.report.join("report.html").exists());
}

/// Whether a run's nodes logged that they sabotage themselves.
fn sabotaged(dir: &Path) -> bool {
    (1..=5).any(|i| {
        std::fs::read_to_string(dir.join(format!("cluster/n{i}.log")))
            .is_ok_and(|log| log.contains("SABOTAGE"))
    })
}

#[test]
fn nodes_that_acknowledge_puts_before_storing_them_fail_the_verdict() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--nodes",
        "5",
        "--duration",
        "25s",
        "--seed",
        "5",
        "--settle",
        "3s",
        "--concurrency",
        "8",
        "--faults",
        "kill",
        "--schedule",
        "3+2:kill:n1;7+2:kill:n2;11+2:kill:n3;15+2:kill:n4;19+2:kill:n5",
    ];
    let env = [("RINGKV_SABOTAGE", "ack-before-store")];
    let mut run = chaos(dir.path(), &args, &env).unwrap();
    let again = tempfile::tempdir().unwrap();
    if !sabotaged(dir.path()) {
        // This ringctl was built without the test-only feature (`cargo test` of the whole
        // workspace builds it with it): build one that has it.
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "ringctl",
                "--features",
                "ringkv/sabotage-ack",
            ])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .unwrap();
        assert!(
            status.success(),
            "building ringctl with the sabotage feature"
        );
        run = chaos(again.path(), &args, &env).unwrap();
        assert!(
            sabotaged(again.path()),
            "the nodes did not sabotage themselves"
        );
    }
    assert_eq!(
        run.status,
        Some(1),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.contains("verdict: FAILED"), "{}", run.stdout);
    let json = std::fs::read_to_string(run.report.join("report.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["clean"], false);
    let lost = report["findings"]["lost"].as_array().unwrap();
    assert!(!lost.is_empty(), "{}", run.stdout);
}

/// Whether process `pid` runs (its command line can be read).
fn runs(pid: u64) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

/// Starts `ringctl cluster up --nodes 3 EXTRA --dir DIR` and waits for its record; returns
/// the process and the nodes' pids.
fn cluster_up(dir: &Path, extra: &[&str]) -> (ChaosProc, Vec<u64>) {
    let up_log = std::fs::File::create(dir.with_extension("log")).unwrap();
    let up = ChaosProc(Some(
        Command::new(ringctl_bin().unwrap())
            .args(["cluster", "up", "--nodes", "3", "--dir"])
            .arg(dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(up_log.try_clone().unwrap())
            .stderr(up_log)
            .spawn()
            .unwrap(),
    ));
    let record = dir.join("cluster.json");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !record.exists() {
        assert!(Instant::now() < deadline, "cluster up did not come up");
        std::thread::sleep(Duration::from_millis(200));
    }
    let pids = recorded_pids(&record);
    assert_eq!(pids.len(), 3);
    (up, pids)
}

/// The node pids `cluster up`'s record names, in node order.
fn recorded_pids(record: &Path) -> Vec<u64> {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(record).unwrap()).unwrap();
    manifest["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["pid"].as_u64().unwrap())
        .collect()
}

#[test]
fn faults_a_cluster_up_cluster_cannot_take_are_refused_before_anything_is_faulted() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let cluster = dir.path().join("cluster");
    let (_up, pids) = cluster_up(&cluster, &[]);
    let on = ["--cluster", cluster.to_str().unwrap()];
    let args = ["--faults", "pause,clock", "--duration", "10s"];
    let refused = chaos_on(dir.path(), &on, &args, &[]).unwrap();
    assert_eq!(refused.status, Some(1), "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("fault(s) `clock` need nodes started with `serve --fault-injection`"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stdout.contains("verdict"), "{}", refused.stdout);
    assert!(pids.iter().all(|p| runs(*p)), "a node was stopped");
}

#[test]
fn a_run_against_a_cluster_up_cluster_faults_it_and_leaves_it_running() {
    // Every kind of fault, kill too: the killed node is started again with its recorded
    // command line and the record names its new pid.
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let cluster = dir.path().join("cluster");
    let (mut up, pids) = cluster_up(&cluster, &["--fault-injection"]);
    let record = cluster.join("cluster.json");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    let on = ["--cluster", cluster.to_str().unwrap()];

    let schedule =
        "2+3:pause:n2;5.5+3:partition:n3:out;9+3:clock:n1:-5000;12.5+3:slow-disk:n2:300;16+2:kill:n3";
    let args = [
        "--duration",
        "20s",
        "--schedule",
        schedule,
        "--seed",
        "5",
        "--settle",
        "3s",
        "--concurrency",
        "4",
    ];
    let run = chaos_on(dir.path(), &on, &args, &[]).unwrap();
    assert_eq!(
        run.status,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.contains("verdict: CLEAN"), "{}", run.stdout);
    assert!(run.stdout.contains("replay: ringctl chaos --cluster "));
    assert!(
        run.stdout.contains(
            "schedule: 2.0+3.0:pause:n2;5.5+3.0:partition:n3:out;9.0+3.0:clock:n1:-5000;\
             12.5+3.0:slow-disk:n2:300;16.0+2.0:kill:n3"
        ),
        "{}",
        run.stdout
    );
    let json = std::fs::read_to_string(run.report.join("report.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let kinds: Vec<&str> = report["faults"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    for kind in ["pause", "partition", "clock", "slow-disk", "kill"] {
        assert!(kinds.contains(&kind), "no {kind} fault in {kinds:?}");
    }
    assert!(
        !run.stderr.contains("not applied"),
        "every fault applied: {}",
        run.stderr
    );

    // n3 was killed and started again under a new pid, which the record now names; the
    // others are the same processes; all healed, and `cluster up` still runs.
    let now = recorded_pids(&record);
    assert_eq!(now[..2], pids[..2]);
    assert_ne!(now[2], pids[2]);
    assert!(!runs(pids[2]), "the killed n3 still runs");
    assert!(
        now.iter().all(|p| runs(*p)),
        "a node of the cluster stopped"
    );
    let child = up.0.as_mut().unwrap();
    assert!(matches!(child.try_wait(), Ok(None)), "cluster up exited");
    let certs = cluster.join("certs");
    for n in manifest["nodes"].as_array().unwrap() {
        let addr = n["addr"].as_str().unwrap().parse().unwrap();
        let api = ringkv_tests::client_at(addr, &certs).unwrap();
        let plan = ringkv_tests::block_on(api.faults(ringkv::faults::FaultRequest::Get)).unwrap();
        assert!(plan.is_healed(), "{plan:?} left on {addr}");
    }

    // Stopped by its own Ctrl-C path, `cluster up` stops the restarted n3 too and takes its
    // record away.
    drop(up);
    assert!(!record.exists(), "the record outlived the cluster");
    let deadline = Instant::now() + Duration::from_secs(10);
    while now.iter().any(|p| runs(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(now.iter().all(|p| !runs(*p)), "a node outlived cluster up");
}

/// Chromium's command, if one is installed.
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

#[test]
fn the_html_report_renders_its_plots_and_verdict_in_a_browser() {
    let Some(browser) = chromium() else {
        eprintln!("SKIPPED: no Chromium installed (`.ci/run` installs Debian's `chromium`)");
        return;
    };
    let (dir, run) = clean_run();
    let html = run.report.join("report.html");
    assert!(html.exists(), "{}", run.stderr);
    let profile = dir.path().join("chromium-profile");
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium ran");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dom.contains("id=\"verdict\"") && dom.contains("CLEAN"),
        "{dom}"
    );
    assert!(dom.contains("nothing acknowledged was lost"), "{dom}");
    for plot in ["throughput", "latency", "errors", "faults"] {
        let at = dom
            .find(&format!("id=\"plot-{plot}\""))
            .unwrap_or_else(|| panic!("no {plot} plot in the page"));
        assert!(dom[at..].contains("<svg"), "the {plot} plot has no SVG");
    }
    assert!(dom.matches("<svg").count() >= 4);
    assert!(dom.contains("Faults per node"), "{dom}");
    let throughput = dom.find("id=\"plot-throughput\"").unwrap();
    assert!(dom[throughput..].contains("<polyline"), "no line drawn");
}
