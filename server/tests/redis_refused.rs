//! A Redis that refuses the node (a wrong password, a certificate the node does not trust)
//! and `--redis-url`s that are wrong, with the real binary: the node says so in one log
//! line that never holds the password, `/readyz` answers 503, and it keeps trying; a
//! malformed URL stops the start with one line; `check-config` shows the URL redacted.
//! A `redis-server` of the test's own (`scripts/test.sh` installs it).

mod common;

use common::{get_status, lines_of, listening, until, Running};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

/// A `redis-server` on a free loopback port with `args`, killed on drop; answers once it
/// accepts connections.
fn redis(args: &[&str], tls: bool) -> (Running, u16, tempfile::TempDir) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let ports = match tls {
        false => vec!["--port", &port],
        true => vec!["--port", "0", "--tls-port", &port],
    };
    let child = Command::new("redis-server")
        .args(ports)
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(args)
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server runs (scripts/test.sh installs it)");
    until(
        Duration::from_secs(10),
        "redis-server did not start",
        || TcpStream::connect(format!("127.0.0.1:{port}")).is_ok(),
    );
    (Running(child), port.parse().unwrap(), dir)
}

/// A node on `url` (with `--redis-ca` when given), its stderr's lines.
fn node(url: &str, ca: Option<&Path>) -> (Running, String, Receiver<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rookery"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--cores",
        "2",
        "--store",
        "memory",
    ])
    .args(["--engine", "redis", "--redis-url", url])
    .args(["--log-format", "text"])
    .env_remove("ROOKERY_CONFIG")
    .env("ROOKERY_LOG", "info")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if let Some(ca) = ca {
        cmd.arg("--redis-ca").arg(ca);
    }
    let mut child = cmd.spawn().unwrap();
    let (addr, _) = listening(&mut child);
    let lines = lines_of(&mut child);
    (Running(child), addr, lines)
}

/// The lines up to the first holding `needle` (failing after 30 s).
fn lines_until(lines: &Receiver<String>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(e) => panic!("no line with {needle:?} ({e}) in {seen:#?}"),
        }
    }
}

/// How many `AUTH`s Redis refused (the `count`s of its ACL log's `auth` entries).
fn refused_auths(port: u16) -> u64 {
    let out = Command::new("redis-cli")
        .args([
            "-p",
            &port.to_string(),
            "--no-auth-warning",
            "-a",
            "the-right-one",
        ])
        .args(["ACL", "LOG"])
        .output()
        .expect("redis-cli runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0] == "count")
        .filter_map(|w| w[1].parse::<u64>().ok())
        .sum()
}

#[test]
fn a_wrong_password_is_one_log_line_without_it_and_readyz_503() {
    let (_redis, port, _dir) = redis(&["--requirepass", "the-right-one"], false);
    let (_node, addr, lines) = node(&format!("redis://app:hunter2@127.0.0.1:{port}/2"), None);
    let seen = lines_until(&lines, "WRONGPASS");
    let refusal = seen.last().unwrap();
    assert!(refusal.contains("AUTH as user \"app\""), "{refusal}");
    assert!(
        refusal.contains("redis://app:redacted@127.0.0.1"),
        "{refusal}"
    );
    assert_eq!(get_status(&addr, "/readyz"), 503);
    // Two cores, two connections each, retrying with backoff: still the one line, after
    // Redis refused a dozen tries (its ACL log counts them).
    until(Duration::from_secs(30), "the node stopped trying", || {
        refused_auths(port) >= 12
    });
    assert_eq!(get_status(&addr, "/readyz"), 503);
    let mut all = seen.clone();
    all.extend(lines.try_iter());
    for line in &all {
        assert!(!line.contains("hunter2"), "the password is logged: {line}");
    }
    assert_eq!(
        all.iter().filter(|l| l.contains("WRONGPASS")).count(),
        1,
        "{all:#?}"
    );
}

#[test]
fn no_password_where_one_is_needed_says_so() {
    let (_redis, port, _dir) = redis(&["--requirepass", "the-right-one"], false);
    let (_node, addr, lines) = node(&format!("redis://127.0.0.1:{port}"), None);
    let line = lines_until(&lines, "NOAUTH").pop().unwrap();
    assert!(line.contains("give it in the URL"), "{line}");
    assert_eq!(get_status(&addr, "/readyz"), 503);
}

/// A self-signed certificate for `names` and its key, written to `<name>.pem` and
/// `<name>.key` in `dir`.
fn self_signed(dir: &Path, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let made = rcgen::generate_simple_self_signed(names).unwrap();
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// A Redis on TLS only, with `cert` and `key`; with `ca`, it trusts `cert` for client
/// certificates, which it demands with `auth_clients`.
fn tls_redis(
    cert: &Path,
    key: &Path,
    ca: bool,
    auth_clients: bool,
) -> (Running, u16, tempfile::TempDir) {
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mut args = vec!["--tls-cert-file", cert, "--tls-key-file", key];
    if ca {
        args.extend(["--tls-ca-cert-file", cert]);
    }
    args.extend([
        "--tls-auth-clients",
        if auth_clients { "yes" } else { "no" },
    ]);
    redis(&args, true)
}

#[test]
fn a_certificate_the_node_does_not_trust_is_refused_and_readyz_503() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "redis", &["localhost", "127.0.0.1"]);
    let (other, _) = self_signed(dir.path(), "other", &["localhost", "127.0.0.1"]);
    let (_redis, port, _rdir) = tls_redis(&cert, &key, true, false);
    let (_node, addr, lines) = node(&format!("rediss://127.0.0.1:{port}"), Some(&other));
    let line = lines_until(&lines, "TLS:").pop().unwrap();
    assert!(line.contains("certificate"), "{line}");
    assert_eq!(get_status(&addr, "/readyz"), 503);
}

