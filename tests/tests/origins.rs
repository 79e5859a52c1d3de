//! The origin policy (`--allowed-origins`, `--require-origin`; server/src/origin.rs) through
//! the real server: every WebSocket endpoint refuses a page from an origin that is not
//! allowed with `403` and a JSON body, and nothing else happens; allowed pages, the server's
//! own origin and clients without `Origin` get through; the HTTP API answers allowed pages
//! with CORS headers and their preflights with `204`.

use rookery_tests::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Every WebSocket endpoint (SLIP's needs a backend: see its own test).
const ENDPOINTS: [&str; 5] = [
    "/websocket?room=o",
    "/o/listen",
    "/jac/websocket?channel_id=o",
    "/channels",
    "/echo",
];

/// A response's status, head and body (the body: what came before the server closed, or
/// nothing after a `101`, whose connection stays open).
struct Reply {
    status: u16,
    head: String,
    body: String,
}

/// Sends `method path` with `headers` and reads the answer.
fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(text.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = read_some(&mut s, &mut buf).expect("an answer");
        assert!(n > 0, "closed before an answer: {got:?}");
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).into_owned();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    if status != 101 {
        let _ = s.read_to_end(&mut got);
    }
    let body = String::from_utf8_lossy(&got[head_end + 4..]).into_owned();
    Reply { status, head, body }
}

fn upgrade(addr: SocketAddr, path: &str, origin: Option<&str>) -> Reply {
    let mut headers = vec![
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    if let Some(origin) = origin {
        headers.push(("Origin", origin));
    }
    request(addr, "GET", path, &headers)
}

fn error_code(answer: &Reply) -> String {
    let body: Value = serde_json::from_str(&answer.body)
        .unwrap_or_else(|e| panic!("a JSON body ({e}): {:?}", answer.body));
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn server_allowing(origins: Option<&str>, require: bool) -> SocketAddr {
    server_with(1, |c| {
        c.echo_path = Some("/echo".into());
        if let Some(origins) = origins {
            c.allowed_origins = origins.into();
        }
        c.require_origin = require;
    })
}

#[test]
fn every_websocket_endpoint_refuses_other_sites_and_admits_the_rest() {
    let addr = server_allowing(Some("https://app.example.com,https://*.example.org"), false);
    // A member already in the room, who must not notice the refused pages.
    let (mut member, _) = Client::pact(addr, "o");
    for path in ENDPOINTS {
        let refused = upgrade(addr, path, Some("https://evil.example"));
        assert_eq!(refused.status, 403, "{path}: {}", refused.head);
        assert_eq!(error_code(&refused), "origin_not_allowed", "{path}");
        assert!(
            refused.body.contains("evil.example"),
            "{path}: says which origin: {}",
            refused.body
        );
        for origin in [
            Some("https://app.example.com"),
            Some("https://chat.example.org"),
            Some(&format!("http://{addr}")[..]),
            None,
        ] {
            let admitted = upgrade(addr, path, origin);
            assert_eq!(
                admitted.status, 101,
                "{path} from {origin:?}: {}",
                admitted.head
            );
        }
    }
    member.expect_silence(300);
    let (mut other, _) = Client::pact(addr, "o2");
    assert_eq!(
        other.call(serde_json::json!({"type":"chat","data":"still here"}), "1")["type"],
        "ok"
    );
}

#[test]
fn the_default_admits_pages_on_this_machine_only() {
    let addr = server_allowing(None, false);
    for origin in [
        "http://localhost:8000",
        "http://127.0.0.1:5173",
        "http://[::1]:3000",
    ] {
        assert_eq!(
            upgrade(addr, "/websocket", Some(origin)).status,
            101,
            "{origin}"
        );
    }
    for origin in [
        "https://example.com",
        "http://localhost.example.com",
        "null",
    ] {
        let refused = upgrade(addr, "/websocket", Some(origin));
        assert_eq!(refused.status, 403, "{origin}");
        assert_eq!(error_code(&refused), "origin_not_allowed");
    }
    assert_eq!(
        upgrade(addr, "/websocket", None).status,
        101,
        "non-browser clients"
    );
}

#[test]
fn require_origin_refuses_clients_without_one() {
    let addr = server_allowing(Some("https://app.example.com"), true);
    let refused = upgrade(addr, "/websocket", None);
    assert_eq!(refused.status, 403);
    assert_eq!(error_code(&refused), "origin_required");
    let (status, _) = http_get(addr, "/healthz");
    assert_eq!(status, 403, "the HTTP API too");
    assert_eq!(
        upgrade(addr, "/websocket", Some("https://app.example.com")).status,
        101
    );
}

#[test]
fn the_http_api_answers_allowed_pages_with_cors_and_refuses_others() {
    let addr = server_allowing(Some("https://app.example.com"), false);
    let origin = ("Origin", "https://app.example.com");
    let ok = request(addr, "GET", "/healthz", &[origin]);
    assert_eq!(ok.status, 200);
    let head = ok.head.to_ascii_lowercase();
    assert!(
        head.contains("access-control-allow-origin: https://app.example.com"),
        "{head}"
    );
    assert!(head.contains("vary: origin"), "{head}");
    let history = request(addr, "GET", "/api/rooms/r/history", &[origin]);
    assert!(history
        .head
        .to_ascii_lowercase()
        .contains("access-control-allow-origin"));
    let preflight = request(
        addr,
        "OPTIONS",
        "/api/rooms/r/broadcast",
        &[
            origin,
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ),
        ],
    );
    assert_eq!(preflight.status, 204, "{}", preflight.head);
    let head = preflight.head.to_ascii_lowercase();
    assert!(head.contains("access-control-allow-methods: get, post, put, delete"));
    assert!(head.contains("access-control-allow-headers: authorization"));
    // Another site: refused, preflight or not; without Origin: as before, no CORS headers.
    for method in ["GET", "OPTIONS", "POST"] {
        let refused = request(
            addr,
            method,
            "/o/emit",
            &[("Origin", "https://evil.example")],
        );
        assert_eq!(refused.status, 403, "{method}");
        assert_eq!(error_code(&refused), "origin_not_allowed");
        assert!(!refused.head.to_ascii_lowercase().contains("access-control"));
    }
    let plain = request(addr, "GET", "/healthz", &[]);
    assert_eq!(plain.status, 200);
    assert!(!plain.head.to_ascii_lowercase().contains("access-control"));
}

#[test]
fn a_refused_slip_upgrade_never_reaches_the_backend() {
    let backend = TestBackend::start(|_| {
        let accept = serde_json::json!([{"type": "ACCEPT"}]).to_string();
        (200, accept, Duration::ZERO)
    });
    let url = backend.url.clone();
    let addr = server_with(1, |c| {
        c.slip_target_url = Some(url);
        c.slip_jwt_secret = Some("origins-test-secret".into());
        c.backend_timeout_ms = 4_000;
        c.allowed_origins = "https://app.example.com".into();
    });
    let refused = upgrade(addr, "/slip", Some("https://evil.example"));
    assert_eq!(refused.status, 403);
    assert_eq!(error_code(&refused), "origin_not_allowed");
    // An allowed page after it: its consent reaches the backend, and it is the only one.
    let admitted = upgrade(addr, "/slip", Some("https://app.example.com"));
    assert_eq!(admitted.status, 101, "{}", admitted.head);
    let asked = backend.wait_for(|_| true);
    assert!(asked.body.contains("OPEN"), "{}", asked.body);
    assert_eq!(
        backend.received().len(),
        1,
        "the refused upgrade asked nothing"
    );
}
