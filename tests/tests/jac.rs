//! Every example of seed 002 (jac-cloud websocket) over real sockets: identity by header,
//! query or `change_user`; `user`/`channel`/`client` events across cores; validation.

use rookery_tests::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const PUBLIC: &str = "n::000000000000000000000001";

fn jac_server() -> std::net::SocketAddr {
    server_with(2, |c| c.jwt_secret = Some(JWT_SECRET.into()))
}

fn connection(c: &mut Client) -> Value {
    c.recv_type("connection")["data"].clone()
}

fn jac(addr: std::net::SocketAddr, query: &str) -> (Client, Value) {
    let mut c = Client::connect(addr, &format!("/jac/websocket{query}"));
    let info = connection(&mut c);
    (c, info)
}

#[test]
fn connection_event_on_connect_and_on_request() {
    let addr = jac_server();
    let (mut c, info) = jac(addr, "?channel_id=anystring");
    let client_id = info["client_id"].as_str().unwrap();
    let (ts, hex) = client_id.split_once(':').unwrap();
    assert!(ts.parse::<u64>().is_ok() && hex.len() == 32, "{client_id}");
    assert_eq!(info["root_id"], PUBLIC);
    assert_eq!(info["channel_id"], "anystring");
    c.send(json!({"type":"connection"}));
    assert_eq!(connection(&mut c), info);
    // Without channel_id: a generated one in the same format.
    let (_, info) = jac(addr, "");
    assert!(info["channel_id"].as_str().unwrap().contains(':'));
}

#[test]
fn tokens_by_header_or_query_set_the_root_and_bad_ones_stay_public_with_an_error() {
    let addr = jac_server();
    let mut c = connect_with_header(
        addr,
        "/jac/websocket",
        &format!("Bearer {}", token("n::672b")),
    );
    assert_eq!(connection(&mut c)["root_id"], "n::672b");
    let (_, info) = jac(addr, &format!("?token={}", token("n::abc")));
    assert_eq!(info["root_id"], "n::abc");
    for bad in [
        token_with("n::x", JWT_SECRET, -30),
        token_with("n::x", "forged-secret", 600),
        "not.a.token".to_owned(),
    ] {
        let (mut c, info) = jac(addr, &format!("?token={bad}"));
        assert_eq!(info["root_id"], PUBLIC);
        let error = c.recv_type("error");
        assert_eq!(error["error"][0]["loc"], json!(["token"]));
        assert_eq!(error["error"][0]["type"], "invalid_token");
        assert!(!error.to_string().contains("Traceback"));
    }
}

#[test]
fn user_events_reach_every_connection_of_the_user_on_every_core() {
    let addr = jac_server();
    let user_token = token("n::user1");
    // The user's Pact connections report their core: get both cores.
    let mut pact = Vec::new();
    let mut cores = BTreeSet::new();
    while cores.len() < 2 {
        let (c, profile) = Client::pact(addr, &format!("lobby&token={user_token}"));
        assert_eq!(profile["id"], "n::user1", "profile.id is the user id");
        cores.insert(profile["connectionDetails"]["core"].as_u64().unwrap());
        pact.push(c);
        assert!(pact.len() < 64);
    }
    let mut jacs: Vec<Client> = (0..3)
        .map(|_| jac(addr, &format!("?token={user_token}")).0)
        .collect();
    let (mut bystander, _) = jac(addr, "");
    let (mut sender, _) = jac(addr, "");
    sender.send(json!({"type":"user","root_ids":["n::user1"],"data":{"type":"chat","data":{"message":"string"}}}));
    for c in jacs.iter_mut() {
        assert_eq!(c.recv(), json!({"type":"chat","data":{"message":"string"}}));
    }
    for c in pact.iter_mut() {
        let b = c.recv_type("broadcast");
        assert_eq!(
            b["data"],
            json!({"type":"chat","data":{"message":"string"}})
        );
    }
    bystander.expect_silence(150);
    sender.expect_silence(50);
    // Targeting yourself includes yourself.
    jacs[0].send(json!({"type":"user","root_ids":["n::user1"],"data":{"self":true}}));
    for c in jacs.iter_mut() {
        assert_eq!(c.recv(), json!({"self":true}));
    }
}

