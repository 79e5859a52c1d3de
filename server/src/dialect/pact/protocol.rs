//! Room events and replies as Pact frames (`{"type":..,"ref"?:..,"data":..}`).

use super::{decimal_number, encode, encode_emit, error, ok, ping};
use crate::dialect::session::{Actions, Session};
use crate::dialect::{Peer, Refusal, Typed, Wire};
use crate::engine::room::poll_topic;
use crate::engine::{ErrorCode, PresenceChange, Reply, RoomDetails, RoomEvent, Sequenced};
use crate::http::Request;
use bytes::{Bytes, BytesMut};
use rookery_protocol::pact::{codes, types, Member, PublicUser};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
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
        Some(Wire::Frame(event_frame(&event.event)))
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
            Reply::Welcome {
                config, profile, ..
            } => {
                // The config, then the profile: two frames, queued together.
                let mut both = BytesMut::from(&encode(types::CONFIG, None, config)[..]);
                both.extend_from_slice(&encode(types::PROFILE, None, profile));
                both.freeze()
            }
            Reply::TokenRefused { reason } => error(None, codes::INVALID_TOKEN, reason),
            Reply::Snapshot(event) => event_frame(event),
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
    }
}

#[derive(Serialize)]
struct Chat<'a> {
    message: &'a Value,
    user: &'a PublicUser,
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

/// A room event as the complete Pact frame its subscribers receive.
fn event_frame(event: &RoomEvent) -> Bytes {
    match event {
        RoomEvent::Chat { message, user } => encode(types::CHAT, None, &Chat { message, user }),
        RoomEvent::Poll { kind, id, stats } => {
            encode(poll_topic(*kind), None, &Tally { id, stats })
        }
        RoomEvent::Counter { id, value } => {
            let value = decimal_number(*value);
            encode(types::COUNTER, None, &Counter { id, value })
        }
        RoomEvent::Config { config } => encode(types::CONFIG, None, config),
        RoomEvent::Broadcast { kind, data } => crate::frame::text(
            &serde_json::to_vec(&Typed { kind, data }).expect("broadcasts serialize"),
        ),
        RoomEvent::Publish {
            data,
            event_id,
            requires_ack,
            ..
        } => encode_emit(data, event_id, *requires_ack),
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
            encode(
                kind,
                None,
                &Diff {
                    member,
                    count: *count,
                },
            )
        }
    }
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
