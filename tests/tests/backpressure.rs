//! The slow-consumer policy in every dialect: a reader that stops is closed once its
//! outbound bound is passed, with 1008 and the reason, readers that keep reading get every
//! message in order, and the publisher is never held up.
//!
//! Nothing here depends on how fast the machine is. The publisher publishes in windows and,
//! before the next window, waits until every reading client (the reader, and the publisher
//! itself, which gets its own copies and a confirmation per message) has read the whole
//! window. A reading client is therefore never more than one window (less than a seventh of
//! the bound) behind, however slowly it is scheduled, while a stalled reader falls behind
//! without limit. The publisher goes on until both stalled readers are closed, past a
//! minimum; if the bound were not enforced they never would be, and the test fails.

use rookery_tests::*;
use serde_json::{json, Value};
use std::time::Duration;
use tungstenite::Message;

/// The outbound bound the server is started with.
const BOUND: usize = 1 << 20;

/// The published payload's size.
const PAYLOAD: usize = 4 * 1024;

/// Messages published in one window. A reading client has at most one window queued for it
/// (plus the odd presence event): about 135 KB, less than a seventh of the bound.
const WINDOW: u64 = 32;
const _: () = assert!(WINDOW as usize * (PAYLOAD + 512) * 7 <= BOUND);

/// Messages published at the least: 12 MB, more than the loopback socket buffers of a stalled
/// reader (here 4 MiB of send buffer and a receive buffer that does not grow while nobody
/// reads) and its 1 MiB bound absorb, so the stalled readers are closed before it.
const MESSAGES: u64 = 3000;

/// Publishing goes on past [`MESSAGES`] until both stalled readers are closed (on a machine
/// with larger socket buffers), but not past this: 48 MB. A stalled reader still open then
/// means the bound is not enforced.
const MAX_MESSAGES: u64 = 12_000;

/// These tests each move tens of megabytes; one at a time keeps the machine's load (and the
/// memory held in socket buffers) down. They do not need it to pass: see the module doc.
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
/// other traffic (presence events, confirmations).
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

/// Reads `c` until it has had every published message before `end`; `next` is the first
/// it has not had yet. Every one must come, in order.
fn read_through(c: &mut Client, dialect: &str, next: &mut u64, end: u64) {
    while *next < end {
        let m = c.recv();
        if let Some(i) = sequence(dialect, &m) {
            assert_eq!(i, *next, "{dialect}: in order, none lost");
            *next += 1;
        }
    }
}

/// Reads the (Lambda) publisher until it has had its own copy of every message before `end`,
/// in order, and a `publishSuccess` for each.
fn read_own_through(publisher: &mut Client, copies: &mut u64, successes: &mut u64, end: u64) {
    while *copies < end || *successes < end {
        let m = publisher.recv();
        if m["type"] == "publishSuccess" {
            *successes += 1;
        } else if let Some(i) = sequence("lambda", &m) {
            assert_eq!(i, *copies, "the publisher's own copies, in order");
            *copies += 1;
        }
    }
    assert_eq!(*successes, end, "one publishSuccess per message");
}

fn slow_consumers_are_dropped(dialect: &'static str) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let room = format!("bp-{dialect}");
    let subscribe = json!([{"type":"ACCEPT"},{"type":"SUBSCRIBE","target":room}]).to_string();
    let backend = TestBackend::start(move |_| (200, subscribe.clone(), Duration::ZERO));
    let target = backend.url.clone();
    let addr = server_with(2, move |c| {
        c.max_outbound_bytes = BOUND;
        c.max_message_rate = 0;
        c.slip_target_url = Some(target);
        // The stalled readers are read at the end, to see their close frame: their sockets
        // must not be shut down before, however long the publishing took.
        c.close_grace_ms = 600_000;
    });
    let mut fast = reader(addr, dialect, &room);
    let mut slow: Vec<Client> = (0..2).map(|_| reader(addr, dialect, &room)).collect();
    let mut publisher = Client::connect(addr, "/channels");
    publisher.send(json!({"type":"join","channelId":room}));
    publisher.recv_type("joinSuccess");
    // A server that stopped reading the publisher fails the test instead of hanging it.
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = publisher.ws.get_ref() {
        s.set_write_timeout(Some(WAIT)).unwrap();
    }
    wait_for_room(addr, &room, |d| d["count"] == 4);

    let payload = "p".repeat(PAYLOAD);
    let (mut fast_next, mut copies, mut successes) = (0, 0, 0);
    let mut published = 0;
    // The stalled readers never read while this runs. The room owner must not wait for
    // them: if it did, a window would never reach the reading clients and `recv` fails.
    while published < MESSAGES || metric(addr, "rookery_slow_consumers_total") < 2 {
        assert!(
            published < MAX_MESSAGES,
            "{dialect}: {published} messages published and the stalled readers are still \
             open: the outbound bound is not enforced"
        );
        let end = published + WINDOW;
        for i in published..end {
            publisher.send(json!({"type":"publish","data":{"i":i,"p":payload}}));
        }
        read_through(&mut fast, dialect, &mut fast_next, end);
        read_own_through(&mut publisher, &mut copies, &mut successes, end);
        published = end;
    }
    // Only the two stalled readers were closed as slow consumers.
    assert_eq!(metric(addr, "rookery_slow_consumers_total"), 2, "{dialect}");
    // Each stalled reader got what its socket buffers held, in order, then none of the
    // dropped rest: the close frame, 1008 with the reason.
    for s in slow.iter_mut() {
        let mut got = 0;
        let (code, reason) = s.expect_close_after(|m| {
            if let Message::Text(t) = m {
                let m: Value = serde_json::from_str(&t).expect("JSON");
                if let Some(i) = sequence(dialect, &m) {
                    assert_eq!(i, got, "{dialect}: a stalled reader's frames in order");
                    got += 1;
                }
            }
        });
        assert_eq!(
            (code, reason.as_str()),
            (
                1008,
                format!("slow consumer: more than {BOUND} bytes queued").as_str()
            ),
            "{dialect}"
        );
        assert!(
            got < published,
            "{dialect}: frames past the bound were dropped"
        );
    }
    // The stalled readers left; the reader and the publisher remain, and still get
    // everything.
    wait_for_room(addr, &room, |d| d["count"] == 2);
    publisher.send(json!({"type":"publish","data":{"i":published,"p":"after"}}));
    read_through(&mut fast, dialect, &mut fast_next, published + 1);
    read_own_through(&mut publisher, &mut copies, &mut successes, published + 1);
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
