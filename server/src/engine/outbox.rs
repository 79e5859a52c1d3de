//! What the engine leaves for the shell after a command: the effects to carry out, in no
//! dialect and with no IO. The shell persists `changes` first, then releases `sends` (so no
//! reply or event is seen before the state it depends on is committed), answers `outcomes`,
//! closes `closes`, loads `loads` and hands `published` to the broker.

use super::emit::{EmitOutcome, ReplyToken};
use super::event::{PollKind, PresenceChange, Reply, RoomEvent, Sequenced};
use super::history::{Entry, Read};
use super::member::CodecId;
use crate::ids::ConnId;
use rookery_protocol::pact::Member;
use rust_decimal::Decimal;
use smallvec::SmallVec;
use std::borrow::Cow;

/// Recipients of one event, grouped by the codec that encodes their frames, so the event is
/// encoded once per codec present and never per recipient.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Audience {
    pub groups: SmallVec<[(CodecId, Vec<ConnId>); 2]>,
}

impl Audience {
    pub fn add(&mut self, codec: CodecId, conn: ConnId) {
        self.add_sized(codec, conn, 1);
    }

    /// [`Self::add`], a new codec's group made with room for `room_for` connections: a
    /// room's audience is sized once from its member count instead of growing by doubling
    /// (five reallocations for a room of 64, on every event).
    pub fn add_sized(&mut self, codec: CodecId, conn: ConnId, room_for: usize) {
        match self.groups.iter_mut().find(|(c, _)| *c == codec) {
            Some((_, conns)) => conns.push(conn),
            None => {
                let mut conns = Vec::with_capacity(room_for.max(1));
                conns.push(conn);
                self.groups.push((codec, conns));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(|(_, conns)| conns.is_empty())
    }

    pub fn contains(&self, conn: ConnId) -> bool {
        self.groups.iter().any(|(_, conns)| conns.contains(&conn))
    }
}

/// Which members of a room an event is for, independent of the node they are connected to:
/// what the broker carries, and what each node resolves to its own connections.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Scope {
    /// Every member, each in its dialect.
    Room,
    /// Subscribers of a topic `kind` (and `id`, or every id). The kind is borrowed when it
    /// is one of the engine's own (`chat`, `poll`, `counter`): no allocation per event.
    Topic {
        #[serde(deserialize_with = "topic_kind")]
        kind: Cow<'static, str>,
        id: Option<String>,
    },
    /// The members with these public ids (a targeted emit).
    Members(Vec<String>),
    /// Presence watchers: `presence` subscribers and members that always see presence,
    /// except this connection (a joiner is not told of its own join; a connection id is
    /// unique to its node, so elsewhere it excepts nobody).
    Presence { except: Option<ConnId> },
}

/// A topic kind read back (from Redis, from the disk): the engine's own kinds borrowed,
/// as the room made them, so that decoding an event allocates no string for its scope.
fn topic_kind<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Cow<'static, str>, D::Error> {
    use rookery_protocol::pact::types;
    let kind = <Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
    let known = [
        types::CHAT,
        types::COUNTER,
        types::POLL,
        types::EPHEMERAL_POLL,
    ];
    Ok(match known.into_iter().find(|k| *k == kind) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(kind.into_owned()),
    })
}

/// One thing to send: a room event for an audience, or a reply for one connection. Kept in
/// one ordered list, since a connection must see them in the order the room made them.
#[derive(Debug, Clone, PartialEq)]
pub enum Send {
    Event {
        event: Sequenced,
        to: Audience,
    },
    Reply {
        to: ConnId,
        codec: CodecId,
        reply: Reply,
    },
}

/// A change to a room's durable state, for the store to commit.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The room's Pact suffix counter.
    Suffix {
        room: String,
        suffix: u64,
    },
    Config {
        room: String,
        config: String,
    },
    /// A user's vote in a durable poll; `None` retracts it.
    Vote {
        room: String,
        poll: String,
        user: String,
        answer: Option<String>,
    },
    Counter {
        room: String,
        counter: String,
        value: Decimal,
    },
    /// The room's stream position, written when the room goes idle so that its next life
    /// continues the same stream.
    Position {
        room: String,
        epoch: String,
        seq: u64,
    },
    /// A lasting event kept in the room's history (with its position).
    Append {
        room: String,
        entry: Entry,
    },
}

impl Change {
    pub fn room(&self) -> &str {
        match self {
            Change::Suffix { room, .. }
            | Change::Config { room, .. }
            | Change::Vote { room, .. }
            | Change::Counter { room, .. }
            | Change::Position { room, .. }
            | Change::Append { room, .. } => room,
        }
    }
}

