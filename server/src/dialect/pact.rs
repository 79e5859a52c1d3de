//! The `pact` dialect (seed 000 plus the native extensions of SPEC §2): decoding client
//! frames into [`Request`]s, and (in [`protocol`]) room events and replies as complete
//! WebSocket frames.

mod client_frame;
mod plain_chat;
mod protocol;
mod session;

pub use protocol::{history_page, room_details, Pact};

use crate::engine::subscriptions::Topic;
use crate::engine::{Payload, Request};
use crate::frame;
use bytes::Bytes;
use client_frame::ClientFrame;
use rookery_protocol::pact::{codes, types, ErrorData};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::str::FromStr;

/// Longest accepted subscription topic, poll id, answer or counter id, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Events a `history` request without a `limit` asks for (the history size caps it).
pub const DEFAULT_HISTORY_LIMIT: usize = 100;

/// A decoded client frame.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    /// Goes to the room owner.
    Request {
        reference: Option<Value>,
        request: Request,
    },
    /// `{"type":"close"}`: the client asks the server to close its socket.
    Close,
    /// Answer to the server's `ping`; liveness only.
    Pong,
    /// `{"type":"authenticate","data":{"ts":ms,"key":hex}}`: checked by the connection's
    /// core (it holds the signing key), then the owner grants the admin role.
    Authenticate {
        reference: Option<Value>,
        ts: i64,
        key: String,
    },
    /// `{"type":"refresh","data":{"token":".."}}`: a fresh token for the connection's user,
    /// checked by the connection's core.
    Refresh {
        reference: Option<Value>,
        token: String,
    },
}

/// Why a frame was refused; sent back as an `error` frame, the connection stays open.
#[derive(Debug, PartialEq)]
pub struct DecodeError {
    pub reference: Option<Value>,
    pub code: &'static str,
    pub message: String,
}

impl DecodeError {
    fn new(reference: &Option<Value>, code: &'static str, message: impl Into<String>) -> Self {
        DecodeError {
            reference: reference.clone(),
            code,
            message: message.into(),
        }
    }

    /// The error frame for this refusal.
    pub fn frame(&self) -> Bytes {
        error(self.reference.as_ref(), self.code, &self.message)
    }
}

/// Decodes one text frame. `text` is scratch space: simd-json parses in place. A plain chat
/// is read without the parser ([`plain_chat`]), the same as the parser reads it.
pub fn decode(text: &mut [u8]) -> Result<Inbound, DecodeError> {
    match plain_chat::decode(text) {
        Some(chat) => Ok(chat),
        None => decode_json(text),
    }
}

