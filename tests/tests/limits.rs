//! Every configurable limit, over real sockets: connections (global and per IP), message
//! rate, subscriptions, rooms, presence updates.

use rookery_tests::*;
use serde_json::json;

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
    let (mut c, _) = Client::pact(addr, "rate");
    for i in 0..4 {
        assert_eq!(
            c.call(json!({"type":"ping"}), &format!("{i}"))["type"],
            "ok"
        );
    }
    c.send(json!({"type":"ping","ref":"over"}));
    assert_eq!(c.recv_type("error")["data"]["code"], "rate_limited");
    for _ in 0..3 {
        c.send(json!({"type":"ping"}));
    }
    let (code, reason) = c.expect_close();
    assert_eq!((code, reason.as_str()), (1008, "rate limit exceeded"));
    assert_eq!(other.call(json!({"type":"ping"}), "fine")["type"], "ok");
}

#[test]
fn every_dialect_reports_the_rate_limit_in_its_own_error() {
    let addr = server_with(2, |c| {
        c.max_message_rate = 1;
        c.message_burst = 2;
    });
    let (mut wsdo, _) = Client::wsdo(addr, "d");
    for _ in 0..3 {
        wsdo.send(json!({"type":"PONG"}));
    }
    assert_eq!(wsdo.recv_type("ERROR")["payload"]["code"], "RATE_LIMITED");
    let mut jac = Client::connect(addr, "/jac/websocket");
    jac.recv_type("connection");
    for _ in 0..3 {
        jac.send(json!({"type":"connection"}));
    }
    jac.recv_type("connection");
    jac.recv_type("connection");
    assert_eq!(jac.recv_type("error")["error"][0]["type"], "rate_limited");
    let mut lambda = Client::connect(addr, "/channels");
    for _ in 0..3 {
        lambda.send(json!({"type":"ping"}));
    }
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
