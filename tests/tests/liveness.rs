//! Heartbeats, half-open sockets and slow consumers.

use rookery_tests::*;
use serde_json::json;
use std::io::Read;
use std::time::{Duration, Instant};
use tungstenite::Message;

#[test]
fn the_server_pings_at_the_configured_interval() {
    // Twelve missed intervals (3 s) close a silent client: a margin for this client's
    // thread to be scheduled late on a busy machine, shorter than the silence below.
    let addr = server_with(2, |c| {
        c.ping_interval_ms = 250;
        c.ping_missed = 12;
    });
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
    // A client that answers (tungstenite answers protocol pings) stays connected, for
    // longer than a silent one would (3 s).
    c.expect_silence(4_000);
    c.send(json!({"type":"pong"}));
    assert_eq!(c.call(json!({"type":"profile"}), "p")["type"], "profile");
}

#[test]
fn a_silent_half_open_client_is_closed_and_removed() {
    // No WebSocket client watches it (one would itself have to answer the server's pings
    // in time on a busy machine): its own socket's end and the room's details tell.
    let addr = server_with(2, |c| {
        c.ping_interval_ms = 250;
        c.ping_missed = 4;
        c.close_grace_ms = 100;
    });
    // Upgrade, then never write again (reading answers no ping): like a peer that vanished.
    // It must not be closed before 4 intervals (1 s) from its upgrade, which comes after
    // `started`.
    let started = Instant::now();
    let raw = RawClient::connect(addr, "/websocket?room=halfopen");
    // The server ends the silent socket: its close frame, then EOF.
    let mut stream = raw.stream;
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
    assert!(
        // (less a little: the server's clock is the wall clock in whole milliseconds)
        started.elapsed() >= Duration::from_millis(900),
        "closed too early"
    );
    // And removes it from the room.
    wait_for_room(addr, "halfopen", |d| d["count"] == 0);
    assert!(
        sink.windows(2).any(|w| w == [0x88, 14]),
        "a close frame with 'ping timeout'"
    );
}

#[test]
fn a_subscriber_that_stops_reading_is_dropped_and_others_keep_up() {
    const BOUND: usize = 1 << 20;
    let addr = server_with(2, |c| {
        c.max_outbound_bytes = BOUND;
        // This test is about backpressure: the publisher outpaces the default rate limit.
        c.max_message_rate = 0;
        // The slow one is read at the end, to see its close frame: its socket must not be
        // shut down before, however long the publishing took.
        c.close_grace_ms = 600_000;
    });
    let room = "slow";
    let (mut fast, _) = Client::pact(addr, room);
    fast.call(json!({"type":"subscribe","data":"chat"}), "f");
    // The slow one subscribes, then never reads again.
    let (mut slow, _) = Client::pact(addr, room);
    slow.call(json!({"type":"subscribe","data":"chat"}), "s");
    let (mut publisher, _) = Client::pact(addr, room);
    let payload = "p".repeat(4 * 1024);
    // Published in windows of 32 (about 135 KB, an eighth of the bound): the next window
    // only once the fast one has read this one, so it is never further behind than that,
    // however slow the machine. At least 16 MB, more than the loopback socket buffers plus
    // the bound absorb; on until the slow one is closed, but not past 64 MB.
    let (window, at_least, at_most) = (32, 4000, 16_000);
    let mut sent = 0;
    while sent < at_least || metric(addr, "rookery_slow_consumers_total") < 1 {
        assert!(
            sent < at_most,
            "{sent} messages sent and the slow consumer is still open: the outbound bound \
             is not enforced"
        );
        for i in sent..sent + window {
            publisher.send(json!({"type":"chat","data":{"i":i,"p":payload}}));
        }
        // The room owner never waits for the slow one: else this window never arrives.
        for i in sent..sent + window {
            let m = fast.recv_type("chat");
            assert_eq!(m["data"]["message"]["i"], i, "every message, in order");
        }
        sent += window;
    }
    assert_eq!(metric(addr, "rookery_slow_consumers_total"), 1);
    // The slow one got what its socket buffers held, in order, then its close frame.
    let mut got = 0;
    let (code, reason) = slow.expect_close_after(|m| {
        if let Message::Text(t) = m {
            let m: serde_json::Value = serde_json::from_str(&t).unwrap();
            if m["type"] == "chat" {
                assert_eq!(m["data"]["message"]["i"], got, "in order");
                got += 1;
            }
        }
    });
    assert_eq!(
        (code, reason),
        (
            1008,
            format!("slow consumer: more than {BOUND} bytes queued")
        )
    );
    assert!(got < sent, "frames past the bound were dropped");
    // The slow consumer was dropped: only the fast one and the publisher remain.
    wait_for_room(addr, room, |d| d["count"] == 2);
}
