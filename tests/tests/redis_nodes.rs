//! Several nodes sharing rooms through one Redis (`--engine redis`, SPEC §5.4): each test
//! starts its own `redis-server` and two or three nodes, with the members of a room spread
//! over them.

use rookery_tests::redis::{node, node_with, TestRedis};
use rookery_tests::*;
use serde_json::{json, Value};

const KEY: &str = "admin";

/// A Pact member of `room` on `addr`, subscribed to `topics`.
fn member(addr: std::net::SocketAddr, room: &str, topics: &[&str]) -> Client {
    let (mut c, _) = Client::pact(addr, room);
    for (i, topic) in topics.iter().enumerate() {
        let reply = c.call(json!({"type":"subscribe","data":topic}), &format!("s{i}"));
        assert_eq!(reply["type"], "ok", "{reply}");
    }
    c
}

#[test]
fn chat_reaches_members_on_every_node_in_one_order() {
    let redis = TestRedis::start();
    let (a, b) = (node(&redis), node(&redis));
    let mut on_a = member(a, "lobby", &["chat"]);
    let mut on_b = member(b, "lobby", &["chat"]);
    on_b.send(json!({"type":"chat","data":"from b","ref":"c1"}));
    let mut got_b = Vec::new();
    // The sender's own copy comes back from Redis, then its `ok`.
    loop {
        let m = on_b.recv();
        let done = m["type"] == "ok";
        got_b.push(m);
        if done {
            break;
        }
    }
    assert_eq!(got_b[0]["type"], "chat", "{got_b:?}");
    assert_eq!(got_b[0]["data"]["message"], "from b");
    assert_eq!(got_b[0]["seq"], 1);
    assert_eq!(got_b[1], json!({"type":"ok","ref":"c1"}));
    let m = on_a.recv_type("chat");
    assert_eq!(
        (m["data"]["message"].clone(), m["seq"].clone()),
        (json!("from b"), json!(1))
    );
    on_a.send(json!({"type":"chat","data":"from a"}));
    assert_eq!(on_b.recv_type("chat")["seq"], 2);
    assert_eq!(on_a.recv_type("chat")["seq"], 2);
}

