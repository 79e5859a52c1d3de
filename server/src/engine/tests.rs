//! Deterministic engine tests: no sockets, no sleeps, time is an argument.

use super::emit::{EmitOutcome, ReplyToken, Targets};
use super::store::MemoryStore;
use super::*;
use crate::dialect::wsdo;
use crate::engine::broker::LocalBroker;
use rust_decimal::Decimal;
use serde_json::json;
use std::str::FromStr;

const ROOM: &str = "lobby";

fn engine() -> Engine {
    Engine::new(Box::<MemoryStore>::default(), Box::new(LocalBroker))
}

fn conn(n: u64) -> ConnId {
    ConnId::new((n % 2) as usize, n)
}

/// Decodes the JSON payload of a frame built by `frame::text`.
fn json_of(frame: &Bytes) -> Value {
    let len = frame[1] & 0x7f;
    let start = match len {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    serde_json::from_slice(&frame[start..]).unwrap()
}

/// Every event `who` received in `out`, as JSON, in order. wsdo bodies are completed with
/// `who`'s tail, as its core would.
fn received(out: &Outbox, who: ConnId) -> Vec<Value> {
    out.sends
        .iter()
        .filter(|s| s.to.contains(&who))
        .map(|s| match &s.wire {
            Wire::Frame(frame) => json_of(frame),
            Wire::WsdoBody(body) => {
                let (_, tail) = wsdo::finish(body, &wsdo_id(who), 0);
                let mut text = body.to_vec();
                text.extend_from_slice(&tail);
                serde_json::from_slice(&text).unwrap()
            }
        })
        .collect()
}

fn join(e: &mut Engine, c: ConnId, user: &str) -> Outbox {
    join_as(e, c, user, Role::User)
}

fn join_as(e: &mut Engine, c: ConnId, user: &str, role: Role) -> Outbox {
    join_dialect(e, c, user, Dialect::Pact, role)
}

fn join_dialect(e: &mut Engine, c: ConnId, user: &str, dialect: Dialect, role: Role) -> Outbox {
    let mut out = Outbox::default();
    e.handle(
        Command::Join {
            conn: c,
            room: ROOM.into(),
            joiner: Joiner {
                id: user.into(),
                user_id: user.into(),
                dialect,
                role,
                details: json!({}),
                token_error: None,
            },
        },
        0,
        &mut out,
    );
    out
}

/// A wsdo member's clientID in these tests: `client_<n>` for `conn(n)`.
fn wsdo_id(c: ConnId) -> String {
    format!("client_{}", c.0 & 0xFFFF_FFFF_FFFF)
}

fn join_wsdo(e: &mut Engine, c: ConnId) -> Outbox {
    join_dialect(e, c, &wsdo_id(c), Dialect::Wsdo, Role::User)
}

fn emit(e: &mut Engine, targets: Targets, require_ack: bool, now: u64) -> Outbox {
    let mut out = Outbox::default();
    e.handle(
        Command::Emit {
            room: ROOM.into(),
            emit: Emit {
                payload: json!({"hello":"world"}),
                targets,
                require_ack,
                event_id: "evt_test0001".into(),
                seed: 42,
                ack_timeout_ms: 5000,
                history_size: 2,
                reply: ReplyToken(7),
            },
        },
        now,
        &mut out,
    );
    out
}

fn req(e: &mut Engine, c: ConnId, reference: Option<Value>, request: PactRequest) -> Outbox {
    let mut out = Outbox::default();
    e.handle(
        Command::Pact {
            conn: c,
            room: ROOM.into(),
            reference,
            request,
        },
        1,
        &mut out,
    );
    out
}

fn leave(e: &mut Engine, c: ConnId) -> Outbox {
    let mut out = Outbox::default();
    e.handle(
        Command::Leave {
            conn: c,
            room: ROOM.into(),
        },
        2,
        &mut out,
    );
    out
}

fn sub(e: &mut Engine, c: ConnId, topic: &str) -> Outbox {
    req(e, c, None, PactRequest::Subscribe(Topic::parse(topic)))
}

fn vote(e: &mut Engine, c: ConnId, ephemeral: bool, poll: &str, answer: &str) -> Outbox {
    req(
        e,
        c,
        None,
        PactRequest::Vote {
            ephemeral,
            poll: poll.into(),
            answer: answer.into(),
        },
    )
}

fn count(e: &mut Engine, c: ConnId, id: &str, delta: &str) -> Outbox {
    req(
        e,
        c,
        None,
        PactRequest::Counter {
            counter: id.into(),
            delta: Decimal::from_str(delta).unwrap(),
        },
    )
}

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
        PactRequest::Login(props.as_object().unwrap().clone()),
    );
    let got = received(&out, conn(1));
    assert_eq!(got.len(), 1, "exactly one reply for a ref: {got:?}");
    assert_eq!(got[0]["type"], "profile");
    assert_eq!(got[0]["ref"], "r1");
    assert_eq!(got[0]["data"]["properties"], props);
    // Subscriptions survive a login (they are not properties).
    let out = req(&mut e, conn(1), None, PactRequest::Chat(json!("hi")));
    let seen = received(&out, conn(2));
    assert_eq!(
        seen[0],
        json!({"type":"chat","data":{"message":"hi","user":{"suffix":1,"properties":{"name":"ann"}}}})
    );
    assert_eq!(received(&out, conn(1)).len(), 1, "sender gets its own chat");
    // A second login replaces, not merges.
    let out = req(
        &mut e,
        conn(1),
        None,
        PactRequest::Login(json!({"x":1}).as_object().unwrap().clone()),
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
        PactRequest::Chat(json!({"a":1})),
    );
    assert_eq!(received(&out, conn(2)).len(), 1);
    assert!(received(&out, conn(3)).is_empty());
    assert_eq!(received(&out, conn(1)), vec![json!({"type":"ok","ref":9})]);
    // Unsubscribed: nothing more.
    req(
        &mut e,
        conn(2),
        None,
        PactRequest::Unsubscribe(Topic::parse("chat")),
    );
    let out = req(&mut e, conn(1), None, PactRequest::Chat(json!("x")));
    assert!(out.is_empty());
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
        json!({"type":"poll","data":{"id":"p","stats":{"goodbye":1,"hello":1}}})
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
    assert!(out.is_empty(), "same user, same answer: no change");
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
        vec![json!({"type":"ephemeralPoll","data":{"id":"e","stats":{"no":1}}})]
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
    let frame = out.sends[0].wire.bytes();
    assert!(
        String::from_utf8_lossy(frame).contains(r#""value":2.61}"#),
        "{frame:?}"
    );
    // Another counter does not reach a counter:order_subtotals subscriber.
    assert!(count(&mut e, conn(1), "other", "1").is_empty());
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
    assert!(out.is_empty());
    let out = req(
        &mut e,
        conn(1),
        Some(json!(1)),
        PactRequest::Subscribe(Topic::parse("counter")),
    );
    assert_eq!(
        received(&out, conn(1)),
        vec![
            json!({"type":"counter","data":{"id":"c","value":3}}),
            json!({"type":"ok","ref":1})
        ]
    );
    assert!(sub(&mut e, conn(1), "chat").is_empty());
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
        PactRequest::Login(json!({"n":1,"_p":2}).as_object().unwrap().clone()),
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
        PactRequest::Config("x".into()),
    );
    assert_eq!(received(&out, conn(1))[0]["data"]["code"], "forbidden");
    assert_eq!(received(&out, conn(1))[0]["ref"], "c");
    let out = req(
        &mut e,
        conn(2),
        None,
        PactRequest::Config("{\"a\":1}".into()),
    );
    assert_eq!(
        received(&out, conn(1))[0],
        json!({"type":"config","data":"{\"a\":1}"})
    );
    let out = req(
        &mut e,
        conn(2),
        None,
        PactRequest::Broadcast {
            to: Some("weather".into()),
            kind: "weather".into(),
            data: json!({"sun":true}),
        },
    );
    assert_eq!(
        received(&out, conn(1))[0],
        json!({"type":"weather","data":{"sun":true}})
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
    assert!(out.is_empty());
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
        json!({"type":"broadcast","data":{"anything":"can"}})
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
        PactRequest::Chat(json!("late")),
    );
    assert!(out.is_empty());
}

