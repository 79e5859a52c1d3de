//! The `wsdo` dialect (websockets.do, seed 001): every server frame is
//! `{"type":..,"payload":..,…,"clientID":<recipient>,"latency":<recipient's RTT ms>}`.
//!
//! The last two fields differ per recipient, so an event is encoded once as a *body*: the
//! object up to and including the comma before `"clientID"`. Each recipient's core appends
//! its own tail and a frame header ([`finish`]) as separate iovecs; the body is shared.

mod protocol;
mod session;

pub use protocol::{error_frame, Wsdo};

use crate::frame;
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

pub const CONNECTED: &str = "CONNECTED";
pub const DATA: &str = "DATA";
pub const PING: &str = "PING";
pub const ERROR: &str = "ERROR";
pub const PRESENCE_JOINED: &str = "PRESENCE:JOINED";
pub const PRESENCE_LEFT: &str = "PRESENCE:LEFT";
pub const PRESENCE_UPDATED: &str = "PRESENCE:UPDATED";
/// The seed's spelling, kept so that existing clients recognise it.
pub const ACK_RECEIVED: &str = "ACK-RECIEVED";

/// Error codes sent in `ERROR` payloads.
pub mod codes {
    pub const PING_TIMEOUT: &str = "PING_TIMEOUT";
    pub const INVALID_JSON: &str = "INVALID_JSON";
    pub const UNKNOWN_TYPE: &str = "UNKNOWN_TYPE";
    pub const INVALID_PAYLOAD: &str = "INVALID_PAYLOAD";
    pub const UNSUPPORTED_DATA: &str = "UNSUPPORTED_DATA";
    pub const INVALID_TOKEN: &str = "INVALID_TOKEN";
    pub const TOKEN_EXPIRED: &str = "TOKEN_EXPIRED";
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
}

#[derive(Serialize)]
struct Head<'a, T: Serialize + ?Sized> {
    #[serde(rename = "type")]
    kind: &'a str,
    payload: &'a T,
    #[serde(rename = "eventID", skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requires_ack: Option<bool>,
    /// Admin broadcasts: the broadcast's `type`.
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
}

/// Optional envelope fields of a `DATA` event.
#[derive(Default, Clone, Copy)]
pub struct Extra<'a> {
    pub event_id: Option<&'a str>,
    pub requires_ack: bool,
    pub event: Option<&'a str>,
}

/// `{"type":kind,"payload":payload,…,` — a body awaiting its recipient's tail.
pub fn body<T: Serialize + ?Sized>(kind: &str, payload: &T, extra: Extra<'_>) -> Bytes {
    let mut out = serde_json::to_vec(&Head {
        kind,
        payload,
        event_id: extra.event_id,
        requires_ack: extra.requires_ack.then_some(true),
        event: extra.event,
    })
    .expect("wsdo payloads serialize");
    let closing = out.pop();
    debug_assert_eq!(closing, Some(b'}'));
    out.push(b',');
    Bytes::from(out)
}

/// The recipient-specific pieces around a shared `body`: the frame header and the tail.
pub fn finish(body: &[u8], client_id: &str, latency_ms: u64) -> (Bytes, Bytes) {
    let tail = format!(
        "\"clientID\":{},\"latency\":{latency_ms}}}",
        json_string(client_id)
    );
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    let mut head = Vec::with_capacity(10);
    header
        .format((body.len() + tail.len()) as u64, &mut head)
        .expect("writing to a Vec cannot fail");
    (Bytes::from(head), Bytes::from(tail))
}

/// A complete frame for one recipient.
pub fn whole<T: Serialize + ?Sized>(
    kind: &str,
    payload: &T,
    client_id: &str,
    latency_ms: u64,
) -> Bytes {
    let mut text = body(kind, payload, Extra::default()).to_vec();
    let (_, tail) = finish(&text, client_id, latency_ms);
    text.extend_from_slice(&tail);
    frame::text(&text)
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

/// `ERROR` payload.
pub fn error_payload(code: &str, message: &str) -> Value {
    serde_json::json!({"message": message, "code": code})
}

/// A decoded client frame.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    /// `{"type":"PRESENCE","payload":{..}}` (type in any letter case): replace my presence.
    Presence(Map<String, Value>),
    /// `{"type":"PONG"}`: answer to `PING`.
    Pong,
    /// `{"type":"ACK","payload":{"eventID":..}}`.
    Ack(String),
}

