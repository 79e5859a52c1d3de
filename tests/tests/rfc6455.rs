//! RFC 6455 conformance, written from the RFC, against the real server over raw TCP. Each
//! case asserts the exact close code or reply. The Autobahn|Testsuite (`scripts/autobahn.sh`)
//! runs where its tool is installed; every bug it found has a case here, so this suite keeps
//! catching it where the tool is absent.

use rookery_tests::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;

const FIN: u8 = 0x80;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONT: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A raw client in `room`, past the `config` and `profile` frames, subscribed to chat.
fn client(addr: std::net::SocketAddr, room: &str) -> RawClient {
    let mut c = RawClient::connect(addr, &format!("/websocket?room={room}"));
    c.read_frame();
    c.read_frame();
    c.send_raw(
        FIN | TEXT,
        br#"{"type":"subscribe","data":"chat","ref":"s"}"#,
        true,
    );
    let (op, ok) = c.read_frame();
    assert_eq!((op, json(&ok)), (TEXT, json!({"type":"ok","ref":"s"})));
    c
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| panic!("not JSON: {bytes:?}"))
}

fn chat(text: &str) -> Vec<u8> {
    json!({"type":"chat","data":text}).to_string().into_bytes()
}

/// The chat message the server sends back for `text`.
fn expect_chat(c: &mut RawClient, text: &str) {
    let (op, payload) = c.next_frame_skipping(&[PING, PONG]);
    assert_eq!(op, TEXT);
    assert_eq!(json(&payload)["data"]["message"], text);
}

fn expect_close(c: &mut RawClient, code: u16) {
    let (got, reason) = c.read_close();
    assert_eq!(got, code, "reason: {reason}");
}

#[test]
fn payload_lengths_of_7_16_and_64_bits() {
    let addr = server_with(1, |c| c.max_message_size = 256 * 1024);
    let mut c = client(addr, "len");
    for n in [10, 125, 126, 1_000, 65_535, 65_536, 100_000] {
        let text = "x".repeat(n);
        c.send_raw(FIN | TEXT, &chat(&text), true);
        expect_chat(&mut c, &text);
    }
}

#[test]
fn client_frames_must_be_masked() {
    let addr = server(1);
    let mut c = client(addr, "mask");
    c.send_raw(FIN | TEXT, &chat("x"), false);
    expect_close(&mut c, 1002);
}

#[test]
fn reserved_bits_without_an_extension_fail_the_connection() {
    let addr = server(1);
    for rsv in [0x40, 0x20, 0x10] {
        let mut c = client(addr, "rsv");
        c.send_raw(FIN | rsv | TEXT, &chat("x"), true);
        expect_close(&mut c, 1002);
    }
}

#[test]
fn reserved_opcodes_fail_the_connection() {
    let addr = server(1);
    for opcode in [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        let mut c = client(addr, "op");
        c.send_raw(FIN | opcode, b"x", true);
        expect_close(&mut c, 1002);
    }
}

#[test]
fn ping_is_answered_with_the_same_payload() {
    let addr = server(1);
    let mut c = client(addr, "ping");
    for payload in [&b""[..], b"hello", &[7u8; 125]] {
        c.send_raw(FIN | PING, payload, true);
        let (op, got) = c.read_frame();
        assert_eq!((op, got.as_slice()), (PONG, payload));
    }
    // An unsolicited pong is fine and answered by nothing.
    c.send_raw(FIN | PONG, b"x", true);
    c.send_raw(FIN | TEXT, &chat("after pong"), true);
    expect_chat(&mut c, "after pong");
}

#[test]
fn control_frames_are_short_and_never_fragmented() {
    let addr = server(1);
    let mut c = client(addr, "ctl");
    c.send_raw(FIN | PING, &[1u8; 126], true);
    expect_close(&mut c, 1002);
    let mut c = client(addr, "ctl");
    c.send_raw(PING, b"no fin", true);
    expect_close(&mut c, 1002);
}

