//! The Lambda server's session rules: `join` replaces the connection's channel and gives it
//! a fresh `senderId`; `publish` goes to the channel; `ping` is answered here.

use super::{decode, error, join_failure, pong, publish_failure, Inbound};
use crate::dialect::session::{Action, Actions, Session};
use crate::dialect::Protocol;
use crate::engine::{Command, Identity};
use crate::ids::new_event_id;

pub fn on_text(session: &Session<'_>, text: &mut [u8], out: &mut Actions) {
    let inbound = match decode(text) {
        Ok(inbound) => inbound,
        Err(reason) => return out.push(Action::Refuse(error(&reason))),
    };
    match inbound {
        Inbound::Ping(data) => out.push(Action::Send(pong(data))),
        Inbound::BadJoin => out.push(Action::Send(join_failure())),
        Inbound::Join(channel) => {
            if let Some(old) = session.room() {
                out.push(Action::Leave(old.to_owned()));
            }
            let sender_id = super::Lambda.new_public_id(None, session.now_ms);
            out.push(Action::SetIdentity(Identity {
                public_id: sender_id,
                user: session.peer.user.map(str::to_owned),
            }));
            out.push(Action::Join(channel));
        }
        Inbound::Publish(data) => match session.room() {
            None => out.push(Action::Send(publish_failure(
                "not in a channel: send {\"type\":\"join\",\"channelId\":…} first",
            ))),
            Some(room) => out.push(Action::Command(Command::Publish {
                room: room.to_owned(),
                sender: Some(session.conn),
                sender_label: session.peer.public_id.to_owned(),
                data,
                event_id: new_event_id(),
            })),
        },
    }
}