#[test]
fn an_admin_broadcast_on_one_node_reaches_every_dialect_on_the_others() {
    let redis = TestRedis::start();
    let admin = |c: &mut rookery::Config| c.admin_key = Some(KEY.into());
    let (a, b) = (node_with(&redis, 1, admin), node_with(&redis, 2, admin));
    let (mut pact, _) = Client::pact(b, "town");
    let (mut wsdo, _) = Client::wsdo(b, "town");
    let mut jac = Client::connect(a, "/jac/websocket?channel_id=town");
    jac.recv_type("connection");
    let mut lambda = Client::connect(b, "/channels");
    lambda.send(json!({"type":"join","channelId":"town"}));
    lambda.recv_type("joinSuccess");
    let auth = format!("Bearer {KEY}");
    let (status, _) = http_json(
        a,
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
    assert_eq!(data["payload"], json!({"headline":"hi"}));
    assert_eq!(jac.recv(), json!({"type":"news","data":{"headline":"hi"}}));
    assert_eq!(
        lambda.recv(),
        json!({"type":"message","senderId":"server","data":{"headline":"hi"},"event":"news"})
    );
    // Admin requests on a node none of the room's members is on still reach them.
    let c = node_with(&redis, 1, admin);
    let (status, _) = http_json(
        c,
        "POST",
        "/api/rooms/town/broadcast",
        &[("Authorization", auth.as_str())],
        br#"{"type":"news","data":{"from":"c"}}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(pact.recv_type("news")["data"], json!({"from":"c"}));
    assert_eq!(jac.recv(), json!({"type":"news","data":{"from":"c"}}));
    let (status, _) = http(
        c,
        "PUT",
        "/api/rooms/town/config",
        &[("Authorization", auth.as_str())],
        b"{\"theme\":\"dark\"}",
    );
    assert_eq!(status, 200);
    assert_eq!(pact.recv_type("config")["data"], "{\"theme\":\"dark\"}");
    let details = wait_for_room(b, "town", |d| d["config"] == "{\"theme\":\"dark\"}");
    assert_eq!(details["count"], 4);
    while wsdo.recv()["type"] != "DATA" {}
    lambda.recv_type("message");
    // A Lambda publish on b reaches a's jac member, then the publisher hears it went out.
    lambda.send(json!({"type":"publish","data":{"from":"lambda"}}));
    assert_eq!(jac.recv(), json!({"from":"lambda"}));
    assert_eq!(lambda.recv()["type"], "message");
    assert_eq!(lambda.recv()["type"], "publishSuccess");
}

/// Values whose float sum is not exact (0.1 + 0.2 = 0.30000000000000004 in binary).
#[test]
fn counters_stay_exact_when_nodes_add_at_once() {
    let redis = TestRedis::start();
    let (a, b) = (node(&redis), node(&redis));
    let mut on_a = member(a, "score", &["counter"]);
    let mut on_b = member(b, "score", &["counter"]);
    let add = |c: &mut Client, by: &str, n: usize| {
        let msgs: Vec<Value> = (0..n)
            .map(|_| json!({"type":"counter","data":{"id":"x","value":by}}))
            .collect();
        c.send_all(&msgs);
    };
    add(&mut on_a, "0.1", 20);
    add(&mut on_b, "0.2", 20);
    let last_of = |c: &mut Client| {
        let mut values = Vec::new();
        while values.len() < 40 {
            let m = c.recv();
            if m["type"] == "counter" {
                values.push(m["data"]["value"].clone());
            }
        }
        values
    };
    let (seen_a, seen_b) = (last_of(&mut on_a), last_of(&mut on_b));
    assert_eq!(seen_a, seen_b, "one order for everybody");
    assert_eq!(seen_a[39].to_string(), "6", "exact: 20 × 0.1 + 20 × 0.2");
    for v in &seen_a {
        let text = v.to_string();
        assert!(text.len() <= 4, "no float noise: {text}");
    }
    let details = wait_for_room(a, "score", |d| d["counters"]["x"] == json!(6));
    assert_eq!(details["counters"], json!({"x": 6}));
}

/// Many writers on one counter from every node at once: the script adds, so no write
/// loses a race and none is refused (a compare-and-set from each node refused them once
/// 64 attempts lost), and the sum is exact.
#[test]
fn a_crowd_of_writers_on_one_counter_is_never_refused() {
    let redis = TestRedis::start();
    let (a, b) = (node(&redis), node(&redis));
    let mut writers: Vec<Client> = (0..12)
        .map(|i| Client::pact(if i % 2 == 0 { a } else { b }, "crowd").0)
        .collect();
    for w in writers.iter_mut() {
        let msgs: Vec<Value> = (0..30)
            .map(|r| json!({"type":"counter","ref":r,"data":{"id":"n","value":"0.1"}}))
            .collect();
        w.send_all(&msgs);
    }
    for w in writers.iter_mut() {
        let mut oks = 0;
        while oks < 30 {
            let m = w.recv();
            assert_ne!(m["type"], "error", "{m}");
            if m["type"] == "ok" {
                oks += 1;
            }
        }
    }
    let details = wait_for_room(b, "crowd", |d| d["counters"]["n"] == json!(36));
    assert_eq!(
        details["counters"],
        json!({"n": 36}),
        "12 × 30 × 0.1, exactly"
    );
}

/// A sum beyond 28 significant digits, which the script does not make (rust_decimal would
/// round it): the node adds with rust_decimal and sets it by compare-and-set, so nodes on
/// Redis end where a node alone does.
#[test]
fn a_sum_the_script_hands_back_ends_where_a_node_alone_ends() {
    let adds = ["9999999999999999999999999999", "0.5", "-0.25"];
    let values = |addr| {
        let mut c = member(addr, "big", &["counter"]);
        let msgs: Vec<Value> = adds
            .iter()
            .map(|by| json!({"type":"counter","data":{"id":"x","value":by}}))
            .collect();
        c.send_all(&msgs);
        let mut values = Vec::new();
        while values.len() < adds.len() {
            let m = c.recv();
            assert_ne!(m["type"], "error", "{m}");
            if m["type"] == "counter" {
                values.push(m["data"]["value"].to_string());
            }
        }
        values
    };
    let alone = values(server(1));
    let redis = TestRedis::start();
    let (a, b) = (node(&redis), node(&redis));
    let on_redis = values(a);
    assert_eq!(on_redis, alone);
    let details = wait_for_room(b, "big", |d| d["counters"]["x"].is_number());
    assert_eq!(details["counters"]["x"].to_string(), alone[2]);
}

#[test]
fn votes_are_tallied_once_for_every_node() {
    let redis = TestRedis::start();
    let (a, b) = (node(&redis), node(&redis));
    for kind in ["poll", "ephemeralPoll"] {
        let room = format!("vote-{kind}");
        let mut on_a = member(a, &room, &[kind]);
        let mut on_b = member(b, &room, &[kind]);
        on_a.send(json!({"type":kind,"data":{"id":"p","answer":"yes"},"ref":"v1"}));
        for c in [&mut on_a, &mut on_b] {
            let stats = c.recv_type(kind);
            assert_eq!(
                stats["data"],
                json!({"id":"p","stats":{"yes":1}}),
                "{stats}"
            );
            assert_eq!(stats["seq"], 1);
        }
        // Applied once its event came back from Redis: the `ok` follows the event.
        assert_eq!(on_a.recv(), json!({"type":"ok","ref":"v1"}));
        on_b.send(json!({"type":kind,"data":{"id":"p","answer":"no"}}));
        for c in [&mut on_a, &mut on_b] {
            let stats = c.recv_type(kind);
            assert_eq!(
                stats["data"]["stats"],
                json!({"yes": 1, "no": 1}),
                "{stats}"
            );
        }
        // A's vote moves; voting the same answer again changes nothing and sends nothing
        // (but its `ok`).
        on_a.send(json!({"type":kind,"data":{"id":"p","answer":"no"}}));
        assert_eq!(on_b.recv_type(kind)["data"]["stats"], json!({"no": 2}));
        assert_eq!(on_a.recv_type(kind)["data"]["stats"], json!({"no": 2}));
        let again = on_a.call(json!({"type":kind,"data":{"id":"p","answer":"no"}}), "v2");
        assert_eq!(again, json!({"type":"ok","ref":"v2"}));
        on_b.expect_silence(200);
        // A late joiner on either node gets the tally as it stands.
        let (mut late, _) = Client::pact(b, &room);
        late.send(json!({"type":"subscribe","data":kind}));
        assert_eq!(late.recv_type(kind)["data"]["stats"], json!({"no": 2}));
    }
}

#[test]
fn many_publishers_on_three_nodes_are_seen_in_one_order() {
    let redis = TestRedis::start();
    let nodes = [node(&redis), node(&redis), node_with(&redis, 2, |_| {})];
    let mut readers: Vec<Client> = nodes
        .iter()
        .map(|n| member(*n, "busy", &["chat"]))
        .collect();
    let mut writers: Vec<Client> = nodes.iter().map(|n| member(*n, "busy", &[])).collect();
    const EACH: usize = 50;
    std::thread::scope(|s| {
        for (w, writer) in writers.iter_mut().enumerate() {
            s.spawn(move || {
                for i in 0..EACH {
                    writer.send(json!({"type":"chat","data":format!("{w}-{i}")}));
                }
            });
        }
    });
    let mut orders = Vec::new();
    for reader in &mut readers {
        let mut order = Vec::new();
        while order.len() < 3 * EACH {
            let m = reader.recv_type("chat");
            assert_eq!(m["seq"], json!(order.len() + 1), "no gap, no repeat");
            order.push(m["data"]["message"].as_str().unwrap().to_owned());
        }
        orders.push(order);
    }
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[0], orders[2]);
    for w in 0..3 {
        let mine: Vec<_> = orders[0]
            .iter()
            .filter(|m| m.starts_with(&format!("{w}-")))
            .collect();
        let sent: Vec<_> = (0..EACH).map(|i| format!("{w}-{i}")).collect();
        assert_eq!(
            mine,
            sent.iter().collect::<Vec<_>>(),
            "each publisher's own order kept"
        );
    }
}

/// A member's burst (messages that reach the server in one write, handled in one turn) is
/// sequenced in fewer script calls than events — a run of one room's events is one call
/// and one publication — and still reaches members on both nodes whole and in order.
#[test]
fn a_burst_is_sequenced_in_runs_and_seen_in_order_on_every_node() {
    let redis = TestRedis::start();
    let (a, b) = (node(&redis), node(&redis));
    let mut readers = [member(a, "burst", &["chat"]), member(b, "burst", &["chat"])];
    let mut writer = member(a, "burst", &[]);
    const BURST: usize = 60;
    let burst: Vec<Value> = (0..BURST)
        .map(|i| json!({"type":"chat","data":format!("m{i}")}))
        .collect();
    writer.send_all(&burst);
    for reader in &mut readers {
        for i in 0..BURST {
            let m = reader.recv_type("chat");
            assert_eq!(m["seq"], json!(i + 1), "no gap, no repeat: {m}");
            assert_eq!(m["data"]["message"], format!("m{i}"));
        }
    }
    let events = metric(a, "rookery_redis_proposed_events_total");
    let calls = metric(a, "rookery_redis_sequencer_calls_total");
    assert_eq!(events, BURST as u64);
    assert!(calls < events, "{calls} calls for {events} events");
    // What follows is sequenced after the burst, wherever it is proposed.
    readers[1].send(json!({"type":"chat","data":"after"}));
    for reader in &mut readers {
        assert_eq!(reader.recv_type("chat")["seq"], json!(BURST + 1));
    }
}

/// Plain events wait while their room has a call of events with Redis and go together
/// after it (`shell/calls.rs`), but never after a change made after them: a burst longer
/// than one call, a counter increment, then more chat, sent in one write, are sequenced in
/// the order they were sent, on every node.
#[test]
fn a_change_after_waiting_events_is_sequenced_after_them() {
    let redis = TestRedis::start();
    // No rate limit: the burst is longer than a connection's default burst allowance.
    let unlimited = |c: &mut rookery::Config| c.max_message_rate = 0;
    let (a, b) = (
        node_with(&redis, 1, unlimited),
        node_with(&redis, 1, unlimited),
    );
    let topics = ["chat", "counter"];
    let mut readers = [member(a, "order", &topics), member(b, "order", &topics)];
    let mut writer = member(a, "order", &[]);
    const BEFORE: usize = 514; // more than one call's 512 events (`shell/calls.rs`)
    const AFTER: usize = 10;
    let chat = |i: usize| json!({"type":"chat","data":format!("m{i}")});
    let mut sent: Vec<Value> = (0..BEFORE).map(chat).collect();
    sent.push(json!({"type":"counter","data":{"id":"x","value":"1"}}));
    sent.extend((BEFORE..BEFORE + AFTER).map(chat));
    writer.send_all(&sent);
    for reader in &mut readers {
        let mut seen = Vec::new();
        while seen.len() < sent.len() {
            let m = reader.recv();
            match m["type"].as_str() {
                Some("chat") => {
                    let text = m["data"]["message"].as_str().unwrap().to_owned();
                    seen.push((text, m["seq"].clone()));
                }
                Some("counter") => seen.push(("counter".to_owned(), m["seq"].clone())),
                _ => {}
            }
        }
        let expected: Vec<(String, Value)> = (0..BEFORE)
            .map(|i| format!("m{i}"))
            .chain(["counter".to_owned()])
            .chain((BEFORE..BEFORE + AFTER).map(|i| format!("m{i}")))
            .enumerate()
            .map(|(k, text)| (text, json!(k + 1)))
            .collect();
        assert_eq!(seen, expected, "in the order sent, positions without a gap");
    }
}

#[test]
fn presence_spans_the_nodes_and_ephemeral_votes_go_with_their_voter() {
    let redis = TestRedis::start();
    let (a, b) = (node(&redis), node(&redis));
    let (_first, _) = Client::pact(a, "people");
    let (_second, _) = Client::pact(b, "people");
    let mut watcher = member(a, "people", &["ephemeralPoll"]);
    watcher.send(json!({"type":"subscribe","data":"presence"}));
    // Joins reach a's view as Redis orders them (b's member's, the watcher's own): in the
    // snapshot, or in diffs after it.
    let mut snap = watcher.recv_type("presence")["data"].clone();
    while snap["count"].as_u64().unwrap() < 3 {
        let joined = watcher.recv_type("presence:joined")["data"].clone();
        snap["count"] = joined["count"].clone();
        snap["members"]
            .as_array_mut()
            .unwrap()
            .push(joined["member"].clone());
    }
    assert_eq!(snap["count"], 3, "members of both nodes: {snap}");
    assert_eq!(snap["members"].as_array().unwrap().len(), 3, "{snap}");
    // A newcomer on b: a's watcher sees it join, change and leave, with the room's count.
    let (mut newcomer, profile) = Client::pact(b, "people");
    let joined = watcher.recv_type("presence:joined")["data"].clone();
    assert_eq!(joined["member"]["id"], profile["id"]);
    assert_eq!(joined["count"], 4);
    newcomer.send(json!({"type":"ephemeralPoll","data":{"id":"mood","answer":"good"}}));
    assert_eq!(
        watcher.recv_type("ephemeralPoll")["data"]["stats"],
        json!({"good": 1})
    );
    newcomer.send(json!({"type":"login","data":{"nick":"z","_secret":"s"}}));
    let updated = watcher.recv_type("presence:updated")["data"].clone();
    assert_eq!(updated["member"]["properties"], json!({"nick":"z"}));
    // The room's details on either node list everybody.
    let details = wait_for_room(a, "people", |d| d["count"] == 4);
    assert_eq!(details["members"].as_array().unwrap().len(), 4);
    newcomer.ws.close(None).unwrap();
    let left = watcher.recv_type("presence:left")["data"].clone();
    assert_eq!(left["member"]["id"], profile["id"]);
    assert_eq!(left["count"], 3);
    // Its last connection gone, its ephemeral vote is withdrawn on every node.
    let poll = watcher.recv_type("ephemeralPoll");
    assert_eq!(poll["data"], json!({"id":"mood","stats":{}}), "{poll}");
}

#[test]
fn user_and_client_sends_reach_the_nodes_that_hold_them() {
    let redis = TestRedis::start();
    let setup = |c: &mut rookery::Config| {
        c.admin_key = Some(KEY.into());
        c.jwt_secret = Some(JWT_SECRET.into());
    };
    let (a, b) = (node_with(&redis, 1, setup), node_with(&redis, 2, setup));
    let t = token("n::dana");
    // Dana on both nodes, in two dialects; a bystander on b.
    let (mut dana_pact, _) = Client::pact(b, &format!("anywhere&token={t}"));
    let mut dana_jac = Client::connect(a, &format!("/jac/websocket?channel_id=x&token={t}"));
    dana_jac.recv_type("connection");
    let mut other = Client::connect(b, "/jac/websocket?channel_id=y");
    let other_id = other.recv_type("connection")["data"]["client_id"].clone();
    // A jac `user` event from a's other member reaches dana's connections on both nodes.
    let mut sender = Client::connect(a, "/jac/websocket?channel_id=z");
    sender.recv_type("connection");
    sender.send(json!({"type":"user","root_ids":["n::dana"],"data":{"hi":1}}));
    assert_eq!(dana_jac.recv(), json!({"hi":1}));
    assert_eq!(dana_pact.recv_type("broadcast")["data"], json!({"hi":1}));
    // A `client` event from a reaches the client on b, and nobody else.
    sender.send(json!({"type":"client","client_ids":[other_id],"data":{"dm":1}}));
    assert_eq!(other.recv(), json!({"dm":1}));
    dana_jac.expect_silence(200);
    // /api/notify on b reaches dana on a.
    let auth = format!("Bearer {KEY}");
    let headers = [("Authorization", auth.as_str())];
    let body = br#"{"users":["n::dana"],"data":{"progress":"50%"}}"#;
    assert_eq!(http_json(b, "POST", "/api/notify", &headers, body).0, 200);
    assert_eq!(dana_jac.recv(), json!({"progress":"50%"}));
    assert_eq!(
        dana_pact.recv_type("broadcast")["data"],
        json!({"progress":"50%"})
    );
    // The admin disconnect on a closes the client b holds.
    let path = format!("/api/clients/{}", other_id.as_str().unwrap());
    let (status, body) = http_json(a, "DELETE", &path, &headers, b"");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["disconnected"], 1);
    other.expect_close();
    let (status, _) = http_json(a, "DELETE", "/api/clients/nobody", &headers, b"");
    assert_eq!(status, 404);
}

