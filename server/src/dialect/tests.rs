//! One room event in every dialect: what `Protocol::event` makes of a publish and a broadcast.

use super::{Dialect, Wire};
use crate::engine::{RoomEvent, Sequenced};
use serde_json::{json, Value};

fn text(w: &Wire) -> Value {
    match w {
        Wire::Frame(f) => serde_json::from_slice(&f[2..]).unwrap(),
        Wire::Body(b) => {
            let mut t = b.to_vec();
            t.extend_from_slice(br#""clientID":"c","latency":0}"#);
            serde_json::from_slice(&t).unwrap()
        }
    }
}

/// The event in every room dialect, in the order of `Dialect::ALL`; the echo endpoint,
/// never in a room, must carry none.
fn encode_all(event: RoomEvent) -> [Wire; Dialect::COUNT - 1] {
    let event = Sequenced {
        position: None,
        event,
    };
    let [p, w, j, l, s, echo] = Dialect::ALL.map(|d| d.protocol().event(&event));
    assert!(echo.is_none(), "the echo endpoint carries no room event");
    [p, w, j, l, s].map(|wire| wire.expect("every room dialect carries it"))
}

fn publish(data: Value, sender: &str, event_id: &str) -> RoomEvent {
    RoomEvent::Publish {
        data: data.into(),
        sender: sender.into(),
        event_id: event_id.into(),
        requires_ack: false,
    }
}

#[test]
fn a_publish_in_each_dialect() {
    let data = json!({"val":1});
    let [p, w, j, l, s] = encode_all(publish(data.clone(), "s1", "evt_1"));
    assert_eq!(text(&s), data);
    assert_eq!(
        text(&p),
        json!({"type":"broadcast","data":{"val":1},"eventID":"evt_1"})
    );
    assert_eq!(text(&w)["payload"], data);
    assert_eq!(text(&j), data);
    assert_eq!(
        text(&l),
        json!({"type":"message","senderId":"s1","data":{"val":1}})
    );
}

#[test]
fn slip_gets_string_data_as_raw_text() {
    let [_, _, _, _, s] = encode_all(publish(json!("plain text"), "s", "e"));
    match s {
        Wire::Frame(f) => assert_eq!(&f[2..], b"plain text"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_broadcast_in_each_dialect() {
    let event = RoomEvent::Broadcast {
        kind: "weather".into(),
        data: json!(1).into(),
    };
    let [p, w, j, l, s] = encode_all(event);
    assert_eq!(text(&s), json!({"type":"weather","data":1}));
    assert_eq!(text(&p), json!({"type":"weather","data":1}));
    assert_eq!(text(&w)["event"], "weather");
    assert_eq!(text(&j), json!({"type":"weather","data":1}));
    assert_eq!(
        text(&l),
        json!({"type":"message","senderId":"server","data":1,"event":"weather"})
    );
}

#[test]
fn codec_ids_round_trip() {
    for dialect in Dialect::ALL {
        assert_eq!(Dialect::of(dialect.codec_id()), dialect);
    }
}