#[test]
fn channel_and_client_events() {
    let addr = jac_server();
    let (mut a, a_info) = jac(addr, "?channel_id=group");
    let (mut b, _) = jac(addr, "?channel_id=group");
    let (mut c, c_info) = jac(addr, "?channel_id=elsewhere");
    let (mut pact, _) = Client::pact(addr, "group");
    c.send(json!({"type":"channel","channel_ids":["group"],"data":{"blast":1}}));
    assert_eq!(a.recv(), json!({"blast":1}));
    assert_eq!(b.recv(), json!({"blast":1}));
    assert_eq!(pact.recv_type("broadcast")["data"], json!({"blast":1}));
    c.expect_silence(100);
    // A channel event into your own channel includes you.
    a.send(json!({"type":"channel","channel_ids":["group","elsewhere"],"data":{"both":1}}));
    assert_eq!(a.recv(), json!({"both":1}));
    assert_eq!(b.recv(), json!({"both":1}));
    assert_eq!(c.recv(), json!({"both":1}));
    // Client events: just the named connections, wherever they are.
    b.send(json!({"type":"client","client_ids":[a_info["client_id"], c_info["client_id"]],"data":{"dm":1}}));
    assert_eq!(a.recv(), json!({"dm":1}));
    assert_eq!(c.recv(), json!({"dm":1}));
    b.expect_silence(100);
}

#[test]
fn change_user_switches_identity_both_ways() {
    let addr = jac_server();
    let (mut c, info) = jac(addr, "");
    assert_eq!(info["root_id"], PUBLIC);
    c.send(json!({"type":"change_user","token":format!("Bearer {}", token("n::late"))}));
    let after = connection(&mut c);
    assert_eq!(after["root_id"], "n::late");
    assert_eq!(
        after["client_id"], info["client_id"],
        "client and channel are kept"
    );
    assert_eq!(after["channel_id"], info["channel_id"]);
    let (mut other, _) = jac(addr, "");
    other.send(json!({"type":"user","root_ids":["n::late"],"data":{"hi":1}}));
    assert_eq!(c.recv(), json!({"hi":1}));
    c.send(json!({"type":"change_user"}));
    assert_eq!(connection(&mut c)["root_id"], PUBLIC);
    other.send(json!({"type":"user","root_ids":["n::late"],"data":{"hi":2}}));
    c.expect_silence(150);
    c.send(json!({"type":"change_user","token":"Bearer forged.token.here"}));
    assert_eq!(c.recv_type("error")["error"][0]["type"], "invalid_token");
    assert_eq!(connection(&mut c)["root_id"], PUBLIC);
}

#[test]
fn malformed_events_get_structured_errors_and_the_socket_stays_open() {
    let addr = jac_server();
    let (mut c, _) = jac(addr, "");
    for (junk, kind) in [
        ("not json", "json_invalid"),
        (r#"{"type":"dance"}"#, "union_tag_invalid"),
        (r#"{"type":"user","root_ids":[],"data":{}}"#, "too_short"),
        (r#"{"type":"user","data":{}}"#, "missing"),
        (
            r#"{"type":"channel","channel_ids":["a"],"data":"text"}"#,
            "dict_type",
        ),
        (
            r#"{"type":"client","client_ids":"a","data":{}}"#,
            "list_type",
        ),
    ] {
        c.send_text(junk);
        let e = c.recv_type("error");
        assert_eq!(e["error"][0]["type"], kind, "{junk}: {e}");
        assert!(e["error"][0]["msg"].is_string());
    }
    c.send(json!({"type":"walker","walker":"your_event_name","response":true,"context":{}}));
    let w = c.recv_type("walker");
    assert!(w["error"].as_str().unwrap().contains("backend"));
    c.send(json!({"type":"connection"}));
    connection(&mut c);
}

#[test]
fn require_auth_option_restricts_targeting_to_authenticated_users() {
    let addr = server_with(2, |c| {
        c.jwt_secret = Some(JWT_SECRET.into());
        c.jac_require_auth = true;
    });
    let (mut anon, anon_info) = jac(addr, "");
    let (mut authed, _) = jac(addr, &format!("?token={}", token("n::ok")));
    anon.send(json!({"type":"client","client_ids":[anon_info["client_id"]],"data":{"x":1}}));
    assert_eq!(
        anon.recv_type("error")["error"][0]["type"],
        "unauthenticated"
    );
    authed.send(json!({"type":"client","client_ids":[anon_info["client_id"]],"data":{"x":2}}));
    assert_eq!(anon.recv(), json!({"x":2}));
}
