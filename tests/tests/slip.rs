//! SLIP Sockets (seed 003) against a real HTTP backend started by the test.

use rookery_tests::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SECRET: &str = "slip-secret";

fn slip_server(target: &str) -> std::net::SocketAddr {
    // The test backends answer at once, but the machine may be busy: a deadline with a
    // margin, still within the wait for an upgrade's answer.
    slip_server_within(target, 4_000)
}

/// A SLIP server whose backend calls have `deadline_ms` each.
fn slip_server_within(target: &str, deadline_ms: u64) -> std::net::SocketAddr {
    let target = target.to_owned();
    server_with(2, move |c| {
        c.slip_target_url = Some(target);
        c.slip_jwt_secret = Some(SECRET.into());
        c.backend_timeout_ms = deadline_ms;
    })
}

/// The raw upgrade request of a SLIP connection.
const UPGRADE: &[u8] = b"GET /slip HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// The event type of a SLIP request body.
fn event_type(r: &Received) -> String {
    r.json()[0]["type"].as_str().unwrap_or("").to_owned()
}

/// A backend that accepts and subscribes every connection to `welcome`, says hello, and
/// echoes text.
fn friendly_backend() -> TestBackend {
    TestBackend::start(|r| {
        let now = Duration::ZERO;
        match event_type(r).as_str() {
            "OPEN" => (
                200,
                json!([{"type":"ACCEPT"},{"type":"SUBSCRIBE","target":"welcome"},{"type":"TEXT","data":"hello"}]).to_string(),
                now,
            ),
            "TEXT" => {
                let data = r.json()[0]["data"].as_str().unwrap_or("").to_owned();
                if data == "join lobby" {
                    (200, json!([{"type":"SUBSCRIBE","target":"lobby"}]).to_string(), now)
                } else if data == "leave lobby" {
                    (200, json!([{"type":"UNSUBSCRIBE","target":"lobby"}]).to_string(), now)
                } else if data == "bye" {
                    (200, json!([{"type":"DISCONNECT"}]).to_string(), now)
                } else {
                    (200, json!([{"type":"TEXT","data":format!("echo: {data}")}]).to_string(), now)
                }
            }
            _ => (200, "[]".into(), now),
        }
    })
}

fn recv_text(c: &mut Client) -> String {
    loop {
        match c.read().expect("a frame") {
            tungstenite::Message::Text(t) => return t.to_string(),
            tungstenite::Message::Close(f) => panic!("closed: {f:?}"),
            _ => continue,
        }
    }
}

fn control(addr: std::net::SocketAddr, token: Option<&str>, body: &Value) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    http_json(
        addr,
        "POST",
        "/slip/control",
        &headers,
        body.to_string().as_bytes(),
    )
}

fn control_token(secret: &str, aud: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"iss":"slip-sockets","aud":aud,"iat":now,"exp":now + 60}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[test]
fn open_text_and_close_reach_the_backend_with_a_signed_token() {
    let backend = friendly_backend();
    let addr = slip_server(&backend.url);
    let mut c = Client::connect(addr, "/slip");
    assert_eq!(recv_text(&mut c), "hello");
    let open = backend.wait_for(|r| event_type(r) == "OPEN");
    assert_eq!(
        open.header("content-type"),
        Some("application/websocket-events")
    );
    let conn_id = open.header("x-connection-id").unwrap().to_owned();
    assert!(!conn_id.is_empty());
    assert_eq!(open.json()[0]["headers"]["upgrade"], "websocket");
    let bearer = open
        .header("authorization")
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_issuer(&["slip-sockets"]);
    validation.set_audience(&["WebSocketEvent"]);
    let claims = jsonwebtoken::decode::<Value>(
        bearer,
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        &validation,
    )
    .expect("a valid WebSocketEvent token")
    .claims;
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        60
    );

    c.send_text("hi there");
    assert_eq!(recv_text(&mut c), "echo: hi there");
    let text = backend.wait_for(|r| event_type(r) == "TEXT");
    assert_eq!(text.json(), json!([{"type":"TEXT","data":"hi there"}]));
    assert_eq!(text.header("x-connection-id"), Some(conn_id.as_str()));

    c.ws.close(None).unwrap();
    let closed = backend.wait_for(|r| event_type(r) == "CLOSE");
    assert_eq!(closed.json(), json!([{"type":"CLOSE"}]));
    assert_eq!(closed.header("x-connection-id"), Some(conn_id.as_str()));
}

