//! Pact members in a room: requests, replies and what the room sends them.

use super::*;

#[test]
fn join_sends_config_then_profile_with_increasing_suffix() {
    let mut e = engine();
    let out = join(&mut e, conn(1), "u1");
    let got = received(&out, conn(1));
    assert_eq!(got[0], json!({"type":"config","data":"{}"}));
    assert_eq!(got[1]["type"], "profile");
    assert_eq!(got[1]["data"]["suffix"], 1);
    assert_eq!(got[1]["data"]["id"], "u1");
    let out = join(&mut e, conn(2), "u2");
    assert_eq!(received(&out, conn(2))[1]["data"]["suffix"], 2);
}

#[test]
fn login_replaces_properties_and_keeps_private_ones_private() {
    let mut e = engine();
    join(&mut e, conn(1), "u1");
    join(&mut e, conn(2), "u2");
    sub(&mut e, conn(2), "chat");
    sub(&mut e, conn(1), "chat");
    let props = json!({"name":"ann","_email":"a@x"});
    let out = req(
        &mut e,
        conn(1),
        Some(json!("r1")),
        Request::Login(props.as_object().unwrap().clone()),
    );
    let got = received(&out, conn(1));
    assert_eq!(got.len(), 1, "exactly one reply for a ref: {got:?}");
    assert_eq!(got[0]["type"], "profile");
    assert_eq!(got[0]["ref"], "r1");
    assert_eq!(got[0]["data"]["properties"], props);
    // Subscriptions survive a login (they are not properties).
    let out = req(&mut e, conn(1), None, Request::Chat(json!("hi")));
    let seen = received(&out, conn(2));
    assert_eq!(
        seen[0],
        json!({"type":"chat","data":{"message":"hi","user":{"suffix":1,"properties":{"name":"ann"}}},"seq":1})
    );
    assert_eq!(received(&out, conn(1)).len(), 1, "sender gets its own chat");
    // A second login replaces, not merges.
    let out = req(
        &mut e,
        conn(1),
        None,
        Request::Login(json!({"x":1}).as_object().unwrap().clone()),
    );
    assert_eq!(
        received(&out, conn(1))[0]["data"]["properties"],
        json!({"x":1})
    );
}

#[test]
fn chat_reaches_only_chat_subscribers() {
    let mut e = engine();
    join(&mut e, conn(1), "u1");
    join(&mut e, conn(2), "u2");
    join(&mut e, conn(3), "u3");
    sub(&mut e, conn(2), "chat");
    let out = req(
        &mut e,
        conn(1),
        Some(json!(9)),
        Request::Chat(json!({"a":1})),
    );
    assert_eq!(received(&out, conn(2)).len(), 1);
    assert!(received(&out, conn(3)).is_empty());
    assert_eq!(received(&out, conn(1)), vec![json!({"type":"ok","ref":9})]);
    // Unsubscribed: nothing more.
    req(
        &mut e,
        conn(2),
        None,
        Request::Unsubscribe(Topic::parse("chat")),
    );
    let out = req(&mut e, conn(1), None, Request::Chat(json!("x")));
    assert!(nothing(&out));
}

#[test]
fn one_vote_per_user_moves_and_stats_drop_empty_answers() {
    let mut e = engine();
    join(&mut e, conn(1), "u1");
    join(&mut e, conn(2), "u2");
    sub(&mut e, conn(2), "poll:p");
    vote(&mut e, conn(1), false, "p", "hello");
    let out = vote(&mut e, conn(2), false, "p", "goodbye");
    assert_eq!(
        received(&out, conn(2))[0],
        json!({"type":"poll","data":{"id":"p","stats":{"goodbye":1,"hello":1}},"seq":2})
    );
    let out = vote(&mut e, conn(1), false, "p", "goodbye");
    assert_eq!(
        received(&out, conn(2))[0]["data"]["stats"],
        json!({"goodbye":2})
    );
    // Other polls are not delivered to a poll:p subscriber.
    let out = vote(&mut e, conn(1), false, "q", "x");
    assert!(received(&out, conn(2)).is_empty());
}

#[test]
fn two_connections_of_one_user_count_once() {
    let mut e = engine();
    join(&mut e, conn(1), "same");
    join(&mut e, conn(2), "same");
    vote(&mut e, conn(1), false, "p", "a");
    let out = vote(&mut e, conn(2), false, "p", "a");
    assert!(nothing(&out), "same user, same answer: no change");
    assert_eq!(e.details(ROOM).polls["p"]["a"], 1);
}

