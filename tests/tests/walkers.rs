//! jac `walker` events round-trip through a real HTTP backend.

use rookery_tests::*;
use serde_json::{json, Value};
use std::time::Duration;

/// A server calling walkers at `url`, each call within `deadline_ms`.
fn walker_server(url: &str, deadline_ms: u64) -> std::net::SocketAddr {
    let url = url.to_owned();
    server_with(2, move |c| {
        c.backend_url = Some(url);
        c.jwt_secret = Some(JWT_SECRET.into());
        c.backend_timeout_ms = deadline_ms;
    })
}

/// The deadline of calls that must not time out: the backend answers at once, but the
/// machine may be busy.
const GENEROUS_MS: u64 = 4_000;

fn jac(addr: std::net::SocketAddr, query: &str) -> Client {
    let mut c = Client::connect(addr, &format!("/jac/websocket{query}"));
    c.recv_type("connection");
    c
}

#[test]
fn a_walker_with_response_gets_the_backends_answer() {
    let backend = TestBackend::start(|r| {
        let ctx = r.json()["context"].clone();
        (
            200,
            json!({"status":200,"reports":[{"echo": ctx}]}).to_string(),
            Duration::ZERO,
        )
    });
    let addr = walker_server(&backend.url, GENEROUS_MS);
    let mut c = jac(addr, &format!("?token={}", token("n::walker")));
    c.send(json!({"type":"walker","walker":"your_event_name","response":true,"context":{"val":1}}));
    assert_eq!(
        c.recv(),
        json!({"status":200,"reports":[{"echo":{"val":1}}]})
    );
    let got = backend.wait_for(|r| r.url == "/walker/your_event_name");
    let body = got.json();
    assert_eq!(body["root_id"], "n::walker");
    assert_eq!(body["authenticated"], true);
    assert_eq!(body["context"], json!({"val":1}));
    assert_eq!(got.header("x-rookery-root-id"), Some("n::walker"));
    // Without `response`, nothing comes back.
    c.send(json!({"type":"walker","walker":"quiet","context":{}}));
    backend.wait_for(|r| r.url == "/walker/quiet");
    c.expect_silence(200);
}

#[test]
fn backend_errors_and_timeouts_become_walker_error_frames() {
    let backend = TestBackend::start(|r| match r.url.as_str() {
        "/walker/broken" => (500, "boom".into(), Duration::ZERO),
        // Answers long after any deadline here: the deadline never races the answer.
        "/walker/slow" => (200, "{}".into(), Duration::from_secs(600)),
        _ => (200, "not json".into(), Duration::ZERO),
    });
    let addr = walker_server(&backend.url, GENEROUS_MS);
    let mut c = jac(addr, "");
    c.send(json!({"type":"walker","walker":"broken","response":true}));
    let e = c.recv_type("walker");
    assert!(e["error"].as_str().unwrap().contains("500"), "{e}");
    c.send(json!({"type":"walker","walker":"garbled","response":true}));
    let e = c.recv_type("walker");
    assert!(e["error"].as_str().unwrap().contains("JSON"), "{e}");
    // The connection still works.
    c.send(json!({"type":"connection"}));
    let info: Value = c.recv_type("connection");
    assert_eq!(info["data"]["root_id"], "n::000000000000000000000001");

    // A short deadline, well within the wait for the error frame.
    let addr = walker_server(&backend.url, 500);
    let mut c = jac(addr, "");
    c.send(json!({"type":"walker","walker":"slow","response":true}));
    let e = c.recv_type("walker");
    assert!(e["error"].as_str().unwrap().contains("time"), "{e}");
    // The connection still works.
    c.send(json!({"type":"connection"}));
    let info: Value = c.recv_type("connection");
    assert_eq!(info["data"]["root_id"], "n::000000000000000000000001");
}

#[test]
fn an_unreachable_backend_is_reported() {
    // Refused connections (and their two retries, 150 ms of backoff) are reported as
    // such, long before the deadline.
    let addr = walker_server(&dead_url(), GENEROUS_MS);
    let mut c = jac(addr, "");
    c.send(json!({"type":"walker","walker":"w","response":true}));
    let e = c.recv_type("walker");
    assert!(e["error"].as_str().unwrap().contains("unreachable"), "{e}");
}
