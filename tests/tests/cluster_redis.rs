//! The Redis protocol front with real clients: redis-cli (TLS and plain TCP),
//! redis-benchmark, redis-py, and hostile input on raw sockets.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use ringkv::net::init_cluster;
use ringkv_tests::{free_port_pair, poll, run_bounded, serial, Cluster};

/// Bound on one client command: far above what it needs, only a guard against a hang.
const CLIENT_LIMIT: Duration = Duration::from_secs(120);

/// Nodes n1..n`n`, each with its Redis front on its QUIC port number; the first `plain` of
/// them over plain TCP, the others over TLS.
fn start(n: usize, plain: usize, extra: &[&str]) -> Result<Cluster> {
    let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut cluster = Cluster::prepare(&refs)?;
    for (i, name) in names.iter().enumerate() {
        let port = free_port_pair()?;
        let redis = format!("127.0.0.1:{port}");
        let mut flags = vec!["--redis", &redis];
        if i < plain {
            flags.push("--redis-plaintext");
        }
        flags.extend_from_slice(extra);
        let seeds: Vec<_> = cluster.nodes.first().map(|s| s.addr).into_iter().collect();
        let node = cluster.spawn(name, port, &seeds, &flags)?;
        cluster.nodes.push(node);
    }
    cluster.wait_alive(n, Duration::from_secs(30))?;
    Ok(cluster)
}

fn port(cluster: &Cluster, i: usize) -> String {
    cluster.nodes[i].addr.port().to_string()
}

/// How redis-cli authenticates.
enum Tls<'a> {
    Plain,
    /// The CA to trust, and the client certificate and key to present (if any) from `dir`.
    Cert {
        ca: &'a Path,
        client: Option<&'a Path>,
    },
}

fn redis_cli(port: &str, tls: &Tls<'_>, args: &[&str]) -> Result<Output> {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", port]);
    if let Tls::Cert { ca, client } = tls {
        cmd.arg("--tls").arg("--cacert").arg(ca.join("ca.pem"));
        if let Some(dir) = client {
            cmd.arg("--cert").arg(dir.join("client.pem"));
            cmd.arg("--key").arg(dir.join("client.key"));
        }
    }
    run_bounded(cmd.args(args), CLIENT_LIMIT).context("redis-cli (install redis-tools)")
}

/// redis-cli's answer as text, trimmed.
fn cli(port: &str, tls: &Tls<'_>, args: &[&str]) -> Result<String> {
    let out = redis_cli(port, tls, args)?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    ensure!(out.status.success(), "redis-cli {args:?}: {out:?}");
    Ok(text)
}

/// The commands of the issue's first test, through one front.
fn strings_through(port: &str, tls: &Tls<'_>, tag: &str) -> Result<()> {
    let key = |k: &str| format!("{tag}:{k}");
    assert_eq!(cli(port, tls, &["PING"])?, "PONG");
    assert_eq!(cli(port, tls, &["SET", &key("a"), "1"])?, "OK");
    assert_eq!(cli(port, tls, &["GET", &key("a")])?, "1");
    assert_eq!(
        cli(port, tls, &["MSET", &key("b"), "2", &key("c"), "3"])?,
        "OK"
    );
    let got = cli(
        port,
        tls,
        &["MGET", &key("a"), &key("b"), &key("nope"), &key("c")],
    )?;
    assert_eq!(got.lines().collect::<Vec<_>>(), ["1", "2", "", "3"]);
    assert_eq!(cli(port, tls, &["DEL", &key("a"), &key("nope")])?, "1");
    assert_eq!(cli(port, tls, &["GET", &key("a")])?, "");
    assert_eq!(cli(port, tls, &["EXISTS", &key("a"), &key("b")])?, "1");
    assert_eq!(cli(port, tls, &["STRLEN", &key("c")])?, "1");
    Ok(())
}