#[test]
fn ephemeral_votes_go_when_the_users_last_connection_leaves() {
    let mut e = engine();
    join(&mut e, conn(1), "u1");
    join(&mut e, conn(2), "u1");
    join(&mut e, conn(3), "u3");
    sub(&mut e, conn(3), "ephemeralPoll");
    vote(&mut e, conn(1), true, "e", "yes");
    vote(&mut e, conn(3), true, "e", "no");
    let out = leave(&mut e, conn(1));
    assert!(
        received(&out, conn(3)).is_empty(),
        "u1 still has a tab open"
    );
    let out = leave(&mut e, conn(2));
    assert_eq!(
        received(&out, conn(3)),
        vec![json!({"type":"ephemeralPoll","data":{"id":"e","stats":{"no":1}},"seq":3})]
    );
    assert_eq!(e.details(ROOM).ephemeral_polls["e"].len(), 1);
}

#[test]
fn counters_are_exact_decimals() {
    let mut e = engine();
    join(&mut e, conn(1), "u1");
    sub(&mut e, conn(1), "counter:order_subtotals");
    count(&mut e, conn(1), "order_subtotals", "17.75");
    let out = count(&mut e, conn(1), "order_subtotals", "-15.14");
    let encoded = frames(&out);
    let frame = encoded[0].0.bytes();
    assert!(
        String::from_utf8_lossy(frame).contains(r#""value":2.61}"#),
        "{frame:?}"
    );
    // Another counter does not reach a counter:order_subtotals subscriber.
    assert!(nothing(&count(&mut e, conn(1), "other", "1")));
}

#[test]
fn subscribing_sends_the_state_of_existing_polls_and_counters() {
    let mut e = engine();
    join(&mut e, conn(1), "u1");
    vote(&mut e, conn(1), false, "p1", "a");
    vote(&mut e, conn(1), false, "p2", "b");
    count(&mut e, conn(1), "c", "3");
    let out = sub(&mut e, conn(1), "poll");
    assert_eq!(received(&out, conn(1)).len(), 2);
    let out = sub(&mut e, conn(1), "poll:p2");
    assert_eq!(received(&out, conn(1))[0]["data"]["id"], "p2");
    let out = sub(&mut e, conn(1), "poll:nope");
    assert!(nothing(&out));
    let out = req(
        &mut e,
        conn(1),
        Some(json!(1)),
        Request::Subscribe(Topic::parse("counter")),
    );
    assert_eq!(
        received(&out, conn(1)),
        vec![
            json!({"type":"counter","data":{"id":"c","value":3}}),
            json!({"type":"ok","ref":1})
        ]
    );
    assert!(nothing(&sub(&mut e, conn(1), "chat")));
}

#[test]
fn presence_snapshot_then_diffs() {
    let mut e = engine();
    join(&mut e, conn(1), "u1");
    let out = sub(&mut e, conn(1), "presence");
    assert_eq!(
        received(&out, conn(1))[0],
        json!({"type":"presence","data":{"members":[{"id":"u1","suffix":1,"properties":{}}],"count":1}})
    );
    let out = join(&mut e, conn(2), "u2");
    assert_eq!(received(&out, conn(1))[0]["type"], "presence:joined");
    assert_eq!(received(&out, conn(1))[0]["data"]["count"], 2);
    let out = req(
        &mut e,
        conn(2),
        None,
        Request::Login(json!({"n":1,"_p":2}).as_object().unwrap().clone()),
    );
    assert_eq!(
        received(&out, conn(1))[0],
        json!({"type":"presence:updated","data":{"member":{"id":"u2","suffix":2,"properties":{"n":1}},"count":2}})
    );
    let out = leave(&mut e, conn(2));
    assert_eq!(received(&out, conn(1))[0]["type"], "presence:left");
    assert_eq!(received(&out, conn(1))[0]["data"]["count"], 1);
}

#[test]
fn config_and_broadcast_need_admin() {
    let mut e = engine();
    join(&mut e, conn(1), "u1");
    join_as(&mut e, conn(2), "boss", Role::Admin);
    sub(&mut e, conn(1), "weather");
    let out = req(
        &mut e,
        conn(1),
        Some(json!("c")),
        Request::Config("x".into()),
    );
    assert_eq!(received(&out, conn(1))[0]["data"]["code"], "forbidden");
    assert_eq!(received(&out, conn(1))[0]["ref"], "c");
    let out = req(&mut e, conn(2), None, Request::Config("{\"a\":1}".into()));
    assert_eq!(
        received(&out, conn(1))[0],
        json!({"type":"config","data":"{\"a\":1}","seq":1})
    );
    let out = req(
        &mut e,
        conn(2),
        None,
        Request::Broadcast {
            to: Some("weather".into()),
            kind: "weather".into(),
            data: json!({"sun":true}),
        },
    );
    assert_eq!(
        received(&out, conn(1))[0],
        json!({"type":"weather","data":{"sun":true},"seq":2})
    );
    assert!(received(&out, conn(2)).is_empty());
}

#[test]
fn admin_commands_reach_members_and_config_persists_without_them() {
    let mut e = engine();
    let mut out = Outbox::default();
    e.handle(
        Command::SetConfig {
            room: ROOM.into(),
            config: "cfg".into(),
        },
        0,
        &mut out,
    );
    assert!(nothing(&out));
    let out = join(&mut e, conn(1), "u1");
    assert_eq!(
        received(&out, conn(1))[0],
        json!({"type":"config","data":"cfg"})
    );
    let mut out = Outbox::default();
    e.handle(
        Command::Broadcast {
            room: ROOM.into(),
            kind: "broadcast".into(),
            data: json!({"anything":"can"}),
            to: None,
        },
        0,
        &mut out,
    );
    assert_eq!(
        received(&out, conn(1))[0],
        json!({"type":"broadcast","data":{"anything":"can"},"seq":1})
    );
}

#[test]
fn state_survives_the_room_emptying_and_suffixes_keep_counting() {
    let mut e = engine();
    join(&mut e, conn(1), "u1");
    vote(&mut e, conn(1), false, "p", "a");
    vote(&mut e, conn(1), true, "e", "a");
    count(&mut e, conn(1), "c", "0.1");
    leave(&mut e, conn(1));
    assert_eq!(e.room_count(), 0, "an empty room is dropped");
    let details = e.details(ROOM);
    assert_eq!(details.polls["p"]["a"], 1);
    assert!(details.ephemeral_polls.is_empty());
    let out = join(&mut e, conn(3), "u3");
    assert_eq!(received(&out, conn(3))[1]["data"]["suffix"], 2);
    // The durable vote still counts once per user: u1's vote is remembered.
    join(&mut e, conn(4), "u1");
    vote(&mut e, conn(4), false, "p", "b");
    let stats = &e.details(ROOM).polls["p"];
    assert_eq!(stats.get("a"), None);
    assert_eq!(stats["b"], 1);
}

#[test]
fn requests_from_a_connection_that_left_are_ignored() {
    let mut e = engine();
    join(&mut e, conn(1), "u1");
    join(&mut e, conn(2), "u2");
    leave(&mut e, conn(1));
    let out = req(
        &mut e,
        conn(1),
        Some(json!(1)),
        Request::Chat(json!("late")),
    );
    assert!(nothing(&out));
}

#[test]
fn counter_overflow_is_an_error_and_keeps_the_value() {
    let mut e = engine();
    join(&mut e, conn(1), "u1");
    count(&mut e, conn(1), "c", &Decimal::MAX.to_string());
    let out = count(&mut e, conn(1), "c", "1");
    assert_eq!(received(&out, conn(1))[0]["data"]["code"], "invalid_data");
    assert_eq!(
        e.details(ROOM).counters["c"].to_string(),
        Decimal::MAX.to_string()
    );
}

#[test]
fn a_bad_token_is_told_after_the_greeting() {
    let mut e = engine();
    let mut out = Outbox::default();
    e.handle(
        Command::Join {
            conn: conn(1),
            room: ROOM.into(),
            joiner: Joiner {
                token_error: Some("the token has expired".into()),
                ..joiner("u", Dialect::Pact, Role::User)
            },
        },
        0,
        &mut out,
    );
    let got = received(&out, conn(1));
    assert_eq!(got[0]["type"], "config");
    assert_eq!(got[1]["type"], "profile");
    assert_eq!(got[2]["data"]["code"], "invalid_token");
}

#[test]
fn set_role_makes_an_admin_and_resends_the_profile() {
    let mut e = engine();
    join(&mut e, conn(1), "u");
    let mut out = Outbox::default();
    e.handle(
        Command::SetRole {
            conn: conn(1),
            room: ROOM.into(),
            role: Role::Admin,
            reference: Some(json!(5)),
        },
        0,
        &mut out,
    );
    let got = &received(&out, conn(1))[0];
    assert_eq!(got["data"]["role"], "admin");
    assert_eq!(got["ref"], 5);
    let out = req(&mut e, conn(1), None, Request::Config("c".into()));
    assert_eq!(
        received(&out, conn(1))[0],
        json!({"type":"config","data":"c","seq":1})
    );
}