/// An event of a room this node made, for the broker to publish to other nodes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Published {
    pub room: String,
    pub event: Sequenced,
    pub scope: Scope,
    /// Replies this node releases after delivering the event (the `ok` of the request that
    /// made it, when it comes back from the sequencer); never sent to other nodes.
    #[serde(skip)]
    pub replies: Vec<Send>,
    /// With a sequencer, on a presence diff of another node's member: the member's key in
    /// the room's shared presence (this node's copy of it follows the diffs).
    #[serde(skip)]
    pub member_key: Option<String>,
}

/// A lasting change of a room for its sequencer (Redis, `--engine redis`): the sequencer
/// applies `op` to the room's shared state, gives the event its position, keeps it in the
/// room's history and publishes it; every node (this one too) then delivers it from there.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub room: String,
    pub event: RoomEvent,
    pub scope: Scope,
    pub at_ms: u64,
    pub op: Op,
    /// Released on this node once the event came back positioned.
    pub replies: Vec<Send>,
    /// Answered once the sequencer took the event (`Unavailable` if it could not).
    pub outcomes: Vec<(ReplyToken, EmitOutcome)>,
}

/// What a proposal changes in the room's shared state besides its stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Nothing: chat, broadcast, publish, emit.
    Event,
    Config(String),
    /// Set `id` from `expected` to `expected + delta` (the event carries that value); if
    /// another node changed it first, the sequencer's client adds `delta` to what is there
    /// and tries again (compare-and-set: exact decimals, no floating point in the script).
    Counter {
        id: String,
        expected: Decimal,
        delta: Decimal,
    },
    /// `user`'s vote in a poll (`None` retracts it); the script tallies the poll and puts
    /// the stats in the event. Nothing is sent when the vote changes nothing.
    Vote {
        kind: PollKind,
        poll: String,
        user: String,
        answer: Option<String>,
    },
    /// A member of this node joined, changed or left: the room's shared presence (with the
    /// node that holds each member) changes, and the diff goes to every node's watchers
    /// with the room's whole count. When a user's last connection in the room leaves, the
    /// script withdraws its ephemeral votes.
    Presence {
        change: PresenceChange,
        conn: ConnId,
        user: String,
        member: Member,
    },
    /// A member here acked an emit made on another node: tell the room's nodes (the one
    /// that made it counts it). Nothing is sequenced.
    Ack {
        event_id: String,
        client: String,
    },
}

/// Events a room missed (a gap in the sequencer's stream): read them from the room's
/// history after `after` of `epoch`; answered with `Command::Remote` for each, then
/// `Command::Filled`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    pub room: String,
    pub epoch: String,
    pub after: u64,
}

/// Everything a batch of commands left for the shell to do.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Events and replies, in the order the rooms made them.
    pub sends: Vec<Send>,
    /// Answers for requests waiting elsewhere (HTTP emits).
    pub outcomes: Vec<(ReplyToken, EmitOutcome)>,
    /// Connections to close: code and reason.
    pub closes: Vec<(ConnId, u16, String)>,
    /// Durable state to commit before `sends` are released.
    pub changes: Vec<Change>,
    /// Rooms to load from the store (answered with `Command::Loaded`).
    pub loads: Vec<String>,
    /// Events for other nodes (only when the engine has a broker feed).
    pub published: Vec<Published>,
    /// Pages of history to read for members (answered with `Command::Read`).
    pub reads: Vec<Read>,
    /// Lasting changes for the sequencer (only with `Engine::with_sequencer`).
    pub proposals: Vec<Proposal>,
    /// Gaps to fill from the sequencer's history (only with `Engine::with_sequencer`).
    pub fills: Vec<Fill>,
    /// Rooms dropped from memory (nobody left here): the node stops listening to them.
    pub idle: Vec<String>,
    /// Rooms whose block of Pact suffixes is used up (with a sequencer): reserve another
    /// (answered with `Command::Suffixes`; joins wait meanwhile).
    pub suffixes: Vec<String>,
}

impl Outbox {
    pub fn reply(&mut self, to: ConnId, codec: CodecId, reply: Reply) {
        self.sends.push(Send::Reply { to, codec, reply });
    }

    pub fn event(&mut self, event: Sequenced, to: Audience) {
        if !to.is_empty() {
            self.sends.push(Send::Event { event, to });
        }
    }
}