/// [`decode`] with the JSON parser, whatever the frame.
fn decode_json(text: &mut [u8]) -> Result<Inbound, DecodeError> {
    // simd-json reads numbers as f64, which would round a counter's value
    // (12345678901234567.89 → 12345678901234568): a frame that may be a counter keeps its
    // text, so the value can be read exactly from it.
    let original = may_be_counter(text).then(|| text.to_vec());
    let none = None;
    let frame: ClientFrame = super::json::from_slice(text)
        .map_err(|e| DecodeError::new(&none, codes::INVALID_JSON, format!("invalid JSON: {e}")))?;
    let ClientFrame::Object {
        kind,
        data,
        reference,
    } = frame
    else {
        return Err(DecodeError::new(
            &none,
            codes::INVALID_JSON,
            "a message must be a JSON object",
        ));
    };
    if let Some(r) = &reference {
        if !(r.is_string() || r.is_number()) {
            return Err(DecodeError::new(
                &None,
                codes::INVALID_DATA,
                "ref must be a string or a number",
            ));
        }
    }
    let Some(Some(kind)) = kind else {
        return Err(DecodeError::new(
            &reference,
            codes::INVALID_JSON,
            "a message needs a string \"type\"",
        ));
    };
    let request = match &*kind {
        types::CLOSE => return Ok(Inbound::Close),
        types::AUTHENTICATE => {
            let ts = data.get("ts").and_then(|t| {
                t.as_i64()
                    .or_else(|| t.as_str().and_then(|s| s.trim().parse().ok()))
            });
            let key = data.get("key").and_then(Value::as_str);
            return match (ts, key) {
                (Some(ts), Some(key)) => Ok(Inbound::Authenticate {
                    reference,
                    ts,
                    key: key.to_owned(),
                }),
                _ => Err(invalid(&reference, "authenticate data must be {ts, key}")),
            };
        }
        types::PONG => return Ok(Inbound::Pong),
        types::REFRESH => {
            return match data.get("token").and_then(Value::as_str) {
                Some(token) if !token.trim().is_empty() => Ok(Inbound::Refresh {
                    reference,
                    token: token.to_owned(),
                }),
                _ => Err(invalid(
                    &reference,
                    "refresh data must be {\"token\": \"<a JWT>\"}",
                )),
            }
        }
        types::PING => Request::Ping,
        types::PROFILE => Request::Profile,
        types::LOGIN => match data {
            Value::Null => Request::Login(Map::new()),
            Value::Object(props) => Request::Login(props),
            _ => return Err(invalid(&reference, "login data must be an object")),
        },
        types::SUBSCRIBE | types::UNSUBSCRIBE => {
            let topic = match &data {
                Value::String(t) if !t.is_empty() && t.len() <= MAX_NAME_LEN => Topic::parse(t),
                _ => {
                    return Err(invalid(
                        &reference,
                        "subscribe data must be a non-empty string \"type\" or \"type:id\"",
                    ))
                }
            };
            if kind == types::SUBSCRIBE {
                Request::Subscribe(topic)
            } else {
                Request::Unsubscribe(topic)
            }
        }
        types::CHAT => Request::Chat(data),
        types::ACK => match data.get("eventID") {
            Some(Value::String(id)) if !id.is_empty() => Request::Ack(id.clone()),
            _ => {
                return Err(invalid(
                    &reference,
                    "ack data must be {\"eventID\": \"evt_…\"}",
                ))
            }
        },
        types::POLL | types::EPHEMERAL_POLL => {
            let Value::Object(vote) = data else {
                return Err(invalid(&reference, "poll data must be {id, answer}"));
            };
            let poll = name(vote.get("id"))
                .ok_or_else(|| invalid(&reference, "poll id must be a non-empty string"))?;
            let answer = name(vote.get("answer")).ok_or_else(|| {
                invalid(
                    &reference,
                    "poll answer must be a non-empty string or number",
                )
            })?;
            Request::Vote {
                ephemeral: kind == types::EPHEMERAL_POLL,
                poll,
                answer,
            }
        }
        types::COUNTER => {
            let (counter, delta) = match &data {
                Value::Null => ("default".to_owned(), Decimal::ONE),
                Value::Object(change) => {
                    let counter = match change.get("id") {
                        None | Some(Value::Null) => "default".to_owned(),
                        Some(Value::String(s)) if s.is_empty() => "default".to_owned(),
                        id => name(id)
                            .ok_or_else(|| invalid(&reference, "counter id must be a string"))?,
                    };
                    let delta = match change.get("value") {
                        None | Some(Value::Null) => Decimal::ONE,
                        Some(Value::Number(_)) => original
                            .as_deref()
                            .and_then(counter_value_text)
                            .and_then(|text| decimal_text(&text))
                            .ok_or_else(|| {
                                invalid(
                                    &reference,
                                    "counter value must be a number or numeric string",
                                )
                            })?,
                        Some(value) => decimal(value).ok_or_else(|| {
                            invalid(
                                &reference,
                                "counter value must be a number or numeric string",
                            )
                        })?,
                    };
                    (counter, delta)
                }
                _ => return Err(invalid(&reference, "counter data must be {id?, value?}")),
            };
            Request::Counter { counter, delta }
        }
        types::RESUME => {
            let epoch = data.get("epoch").and_then(Value::as_str);
            let seq = data.get("seq").and_then(Value::as_u64);
            match (epoch, seq) {
                (Some(epoch), Some(seq)) if !epoch.is_empty() && epoch.len() <= MAX_NAME_LEN => {
                    Request::Resume {
                        epoch: epoch.to_owned(),
                        seq,
                    }
                }
                _ => {
                    return Err(invalid(
                        &reference,
                        "resume data must be {\"epoch\": string, \"seq\": non-negative integer}",
                    ))
                }
            }
        }
        types::HISTORY => {
            let field = |name: &str| match data.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(value) => value.as_u64().map(Some).ok_or(()),
            };
            match (&data, field("limit"), field("before")) {
                (Value::Null | Value::Object(_), Ok(limit), Ok(before)) => Request::History {
                    limit: limit.map_or(DEFAULT_HISTORY_LIMIT, |l| {
                        usize::try_from(l).unwrap_or(usize::MAX)
                    }),
                    before,
                },
                _ => {
                    return Err(invalid(
                        &reference,
                        "history data must be {\"limit\"?: non-negative integer, \"before\"?: seq}",
                    ))
                }
            }
        }
        types::CONFIG => Request::Config(match data {
            Value::String(s) => s,
            other => other.to_string(),
        }),
        types::BROADCAST => {
            let Value::Object(mut b) = data else {
                return Err(invalid(
                    &reference,
                    "broadcast data must be {type, data, to?}",
                ));
            };
            let Some(Value::String(kind)) = b.remove("type") else {
                return Err(invalid(&reference, "broadcast needs a string type"));
            };
            let to = match b.remove("to") {
                None | Some(Value::Null) => None,
                Some(Value::String(to)) => Some(to),
                _ => return Err(invalid(&reference, "broadcast to must be a string")),
            };
            Request::Broadcast {
                to,
                kind,
                data: b.remove("data").unwrap_or(Value::Null),
            }
        }
        other => {
            let mut shown = other.to_owned();
            shown.truncate(64);
            return Err(DecodeError::new(
                &reference,
                codes::UNKNOWN_TYPE,
                format!("unknown message type {shown:?}"),
            ));
        }
    };
    Ok(Inbound::Request { reference, request })
}

