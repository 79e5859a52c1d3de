//! Token expiry while connected: a connection whose token has an `exp` is told
//! `token_expired` (in its dialect's error form) when it passes, and closed with 4001
//! "token expired" unless it presents a fresh token (Pact's `refresh`) within
//! `--token-grace-ms`. Short-lived tokens (an `exp` a couple of seconds ahead); every wait is
//! on an event, with generous bounds.

use rookery_tests::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::Message;

/// The failure bound of one wait: tokens expire within ~2 s, a busy machine may be slow.
const BOUND: Duration = Duration::from_secs(30);

fn expiring_server(grace_ms: u64) -> SocketAddr {
    server_with(2, |c| {
        c.jwt_secret = Some(JWT_SECRET.into());
        c.token_grace_ms = grace_ms;
        // A short tick (interval ÷ 4) so that expiry is seen promptly; silence is
        // tolerated long enough that a slow test thread is never taken for dead.
        c.ping_interval_ms = 400;
        c.ping_missed = 50;
        c.close_grace_ms = 10_000;
    })
}

/// A token of `sub` without `exp`.
fn lasting_token(sub: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": sub }),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// The next JSON message that is no heartbeat (Pact's `ping`, websockets.do's `PING`),
/// within [`BOUND`].
fn next(c: &mut Client) -> Value {
    if let MaybeTlsStream::Plain(s) = c.ws.get_ref() {
        s.set_read_timeout(Some(BOUND)).unwrap();
    }
    let deadline = Instant::now() + BOUND;
    loop {
        assert!(Instant::now() < deadline, "nothing within {BOUND:?}");
        match c.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "ping" || v["type"] == "PING" {
                    continue;
                }
                return v;
            }
            Ok(Message::Close(c)) => panic!("closed while waiting for a message: {c:?}"),
            Ok(_) => continue,
            Err(e) => panic!("no message: {e}"),
        }
    }
}

/// Reads until a message `is` matches, returning it.
fn until(c: &mut Client, is: impl Fn(&Value) -> bool) -> Value {
    loop {
        let v = next(c);
        if is(&v) {
            return v;
        }
    }
}

fn is_pact_expiry(v: &Value) -> bool {
    v["type"] == "error" && v["data"]["code"] == "token_expired"
}

#[test]
fn a_refresh_within_the_grace_keeps_the_connection_and_tokens_without_exp_never_expire() {
    let addr = expiring_server(5_000);
    let (mut kept, profile) = Client::pact(
        addr,
        &format!("exp-a&token={}", token_with("alice", JWT_SECRET, 2)),
    );
    assert_eq!(profile["id"], "alice");
    let (mut lasting, _) = Client::pact(addr, &format!("exp-a&token={}", lasting_token("carol")));

    let told = until(&mut kept, is_pact_expiry);
    let message = told["data"]["message"].as_str().unwrap();
    assert!(
        message.contains("refresh") && message.contains("5000 ms") && message.contains("4001"),
        "{told}"
    );
    let fresh = token_with("alice", JWT_SECRET, 600);
    kept.send(json!({"type":"refresh","ref":"r1","data":{"token":fresh}}));
    let refreshed = until(&mut kept, |v| v["ref"] == "r1");
    assert_eq!(refreshed["type"], "refreshed", "{refreshed}");
    assert!(refreshed["data"]["exp"].as_u64().unwrap() > 0);

    // A witness whose token expires after `kept` was told: its close comes after the moment
    // `kept` would have been closed without the refresh.
    let (mut witness, _) = Client::pact(
        addr,
        &format!("exp-b&token={}", token_with("bob", JWT_SECRET, 1)),
    );
    until(&mut witness, is_pact_expiry);
    let (code, reason) = witness.expect_close();
    assert_eq!((code, reason.as_str()), (4001, "token expired"));

    // `kept` is still open and serves requests; `lasting` (no exp) was never told anything.
    kept.send(json!({"type":"profile","ref":"p"}));
    assert_eq!(until(&mut kept, |v| v["ref"] == "p")["type"], "profile");
    lasting.send(json!({"type":"profile","ref":"p"}));
    let reply = until(&mut lasting, |v| {
        assert!(v["type"] != "error", "a token without exp expired: {v}");
        v["ref"] == "p"
    });
    assert_eq!(reply["data"]["id"], "carol");
}

