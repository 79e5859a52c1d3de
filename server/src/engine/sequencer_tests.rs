//! The engine with a shared sequencer (`Engine::with_sequencer`, `--engine redis`): lasting
//! changes become proposals and nothing is decided locally; positioned events are delivered
//! in `seq` order whatever order they arrive in, a gap asks for a fill, and a new epoch
//! restarts the stream.

use super::subscriptions::Topic;
use super::*;
use rookery_protocol::pact::Role;
use serde_json::json;
use std::sync::Arc;

const ROOM: &str = "r";

fn conn(n: u64) -> ConnId {
    ConnId::new(0, n)
}

/// A Pact user joining as `public_id`, with no token.
fn joiner(public_id: String) -> Joiner {
    Joiner {
        identity: Arc::new(Identity {
            public_id,
            user: None,
        }),
        codec: CodecId(0),
        traits: Traits::default(),
        role: Role::User,
        details: None,
        token_error: None,
    }
}

fn joined(e: &mut Engine, c: ConnId) {
    let mut out = Outbox::default();
    let join = Command::Join {
        conn: c,
        room: ROOM.into(),
        joiner: joiner(format!("m{c:?}")),
    };
    e.handle(join, 0, &mut out);
    assert_eq!(out.loads, vec![ROOM.to_owned()]);
    let snapshot = RoomSnapshot {
        epoch: Some("e1".into()),
        seq: 10,
        ..RoomSnapshot::default()
    };
    let loaded = Command::Loaded {
        room: ROOM.into(),
        result: Ok(Some(snapshot)),
    };
    e.handle(loaded, 0, &mut out);
    let subscribe = Command::Request {
        conn: c,
        room: ROOM.into(),
        reference: None,
        request: Request::Subscribe(Topic::parse("counter")),
    };
    e.handle(subscribe, 0, &mut out);
}

fn counter_event(epoch: &str, seq: u64, value: i64) -> Command {
    Command::Remote(Published {
        room: ROOM.into(),
        event: Sequenced {
            position: Some(Position {
                epoch: epoch.into(),
                seq,
            }),
            event: RoomEvent::Counter {
                id: "c".into(),
                value: value.into(),
            },
        },
        scope: Scope::Topic {
            kind: "counter".into(),
            id: Some("c".into()),
        },
        replies: Vec::new(),
        member_key: None,
    })
}

fn delivered(out: &Outbox) -> Vec<u64> {
    out.sends
        .iter()
        .filter_map(|s| match s {
            Send::Event { event, .. } => event.position.as_ref().map(|p| p.seq),
            _ => None,
        })
        .collect()
}

#[test]
fn a_change_is_proposed_not_applied() {
    let mut e = Engine::new(1).with_sequencer();
    joined(&mut e, conn(1));
    let mut out = Outbox::default();
    let add = Command::Request {
        conn: conn(1),
        room: ROOM.into(),
        reference: Some(json!("r1")),
        request: Request::Counter {
            counter: "c".into(),
            delta: "0.1".parse().unwrap(),
        },
    };
    e.handle(add, 0, &mut out);
    assert!(
        out.sends.is_empty(),
        "nothing sent before the sequencer decides"
    );
    assert!(out.changes.is_empty(), "no local state change");
    let [proposal] = &out.proposals[..] else {
        panic!("{:?}", out.proposals)
    };
    assert_eq!(
        proposal.op,
        Op::Counter {
            id: "c".into(),
            expected: Default::default(),
            delta: "0.1".parse().unwrap()
        }
    );
    assert_eq!(proposal.replies.len(), 1, "the ok waits for the event");
    assert_eq!(e.details(ROOM).unwrap().counters.len(), 0);
}

