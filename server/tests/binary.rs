//! The real `rookery` binary: started as a process on `127.0.0.1:0`, configured by flags and
//! `ROOKERY_*` environment variables, spoken to by a real WebSocket client.

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

struct Server {
    child: Child,
    addr: String,
    driver: String,
    /// Removed when the server is dropped (after `drop` has killed it).
    _data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary and waits for its "rookery listening on ADDR (DRIVER)" line.
fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
    let data = fresh_data_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rookery"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .env("ROOKERY_LOG", "warn")
        .env("ROOKERY_DATA_DIR", data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let (addr, driver) = common::listening(&mut child);
    Server {
        child,
        addr,
        driver,
        _data: data,
    }
}

fn connect(server: &Server, room: &str) -> WebSocket<MaybeTlsStream<TcpStream>> {
    let (ws, _) = tungstenite::connect(format!("ws://{}/websocket?room={room}", server.addr))
        .expect("connects");
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    ws
}

fn next_json(ws: &mut WebSocket<MaybeTlsStream<TcpStream>>) -> serde_json::Value {
    loop {
        match ws.read().expect("a message") {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => continue,
        }
    }
}

#[test]
fn the_binary_serves_pact_on_the_port_it_reports() {
    let server = start(&["--cores", "2"], &[]);
    assert!(server.driver == "io_uring" || server.driver == "epoll");
    let mut a = connect(&server, "lobby");
    assert_eq!(next_json(&mut a)["type"], "config");
    assert_eq!(next_json(&mut a)["type"], "profile");
    a.send(Message::text(r#"{"type":"subscribe","data":"chat"}"#))
        .unwrap();
    a.send(Message::text(r#"{"type":"chat","data":"hello","ref":1}"#))
        .unwrap();
    let first = next_json(&mut a);
    assert_eq!(first["type"], "chat");
    assert_eq!(first["data"]["message"], "hello");
    assert_eq!(next_json(&mut a), serde_json::json!({"type":"ok","ref":1}));
}

#[test]
fn environment_variables_configure_the_server() {
    let server = start(
        &[],
        &[
            ("ROOKERY_CORES", "1"),
            ("ROOKERY_MAX_MESSAGE_SIZE", "64"),
            ("ROOKERY_DRIVER", "epoll"),
        ],
    );
    assert_eq!(server.driver, "epoll");
    let mut a = connect(&server, "env");
    next_json(&mut a);
    next_json(&mut a);
    a.send(Message::text(format!(
        r#"{{"type":"chat","data":"{}"}}"#,
        "x".repeat(100)
    )))
    .unwrap();
    loop {
        match a.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1009);
                break;
            }
            Ok(_) => continue,
            Err(e) => panic!("expected close 1009, got {e}"),
        }
    }
}

#[test]
fn a_bad_flag_is_refused_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_rookery"))
        .args(["--cores", "many"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cores"));
}

/// A data directory of this test's own (the disk store is the default), removed when
/// dropped.
fn fresh_data_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rookery-test-")
        .tempdir()
        .unwrap()
}
