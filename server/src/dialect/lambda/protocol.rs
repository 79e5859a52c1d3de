//! The `lambda` dialect as a [`crate::dialect::Protocol`].

use super::*;
use crate::dialect::session::{Actions, Session};
use crate::dialect::{json_frame, Peer, Refusal, Wire};

/// The `lambda` protocol: `{"type":"message","senderId":..,"data":..}` for what is published
/// (an admin broadcast comes from `"server"` with its `event` type), `joinSuccess`,
/// `joinFailure` (a refused member stays connected) and `publishSuccess`.
pub struct Lambda;

#[derive(Serialize)]
struct Message<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "senderId")]
    sender_id: &'a str,
    data: &'a Payload,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
}

impl crate::dialect::Protocol for Lambda {
    /// `GET /channels` (a channel is joined later, with `join`).
    fn endpoint(&self, segments: &[&str], _req: &Request, _now_ms: u64) -> Option<Option<String>> {
        matches!(segments, ["channels"]).then_some(None)
    }

    fn on_text(&self, session: &Session<'_>, text: &mut [u8], out: &mut Actions) {
        session::on_text(session, text, out);
    }

    fn traits(&self) -> Traits {
        Traits {
            stays_when_refused: true,
            ..Traits::default()
        }
    }

    fn event(&self, event: &Sequenced) -> Option<Wire> {
        let message = match &event.event {
            RoomEvent::Publish { data, sender, .. } => Message {
                kind: "message",
                sender_id: sender,
                data,
                event: None,
            },
            RoomEvent::Broadcast { kind, data } => Message {
                kind: "message",
                sender_id: "server",
                data,
                event: Some(kind),
            },
            _ => return None,
        };
        Some(json_frame(&message))
    }

    fn reply(&self, reply: &Reply) -> Option<Wire> {
        let frame = match reply {
            Reply::Welcome { .. } => join_success(),
            Reply::JoinRefused { .. } => join_failure(),
            Reply::Published => publish_success(),
            _ => return None,
        };
        Some(Wire::Frame(frame))
    }

    /// A `senderId`: 21 random characters (a fresh one on every `join`).
    fn new_public_id(&self, _user: Option<&str>, _now_ms: u64) -> String {
        random_token(21)
    }

    fn greeting(
        &self,
        _peer: &Peer<'_>,
        _room: Option<&str>,
        token_error: Option<&str>,
    ) -> Vec<Bytes> {
        token_error
            .map(|reason| error(&format!("invalid token: {reason}")))
            .into_iter()
            .collect()
    }

    /// `{"type":"error","data":"token_expired: .."}`: the Lambda server's errors are text.
    fn token_expired(&self, _peer: &Peer<'_>, grace_ms: u64) -> Option<Bytes> {
        let how = "reconnect with a fresh token";
        let message = crate::dialect::token_expired_message(grace_ms, how);
        Some(error(&format!("token_expired: {message}")))
    }

    fn refusal(&self, refusal: Refusal, _peer: &Peer<'_>) -> Option<Bytes> {
        Some(error(match refusal {
            Refusal::Binary => "frames are JSON text; binary frames are not accepted",
            Refusal::RateLimited => "too many messages: slow down (this one was dropped)",
        }))
    }
}