#[test]
fn redis_cli_over_tls_and_plaintext_and_refused_without_a_cluster_certificate() -> Result<()> {
    let _serial = serial();
    let cluster = start(3, 2, &[])?;
    let certs = cluster.certs();
    let (p1, p2, p3) = (port(&cluster, 0), port(&cluster, 1), port(&cluster, 2));

    strings_through(&p1, &Tls::Plain, "plain")?;
    // Written through one node's front, read through another's.
    assert_eq!(cli(&p1, &Tls::Plain, &["SET", "across", "yes"])?, "OK");
    assert_eq!(cli(&p2, &Tls::Plain, &["GET", "across"])?, "yes");

    let tls = Tls::Cert {
        ca: &certs,
        client: Some(&certs),
    };
    strings_through(&p3, &tls, "tls")?;
    assert_eq!(cli(&p3, &tls, &["GET", "across"])?, "yes");

    // No client certificate, or one from another CA: the handshake fails, nothing served.
    let other: PathBuf = cluster.dir.path().join("other-ca");
    init_cluster(&other)?;
    let refused = [
        Tls::Cert {
            ca: &certs,
            client: None,
        },
        Tls::Cert {
            ca: &certs,
            client: Some(&other),
        },
    ];
    for tls in &refused {
        let out = redis_cli(&p3, tls, &["GET", "across"])?;
        let text = format!("{out:?}");
        assert!(!text.contains("yes") && !text.contains("PONG"), "{text}");
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase()
            + &String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(
            err.contains("error") || err.contains("could not") || err.contains("closed"),
            "{text}"
        );
    }
    // Plain TCP against the TLS front is not served either.
    let plain = redis_cli(&p3, &Tls::Plain, &["PING"])?;
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("PONG"));

    // A plain-TCP front on a non-loopback address is refused at start.
    let data = cluster.dir.path().join("refused");
    let data = data.to_string_lossy();
    let args = [
        "serve",
        "--data",
        &data,
        "--listen",
        "127.0.0.1:0",
        "--name",
        "n1",
    ];
    let plain_any = ["--redis", "0.0.0.0:0", "--redis-plaintext"];
    let refused = cluster.ringctl(0, &[&args[..], &plain_any[..]].concat())?;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("loopback"),
        "{refused:?}"
    );
    Ok(())
}

/// Set `prefix` to primary mode (`--sync-replicas majority`) and wait until every node has
/// the rule.
fn primary_prefix(cluster: &Cluster, prefix: &str) -> Result<()> {
    let set = ["range", "set", "--prefix", prefix, "--mode", "primary"];
    cluster
        .ringctl_text(0, &[&set[..], &["--sync-replicas", "majority"]].concat())
        .map_err(anyhow::Error::msg)?;
    for i in 0..cluster.nodes.len() {
        poll(Duration::from_secs(20), || {
            let rows = cluster.ringctl_text(i, &["range", "list"]).ok()?;
            rows.contains(prefix).then_some(())
        })
        .context("the rule did not spread")?;
    }
    Ok(())
}

#[test]
fn redis_benchmark_runs_without_errors_against_one_node_and_the_cluster() -> Result<()> {
    let _serial = serial();
    let cluster = start(3, 3, &[])?;
    let p1 = port(&cluster, 0);
    // redis-benchmark's INCR keys (`counter:...`) in primary mode; every shard elects its
    // first primary before the run (60 keys cover the 6 shards of 3 nodes).
    primary_prefix(&cluster, "counter:")?;
    for i in 0..60 {
        let key = format!("counter:warm{i}");
        assert!(retrying(&p1, &["INCR", &key])?.parse::<i64>().is_ok());
    }
    // SET and GET through one front, then spread over all three; INCR (serialised on each
    // key's primary, so slower in a debug build) through one front.
    let runs: [(&str, &str, bool); 3] = [
        ("set,get", "20000", false),
        ("set,get", "20000", true),
        ("incr", "2000", false),
    ];
    for (tests, n, cluster_mode) in runs {
        let mut cmd = Command::new("redis-benchmark");
        cmd.args(["-h", "127.0.0.1", "-p", &p1, "-t", tests, "-n", n]);
        cmd.args(["-P", "16", "-c", "8", "--csv"]);
        if cluster_mode {
            cmd.arg("--cluster");
        }
        let out = run_bounded(&mut cmd, Duration::from_secs(300)).context("redis-benchmark")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(
            !stdout.contains("rror") && !stderr.contains("rror"),
            "{stdout}\n{stderr}"
        );
        for test in tests.split(',') {
            let row = format!("\"{}\"", test.to_uppercase());
            assert!(stdout.contains(&row), "{stdout}");
        }
    }
    // What redis-benchmark wrote reads back through another node.
    let p2 = port(&cluster, 1);
    assert!(!cli(&p2, &Tls::Plain, &["GET", "key:__rand_int__"])?.is_empty());
    let count: i64 = cli(&p2, &Tls::Plain, &["GET", "counter:__rand_int__"])?.parse()?;
    assert_eq!(count, 2_000, "every INCR counted once");
    Ok(())
}

