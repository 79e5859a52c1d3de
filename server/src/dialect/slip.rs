//! The `slip` dialect (SLIP Sockets, seed 003, seed-era wire format): the server tells a
//! backend about each connection's events in HTTP POSTs and carries out the events the
//! backend answers with. A control API lets the backend act on its own.

mod protocol;
mod session;

pub use protocol::Slip;

pub use session::{apply, backend_request};

use crate::backend::{BackendError, BackendResponse};
use crate::engine::{Reply, RoomEvent, Sequenced};
use crate::frame;
use crate::http::Request;
use crate::ids::random_token;
use bytes::Bytes;
use serde_json::{json, Map, Value};

/// The content type of requests to the backend (the body is JSON, not GRIP's framing).
pub const CONTENT_TYPE: &str = "application/websocket-events";
pub const ISSUER: &str = "slip-sockets";
pub const AUD_TO_BACKEND: &str = "WebSocketEvent";
pub const AUD_CONTROL: &str = "ControlEvent";

/// An event from the backend (in its answer, or through the control API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendEvent {
    Accept,
    Disconnect,
    /// Text for the connection (in an answer) or the channel (control API).
    Text(String),
    /// Join the channel.
    Subscribe(String),
    /// Leave the channel.
    Unsubscribe(String),
}

/// `[{"type":"OPEN","headers":{…}}]`.
pub fn open_body(headers: &[(String, Vec<u8>)]) -> Vec<u8> {
    let headers: Map<String, Value> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                Value::String(String::from_utf8_lossy(v).into_owned()),
            )
        })
        .collect();
    json!([{"type": "OPEN", "headers": headers}])
        .to_string()
        .into_bytes()
}

/// `[{"type":"TEXT","data":"…"}]`.
pub fn text_body(data: &str) -> Vec<u8> {
    json!([{"type": "TEXT", "data": data}])
        .to_string()
        .into_bytes()
}

/// `[{"type":"CLOSE"}]`.
pub fn close_body() -> Vec<u8> {
    br#"[{"type":"CLOSE"}]"#.to_vec()
}

fn event(value: &Value) -> Option<BackendEvent> {
    let object = value.as_object()?;
    let string = |key: &str| object.get(key).and_then(Value::as_str).map(str::to_owned);
    match object.get("type")?.as_str()? {
        "ACCEPT" => Some(BackendEvent::Accept),
        "DISCONNECT" => Some(BackendEvent::Disconnect),
        "TEXT" => string("data").map(BackendEvent::Text),
        "SUBSCRIBE" => string("target")
            .filter(|t| !t.is_empty())
            .map(BackendEvent::Subscribe),
        "UNSUBSCRIBE" => string("target")
            .filter(|t| !t.is_empty())
            .map(BackendEvent::Unsubscribe),
        _ => None,
    }
}

/// The backend's answer: a JSON array of events. Any unknown or malformed event makes the
/// whole answer invalid (the seed's "invalid commands").
pub fn parse_events(body: &[u8]) -> Option<Vec<BackendEvent>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(Vec::new());
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    value.as_array()?.iter().map(event).collect()
}

/// One control API command: `{target, event}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlCommand {
    /// A channel (for `TEXT`) or a connection id (for the others).
    pub target: String,
    pub event: BackendEvent,
}

/// The control API body: a JSON array of `{target, event}`.
pub fn parse_control(body: &[u8]) -> Option<Vec<ControlCommand>> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value
        .as_array()?
        .iter()
        .map(|c| {
            let target = c.get("target")?.as_str()?.to_owned();
            let event = event(c.get("event")?)?;
            (!target.is_empty() && event != BackendEvent::Accept)
                .then_some(ControlCommand { target, event })
        })
        .collect()
}

/// A text frame with exactly `text`.
pub fn text_frame(text: &str) -> Bytes {
    frame::text(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_answers_parse_or_are_invalid_as_a_whole() {
        assert_eq!(
            parse_events(br#"[{"type":"ACCEPT"},{"type":"SUBSCRIBE","target":"c"},{"type":"TEXT","data":"hi"}]"#),
            Some(vec![
                BackendEvent::Accept,
                BackendEvent::Subscribe("c".into()),
                BackendEvent::Text("hi".into())
            ])
        );
        assert_eq!(parse_events(b""), Some(vec![]));
        assert_eq!(parse_events(b"[]"), Some(vec![]));
        assert_eq!(parse_events(b"{}"), None);
        assert_eq!(parse_events(br#"[{"type":"TEXT","data":5}]"#), None);
        assert_eq!(parse_events(br#"[{"type":"SUBSCRIBE"}]"#), None);
        assert_eq!(parse_events(br#"[{"type":"DANCE"}]"#), None);
        assert_eq!(parse_events(b"not json"), None);
    }

    #[test]
    fn control_commands() {
        assert_eq!(
            parse_control(br#"[{"target":"chan","event":{"type":"TEXT","data":"x"}},{"target":"conn1","event":{"type":"DISCONNECT"}}]"#),
            Some(vec![
                ControlCommand {
                    target: "chan".into(),
                    event: BackendEvent::Text("x".into())
                },
                ControlCommand {
                    target: "conn1".into(),
                    event: BackendEvent::Disconnect
                }
            ])
        );
        assert_eq!(parse_control(br#"[{"event":{"type":"DISCONNECT"}}]"#), None);
        assert_eq!(
            parse_control(br#"[{"target":"c","event":{"type":"ACCEPT"}}]"#),
            None
        );
        assert_eq!(parse_control(b"{}"), None);
    }

    #[test]
    fn request_bodies() {
        let open = open_body(&[("Sec-WebSocket-Protocol".into(), b"chat".to_vec())]);
        let v: Value = serde_json::from_slice(&open).unwrap();
        assert_eq!(
            v,
            json!([{"type":"OPEN","headers":{"sec-websocket-protocol":"chat"}}])
        );
        let v: Value = serde_json::from_slice(&text_body("a\"b")).unwrap();
        assert_eq!(v, json!([{"type":"TEXT","data":"a\"b"}]));
        assert_eq!(close_body(), br#"[{"type":"CLOSE"}]"#);
    }
}
