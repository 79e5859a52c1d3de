//! Pact's session rules: requests go to the room; `authenticate` is checked here (the
//! signing key is the server's) and grants the admin role; `close` closes.

use super::{decode, error, Inbound};
use crate::auth::verify_pact_admin;
use crate::dialect::session::{Action, Actions, Session};
use crate::engine::Command;
use rookery_protocol::pact::{codes, Role};
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
        Ok(Inbound::Close) => {
            out.push(Action::Close(CloseCode::Normal, "closed on request".into()));
        }
        Ok(Inbound::Pong) => {}
        Err(refused) => out.push(Action::Refuse(refused.frame())),
    }
}
