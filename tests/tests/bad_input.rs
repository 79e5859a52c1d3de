//! Garbage in never takes anything down: each bad input gets its error, and a bystander
//! connection in the same room keeps working throughout.

use rookery_tests::*;
use serde_json::json;

/// A bystander subscribed to chat, and a function proving it still works.
fn bystander(addr: std::net::SocketAddr, room: &str) -> Client {
    let (mut c, _) = Client::pact(addr, room);
    c.call(json!({"type":"subscribe","data":"chat"}), "b");
    c
}

fn still_works(c: &mut Client) {
    c.send(json!({"type":"chat","data":"alive"}));
    assert_eq!(c.recv_type("chat")["data"]["message"], "alive");
}

#[test]
fn oversized_message_closes_with_1009() {
    let addr = server_with(2, |c| c.max_message_size = 1024);
    let mut other = bystander(addr, "big");
    let (mut c, _) = Client::pact(addr, "big");
    c.send_text(&format!(
        "{{\"type\":\"chat\",\"data\":\"{}\"}}",
        "x".repeat(2000)
    ));
    let (code, reason) = c.expect_close();
    assert_eq!(code, 1009);
    assert!(reason.contains("1024"), "{reason}");
    still_works(&mut other);
    wait_for_room(addr, "big", |d| d["count"] == 1);
}

#[test]
fn invalid_utf8_closes_with_1007() {
    let addr = server(2);
    let mut other = bystander(addr, "utf");
    let mut raw = RawClient::connect(addr, "/websocket?room=utf");
    raw.send_frame(0x1, b"{\"type\":\"chat\",\"data\":\"\xff\xfe\"}");
    assert_eq!(raw.read_close().0, 1007);
    still_works(&mut other);
}

#[test]
fn protocol_violations_close_with_1002() {
    let addr = server(2);
    let mut other = bystander(addr, "proto");
    // A reserved opcode.
    let mut raw = RawClient::connect(addr, "/websocket?room=proto");
    raw.send_frame(0x3, b"x");
    assert_eq!(raw.read_close().0, 1002);
    // An unmasked client frame.
    let mut raw = RawClient::connect(addr, "/websocket?room=proto");
    use std::io::Write;
    raw.stream.write_all(&[0x81, 0x02, b'{', b'}']).unwrap();
    assert_eq!(raw.read_close().0, 1002);
    still_works(&mut other);
}

#[test]
fn binary_frames_get_an_error_frame() {
    let addr = server(1);
    let mut raw = RawClient::connect(addr, "/websocket?room=bin");
    raw.read_frame(); // config
    raw.read_frame(); // profile
    raw.send_frame(0x2, b"\x00\x01");
    let (opcode, payload) = raw.read_frame();
    assert_eq!(opcode, 0x1);
    let error: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(error["data"]["code"], "unsupported_data");
    let (mut c, _) = Client::pact(addr, "bin2");
    still_works_after_subscribe(&mut c);
    // The raw client is still connected: the room still counts it.
    wait_for_room(addr, "bin", |d| d["count"] == 1);
}

fn still_works_after_subscribe(c: &mut Client) {
    c.call(json!({"type":"subscribe","data":"chat"}), "x");
    still_works(c);
}

#[test]
fn malformed_messages_get_error_frames_and_the_socket_stays_open() {
    let addr = server(2);
    let (mut c, _) = Client::pact(addr, "junk");
    for junk in [
        "",
        "null",
        "42",
        "\"text\"",
        "[]",
        "{}",
        "{\"type\":null}",
        "{\"type\":\"login\",\"data\":[1]}",
        "{\"type\":\"subscribe\"}",
        "{\"type\":\"poll\",\"data\":{\"id\":{}}}",
        "{\"type\":\"counter\",\"data\":{\"value\":true}}",
        "{\"type\":\"counter\",\"data\":{\"value\":\"NaN\"}}",
        "{\"type\":\"broadcast\",\"data\":{\"type\":\"x\"}}",
        "{\"type\":\"x\",\"ref\":[1]}",
        "{\"type\":\"chat\",\"data\":\"unterminated",
    ] {
        c.send_text(junk);
        let e = c.recv_type("error");
        assert!(e["data"]["code"].is_string(), "{junk} → {e}");
        assert!(e["data"]["message"].is_string());
    }
    still_works_after_subscribe(&mut c);
}

#[test]
fn http_errors_are_json() {
    let addr = server(1);
    let (status, body) = http_get(addr, "/websocket?room=x");
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"]["code"],
        "expected_websocket"
    );
    let (status, body) = http_get(addr, "/no/such/path");
    assert_eq!(status, 404);
    assert!(body.contains("\"error\""));
    let (status, _) = raw_http(addr, b"POST /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status, 405);
    let (status, body) = raw_http(addr, b"\x16\x03\x01 garbage\r\n\r\n");
    assert_eq!(status, 400);
    assert!(body.contains("\"error\""));
    // An upgrade with a bad version or no key: 400 with a JSON reason.
    let (status, body) = raw_http(
        addr,
        b"GET /websocket HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: a\r\n\r\n",
    );
    assert_eq!(status, 400, "{body}");
    let (status, _) = raw_http(
        addr,
        b"GET /websocket HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(status, 400);
    let (status, _) = raw_http(
        addr,
        b"POST /websocket HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    assert_eq!(status, 400);
    let (status, body) = http_get(addr, "/healthz");
    assert_eq!((status, body.as_str()), (200, "{\"status\":\"ok\"}"));
}

#[test]
fn an_incomplete_request_head_times_out_with_408() {
    let addr = server_with(1, |c| c.handshake_timeout_ms = 200);
    let (status, _) = raw_http(addr, b"GET /websocket HTTP/1.1\r\nHost: t\r\n");
    assert_eq!(status, 408);
}