#[test]
fn backend_events_subscribe_unsubscribe_and_disconnect() {
    let backend = friendly_backend();
    let addr = slip_server(&backend.url);
    let mut c = Client::connect(addr, "/slip");
    recv_text(&mut c);
    let (mut pact, _) = Client::pact(addr, "lobby");
    c.send_text("join lobby");
    wait_for_room(addr, "lobby", |d| d["count"] == 2);
    // The SLIP channel is the room: an emit there reaches it as text (JSON here).
    let (status, _) = http_json(addr, "POST", "/lobby/emit", &[], br#"{"n":1}"#);
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&recv_text(&mut c)).unwrap(),
        json!({"n":1})
    );
    pact.recv_type("broadcast");
    c.send_text("leave lobby");
    wait_for_room(addr, "lobby", |d| d["count"] == 1);
    c.send_text("bye");
    assert_eq!(c.expect_close().0, 1000);
}

#[test]
fn the_control_api_publishes_subscribes_and_disconnects_on_every_core() {
    let backend = friendly_backend();
    let addr = slip_server(&backend.url);
    let mut clients: Vec<Client> = (0..6)
        .map(|_| {
            let mut c = Client::connect(addr, "/slip");
            assert_eq!(recv_text(&mut c), "hello");
            c
        })
        .collect();
    let ids: Vec<String> = backend
        .received()
        .iter()
        .filter(|r| event_type(r) == "OPEN")
        .map(|r| r.header("x-connection-id").unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 6);
    let (mut pact, _) = Client::pact(addr, "welcome");
    let token = control_token(SECRET, "ControlEvent");
    let (status, body) = control(
        addr,
        Some(&token),
        &json!([{"target":"welcome","event":{"type":"TEXT","data":"to everyone"}}]),
    );
    assert_eq!(
        (status, body),
        (200, json!({"message":"processed successfully"}))
    );
    for c in clients.iter_mut() {
        assert_eq!(recv_text(c), "to everyone");
    }
    assert_eq!(pact.recv_type("broadcast")["data"], "to everyone");

    // SUBSCRIBE one connection (by id, wherever it is) to another channel.
    let (status, _) = control(
        addr,
        Some(&token),
        &json!([{"target": ids[3], "event":{"type":"SUBSCRIBE","target":"vip"}}]),
    );
    assert_eq!(status, 200);
    wait_for_room(addr, "vip", |d| d["count"] == 1);
    control(
        addr,
        Some(&token),
        &json!([{"target":"vip","event":{"type":"TEXT","data":"psst"}}]),
    );
    assert_eq!(recv_text(&mut clients[3]), "psst");
    clients[2].expect_silence(100);
    control(
        addr,
        Some(&token),
        &json!([{"target": ids[3], "event":{"type":"UNSUBSCRIBE","target":"vip"}}]),
    );
    wait_for_room(addr, "vip", |d| d["count"] == 0);

    let (status, _) = control(
        addr,
        Some(&token),
        &json!([{"target": ids[0], "event":{"type":"DISCONNECT"}}]),
    );
    assert_eq!(status, 200);
    assert_eq!(clients[0].expect_close().0, 1000);
}

#[test]
fn the_control_api_checks_its_token_and_body() {
    let backend = friendly_backend();
    let addr = slip_server(&backend.url);
    let ok = json!([{"target":"x","event":{"type":"TEXT","data":"t"}}]);
    for token in [
        None,
        Some(control_token(SECRET, "WebSocketEvent")),
        Some(control_token("wrong", "ControlEvent")),
        Some("garbage".to_owned()),
    ] {
        let (status, body) = control(addr, token.as_deref(), &ok);
        assert_eq!((status, body), (403, json!({"message":"Invalid token"})));
    }
    let token = control_token(SECRET, "ControlEvent");
    for bad in [
        json!({}),
        json!([{"target":"x"}]),
        json!([{"target":"x","event":{"type":"TEXT"}}]),
        json!([{"event":{"type":"DISCONNECT"}}]),
        json!([{"target":"x","event":{"type":"EXPLODE"}}]),
    ] {
        let (status, body) = control(addr, Some(&token), &bad);
        assert_eq!(
            (status, body),
            (400, json!({"message":"invalid commands"})),
            "{bad}"
        );
    }
}

/// A backend signing as PyJWT does by default (no `iat`), or with no `exp` at all, is
/// accepted: RFC 7519 makes both optional (`iss` and `aud` scope the token and stay required).
#[test]
fn the_control_api_takes_tokens_without_optional_claims() {
    let backend = friendly_backend();
    let addr = slip_server(&backend.url);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sign = |claims: Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let commands = json!([{"target":"nobody","event":{"type":"TEXT","data":"t"}}]);
    for claims in [
        json!({"iss":"slip-sockets","aud":"ControlEvent","exp":now + 60}),
        json!({"iss":"slip-sockets","aud":"ControlEvent"}),
    ] {
        let (status, body) = control(addr, Some(&sign(claims.clone())), &commands);
        assert_eq!(status, 200, "{claims}: {body}");
    }
    for claims in [
        json!({"iss":"slip-sockets","exp":now + 60}),
        json!({"aud":"ControlEvent","exp":now + 60}),
        json!({"iss":"slip-sockets","aud":"ControlEvent","exp":now - 5}),
    ] {
        let (status, body) = control(addr, Some(&sign(claims.clone())), &commands);
        assert_eq!(
            (status, body),
            (403, json!({"message":"Invalid token"})),
            "{claims}"
        );
    }
}

