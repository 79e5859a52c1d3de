//! Deterministic engine tests: no sockets, no sleeps, no codecs; time is an argument. They
//! look at the engine's effects themselves: events with positions and audiences, replies,
//! changes, loads and what goes to the broker. (`crate::fanout`'s tests look at the frames.)

use super::emit::{EmitOutcome, ReplyToken, Targets};
use super::subscriptions::Topic;
use super::*;
use rookery_protocol::pact::Role;
use serde_json::json;
use std::sync::Arc;

const ROOM: &str = "lobby";
const PACT: CodecId = CodecId(0);
const OTHER: CodecId = CodecId(1);

fn conn(n: u64) -> ConnId {
    ConnId::new(0, n)
}

fn joiner(id: &str, codec: CodecId, traits: Traits) -> Joiner {
    Joiner {
        identity: Arc::new(Identity {
            public_id: id.into(),
            user: None,
        }),
        codec,
        traits,
        role: Role::User,
        details: None,
        token_error: None,
    }
}

fn join_cmd(c: ConnId, id: &str) -> Command {
    Command::Join {
        conn: c,
        room: ROOM.into(),
        joiner: joiner(id, PACT, Traits::default()),
    }
}

fn request(c: ConnId, request: Request) -> Command {
    Command::Request {
        conn: c,
        room: ROOM.into(),
        reference: None,
        request,
    }
}

fn sub(c: ConnId, topic: &str) -> Command {
    request(c, Request::Subscribe(Topic::parse(topic)))
}

/// Applies `command`, answering loads with `snapshot` (as a store knowing it would).
fn run(e: &mut Engine, command: Command, snapshot: &Option<RoomSnapshot>) -> Outbox {
    let mut out = Outbox::default();
    e.handle(command, 0, &mut out);
    while let Some(room) = out.loads.pop() {
        let loaded = Command::Loaded {
            room,
            result: Ok(snapshot.clone()),
        };
        e.handle(loaded, 0, &mut out);
    }
    out
}

/// The changes in `out` but the history's appends.
fn state_changes(out: &Outbox) -> Vec<&Change> {
    out.changes
        .iter()
        .filter(|c| !matches!(c, Change::Append { .. }))
        .collect()
}

/// The events in `out`, in order.
fn events(out: &Outbox) -> Vec<(&Sequenced, &Audience)> {
    out.sends
        .iter()
        .filter_map(|s| match s {
            Send::Event { event, to } => Some((event, to)),
            Send::Reply { .. } => None,
        })
        .collect()
}

fn seqs(out: &Outbox) -> Vec<Option<u64>> {
    events(out)
        .iter()
        .map(|(e, _)| e.position.as_ref().map(|p| p.seq))
        .collect()
}

#[test]
fn lasting_events_take_consecutive_positions_and_presence_none() {
    let mut e = Engine::new(7);
    let none = None;
    run(&mut e, join_cmd(conn(1), "a"), &none);
    run(&mut e, sub(conn(1), "chat"), &none);
    run(&mut e, sub(conn(1), "presence"), &none);
    let out = run(&mut e, request(conn(1), Request::Chat(json!("hi"))), &none);
    assert_eq!(seqs(&out), vec![Some(1)]);
    let out = run(&mut e, join_cmd(conn(2), "b"), &none);
    assert_eq!(seqs(&out), vec![None], "a presence diff has no position");
    let counter = Request::Counter {
        counter: "c".into(),
        delta: 1.into(),
    };
    run(&mut e, sub(conn(1), "counter"), &none);
    let out = run(&mut e, request(conn(1), counter), &none);
    assert_eq!(seqs(&out), vec![Some(2)]);
    let epoch = &events(&out)[0].0.position.as_ref().unwrap().epoch;
    assert_eq!(e.position(ROOM).unwrap().epoch, *epoch);
    assert_eq!(e.position(ROOM).unwrap().seq, 2);
}