fn invalid(reference: &Option<Value>, message: &str) -> DecodeError {
    DecodeError::new(reference, codes::INVALID_DATA, message)
}

/// A poll id, answer or counter id: a non-empty string, or a number or bool as its text.
fn name(value: Option<&Value>) -> Option<String> {
    let text = match value? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!text.is_empty() && text.len() <= MAX_NAME_LEN).then_some(text)
}

/// An exact decimal from a numeric string (a number is read from the frame's text, see
/// [`counter_value_text`]).
fn decimal(value: &Value) -> Option<Decimal> {
    match value {
        Value::String(s) => decimal_text(s.trim()),
        _ => None,
    }
}

/// An exact decimal from its text: plain (`-15.14`) or scientific (`1.5e3`).
fn decimal_text(text: &str) -> Option<Decimal> {
    Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .ok()
}

/// Whether a frame may be a `counter` (then its text is kept for an exact value). The
/// searcher is built once: `memmem::find` builds one per call, which was ~1 % of a W3 core.
fn may_be_counter(text: &[u8]) -> bool {
    static COUNTER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"counter\""));
    COUNTER.find(text).is_some()
}

/// The text of `data.value` in a counter frame, exactly as the client wrote it.
fn counter_value_text(frame: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Frame<'a> {
        #[serde(borrow)]
        data: Option<Data<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Data<'a> {
        #[serde(borrow)]
        value: Option<&'a RawValue>,
    }
    let frame: Frame<'_> = serde_json::from_slice(frame).ok()?;
    Some(frame.data?.value?.get().to_owned())
}

/// A decimal as a JSON number, written exactly (no binary floating point on the way).
pub fn decimal_number(value: Decimal) -> Box<RawValue> {
    RawValue::from_string(value.normalize().to_string()).expect("a decimal is a JSON number")
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize + ?Sized> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a T>,
    /// The event's place in its room's stream (lasting events only, SPEC §5.3).
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

/// `{"type": kind, "ref"?: reference, "data": data}` as a complete text frame.
pub fn encode<T: Serialize + ?Sized>(kind: &str, reference: Option<&Value>, data: &T) -> Bytes {
    frame::text(&payload(kind, reference, data, None))
}

/// `{"type": kind, "ref"?: reference, "data": data, "seq"?: seq}` as JSON text.
pub fn payload<T: Serialize + ?Sized>(
    kind: &str,
    reference: Option<&Value>,
    data: &T,
    seq: Option<u64>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_payload(kind, reference, data, seq, &mut out);
    out
}

/// [`payload`], appended to `out`.
pub fn write_payload<T: Serialize + ?Sized>(
    kind: &str,
    reference: Option<&Value>,
    data: &T,
    seq: Option<u64>,
    out: &mut Vec<u8>,
) {
    let envelope = Envelope {
        kind,
        reference,
        data: Some(data),
        seq,
    };
    serde_json::to_writer(out, &envelope).expect("event data serializes")
}

#[derive(Serialize)]
struct Emit<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: &'a Payload,
    #[serde(rename = "eventID")]
    event_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    requires_ack: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

/// An emit as Pact members see it: `{"type":"broadcast","data":payload,"eventID":..}`, with
/// `"requires_ack":true` when the emitter waits for acks (answered with `ack`), as JSON
/// text appended to `out`.
pub fn write_emit(
    payload: &Payload,
    event_id: &str,
    require_ack: bool,
    seq: Option<u64>,
    out: &mut Vec<u8>,
) {
    let emit = Emit {
        kind: types::BROADCAST,
        data: payload,
        event_id,
        requires_ack: require_ack.then_some(true),
        seq,
    };
    serde_json::to_writer(out, &emit).expect("emits serialize")
}

/// `{"type":"ok","ref":..}`: the request was applied.
pub fn ok(reference: &Value) -> Bytes {
    let payload = serde_json::to_vec(&Envelope::<()> {
        kind: types::OK,
        reference: Some(reference),
        data: None,
        seq: None,
    })
    .expect("ok serializes");
    frame::text(&payload)
}

/// `{"type":"error","ref"?:..,"data":{"code":..,"message":..}}`.
pub fn error(reference: Option<&Value>, code: &str, message: &str) -> Bytes {
    let data = ErrorData {
        code: code.to_owned(),
        message: message.to_owned(),
    };
    encode(types::ERROR, reference, &data)
}

/// The server heartbeat, `{"type":"ping","data":<epoch ms>}` (Pact's keepalive).
pub fn ping(epoch_ms: u64) -> Bytes {
    encode(types::PING, None, &epoch_ms)
}

#[cfg(test)]
mod tests;
