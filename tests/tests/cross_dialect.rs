//! One room, four dialects: an admin broadcast and an HTTP emit reach a Pact, a
//! websockets.do, a jac and a Lambda client, each in its own format; `/api/notify` reaches
//! users, channels and clients on every core.

use rookery_tests::*;
use serde_json::json;

const KEY: &str = "admin";

#[test]
fn broadcast_and_emit_reach_all_four_dialects_in_their_own_format() {
    let addr = server_with(2, |c| c.admin_key = Some(KEY.into()));
    let (mut pact, _) = Client::pact(addr, "town");
    let (mut wsdo, _) = Client::wsdo(addr, "town");
    let mut jac = Client::connect(addr, "/jac/websocket?channel_id=town");
    jac.recv_type("connection");
    let mut lambda = Client::connect(addr, "/channels");
    lambda.send(json!({"type":"join","channelId":"town"}));
    lambda.recv_type("joinSuccess");
    let d = wait_for_room(addr, "town", |d| d["count"] == 4);
    assert_eq!(d["members"].as_array().unwrap().len(), 4);

    let auth = format!("Bearer {KEY}");
    let (status, _) = http_json(
        addr,
        "POST",
        "/api/rooms/town/broadcast",
        &[("Authorization", auth.as_str())],
        br#"{"type":"news","data":{"headline":"hi"}}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(
        pact.recv(),
        json!({"type":"news","data":{"headline":"hi"},"seq":1})
    );
    let data = loop {
        let m = wsdo.recv();
        if m["type"] == "DATA" {
            break m;
        }
    };
    assert_eq!(
        (data["event"].as_str(), &data["payload"]),
        (Some("news"), &json!({"headline":"hi"}))
    );
    assert_eq!(jac.recv(), json!({"type":"news","data":{"headline":"hi"}}));
    assert_eq!(
        lambda.recv(),
        json!({"type":"message","senderId":"server","data":{"headline":"hi"},"event":"news"})
    );

    let (status, body) = http_json(addr, "POST", "/town/emit", &[], br#"{"hello":"town"}"#);
    assert_eq!(status, 200);
    assert_eq!(body["clients"].as_array().unwrap().len(), 4);
    let b = pact.recv_type("broadcast");
    assert_eq!(b["data"], json!({"hello":"town"}));
    assert_eq!(wsdo.recv_type("DATA")["payload"], json!({"hello":"town"}));
    assert_eq!(jac.recv(), json!({"hello":"town"}));
    assert_eq!(
        lambda.recv(),
        json!({"type":"message","senderId":"server","data":{"hello":"town"}})
    );

    // A Lambda publish reaches the others too.
    lambda.send(json!({"type":"publish","data":{"from":"lambda"}}));
    assert_eq!(
        pact.recv_type("broadcast")["data"],
        json!({"from":"lambda"})
    );
    assert_eq!(wsdo.recv_type("DATA")["payload"], json!({"from":"lambda"}));
    assert_eq!(jac.recv(), json!({"from":"lambda"}));
}

#[test]
fn notify_reaches_users_channels_and_clients_on_every_core() {
    let addr = server_with(2, |c| {
        c.admin_key = Some(KEY.into());
        c.jwt_secret = Some(JWT_SECRET.into());
    });
    let auth = format!("Bearer {KEY}");
    let headers = [("Authorization", auth.as_str())];
    let t = token("n::carol");
    let mut carol = Vec::new();
    let mut cores = std::collections::BTreeSet::new();
    while cores.len() < 2 {
        let (c, p) = Client::pact(addr, &format!("anywhere&token={t}"));
        cores.insert(p["connectionDetails"]["core"].as_u64().unwrap());
        carol.push(c);
        assert!(carol.len() < 64);
    }
    let mut jac = Client::connect(addr, &format!("/jac/websocket?channel_id=ops&token={t}"));
    jac.recv_type("connection");
    let mut other = Client::connect(addr, "/jac/websocket?channel_id=ops");
    let other_id = other.recv_type("connection")["data"]["client_id"].clone();

    let (status, _) = http_json(
        addr,
        "POST",
        "/api/notify",
        &headers,
        br#"{"users":["n::carol"],"data":{"progress":"0%"}}"#,
    );
    assert_eq!(status, 200);
    for c in carol.iter_mut() {
        assert_eq!(c.recv_type("broadcast")["data"], json!({"progress":"0%"}));
    }
    assert_eq!(jac.recv(), json!({"progress":"0%"}));
    other.expect_silence(100);

    let body = json!({"channels":["ops"],"data":{"to":"ops"}}).to_string();
    assert_eq!(
        http_json(addr, "POST", "/api/notify", &headers, body.as_bytes()).0,
        200
    );
    assert_eq!(jac.recv(), json!({"to":"ops"}));
    assert_eq!(other.recv(), json!({"to":"ops"}));

    let body = json!({"clients":[other_id],"data":{"just":"you"}}).to_string();
    assert_eq!(
        http_json(addr, "POST", "/api/notify", &headers, body.as_bytes()).0,
        200
    );
    assert_eq!(other.recv(), json!({"just":"you"}));
    jac.expect_silence(100);

    for bad in [
        &br#"{"data":{}}"#[..],
        br#"{"users":"x","data":{}}"#,
        br#"{"users":["a"]}"#,
        b"[]",
    ] {
        let (status, body) = http_json(addr, "POST", "/api/notify", &headers, bad);
        assert_eq!(status, 400, "{body}");
    }
    assert_eq!(http_json(addr, "POST", "/api/notify", &[], b"{}").0, 401);
}