#[test]
fn fragmented_messages_with_interleaved_control_frames() {
    let addr = server(1);
    let mut c = client(addr, "frag");
    let whole = chat("fragmented hello");
    let (a, rest) = whole.split_at(5);
    let (b, d) = rest.split_at(10);
    c.send_raw(TEXT, a, true);
    c.send_raw(FIN | PING, b"mid", true);
    c.send_raw(CONT, b, true);
    c.send_raw(FIN | CONT, d, true);
    let (op, payload) = c.read_frame();
    assert_eq!(
        (op, payload.as_slice()),
        (PONG, &b"mid"[..]),
        "the ping is answered at once"
    );
    expect_chat(&mut c, "fragmented hello");
}

#[test]
fn bad_fragment_sequences_fail_the_connection() {
    let addr = server(1);
    let mut c = client(addr, "seq");
    c.send_raw(FIN | CONT, b"orphan", true);
    expect_close(&mut c, 1002);
    let mut c = client(addr, "seq");
    c.send_raw(TEXT, b"{\"type\":", true);
    c.send_raw(FIN | TEXT, b"new message while one is open", true);
    expect_close(&mut c, 1002);
}

#[test]
fn utf8_is_checked_across_fragment_boundaries() {
    let addr = server(1);
    let mut c = client(addr, "utf8");
    // "é" (C3 A9) split between two fragments is valid.
    let whole = chat("café");
    let split = whole.iter().position(|&b| b == 0xC3).unwrap() + 1;
    c.send_raw(TEXT, &whole[..split], true);
    c.send_raw(FIN | CONT, &whole[split..], true);
    expect_chat(&mut c, "café");
    // A lone continuation byte after a fragment boundary is not.
    let mut c = client(addr, "utf8");
    c.send_raw(TEXT, b"{\"type\":\"chat\",\"data\":\"a", true);
    c.send_raw(FIN | CONT, b"\xA9\"}", true);
    expect_close(&mut c, 1007);
    let mut c = client(addr, "utf8");
    c.send_raw(FIN | TEXT, b"\xed\xa0\x80", true); // a UTF-16 surrogate: invalid UTF-8
    expect_close(&mut c, 1007);
}

#[test]
fn the_close_handshake_echoes_and_ends_the_connection() {
    let addr = server(1);
    let mut c = client(addr, "close");
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    c.send_raw(FIN | CLOSE, &payload, true);
    let (op, reply) = c.read_frame();
    assert_eq!(op, CLOSE);
    assert_eq!(u16::from_be_bytes([reply[0], reply[1]]), 1000);
    let mut rest = Vec::new();
    c.stream.read_to_end(&mut rest).unwrap();
    assert!(
        rest.is_empty(),
        "the server closes the TCP connection after the handshake"
    );
    // An empty close is answered with an empty close.
    let mut c = client(addr, "close");
    c.send_raw(FIN | CLOSE, b"", true);
    let (op, reply) = c.read_frame();
    assert_eq!((op, reply.len()), (CLOSE, 0));
}

#[test]
fn invalid_close_frames_fail_the_connection() {
    let addr = server(1);
    for payload in [
        vec![0x03],                     // one byte: no room for a code
        999u16.to_be_bytes().to_vec(),  // below the range
        1005u16.to_be_bytes().to_vec(), // reserved: must not be sent
        1006u16.to_be_bytes().to_vec(), // reserved: must not be sent
        5000u16.to_be_bytes().to_vec(), // above the range
    ] {
        let mut c = client(addr, "badclose");
        c.send_raw(FIN | CLOSE, &payload, true);
        expect_close(&mut c, 1002);
    }
    let mut c = client(addr, "badclose");
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"\xff");
    c.send_raw(FIN | CLOSE, &payload, true);
    // RFC 6455 §8.1: invalid UTF-8 fails the connection; 1007 says why.
    expect_close(&mut c, 1007);
}

#[test]
fn messages_over_the_limit_close_with_1009_even_when_fragmented() {
    let addr = server_with(1, |c| c.max_message_size = 1000);
    let mut c = client(addr, "big");
    c.send_raw(FIN | TEXT, &vec![b' '; 1001], true);
    expect_close(&mut c, 1009);
    let mut c = client(addr, "big");
    c.send_raw(TEXT, &[b' '; 600], true);
    c.send_raw(FIN | CONT, &[b' '; 600], true);
    expect_close(&mut c, 1009);
}

