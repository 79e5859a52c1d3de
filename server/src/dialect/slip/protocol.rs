//! The `slip` dialect as a [`crate::dialect::Protocol`].

use super::*;
use crate::dialect::session::{Actions, Session};
use crate::dialect::{json_frame, Peer, Refusal, Typed, Wire};

/// The `slip` protocol: published data as the frame's text when it is a string (a control
/// `TEXT`), else as JSON; an admin broadcast as `{type, data}`. SLIP's backend, not the
/// room, answers its connections, so no reply has a SLIP form.
pub struct Slip;

impl crate::dialect::Protocol for Slip {
    /// `GET /slip` (the backend subscribes the connection to channels).
    fn endpoint(&self, segments: &[&str], _req: &Request, _now_ms: u64) -> Option<Option<String>> {
        matches!(segments, ["slip"]).then_some(None)
    }

    /// The backend decides whether a connection opens, before the handshake ends.
    fn consent(
        &self,
        config: &crate::config::Config,
        public_id: &str,
        req: &Request,
        now_ms: u64,
    ) -> Result<Option<crate::backend::BackendRequest>, Vec<u8>> {
        session::consent(config, public_id, req, now_ms)
    }

    fn on_consent(
        &self,
        answer: Result<BackendResponse, BackendError>,
    ) -> Result<Actions, Vec<u8>> {
        session::on_consent(answer)
    }

    fn on_text(&self, session: &Session<'_>, text: &mut [u8], out: &mut Actions) {
        session::on_text(session, text, out);
    }

    fn on_backend(
        &self,
        session: &Session<'_>,
        tag: u32,
        answer: Result<BackendResponse, BackendError>,
        out: &mut Actions,
    ) {
        session::on_backend(session, tag, answer, out);
    }

    fn on_close(&self, session: &Session<'_>, out: &mut Actions) {
        session::on_close(session, out);
    }

    fn event(&self, event: &Sequenced) -> Option<Wire> {
        match &event.event {
            RoomEvent::Publish { data, .. } => Some(match data.value() {
                Value::String(text) => Wire::Frame(text_frame(text)),
                data => json_frame(data),
            }),
            RoomEvent::Broadcast { kind, data } => Some(json_frame(&Typed { kind, data })),
            _ => None,
        }
    }

    fn reply(&self, _reply: &Reply) -> Option<Wire> {
        None
    }

    fn new_public_id(&self, _user: Option<&str>, _now_ms: u64) -> String {
        random_token(16)
    }

    /// SLIP has no error frame: a message over the rate is dropped silently.
    fn refusal(&self, _refusal: Refusal, _peer: &Peer<'_>) -> Option<Bytes> {
        None
    }

    /// Text frames only: a binary frame closes the connection with 1003.
    fn binary_closes(&self) -> bool {
        true
    }
}
