//! Room events that every dialect receives, each in its own form, encoded once per dialect.

use super::{pact, wsdo, Dialect, Wire};
use crate::frame;
use serde::Serialize;
use serde_json::Value;

/// An event for members of any dialect.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// Data published to the room or to chosen members: an HTTP emit, a jac
    /// `user`/`channel`/`client` event, a Lambda `publish`, `POST /api/notify`.
    Publish {
        data: &'a Value,
        /// Who published: the Lambda `senderId` of the sender, another member's id, or
        /// `"server"`.
        sender: &'a str,
        event_id: &'a str,
        requires_ack: bool,
    },
    /// An admin broadcast `{type, data}`.
    Broadcast { kind: &'a str, data: &'a Value },
}

#[derive(Serialize)]
struct LambdaMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "senderId")]
    sender_id: &'a str,
    data: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
}

#[derive(Serialize)]
struct Typed<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: &'a Value,
}

fn json_frame<T: Serialize>(value: &T) -> Wire {
    Wire::Frame(frame::text(
        &serde_json::to_vec(value).expect("events serialize"),
    ))
}

/// `event` as members speaking `dialect` receive it:
///
/// | | Publish | Broadcast `{type, data}` |
/// |---|---|---|
/// | pact | `{"type":"broadcast","data":D,"eventID":..}` | `{"type":T,"data":D}` |
/// | wsdo | `DATA` with payload `D` and `eventID` | `DATA` with payload `D`, `"event":T` |
/// | jac | `D` itself | `{"type":T,"data":D}` |
/// | lambda | `{"type":"message","senderId":S,"data":D}` | the same with `senderId` `"server"`, `"event":T` |
/// | slip | `D` as the frame's text when a string, else `D` as JSON | `{"type":T,"data":D}` |
pub fn encode(dialect: Dialect, event: &Event<'_>) -> Wire {
    match (dialect, *event) {
        (
            Dialect::Pact,
            Event::Publish {
                data,
                event_id,
                requires_ack,
                ..
            },
        ) => Wire::Frame(pact::encode_emit(data, event_id, requires_ack)),
        (
            Dialect::Wsdo,
            Event::Publish {
                data,
                event_id,
                requires_ack,
                ..
            },
        ) => Wire::WsdoBody(wsdo::body(
            wsdo::DATA,
            data,
            wsdo::Extra {
                event_id: Some(event_id),
                requires_ack,
                event: None,
            },
        )),
        (Dialect::Jac, Event::Publish { data, .. }) => json_frame(data),
        (Dialect::Lambda, Event::Publish { data, sender, .. }) => json_frame(&LambdaMessage {
            kind: "message",
            sender_id: sender,
            data,
            event: None,
        }),
        (Dialect::Slip, Event::Publish { data, .. }) => match data {
            Value::String(text) => Wire::Frame(frame::text(text.as_bytes())),
            other => json_frame(other),
        },
        (Dialect::Pact | Dialect::Jac | Dialect::Slip, Event::Broadcast { kind, data }) => {
            json_frame(&Typed { kind, data })
        }
        (Dialect::Wsdo, Event::Broadcast { kind, data }) => Wire::WsdoBody(wsdo::body(
            wsdo::DATA,
            data,
            wsdo::Extra {
                event: Some(kind),
                ..Default::default()
            },
        )),
        (Dialect::Lambda, Event::Broadcast { kind, data }) => json_frame(&LambdaMessage {
            kind: "message",
            sender_id: "server",
            data,
            event: Some(kind),
        }),
    }
}

/// The event in every dialect, for sends whose recipients' dialects are not known where
/// it is encoded (user- and client-targeted sends, which every core resolves itself).
pub fn encode_all(event: &Event<'_>) -> [Wire; 5] {
    Dialect::ALL.map(|d| encode(d, event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(w: &Wire) -> Value {
        match w {
            Wire::Frame(f) => serde_json::from_slice(&f[2..]).unwrap(),
            Wire::WsdoBody(b) => {
                let mut t = b.to_vec();
                t.extend_from_slice(br#""clientID":"c","latency":0}"#);
                serde_json::from_slice(&t).unwrap()
            }
        }
    }

    #[test]
    fn a_publish_in_each_dialect() {
        let data = json!({"val":1});
        let e = Event::Publish {
            data: &data,
            sender: "s1",
            event_id: "evt_1",
            requires_ack: false,
        };
        let [p, w, j, l, s] = encode_all(&e);
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
        let data = json!("plain text");
        let e = Event::Publish {
            data: &data,
            sender: "s",
            event_id: "e",
            requires_ack: false,
        };
        match encode(Dialect::Slip, &e) {
            Wire::Frame(f) => assert_eq!(&f[2..], b"plain text"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_broadcast_in_each_dialect() {
        let data = json!(1);
        let e = Event::Broadcast {
            kind: "weather",
            data: &data,
        };
        let [p, w, j, l, s] = encode_all(&e);
        assert_eq!(text(&s), json!({"type":"weather","data":1}));
        assert_eq!(text(&p), json!({"type":"weather","data":1}));
        assert_eq!(text(&w)["event"], "weather");
        assert_eq!(text(&j), json!({"type":"weather","data":1}));
        assert_eq!(
            text(&l),
            json!({"type":"message","senderId":"server","data":1,"event":"weather"})
        );
    }
}
