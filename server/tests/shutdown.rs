//! Graceful shutdown of the real process: SIGTERM drains (readyz 503, new connections
//! refused, every client closed with 1001 within the jitter window) and exits; a second
//! signal exits at once.

mod common;

use common::{listening, signal};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// The server, its address, and its data directory (removed when dropped).
fn start(args: &[&str]) -> (Child, String, tempfile::TempDir) {
    let data = fresh_data_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rookery"))
        .args(["--listen", "127.0.0.1:0", "--cores", "2"])
        .args(args)
        .env("ROOKERY_LOG", "warn")
        .env("ROOKERY_DATA_DIR", data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (addr, _) = listening(&mut child);
    (child, addr, data)
}

fn get(addr: &str, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

fn connect(addr: &str, path: &str) -> WebSocket<MaybeTlsStream<TcpStream>> {
    let (ws, _) = tungstenite::connect(format!("ws://{addr}{path}")).unwrap();
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    ws
}

/// Reads until the server's close frame; answers it (by reading on) and returns the code.
fn close_code(ws: &mut WebSocket<MaybeTlsStream<TcpStream>>) -> (u16, String) {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => {
                let got = (u16::from(f.code), f.reason.to_string());
                while ws.read().is_ok() {}
                return got;
            }
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}

/// Polls `/readyz` until it answers `status` (failing after 10 s): waits on the server,
/// not on time.
fn wait_ready_status(addr: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(addr, "/readyz") != status {
        assert!(Instant::now() < deadline, "/readyz never answered {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> i32 {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(
            Instant::now() < deadline,
            "the process did not exit in time"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_drains_then_exits_cleanly() {
    // The timeout is far above the jitter window: a drain that ends well before it ended
    // because every client was closed, not because the timeout ran out.
    let (mut child, addr, _data) = start(&[
        "--shutdown-jitter-ms",
        "1500",
        "--shutdown-timeout-ms",
        "30000",
    ]);
    let mut clients: Vec<_> = (0..4)
        .map(|i| {
            if i % 2 == 0 {
                connect(&addr, "/websocket?room=bye")
            } else {
                connect(&addr, "/bye/listen")
            }
        })
        .collect();
    assert_eq!(get(&addr, "/readyz"), 200);
    let signalled = Instant::now();
    signal(&child, "TERM");
    wait_ready_status(&addr, 503);
    let mut s = TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "GET /websocket HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(reply.contains("shutting_down"));
    for ws in clients.iter_mut() {
        assert_eq!(close_code(ws), (1001, "server shutting down".to_owned()));
    }
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "closed within the jitter window, not at the timeout (30 s)"
    );
    assert_eq!(wait_exit(&mut child, Duration::from_secs(15)), 0);
}

#[test]
fn a_second_signal_exits_at_once() {
    let (mut child, addr, _data) = start(&[
        "--shutdown-jitter-ms",
        "20000",
        "--shutdown-timeout-ms",
        "30000",
    ]);
    let _ws = connect(&addr, "/websocket?room=stuck");
    signal(&child, "TERM");
    // The first signal is handled (draining) before the second is sent.
    wait_ready_status(&addr, 503);
    assert!(child.try_wait().unwrap().is_none(), "still draining");
    let second = Instant::now();
    signal(&child, "INT");
    // At once: long before the 20 s jitter window would close the client.
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), 1);
    assert!(second.elapsed() < Duration::from_secs(10));
}

#[test]
fn sigterm_with_no_clients_exits_at_once() {
    let (mut child, _addr, _data) = start(&["--shutdown-timeout-ms", "60000"]);
    signal(&child, "TERM");
    // At once: nothing to drain, long before the 60 s timeout.
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), 0);
}

/// A data directory of this test's own (the disk store is the default), removed when
/// dropped.
fn fresh_data_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rookery-test-")
        .tempdir()
        .unwrap()
}
