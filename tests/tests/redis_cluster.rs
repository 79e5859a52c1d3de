//! Nodes sharing rooms through a Redis Cluster of three masters (`--engine redis
//! --redis-cluster`, SPEC §5.4): each test starts its own cluster (`TestCluster`) and
//! nodes with `--cores 1`, with rooms whose slots are on different masters and the members
//! of each room spread over the nodes. Every node is ready (`/readyz` 200: each master's
//! link verified both ways) before a test starts.

use rookery::redis::topology::slot;
use rookery_tests::redis::{cluster_node, wait_ready, TestCluster};
use rookery_tests::*;
use serde_json::{json, Value};
use std::net::SocketAddr;

const KEY: &str = "admin";

/// A room whose slot (that of its hash tag, `{room}`) master `master` serves.
fn room_on(cluster: &TestCluster, master: usize, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|room| cluster.master_of(slot(room.as_bytes())) == master)
        .unwrap()
}

/// A Pact member of `room` on `addr`, subscribed to `topics`.
fn member(addr: SocketAddr, room: &str, topics: &[&str]) -> Client {
    let (mut c, _) = Client::pact(addr, room);
    for (i, topic) in topics.iter().enumerate() {
        let reply = c.call(json!({"type":"subscribe","data":topic}), &format!("s{i}"));
        assert_eq!(reply["type"], "ok", "{reply}");
    }
    c
}

/// The next `n` messages of type `kind` (skipping others).
fn next_of(c: &mut Client, kind: &str, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = c.recv();
        if m["type"] == kind {
            out.push(m);
        }
    }
    out
}

/// Two nodes (`--cores 1`) on `cluster`.
fn two_nodes(cluster: &TestCluster) -> (SocketAddr, SocketAddr) {
    (cluster_node(cluster, |_| {}), cluster_node(cluster, |_| {}))
}

/// `c` adds `value` to the room's counter `x`, and it is done.
fn add_to_counter(c: &mut Client, value: &str) {
    let reply = c.call(
        json!({"type":"counter","data":{"id":"x","value":value}}),
        "add",
    );
    assert_eq!(reply["type"], "ok", "{reply}");
}

/// A newcomer on `addr` loads `room` and is shown counter `x` at `value`.
fn newcomer_sees_counter(addr: SocketAddr, room: &str, value: f64) {
    let (mut late, _) = Client::pact(addr, room);
    late.send(json!({"type":"subscribe","data":"counter"}));
    assert_eq!(
        next_of(&mut late, "counter", 1)[0]["data"]["value"],
        json!(value)
    );
}

/// `on_b` chats `text`; both members see it as the room's event `seq`.
fn chat_from_b_seen_by_both(on_a: &mut Client, on_b: &mut Client, text: &str, seq: u64) {
    on_b.send(json!({"type":"chat","data":text}));
    for c in [on_a, on_b] {
        let m = next_of(c, "chat", 1).remove(0);
        assert_eq!(
            (m["data"]["message"].clone(), m["seq"].clone()),
            (json!(text), json!(seq)),
            "{m}"
        );
    }
}

