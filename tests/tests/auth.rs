//! Identity (JWT) in the pact dialect, and Pact's admin `authenticate`.

use rookery_tests::*;
use serde_json::json;
use sha2::{Digest, Sha256};

const SIGNING: &str = "pact-signing-key";

fn auth_server() -> std::net::SocketAddr {
    server_with(2, |c| {
        c.jwt_secret = Some(JWT_SECRET.into());
        c.pact_signing_key = Some(SIGNING.into());
    })
}

fn admin_key(room: &str, ts: i64) -> String {
    Sha256::digest(format!("{room}{ts}{SIGNING}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn an_authenticated_users_tabs_share_its_id_and_vote_once() {
    let addr = auth_server();
    let t = token("alice");
    let (mut tab1, p1) = Client::pact(addr, &format!("votes&token={t}"));
    let mut tab2 = connect_with_header(addr, "/websocket?room=votes", &format!("Bearer {t}"));
    tab2.recv_type("config");
    let p2 = tab2.recv_type("profile")["data"].clone();
    assert_eq!(p1["id"], "alice");
    assert_eq!(p2["id"], "alice");
    assert_ne!(p1["suffix"], p2["suffix"]);
    tab1.call(json!({"type":"subscribe","data":"poll:p"}), "s");
    tab1.send(json!({"type":"poll","data":{"id":"p","answer":"yes"}}));
    assert_eq!(tab1.recv_type("poll")["data"]["stats"], json!({"yes":1}));
    tab2.send(json!({"type":"poll","data":{"id":"p","answer":"no"}}));
    assert_eq!(
        tab1.recv_type("poll")["data"]["stats"],
        json!({"no":1}),
        "moved, not added"
    );
}

#[test]
fn expired_forged_and_malformed_tokens_leave_the_connection_anonymous_and_say_why() {
    let addr = auth_server();
    for (bad, why) in [
        (token_with("bob", JWT_SECRET, -60), "expired"),
        (token_with("bob", "forged", 600), "signature"),
        ("garbage".to_owned(), "malformed"),
    ] {
        let (mut c, profile) = Client::pact(addr, &format!("anon&token={bad}"));
        assert_ne!(profile["id"], "bob");
        assert_eq!(profile["id"].as_str().unwrap().len(), 36);
        let e = c.recv_type("error");
        assert_eq!(e["data"]["code"], "invalid_token");
        assert!(e["data"]["message"].as_str().unwrap().contains(why), "{e}");
    }
    // Without --jwt-secret tokens are refused, and said so.
    let plain = server(1);
    let (mut c, _) = Client::pact(plain, &format!("x&token={}", token("bob")));
    assert_eq!(c.recv_type("error")["data"]["code"], "invalid_token");
}

#[test]
fn authenticate_grants_admin_for_config_and_broadcast() {
    let addr = auth_server();
    let (mut admin, _) = Client::pact(addr, "staff");
    let (mut member, _) = Client::pact(addr, "staff");
    member.call(json!({"type":"subscribe","data":"weather"}), "w");
    let ts = now_ms();
    let reply = admin.call(
        json!({"type":"authenticate","data":{"ts":ts,"key":admin_key("staff", ts)}}),
        "auth",
    );
    assert_eq!(reply["type"], "profile");
    assert_eq!(reply["data"]["role"], "admin");
    admin.send(json!({"type":"config","data":"{\"mode\":\"live\"}"}));
    assert_eq!(
        member.recv(),
        json!({"type":"config","data":"{\"mode\":\"live\"}","seq":1})
    );
    assert_eq!(admin.recv_type("config")["data"], "{\"mode\":\"live\"}");
    admin.send(
        json!({"type":"broadcast","data":{"to":"weather","type":"weather","data":{"rain":false}}}),
    );
    assert_eq!(
        member.recv(),
        json!({"type":"weather","data":{"rain":false},"seq":2})
    );
    admin.send(json!({"type":"broadcast","data":{"type":"broadcast","data":{"all":1}}}));
    assert_eq!(member.recv_type("broadcast")["data"], json!({"all":1}));
    assert_eq!(admin.recv_type("broadcast")["data"], json!({"all":1}));
    let d = wait_for_room(addr, "staff", |d| d["count"] == 2);
    assert_eq!(d["config"], "{\"mode\":\"live\"}");
}

#[test]
fn failed_authentication_gets_an_error_and_no_power() {
    let addr = auth_server();
    let (mut c, _) = Client::pact(addr, "staff2");
    let ts = now_ms();
    for (data, why) in [
        (json!({"ts":ts,"key":"00"}), "wrong key"),
        (
            json!({"ts":ts,"key":admin_key("other-room", ts)}),
            "wrong key",
        ),
        (
            json!({"ts":ts - 10 * 60 * 1000,"key":admin_key("staff2", ts - 10 * 60 * 1000)}),
            "timestamp",
        ),
    ] {
        let e = c.call(json!({"type":"authenticate","data":data}), "a");
        assert_eq!(e["data"]["code"], "unauthorized");
        assert!(e["data"]["message"].as_str().unwrap().contains(why), "{e}");
    }
    let e = c.call(json!({"type":"authenticate","data":{"key":"x"}}), "b");
    assert_eq!(e["data"]["code"], "invalid_data");
    let e = c.call(json!({"type":"config","data":"x"}), "c");
    assert_eq!(e["data"]["code"], "forbidden");
    // A server without a signing key refuses authenticate.
    let plain = server(1);
    let (mut c, _) = Client::pact(plain, "r");
    let e = c.call(
        json!({"type":"authenticate","data":{"ts":ts,"key":admin_key("r", ts)}}),
        "d",
    );
    assert_eq!(e["data"]["code"], "unauthorized");
}
