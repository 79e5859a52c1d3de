//! The slow-consumer policy in every dialect: a reader that stops is closed once its
//! outbound bound is passed, readers that keep reading get every message in order, and the
//! publisher is never held up.

use rookery_tests::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const MESSAGES: usize = 3000;

/// These tests saturate both cores; run them one at a time so that a reader that keeps
/// reading is never starved into looking slow.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A connected reader of `dialect` in room `room`, past its greeting.
fn reader(addr: std::net::SocketAddr, dialect: &str, room: &str) -> Client {
    match dialect {
        "pact" => Client::pact(addr, room).0,
        "wsdo" => Client::wsdo(addr, room).0,
        "jac" => {
            let mut c = Client::connect(addr, &format!("/jac/websocket?channel_id={room}"));
            c.recv_type("connection");
            c
        }
        "lambda" => {
            let mut c = Client::connect(addr, "/channels");
            c.send(json!({"type":"join","channelId":room}));
            c.recv_type("joinSuccess");
            c
        }
        // The test backend subscribes every SLIP connection to the room on OPEN.
        "slip" => Client::connect(addr, "/slip"),
        other => panic!("{other}"),
    }
}

/// The sequence number in a published message, as `dialect` receives it; `None` for
/// other traffic (presence events).
fn sequence(dialect: &str, m: &Value) -> Option<u64> {
    let data = match dialect {
        "pact" if m["type"] == "broadcast" => &m["data"],
        "wsdo" if m["type"] == "DATA" => &m["payload"],
        "jac" if m.get("i").is_some() => m,
        "lambda" if m["type"] == "message" => &m["data"],
        // SLIP gets the published data itself, as JSON text.
        "slip" if m.get("i").is_some() => m,
        _ => return None,
    };
    data["i"].as_u64()
}

fn slow_consumers_are_dropped(dialect: &'static str) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let room = format!("bp-{dialect}");
    let subscribe = json!([{"type":"ACCEPT"},{"type":"SUBSCRIBE","target":room}]).to_string();
    let backend = TestBackend::start(move |_| (200, subscribe.clone(), Duration::ZERO));
    let target = backend.url.clone();
    let addr = server_with(2, move |c| {
        c.max_outbound_bytes = 1 << 20;
        c.max_message_rate = 0;
        c.slip_target_url = Some(target);
    });
    let mut fast = reader(addr, dialect, &room);
    let slow: Vec<Client> = (0..2).map(|_| reader(addr, dialect, &room)).collect();
    let mut publisher = Client::connect(addr, "/channels");
    publisher.send(json!({"type":"join","channelId":room}));
    publisher.recv_type("joinSuccess");
    wait_for_room(addr, &room, |d| d["count"] == 4);

    let fast_thread = std::thread::spawn(move || {
        let mut next = 0u64;
        while next < MESSAGES as u64 {
            let m = fast.recv();
            if let Some(i) = sequence(dialect, &m) {
                assert_eq!(i, next, "{dialect}: in order, none lost");
                next += 1;
            }
        }
        fast
    });
    // The publisher reads its own copies and confirmations on another thread.
    let payload = "p".repeat(4 * 1024);
    let started = Instant::now();
    let (mut tx, rx) = split(publisher);
    let drain = std::thread::spawn(move || {
        let mut rx = rx;
        let mut successes = 0;
        while successes < MESSAGES {
            if rx.recv()["type"] == "publishSuccess" {
                successes += 1;
            }
        }
    });
    for i in 0..MESSAGES {
        tx.send(json!({"type":"publish","data":{"i":i,"p":payload}}));
        // About 10 MB/s: far more than the stalled readers' socket buffers and bound
        // absorb in the run, well within what a reading client keeps up with.
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let publish_time = started.elapsed();
    let _fast = fast_thread
        .join()
        .expect("the reading subscriber got everything");
    drain
        .join()
        .expect("the publisher got a publishSuccess for every message");
    assert!(
        publish_time < Duration::from_secs(20),
        "{dialect}: publisher held up"
    );
    // Both stalled readers were closed; the fast reader and the publisher remain.
    wait_for_room(addr, &room, |d| d["count"] == 2);
    let (_, metrics) = http(addr, "GET", "/metrics", &[], b"");
    let slow_closed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rookery_slow_consumers_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(slow_closed, 2, "{dialect}");
    drop(slow);
}

/// Two handles on one client connection: one to send, one to receive. tungstenite's
/// WebSocket is not split-able, so the sender gets its own connection-less copy of the
/// stream: writes go to the same socket.
fn split(c: Client) -> (Sender, Client) {
    let stream = match c.ws.get_ref() {
        tungstenite::stream::MaybeTlsStream::Plain(s) => s.try_clone().unwrap(),
        _ => unreachable!(),
    };
    (Sender(RawClient { stream }), c)
}

/// Writes masked text frames to a socket another thread reads.
struct Sender(RawClient);

impl Sender {
    fn send(&mut self, v: Value) {
        self.0.send_raw(0x81, v.to_string().as_bytes(), true);
    }
}

#[test]
fn pact_readers() {
    slow_consumers_are_dropped("pact");
}

#[test]
fn wsdo_readers() {
    slow_consumers_are_dropped("wsdo");
}

#[test]
fn jac_readers() {
    slow_consumers_are_dropped("jac");
}

#[test]
fn lambda_readers() {
    slow_consumers_are_dropped("lambda");
}

#[test]
fn slip_readers() {
    slow_consumers_are_dropped("slip");
}