#[test]
fn without_a_refresh_every_dialect_is_told_then_closed_with_4001() {
    let addr = expiring_server(300);
    let t = || token_with("dora", JWT_SECRET, 2);
    let mut clients = vec![
        (
            "pact",
            Client::connect(addr, &format!("/websocket?room=exp-c&token={}", t())),
        ),
        (
            "wsdo",
            Client::connect(addr, &format!("/exp-c/listen?token={}", t())),
        ),
        (
            "jac",
            Client::connect(
                addr,
                &format!("/jac/websocket?channel_id=exp-c&token={}", t()),
            ),
        ),
        (
            "lambda",
            Client::connect(addr, &format!("/channels?token={}", t())),
        ),
    ];
    for (dialect, c) in &mut clients {
        let told = until(c, |v| {
            v.to_string().to_lowercase().contains("token_expired")
        });
        match *dialect {
            "pact" => assert_eq!(told["data"]["code"], "token_expired", "{told}"),
            "wsdo" => {
                assert_eq!(told["type"], "ERROR", "{told}");
                assert_eq!(told["payload"]["code"], "TOKEN_EXPIRED", "{told}");
            }
            "jac" => {
                assert_eq!(told["type"], "error", "{told}");
                assert_eq!(told["error"][0]["type"], "token_expired", "{told}");
            }
            _ => {
                assert_eq!(told["type"], "error", "{told}");
                assert!(
                    told["data"]
                        .as_str()
                        .unwrap()
                        .starts_with("token_expired: "),
                    "{told}"
                );
            }
        }
        let (code, reason) = c.expect_close();
        assert_eq!(
            (code, reason.as_str()),
            (4001, "token expired"),
            "{dialect}"
        );
    }
}

#[test]
fn a_refresh_with_another_users_token_is_refused_and_the_close_follows() {
    let addr = expiring_server(1_500);
    let (mut c, _) = Client::pact(
        addr,
        &format!("exp-d&token={}", token_with("erin", JWT_SECRET, 2)),
    );
    until(&mut c, is_pact_expiry);
    let other = token_with("mallory", JWT_SECRET, 600);
    c.send(json!({"type":"refresh","ref":"r","data":{"token":other}}));
    let refused = until(&mut c, |v| v["ref"] == "r");
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["data"]["code"], "invalid_token");
    assert!(
        refused["data"]["message"]
            .as_str()
            .unwrap()
            .contains("another user"),
        "{refused}"
    );
    let (code, reason) = c.expect_close();
    assert_eq!((code, reason.as_str()), (4001, "token expired"));
}

#[test]
fn jac_change_user_with_a_fresh_token_keeps_the_connection() {
    let addr = expiring_server(5_000);
    let mut c = Client::connect(
        addr,
        &format!(
            "/jac/websocket?channel_id=exp-e&token={}",
            token_with("finn", JWT_SECRET, 2)
        ),
    );
    until(&mut c, |v| {
        v["type"] == "error" && v["error"][0]["type"] == "token_expired"
    });
    let fresh = token_with("finn", JWT_SECRET, 600);
    c.send(json!({"type":"change_user","token":format!("Bearer {fresh}")}));
    let now = until(&mut c, |v| v["type"] == "connection");
    assert_eq!(now["data"]["root_id"], "finn", "{now}");
    // The witness's close comes after `c`'s would have.
    let mut witness = Client::connect(
        addr,
        &format!(
            "/jac/websocket?channel_id=exp-e&token={}",
            token_with("gus", JWT_SECRET, 1)
        ),
    );
    let (code, _) = witness.expect_close();
    assert_eq!(code, 4001);
    c.send(json!({"type":"connection"}));
    assert_eq!(
        until(&mut c, |v| v["type"] == "connection")["data"]["root_id"],
        "finn"
    );
}
