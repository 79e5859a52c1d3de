//! The `lambda` dialect (the Websocket Lambda Channel Server, seed 004): `join` a channel,
//! `publish` to it, `ping`.

mod protocol;
mod session;

pub use protocol::Lambda;

use crate::engine::{Payload, Reply, RoomEvent, Sequenced, Traits};
use crate::frame;
use crate::http::Request;
use crate::ids::random_token;
use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};

/// A decoded client message.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    /// `join` with a valid channel id (a non-empty string).
    Join(String),
    /// `join` with a missing, non-string or empty `channelId`: answered `joinFailure`.
    BadJoin,
    Publish(Value),
    Ping(Option<Value>),
}

/// Why a frame was refused: answered with `{"type":"error","data":reason}`.
pub type DecodeError = String;

/// Longest accepted channel id, in bytes.
pub const MAX_CHANNEL_LEN: usize = 256;

/// Decodes one text frame; `text` is scratch space (simd-json parses in place).
pub fn decode(text: &mut [u8]) -> Result<Inbound, DecodeError> {
    let value: Value = super::json::from_slice(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(mut message) = value else {
        return Err("a message must be a JSON object".into());
    };
    match message.remove("type") {
        Some(Value::String(kind)) => match kind.as_str() {
            "join" => Ok(match message.remove("channelId") {
                Some(Value::String(c)) if !c.is_empty() && c.len() <= MAX_CHANNEL_LEN => {
                    Inbound::Join(c)
                }
                _ => Inbound::BadJoin,
            }),
            "publish" => Ok(Inbound::Publish(
                message.remove("data").unwrap_or(Value::Null),
            )),
            "ping" => Ok(Inbound::Ping(message.remove("data"))),
            other => {
                let mut shown = other.to_owned();
                shown.truncate(64);
                Err(format!(
                    "unknown message type {shown:?}: expected join, publish or ping"
                ))
            }
        },
        _ => Err("a message needs a string \"type\"".into()),
    }
}

fn encode(v: Value) -> Bytes {
    frame::text(v.to_string().as_bytes())
}

pub fn join_success() -> Bytes {
    encode(json!({"type": "joinSuccess"}))
}

pub fn join_failure() -> Bytes {
    encode(json!({"type": "joinFailure"}))
}

pub fn publish_success() -> Bytes {
    encode(json!({"type": "publishSuccess"}))
}

pub fn publish_failure(reason: &str) -> Bytes {
    encode(json!({"type": "publishFailure", "data": reason}))
}

/// `{"type":"pong","data":..}` echoing the ping's data (no `data` when the ping had none).
pub fn pong(data: Option<Value>) -> Bytes {
    match data {
        Some(data) => encode(json!({"type": "pong", "data": data})),
        None => encode(json!({"type": "pong"})),
    }
}

/// An extension: bad input is reported rather than dropped.
pub fn error(reason: &str) -> Bytes {
    encode(json!({"type": "error", "data": reason}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Result<Inbound, DecodeError> {
        decode(&mut s.as_bytes().to_vec())
    }

    #[test]
    fn seed_messages_decode() {
        assert_eq!(
            dec(r#"{"type":"join","channelId":"c1"}"#),
            Ok(Inbound::Join("c1".into()))
        );
        assert_eq!(
            dec(r#"{"type":"join","channelId":""}"#),
            Ok(Inbound::BadJoin)
        );
        assert_eq!(
            dec(r#"{"type":"join","channelId":5}"#),
            Ok(Inbound::BadJoin)
        );
        assert_eq!(dec(r#"{"type":"join"}"#), Ok(Inbound::BadJoin));
        assert_eq!(
            dec(r#"{"type":"publish","data":{"a":1}}"#),
            Ok(Inbound::Publish(json!({"a":1})))
        );
        assert_eq!(dec(r#"{"type":"ping"}"#), Ok(Inbound::Ping(None)));
        assert_eq!(
            dec(r#"{"type":"ping","data":7}"#),
            Ok(Inbound::Ping(Some(json!(7))))
        );
        assert!(dec("nope").is_err());
        assert!(dec(r#"{"type":"leave"}"#).is_err());
        assert!(dec(r#"{"channelId":"x"}"#).is_err());
    }

    #[test]
    fn pong_echoes_data() {
        assert_eq!(
            &pong(Some(json!({"t":1})))[2..],
            br#"{"data":{"t":1},"type":"pong"}"#
        );
        assert_eq!(&pong(None)[2..], br#"{"type":"pong"}"#);
    }
}
