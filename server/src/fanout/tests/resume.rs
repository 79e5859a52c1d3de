//! Positions, resume and history on the native wire (SPEC §5.3): `seq` on lasting events,
//! `pos` in the profile, `resume`/`resumed` and `history`.

use super::*;

fn chat(e: &mut Engine, c: ConnId, text: &str) -> Outbox {
    req(e, c, None, Request::Chat(json!(text)))
}

fn resume(e: &mut Engine, c: ConnId, epoch: &str, seq: u64) -> Outbox {
    resume_at(e, c, epoch, seq, 1)
}

/// A `resume` (ref `"r"`) handled at time `now`.
fn resume_at(e: &mut Engine, c: ConnId, epoch: &str, seq: u64, now: u64) -> Outbox {
    let request = Request::Resume {
        epoch: epoch.into(),
        seq,
    };
    req_at(e, c, Some(json!("r")), request, now)
}

fn history(e: &mut Engine, c: ConnId, limit: usize, before: Option<u64>) -> Outbox {
    req(e, c, Some(json!("h")), Request::History { limit, before })
}

/// The profile's `pos` that `c` received on joining.
fn joined_pos(out: &Outbox, c: ConnId) -> (String, u64) {
    let got = received(out, c);
    let pos = &got[1]["data"]["pos"];
    (
        pos["epoch"].as_str().unwrap().to_owned(),
        pos["seq"].as_u64().unwrap(),
    )
}

/// A room where `conn(1)` chats and `conn(2)` (subscribed to chat) saw the first chat.
fn room_with_two() -> (Engine, String) {
    let mut e = engine();
    join(&mut e, conn(1), "u1");
    let (epoch, seq) = joined_pos(&join(&mut e, conn(2), "u2"), conn(2));
    assert_eq!(seq, 0, "a new room starts at 0");
    sub(&mut e, conn(1), "chat");
    sub(&mut e, conn(2), "chat");
    chat(&mut e, conn(1), "one");
    (e, epoch)
}

#[test]
fn lasting_events_carry_seq_and_presence_diffs_none() {
    let mut e = engine();
    join(&mut e, conn(1), "u1");
    for topic in ["chat", "counter", "poll", "presence"] {
        sub(&mut e, conn(1), topic);
    }
    let out = chat(&mut e, conn(1), "hi");
    assert_eq!(received(&out, conn(1))[0]["seq"], 1);
    let counter = Request::Counter {
        counter: "c".into(),
        delta: Decimal::ONE,
    };
    let out = req(&mut e, conn(1), None, counter);
    assert_eq!(received(&out, conn(1))[0]["seq"], 2);
    let vote = Request::Vote {
        ephemeral: false,
        poll: "p".into(),
        answer: "a".into(),
    };
    let out = req(&mut e, conn(1), None, vote);
    assert_eq!(received(&out, conn(1))[0]["seq"], 3);
    let out = emit(&mut e, Targets::All, false, 1);
    let got = received(&out, conn(1));
    assert_eq!(
        (got[0]["type"].as_str(), got[0]["seq"].as_u64()),
        (Some("broadcast"), Some(4))
    );
    let out = join(&mut e, conn(2), "u2");
    let diff = &received(&out, conn(1))[0];
    assert_eq!(diff["type"], "presence:joined");
    assert!(
        diff.get("seq").is_none(),
        "presence diffs carry no seq: {diff}"
    );
    let (_, seq) = joined_pos(&out, conn(2));
    assert_eq!(seq, 4, "the profile's pos is the room's position");
    // The snapshot a subscribe sends is state, not an event: no seq.
    let out = sub(&mut e, conn(2), "counter");
    let snapshot = &received(&out, conn(2))[0];
    assert_eq!(snapshot["type"], "counter");
    assert!(snapshot.get("seq").is_none(), "{snapshot}");
}

