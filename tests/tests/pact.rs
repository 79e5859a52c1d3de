//! Every payload of seed 000 (Pact's Socket Server) over real sockets, with the members of a
//! room spread over several cores, plus the native extensions (ref, presence).

use rookery_tests::*;
use serde_json::json;

/// Connects clients to `room` until at least one sits on each of the server's 2 cores.
fn clients_on_both_cores(addr: std::net::SocketAddr, room: &str) -> Vec<Client> {
    let mut clients = Vec::new();
    let mut seen = [false; 2];
    for _ in 0..64 {
        let (c, profile) = Client::pact(addr, room);
        seen[profile["connectionDetails"]["core"].as_u64().unwrap() as usize] = true;
        clients.push(c);
        if seen.iter().all(|s| *s) && clients.len() >= 2 {
            break;
        }
    }
    assert!(
        seen.iter().all(|s| *s),
        "the kernel never spread connections over both cores"
    );
    clients
}

#[test]
fn connect_sends_config_then_profile_and_room_defaults() {
    let addr = server(2);
    let mut c = Client::connect(addr, "/websocket");
    assert_eq!(c.recv(), json!({"type":"config","data":"{}"}));
    let profile = c.recv_type("profile")["data"].clone();
    assert!(profile["suffix"].as_u64().unwrap() >= 1);
    assert_eq!(profile["properties"], json!({}));
    assert_eq!(profile["id"].as_str().unwrap().len(), 36, "a uuid");
    assert_eq!(profile["connectionDetails"]["ip"], "127.0.0.1");
    wait_for_room(addr, "default", |d| d["count"] == 1);
}

#[test]
fn suffixes_increase_per_room() {
    let addr = server(2);
    let (_a, pa) = Client::pact(addr, "s");
    let (_b, pb) = Client::pact(addr, "s");
    assert_eq!(
        pb["suffix"].as_u64().unwrap(),
        pa["suffix"].as_u64().unwrap() + 1
    );
}

#[test]
fn login_and_profile_keep_private_properties_private() {
    let addr = server(2);
    let mut clients = clients_on_both_cores(addr, "login");
    let mut a = clients.remove(0);
    let mut b = clients.pop().unwrap();
    b.send(json!({"type":"subscribe","data":"chat"}));
    a.send(json!({"type":"login","data":{"name":"Ann","_email":"ann@example.com"}}));
    let profile = a.recv_type("profile");
    assert_eq!(
        profile["data"]["properties"],
        json!({"name":"Ann","_email":"ann@example.com"})
    );
    a.send(json!({"type":"profile"}));
    assert_eq!(
        a.recv_type("profile")["data"]["properties"]["_email"],
        "ann@example.com"
    );
    // b's subscribe is applied before a's chat only if b's request reached the owner first.
    let reply = b.call(json!({"type":"subscribe","data":"chat"}), "sync");
    assert_eq!(reply["type"], "ok");
    a.send(json!({"type":"chat","data":"Chat message goes here :)"}));
    let chat = b.recv_type("chat");
    assert_eq!(chat["data"]["message"], "Chat message goes here :)");
    assert_eq!(chat["data"]["user"]["properties"], json!({"name":"Ann"}));
    assert!(chat["data"]["user"]["suffix"].as_u64().is_some());
    // A second login replaces the bag.
    a.send(json!({"type":"login","data":{"x":1}}));
    assert_eq!(a.recv_type("profile")["data"]["properties"], json!({"x":1}));
}

#[test]
fn chat_reaches_subscribers_on_every_core_sender_included() {
    let addr = server(2);
    let mut clients = clients_on_both_cores(addr, "chatroom");
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(
            c.call(json!({"type":"subscribe","data":"chat"}), &format!("s{i}"))["type"],
            "ok"
        );
    }
    let (mut outsider, _) = Client::pact(addr, "chatroom");
    clients[0].send(json!({"type":"chat","data":{"text":"hi"}}));
    for c in clients.iter_mut() {
        assert_eq!(c.recv_type("chat")["data"]["message"], json!({"text":"hi"}));
    }
    outsider.expect_silence(200);
    // Unsubscribed: no more chat.
    let last = clients.len() - 1;
    clients[last].call(json!({"type":"unsubscribe","data":"chat"}), "u");
    clients[0].send(json!({"type":"chat","data":"again"}));
    clients[0].recv_type("chat");
    clients[last].expect_silence(200);
}

