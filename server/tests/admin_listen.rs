//! `--admin-listen` with the real binary: `/metrics` and the admin API answer only on the
//! operator listener; the public one answers them 404 with a JSON body and serves clients
//! as before; the operator listener serves nothing else but the health checks.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

const KEY: &str = "operator-key";

/// One HTTP request over a fresh connection: status and body.
fn http(addr: &str, method: &str, path: &str, extra: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}content-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

fn admin_auth() -> String {
    format!("authorization: Bearer {KEY}\r\n")
}

#[test]
fn operator_routes_answer_on_the_admin_listener_only() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rookery"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--store",
            "memory",
            "--cores",
            "2",
        ])
        .args(["--admin-listen", "127.0.0.1:0", "--admin-key", KEY])
        .env("ROOKERY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let public = first
        .strip_prefix("rookery listening on ")
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    let second = lines.next().unwrap().unwrap();
    let admin = second
        .strip_prefix("rookery admin listening on ")
        .unwrap_or_else(|| panic!("{second}"))
        .to_owned();
    let _running = common::Running(child);
    assert_ne!(public, admin);

    let notify = r#"{"channels":["r"],"data":{"x":1}}"#;
    let operator = [
        ("GET", "/metrics", String::new(), ""),
        ("POST", "/api/notify", admin_auth(), notify),
        (
            "POST",
            "/api/rooms/r/broadcast",
            admin_auth(),
            r#"{"type":"t","data":1}"#,
        ),
        ("PUT", "/api/rooms/r/config", admin_auth(), "{}"),
        ("DELETE", "/api/clients/nobody", admin_auth(), ""),
        // The web console: its page and its data.
        ("GET", "/console", String::new(), ""),
        ("GET", "/console/api/session", admin_auth(), ""),
    ];
    for (method, path, extra, body) in &operator {
        let (status, answer) = http(&public, method, path, extra, body);
        assert_eq!(
            status, 404,
            "{method} {path} on the public listener: {answer}"
        );
        let json: serde_json::Value = serde_json::from_str(&answer).expect("a JSON body");
        assert_eq!(json["error"]["message"], "no such route", "{answer}");
        let (status, answer) = http(&admin, method, path, extra, body);
        // Served (a client id that is not connected is the route's own 404).
        assert!(
            !answer.contains("no such route"),
            "{method} {path} on the admin listener: {status} {answer}"
        );
    }
    let (status, page) = http(&admin, "GET", "/metrics", "", "");
    assert_eq!(status, 200);
    assert!(page.contains("rookery_connections"), "{page}");
    let (status, _) = http(&admin, "POST", "/api/notify", "", notify);
    assert_eq!(status, 401, "the admin key is still required");
    let (status, page) = http(&admin, "GET", "/console", "", "");
    assert_eq!(
        status, 200,
        "the console's page on the admin listener: {page}"
    );
    assert_eq!(
        http(&admin, "GET", "/console/api/session", &admin_auth(), "").0,
        200
    );
    assert_eq!(http(&admin, "GET", "/console/api/session", "", "").0, 401);
    // Methods the admin routes do not take are the admin listener's to refuse, too.
    assert_eq!(http(&public, "POST", "/metrics", "", "").0, 404);
    assert_eq!(http(&admin, "POST", "/metrics", "", "").0, 405);

    // Clients are served on the public listener only; health on both.
    assert_eq!(http(&public, "GET", "/api/rooms/r", "", "").0, 200);
    assert_eq!(http(&admin, "GET", "/api/rooms/r", "", "").0, 404);
    for path in ["/healthz", "/readyz"] {
        assert_eq!(http(&public, "GET", path, "", "").0, 200, "{path}");
        assert_eq!(http(&admin, "GET", path, "", "").0, 200, "{path}");
    }
    let upgrade = "upgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    assert_eq!(http(&admin, "GET", "/websocket?room=r", upgrade, "").0, 404);
    let (ws, _) = tungstenite::connect(format!("ws://{public}/websocket?room=r")).expect("public");
    drop(ws);
}

#[test]
fn an_admin_address_in_use_refuses_to_start_naming_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_rookery"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--store",
            "memory",
            "--admin-listen",
            &addr,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--admin-listen") && stderr.contains(&addr),
        "{stderr}"
    );
}
