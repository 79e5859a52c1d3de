//! What Redis failing does to nodes sharing rooms through it (`--engine redis`): `/readyz`
//! says so at once, changes are refused (never half-done), and once Redis is back the nodes
//! resubscribe by themselves; a Redis that lost its data (restarted, flushed) starts each
//! room's stream in a new epoch, so that no client mistakes the loss for a quiet moment.

use rookery_tests::redis::{node, node_with, wait_ready, TestRedis};
use rookery_tests::*;
use serde_json::json;
use std::time::Duration;

fn member(addr: std::net::SocketAddr, room: &str) -> (Client, serde_json::Value) {
    let (mut c, profile) = Client::pact(addr, room);
    let reply = c.call(json!({"type":"subscribe","data":"chat"}), "s");
    assert_eq!(reply["type"], "ok", "{reply}");
    (c, profile)
}

#[test]
fn a_redis_outage_is_visible_at_once_and_nodes_come_back_by_themselves() {
    let mut redis = TestRedis::start();
    let (a, b) = (node(&redis), node(&redis));
    let (mut on_a, _) = member(a, "outage");
    let (mut on_b, _) = member(b, "outage");
    let mut watcher = member(a, "outage").0;
    watcher.send(json!({"type":"subscribe","data":"presence"}));
    // Joins reach a's view as Redis orders them (b's member's, the watcher's own): in the
    // snapshot, or in diffs after it.
    let mut count = watcher.recv_type("presence")["data"]["count"]
        .as_u64()
        .unwrap();
    while count < 3 {
        count = watcher.recv_type("presence:joined")["data"]["count"]
            .as_u64()
            .unwrap();
    }
    assert_eq!(count, 3);
    let mut jac_b = Client::connect(b, "/jac/websocket?channel_id=elsewhere");
    let jac_b_id = jac_b.recv_type("connection")["data"]["client_id"].clone();
    // jac says `connection` before its room is joined: wait for the join to be done (its
    // member is in Redis), or stopping Redis below would refuse it (1011), as it should.
    redis.wait_for("HLEN rk:{elsewhere}:members", ":1\r\n", "jac never joined");
    on_b.send(json!({"type":"chat","data":"before"}));
    assert_eq!(on_a.recv_type("chat")["seq"], 1);
    assert_eq!(on_b.recv_type("chat")["seq"], 1);

    redis.stop();
    let took = wait_ready(a, false);
    assert!(took <= Duration::from_secs(1), "/readyz 503 after {took:?}");
    wait_ready(b, false);
    let (status, body) = http_get(a, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("redis"), "{body}");
    // A change while Redis is away is refused, not half-done.
    let refused = on_a.call(json!({"type":"chat","data":"lost"}), "c1");
    assert_eq!(refused["type"], "error", "{refused}");

    redis.run();
    let took = wait_ready(a, true);
    assert!(took <= Duration::from_secs(5), "ready again after {took:?}");
    wait_ready(b, true);
    // Resubscribed: the room works across the nodes again, in a new epoch (this Redis lost
    // everything), so its stream starts at 1.
    on_b.send(json!({"type":"chat","data":"after"}));
    let m = on_a.recv_type("chat");
    assert_eq!(
        (m["data"]["message"].clone(), m["seq"].clone()),
        (json!("after"), json!(1))
    );
    assert_eq!(on_b.recv_type("chat")["data"]["message"], "after");
    // The new Redis learns again who is where: presence (each node announces its members
    // again; a new member sees all four) and the directory of clients (a targeted send
    // from a reaches b's client; b listed it before announcing its members).
    redis.wait_for(
        "HLEN rk:{outage}:members",
        ":3\r\n",
        "members never announced again",
    );
    let (mut late, _) = Client::pact(a, "outage");
    late.send(json!({"type":"subscribe","data":"presence"}));
    assert_eq!(late.recv_type("presence")["data"]["count"], 4);
    let mut jac_a = Client::connect(a, "/jac/websocket?channel_id=here");
    jac_a.recv_type("connection");
    jac_a.send(json!({"type":"client","client_ids":[jac_b_id],"data":{"still":"there"}}));
    assert_eq!(jac_b.recv(), json!({"still":"there"}));
    let metrics = http_get(a, "/metrics").1;
    let reconnects: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rookery_redis_reconnects_total "))
        .expect("the metric is there")
        .parse()
        .unwrap();
    assert!(reconnects >= 2, "both connections came back: {reconnects}");
    assert!(metrics.contains("\nrookery_redis_up 1\n"), "{metrics}");
    assert!(metrics.contains("\nrookery_redis_pending_commands "));
    assert!(metrics.contains("\nrookery_redis_rtt_seconds "));
}