#[test]
fn the_upgrade_request_is_validated() {
    let addr = server(1);
    let base = "Host: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    for (request, status) in [
        (format!("GET /websocket HTTP/1.1\r\n{base}{key}Sec-WebSocket-Version: 12\r\n\r\n"), 400),
        (format!("GET /websocket HTTP/1.1\r\n{base}Sec-WebSocket-Version: 13\r\n\r\n"), 400),
        (format!("POST /websocket HTTP/1.1\r\n{base}{key}Sec-WebSocket-Version: 13\r\n\r\n"), 400),
        (format!("GET /websocket HTTP/1.0\r\n{base}{key}Sec-WebSocket-Version: 13\r\n\r\n"), 400),
        (format!("GET /websocket HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n{key}Sec-WebSocket-Version: 13\r\n\r\n"), 400),
    ] {
        let (got, body) = raw_http(addr, request.as_bytes());
        assert_eq!(got, status, "{request}");
        assert!(body.contains("\"error\""), "{body}");
    }
    // The accept key is the one RFC 6455 §1.3 gives for this nonce.
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(
        format!("GET /websocket HTTP/1.1\r\n{base}{key}Sec-WebSocket-Version: 13\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut head = [0u8; 512];
    let n = read_some(&mut s, &mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
}

/// A server with the echo endpoint at `/echo` (and `tweak` applied).
fn echo_server(tweak: impl FnOnce(&mut rookery::Config)) -> std::net::SocketAddr {
    server_with(1, |c| {
        c.echo_path = Some("/echo".into());
        tweak(c);
    })
}

#[test]
fn the_echo_endpoint_sends_every_message_back_with_its_opcode() {
    let addr = echo_server(|_| {});
    let mut c = RawClient::connect(addr, "/echo");
    c.send_raw(FIN | TEXT, "not JSON: é".as_bytes(), true);
    assert_eq!(c.read_frame(), (TEXT, "not JSON: é".as_bytes().to_vec()));
    c.send_raw(FIN | BINARY, &[0, 0xff, 0xfe], true);
    assert_eq!(c.read_frame(), (BINARY, vec![0, 0xff, 0xfe]));
    c.send_raw(BINARY, b"frag", true);
    c.send_raw(CONT, b"men", true);
    c.send_raw(FIN | CONT, b"ted", true);
    assert_eq!(c.read_frame(), (BINARY, b"fragmented".to_vec()));
    c.send_raw(FIN | TEXT, b"", true);
    assert_eq!(c.read_frame(), (TEXT, Vec::new()));
    // The same protocol checks as every endpoint.
    c.send_raw(FIN | TEXT, b"\xff", true);
    expect_close(&mut c, 1007);
    // A plain GET is told to upgrade; without the flag there is no such endpoint.
    let (status, body) = http_get(addr, "/echo");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("expected_websocket"), "{body}");
    let plain = server(1);
    let request = "GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Sec-WebSocket-Version: 13\r\n\r\n";
    let (status, _) = raw_http(plain, request.as_bytes());
    assert_eq!(status, 404, "the echo endpoint is off unless asked for");
}

/// Autobahn 5.6, 5.7, 5.19, 5.20 (found by the suite): a ping that arrives while a
/// fragmented message is being completed was answered only after the completed message had
/// been handled, when the rest of the message came in the same read. RFC 6455 §5.5.2 wants
/// the pong "as soon as practical": it must come first.
#[test]
fn a_ping_inside_a_fragmented_message_is_answered_before_the_message_is_handled() {
    let addr = echo_server(|_| {});
    let mut c = RawClient::connect(addr, "/echo");
    for (kind, first, last) in [
        (TEXT, &b"fragment1"[..], &b"fragment2"[..]),
        (BINARY, b"\x01", b"\x02"),
    ] {
        c.send_together(&[(kind, first), (FIN | PING, b"pongme!"), (FIN | CONT, last)]);
        assert_eq!(
            c.read_frame(),
            (PONG, b"pongme!".to_vec()),
            "the pong comes first"
        );
        assert_eq!(c.read_frame(), (kind, [first, last].concat()));
    }
    // Two pings inside one message, each answered, in order, before it.
    c.send_together(&[
        (TEXT, b"a"),
        (FIN | PING, b"1"),
        (CONT, b"b"),
        (FIN | PING, b"2"),
        (FIN | CONT, b"c"),
    ]);
    assert_eq!(c.read_frame(), (PONG, b"1".to_vec()));
    assert_eq!(c.read_frame(), (PONG, b"2".to_vec()));
    assert_eq!(c.read_frame(), (TEXT, b"abc".to_vec()));
}

/// The same in a room dialect whose messages wait on a backend (SLIP): the pong is not held
/// while the backend answers the message the ping interrupted.
#[test]
fn a_ping_is_not_held_behind_a_backend_call() {
    let backend = TestBackend::start(|r| {
        let kind = r.json()[0]["type"].as_str().unwrap_or("").to_owned();
        match kind.as_str() {
            "OPEN" => (200, json!([{"type":"ACCEPT"}]).to_string(), Duration::ZERO),
            "TEXT" => {
                let data = r.json()[0]["data"].as_str().unwrap_or("").to_owned();
                let answer = json!([{"type":"TEXT","data":data}]).to_string();
                // A slow backend: the pong must not wait for it.
                (200, answer, Duration::from_millis(500))
            }
            _ => (200, "[]".into(), Duration::ZERO),
        }
    });
    let target = backend.url.clone();
    let addr = server_with(1, move |c| c.slip_target_url = Some(target));
    let mut c = RawClient::connect(addr, "/slip");
    c.send_together(&[(TEXT, b"hel"), (FIN | PING, b"p"), (FIN | CONT, b"lo")]);
    assert_eq!(
        c.read_frame(),
        (PONG, b"p".to_vec()),
        "the pong comes first"
    );
    assert_eq!(c.read_frame(), (TEXT, b"hello".to_vec()));
}

/// Found with the suite's 16 MiB messages: a frame larger than `--max-outbound-bytes` closed
/// its own connection as a slow consumer (1008), so one legitimate message of the largest
/// size allowed could not be sent back (an echo frame is the message plus its header; a
/// room's event is the message plus its envelope). A frame onto an empty queue is taken.
#[test]
fn one_message_of_the_largest_size_does_not_close_its_connection() {
    const LIMIT: usize = 256 * 1024;
    let addr = echo_server(|c| {
        c.max_message_size = LIMIT;
        c.max_outbound_bytes = LIMIT;
    });
    let mut c = RawClient::connect(addr, "/echo");
    let big = vec![b'x'; LIMIT];
    for kind in [TEXT, BINARY] {
        c.send_raw(FIN | kind, &big, true);
        let (op, echo) = c.read_frame();
        assert_eq!(
            (op, echo.len()),
            (kind, LIMIT),
            "sent back whole, not closed"
        );
        assert!(echo == big, "sent back unchanged");
    }
    // A room's event carries the message in an envelope: larger than the message.
    let addr = server_with(1, |c| {
        c.max_message_size = LIMIT;
        c.max_outbound_bytes = LIMIT;
    });
    let mut c = client(addr, "largest");
    let text = "y".repeat(LIMIT - 32);
    c.send_raw(FIN | TEXT, &chat(&text), true);
    let (op, event) = c.next_frame_skipping(&[PING, PONG]);
    assert_eq!(op, TEXT);
    assert!(event.len() > LIMIT, "the event is larger than the bound");
    assert_eq!(json(&event)["data"]["message"], text.as_str());
}

/// The two limits are checked against each other at startup: a bound on outbound bytes
/// below the largest message refuses to start, naming both flags.
#[test]
fn an_outbound_bound_below_the_message_size_refuses_to_start() {
    let mut config = rookery::Config::local();
    config.max_message_size = 16 << 20;
    let error = rookery::start(config).err().expect("refused");
    let error = error.to_string();
    assert!(error.contains("--max-outbound-bytes"), "{error}");
    assert!(error.contains("--max-message-size"), "{error}");
}