#[test]
fn events_are_delivered_in_seq_order_and_a_gap_is_filled() {
    let mut e = Engine::new(1).with_sequencer();
    joined(&mut e, conn(1));
    let mut out = Outbox::default();
    e.handle(counter_event("e1", 10, 0), 0, &mut out);
    assert!(delivered(&out).is_empty(), "seen already (the load had it)");
    e.handle(counter_event("e1", 12, 2), 0, &mut out);
    assert!(delivered(&out).is_empty(), "11 is missing: 12 waits");
    assert_eq!(
        out.fills,
        vec![Fill {
            room: ROOM.into(),
            epoch: "e1".into(),
            after: 10
        }]
    );
    e.handle(counter_event("e1", 13, 3), 0, &mut out);
    assert_eq!(out.fills.len(), 1, "one fill at a time");
    e.handle(counter_event("e1", 11, 1), 0, &mut out);
    e.handle(counter_event("e1", 12, 2), 0, &mut out);
    assert_eq!(delivered(&out), vec![11, 12, 13]);
    assert_eq!(e.details(ROOM).unwrap().counters["c"], 3.into(), "mirrored");
}

#[test]
fn what_a_fill_could_not_find_is_skipped_and_a_new_epoch_restarts_the_stream() {
    let mut e = Engine::new(1).with_sequencer();
    joined(&mut e, conn(1));
    let mut out = Outbox::default();
    e.handle(counter_event("e1", 15, 5), 0, &mut out);
    assert_eq!(out.fills.len(), 1);
    let filled = Command::Filled {
        room: ROOM.into(),
        oldest: Some(15),
        complete: true,
    };
    e.handle(filled, 0, &mut out);
    assert_eq!(
        delivered(&out),
        vec![15],
        "11–14 were gone from the history"
    );
    let mut out = Outbox::default();
    e.handle(counter_event("e2", 1, 7), 0, &mut out);
    assert_eq!(delivered(&out), vec![1]);
    assert_eq!(&*e.position(ROOM).unwrap().epoch, "e2");
    let mut out = Outbox::default();
    e.handle(Command::Resync, 0, &mut out);
    assert_eq!(
        out.fills,
        vec![Fill {
            room: ROOM.into(),
            epoch: "e2".into(),
            after: 1
        }]
    );
}

#[test]
fn a_room_left_empty_goes_idle() {
    let mut e = Engine::new(1).with_sequencer();
    joined(&mut e, conn(1));
    let mut out = Outbox::default();
    let leave = Command::Leave {
        conn: conn(1),
        room: ROOM.into(),
    };
    e.handle(leave, 0, &mut out);
    assert_eq!(out.idle, vec![ROOM.to_owned()]);
}

#[test]
fn what_the_stream_keeps_but_a_fill_missed_is_read_again_and_a_resync_waits_its_turn() {
    let mut e = Engine::new(1).with_sequencer();
    joined(&mut e, conn(1));
    let mut out = Outbox::default();
    e.handle(counter_event("e1", 13, 3), 0, &mut out);
    assert_eq!(out.fills.len(), 1);
    // The link came back while the fill was out: one more fill, after this one.
    e.handle(Command::Resync, 0, &mut out);
    assert_eq!(out.fills.len(), 1, "one fill at a time");
    // The fill read before 11 and 12 were made: the stream keeps them (oldest 1).
    let filled = Command::Filled {
        room: ROOM.into(),
        oldest: Some(1),
        complete: true,
    };
    e.handle(filled.clone(), 0, &mut out);
    assert!(delivered(&out).is_empty(), "nothing skipped");
    assert_eq!(out.fills.len(), 2, "read again");
    e.handle(counter_event("e1", 11, 1), 0, &mut out);
    e.handle(counter_event("e1", 12, 2), 0, &mut out);
    e.handle(filled.clone(), 0, &mut out);
    assert_eq!(delivered(&out), vec![11, 12, 13]);
    assert_eq!(out.fills.len(), 3, "the resync's turn");
    // A fill that could not read the stream skips nothing and waits.
    e.handle(counter_event("e1", 15, 5), 0, &mut out);
    let failed = Command::Filled {
        room: ROOM.into(),
        oldest: None,
        complete: false,
    };
    e.handle(failed, 0, &mut out);
    assert_eq!(delivered(&out), vec![11, 12, 13], "15 waits for 14");
}