#[test]
fn commands_wait_in_order_for_their_room_to_load() {
    let mut e = Engine::new(1);
    let mut out = Outbox::default();
    e.handle(join_cmd(conn(1), "a"), 0, &mut out);
    e.handle(sub(conn(1), "chat"), 0, &mut out);
    e.handle(request(conn(1), Request::Chat(json!(1))), 0, &mut out);
    assert_eq!(out.loads, vec![ROOM.to_owned()], "asked once");
    assert!(out.sends.is_empty(), "nothing happens before the load");
    let snapshot = RoomSnapshot {
        suffix: 41,
        epoch: Some("kept".into()),
        seq: 9,
        ..RoomSnapshot::default()
    };
    let loaded = Command::Loaded {
        room: ROOM.into(),
        result: Ok(Some(snapshot)),
    };
    e.handle(loaded, 0, &mut out);
    match &out.sends[0] {
        Send::Reply {
            reply: Reply::Welcome { profile, .. },
            ..
        } => assert_eq!(profile.suffix, 42, "the stored suffix counts on"),
        other => panic!("{other:?}"),
    }
    let (chat, to) = events(&out)[0];
    assert_eq!(
        chat.position,
        Some(Position {
            epoch: "kept".into(),
            seq: 10
        })
    );
    assert!(to.contains(conn(1)));
}

#[test]
fn a_failed_load_refuses_what_waited() {
    let mut e = Engine::new(1);
    let mut out = Outbox::default();
    e.handle(join_cmd(conn(1), "a"), 0, &mut out);
    let stays = Traits {
        stays_when_refused: true,
        ..Traits::default()
    };
    let joins_anyway = Command::Join {
        conn: conn(2),
        room: ROOM.into(),
        joiner: joiner("b", OTHER, stays),
    };
    e.handle(joins_anyway, 0, &mut out);
    let emit = Emit {
        payload: json!(1),
        targets: Targets::All,
        require_ack: false,
        event_id: "e".into(),
        seed: 0,
        ack_timeout_ms: 0,
        reply: ReplyToken(3),
    };
    e.handle(
        Command::Emit {
            room: ROOM.into(),
            emit,
        },
        0,
        &mut out,
    );
    let failed = Command::Loaded {
        room: ROOM.into(),
        result: Err("disk on fire".into()),
    };
    e.handle(failed, 0, &mut out);
    assert_eq!(out.closes.len(), 1);
    assert_eq!((out.closes[0].0, out.closes[0].1), (conn(1), 1011));
    assert!(matches!(
        &out.sends[..],
        [Send::Reply {
            reply: Reply::JoinRefused { .. },
            ..
        }]
    ));
    assert_eq!(
        out.outcomes,
        vec![(ReplyToken(3), EmitOutcome::Unavailable)]
    );
    assert_eq!(e.room_count(), 0);
}

#[test]
fn an_idle_room_keeps_its_position_and_a_new_room_starts_an_epoch() {
    let mut e = Engine::new(1);
    let none = None;
    run(&mut e, join_cmd(conn(1), "a"), &none);
    run(&mut e, request(conn(1), Request::Chat(json!(1))), &none);
    let out = run(
        &mut e,
        Command::Leave {
            conn: conn(1),
            room: ROOM.into(),
        },
        &none,
    );
    let position = out.changes.iter().find_map(|c| match c {
        Change::Position { epoch, seq, .. } => Some((epoch.clone(), *seq)),
        _ => None,
    });
    let (epoch, seq) = position.expect("the position is kept");
    assert_eq!(seq, 1);
    assert_eq!(e.room_count(), 0);
    // Back, from what the store kept: the same stream goes on.
    let kept = Some(RoomSnapshot {
        epoch: Some(epoch.clone()),
        seq,
        ..RoomSnapshot::default()
    });
    run(&mut e, join_cmd(conn(2), "b"), &kept);
    run(&mut e, sub(conn(2), "chat"), &kept);
    let out = run(&mut e, request(conn(2), Request::Chat(json!(2))), &kept);
    assert_eq!(
        events(&out)[0].0.position,
        Some(Position {
            epoch: epoch.into(),
            seq: 2
        })
    );
    // A room the store knows nothing of starts a new epoch; another seed, another epoch.
    let mut other = Engine::new(2);
    run(&mut other, join_cmd(conn(3), "c"), &none);
    assert_ne!(other.position(ROOM), e.position(ROOM));
}

