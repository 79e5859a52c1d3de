//! Room events and replies as Pact frames (`{"type":..,"ref"?:..,"data":..}`).

use super::{decimal_number, encode, error, ok, ping, write_emit, write_payload};
use crate::dialect::session::{Actions, Session};
use crate::dialect::{Peer, Refusal, Wire};
use crate::engine::room::poll_topic;
use crate::engine::{
    ErrorCode, Payload, Position, PresenceChange, Reply, RoomDetails, RoomEvent, Sequenced,
};
use crate::http::Request;
use bytes::{Bytes, BytesMut};
use rookery_protocol::pact::{codes, types, Member, Pos, PublicUser, Resumed};
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// The `pact` protocol.
pub struct Pact;

impl crate::dialect::Protocol for Pact {
    /// `GET /websocket?room=R` (the room `default` without one).
    fn endpoint(&self, segments: &[&str], req: &Request, _now_ms: u64) -> Option<Option<String>> {
        let room = req.query_param("room").filter(|r| !r.is_empty());
        matches!(segments, ["websocket"]).then(|| Some(room.unwrap_or("default").to_owned()))
    }

    fn on_text(&self, session: &Session<'_>, text: &mut [u8], out: &mut Actions) {
        super::session::on_text(session, text, out);
    }

    /// An authenticated user's id, or a fresh UUID.
    fn new_public_id(&self, user: Option<&str>, _now_ms: u64) -> String {
        user.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
    }

    /// `{"type":"error","data":{"code":"token_expired",..}}`; the client answers with
    /// `refresh`.
    fn token_expired(&self, _peer: &Peer<'_>, grace_ms: u64) -> Option<Bytes> {
        let how = "send {\"type\":\"refresh\",\"data\":{\"token\":\"..\"}}";
        let message = crate::dialect::token_expired_message(grace_ms, how);
        Some(error(None, codes::TOKEN_EXPIRED, &message))
    }

    fn refusal(&self, refusal: Refusal, _peer: &Peer<'_>) -> Option<Bytes> {
        Some(match refusal {
            Refusal::Binary => error(
                None,
                codes::UNSUPPORTED_DATA,
                "frames are JSON text; binary frames are not accepted",
            ),
            Refusal::RateLimited => error(
                None,
                codes::RATE_LIMITED,
                "too many messages: slow down (this one was dropped)",
            ),
        })
    }

    /// A protocol ping and Pact's own `{"type":"ping","data":<epoch ms>}`.
    fn ping(&self, now_ms: u64, _peer: &Peer<'_>) -> Vec<Bytes> {
        vec![crate::frame::ping(&now_ms.to_be_bytes()), ping(now_ms)]
    }

    fn event(&self, event: &Sequenced) -> Option<Wire> {
        let seq = event.position.as_ref().map(|p| p.seq);
        let frame = crate::frame::text_from(|out| write_event(&event.event, seq, out));
        Some(Wire::Frame(frame))
    }

    fn reply(&self, reply: &Reply) -> Option<Wire> {
        let frame = match reply {
            Reply::Ok { reference } => ok(reference),
            Reply::Error {
                reference,
                code,
                message,
            } => error(reference.as_ref(), code_name(*code), message),
            Reply::Profile { reference, profile } => {
                encode(types::PROFILE, reference.as_ref(), profile)
            }
            Reply::Resumed {
                reference,
                recovered,
                missed,
                pos,
            } => {
                let data = Resumed {
                    recovered: *recovered,
                    missed: *missed,
                    pos: wire_pos(pos),
                };
                encode(types::RESUMED, reference.as_ref(), &data)
            }
            Reply::History {
                reference,
                events,
                pos,
            } => {
                let data = HistoryData {
                    events: events_json(events),
                    pos: wire_pos(pos),
                };
                encode(types::HISTORY, reference.as_ref(), &data)
            }
            Reply::Welcome {
                config, profile, ..
            } => {
                // The config, then the profile: two frames, queued together.
                let mut both = BytesMut::from(&encode(types::CONFIG, None, config)[..]);
                both.extend_from_slice(&encode(types::PROFILE, None, profile));
                both.freeze()
            }
            Reply::TokenRefused { reason } => error(None, codes::INVALID_TOKEN, reason),
            Reply::Snapshot(event) => crate::frame::text_from(|out| write_event(event, None, out)),
            Reply::Presence(snapshot) => encode(types::PRESENCE, None, snapshot),
            // A Pact member over the room limit is closed; publishes and acks answer `ok`
            // through `ref` instead.
            Reply::JoinRefused { .. } | Reply::Published | Reply::AckReceived { .. } => {
                return None
            }
        };
        Some(Wire::Frame(frame))
    }
}

