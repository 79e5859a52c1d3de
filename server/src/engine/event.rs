//! What happened in a room, in no dialect: the events the engine fans out and the replies it
//! gives one connection. Codecs turn them into frames at the fan-out edge
//! (`crate::dialect`), once per dialect present among the recipients.

use rookery_protocol::pact::{Member, PresenceSnapshot, Profile, PublicUser};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where a lasting event stands in its room's stream: `seq` grows by one per lasting event;
/// `epoch` changes whenever the room's history is lost or reset, so that a position of an
/// earlier epoch is never mistaken for one of this stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Shared by the room and every event it positions: no allocation per event.
    pub epoch: Arc<str>,
    pub seq: u64,
}

/// Which poll family a vote or a tally is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PollKind {
    /// Votes are kept while the room is empty (and by a durable store across restarts).
    Durable,
    /// A user's vote goes when the user's last connection in the room closes.
    Ephemeral,
}

/// What happened to a member, for presence watchers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PresenceChange {
    Joined,
    Left,
    Updated,
}

pub use super::payload::Payload;

/// Something that happened in a room, for every member it concerns, in any dialect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RoomEvent {
    /// A chat message and its sender's public face.
    Chat { message: Payload, user: PublicUser },
    /// A poll's new tally (answers with no votes absent).
    Poll {
        kind: PollKind,
        id: String,
        stats: BTreeMap<String, u64>,
    },
    /// A counter's new value, exact.
    Counter { id: String, value: Decimal },
    /// The room's new config.
    Config { config: String },
    /// An admin broadcast `{type, data}`.
    Broadcast { kind: String, data: Payload },
    /// Data published to the room or to chosen members: an HTTP emit, a jac `channel`
    /// event, a Lambda `publish`, `POST /api/notify`, a SLIP control `TEXT`.
    Publish {
        data: Payload,
        /// Who published: a member's public id, or `"server"`.
        sender: String,
        event_id: String,
        requires_ack: bool,
    },
    /// A member joined, left or changed its public properties; `count` is the room's size
    /// after the change.
    Presence {
        change: PresenceChange,
        member: Member,
        count: usize,
    },
}

impl RoomEvent {
    /// A lasting event takes a position in the room's stream; a presence diff does not
    /// (presence is state, re-sent whole to whoever needs it).
    pub fn is_lasting(&self) -> bool {
        !matches!(self, RoomEvent::Presence { .. })
    }
}

/// An event with its place in the room's stream (`None` for presence diffs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sequenced {
    pub position: Option<Position>,
    pub event: RoomEvent,
}

/// Why a request was refused, in no dialect's words: each codec names it its own way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Too many updates in the window.
    RateLimited,
    /// A per-connection limit (subscriptions) is reached.
    LimitExceeded,
    /// The request's data is not acceptable (e.g. a counter would overflow).
    InvalidData,
    /// The request needs the admin role.
    Forbidden,
    /// The store could not serve the request now; it may work later.
    Unavailable,
}

/// A reply to one connection: the answer to its request, or what it is told on joining.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// The request carrying `reference` was applied.
    Ok { reference: Value },
    /// The request was refused.
    Error {
        reference: Option<Value>,
        code: ErrorCode,
        message: String,
    },
    /// The answer to a `resume`: the missed events were replayed (`recovered`, `missed` of
    /// them) or, when they could not be, fresh snapshots were sent; `pos` is the room's
    /// position now.
    Resumed {
        reference: Option<Value>,
        recovered: bool,
        missed: u64,
        pos: Position,
    },
    /// A page of the room's history, oldest first, and the room's position now.
    History {
        reference: Option<Value>,
        events: Vec<Sequenced>,
        pos: Position,
    },
    /// The member's own profile (on `login`, `profile`, a role change).
    Profile {
        reference: Option<Value>,
        profile: Box<Profile>,
    },
    /// Joined: the room's config, the member's profile, and the members already there (only
    /// for a member whose traits ask for it).
    Welcome {
        config: String,
        profile: Box<Profile>,
        members: Vec<Member>,
    },
    /// The token the connection presented was refused (it joined anonymously).
    TokenRefused { reason: String },
    /// The room could not take the connection (the room limit).
    JoinRefused { reason: String },
    /// The current state of something just subscribed to (a poll tally, a counter).
    Snapshot(RoomEvent),
    /// Who is in the room, for a new presence subscriber.
    Presence(PresenceSnapshot),
    /// The member's publish went out to the room.
    Published,
    /// The member's ack of this emit was expected and counted.
    AckReceived { event_id: String },
}