#[test]
fn durable_changes_are_left_for_the_store() {
    let mut e = Engine::new(1);
    let none = None;
    let out = run(&mut e, join_cmd(conn(1), "a"), &none);
    assert!(out.changes.contains(&Change::Suffix {
        room: ROOM.into(),
        suffix: 1
    }));
    let vote = Request::Vote {
        ephemeral: false,
        poll: "p".into(),
        answer: "y".into(),
    };
    let out = run(&mut e, request(conn(1), vote), &none);
    assert_eq!(
        state_changes(&out),
        vec![&Change::Vote {
            room: ROOM.into(),
            poll: "p".into(),
            user: "a".into(),
            answer: Some("y".into())
        }]
    );
    let ephemeral = Request::Vote {
        ephemeral: true,
        poll: "p".into(),
        answer: "y".into(),
    };
    let out = run(&mut e, request(conn(1), ephemeral), &none);
    assert!(
        state_changes(&out).is_empty(),
        "ephemeral votes are not stored (their tallies are history)"
    );
    // An emit is kept in the history, with its position.
    let emit = Emit {
        payload: json!("x"),
        targets: Targets::All,
        require_ack: false,
        event_id: "e".into(),
        seed: 0,
        ack_timeout_ms: 0,
        reply: ReplyToken(1),
    };
    let out = run(
        &mut e,
        Command::Emit {
            room: ROOM.into(),
            emit,
        },
        &none,
    );
    match &out.changes[..] {
        [Change::Append { entry, .. }] => assert!(entry.event.position.is_some()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_broker_feed_carries_scopes_and_remote_events_reach_local_members() {
    let mut origin = Engine::new(1).with_broker_feed();
    let none = None;
    run(&mut origin, join_cmd(conn(1), "a"), &none);
    run(&mut origin, sub(conn(1), "chat"), &none);
    let out = run(
        &mut origin,
        request(conn(1), Request::Chat(json!("hi"))),
        &none,
    );
    let published = out.published.clone();
    assert_eq!(published.len(), 1);
    assert_eq!(
        published[0].scope,
        Scope::Topic {
            kind: "chat".into(),
            id: None
        }
    );
    // Another node: one chat subscriber, one member not subscribed.
    let mut node = Engine::new(2);
    run(&mut node, join_cmd(conn(7), "x"), &none);
    run(&mut node, sub(conn(7), "chat"), &none);
    run(&mut node, join_cmd(conn(8), "y"), &none);
    let before = node.position(ROOM);
    let out = run(&mut node, Command::Remote(published[0].clone()), &none);
    let (event, to) = events(&out)[0];
    assert_eq!(event, &published[0].event, "delivered as published");
    assert!(to.contains(conn(7)) && !to.contains(conn(8)));
    assert_eq!(node.position(ROOM), before, "the origin sequenced it");
    // Without a feed nothing is copied.
    let mut alone = Engine::new(3);
    run(&mut alone, join_cmd(conn(1), "a"), &none);
    let out = run(&mut alone, request(conn(1), Request::Chat(json!(1))), &none);
    assert!(out.published.is_empty());
}

#[test]
fn presence_scopes_follow_traits_and_except_the_joiner() {
    let mut e = Engine::new(1);
    let none = None;
    let watcher = Traits {
        always_sees_presence: true,
        ..Traits::default()
    };
    let join_watcher = |c, id: &str| Command::Join {
        conn: c,
        room: ROOM.into(),
        joiner: joiner(id, OTHER, watcher),
    };
    run(&mut e, join_watcher(conn(1), "w1"), &none);
    run(&mut e, join_cmd(conn(2), "quiet"), &none);
    let out = run(&mut e, join_watcher(conn(3), "w3"), &none);
    let (_, to) = events(&out)[0];
    assert!(to.contains(conn(1)), "a watcher sees the join");
    assert!(!to.contains(conn(3)), "not its own");
    assert!(!to.contains(conn(2)), "an unsubscribed member does not");
    assert_eq!(to.groups.len(), 1, "grouped by codec");
}

/// A topic's audience is kept between events (`Room::members_changed`): every join, leave,
/// subscribe and unsubscribe between two chats shows in the second, in each codec.
#[test]
fn a_kept_topic_audience_follows_every_change_of_members() {
    let mut e = Engine::new(1);
    let none = None;
    let chat_to = |e: &mut Engine| -> Audience {
        let out = run(e, request(conn(1), Request::Chat(json!("hi"))), &none);
        let (_, to) = events(&out)[0];
        to.clone()
    };
    let conns = |to: &Audience| -> Vec<ConnId> {
        let mut all: Vec<ConnId> = to.groups.iter().flat_map(|(_, c)| c.clone()).collect();
        all.sort();
        all
    };
    run(&mut e, join_cmd(conn(1), "a"), &none);
    run(&mut e, sub(conn(1), "chat"), &none);
    run(&mut e, join_cmd(conn(2), "b"), &none);
    assert_eq!(conns(&chat_to(&mut e)), [conn(1)]);
    assert_eq!(conns(&chat_to(&mut e)), [conn(1)], "kept, the same");
    run(&mut e, sub(conn(2), "chat"), &none);
    assert_eq!(conns(&chat_to(&mut e)), [conn(1), conn(2)], "a subscribe");
    let other = Command::Join {
        conn: conn(3),
        room: ROOM.into(),
        joiner: joiner("c", OTHER, Traits::default()),
    };
    run(&mut e, other, &none);
    run(&mut e, sub(conn(3), "chat"), &none);
    let to = chat_to(&mut e);
    assert_eq!(conns(&to), [conn(1), conn(2), conn(3)], "a join");
    assert_eq!(to.groups.len(), 2, "grouped by codec");
    let unsub = request(conn(2), Request::Unsubscribe(Topic::parse("chat")));
    run(&mut e, unsub, &none);
    assert_eq!(
        conns(&chat_to(&mut e)),
        [conn(1), conn(3)],
        "an unsubscribe"
    );
    let leave = Command::Leave {
        conn: conn(3),
        room: ROOM.into(),
    };
    run(&mut e, leave, &none);
    assert_eq!(conns(&chat_to(&mut e)), [conn(1)], "a leave");
    // Another topic is chosen anew, and chat's is chosen again after it.
    run(&mut e, sub(conn(2), "news"), &none);
    let news = Command::Broadcast {
        room: ROOM.into(),
        kind: "headline".into(),
        data: json!(1),
        to: Some("news".into()),
    };
    let out = run(&mut e, news, &none);
    assert_eq!(conns(events(&out)[0].1), [conn(2)], "another topic's own");
    assert_eq!(conns(&chat_to(&mut e)), [conn(1)], "chat's again");
}

#[test]
fn the_room_limit_counts_rooms_being_loaded() {
    let limits = Limits {
        max_rooms: 1,
        ..Limits::default()
    };
    let mut e = Engine::new(1).with_limits(limits);
    let mut out = Outbox::default();
    e.handle(join_cmd(conn(1), "a"), 0, &mut out);
    let other = Command::Join {
        conn: conn(2),
        room: "elsewhere".into(),
        joiner: joiner("b", PACT, Traits::default()),
    };
    e.handle(other, 0, &mut out);
    assert_eq!(out.loads, vec![ROOM.to_owned()]);
    assert_eq!(out.closes[0].0, conn(2));
    assert_eq!(out.closes[0].1, 1013);
}

/// The engine's layering, checked on its sources: it names no dialect and no frame.
#[test]
fn the_engine_speaks_no_dialect() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine");
    let mut files = vec![dir.clone()];
    let mut checked = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Code only: the docs may say where the frames are made.
        let code = text.lines().filter(|l| !l.trim_start().starts_with("//"));
        for line in code.filter(|_| !path.ends_with("tests.rs")) {
            for forbidden in [
                "crate::dialect",
                "crate::frame",
                "crate::shell",
                "crate::fanout",
            ] {
                assert!(!line.contains(forbidden), "{}: {line}", path.display());
            }
        }
        checked += 1;
    }
    assert!(checked > 10, "the engine's files were found");
}