/// The next websockets.do message of type `kind`, skipping presence diffs.
fn skip_presence(c: &mut Client, kind: &str) -> Value {
    loop {
        let m = c.recv();
        if !m["type"].as_str().unwrap_or("").starts_with("PRESENCE") {
            assert_eq!(m["type"], kind, "{m}");
            return m;
        }
    }
}

#[test]
fn emits_choose_and_await_members_of_every_node() {
    let redis = TestRedis::start();
    let timeout = std::time::Duration::from_secs(3);
    let tweak = |c: &mut rookery::Config| c.ack_timeout_ms = timeout.as_millis() as u64;
    let (a, b) = (node_with(&redis, 1, tweak), node_with(&redis, 2, tweak));
    let (mut on_a, a_hello) = Client::wsdo(a, "acks");
    let (mut on_b, b_hello) = Client::wsdo(b, "acks");
    let (mut pact_b, pact_profile) = Client::pact(b, "acks");
    let ids = [
        a_hello["clientID"].as_str().unwrap().to_owned(),
        b_hello["clientID"].as_str().unwrap().to_owned(),
        pact_profile["id"].as_str().unwrap().to_owned(),
    ];
    // The emitting node knows the members of the others (shared presence).
    wait_for_room(a, "acks", |d| d["count"] == 3);
    let emit = move |query: &str, n: u32| {
        http_json_within(
            a,
            "POST",
            &format!("/acks/emit{query}"),
            &[],
            format!("{{\"n\":{n}}}").as_bytes(),
            timeout + WAIT,
        )
    };
    for c in [&mut on_a, &mut on_b] {
        // The others' joins, seen by websockets.do members (they always see presence).
        while c.recv()["payload"]["clientID"] != ids[2] {}
    }
    // By id: only the member on b.
    let target = ids[1].clone();
    let (status, body) = emit(&format!("?clients={target}"), 1);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["clients"], json!([target]));
    assert_eq!(skip_presence(&mut on_b, "DATA")["payload"], json!({"n":1}));
    on_a.expect_silence(200);
    // All three of two nodes ack: 200 on a with every id.
    let emitter = std::thread::spawn(move || emit("?require-ack=true", 2));
    for c in [&mut on_a, &mut on_b] {
        let data = skip_presence(c, "DATA");
        assert_eq!(data["requires_ack"], true);
        c.send(json!({"type":"ACK","payload":{"eventID": data["eventID"]}}));
        assert_eq!(
            skip_presence(c, "ACK-RECIEVED")["payload"]["eventID"],
            data["eventID"]
        );
    }
    let data = pact_b.recv_type("broadcast");
    pact_b.send(json!({"type":"ack","data":{"eventID": data["eventID"]}}));
    let (status, body) = emitter.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let mut acked: Vec<String> = body["acked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    acked.sort();
    let mut all = ids.to_vec();
    all.sort();
    assert_eq!(acked, all);
    // The member on b stays silent: 408 naming it.
    let emitter = std::thread::spawn(move || emit("?require-ack=true", 3));
    let data = skip_presence(&mut on_a, "DATA");
    on_a.send(json!({"type":"ACK","payload":{"eventID": data["eventID"]}}));
    let data = pact_b.recv_type("broadcast");
    pact_b.send(json!({"type":"ack","data":{"eventID": data["eventID"]}}));
    skip_presence(&mut on_b, "DATA");
    let (status, body) = emitter.join().unwrap();
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["missing"], json!([ids[1]]));
    // Random members are drawn from every node: two of three, without repeats.
    let (status, body) = emit("?clients=2", 4);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["clients"].as_array().unwrap().len(), 2);
    let (status, _) = emit("?clients=4", 5);
    assert_eq!(status, 400);
}

