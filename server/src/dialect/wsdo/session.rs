//! websockets.do's session rules: `PONG` measures the round trip (and is the only sign of
//! life that counts), `PRESENCE` and `ACK` go to the room.

use super::{decode, error_frame, Inbound};
use crate::dialect::session::{Action, Actions, Session};
use crate::engine::{Command, Request};

pub fn on_text(session: &Session<'_>, text: &mut [u8], out: &mut Actions) {
    let Some(room) = session.room() else { return };
    let room = room.to_owned();
    let conn = session.conn;
    out.push(match decode(text) {
        Ok(Inbound::Pong) => Action::Pong,
        Ok(Inbound::Presence(presence)) => Action::Command(Command::Presence {
            conn,
            room,
            presence,
        }),
        Ok(Inbound::Ack(event_id)) => Action::Command(Command::Request {
            conn,
            room,
            reference: None,
            request: Request::Ack(event_id),
        }),
        Err(refused) => Action::Refuse(error_frame(&session.peer, refused.code, &refused.message)),
    });
}