/// Why a frame was refused: answered with an `ERROR` event, the connection stays open.
#[derive(Debug, PartialEq)]
pub struct DecodeError {
    pub code: &'static str,
    pub message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> DecodeError {
    DecodeError {
        code,
        message: message.into(),
    }
}

/// Decodes one text frame; `text` is scratch space (simd-json parses in place).
pub fn decode(text: &mut [u8]) -> Result<Inbound, DecodeError> {
    let value: Value = super::json::from_slice(text)
        .map_err(|e| refuse(codes::INVALID_JSON, format!("invalid JSON: {e}")))?;
    let Value::Object(mut object) = value else {
        return Err(refuse(
            codes::INVALID_JSON,
            "a message must be a JSON object",
        ));
    };
    let Some(Value::String(kind)) = object.remove("type") else {
        return Err(refuse(
            codes::INVALID_JSON,
            "a message needs a string \"type\"",
        ));
    };
    let payload = object.remove("payload").unwrap_or(Value::Null);
    match kind.to_ascii_lowercase().as_str() {
        "pong" => Ok(Inbound::Pong),
        "presence" => match payload {
            Value::Object(presence) => Ok(Inbound::Presence(presence)),
            Value::Null => Ok(Inbound::Presence(Map::new())),
            _ => Err(refuse(
                codes::INVALID_PAYLOAD,
                "PRESENCE payload must be an object",
            )),
        },
        "ack" => match payload.get("eventID") {
            Some(Value::String(id)) if !id.is_empty() => Ok(Inbound::Ack(id.clone())),
            _ => Err(refuse(
                codes::INVALID_PAYLOAD,
                "ACK payload must be {\"eventID\": \"evt_…\"}",
            )),
        },
        _ => {
            let mut shown = kind;
            shown.truncate(64);
            Err(refuse(
                codes::UNKNOWN_TYPE,
                format!("unknown message type {shown:?}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_whole(frame: &[u8]) -> Value {
        let start = if frame[1] == 126 { 4 } else { 2 };
        serde_json::from_slice(&frame[start..]).unwrap()
    }

    #[test]
    fn body_plus_tail_is_the_seed_envelope() {
        let b = body(
            DATA,
            &json!({"hello":"world"}),
            Extra {
                event_id: Some("evt_gPVZZQC5"),
                requires_ack: true,
                event: None,
            },
        );
        let (head, tail) = finish(&b, "client_fXoSDfqi", 0);
        let mut frame = head.to_vec();
        frame.extend_from_slice(&b);
        frame.extend_from_slice(&tail);
        assert_eq!(
            parse_whole(&frame),
            json!({"type":"DATA","payload":{"hello":"world"},"clientID":"client_fXoSDfqi",
                   "latency":0,"requires_ack":true,"eventID":"evt_gPVZZQC5"})
        );
        let announced = if head[1] == 126 {
            u16::from_be_bytes([head[2], head[3]]) as usize
        } else {
            head[1] as usize
        };
        assert_eq!(announced, b.len() + tail.len());
    }

    #[test]
    fn long_bodies_get_a_16_bit_length() {
        let b = body(DATA, &"x".repeat(500), Extra::default());
        let (head, tail) = finish(&b, "client_a", 12345);
        assert_eq!(head[1], 126);
        let len = u16::from_be_bytes([head[2], head[3]]) as usize;
        assert_eq!(len, b.len() + tail.len());
    }

    #[test]
    fn whole_frames_for_one_recipient() {
        let f = whole(PING, &json!({}), "client_x", 7);
        assert_eq!(
            parse_whole(&f),
            json!({"type":"PING","payload":{},"clientID":"client_x","latency":7})
        );
    }

    fn dec(s: &str) -> Result<Inbound, DecodeError> {
        decode(&mut s.as_bytes().to_vec())
    }

    #[test]
    fn client_messages_decode_case_insensitively() {
        assert_eq!(dec(r#"{"type":"PONG"}"#), Ok(Inbound::Pong));
        assert_eq!(dec(r#"{"type":"pong"}"#), Ok(Inbound::Pong));
        assert_eq!(
            dec(r#"{"type":"Presence","payload":{"username":"Cerulean"}}"#),
            Ok(Inbound::Presence(
                json!({"username":"Cerulean"}).as_object().unwrap().clone()
            ))
        );
        assert_eq!(
            dec(r#"{"type":"ACK","payload":{"eventID":"evt_gPVZZQC5"}}"#),
            Ok(Inbound::Ack("evt_gPVZZQC5".into()))
        );
    }

    #[test]
    fn bad_client_messages_are_refused() {
        assert_eq!(dec("nope").unwrap_err().code, codes::INVALID_JSON);
        assert_eq!(dec("[]").unwrap_err().code, codes::INVALID_JSON);
        assert_eq!(
            dec(r#"{"type":"HELLO"}"#).unwrap_err().code,
            codes::UNKNOWN_TYPE
        );
        assert_eq!(
            dec(r#"{"type":"PRESENCE","payload":5}"#).unwrap_err().code,
            codes::INVALID_PAYLOAD
        );
        assert_eq!(
            dec(r#"{"type":"ACK","payload":{}}"#).unwrap_err().code,
            codes::INVALID_PAYLOAD
        );
    }
}