/// The Pact error code for an engine refusal.
fn code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::RateLimited => codes::RATE_LIMITED,
        ErrorCode::LimitExceeded => codes::LIMIT_EXCEEDED,
        ErrorCode::InvalidData => codes::INVALID_DATA,
        ErrorCode::Forbidden => codes::FORBIDDEN,
        ErrorCode::Unavailable => codes::UNAVAILABLE,
    }
}

#[derive(Serialize)]
struct Tally<'a> {
    id: &'a str,
    stats: &'a BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct Counter<'a> {
    id: &'a str,
    value: Box<RawValue>,
}

#[derive(Serialize)]
struct Diff<'a> {
    member: &'a Member,
    count: usize,
}

#[derive(Serialize)]
struct HistoryData {
    events: Vec<Box<RawValue>>,
    pos: Pos,
}

#[derive(Serialize)]
struct Broadcast<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: &'a Payload,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

/// Events as the JSON their members received, for a page of history.
fn events_json(events: &[Sequenced]) -> Vec<Box<RawValue>> {
    events
        .iter()
        .map(|e| {
            let json = String::from_utf8(event_json(e)).expect("JSON is UTF-8");
            RawValue::from_string(json).expect("an event is JSON")
        })
        .collect()
}

/// A position as the wire carries it.
fn wire_pos(position: &Position) -> Pos {
    Pos {
        epoch: position.epoch.to_string(),
        seq: position.seq,
    }
}

/// A room event as the JSON its subscribers receive, with its `seq` when it lasts.
fn event_json(event: &Sequenced) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_event(
        &event.event,
        event.position.as_ref().map(|p| p.seq),
        &mut out,
    );
    out
}