#[test]
fn polls_count_one_vote_per_user_and_move_votes() {
    let addr = server(2);
    let mut clients = clients_on_both_cores(addr, "polls");
    // The first and the last client sit on different cores.
    let mut b = clients.pop().unwrap();
    let a = &mut clients[0];
    a.call(json!({"type":"subscribe","data":"poll:test poll"}), "s");
    b.send(json!({"type":"poll","data":{"id":"test poll","answer":"hello"}}));
    assert_eq!(
        a.recv_type("poll"),
        json!({"type":"poll","data":{"id":"test poll","stats":{"hello":1}},"seq":1})
    );
    a.send(json!({"type":"poll","data":{"id":"test poll","answer":"goodbye"}}));
    assert_eq!(
        a.recv_type("poll")["data"]["stats"],
        json!({"goodbye":1,"hello":1})
    );
    // A new vote moves the old one; an answer left with no votes leaves the stats.
    b.send(json!({"type":"poll","data":{"id":"test poll","answer":"goodbye"}}));
    assert_eq!(a.recv_type("poll")["data"]["stats"], json!({"goodbye":2}));
    // Voting the same answer again changes nothing and sends nothing.
    b.send(json!({"type":"poll","data":{"id":"test poll","answer":"goodbye"}}));
    a.expect_silence(200);
    let mut clients = [clients.remove(0), b];
    // Another poll is not sent to a poll:test poll subscriber; ids may contain ':'.
    clients[1].send(json!({"type":"poll","data":{"id":"a:b","answer":1}}));
    clients[0].expect_silence(200);
    // Subscribing sends the current stats of existing polls at once.
    let (mut late, _) = Client::pact(addr, "polls");
    late.send(json!({"type":"subscribe","data":"poll:a:b"}));
    assert_eq!(
        late.recv_type("poll"),
        json!({"type":"poll","data":{"id":"a:b","stats":{"1":1}}})
    );
    late.send(json!({"type":"subscribe","data":"poll:does-not-exist"}));
    late.expect_silence(200);
    let details = wait_for_room(addr, "polls", |d| d["polls"]["a:b"]["1"] == 1);
    assert!(details["polls"]["test poll"]["goodbye"].as_u64().unwrap() >= 1);
}

#[test]
fn ephemeral_votes_leave_with_the_voter_even_on_abrupt_disconnect() {
    let addr = server(2);
    let mut clients = clients_on_both_cores(addr, "eph");
    let mut watcher = clients.remove(0);
    watcher.call(json!({"type":"subscribe","data":"ephemeralPoll"}), "s");
    let mut voter = clients.pop().unwrap();
    voter.send(json!({"type":"ephemeralPoll","data":{"id":"mood","answer":"happy"}}));
    assert_eq!(
        watcher.recv_type("ephemeralPoll")["data"]["stats"],
        json!({"happy":1})
    );
    watcher.send(json!({"type":"ephemeralPoll","data":{"id":"mood","answer":"sad"}}));
    watcher.recv_type("ephemeralPoll");
    // Drop the TCP connection without a close handshake.
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = voter.ws.get_ref() {
        s.shutdown(std::net::Shutdown::Both).unwrap();
    }
    drop(voter);
    assert_eq!(
        watcher.recv_type("ephemeralPoll"),
        json!({"type":"ephemeralPoll","data":{"id":"mood","stats":{"sad":1}},"seq":3})
    );
}

#[test]
fn counters_add_exact_decimals_and_accept_numeric_strings() {
    let addr = server(2);
    let mut clients = clients_on_both_cores(addr, "counters");
    let n = clients.len();
    clients[0].call(
        json!({"type":"subscribe","data":"counter:order_subtotals"}),
        "s",
    );
    clients[n - 1].send(json!({"type":"counter","data":{"id":"order_subtotals","value":17.75}}));
    assert_eq!(
        clients[0].recv_type("counter")["data"],
        json!({"id":"order_subtotals","value":17.75})
    );
    clients[n - 1].send(json!({"type":"counter","data":{"id":"order_subtotals","value":-15.14}}));
    let frame = clients[0].recv_type("counter");
    assert_eq!(
        frame["data"]["value"].to_string(),
        "2.61",
        "exact, not 2.6099999999999994"
    );
    clients[n - 1].send(json!({"type":"counter","data":{"id":"order_subtotals","value":"0.39"}}));
    assert_eq!(clients[0].recv_type("counter")["data"]["value"], json!(3));
    // null data: +1 on "default", which a counter:order_subtotals subscriber does not get.
    clients[n - 1].send(json!({"type":"counter","data":null}));
    clients[0].expect_silence(200);
    // Non-numeric: an error frame, and the value is unchanged.
    let err = clients[n - 1].call(
        json!({"type":"counter","data":{"id":"order_subtotals","value":"lots"}}),
        "bad",
    );
    assert_eq!(err["type"], "error");
    assert_eq!(err["data"]["code"], "invalid_data");
    let (mut late, _) = Client::pact(addr, "counters");
    late.send(json!({"type":"subscribe","data":"counter"}));
    let mut seen = vec![
        late.recv_type("counter")["data"].clone(),
        late.recv_type("counter")["data"].clone(),
    ];
    seen.sort_by_key(|v| v["id"].as_str().unwrap().to_owned());
    assert_eq!(
        seen,
        vec![
            json!({"id":"default","value":1}),
            json!({"id":"order_subtotals","value":3})
        ]
    );
}

