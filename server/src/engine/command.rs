//! Everything a room owner can be asked to do, in no dialect: the dialects decode client
//! messages into these, the shell adds the HTTP API's and the store's answers.

use super::emit::{ReplyToken, Targets};
use super::history::{History, Read};
use super::member::Joiner;
use super::outbox::Published;
use super::snapshot::RoomSnapshot;
use super::subscriptions::Topic;
use crate::ids::ConnId;
use rookery_protocol::pact::Role;
use rust_decimal::Decimal;
use serde_json::{Map, Value};

/// A member's request to its room (the native protocol's, which the others map onto).
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Login(Map<String, Value>),
    Profile,
    Subscribe(Topic),
    Unsubscribe(Topic),
    Chat(Value),
    Vote {
        ephemeral: bool,
        poll: String,
        answer: String,
    },
    Counter {
        counter: String,
        delta: Decimal,
    },
    /// Admin only: replace the room config.
    Config(String),
    /// Admin only: `{type, data}` to all members, or to subscribers of `to`.
    Broadcast {
        to: Option<String>,
        kind: String,
        data: Value,
    },
    /// Acknowledges the emit with this event id.
    Ack(String),
    /// A client heartbeat; only a `ref` makes it answer.
    Ping,
    /// Replay what the member missed since this position (SPEC §5.3 `resume`).
    Resume {
        epoch: String,
        seq: u64,
    },
    /// A page of the room's history: up to `limit` events, before `before` if given.
    History {
        limit: usize,
        before: Option<u64>,
    },
}

/// An HTTP emit (websockets.do's `/:channel/emit`).
#[derive(Debug, Clone)]
pub struct Emit {
    pub payload: Value,
    pub targets: Targets,
    pub require_ack: bool,
    pub event_id: String,
    /// Randomness for `Targets::Random`, from the shell.
    pub seed: u64,
    pub ack_timeout_ms: u64,
    pub reply: ReplyToken,
}

/// What the store answered for a room the engine asked to load.
pub type LoadResult = Result<Option<RoomSnapshot>, String>;

/// What the store answered for a page of history the engine asked for.
pub type ReadResult = Result<History, String>;

/// Everything a room owner can be asked to do.
#[derive(Debug, Clone)]
pub enum Command {
    Join {
        conn: ConnId,
        room: String,
        joiner: Joiner,
    },
    Leave {
        conn: ConnId,
        room: String,
    },
    /// A member's request; with `reference` it gets exactly one direct reply carrying it.
    Request {
        conn: ConnId,
        room: String,
        reference: Option<Value>,
        request: Request,
    },
    /// Replace the member's presence (websockets.do `PRESENCE`); rate-limited like `login`.
    Presence {
        conn: ConnId,
        room: String,
        presence: Map<String, Value>,
    },
    Emit {
        room: String,
        emit: Emit,
    },
    /// From the admin API: `{type: kind, data}` to all, or to subscribers of `to`.
    Broadcast {
        room: String,
        kind: String,
        data: Value,
        to: Option<String>,
    },
    /// From the admin API: store the config and send it to every member.
    SetConfig {
        room: String,
        config: String,
    },
    /// `data` to every member of the room, each in its dialect (Lambda `publish`, jac
    /// `channel` events, `POST /api/notify` channels). `sender` is a member when it
    /// published from inside the room.
    Publish {
        room: String,
        sender: Option<ConnId>,
        /// The sender's public id, or `"server"`.
        sender_label: String,
        data: Value,
        event_id: String,
    },
    /// Pact `authenticate` succeeded: the connection gets this role.
    SetRole {
        conn: ConnId,
        room: String,
        role: Role,
        reference: Option<Value>,
    },
    /// The store's answer to a load the engine asked for.
    Loaded {
        room: String,
        result: LoadResult,
    },
    /// The store's answer to a read of history the engine asked for.
    Read {
        read: Read,
        result: ReadResult,
    },
    /// An event another node published (from the broker); with a sequencer, every
    /// positioned event of the room, this node's own included.
    Remote(Published),
    /// A fill of a gap in the room's stream is done: every event it found was sent before
    /// this as `Remote`. `oldest` is the oldest `seq` the stream keeps now (`None`: none);
    /// `complete` is false when the stream could not be read.
    Filled {
        room: String,
        oldest: Option<u64>,
        complete: bool,
    },
    /// The link to the sequencer was down: every live room fills what it missed.
    Resync,
    /// A new block of Pact suffixes for the room, `(from, until]` (or why not).
    Suffixes {
        room: String,
        block: Result<(u64, u64), String>,
    },
    /// A member on another node acked the emit `event_id` (with a sequencer).
    RemoteAck {
        room: String,
        event_id: String,
        client: String,
    },
    /// Time passes: expire ack deadlines.
    Tick,
}

impl Command {
    /// The room the command is about (none for `Tick`).
    pub fn room(&self) -> Option<&str> {
        match self {
            Command::Join { room, .. }
            | Command::Leave { room, .. }
            | Command::Request { room, .. }
            | Command::Presence { room, .. }
            | Command::Emit { room, .. }
            | Command::Broadcast { room, .. }
            | Command::SetConfig { room, .. }
            | Command::Publish { room, .. }
            | Command::SetRole { room, .. }
            | Command::Loaded { room, .. }
            | Command::Filled { room, .. }
            | Command::Suffixes { room, .. }
            | Command::RemoteAck { room, .. } => Some(room),
            Command::Remote(published) => Some(&published.room),
            Command::Read { read, .. } => Some(&read.room),
            Command::Tick | Command::Resync => None,
        }
    }
}