#[test]
fn counter_overflow_is_an_error_and_keeps_the_value() {
    let mut e = engine();
    join(&mut e, conn(1), "u1");
    count(&mut e, conn(1), "c", &Decimal::MAX.to_string());
    let out = count(&mut e, conn(1), "c", "1");
    assert_eq!(received(&out, conn(1))[0]["data"]["code"], "invalid_data");
    assert_eq!(
        e.details(ROOM).counters["c"].get(),
        Decimal::MAX.to_string()
    );
}

#[test]
fn wsdo_members_get_connected_and_presence_across_dialects() {
    let mut e = engine();
    let pact = conn(1);
    join(&mut e, pact, "p1");
    sub(&mut e, pact, "presence");
    let a = conn(2);
    let out = join_wsdo(&mut e, a);
    let connected = &received(&out, a)[0];
    assert_eq!(connected["type"], "CONNECTED");
    assert_eq!(connected["clientID"], "client_2");
    assert_eq!(
        connected["payload"]["members"],
        json!([{"clientID":"p1","presence":{}}])
    );
    assert_eq!(received(&out, pact)[0]["type"], "presence:joined");
    let b = conn(3);
    let out = join_wsdo(&mut e, b);
    assert_eq!(
        received(&out, a)[0],
        json!({"type":"PRESENCE:JOINED","payload":{"clientID":"client_3","presence":{}},
               "clientID":"client_2","latency":0})
    );
    assert!(received(&out, b)
        .iter()
        .all(|m| m["type"] != "PRESENCE:JOINED"));
    let mut out = Outbox::default();
    e.handle(
        Command::Presence {
            conn: b,
            room: ROOM.into(),
            presence: json!({"username":"Cerulean"}).as_object().unwrap().clone(),
        },
        1,
        &mut out,
    );
    for who in [a, b] {
        let got = &received(&out, who)[0];
        assert_eq!(got["type"], "PRESENCE:UPDATED", "sender included");
        assert_eq!(got["payload"]["presence"]["username"], "Cerulean");
    }
    assert_eq!(received(&out, pact)[0]["type"], "presence:updated");
    let out = leave(&mut e, b);
    assert_eq!(
        received(&out, a)[0]["payload"],
        json!({"clientID":"client_3"})
    );
    assert_eq!(received(&out, a)[0]["type"], "PRESENCE:LEFT");
}