/// `{"type":"chat","data":{"message":..,"user":..},"seq":..}`, written directly rather than
/// through `serde_json` (the same bytes as `serde_json` writes: `chat_tests` compares the two): chat is most of what
/// rooms carry, and the serializer's field-by-field calls and its escaping of the message
/// were a third of the instructions a W3 core spent encoding (callgrind).
fn write_chat(message: &Payload, user: &PublicUser, seq: Option<u64>, out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"type":"chat","data":{"message":"#);
    message.write_json(out);
    out.extend_from_slice(br#","user":{"suffix":"#);
    out.extend_from_slice(itoa::Buffer::new().format(user.suffix).as_bytes());
    out.extend_from_slice(br#","properties":"#);
    if user.properties.is_empty() {
        out.extend_from_slice(b"{}");
    } else {
        serde_json::to_writer(&mut *out, &user.properties).expect("properties serialize");
    }
    out.extend_from_slice(b"}}");
    if let Some(seq) = seq {
        out.extend_from_slice(br#","seq":"#);
        out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    }
    out.push(b'}');
}

/// A room event's Pact JSON, with `seq` if given (a snapshot of state has none), appended
/// to `out`.
fn write_event(event: &RoomEvent, seq: Option<u64>, out: &mut Vec<u8>) {
    match event {
        RoomEvent::Chat { message, user } => write_chat(message, user, seq, out),
        RoomEvent::Poll { kind, id, stats } => {
            write_payload(poll_topic(*kind), None, &Tally { id, stats }, seq, out)
        }
        RoomEvent::Counter { id, value } => {
            let value = decimal_number(*value);
            write_payload(types::COUNTER, None, &Counter { id, value }, seq, out)
        }
        RoomEvent::Config { config } => write_payload(types::CONFIG, None, config, seq, out),
        RoomEvent::Broadcast { kind, data } => {
            let broadcast = Broadcast { kind, data, seq };
            serde_json::to_writer(out, &broadcast).expect("broadcasts serialize")
        }
        RoomEvent::Publish {
            data,
            event_id,
            requires_ack,
            ..
        } => write_emit(data, event_id, *requires_ack, seq, out),
        RoomEvent::Presence {
            change,
            member,
            count,
        } => {
            let kind = match change {
                PresenceChange::Joined => types::PRESENCE_JOINED,
                PresenceChange::Left => types::PRESENCE_LEFT,
                PresenceChange::Updated => types::PRESENCE_UPDATED,
            };
            let diff = Diff {
                member,
                count: *count,
            };
            write_payload(kind, None, &diff, None, out)
        }
    }
}

/// The body of `GET /api/rooms/:room/history`: the events as Pact members received them
/// (each with its `seq`), oldest first, and the room's position (`null` for a room the
/// store knows nothing of).
pub fn history_page(events: &[Sequenced], pos: Option<&Position>) -> String {
    let events = events_json(events);
    #[derive(Serialize)]
    struct Body {
        events: Vec<Box<RawValue>>,
        pos: Option<Pos>,
    }
    let body = Body {
        events,
        pos: pos.map(wire_pos),
    };
    serde_json::to_string(&body).expect("a page serializes")
}

/// The body of `GET /api/rooms/:room`: Pact-style room details, counters exact.
pub fn room_details(details: &RoomDetails) -> String {
    #[derive(Serialize)]
    struct Body<'a> {
        room: &'a str,
        count: usize,
        members: &'a [Member],
        polls: &'a BTreeMap<String, BTreeMap<String, u64>>,
        #[serde(rename = "ephemeralPolls")]
        ephemeral_polls: &'a BTreeMap<String, BTreeMap<String, u64>>,
        counters: BTreeMap<&'a str, Box<RawValue>>,
        config: &'a str,
    }
    let body = Body {
        room: &details.room,
        count: details.count,
        members: &details.members,
        polls: &details.polls,
        ephemeral_polls: &details.ephemeral_polls,
        counters: details
            .counters
            .iter()
            .map(|(id, v)| (id.as_str(), decimal_number(*v)))
            .collect(),
        config: &details.config,
    };
    serde_json::to_string(&body).expect("details serialize")
}

#[cfg(test)]
mod chat_tests {
    use super::*;
    use serde_json::json;

    /// The chat event as `serde_json` writes it: what `write_chat` replaced.
    #[derive(Serialize)]
    struct Chat<'a> {
        message: &'a Payload,
        user: &'a PublicUser,
    }

    #[test]
    fn a_chat_written_by_hand_is_what_serde_json_writes() {
        let mut properties = serde_json::Map::new();
        properties.insert("name".into(), json!("Zoë \"z\""));
        properties.insert("tags".into(), json!([1, {"a": null}]));
        let users = [
            PublicUser {
                suffix: 0,
                properties: serde_json::Map::new(),
            },
            PublicUser {
                suffix: u64::MAX,
                properties,
            },
        ];
        let messages = [
            json!("T1700000000000:xxxxxxxx"),
            json!("a \"quoted\" line\nand a tab\t\u{1}"),
            json!({"text": "hi", "n": [1, 2.5]}),
            json!(null),
        ];
        for user in &users {
            for message in &messages {
                for seq in [None, Some(0), Some(18_446_744_073_709_551_615)] {
                    let message = Payload::new(message.clone());
                    let mut by_hand = Vec::new();
                    write_chat(&message, user, seq, &mut by_hand);
                    let mut by_serde = Vec::new();
                    let chat = Chat {
                        message: &message,
                        user,
                    };
                    write_payload(types::CHAT, None, &chat, seq, &mut by_serde);
                    assert_eq!(
                        String::from_utf8(by_hand).unwrap(),
                        String::from_utf8(by_serde).unwrap()
                    );
                }
            }
        }
    }
}