#[test]
fn refs_get_exactly_one_reply_and_errors_keep_the_connection() {
    let addr = server(2);
    let (mut c, _) = Client::pact(addr, "refs");
    assert_eq!(
        c.call(json!({"type":"subscribe","data":"chat"}), "1"),
        json!({"type":"ok","ref":"1"})
    );
    let p = c.call(json!({"type":"login","data":{"a":1}}), "2");
    assert_eq!(p["type"], "profile");
    assert_eq!(p["data"]["properties"], json!({"a":1}));
    c.send(json!({"type":"chat","data":"x","ref":3}));
    let mut got = [c.recv(), c.recv()];
    got.sort_by_key(|v| v["type"].as_str().unwrap().to_owned());
    assert_eq!(got[0]["type"], "chat");
    assert_eq!(got[1], json!({"type":"ok","ref":3}));
    let e = c.call(json!({"type":"teleport"}), "4");
    assert_eq!(e["data"]["code"], "unknown_type");
    c.send_text("{not json");
    assert_eq!(c.recv_type("error")["data"]["code"], "invalid_json");
    c.send(json!({"type":"poll","data":"nope"}));
    assert_eq!(c.recv_type("error")["data"]["code"], "invalid_data");
    c.send(json!({"type":"config","data":"x","ref":"5"}));
    assert_eq!(c.recv_type("error")["data"]["code"], "forbidden");
    // Still open and working.
    assert_eq!(
        c.call(json!({"type":"ping"}), "6"),
        json!({"type":"ok","ref":"6"})
    );
    c.send(json!({"type":"pong"}));
    c.send(json!({"type":"ping"}));
    c.expect_silence(150);
}

#[test]
fn presence_snapshot_and_diffs_across_cores() {
    let addr = server(2);
    let mut clients = clients_on_both_cores(addr, "presence");
    let count = clients.len();
    let mut watcher = clients.remove(0);
    watcher.send(json!({"type":"subscribe","data":"presence"}));
    let snap = watcher.recv_type("presence")["data"].clone();
    assert_eq!(snap["count"], count);
    assert_eq!(snap["members"].as_array().unwrap().len(), count);
    let (mut newcomer, profile) = Client::pact(addr, "presence");
    let joined = watcher.recv_type("presence:joined")["data"].clone();
    assert_eq!(joined["member"]["id"], profile["id"]);
    assert_eq!(joined["count"], count + 1);
    newcomer.send(json!({"type":"login","data":{"nick":"z","_secret":"s"}}));
    let updated = watcher.recv_type("presence:updated")["data"].clone();
    assert_eq!(updated["member"]["properties"], json!({"nick":"z"}));
    newcomer.ws.close(None).unwrap();
    let left = watcher.recv_type("presence:left")["data"].clone();
    assert_eq!(left["member"]["suffix"], profile["suffix"]);
    assert_eq!(left["count"], count);
}

#[test]
fn close_message_closes_the_socket_normally() {
    let addr = server(1);
    let (mut c, _) = Client::pact(addr, "bye");
    c.send(json!({"type":"close"}));
    assert_eq!(c.expect_close().0, 1000);
    wait_for_room(addr, "bye", |d| d["count"] == 0);
}

#[test]
fn room_details_show_members_polls_counters_and_config() {
    let addr = server(2);
    let (mut c, _) = Client::pact(addr, "my%20room");
    c.send(json!({"type":"login","data":{"name":"a","_p":1}}));
    c.recv_type("profile");
    c.send(json!({"type":"poll","data":{"id":"p","answer":"x"}}));
    c.call(
        json!({"type":"counter","data":{"id":"c","value":"0.1"}}),
        "r",
    );
    let d = wait_for_room(addr, "my%20room", |d| d["count"] == 1);
    assert_eq!(d["room"], "my room");
    assert_eq!(d["members"][0]["properties"], json!({"name":"a"}));
    assert_eq!(d["polls"], json!({"p":{"x":1}}));
    assert_eq!(d["counters"], json!({"c":0.1}));
    assert_eq!(d["config"], "{}");
    // State outlives the members.
    drop(c);
    let d = wait_for_room(addr, "my%20room", |d| d["count"] == 0);
    assert_eq!(d["counters"], json!({"c":0.1}));
}

#[test]
fn a_room_with_members_on_every_core_owned_by_each_core() {
    let addr = server(2);
    for owner in 0..2 {
        let room = room_on_core(owner, 2, "owned");
        let mut clients = clients_on_both_cores(addr, &room);
        for (i, c) in clients.iter_mut().enumerate() {
            c.call(
                json!({"type":"subscribe","data":"counter"}),
                &format!("{i}"),
            );
        }
        for c in clients.iter_mut() {
            c.send(json!({"type":"counter","data":{"id":"n"}}));
        }
        let total = clients.len();
        for c in clients.iter_mut() {
            let mut last = json!(null);
            for _ in 0..total {
                last = c.recv_type("counter")["data"]["value"].clone();
            }
            assert_eq!(last, json!(total), "room {room} owned by core {owner}");
        }
    }
}