#[test]
fn rooms_on_every_master_work_across_nodes() {
    let cluster = TestCluster::start();
    let nodes = [
        cluster_node(&cluster, |_| {}),
        cluster_node(&cluster, |_| {}),
        cluster_node(&cluster, |_| {}),
    ];
    let rooms: Vec<String> = (0..3).map(|m| room_on(&cluster, m, "room")).collect();
    for room in &rooms {
        let mut members: Vec<Client> = nodes
            .iter()
            .map(|n| member(*n, room, &["chat", "counter", "poll"]))
            .collect();
        // Chat: publishers on every node, one order for every member.
        const EACH: usize = 10;
        std::thread::scope(|s| {
            for (w, writer) in members.iter_mut().enumerate() {
                s.spawn(move || {
                    let msgs: Vec<Value> = (0..EACH)
                        .map(|i| json!({"type":"chat","data":format!("{w}-{i}")}))
                        .collect();
                    writer.send_all(&msgs);
                });
            }
        });
        let orders: Vec<Vec<Value>> = members
            .iter_mut()
            .map(|c| {
                next_of(c, "chat", 3 * EACH)
                    .into_iter()
                    .enumerate()
                    .map(|(i, m)| {
                        assert_eq!(m["seq"], json!(i + 1), "{room}: no gap, no repeat");
                        m["data"]["message"].clone()
                    })
                    .collect()
            })
            .collect();
        assert_eq!(orders[0], orders[1], "{room}");
        assert_eq!(orders[0], orders[2], "{room}");
        // Counters: exact decimals from two nodes at once.
        let add = |c: &mut Client, by: &str| {
            let msgs: Vec<Value> = (0..10)
                .map(|_| json!({"type":"counter","data":{"id":"x","value":by}}))
                .collect();
            c.send_all(&msgs);
        };
        add(&mut members[0], "0.1");
        add(&mut members[1], "0.2");
        let values: Vec<Vec<Value>> = members
            .iter_mut()
            .map(|c| {
                next_of(c, "counter", 20)
                    .into_iter()
                    .map(|m| m["data"]["value"].clone())
                    .collect()
            })
            .collect();
        assert_eq!(values[0], values[1], "{room}");
        assert_eq!(values[0], values[2], "{room}");
        assert_eq!(
            values[0][19].to_string(),
            "3",
            "{room}: 10 × 0.1 + 10 × 0.2"
        );
        // A poll: a vote on the third node is tallied once for all.
        members[2].send(json!({"type":"poll","data":{"id":"p","answer":"yes"}}));
        for c in &mut members {
            let stats = next_of(c, "poll", 1).remove(0);
            assert_eq!(stats["data"], json!({"id":"p","stats":{"yes":1}}), "{room}");
        }
        // Presence: a watcher on the first node sees members of every node, and a
        // newcomer on the third join and leave.
        let mut watcher = member(nodes[0], room, &[]);
        watcher.send(json!({"type":"subscribe","data":"presence"}));
        let snap = watcher.recv_type("presence")["data"].clone();
        assert_eq!(snap["count"], 4, "{room}: {snap}");
        let (mut newcomer, profile) = Client::pact(nodes[2], room);
        let joined = watcher.recv_type("presence:joined")["data"].clone();
        assert_eq!(joined["member"]["id"], profile["id"]);
        assert_eq!(joined["count"], 5);
        newcomer.ws.close(None).unwrap();
        let left = watcher.recv_type("presence:left")["data"].clone();
        assert_eq!(left["member"]["id"], profile["id"]);
        assert_eq!(left["count"], 4);
        // The room's details, read from its master, on a node.
        let details = wait_for_room(nodes[1], room, |d| d["counters"]["x"] == json!(3));
        assert_eq!(details["polls"]["p"], json!({"yes": 1}), "{details}");
    }
}

#[test]
fn user_and_client_sends_and_notify_reach_the_nodes_that_hold_them() {
    let cluster = TestCluster::start();
    let setup = |c: &mut rookery::Config| {
        c.admin_key = Some(KEY.into());
        c.jwt_secret = Some(JWT_SECRET.into());
    };
    let (a, b) = (cluster_node(&cluster, setup), cluster_node(&cluster, setup));
    let auth = format!("Bearer {KEY}");
    let headers = [("Authorization", auth.as_str())];
    // Several users, so that their directory entries sit on different masters.
    for user in ["n::dana", "n::eli", "n::fay"] {
        let t = token(user);
        let mut on_a = Client::connect(a, &format!("/jac/websocket?channel_id=x&token={t}"));
        on_a.recv_type("connection");
        let (mut on_b, _) = Client::pact(b, &format!("anywhere&token={t}"));
        let mut sender = Client::connect(a, "/jac/websocket?channel_id=z");
        sender.recv_type("connection");
        sender.send(json!({"type":"user","root_ids":[user],"data":{"hi":user}}));
        assert_eq!(on_a.recv(), json!({"hi":user}));
        assert_eq!(on_b.recv_type("broadcast")["data"], json!({"hi":user}));
        let body = json!({"users":[user],"data":{"progress":user}}).to_string();
        assert_eq!(
            http_json(b, "POST", "/api/notify", &headers, body.as_bytes()).0,
            200
        );
        assert_eq!(on_a.recv(), json!({"progress":user}));
        assert_eq!(
            on_b.recv_type("broadcast")["data"],
            json!({"progress":user})
        );
    }
    // A `client` event from a reaches the client on b, and nobody else.
    let mut other = Client::connect(b, "/jac/websocket?channel_id=y");
    let other_id = other.recv_type("connection")["data"]["client_id"].clone();
    let mut sender = Client::connect(a, "/jac/websocket?channel_id=z");
    sender.recv_type("connection");
    sender.send(json!({"type":"client","client_ids":[other_id],"data":{"dm":1}}));
    assert_eq!(other.recv(), json!({"dm":1}));
    // /api/notify to a client id on a node other than the one asked.
    let body = json!({"clients":[other_id],"data":{"n":2}}).to_string();
    assert_eq!(
        http_json(a, "POST", "/api/notify", &headers, body.as_bytes()).0,
        200
    );
    assert_eq!(other.recv(), json!({"n":2}));
    // The admin disconnect on a closes the client b holds.
    let path = format!("/api/clients/{}", other_id.as_str().unwrap());
    let (status, body) = http_json(a, "DELETE", &path, &headers, b"");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["disconnected"], 1);
    other.expect_close();
}