#[test]
fn redis_py_handshake_pipelines_and_cluster_client() -> Result<()> {
    let _serial = serial();
    // Few vnodes: redis-py's SCAN loop and DBSIZE walk every ring range.
    let cluster = start(3, 3, &["--vnodes", "16"])?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/redis_front.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg(port(&cluster, 0))
        .arg(port(&cluster, 1));
    let out = run_bounded(&mut cmd, CLIENT_LIMIT)?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("redis-py: ok"),
        "{text}"
    );
    Ok(())
}

/// Send `bytes`, optionally close our side, and read until the node closes (`true`) or
/// `enough` holds for what was read.
fn exchange(
    port: &str,
    bytes: &[u8],
    close_write: bool,
    enough: impl Fn(&[u8]) -> bool,
) -> Result<(Vec<u8>, bool)> {
    let mut s = TcpStream::connect(format!("127.0.0.1:{port}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(bytes)?;
    if close_write {
        s.shutdown(Shutdown::Write)?;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok((got, true)),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if enough(&got) {
                    return Ok((got, false));
                }
            }
            Err(e) => return Err(e).context(format!("read after {} bytes", got.len())),
        }
    }
}

#[test]
fn bad_input_gets_clear_errors_and_the_node_keeps_serving() -> Result<()> {
    let _serial = serial();
    let cluster = start(1, 1, &["--n", "1", "--r", "1", "--w", "1"])?;
    let p = port(&cluster, 0);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();

    let (got, closed) = exchange(&p, b"\x00\xffgarbage\r\n", false, |_| false)?;
    assert!(
        closed && text(&got).starts_with("-ERR Protocol error"),
        "{}",
        text(&got)
    );

    let (got, closed) = exchange(&p, b"*2\r\n$3\r\nGET\r\n$999999999\r\n", false, |_| false)?;
    assert!(
        closed && text(&got).contains("invalid bulk length 999999999"),
        "{}",
        text(&got)
    );

    let (got, closed) = exchange(&p, b"*9999999\r\n", false, |_| false)?;
    assert!(
        closed && text(&got).contains("invalid multibulk length"),
        "{}",
        text(&got)
    );

    // An unterminated request, then the client leaves: nothing is answered for it.
    let (got, closed) = exchange(
        &p,
        b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$5\r\nab",
        true,
        |_| false,
    )?;
    assert!(closed);
    assert_eq!(text(&got), "+PONG\r\n");

    // 10,000 pipelined commands, some through the node, answered in order.
    let mut req = Vec::new();
    let mut want = Vec::new();
    for i in 0..10_000 {
        if i % 100 == 0 {
            let (k, v) = (format!("pipe:{i}"), format!("v{i}"));
            req.extend(
                format!(
                    "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
                    k.len(),
                    v.len()
                )
                .bytes(),
            );
            req.extend(format!("*2\r\n$3\r\nGET\r\n${}\r\n{k}\r\n", k.len()).bytes());
            want.extend(format!("+OK\r\n${}\r\n{v}\r\n", v.len()).bytes());
        } else {
            let m = i.to_string();
            req.extend(format!("*2\r\n$4\r\nECHO\r\n${}\r\n{m}\r\n", m.len()).bytes());
            want.extend(format!("${}\r\n{m}\r\n", m.len()).bytes());
        }
    }
    let (got, _) = exchange(&p, &req, false, |g| g.len() >= want.len())?;
    assert!(
        got == want,
        "pipelined answers differ from the first byte {}",
        got.iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()))
    );

    // Unknown and unsupported commands are errors that name them; the connection stays.
    let asked = b"*1\r\n$5\r\nFROBZ\r\n*1\r\n$5\r\nMULTI\r\n*1\r\n$4\r\nPING\r\n";
    let (got, closed) = exchange(&p, asked, false, |g| g.ends_with(b"+PONG\r\n"))?;
    let got = text(&got);
    assert!(!closed, "{got}");
    assert!(got.starts_with("-ERR unknown command 'FROBZ'"), "{got}");
    assert!(got.contains("-ERR 'MULTI': transactions"), "{got}");

    // The node still serves.
    assert_eq!(cli(&p, &Tls::Plain, &["PING"])?, "PONG");
    Ok(())
}

/// redis-cli's answer once it is not `TRYAGAIN` (a shard electing its first primary, or
/// gathering its replicas' keys), as a Redis client retries.
fn retrying(port: &str, args: &[&str]) -> Result<String> {
    let mut last = String::new();
    poll(Duration::from_secs(30), || {
        last = cli(port, &Tls::Plain, args).unwrap_or_else(|e| e.to_string());
        let retry = ["TRYAGAIN", "NOREPLICAS", "CLUSTERDOWN"];
        (!retry.iter().any(|w| last.starts_with(w))).then(|| last.clone())
    })
    .with_context(|| format!("{args:?} still answers {last}"))
}

