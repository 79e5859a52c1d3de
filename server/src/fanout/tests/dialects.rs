//! Members of every dialect in one room: greetings, presence, emits, acks and publishes.

use super::*;

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
        json!({"type":"broadcast","data":{"hello":"world"},"eventID":"evt_test0001","seq":1})
    );
    let data = &received(&out, conn(2))[0];
    assert_eq!(data["type"], "DATA");
    assert_eq!(data["payload"], json!({"hello":"world"}));
    assert_eq!(data["eventID"], "evt_test0001");
    assert!(data.get("requires_ack").is_none());
    match &out.outcomes[..] {
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
        out.outcomes[0].1,
        EmitOutcome::NotEnoughClients {
            wanted: 4,
            connected: 3
        }
    );
    let out = emit(&mut e, Targets::Ids(vec!["client_9".into()]), false, 0);
    assert!(out.sends.is_empty(), "never a broadcast to all");
    assert_eq!(out.outcomes[0].1, EmitOutcome::NoClients);
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
    assert!(out.outcomes.is_empty(), "waits for acks");
    assert_eq!(received(&out, conn(1))[0]["requires_ack"], true);
    assert_eq!(received(&out, conn(3))[0]["requires_ack"], true);
    let out = ack(&mut e, conn(1), 1_100);
    assert_eq!(
        received(&out, conn(1))[0]["type"],
        "ACK-RECIEVED",
        "the seed's spelling"
    );
    let out = req(
        &mut e,
        conn(3),
        Some(json!("a")),
        Request::Ack("evt_test0001".into()),
    );
    assert_eq!(
        received(&out, conn(3)),
        vec![json!({"type":"ok","ref":"a"})]
    );
    let mut out = Outbox::default();
    e.handle(Command::Tick, 5_999, &mut out);
    assert!(out.outcomes.is_empty());
    e.handle(Command::Tick, 6_000, &mut out);
    assert_eq!(
        out.outcomes,
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
    let out = ack(&mut e, conn(1), 10);
    assert_eq!(
        out.outcomes[0].1,
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
