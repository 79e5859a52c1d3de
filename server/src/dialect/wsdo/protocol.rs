//! Room events and replies as websockets.do bodies, each finished per recipient.

use super::{body, codes, error_payload, finish, whole, Extra, PING};
use super::{
    ACK_RECEIVED, CONNECTED, DATA, ERROR, PRESENCE_JOINED, PRESENCE_LEFT, PRESENCE_UPDATED,
};
use crate::dialect::session::{Actions, Session};
use crate::dialect::Wire;
use crate::dialect::{Peer, Refusal};
use crate::engine::{ErrorCode, PresenceChange, Reply, RoomEvent, Sequenced, Traits};
use crate::http::Request;
use crate::ids::random_token;
use bytes::Bytes;
use rookery_protocol::pact::Member;
use serde_json::{json, Value};

/// The `wsdo` protocol.
pub struct Wsdo;

impl crate::dialect::Protocol for Wsdo {
    /// `GET /:channel/listen`.
    fn endpoint(&self, segments: &[&str], _req: &Request, _now_ms: u64) -> Option<Option<String>> {
        match segments {
            [channel, "listen"] => Some(Some((*channel).to_owned())),
            _ => None,
        }
    }

    fn on_text(&self, session: &Session<'_>, text: &mut [u8], out: &mut Actions) {
        super::session::on_text(session, text, out);
    }

    /// websockets.do shows every member every presence change, and lists the room in
    /// `CONNECTED`.
    fn traits(&self) -> Traits {
        Traits {
            always_sees_presence: true,
            greeted_with_members: true,
            stays_when_refused: false,
        }
    }

    fn new_public_id(&self, _user: Option<&str>, _now_ms: u64) -> String {
        format!("client_{}", random_token(8))
    }

    fn refusal(&self, refusal: Refusal, peer: &Peer<'_>) -> Option<Bytes> {
        let (code, message) = match refusal {
            Refusal::Binary => (
                codes::UNSUPPORTED_DATA,
                "frames are JSON text; binary frames are not accepted",
            ),
            Refusal::RateLimited => (
                codes::RATE_LIMITED,
                "too many messages: slow down (this one was dropped)",
            ),
        };
        Some(error_frame(peer, code, message))
    }

    /// websockets.do's `PING`, which its clients answer with `PONG` (the round trip is the
    /// `latency` of the frames after it).
    fn ping(&self, _now_ms: u64, peer: &Peer<'_>) -> Vec<Bytes> {
        vec![whole(PING, &json!({}), peer.public_id, peer.latency_ms)]
    }

    /// The recipient's `"clientID":..,"latency":..}` and the frame header.
    fn finish(&self, body: &[u8], peer: &Peer<'_>) -> (Bytes, Bytes) {
        finish(body, peer.public_id, peer.latency_ms)
    }

    /// `ERROR` with code `TOKEN_EXPIRED` (websockets.do's codes are upper case).
    fn token_expired(&self, peer: &Peer<'_>, grace_ms: u64) -> Option<Bytes> {
        let how = "reconnect with a fresh token";
        let message = crate::dialect::token_expired_message(grace_ms, how);
        Some(error_frame(peer, codes::TOKEN_EXPIRED, &message))
    }

    fn ping_timeout(&self, peer: &Peer<'_>) -> Option<Bytes> {
        let message = "Client did not respond to PING event";
        Some(error_frame(peer, codes::PING_TIMEOUT, message))
    }

    /// Only a `PONG` shows a websockets.do client alive (the seed's rule).
    fn any_frame_is_alive(&self) -> bool {
        false
    }

    fn event(&self, event: &Sequenced) -> Option<Wire> {
        let body = match &event.event {
            RoomEvent::Publish {
                data,
                event_id,
                requires_ack,
                ..
            } => body(
                DATA,
                data,
                Extra {
                    event_id: Some(event_id),
                    requires_ack: *requires_ack,
                    event: None,
                },
            ),
            RoomEvent::Broadcast { kind, data } => body(
                DATA,
                data,
                Extra {
                    event: Some(kind),
                    ..Default::default()
                },
            ),
            RoomEvent::Presence { change, member, .. } => match change {
                PresenceChange::Joined => body(PRESENCE_JOINED, &listed(member), Extra::default()),
                PresenceChange::Updated => {
                    body(PRESENCE_UPDATED, &listed(member), Extra::default())
                }
                PresenceChange::Left => body(
                    PRESENCE_LEFT,
                    &json!({ "clientID": member.id }),
                    Extra::default(),
                ),
            },
            RoomEvent::Chat { .. }
            | RoomEvent::Poll { .. }
            | RoomEvent::Counter { .. }
            | RoomEvent::Config { .. } => return None,
        };
        Some(Wire::Body(body))
    }

    fn reply(&self, reply: &Reply) -> Option<Wire> {
        let body = match reply {
            Reply::Welcome { members, .. } => {
                let members: Vec<Value> = members.iter().map(listed).collect();
                body(CONNECTED, &json!({ "members": members }), Extra::default())
            }
            Reply::TokenRefused { reason } => body(
                ERROR,
                &error_payload(codes::INVALID_TOKEN, reason),
                Extra::default(),
            ),
            Reply::Error { code, message, .. } => body(
                ERROR,
                &error_payload(code_name(*code), message),
                Extra::default(),
            ),
            Reply::AckReceived { event_id } => body(
                ACK_RECEIVED,
                &json!({ "eventID": event_id }),
                Extra::default(),
            ),
            Reply::Ok { .. }
            | Reply::Profile { .. }
            | Reply::JoinRefused { .. }
            | Reply::Snapshot(_)
            | Reply::Presence(_)
            | Reply::Resumed { .. }
            | Reply::History { .. }
            | Reply::Published => return None,
        };
        Some(Wire::Body(body))
    }
}

/// An `ERROR` frame for one connection.
pub fn error_frame(peer: &Peer<'_>, code: &str, message: &str) -> Bytes {
    whole(
        ERROR,
        &error_payload(code, message),
        peer.public_id,
        peer.latency_ms,
    )
}

/// A member as websockets.do lists it.
fn listed(member: &Member) -> Value {
    json!({"clientID": member.id, "presence": member.properties})
}

/// The websockets.do error code for an engine refusal.
fn code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::RateLimited => codes::RATE_LIMITED,
        ErrorCode::LimitExceeded
        | ErrorCode::InvalidData
        | ErrorCode::Forbidden
        | ErrorCode::Unavailable => codes::INVALID_PAYLOAD,
    }
}