#[test]
fn joins_wait_for_a_new_block_of_suffixes_and_are_refused_without_one() {
    let mut e = Engine::new(1).with_sequencer();
    let mut out = Outbox::default();
    let join = |c: u64| Command::Join {
        conn: conn(c),
        room: ROOM.into(),
        joiner: joiner(format!("m{c}")),
    };
    e.handle(join(1), 0, &mut out);
    let snapshot = RoomSnapshot {
        epoch: Some("e1".into()),
        suffix: 40,
        suffix_until: Some(41),
        ..RoomSnapshot::default()
    };
    let loaded = Command::Loaded {
        room: ROOM.into(),
        result: Ok(Some(snapshot)),
    };
    e.handle(loaded, 0, &mut out);
    let suffix_of = |out: &Outbox, c: u64| {
        out.sends.iter().find_map(|s| match s {
            Send::Reply {
                to,
                reply: Reply::Welcome { profile, .. },
                ..
            } if *to == conn(c) => Some(profile.suffix),
            _ => None,
        })
    };
    assert_eq!(suffix_of(&out, 1), Some(41), "the block's last");
    let mut out = Outbox::default();
    e.handle(join(2), 0, &mut out);
    assert_eq!(
        out.suffixes,
        vec![ROOM.to_owned()],
        "used up: another block"
    );
    assert_eq!(suffix_of(&out, 2), None, "the join waits");
    let block = Command::Suffixes {
        room: ROOM.into(),
        block: Ok((100, 132)),
    };
    e.handle(block, 0, &mut out);
    assert_eq!(suffix_of(&out, 2), Some(101));
    // Used up again, and no block to be had: the join is refused.
    for c in 3..=33 {
        e.handle(join(c), 0, &mut out);
    }
    assert_eq!(suffix_of(&out, 33), Some(132));
    let mut out = Outbox::default();
    e.handle(join(34), 0, &mut out);
    let failed = Command::Suffixes {
        room: ROOM.into(),
        block: Err("redis is unavailable".into()),
    };
    e.handle(failed, 0, &mut out);
    assert!(out
        .closes
        .iter()
        .any(|(c, code, _)| *c == conn(34) && *code == 1011));
}

/// A presence diff from the sequencer carries the count in the order Redis saw the joins,
/// which can lag this node's own members (they count here at once). A watcher's snapshot
/// is this node's view, so each diff it gets must carry the count of the same view, or it
/// would see `2` for a room of three for good.
#[test]
fn a_presence_diff_counts_as_this_nodes_snapshot_did() {
    let mut e = Engine::new(1).with_sequencer();
    joined(&mut e, conn(1));
    let mut out = Outbox::default();
    let join = Command::Join {
        conn: conn(2),
        room: ROOM.into(),
        joiner: joiner("watcher".into()),
    };
    e.handle(join, 0, &mut out);
    let watch = Command::Request {
        conn: conn(2),
        room: ROOM.into(),
        reference: None,
        request: Request::Subscribe(Topic::parse("presence")),
    };
    e.handle(watch, 0, &mut out);
    let snapshot = out.sends.iter().find_map(|s| match s {
        Send::Reply {
            to,
            reply: Reply::Presence(p),
            ..
        } if *to == conn(2) => Some(p.count),
        _ => None,
    });
    assert_eq!(snapshot, Some(2), "both members here");
    // Another node's member joined before the watcher reached Redis: Redis counted two.
    let member = rookery_protocol::pact::Member {
        id: "elsewhere".into(),
        suffix: 7,
        properties: Default::default(),
    };
    let remote = |change, count| {
        Command::Remote(Published {
            room: ROOM.into(),
            event: Sequenced {
                position: None,
                event: RoomEvent::Presence {
                    change,
                    member: member.clone(),
                    count,
                },
            },
            scope: Scope::Presence { except: None },
            replies: Vec::new(),
            member_key: Some("node-b:1".into()),
        })
    };
    let counts = |e: &mut Engine, command| {
        let mut out = Outbox::default();
        e.handle(command, 0, &mut out);
        out.sends
            .iter()
            .filter_map(|s| match s {
                Send::Event { event, to } if to.contains(conn(2)) => match &event.event {
                    RoomEvent::Presence { count, .. } => Some(*count),
                    _ => None,
                },
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(counts(&mut e, remote(PresenceChange::Joined, 2)), vec![3]);
    assert_eq!(e.details(ROOM).unwrap().count, 3);
    assert_eq!(counts(&mut e, remote(PresenceChange::Left, 3)), vec![2]);
}
