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

/// Every `expr` of a Grafana dashboard JSON, wherever it is.
fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match v {
                    serde_json::Value::String(s) if k == "expr" => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn the_grafana_dashboard_uses_only_metrics_the_server_exports() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/rookery.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    assert!(all.len() > 10, "{all:?}");
    let addr = server(1);
    let (_, alone) = http(addr, "GET", "/metrics", &[], b"");
    // A node of `--engine redis` exports the Redis metrics too.
    let redis = rookery_tests::redis::TestRedis::start();
    let (_, shared) = http(
        rookery_tests::redis::node(&redis),
        "GET",
        "/metrics",
        &[],
        b"",
    );
    let text = alone + &shared;
    let exported: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let mut used = BTreeSet::new();
    for expr in &all {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("rookery_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            used.insert(name);
        }
    }
    for name in &used {
        assert!(
            exported.contains(name.as_str()),
            "the dashboard uses {name}, which /metrics does not export"
        );
    }
    for wanted in [
        "rookery_connections",
        "rookery_fanout_deliveries_total",
        "rookery_send_queue_bytes",
        "rookery_slow_consumers_total",
        "rookery_error_frames_total",
        "rookery_store_healthy",
        "rookery_redis_up",
    ] {
        assert!(
            used.contains(wanted),
            "the dashboard has no panel on {wanted}"
        );
    }
}