#[test]
fn a_flush_starts_a_new_epoch_and_a_resume_from_the_old_one_is_not_recovered() {
    let redis = TestRedis::start();
    let (a, b) = (node(&redis), node(&redis));
    let (mut on_a, profile) = member(a, "flushed");
    let (mut on_b, _) = member(b, "flushed");
    let old_epoch = profile["pos"]["epoch"].as_str().unwrap().to_owned();
    on_b.send(json!({"type":"chat","data":"one"}));
    on_b.send(json!({"type":"chat","data":"two"}));
    assert_eq!(on_a.recv_type("chat")["seq"], 1);
    assert_eq!(on_a.recv_type("chat")["seq"], 2);
    // History comes from the room's stream in Redis, on any node.
    let page = on_b.call(json!({"type":"history","data":{"limit":10}}), "h");
    let events = page["data"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{page}");
    assert_eq!(events[1]["data"]["message"], "two");
    assert_eq!(page["data"]["pos"], json!({"epoch": old_epoch, "seq": 2}));

    assert_eq!(redis.command("FLUSHALL"), "+OK\r\n");
    on_b.send(json!({"type":"chat","data":"fresh"}));
    let m = on_a.recv_type("chat");
    assert_eq!(
        (m["data"]["message"].clone(), m["seq"].clone()),
        (json!("fresh"), json!(1))
    );
    // A client that was at the old epoch is told it cannot be caught up exactly.
    let resumed = on_a.call(
        json!({"type":"resume","data":{"epoch": old_epoch, "seq": 2}}),
        "r",
    );
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    assert_eq!(resumed["data"]["recovered"], false);
    let new_epoch = resumed["data"]["pos"]["epoch"].as_str().unwrap();
    assert_ne!(new_epoch, old_epoch);
    assert_eq!(resumed["data"]["pos"]["seq"], 1);
    // And a client at the new epoch resumes exactly, from the stream (once its own node
    // has delivered the new epoch to it: nodes hear of it one after the other).
    while on_b.recv_type("chat")["data"]["message"] != "fresh" {}
    let resumed = on_b.call(
        json!({"type":"resume","data":{"epoch": new_epoch, "seq": 0}}),
        "r2",
    );
    assert_eq!(resumed["data"]["recovered"], true, "{resumed}");
    assert_eq!(resumed["data"]["missed"], 1);
}

#[test]
fn a_redis_that_kept_its_data_continues_every_rooms_stream() {
    let mut redis = TestRedis::start_persistent();
    let (a, b) = (node(&redis), node(&redis));
    let (mut on_a, profile) = member(a, "kept");
    let (mut on_b, _) = member(b, "kept");
    let epoch = profile["pos"]["epoch"].clone();
    on_b.send(json!({"type":"counter","data":{"id":"n","value":"1.5"}}));
    on_b.send(json!({"type":"chat","data":"before"}));
    assert_eq!(on_a.recv_type("chat")["seq"], 2);
    assert_eq!(on_b.recv_type("chat")["seq"], 2);

    redis.stop();
    wait_ready(a, false);
    redis.run();
    wait_ready(a, true);
    wait_ready(b, true);
    on_b.send(json!({"type":"chat","data":"after"}));
    let m = on_a.recv_type("chat");
    assert_eq!(
        (m["data"]["message"].clone(), m["seq"].clone()),
        (json!("after"), json!(3))
    );
    // The same stream: a resume from before the outage is exact.
    let resumed = on_a.call(
        json!({"type":"resume","data":{"epoch": epoch, "seq": 1}}),
        "r",
    );
    assert_eq!(resumed["data"]["recovered"], true, "{resumed}");
    assert_eq!(resumed["data"]["missed"], 2);
    // And the state too: a new member anywhere sees the counter.
    let (mut late, _) = Client::pact(a, "kept");
    late.send(json!({"type":"subscribe","data":"counter"}));
    assert_eq!(late.recv_type("counter")["data"]["value"], json!(1.5));
}

#[test]
fn history_is_the_rooms_stream_whichever_node_is_asked() {
    let redis = TestRedis::start();
    let (a, b) = (node(&redis), node(&redis));
    for i in 0..5 {
        let body = format!("{{\"i\":{i}}}");
        let (status, reply) = http_json(a, "POST", "/hist/emit", &[], body.as_bytes());
        assert_eq!(status, 200, "{reply}");
    }
    let (status, body) = http_json(b, "GET", "/hist/history?limit=3", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(body, json!({"history":[{"i":2},{"i":3},{"i":4}]}));
    let (status, page) = http_json(b, "GET", "/api/rooms/hist/history?limit=2", &[], b"");
    assert_eq!(status, 200, "{page}");
    let seqs: Vec<_> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].clone())
        .collect();
    assert_eq!(seqs, vec![json!(4), json!(5)], "{page}");
    assert_eq!(page["pos"]["seq"], 5);
    let (_, older) = http_json(b, "GET", "/api/rooms/hist/history?before=2", &[], b"");
    assert_eq!(older["events"].as_array().unwrap().len(), 1, "{older}");
}

