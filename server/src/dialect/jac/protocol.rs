//! The `jac` dialect as a [`crate::dialect::Protocol`].

use super::*;
use crate::dialect::session::{Actions, Session};
use crate::dialect::{json_frame, Peer, Refusal, Typed, Wire};

/// The `jac` protocol: published data arrives as the raw `data` object, an admin broadcast as
/// `{type, data}`; the room tells a jac connection nothing else (its greeting, the
/// `connection` event, is its core's).
pub struct Jac;

impl crate::dialect::Protocol for Jac {
    /// `GET /jac/websocket?channel_id=C` (a new channel without one).
    fn endpoint(&self, segments: &[&str], req: &Request, now_ms: u64) -> Option<Option<String>> {
        let channel = req.query_param("channel_id").filter(|c| !c.is_empty());
        matches!(segments, ["jac", "websocket"])
            .then(|| Some(channel.map_or_else(|| new_id(now_ms), str::to_owned)))
    }

    fn on_text(&self, session: &Session<'_>, text: &mut [u8], out: &mut Actions) {
        session::on_text(session, text, out);
    }

    fn on_backend(
        &self,
        _session: &Session<'_>,
        tag: u32,
        answer: Result<BackendResponse, BackendError>,
        out: &mut Actions,
    ) {
        session::on_backend(tag, answer, out);
    }

    fn event(&self, event: &Sequenced) -> Option<Wire> {
        match &event.event {
            RoomEvent::Publish { data, .. } => Some(json_frame(data)),
            RoomEvent::Broadcast { kind, data } => Some(json_frame(&Typed { kind, data })),
            _ => None,
        }
    }

    fn reply(&self, _reply: &Reply) -> Option<Wire> {
        None
    }

    fn new_public_id(&self, _user: Option<&str>, now_ms: u64) -> String {
        new_id(now_ms)
    }

    /// jac's `connection` event, then why the token was refused.
    fn greeting(
        &self,
        peer: &Peer<'_>,
        room: Option<&str>,
        token_error: Option<&str>,
    ) -> Vec<Bytes> {
        let mut frames = vec![connection_event(peer, room)];
        if let Some(reason) = token_error {
            frames.push(error_one("token", reason, "invalid_token"));
        }
        frames
    }

    /// An error event as jac's others: `{"type":"error","error":[{loc:["token"],..,
    /// "type":"token_expired"}]}`.
    fn token_expired(&self, _peer: &Peer<'_>, grace_ms: u64) -> Option<Bytes> {
        let how = "send change_user with a fresh token";
        let message = crate::dialect::token_expired_message(grace_ms, how);
        Some(error_one("token", &message, "token_expired"))
    }

    fn refusal(&self, refusal: Refusal, _peer: &Peer<'_>) -> Option<Bytes> {
        Some(match refusal {
            Refusal::Binary => error_one(
                "body",
                "frames are JSON text; binary frames are not accepted",
                "unsupported_data",
            ),
            Refusal::RateLimited => error_one(
                "body",
                "too many messages: slow down (this one was dropped)",
                "rate_limited",
            ),
        })
    }
}