#[test]
fn history_and_resume_come_from_the_rooms_stream_on_its_master() {
    let cluster = TestCluster::start();
    let (a, b) = two_nodes(&cluster);
    for master in 0..3 {
        let room = room_on(&cluster, master, "hist");
        let (mut on_a, profile) = Client::pact(a, &room);
        let epoch = profile["pos"]["epoch"].as_str().unwrap().to_owned();
        assert_eq!(
            on_a.call(json!({"type":"subscribe","data":"chat"}), "s")["type"],
            "ok"
        );
        for i in 1..=5 {
            on_a.send(json!({"type":"chat","data":format!("m{i}")}));
        }
        assert_eq!(next_of(&mut on_a, "chat", 5)[4]["seq"], 5);
        let mut on_b = member(b, &room, &["chat"]);
        let page = on_b.call(json!({"type":"history","data":{"limit":3}}), "h");
        let events = page["data"]["events"].as_array().unwrap();
        let seqs: Vec<&Value> = events.iter().map(|e| &e["seq"]).collect();
        assert_eq!(seqs, [&json!(3), &json!(4), &json!(5)], "{page}");
        assert_eq!(events[2]["data"]["message"], "m5");
        assert_eq!(page["data"]["pos"], json!({"epoch": epoch, "seq": 5}));
        // A client that saw up to 2 resumes exactly on the other node.
        on_b.send(json!({"type":"resume","ref":"r","data":{"epoch": epoch, "seq": 2}}));
        let missed = next_of(&mut on_b, "chat", 3);
        assert_eq!(missed[0]["seq"], 3);
        assert_eq!(missed[2]["data"]["message"], "m5");
        let resumed = on_b.recv_type("resumed");
        assert_eq!(resumed["data"]["recovered"], true, "{resumed}");
        assert_eq!(resumed["data"]["missed"], 3);
    }
}

#[test]
fn a_room_whose_slot_moves_to_another_master_keeps_working() {
    let cluster = TestCluster::start();
    let (a, b) = two_nodes(&cluster);
    let room = room_on(&cluster, 0, "moving");
    let mut on_a = member(a, &room, &["chat", "counter"]);
    let mut on_b = member(b, &room, &["chat", "counter"]);
    add_to_counter(&mut on_a, "1.1");
    chat_from_b_seen_by_both(&mut on_a, &mut on_b, "before", 2);

    cluster.move_slot(slot(room.as_bytes()), 1);
    // Commands follow MOVED, subscriptions follow the slot: the room goes on where it is
    // now, its stream and state with it.
    chat_from_b_seen_by_both(&mut on_a, &mut on_b, "after", 3);
    on_a.send(json!({"type":"counter","data":{"id":"x","value":"2.2"}}));
    for c in [&mut on_a, &mut on_b] {
        assert_eq!(next_of(c, "counter", 1)[0]["data"]["value"], json!(3.3));
    }
    // A newcomer loads the room from its new master.
    newcomer_sees_counter(b, &room, 3.3);
    wait_ready(a, true);
    wait_ready(b, true);
}

