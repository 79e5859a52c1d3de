//! The contract every [`Broker`] passes: run [`check`] with a constructor of new nodes of
//! one cluster. Receiving waits on events (a marker published after what must not arrive),
//! never on time alone, so a broker with a network in between passes it too.

use super::Broker;
use crate::engine::{Position, Published, RoomEvent, Scope, Sequenced};
use serde_json::json;
use std::time::{Duration, Instant};

/// Makes a new node of the cluster under test.
pub type NewNode<'a> = dyn FnMut() -> Box<dyn Broker> + 'a;

/// How long a published event may take to arrive before the check fails.
const ARRIVAL: Duration = Duration::from_secs(10);

/// Runs every contract check, each with nodes of its own rooms.
pub fn check(new: &mut NewNode<'_>) {
    others_receive_in_order_with_position_and_scope(new);
    only_subscribed_rooms_arrive(new);
    unsubscribing_stops_delivery(new);
    every_subscriber_gets_each_event_once(new);
}

fn event(room: &str, seq: u64, scope: Scope) -> Published {
    Published {
        room: room.into(),
        event: Sequenced {
            position: Some(Position {
                epoch: "e".into(),
                seq,
            }),
            event: RoomEvent::Broadcast {
                kind: "k".into(),
                data: json!({"n": seq}).into(),
            },
        },
        scope,
        replies: Vec::new(),
        member_key: None,
    }
}

/// Receives on `node` until `want` events arrived (failing after [`ARRIVAL`]).
fn receive(node: &mut dyn Broker, want: usize) -> Vec<Published> {
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < want {
        node.receive(&mut got).expect("receive works");
        if got.len() < want {
            assert!(
                start.elapsed() < ARRIVAL,
                "only {} of {want} arrived",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    got
}

fn others_receive_in_order_with_position_and_scope(new: &mut NewNode<'_>) {
    let (mut a, mut b) = (new(), new());
    a.subscribe("c1-r").unwrap();
    b.subscribe("c1-r").unwrap();
    let sent: Vec<Published> = (1..=100)
        .map(|seq| {
            let scope = match seq % 3 {
                0 => Scope::Room,
                1 => Scope::Topic {
                    kind: "chat".into(),
                    id: None,
                },
                _ => Scope::Members(vec!["x".into()]),
            };
            event("c1-r", seq, scope)
        })
        .collect();
    for e in &sent {
        a.publish(e).unwrap();
    }
    assert_eq!(
        receive(b.as_mut(), 100),
        sent,
        "everything, in order, intact"
    );
    // A node does not receive its own events back: b publishes a marker, a sees only it.
    b.publish(&event("c1-r", 101, Scope::Room)).unwrap();
    let back = receive(a.as_mut(), 1);
    assert_eq!(back, vec![event("c1-r", 101, Scope::Room)]);
}

fn only_subscribed_rooms_arrive(new: &mut NewNode<'_>) {
    let (mut a, mut b) = (new(), new());
    b.subscribe("c2-wanted").unwrap();
    a.publish(&event("c2-other", 1, Scope::Room)).unwrap();
    a.publish(&event("c2-wanted", 1, Scope::Room)).unwrap();
    assert_eq!(
        receive(b.as_mut(), 1),
        vec![event("c2-wanted", 1, Scope::Room)]
    );
    let mut more = Vec::new();
    b.receive(&mut more).unwrap();
    assert!(more.is_empty(), "nothing of an unsubscribed room: {more:?}");
}

fn unsubscribing_stops_delivery(new: &mut NewNode<'_>) {
    let (mut a, mut b) = (new(), new());
    b.subscribe("c3-r").unwrap();
    b.subscribe("c3-marker").unwrap();
    a.publish(&event("c3-r", 1, Scope::Room)).unwrap();
    assert_eq!(receive(b.as_mut(), 1).len(), 1);
    b.unsubscribe("c3-r").unwrap();
    a.publish(&event("c3-r", 2, Scope::Room)).unwrap();
    a.publish(&event("c3-marker", 1, Scope::Room)).unwrap();
    let got = receive(b.as_mut(), 1);
    assert_eq!(
        got,
        vec![event("c3-marker", 1, Scope::Room)],
        "the marker alone"
    );
}

fn every_subscriber_gets_each_event_once(new: &mut NewNode<'_>) {
    let mut nodes: Vec<Box<dyn Broker>> = (0..4).map(|_| new()).collect();
    for node in nodes.iter_mut().skip(1) {
        node.subscribe("c4-r").unwrap();
    }
    nodes[0].publish(&event("c4-r", 1, Scope::Room)).unwrap();
    nodes[0].publish(&event("c4-r", 2, Scope::Room)).unwrap();
    for node in nodes.iter_mut().skip(1) {
        let got = receive(node.as_mut(), 2);
        let seqs: Vec<u64> = got
            .iter()
            .map(|e| e.event.position.as_ref().unwrap().seq)
            .collect();
        assert_eq!(seqs, vec![1, 2]);
        let mut more = Vec::new();
        node.receive(&mut more).unwrap();
        assert!(more.is_empty(), "once each");
    }
}
