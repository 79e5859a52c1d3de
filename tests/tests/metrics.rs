//! `/metrics` as Prometheus reads it: a fixed set of series whatever clients do (no label
//! takes a room, user or connection), errors counted by dialect, and the send-queue gauge
//! back at zero once everything is written.

use rookery_tests::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Every series of a scrape: its name and labels, without the value.
fn series(addr: SocketAddr) -> BTreeSet<String> {
    let (status, text) = http(addr, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.rsplit_once(' ').expect("name value").0.to_owned())
        .collect()
}

fn value(addr: SocketAddr, name: &str) -> u64 {
    let (_, text) = http(addr, "GET", "/metrics", &[], b"");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn series_do_not_grow_with_rooms_users_or_connections() {
    let addr = server(2);
    let before = series(addr);
    let mut clients = Vec::new();
    for i in 0..20 {
        let (mut pact, _) = Client::pact(addr, &format!("room-{i}"));
        pact.send_text("not json");
        pact.recv_type("error");
        clients.push(pact);
        let (mut wsdo, _) = Client::wsdo(addr, &format!("channel-{i}"));
        wsdo.send_text("not json");
        clients.push(wsdo);
        let lambda = Client::connect(addr, "/channels");
        clients.push(lambda);
    }
    let _ = http(addr, "GET", "/api/rooms/room-3", &[], b"");
    let _ = http(addr, "GET", "/nowhere", &[], b"");
    assert_eq!(
        series(addr),
        before,
        "a scrape's series changed with traffic"
    );
    let (_, text) = http(addr, "GET", "/metrics", &[], b"");
    assert!(
        text.contains("rookery_error_frames_total{dialect=\"pact\"} 20\n"),
        "{text}"
    );
}

#[test]
fn the_send_queue_gauge_returns_to_zero() {
    let addr = server(2);
    let (mut a, _) = Client::pact(addr, "queue");
    let (mut b, _) = Client::pact(addr, "queue");
    b.call(json!({"type":"subscribe","data":"chat"}), "s");
    for i in 0..100 {
        a.send(json!({"type":"chat","data":"x".repeat(1000 + i)}));
    }
    for _ in 0..100 {
        b.recv_type("chat");
    }
    drop(a);
    drop(b);
    // Everything was read (or the sockets closed): whatever was queued has gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    while value(addr, "rookery_send_queue_bytes") != 0 {
        assert!(
            Instant::now() < deadline,
            "queued bytes never returned to 0"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