#[test]
fn read_modify_write_commands_are_atomic_on_a_primary_and_refused_in_quorum_mode() -> Result<()> {
    let _serial = serial();
    let cluster = start(3, 3, &[])?;
    let ports: Vec<String> = (0..3).map(|i| port(&cluster, i)).collect();
    primary_prefix(&cluster, "ctr/")?;

    // Quorum-mode keys refuse read-modify-writes instead of pretending.
    for cmd in [
        &["INCR", "q:1"][..],
        &["SET", "q:1", "x", "NX"],
        &["GETDEL", "q:1"],
    ] {
        let out = cli(&ports[0], &Tls::Plain, cmd)?;
        assert!(
            out.contains("needs the key's prefix in primary mode")
                && out.contains("ringctl range set"),
            "{out}"
        );
    }

    assert_eq!(retrying(&ports[0], &["SET", "ctr/n", "0"])?, "OK");

    // 8 clients, 25 INCRs each, through every node: every value from 1 to 200 once.
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let port = ports[c % 3].clone();
            std::thread::spawn(move || cli(&port, &Tls::Plain, &["-r", "25", "INCR", "ctr/n"]))
        })
        .collect();
    let mut seen = Vec::new();
    for c in clients {
        let out = c
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
        for line in out.lines() {
            seen.push(
                line.parse::<i64>()
                    .with_context(|| format!("INCR answered {line:?}"))?,
            );
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=200).collect::<Vec<_>>());
    for p in &ports {
        assert_eq!(cli(p, &Tls::Plain, &["GET", "ctr/n"])?, "200");
    }

    // The other read-modify-writes, as Redis answers them.
    let p = &ports[1];
    assert_eq!(cli(p, &Tls::Plain, &["DECRBY", "ctr/n", "50"])?, "150");
    assert_eq!(retrying(p, &["APPEND", "ctr/s", "ab"])?, "2");
    assert_eq!(cli(p, &Tls::Plain, &["APPEND", "ctr/s", "cd"])?, "4");
    assert_eq!(cli(p, &Tls::Plain, &["SETNX", "ctr/s", "x"])?, "0");
    assert_eq!(cli(p, &Tls::Plain, &["SET", "ctr/s", "x", "NX"])?, "");
    assert_eq!(
        cli(p, &Tls::Plain, &["SET", "ctr/s", "new", "XX", "GET"])?,
        "abcd"
    );
    assert_eq!(cli(p, &Tls::Plain, &["GETDEL", "ctr/s"])?, "new");
    assert_eq!(cli(p, &Tls::Plain, &["GET", "ctr/s"])?, "");
    assert_eq!(retrying(p, &["SET", "ctr/t", "text"])?, "OK");
    let not_int = cli(p, &Tls::Plain, &["INCR", "ctr/t"])?;
    assert!(not_int.contains("not an integer"), "{not_int}");

    // After READONLY, a replica serves this connection alone: a write answers -READONLY.
    let shard = cluster
        .replication_of(0, "ctr/n")
        .context("no shard info")?;
    let primary = shard["primary"].as_str().context("no primary")?;
    let replica = (0..3)
        .find(|&i| cluster.nodes[i].name != primary)
        .context("no replica")?;
    let asked = b"*1\r\n$8\r\nREADONLY\r\n*3\r\n$3\r\nSET\r\n$5\r\nctr/n\r\n$1\r\n1\r\n*1\r\n$4\r\nPING\r\n";
    let (got, _) = exchange(&ports[replica], asked, false, |g| g.ends_with(b"+PONG\r\n"))?;
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("+OK\r\n-READONLY "), "{got}");

    // WAIT through the primary's front: until both replicas hold the connection's write.
    let primary = (0..3)
        .find(|&i| cluster.nodes[i].name == primary)
        .context("primary not in the cluster")?;
    let answers = cli_session(&ports[primary], &["SET ctr/n v", "WAIT 2 5000"])?;
    assert_eq!(answers, ["OK", "2"]);
    // Through a replica's front: at least the replica the majority write waited for.
    let answers = cli_session(&ports[replica], &["SET ctr/n v2", "WAIT 1 5000"])?;
    assert_eq!(answers[0], "OK");
    assert!(answers[1] == "1" || answers[1] == "2", "{answers:?}");
    Ok(())
}

/// One RESP request.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n{a}\r\n", a.len()).bytes());
    }
    out
}