/// Subscriber connections killed while events flow (Redis itself stays up): every member
/// still gets every event once, in order, and every sender its `ok`s — what a node missed
/// live it reads back from the room's stream.
#[test]
fn events_missed_while_a_subscription_was_down_are_filled_in_order() {
    let redis = TestRedis::start();
    // The stream keeps them all: what it no longer keeps is skipped (a visible `seq` jump).
    let keep = |c: &mut rookery::Config| c.history_size = 1_000;
    let (a, b) = (node_with(&redis, 1, keep), node_with(&redis, 1, keep));
    let (mut on_a, _) = member(a, "gaps");
    let (mut on_b, _) = member(b, "gaps");
    // Within a connection's message burst (--message-burst 200).
    const N: usize = 150;
    let writer = std::thread::spawn(move || {
        for i in 0..N {
            on_a.send(json!({"type":"chat","data":i,"ref":i}));
        }
        let (mut chats, mut oks) = (Vec::new(), 0);
        while chats.len() < N || oks < N {
            let m = on_a.recv();
            match m["type"].as_str() {
                Some("chat") => chats.push(m["seq"].as_u64().unwrap()),
                Some("ok") => oks += 1,
                _ => {}
            }
        }
        chats
    });
    // Fault injection, not synchronisation: kill every subscriber connection a few times
    // while the chats flow.
    for _ in 0..5 {
        assert!(redis.command("CLIENT KILL TYPE pubsub").starts_with(':'));
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut seen_b = Vec::new();
    while seen_b.len() < N {
        let m = on_b.recv_type("chat");
        seen_b.push(m["seq"].as_u64().unwrap());
    }
    let expected: Vec<u64> = (1..=N as u64).collect();
    assert_eq!(seen_b, expected, "b: every event once, in order");
    assert_eq!(
        writer.join().unwrap(),
        expected,
        "a: every event once, in order"
    );
}

/// A Redis that hangs (stopped, its connections open): `/readyz` says so within 1 s,
/// changes are refused within the call timeout (3 s) instead of waiting for ever, and all
/// is well again once it goes on.
#[test]
fn a_hung_redis_is_visible_and_refused_in_bounded_time() {
    let redis = TestRedis::start();
    let (a, b) = (node(&redis), node(&redis));
    let (mut on_a, _) = member(a, "hung");
    let (mut on_b, _) = member(b, "hung");
    redis.pause();
    let took = wait_ready(a, false);
    assert!(
        took <= Duration::from_secs(1) + Duration::from_millis(500),
        "{took:?}"
    );
    let started = std::time::Instant::now();
    on_a.send(json!({"type":"chat","data":"stuck?","ref":"c"}));
    let refused = loop {
        // Waits past the client's 5 s read timeout if need be: the bound is the server's.
        match on_a.read() {
            Ok(tungstenite::Message::Text(t)) => {
                break serde_json::from_str::<serde_json::Value>(&t).unwrap()
            }
            Ok(_) => continue,
            Err(_) => assert!(started.elapsed() < Duration::from_secs(10), "never refused"),
        }
    };
    assert_eq!(
        (refused["type"].as_str(), refused["ref"].as_str()),
        (Some("error"), Some("c")),
        "{refused}"
    );
    // Written but never answered: the error says the change may still be applied.
    assert!(
        refused["data"]["message"]
            .as_str()
            .unwrap()
            .contains("may still be applied"),
        "{refused}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    redis.resume();
    wait_ready(a, true);
    wait_ready(b, true);
    on_a.send(json!({"type":"chat","data":"back"}));
    // A Redis that resumes runs what it had read before it stopped ("stuck?" may come).
    let mut m = on_b.recv_type("chat");
    if m["data"]["message"] == "stuck?" {
        m = on_b.recv_type("chat");
    }
    assert_eq!(m["data"]["message"], "back");
}