#[test]
fn emit_reaches_every_dialect_and_keeps_a_bounded_history() {
    let mut e = engine();
    join(&mut e, conn(1), "p1");
    join_wsdo(&mut e, conn(2));
    let out = emit(&mut e, Targets::All, false, 0);
    assert_eq!(
        received(&out, conn(1))[0],
        json!({"type":"broadcast","data":{"hello":"world"},"eventID":"evt_test0001"})
    );
    let data = &received(&out, conn(2))[0];
    assert_eq!(data["type"], "DATA");
    assert_eq!(data["payload"], json!({"hello":"world"}));
    assert_eq!(data["eventID"], "evt_test0001");
    assert!(data.get("requires_ack").is_none());
    match &out.replies[..] {
        [(ReplyToken(7), EmitOutcome::Sent { event_id, clients })] => {
            assert_eq!(event_id, "evt_test0001");
            let mut clients = clients.clone();
            clients.sort();
            assert_eq!(clients, vec!["client_2".to_owned(), "p1".to_owned()]);
        }
        other => panic!("{other:?}"),
    }
    emit(&mut e, Targets::All, false, 0);
    emit(&mut e, Targets::All, false, 0);
    assert_eq!(e.history(ROOM, 10).len(), 2, "history_size bounds it");
}

#[test]
fn targeted_emits_and_their_refusals() {
    let mut e = engine();
    join_wsdo(&mut e, conn(1));
    join_wsdo(&mut e, conn(2));
    join_wsdo(&mut e, conn(3));
    let out = emit(&mut e, Targets::Random(2), false, 0);
    let reached: Vec<_> = [1, 2, 3]
        .into_iter()
        .filter(|n| !received(&out, conn(*n)).is_empty())
        .collect();
    assert_eq!(reached.len(), 2, "two distinct random clients");
    let out = emit(&mut e, Targets::Random(4), false, 0);
    assert!(out.sends.is_empty());
    assert_eq!(
        out.replies[0].1,
        EmitOutcome::NotEnoughClients {
            wanted: 4,
            connected: 3
        }
    );
    let out = emit(&mut e, Targets::Ids(vec!["client_9".into()]), false, 0);
    assert!(out.sends.is_empty(), "never a broadcast to all");
    assert_eq!(out.replies[0].1, EmitOutcome::NoClients);
    let out = emit(
        &mut e,
        Targets::Ids(vec!["client_2".into(), "x".into()]),
        false,
        0,
    );
    assert_eq!(received(&out, conn(2)).len(), 1);
    assert!(received(&out, conn(1)).is_empty());
}