#[test]
fn a_redis_that_asks_for_a_client_certificate_refuses_a_node_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "redis", &["localhost", "127.0.0.1"]);
    let (_redis, port, _rdir) = tls_redis(&cert, &key, true, true);
    let (_node, addr, lines) = node(&format!("rediss://127.0.0.1:{port}"), Some(&cert));
    let line = lines_until(&lines, "TLS:").pop().unwrap();
    assert!(line.contains("refused this node"), "{line}");
    assert_eq!(get_status(&addr, "/readyz"), 503);
}

#[test]
fn plain_redis_to_a_tls_port_says_to_use_rediss() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "redis", &["127.0.0.1"]);
    let (_redis, port, _rdir) = tls_redis(&cert, &key, false, false);
    let (_node, addr, lines) = node(&format!("redis://127.0.0.1:{port}"), None);
    let line = lines_until(&lines, "refused this node").pop().unwrap();
    assert!(line.contains("then rediss://"), "{line}");
    assert_eq!(get_status(&addr, "/readyz"), 503);
}

#[test]
fn a_malformed_url_stops_the_start_with_one_line_without_the_password() {
    for (url, why) in [
        ("redis://:hunter2@127.0.0.1:6379/x", "not a database number"),
        ("redis://:hunter2@127.0.0.1:6379?ssl=true", "a query"),
        ("http://:hunter2@127.0.0.1:6379", "is not redis or rediss"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_rookery"))
            .args(["--listen", "127.0.0.1:0", "--store", "memory"])
            .args(["--engine", "redis", "--redis-url", url])
            .env_remove("ROOKERY_CONFIG")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{url}: {err}");
        assert!(err.contains(why), "{url}: {err}");
        assert!(!err.contains("hunter2"), "{url}: {err}");
    }
}

#[test]
fn check_config_shows_the_url_without_the_password() {
    let out = Command::new(env!("CARGO_BIN_EXE_rookery"))
        .args(["check-config", "--engine", "redis"])
        .args(["--redis-url", "redis://app:hunter2@127.0.0.1:6380/3"])
        .env_remove("ROOKERY_CONFIG")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = report
        .lines()
        .find(|l| l.starts_with("redis_url = "))
        .unwrap();
    assert!(
        line.contains("redis://redacted:redacted@127.0.0.1:6380/3"),
        "{line}"
    );
    assert!(!report.contains("hunter2"), "{report}");
}