#[test]
fn pact_suffixes_stay_unique_in_a_room_across_nodes() {
    let redis = TestRedis::start();
    let (a, b) = (node(&redis), node(&redis));
    let mut clients = Vec::new();
    let mut suffixes = std::collections::BTreeSet::new();
    // 35 joins on each node: more than a node's block of suffixes (32), so each reserves
    // another while members join.
    for i in 0..70 {
        let (c, profile) = Client::pact(if i % 2 == 0 { a } else { b }, "names");
        let suffix = profile["suffix"].as_u64().unwrap();
        assert!(suffixes.insert(suffix), "suffix {suffix} handed out twice");
        clients.push(c);
    }
    // Each node's suffixes increase with its joins.
    let (_, next_a) = Client::pact(a, "names");
    assert!(next_a["suffix"].as_u64().unwrap() > 35, "{next_a}");
}

/// A burst is kept as runs (a call's events are one entry of the room's stream,
/// `redis/wire.rs`): history pages and resumes that begin or end inside a run get exactly
/// the events asked for, from either node.
#[test]
fn history_and_resume_cut_through_runs_exactly() {
    let redis = TestRedis::start();
    let (a, b) = (node(&redis), node(&redis));
    let mut reader = member(b, "runs", &["chat"]);
    let mut writer = member(a, "runs", &[]);
    const BURST: u64 = 60;
    let burst: Vec<Value> = (0..BURST)
        .map(|i| json!({"type":"chat","data":format!("m{i}")}))
        .collect();
    writer.send_all(&burst);
    for i in 1..=BURST {
        assert_eq!(reader.recv_type("chat")["seq"], json!(i));
    }
    let entries = redis.command("XLEN rk:{runs}:log");
    let entries: u64 = entries.trim().trim_start_matches(':').parse().unwrap();
    assert!(
        entries < BURST,
        "{entries} entries for {BURST} events: no runs"
    );

    let seqs = |page: &Value| -> Vec<u64> {
        let events = page["events"].as_array().expect("events");
        events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
    };
    for addr in [a, b] {
        for limit in [1, 5, 13] {
            let path = format!("/api/rooms/runs/history?limit={limit}");
            let (status, page) = http_json(addr, "GET", &path, &[], b"");
            assert_eq!(status, 200, "{page}");
            let newest: Vec<u64> = (BURST + 1 - limit..=BURST).collect();
            assert_eq!(seqs(&page), newest, "{path}");
            for before in 1..=BURST + 1 {
                let path = format!("/api/rooms/runs/history?limit={limit}&before={before}");
                let (status, page) = http_json(addr, "GET", &path, &[], b"");
                assert_eq!(status, 200, "{page}");
                let expected: Vec<u64> = (before.saturating_sub(limit).max(1)..before).collect();
                assert_eq!(seqs(&page), expected, "{path}");
            }
        }
    }

    let (_, profile) = Client::pact(a, "runs");
    let epoch = profile["pos"]["epoch"].clone();
    for after in [0, 1, 7, 30, 59, BURST] {
        let mut late = member(a, "runs", &["chat"]);
        late.send(json!({"type":"resume","ref":"r","data":{"epoch":epoch,"seq":after}}));
        let mut replayed = Vec::new();
        let resumed = loop {
            let m = late.recv();
            match m["type"].as_str() {
                Some("chat") => replayed.push(m["seq"].as_u64().unwrap()),
                _ if m["ref"] == "r" => break m,
                _ => {}
            }
        };
        assert_eq!(resumed["type"], "resumed", "{resumed}");
        assert_eq!(resumed["data"]["recovered"], true, "{resumed}");
        assert_eq!(resumed["data"]["missed"], BURST - after, "{resumed}");
        assert_eq!(
            replayed,
            (after + 1..=BURST).collect::<Vec<_>>(),
            "after {after}"
        );
    }
}

