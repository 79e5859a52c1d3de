//! The access log of the real binary: a line per HTTP request and per WebSocket opened
//! and ended, the connection id carried from one to the other, and no query string (it may
//! hold a token).

mod common;

use common::{listening, Running};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use tungstenite::Message;

/// Waits (generously) for a log line containing every one of `needles`.
fn wait_for(lines: &mpsc::Receiver<String>, needles: &[&str]) -> String {
    loop {
        match lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if needles.iter().all(|n| line.contains(n)) => return line,
            Ok(line) => assert!(!line.contains("secret-token"), "a token was logged: {line}"),
            Err(e) => panic!("no line with {needles:?}: {e}"),
        }
    }
}

#[test]
fn requests_and_connections_are_logged_with_the_connection_id() {
    let mut server = Running(
        Command::new(env!("CARGO_BIN_EXE_rookery"))
            .env_clear()
            .args([
                "--listen",
                "127.0.0.1:0",
                "--cores",
                "2",
                "--store",
                "memory",
            ])
            .args(["--log-format", "text", "--log", "info"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (addr, _) = listening(&mut server.0);
    let (tx, lines) = mpsc::channel();
    let stderr = server.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut s = TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "GET /nowhere?token=secret-token HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let _ = s.read_to_end(&mut Vec::new());
    let http = wait_for(&lines, &["rookery::access", "http"]);
    for field in [
        "method=\"GET\"",
        "path=\"/nowhere\"",
        "status=404",
        "peer=127.0.0.1:",
    ] {
        assert!(http.contains(field), "{field} missing: {http}");
    }

    let url = format!("ws://{addr}/websocket?room=logged&token=secret-token");
    let (mut ws, _) = tungstenite::connect(url).unwrap();
    let open = wait_for(&lines, &["ws open"]);
    let conn = open
        .split_whitespace()
        .find(|f| f.starts_with("conn="))
        .unwrap_or_else(|| panic!("no conn in {open}"))
        .to_owned();
    for field in [
        "dialect=\"pact\"",
        "room=\"logged\"",
        "client=",
        "peer=127.0.0.1:",
    ] {
        assert!(open.contains(field), "{field} missing: {open}");
    }
    // A message too large: the server closes with 1009, and both lines name the connection.
    ws.send(Message::text("x".repeat(70_000))).unwrap();
    let close = wait_for(&lines, &["ws close", &format!("{conn} ")]);
    assert!(close.contains("code=1009"), "{close}");
    while ws.read().is_ok() {}
    let end = wait_for(&lines, &["ws end", &format!("{conn} ")]);
    assert!(end.contains("closed_by=server 1009"), "{end}");
}
