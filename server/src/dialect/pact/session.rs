//! Pact's session rules: requests go to the room; `authenticate` is checked here (the
//! signing key is the server's) and grants the admin role; `close` closes.

use super::{decode, encode, error, Inbound};
use crate::auth::{strip_bearer, verify_pact_admin};
use crate::dialect::session::{Action, Actions, Session};
use crate::engine::Command;
use rookery_protocol::pact::{codes, types, Role};
use serde_json::{json, Value};
use tungstenite::protocol::frame::coding::CloseCode;

pub fn on_text(session: &Session<'_>, text: &mut [u8], out: &mut Actions) {
    let Some(room) = session.room() else { return };
    let room = room.to_owned();
    match decode(text) {
        Ok(Inbound::Request { reference, request }) => {
            out.push(Action::Command(Command::Request {
                conn: session.conn,
                room,
                reference,
                request,
            }));
        }
        Ok(Inbound::Authenticate { reference, ts, key }) => {
            let checked = match session.config.pact_signing_key.as_deref() {
                None => Err("authenticate is disabled: the server has no --pact-signing-key"),
                Some(signing) => verify_pact_admin(&room, ts, &key, signing, session.now_ms),
            };
            out.push(match checked {
                Ok(()) => Action::Command(Command::SetRole {
                    conn: session.conn,
                    room,
                    role: Role::Admin,
                    reference,
                }),
                Err(reason) => {
                    Action::Refuse(error(reference.as_ref(), codes::UNAUTHORIZED, reason))
                }
            });
        }
        Ok(Inbound::Refresh { reference, token }) => refresh(session, reference, &token, out),
        Ok(Inbound::Close) => {
            out.push(Action::Close(CloseCode::Normal, "closed on request".into()));
        }
        Ok(Inbound::Pong) => {}
        Err(refused) => out.push(Action::Refuse(refused.frame())),
    }
}

/// `refresh`: a fresh token of the connection's own user moves its expiry (answered with
/// `refreshed`); any other token is refused and the connection's expiry stays as it was.
fn refresh(session: &Session<'_>, reference: Option<Value>, token: &str, out: &mut Actions) {
    let refused =
        |message: &str| Action::Refuse(error(reference.as_ref(), codes::INVALID_TOKEN, message));
    match session.verifier.verify(strip_bearer(token)) {
        Err(e) if e.awaits_keys() && !session.keys_awaited => out.push(Action::AwaitKeys),
        Err(e) => out.push(refused(&format!("refresh refused: {e}"))),
        Ok(v) if session.peer.user != Some(v.user.as_str()) => out.push(refused(
            "refresh refused: the token is for another user (a refresh keeps the \
             connection's user; connect again to change users)",
        )),
        Ok(v) => {
            out.push(Action::TokenExpiry(v.exp_ms));
            let exp = v.exp_ms.map(|ms| ms / 1000);
            let reply = encode(types::REFRESHED, reference.as_ref(), &json!({ "exp": exp }));
            out.push(Action::Send(reply));
        }
    }
}