/// A burst of large messages is cut into several calls by size (`MAX_RUN_BYTES`), sent
/// one after the other: every event arrives whole, once, in the order sent, on both
/// nodes.
#[test]
fn a_burst_larger_than_a_call_goes_as_several_calls_in_order() {
    let redis = TestRedis::start();
    let (a, b) = (node(&redis), node(&redis));
    let mut readers = [member(a, "large", &["chat"]), member(b, "large", &["chat"])];
    let mut writer = member(a, "large", &[]);
    // 40 × ~60 KB: more than twice a call's 1 MiB of bodies.
    const BURST: usize = 40;
    let text = |i: usize| format!("{i:>3}{}", "x".repeat(60_000));
    let burst: Vec<Value> = (0..BURST)
        .map(|i| json!({"type":"chat","data":text(i)}))
        .collect();
    writer.send_all(&burst);
    for reader in &mut readers {
        for i in 0..BURST {
            let m = reader.recv_type("chat");
            assert_eq!(m["seq"], json!(i + 1), "no gap, no repeat");
            assert!(
                m["data"]["message"] == text(i),
                "event {i} whole and in order"
            );
        }
    }
    let calls = metric(a, "rookery_redis_sequencer_calls_total");
    assert_eq!(
        metric(a, "rookery_redis_proposed_events_total"),
        BURST as u64
    );
    assert!(calls >= 3, "{calls} calls for {BURST} events of ~60 KB");
}

