//! A dialect's session rules: what one client message (or a backend's answer, or the end
//! of a connection) leads to, decided without IO. Each dialect decides into [`Action`]s; the
//! shell carries them out in order (`shell::session`).

use super::Peer;
use crate::auth::Verifier;
use crate::backend::BackendRequest;
use crate::config::Config;
use crate::engine::{Command, Identity, RoomEvent};
use crate::ids::ConnId;
use bytes::Bytes;
use smallvec::SmallVec;
use tungstenite::protocol::frame::coding::CloseCode;

/// What the rules know of the connection and the server.
pub struct Session<'a> {
    pub conn: ConnId,
    pub peer: Peer<'a>,
    /// The rooms the connection is in (its first is "its room" where it has one).
    pub rooms: &'a [String],
    pub now_ms: u64,
    pub config: &'a Config,
    /// Checks tokens presented in messages (jac's `change_user`, Pact's `refresh`).
    pub verifier: &'a Verifier,
    /// Whether the message is being decided again after [`Action::AwaitKeys`]: a token
    /// naming an unknown key is now refused instead of waited for.
    pub keys_awaited: bool,
}

impl Session<'_> {
    /// The connection's (first) room.
    pub fn room(&self) -> Option<&str> {
        self.rooms.first().map(String::as_str)
    }
}

/// What one message (or answer) leads to: most lead to one or two actions, kept inline.
pub type Actions = SmallVec<[Action; 2]>;

/// One thing for the shell to do for a connection.
#[derive(Debug)]
pub enum Action {
    /// A frame for the connection.
    Send(Bytes),
    /// An error frame answering bad input (counted as such).
    Refuse(Bytes),
    /// A command for the owner of the command's room.
    Command(Command),
    /// Join this room as who the connection is now (nothing if it is already in it, or
    /// closing).
    Join(String),
    /// Leave this room (nothing if it is not in it).
    Leave(String),
    /// The connection becomes someone else (its memberships keep who they joined as).
    SetIdentity(Identity),
    /// Wait for the identity provider's keys (a token in the message names a key the
    /// cache lacks), then decide the same message again. Only ever the sole action.
    AwaitKeys,
    /// The connection's token rights now end at this time (epoch ms; `None`: never) — a
    /// refreshed or changed token.
    TokenExpiry(Option<u64>),
    /// Close the connection.
    Close(CloseCode, String),
    /// The client answered the heartbeat: its round trip is measured.
    Pong,
    /// `event` to every connection of these users and these client ids, on every core, each
    /// in its dialect.
    Targeted {
        users: Vec<String>,
        clients: Vec<String>,
        event: RoomEvent,
    },
    /// An HTTP call to the backend. Its answer goes to the dialect's `on_backend` with
    /// `tag`; a `concurrent` call lets the connection's next messages go on meanwhile, the
    /// others are answered before the next message is handled.
    Backend {
        request: BackendRequest,
        tag: u32,
        concurrent: bool,
    },
}
