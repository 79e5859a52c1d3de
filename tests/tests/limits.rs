//! Every configurable limit, over real sockets: connections (global and per IP), message
//! rate, subscriptions, rooms, presence updates.

use rookery_tests::*;
use serde_json::{json, Value};

fn upgrade_status(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    raw_http(
        addr,
        format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
}

#[test]
fn connections_per_ip_and_in_all_are_limited() {
    let addr = server_with(2, |c| c.max_connections_per_ip = 2);
    let (a, _) = Client::pact(addr, "r");
    let (_b, _) = Client::wsdo(addr, "r");
    let (status, body) = upgrade_status(addr, "/websocket?room=r");
    assert_eq!(status, 503);
    assert!(body.contains("too_many_connections"), "{body}");
    drop(a);
    wait_for_room(addr, "r", |d| d["count"] == 1);
    let (_c, _) = Client::pact(addr, "r");

    let addr = server_with(2, |c| c.max_connections = 3);
    let _held: Vec<_> = (0..3).map(|_| Client::pact(addr, "g").0).collect();
    let (status, body) = upgrade_status(addr, "/channels");
    assert_eq!(status, 503, "{body}");
    // HTTP requests are not connections under the limit.
    assert_eq!(http_get(addr, "/healthz").0, 200);
}

#[test]
fn the_message_rate_drops_then_closes_and_spares_the_others() {
    let addr = server_with(2, |c| {
        c.max_message_rate = 1;
        c.message_burst = 4;
    });
    let (mut other, _) = Client::pact(addr, "rate");
    // The bucket holds 4 and gains one a second. What must happen within a second goes in
    // one write, so that however slowly this thread runs no token comes back in between.
    // 4 pass; the 5th is dropped with an error. (Replies come in any order: the oks from the
    // room's owner, the error at once.)
    let (mut c, _) = Client::pact(addr, "rate");
    let mut messages: Vec<Value> = (0..4)
        .map(|i| json!({"type":"ping","ref":format!("{i}")}))
        .collect();
    messages.push(json!({"type":"ping","ref":"over"}));
    c.send_all(&messages);
    let mut replies: Vec<Value> = (0..5).map(|_| c.recv()).collect();
    replies.sort_by_key(|m| m["type"] != "error");
    assert_eq!(replies[0]["type"], "error", "{replies:?}");
    assert_eq!(replies[0]["data"]["code"], "rate_limited");
    let mut oks: Vec<Value> = replies.split_off(1);
    oks.sort_by_key(|m| m["ref"].as_str().unwrap_or("").to_owned());
    let expected: Vec<Value> = (0..4)
        .map(|i| json!({"type":"ok","ref":format!("{i}")}))
        .collect();
    assert_eq!(oks, expected);
    // A run of drops as long as the burst closes the connection: 4 pass, then 4 dropped.
    // (The oks may be lost to the close: it comes at once, they from the room's owner.)
    let (mut c, _) = Client::pact(addr, "rate");
    messages.extend((0..3).map(|_| json!({"type":"ping"})));
    c.send_all(&messages);
    let mut before_close = Vec::new();
    let (code, reason) = c.expect_close_after(|m| {
        if let tungstenite::Message::Text(t) = m {
            before_close.push(serde_json::from_str::<Value>(&t).unwrap());
        }
    });
    let (oks, errors): (Vec<&Value>, Vec<&Value>) =
        before_close.iter().partition(|m| m["type"] == "ok");
    assert!(oks.iter().all(|m| expected.contains(m)), "{before_close:?}");
    assert_eq!(errors.len(), 1, "{before_close:?}");
    assert_eq!(errors[0]["data"]["code"], "rate_limited");
    assert_eq!((code, reason.as_str()), (1008, "rate limit exceeded"));
    assert_eq!(other.call(json!({"type":"ping"}), "fine")["type"], "ok");
}

#[test]
fn every_dialect_reports_the_rate_limit_in_its_own_error() {
    let addr = server_with(2, |c| {
        c.max_message_rate = 1;
        c.message_burst = 2;
    });
    // Three at once (one write each time, so no token comes back in between): two pass,
    // the third is dropped with the dialect's error.
    let (mut wsdo, _) = Client::wsdo(addr, "d");
    wsdo.send_all(&vec![json!({"type":"PONG"}); 3]);
    assert_eq!(wsdo.recv_type("ERROR")["payload"]["code"], "RATE_LIMITED");
    let mut jac = Client::connect(addr, "/jac/websocket");
    jac.recv_type("connection");
    jac.send_all(&vec![json!({"type":"connection"}); 3]);
    jac.recv_type("connection");
    jac.recv_type("connection");
    assert_eq!(jac.recv_type("error")["error"][0]["type"], "rate_limited");
    let mut lambda = Client::connect(addr, "/channels");
    lambda.send_all(&vec![json!({"type":"ping"}); 3]);
    lambda.recv_type("pong");
    lambda.recv_type("pong");
    assert!(lambda.recv_type("error")["data"]
        .as_str()
        .unwrap()
        .contains("too many"));
}

#[test]
fn subscriptions_per_connection_are_limited() {
    let addr = server_with(2, |c| c.max_subscriptions = 2);
    let (mut c, _) = Client::pact(addr, "subs");
    assert_eq!(
        c.call(json!({"type":"subscribe","data":"chat"}), "1")["type"],
        "ok"
    );
    assert_eq!(
        c.call(json!({"type":"subscribe","data":"poll:a"}), "2")["type"],
        "ok"
    );
    let e = c.call(json!({"type":"subscribe","data":"poll:b"}), "3");
    assert_eq!(e["data"]["code"], "limit_exceeded");
    assert_eq!(
        c.call(json!({"type":"subscribe","data":"chat"}), "4")["type"],
        "ok",
        "again is fine"
    );
    c.call(json!({"type":"unsubscribe","data":"chat"}), "5");
    assert_eq!(
        c.call(json!({"type":"subscribe","data":"poll:b"}), "6")["type"],
        "ok"
    );
}

#[test]
fn rooms_are_limited() {
    let addr = server_with(1, |c| c.max_rooms = 2);
    let (_a, _) = Client::pact(addr, "one");
    let (_b, _) = Client::pact(addr, "two");
    let (_c, _) = Client::pact(addr, "two");
    let mut refused = Client::connect(addr, "/websocket?room=three");
    let (code, reason) = refused.expect_close();
    assert_eq!(code, 1013);
    assert!(reason.contains("too many rooms"));
    let mut lambda = Client::connect(addr, "/channels");
    lambda.send(json!({"type":"join","channelId":"three"}));
    assert_eq!(lambda.recv(), json!({"type":"joinFailure"}));
    lambda.send(json!({"type":"join","channelId":"one"}));
    assert_eq!(lambda.recv(), json!({"type":"joinSuccess"}));
}

#[test]
fn presence_updates_per_interval_are_limited() {
    let addr = server_with(2, |c| {
        c.presence_updates = 2;
        c.presence_window_ms = 60_000;
    });
    let (mut c, _) = Client::pact(addr, "pres");
    for i in 0..2 {
        assert_eq!(
            c.call(json!({"type":"login","data":{"n":i}}), &format!("{i}"))["type"],
            "profile"
        );
    }
    let e = c.call(json!({"type":"login","data":{"n":3}}), "3");
    assert_eq!(e["data"]["code"], "rate_limited");
    assert_eq!(
        c.call(json!({"type":"profile"}), "p")["data"]["properties"],
        json!({"n":1})
    );
    let (mut w, _) = Client::wsdo(addr, "pres");
    for i in 0..2 {
        w.send(json!({"type":"PRESENCE","payload":{"i":i}}));
        w.recv_type("PRESENCE:UPDATED");
    }
    w.send(json!({"type":"PRESENCE","payload":{"i":3}}));
    assert_eq!(w.recv_type("ERROR")["payload"]["code"], "RATE_LIMITED");
}