/// redis-cli's answers to `commands`, sent on one connection (redis-cli reads them from
/// its standard input, one per line).
fn cli_session(port: &str, commands: &[&str]) -> Result<Vec<String>> {
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", port])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("redis-cli (install redis-tools)")?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    stdin.write_all(format!("{}\n", commands.join("\n")).as_bytes())?;
    drop(stdin);
    let mut text = String::new();
    child
        .stdout
        .take()
        .context("no stdout")?
        .read_to_string(&mut text)?;
    ensure!(child.wait()?.success(), "redis-cli {commands:?}: {text}");
    Ok(text.lines().map(str::to_string).collect())
}

#[test]
fn scan_keys_dbsize_siblings_and_wait_in_quorum_mode() -> Result<()> {
    let _serial = serial();
    // 16 vnodes per node: walks of 48 ring ranges (one of them wrapping) keep the test short.
    let cluster = start(3, 3, &["--redis-max-keys", "100", "--vnodes", "16"])?;
    let (p1, p2) = (port(&cluster, 0), port(&cluster, 1));

    // 300 keys through n1, 10 of them deleted: tombstones are not listed.
    let mut req = Vec::new();
    for i in 0..300 {
        req.extend(resp(&["SET", &format!("it:{i}"), "v"]));
    }
    for i in 0..10 {
        req.extend(resp(&["DEL", &format!("it:{i}")]));
    }
    let want_bytes = "+OK\r\n".len() * 300 + ":1\r\n".len() * 10;
    let (got, _) = exchange(&p1, &req, false, |g| g.len() >= want_bytes)?;
    ensure!(
        got == [&b"+OK\r\n".repeat(300)[..], &b":1\r\n".repeat(10)].concat(),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let mut live: Vec<String> = (10..300).map(|i| format!("it:{i}")).collect();
    live.sort();

    // redis-cli walks SCAN's cursor to 0 through another node: every live key, once.
    let out = cli(&p2, &Tls::Plain, &["--scan", "--pattern", "it:*"])?;
    let mut seen: Vec<String> = out.lines().map(str::to_string).collect();
    seen.sort();
    assert_eq!(seen, live);
    // One SCAN call answers a cursor to go on from and at most a bounded page.
    let first = cli(&p2, &Tls::Plain, &["SCAN", "0", "COUNT", "20"])?;
    let mut lines = first.lines();
    let cursor: u64 = lines.next().context("no cursor")?.parse()?;
    assert_ne!(cursor, 0, "300 keys do not fit a page of 20: {first}");
    assert!(lines.count() < 300, "{first}");
    let other_type = cli(&p2, &Tls::Plain, &["SCAN", "0", "TYPE", "hash"])?;
    assert_eq!(other_type, "0");
    let bad = cli(&p2, &Tls::Plain, &["SCAN", "-5"])?;
    assert!(bad.contains("invalid cursor"), "{bad}");

    // KEYS under its bound; past it, an error that says to use SCAN.
    let out = cli(&p1, &Tls::Plain, &["KEYS", "it:1?"])?;
    let mut ten: Vec<&str> = out.lines().collect();
    ten.sort_unstable();
    let want: Vec<String> = (10..20).map(|i| format!("it:{i}")).collect();
    assert_eq!(ten, want);
    let over = cli(&p1, &Tls::Plain, &["KEYS", "*"])?;
    assert!(
        over.contains("at most 100 keys") && over.contains("SCAN"),
        "{over}"
    );

    assert_eq!(cli(&p2, &Tls::Plain, &["DBSIZE"])?, "290");

    // Two blind writes of one key leave siblings: GET answers the newest, RINGKV.SIBLINGS
    // all of them, oldest first.
    let answers = cli_session(&p1, &["SET sib first", "SET sib second", "GET sib"])?;
    assert_eq!(answers, ["OK", "OK", "second"]);
    let siblings = cli(&p2, &Tls::Plain, &["RINGKV.SIBLINGS", "sib"])?;
    assert_eq!(siblings.lines().last(), Some("second"), "{siblings}");
    assert!(siblings.lines().all(|v| v == "first" || v == "second"));
    assert_eq!(cli(&p2, &Tls::Plain, &["RINGKV.SIBLINGS", "nokey"])?, "");

    // WAIT: no write yet, 0; after a quorum-mode write, the replicas that acknowledged it
    // (at least W = 2, at most N = 3).
    let answers = cli_session(&p2, &["WAIT 1 10", "SET w v", "WAIT 3 10"])?;
    assert_eq!(answers[..2], ["0", "OK"]);
    let acked: u8 = answers[2].parse()?;
    assert!((2..=3).contains(&acked), "{answers:?}");
    Ok(())
}
