//! SLIP Sockets' control API with the connection on another node (`--engine redis`): the
//! node that gets the request reaches the node that holds the connection.

use rookery_tests::redis::{node_with, TestRedis};
use rookery_tests::*;
use serde_json::{json, Value};
use std::time::Duration;

const SECRET: &str = "slip-secret";

fn recv_text(c: &mut Client) -> String {
    loop {
        match c.read().expect("a frame") {
            tungstenite::Message::Text(t) => return t.to_string(),
            tungstenite::Message::Close(f) => panic!("closed: {f:?}"),
            _ => continue,
        }
    }
}

fn control(addr: std::net::SocketAddr, body: &Value) -> u16 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"iss":"slip-sockets","aud":"ControlEvent","iat":now,"exp":now + 60}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let auth = format!("Bearer {token}");
    let headers = [("Authorization", auth.as_str())];
    http_json(
        addr,
        "POST",
        "/slip/control",
        &headers,
        body.to_string().as_bytes(),
    )
    .0
}

#[test]
fn the_control_api_reaches_connections_on_other_nodes() {
    let backend =
        TestBackend::start(|_| (200, json!([{"type":"ACCEPT"}]).to_string(), Duration::ZERO));
    let redis = TestRedis::start();
    let url = backend.url.clone();
    let slip = move |c: &mut rookery::Config| {
        c.slip_target_url = Some(url.clone());
        c.slip_jwt_secret = Some(SECRET.into());
        c.backend_timeout_ms = 4_000;
    };
    let (a, b) = (
        node_with(&redis, 1, slip.clone()),
        node_with(&redis, 1, slip),
    );
    let mut on_b = Client::connect(b, "/slip");
    let open = backend.wait_for(|r| r.json()[0]["type"] == "OPEN");
    let id = open.header("x-connection-id").unwrap().to_owned();
    let (mut pact, _) = Client::pact(a, "vip");
    // Subscribed through a, while it is on b.
    let subscribe = json!([{"target": id, "event":{"type":"SUBSCRIBE","target":"vip"}}]);
    assert_eq!(control(a, &subscribe), 200);
    wait_for_room(a, "vip", |d| d["count"] == 2);
    let text = json!([{"target":"vip","event":{"type":"TEXT","data":"psst"}}]);
    assert_eq!(control(a, &text), 200);
    assert_eq!(recv_text(&mut on_b), "psst");
    assert_eq!(pact.recv_type("broadcast")["data"], "psst");
    let unsubscribe = json!([{"target": id, "event":{"type":"UNSUBSCRIBE","target":"vip"}}]);
    assert_eq!(control(a, &unsubscribe), 200);
    wait_for_room(a, "vip", |d| d["count"] == 1);
    let disconnect = json!([{"target": id, "event":{"type":"DISCONNECT"}}]);
    assert_eq!(control(a, &disconnect), 200);
    assert_eq!(on_b.expect_close().0, 1000);
}