#[test]
fn resume_replays_what_was_missed_in_order() {
    let (mut e, epoch) = room_with_two();
    leave(&mut e, conn(2));
    chat(&mut e, conn(1), "two");
    chat(&mut e, conn(1), "three");
    join(&mut e, conn(3), "u2");
    sub(&mut e, conn(3), "chat");
    let got = received(&resume(&mut e, conn(3), &epoch, 1), conn(3));
    let texts: Vec<_> = got.iter().map(|f| f["data"]["message"].clone()).collect();
    assert_eq!(texts[..2], [json!("two"), json!("three")]);
    assert_eq!(
        (got[0]["seq"].as_u64(), got[1]["seq"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(
        got[2],
        json!({"type":"resumed","ref":"r","data":{"recovered":true,"missed":2,"pos":{"epoch":epoch,"seq":3}}})
    );
    assert_eq!(got.len(), 3);
}

#[test]
fn resume_with_nothing_missed_answers_at_once() {
    let (mut e, epoch) = room_with_two();
    let got = received(&resume(&mut e, conn(2), &epoch, 1), conn(2));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["data"]["recovered"], true);
    assert_eq!(got[0]["data"]["missed"], 0);
}

#[test]
fn only_what_the_subscriptions_cover_is_replayed() {
    let (mut e, epoch) = room_with_two();
    leave(&mut e, conn(2));
    let counter = Request::Counter {
        counter: "c".into(),
        delta: Decimal::ONE,
    };
    req(&mut e, conn(1), None, counter);
    chat(&mut e, conn(1), "two");
    join(&mut e, conn(3), "u2");
    sub(&mut e, conn(3), "chat");
    let got = received(&resume(&mut e, conn(3), &epoch, 1), conn(3));
    assert_eq!(got[0]["seq"], 3, "the counter (seq 2) is not subscribed");
    assert_eq!(got[1]["data"]["missed"], 1);
}

#[test]
fn live_events_during_a_replay_come_after_it() {
    let (mut e, epoch) = room_with_two();
    leave(&mut e, conn(2));
    chat(&mut e, conn(1), "two");
    join(&mut e, conn(3), "u2");
    sub(&mut e, conn(3), "chat");
    e.hold_reads = true;
    let out = resume(&mut e, conn(3), &epoch, 1);
    assert!(received(&out, conn(3)).is_empty(), "waiting for the store");
    let live = chat(&mut e, conn(1), "three");
    assert!(
        received(&live, conn(3)).is_empty(),
        "held for after the replay"
    );
    assert_eq!(received(&live, conn(1)).len(), 1, "others get it at once");
    let got = received(&e.answer_reads(2), conn(3));
    let seqs: Vec<_> = got.iter().map(|f| f["seq"].clone()).collect();
    assert_eq!(seqs, [json!(2), json!(3), Value::Null]);
    assert_eq!(got[2]["type"], "resumed");
    assert_eq!(
        got[2]["data"]["missed"], 1,
        "the held event reaches it live"
    );
    // After the replay, events flow directly again.
    e.hold_reads = false;
    let out = chat(&mut e, conn(1), "four");
    assert_eq!(received(&out, conn(3))[0]["seq"], 4);
}

#[test]
fn a_member_leaving_during_its_replay_is_forgotten() {
    let (mut e, epoch) = room_with_two();
    leave(&mut e, conn(2));
    chat(&mut e, conn(1), "two");
    join(&mut e, conn(3), "u2");
    sub(&mut e, conn(3), "chat");
    e.hold_reads = true;
    resume(&mut e, conn(3), &epoch, 1);
    leave(&mut e, conn(3));
    assert!(nothing(&e.answer_reads(2)));
    e.hold_reads = false;
    join(&mut e, conn(4), "u4");
    sub(&mut e, conn(4), "chat");
    let out = chat(&mut e, conn(1), "three");
    assert_eq!(received(&out, conn(4)).len(), 1);
}

#[test]
fn outside_the_window_or_another_epoch_reloads() {
    let (mut e, epoch) = room_with_two();
    sub(&mut e, conn(2), "counter");
    let counter = Request::Counter {
        counter: "c".into(),
        delta: Decimal::from(5),
    };
    req(&mut e, conn(1), None, counter);
    // The test store keeps 2 events: 4 more push seq 1..3 out.
    for text in ["a", "b", "c", "d"] {
        chat(&mut e, conn(1), text);
    }
    for (epoch, seq) in [(epoch.as_str(), 1), ("another-epoch", 6)] {
        let got = received(&resume(&mut e, conn(2), epoch, seq), conn(2));
        let kinds: Vec<_> = got.iter().map(|f| f["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["config", "counter", "resumed"], "{got:?}");
        assert_eq!(got[1]["data"], json!({"id":"c","value":5}));
        assert_eq!(
            got[2]["data"],
            json!({"recovered":false,"missed":0,"pos":{"epoch":epoch_of(&got[2]),"seq":6}})
        );
    }
}

fn epoch_of(resumed: &Value) -> Value {
    resumed["data"]["pos"]["epoch"].clone()
}

#[test]
fn a_position_ahead_of_the_room_is_refused() {
    let (mut e, epoch) = room_with_two();
    let got = received(&resume(&mut e, conn(2), &epoch, 9), conn(2));
    assert_eq!(got[0]["type"], "error");
    assert_eq!(got[0]["ref"], "r");
    assert_eq!(got[0]["data"]["code"], "invalid_data");
}

#[test]
fn the_position_survives_the_room_emptying() {
    let (mut e, epoch) = room_with_two();
    leave(&mut e, conn(1));
    leave(&mut e, conn(2));
    assert_eq!(e.room_count(), 0);
    let (again, seq) = joined_pos(&join(&mut e, conn(3), "u3"), conn(3));
    assert_eq!((again, seq), (epoch, 1));
}

#[test]
fn history_pages_back_and_hides_what_was_for_others() {
    let (mut e, _) = room_with_two();
    chat(&mut e, conn(1), "two");
    let out = history(&mut e, conn(2), 10, None);
    let got = received(&out, conn(2));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["type"], "history");
    assert_eq!(got[0]["ref"], "h");
    let events = got[0]["data"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "the store keeps 2");
    assert_eq!(events[0]["type"], "chat");
    assert_eq!(events[0]["seq"], 1);
    assert_eq!(events[1]["data"]["message"], "two");
    assert_eq!(got[0]["data"]["pos"]["seq"], 2);
    let older = received(&history(&mut e, conn(2), 10, Some(2)), conn(2));
    assert_eq!(older[0]["data"]["events"].as_array().unwrap().len(), 1);
    // An emit to u1 only is not in u2's history.
    emit(&mut e, Targets::Ids(vec!["u1".into()]), false, 1);
    let mine = received(&history(&mut e, conn(1), 1, None), conn(1));
    assert_eq!(mine[0]["data"]["events"][0]["type"], "broadcast");
    let theirs = received(&history(&mut e, conn(2), 1, None), conn(2));
    assert_eq!(theirs[0]["data"]["events"], json!([]));
}

#[test]
fn events_older_than_the_ttl_are_not_replayed() {
    let limits = engine::Limits {
        history_ttl_ms: 1_000,
        ..engine::Limits::default()
    };
    let mut e = engine();
    e.engine = engine::Engine::new(1).with_limits(limits);
    let (epoch, _) = joined_pos(&join(&mut e, conn(1), "u1"), conn(1));
    sub(&mut e, conn(1), "chat");
    join(&mut e, conn(2), "u2");
    // `req` runs at time 1: this chat is made at 1 ms; at 5,000 ms it is too old.
    chat(&mut e, conn(2), "old");
    let got = received(&resume_at(&mut e, conn(1), &epoch, 0, 5_000), conn(1));
    assert_eq!(got.last().unwrap()["data"]["recovered"], false, "{got:?}");
    // Within the TTL it replays.
    let got = received(&resume_at(&mut e, conn(1), &epoch, 0, 500), conn(1));
    assert_eq!(got[0]["data"]["message"], "old");
    assert_eq!(got.last().unwrap()["data"]["recovered"], true);
}