/// Runs of several rooms made in one turn share a script call (standalone Redis,
/// `SEQUENCE_ROOMS` in `shell/sequencer.rs`), and each room still gets its own events,
/// whole, once and in order, on both nodes, with a history that pages exactly. Rounds of
/// bursts into many rooms go on until a call has carried several rooms (under load every
/// turn has many rooms' events; a round that happens to reach the node one room at a time
/// just goes again).
#[test]
fn runs_of_many_rooms_share_calls_and_each_room_keeps_its_order() {
    let redis = TestRedis::start();
    let unlimited = |c: &mut rookery::Config| c.max_message_rate = 0;
    let (a, b) = (
        node_with(&redis, 1, unlimited),
        node_with(&redis, 1, unlimited),
    );
    const ROOMS: usize = 12;
    const PER_ROUND: usize = 40;
    const MAX_ROUNDS: usize = 25;
    let names: Vec<String> = (0..ROOMS).map(|r| format!("many-{r}")).collect();
    let mut readers: Vec<[Client; 2]> = names
        .iter()
        .map(|n| [member(a, n, &["chat"]), member(b, n, &["chat"])])
        .collect();
    let mut writers: Vec<Client> = names.iter().map(|n| member(a, n, &[])).collect();
    let mut sent = 0;
    for round in 1..=MAX_ROUNDS {
        for (r, writer) in writers.iter_mut().enumerate() {
            let burst: Vec<Value> = (sent..sent + PER_ROUND)
                .map(|i| json!({"type":"chat","data":format!("{r}:{i}")}))
                .collect();
            writer.send_all(&burst);
        }
        for (r, pair) in readers.iter_mut().enumerate() {
            for reader in pair.iter_mut() {
                for i in sent..sent + PER_ROUND {
                    let m = reader.recv_type("chat");
                    assert_eq!(m["seq"], json!(i + 1), "room {r}: no gap, no repeat: {m}");
                    assert_eq!(m["data"]["message"], format!("{r}:{i}"), "room {r}");
                }
            }
        }
        sent += PER_ROUND;
        if metric(a, "rookery_redis_multi_room_calls_total") > 0 {
            break;
        }
        assert!(
            round < MAX_ROUNDS,
            "no call carried several rooms in {MAX_ROUNDS} rounds"
        );
    }
    let events = metric(a, "rookery_redis_proposed_events_total");
    assert_eq!(events, (ROOMS * sent) as u64);
    // Each room's history, read on either node, is its events in order.
    for (r, name) in names.iter().enumerate() {
        let path = format!("/api/rooms/{name}/history?limit={sent}");
        let (status, page) = http_json([a, b][r % 2], "GET", &path, &[], b"");
        assert_eq!(status, 200, "{page}");
        let texts: Vec<&str> = page["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["data"]["message"].as_str().unwrap_or("?"))
            .collect();
        let expected: Vec<String> = (0..sent).map(|i| format!("{r}:{i}")).collect();
        assert_eq!(texts, expected, "{path}");
    }
}