#[test]
fn the_upgrade_is_refused_as_the_seed_did_when_the_backend_says_no_or_fails() {
    let cases: Vec<(Answer, u16)> = vec![
        (
            (
                200,
                json!([{"type":"TEXT","data":"x"}]).to_string(),
                Duration::ZERO,
            ),
            400,
        ),
        ((200, "[]".into(), Duration::ZERO), 400),
        ((200, "not json".into(), Duration::ZERO), 400),
        (
            (
                200,
                json!([{"type":"ACCEPT"},{"type":"DISCONNECT"}]).to_string(),
                Duration::ZERO,
            ),
            406,
        ),
        ((500, "oops".into(), Duration::ZERO), 500),
        ((404, "".into(), Duration::ZERO), 500),
    ];
    for (answer, status) in cases {
        let answer = std::sync::Arc::new(answer);
        let backend = TestBackend::start(move |_| (*answer).clone());
        let addr = slip_server(&backend.url);
        let (got, body) = raw_http(addr, UPGRADE);
        assert_eq!(got, status, "{body}");
        assert!(serde_json::from_str::<Value>(&body).is_ok(), "{body}");
    }
}

#[test]
fn a_dead_or_slow_backend_refuses_in_time_and_stalls_nobody_else() {
    // A refused connection (and its two retries, 150 ms of backoff) is reported as such,
    // without waiting for the 4 s deadline.
    let addr = slip_server(&dead_url());
    let started = Instant::now();
    let (status, body) = raw_http(addr, UPGRADE);
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("unreachable"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // While a backend holds an upgrade's answer, everything else goes on. The backend
    // answers only once the Pact exchange below is done, and the deadline (30 s) is longer
    // than any wait here: a server that stalled on the backend fails the exchange.
    let release = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let gate = release.clone();
    let held = TestBackend::start(move |_| {
        let (done, cv) = &*gate;
        let mut done = done.lock().unwrap();
        while !*done {
            done = cv.wait(done).unwrap();
        }
        (200, "[]".into(), Duration::ZERO)
    });
    let addr = slip_server_within(&held.url, 30_000);
    let waiting =
        std::thread::spawn(move || raw_http_within(addr, UPGRADE, Duration::from_secs(60)));
    held.wait_for(|r| event_type(r) == "OPEN");
    let (mut pact, _) = Client::pact(addr, "busy");
    pact.call(json!({"type":"subscribe","data":"chat"}), "s");
    pact.send(json!({"type":"chat","data":"still here"}));
    assert_eq!(pact.recv_type("chat")["data"]["message"], "still here");
    assert!(!waiting.is_finished(), "the upgrade waited for the backend");
    *release.0.lock().unwrap() = true;
    release.1.notify_all();
    let (status, body) = waiting.join().unwrap();
    assert_eq!(status, 400, "refused as the backend said: {body}");

    // A backend that does not answer (not before the end of the test): the upgrade is
    // refused at the 1 s deadline.
    let slow = TestBackend::start(|_| {
        (
            200,
            json!([{"type":"ACCEPT"}]).to_string(),
            Duration::from_secs(600),
        )
    });
    let addr = slip_server_within(&slow.url, 1_000);
    let started = Instant::now();
    let (status, body) = raw_http(addr, UPGRADE);
    let took = started.elapsed();
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("time"), "{body}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(4_000),
        "the 1 s deadline was not kept: {took:?}"
    );
}

#[test]
fn binary_frames_close_with_1003_and_malformed_answers_change_nothing() {
    let backend = TestBackend::start(|r| match event_type(r).as_str() {
        "OPEN" => (200, json!([{"type":"ACCEPT"}]).to_string(), Duration::ZERO),
        _ => (200, "{not an array".into(), Duration::ZERO),
    });
    let addr = slip_server(&backend.url);
    let mut c = Client::connect(addr, "/slip");
    c.send_text("anything");
    backend.wait_for(|r| event_type(r) == "TEXT");
    c.expect_silence(200);
    c.ws.send(tungstenite::Message::binary(vec![1, 2])).unwrap();
    assert_eq!(c.expect_close().0, 1003);
}
