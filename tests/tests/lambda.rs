//! Seed 004 (the Websocket Lambda Channel Server) over real sockets.

use rookery_tests::*;
use serde_json::json;

fn lambda(addr: std::net::SocketAddr) -> Client {
    Client::connect(addr, "/channels")
}

#[test]
fn publish_before_join_fails_and_bad_joins_fail() {
    let addr = server(2);
    let mut c = lambda(addr);
    c.send(json!({"type":"publish","data":"hi"}));
    let f = c.recv_type("publishFailure");
    assert!(f["data"].as_str().unwrap().contains("join"));
    for bad in [
        json!({"type":"join"}),
        json!({"type":"join","channelId":""}),
        json!({"type":"join","channelId":5}),
    ] {
        c.send(bad);
        assert_eq!(c.recv(), json!({"type":"joinFailure"}));
    }
}

#[test]
fn publish_reaches_every_member_sender_included_then_success() {
    let addr = server(2);
    let mut a = lambda(addr);
    let mut b = lambda(addr);
    a.send(json!({"type":"join","channelId":"room-1"}));
    assert_eq!(a.recv(), json!({"type":"joinSuccess"}));
    b.send(json!({"type":"join","channelId":"room-1"}));
    assert_eq!(b.recv(), json!({"type":"joinSuccess"}));
    a.send(json!({"type":"publish","data":{"text":"hello"}}));
    let mine = a.recv_type("message");
    let sender = mine["senderId"].as_str().unwrap().to_owned();
    assert_eq!(sender.len(), 21);
    assert!(sender
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'));
    assert_eq!(mine["data"], json!({"text":"hello"}));
    assert_eq!(a.recv(), json!({"type":"publishSuccess"}));
    let theirs = b.recv_type("message");
    assert_eq!(theirs["senderId"], sender.as_str());
    b.expect_silence(100);
}

#[test]
fn a_join_replaces_the_channel_with_a_fresh_sender_id() {
    let addr = server(2);
    let mut a = lambda(addr);
    let mut old = lambda(addr);
    let mut new = lambda(addr);
    for (c, ch) in [(&mut a, "one"), (&mut old, "one"), (&mut new, "two")] {
        c.send(json!({"type":"join","channelId":ch}));
        c.recv_type("joinSuccess");
    }
    a.send(json!({"type":"publish","data":1}));
    let first = a.recv_type("message")["senderId"].clone();
    a.recv_type("publishSuccess");
    old.recv_type("message");
    a.send(json!({"type":"join","channelId":"two"}));
    a.recv_type("joinSuccess");
    a.send(json!({"type":"publish","data":2}));
    let second = a.recv_type("message")["senderId"].clone();
    assert_ne!(first, second, "a fresh senderId per join");
    assert_eq!(new.recv_type("message")["data"], 2);
    old.expect_silence(150);
    wait_for_room(addr, "one", |d| d["count"] == 1);
}

#[test]
fn ping_pong_echoes_data_and_bad_input_is_reported() {
    let addr = server(1);
    let mut c = lambda(addr);
    c.send(json!({"type":"ping","data":{"t":123}}));
    assert_eq!(c.recv(), json!({"type":"pong","data":{"t":123}}));
    c.send(json!({"type":"ping"}));
    assert_eq!(c.recv(), json!({"type":"pong"}));
    c.send_text("{nope");
    assert_eq!(
        c.recv_type("error")["data"]
            .as_str()
            .map(|s| s.contains("JSON")),
        Some(true)
    );
    c.send(json!({"type":"leave"}));
    assert_eq!(c.recv_type("error")["type"], "error");
    c.send(json!({"type":"ping","data":1}));
    assert_eq!(c.recv(), json!({"type":"pong","data":1}));
}
