//! Heartbeats, half-open sockets and slow consumers.

use rookery_tests::*;
use serde_json::json;
use std::io::Read;
use std::time::{Duration, Instant};
use tungstenite::Message;

#[test]
fn the_server_pings_at_the_configured_interval() {
    let addr = server_with(2, |c| c.ping_interval_ms = 150);
    let (mut c, _) = Client::pact(addr, "pings");
    let started = Instant::now();
    let (mut app, mut proto) = (false, false);
    while !(app && proto) {
        match c.read().unwrap() {
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "ping" {
                    assert!(v["data"].as_u64().unwrap() > 1_600_000_000_000, "epoch ms");
                    app = true;
                }
            }
            Message::Ping(_) => proto = true,
            _ => {}
        }
        assert!(started.elapsed() < WAIT);
    }
    // A client that answers (tungstenite answers protocol pings) stays connected.
    c.expect_silence(600);
    c.send(json!({"type":"pong"}));
    assert_eq!(c.call(json!({"type":"profile"}), "p")["type"], "profile");
}

#[test]
fn a_silent_half_open_client_is_closed_and_removed() {
    let addr = server_with(2, |c| {
        c.ping_interval_ms = 100;
        c.close_grace_ms = 100;
    });
    let (mut watcher, _) = Client::pact(addr, "halfopen");
    watcher.send(json!({"type":"subscribe","data":"presence"}));
    watcher.recv_type("presence");
    // Upgrade, then never read or write again: like a peer that vanished.
    let raw = RawClient::connect(addr, "/websocket?room=halfopen");
    watcher.recv_type("presence:joined");
    let started = Instant::now();
    // The watcher keeps answering pings through tungstenite as it reads.
    let left = watcher.recv_type("presence:left");
    assert_eq!(left["data"]["count"], 1);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "closed too early"
    );
    // The server ended the silent socket (EOF after its close frame).
    let mut stream = raw.stream;
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
    assert!(
        sink.windows(2).any(|w| w == [0x88, 14]),
        "a close frame with 'ping timeout'"
    );
}

#[test]
fn a_subscriber_that_stops_reading_is_dropped_and_others_keep_up() {
    let addr = server_with(2, |c| {
        c.max_outbound_bytes = 1 << 20;
        // This test is about backpressure: the publisher outpaces the default rate limit.
        c.max_message_rate = 0;
    });
    let room = "slow";
    let (mut fast, _) = Client::pact(addr, room);
    fast.call(json!({"type":"subscribe","data":"chat"}), "f");
    // The slow one subscribes, then never reads again.
    let (mut slow, _) = Client::pact(addr, room);
    slow.call(json!({"type":"subscribe","data":"chat"}), "s");
    let (mut publisher, _) = Client::pact(addr, room);
    let payload = "p".repeat(4 * 1024);
    // 16 MB in all: more than the loopback socket buffers plus the 1 MiB bound, published
    // at a pace (about 20 MB/s) a reading client keeps up with.
    let messages = 4000;
    let reader = std::thread::spawn(move || {
        for i in 0..messages {
            let m = fast.recv_type("chat");
            assert_eq!(m["data"]["message"]["i"], i);
        }
        fast
    });
    let started = Instant::now();
    for i in 0..messages {
        publisher.send(json!({"type":"chat","data":{"i":i,"p":payload}}));
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let publish_time = started.elapsed();
    let _fast = reader
        .join()
        .expect("the reading subscriber got every message in order");
    // The slow consumer was dropped: only the fast one and the publisher remain.
    wait_for_room(addr, room, |d| d["count"] == 2);
    assert!(
        publish_time < Duration::from_secs(20),
        "the publisher was held up"
    );
    drop(slow);
}
