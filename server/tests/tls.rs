//! TLS with the real binary: bad certificate files refuse the start (and `check-config`)
//! with one clear line, and SIGHUP reads the certificate again without dropping anybody.

mod common;

use common::{lines_of, listening, signal, wait_for, Running};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore, StreamOwned};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tungstenite::{Message, WebSocket};

/// A self-signed certificate for localhost: its PEM files' contents and DER.
struct Made {
    cert: String,
    key: String,
    der: CertificateDer<'static>,
}

fn make() -> Made {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    Made {
        cert: made.cert.pem(),
        key: made.signing_key.serialize_pem(),
        der: made.cert.der().clone(),
    }
}

/// Writes `made` to `cert.pem` and `key.pem` in `dir` (replacing them whole, as a renewal
/// tool does: a new file moved over the old one).
fn install(dir: &Path, made: &Made) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    for (path, text) in [(&cert, &made.cert), (&key, &made.key)] {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
    (cert, key)
}

fn rookery() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rookery"));
    cmd.env_clear();
    cmd
}

/// A client trusting every certificate of `roots`.
fn client(roots: &[&CertificateDer<'static>]) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for der in roots {
        store.add((*der).clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(store)
            .with_no_client_auth(),
    )
}

type Wss = WebSocket<StreamOwned<ClientConnection, TcpStream>>;

/// A Pact client over `wss://` in `room`, subscribed to chat.
fn pact(addr: &str, config: &Arc<ClientConfig>, room: &str) -> Wss {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config.clone(), name).unwrap();
    let url = format!("wss://localhost/websocket?room={room}");
    let (mut ws, _) = tungstenite::client(url, StreamOwned::new(conn, tcp)).unwrap();
    ws.send(Message::text(
        r#"{"type":"subscribe","data":"chat","ref":"s"}"#,
    ))
    .unwrap();
    wait_text(&mut ws, r#""ref":"s""#);
    ws
}

/// Reads until a text message containing `needle`; returns it.
fn wait_text(ws: &mut Wss, needle: &str) -> String {
    loop {
        match ws.read().unwrap() {
            Message::Text(t) if t.contains(needle) => return t.to_string(),
            _ => continue,
        }
    }
}

fn kind(ws: &Wss) -> HandshakeKind {
    ws.get_ref().conn.handshake_kind().unwrap()
}

fn peer(ws: &Wss) -> CertificateDer<'static> {
    ws.get_ref().conn.peer_certificates().unwrap()[0].clone()
}

#[test]
fn sighup_reads_the_certificate_again_and_open_connections_stay() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (make(), make());
    let (cert, key) = install(dir.path(), &old);
    let mut running = Running(
        rookery()
            .args([
                "--listen",
                "127.0.0.1:0",
                "--store",
                "memory",
                "--cores",
                "1",
            ])
            .args(["--log-format", "text", "--log", "info,rookery::access=off"])
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut running.0;
    let (addr, _) = listening(child);
    let lines = lines_of(child);
    let trusting_both = client(&[&old.der, &new.der]);
    let mut before = pact(&addr, &trusting_both, "renewal");
    assert_eq!(peer(&before), old.der);
    assert_eq!(kind(&before), HandshakeKind::Full);
    let resumed = pact(&addr, &trusting_both, "renewal");
    assert_eq!(kind(&resumed), HandshakeKind::Resumed, "tickets work");

    install(dir.path(), &new);
    signal(child, "HUP");
    let line = wait_for(&lines, "reload: TLS certificate read again");
    assert!(!line.contains("PRIVATE"), "no key material in logs: {line}");
    wait_for(&lines, "reload done");

    let mut after = pact(&addr, &trusting_both, "renewal");
    assert_eq!(
        peer(&after),
        new.der,
        "a new handshake gets the new certificate"
    );
    assert_eq!(
        kind(&after),
        HandshakeKind::Full,
        "no session of the old certificate is resumed"
    );
    // The connection opened before the reload still works, both ways.
    before
        .send(Message::text(r#"{"type":"chat","data":"from before"}"#))
        .unwrap();
    wait_text(&mut before, "from before");
    wait_text(&mut after, "from before");
    after
        .send(Message::text(r#"{"type":"chat","data":"from after"}"#))
        .unwrap();
    wait_text(&mut before, "from after");

    // A bad file now: the certificate in force stays, and the error says why.
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    signal(child, "HUP");
    let refused = wait_for(&lines, "reload: the configuration is invalid");
    assert!(refused.contains("--tls-key"), "{refused}");
    assert!(!refused.contains("AAAA"), "no key material: {refused}");
    let again = pact(&addr, &trusting_both, "renewal");
    assert_eq!(peer(&again), new.der, "the certificate in force stays");
}

#[test]
fn bad_tls_files_refuse_the_start_and_check_config_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (one, other) = (make(), make());
    let (cert, _) = install(dir.path(), &one);
    let wrong_key = dir.path().join("other-key.pem");
    std::fs::write(&wrong_key, &other.key).unwrap();
    let cases: [(&[&str], &str); 3] = [
        (
            &["--tls-cert", "CERT"],
            "--tls-cert is set without --tls-key",
        ),
        (
            &["--tls-cert", "CERT", "--tls-key", "CERT"],
            "no PEM private key",
        ),
        (
            &["--tls-cert", "CERT", "--tls-key", "WRONG"],
            "is not the key of the certificate",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<String> = args
            .iter()
            .map(|a| match *a {
                "CERT" => cert.display().to_string(),
                "WRONG" => wrong_key.display().to_string(),
                other => other.to_owned(),
            })
            .collect();
        for check in [false, true] {
            let mut cmd = rookery();
            cmd.args(["--listen", "127.0.0.1:0", "--store", "memory"]);
            cmd.args(&args);
            if check {
                cmd.arg("check-config");
            }
            let out = cmd.output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains(expected), "{args:?}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
            assert!(out.stdout.is_empty(), "never listening: {args:?}");
        }
    }
}