#[test]
fn require_ack_waits_for_every_target_then_times_out_naming_the_silent() {
    let mut e = engine();
    join_wsdo(&mut e, conn(1));
    join_wsdo(&mut e, conn(2));
    join(&mut e, conn(3), "p3");
    let out = emit(&mut e, Targets::All, true, 1_000);
    assert!(out.replies.is_empty(), "waits for acks");
    assert_eq!(received(&out, conn(1))[0]["requires_ack"], true);
    assert_eq!(received(&out, conn(3))[0]["requires_ack"], true);
    let mut out = Outbox::default();
    e.handle(
        Command::Ack {
            conn: conn(1),
            room: ROOM.into(),
            event_id: "evt_test0001".into(),
        },
        1_100,
        &mut out,
    );
    assert_eq!(
        received(&out, conn(1))[0]["type"],
        "ACK-RECIEVED",
        "the seed's spelling"
    );
    let out = req(
        &mut e,
        conn(3),
        Some(json!("a")),
        PactRequest::Ack("evt_test0001".into()),
    );
    assert_eq!(
        received(&out, conn(3)),
        vec![json!({"type":"ok","ref":"a"})]
    );
    let mut out = Outbox::default();
    e.handle(Command::Tick, 5_999, &mut out);
    assert!(out.replies.is_empty());
    e.handle(Command::Tick, 6_000, &mut out);
    assert_eq!(
        out.replies,
        vec![(
            ReplyToken(7),
            EmitOutcome::AckTimeout {
                event_id: "evt_test0001".into(),
                acked: vec!["client_1".into(), "p3".into()],
                missing: vec!["client_2".into()]
            }
        )]
    );
    assert_eq!(e.pending_acks(), 0);
}

#[test]
fn the_last_ack_answers_at_once() {
    let mut e = engine();
    join_wsdo(&mut e, conn(1));
    emit(&mut e, Targets::Ids(vec!["client_1".into()]), true, 0);
    let mut out = Outbox::default();
    e.handle(
        Command::Ack {
            conn: conn(1),
            room: ROOM.into(),
            event_id: "evt_test0001".into(),
        },
        10,
        &mut out,
    );
    assert_eq!(
        out.replies[0].1,
        EmitOutcome::Acked {
            event_id: "evt_test0001".into(),
            acked: vec!["client_1".into()]
        }
    );
}

#[test]
fn history_outlives_the_members() {
    let mut e = engine();
    join_wsdo(&mut e, conn(1));
    emit(&mut e, Targets::All, false, 0);
    leave(&mut e, conn(1));
    assert_eq!(e.room_count(), 0);
    assert_eq!(e.history(ROOM, 10), vec![json!({"hello":"world"})]);
    join_wsdo(&mut e, conn(2));
    emit(&mut e, Targets::All, false, 0);
    assert_eq!(e.history(ROOM, 10).len(), 2);
    assert_eq!(e.history(ROOM, 1).len(), 1);
}

#[test]
fn admin_broadcast_reaches_wsdo_as_data_with_its_event_type() {
    let mut e = engine();
    join_wsdo(&mut e, conn(1));
    let mut out = Outbox::default();
    e.handle(
        Command::Broadcast {
            room: ROOM.into(),
            kind: "weather".into(),
            data: json!({"sun":true}),
            to: None,
        },
        0,
        &mut out,
    );
    let got = &received(&out, conn(1))[0];
    assert_eq!(got["type"], "DATA");
    assert_eq!(got["event"], "weather");
    assert_eq!(got["payload"], json!({"sun":true}));
}

fn publish(e: &mut Engine, sender: Option<ConnId>, label: &str, data: Value) -> Outbox {
    let mut out = Outbox::default();
    e.handle(
        Command::Publish {
            room: ROOM.into(),
            sender,
            sender_label: label.into(),
            data,
            event_id: "evt_pub00001".into(),
        },
        0,
        &mut out,
    );
    out
}

#[test]
fn lambda_join_then_publish_reaches_every_dialect_sender_first_then_success() {
    let mut e = engine();
    let lambda = conn(1);
    let out = join_dialect(
        &mut e,
        lambda,
        "sender21charsxxxxxxxx",
        Dialect::Lambda,
        Role::User,
    );
    assert_eq!(received(&out, lambda), vec![json!({"type":"joinSuccess"})]);
    join(&mut e, conn(2), "p");
    join_wsdo(&mut e, conn(3));
    join_dialect(&mut e, conn(4), "1:abc", Dialect::Jac, Role::User);
    let out = publish(
        &mut e,
        Some(lambda),
        "sender21charsxxxxxxxx",
        json!({"m":1}),
    );
    assert_eq!(
        received(&out, lambda),
        vec![
            json!({"type":"message","senderId":"sender21charsxxxxxxxx","data":{"m":1}}),
            json!({"type":"publishSuccess"})
        ]
    );
    assert_eq!(received(&out, conn(2))[0]["type"], "broadcast");
    assert_eq!(received(&out, conn(3))[0]["payload"], json!({"m":1}));
    assert_eq!(received(&out, conn(4)), vec![json!({"m":1})]);
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
                id: "u".into(),
                user_id: "u".into(),
                dialect: Dialect::Pact,
                role: Role::User,
                details: json!({}),
                token_error: Some("the token has expired".into()),
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
    let out = req(&mut e, conn(1), None, PactRequest::Config("c".into()));
    assert_eq!(
        received(&out, conn(1))[0],
        json!({"type":"config","data":"c"})
    );
}