/// A room nobody is in on the node: its commands meet the migration head on (no dropped
/// subscription warns the node first).
#[test]
fn commands_follow_ask_and_moved_while_a_slot_migrates() {
    let cluster = TestCluster::start();
    let a = cluster_node(&cluster, |_| {});
    let room = room_on(&cluster, 2, "quiet");
    let (mut once, _) = Client::pact(a, &room);
    add_to_counter(&mut once, "1.5");
    once.ws.close(None).unwrap();
    wait_for_room(a, &room, |d| d["count"] == 0);
    let emit = |i: u32| {
        let body = format!("{{\"i\":{i}}}");
        let (status, reply) = http_json(a, "POST", &format!("/{room}/emit"), &[], body.as_bytes());
        assert_eq!(status, 200, "{reply}");
    };
    let history = || http_json(a, "GET", &format!("/{room}/history?limit=10"), &[], b"");
    emit(0);
    emit(1);

    let slot = slot(room.as_bytes());
    let from = cluster.begin_move(slot, 0);
    // The keys are at the importing master: the old one answers ASK, and the node asks
    // there. (A script of several keys would get TRYAGAIN there until the move is done:
    // the importing master cannot tell a missing key from one not moved yet.)
    let (status, body) = history();
    assert_eq!((status, body), (200, json!({"history":[{"i":0},{"i":1}]})));

    cluster.finish_move(slot, from, 0);
    // Now MOVED: the node's map is updated and the room goes on at its new master.
    let (status, body) = history();
    assert_eq!((status, body), (200, json!({"history":[{"i":0},{"i":1}]})));
    emit(2);
    let (status, body) = history();
    assert_eq!(
        (status, body),
        (200, json!({"history":[{"i":0},{"i":1},{"i":2}]}))
    );
    newcomer_sees_counter(a, &room, 1.5);
    wait_ready(a, true);
}

#[test]
fn a_master_going_away_is_visible_and_its_rooms_come_back_with_it() {
    let mut cluster = TestCluster::start();
    let (a, b) = two_nodes(&cluster);
    let room = room_on(&cluster, 1, "outage");
    let mut on_a = member(a, &room, &["chat"]);
    let mut on_b = member(b, &room, &["chat"]);
    chat_from_b_seen_by_both(&mut on_a, &mut on_b, "before", 1);

    cluster.stop(1);
    // Every node depends on every master: not ready while one is gone.
    wait_ready(a, false);
    wait_ready(b, false);
    cluster.run(1);
    wait_ready(a, true);
    wait_ready(b, true);
    // The master came back empty: the room starts a new epoch, on every node.
    chat_from_b_seen_by_both(&mut on_a, &mut on_b, "after", 1);
}

#[test]
fn a_replica_that_takes_over_its_master_serves_its_rooms_on() {
    let cluster = TestCluster::start_with(1);
    let (a, b) = two_nodes(&cluster);
    let room = room_on(&cluster, 1, "failover");
    let mut on_a = member(a, &room, &["chat", "counter"]);
    let mut on_b = member(b, &room, &["chat", "counter"]);
    add_to_counter(&mut on_a, "1.5");
    chat_from_b_seen_by_both(&mut on_a, &mut on_b, "before", 2);

    let replica = cluster.replica_of(1);
    cluster.fail_over(replica);
    // The old master answers MOVED and drops the room's channel; the nodes follow the slot
    // to the new master, where the room's stream and state are (replicated).
    chat_from_b_seen_by_both(&mut on_a, &mut on_b, "after", 3);
    newcomer_sees_counter(a, &room, 1.5);
    wait_ready(a, true);
    wait_ready(b, true);
}

#[test]
fn a_node_refuses_redis_cluster_without_the_redis_engine() {
    let mut config = rookery::Config::local();
    config.redis_cluster = true;
    let error = rookery::start(config).err().expect("refused").to_string();
    assert!(
        error.contains("--redis-cluster needs --engine redis"),
        "{error}"
    );
}
