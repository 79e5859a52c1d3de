//! The room engine: every room's authoritative state, with no IO and no clock of its own.
//!
//! One [`Engine`] runs on each core and owns the rooms whose names hash to that core. The
//! shell feeds it [`Command`]s (from connections on any core) together with the current
//! time, and carries out what it leaves in the [`Outbox`]: frames, each encoded once, for a
//! list of recipient connections. Tests drive it directly, with no sockets and no sleeps.

pub mod broker;
pub mod poll;
pub mod room;
pub mod store;
pub mod subscriptions;

use crate::ids::ConnId;
use ahash::AHashMap;
use broker::Broker;
use bytes::Bytes;
use rookery_protocol::pact::Role;
use room::{Room, RoomDetails};
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use store::StateStore;
use subscriptions::Topic;

/// One frame for a set of recipients. The frame is shared, never copied per recipient.
#[derive(Debug, Clone)]
pub struct Send {
    pub to: Vec<ConnId>,
    pub frame: Bytes,
    /// A room event (fanout), as opposed to a direct reply: only these reach the broker.
    pub room_event: bool,
}

/// What the engine asks the shell to do after a command.
#[derive(Debug, Default)]
pub struct Outbox {
    pub sends: Vec<Send>,
}

impl Outbox {
    pub fn to_one(&mut self, conn: ConnId, frame: Bytes) {
        self.sends.push(Send {
            to: vec![conn],
            frame,
            room_event: false,
        });
    }

    pub fn to_many(&mut self, to: Vec<ConnId>, frame: Bytes) {
        if !to.is_empty() {
            self.sends.push(Send {
                to,
                frame,
                room_event: true,
            });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sends.is_empty()
    }
}

/// Who is joining: decided by the connection's core (identity, transport facts).
#[derive(Debug, Clone)]
pub struct Joiner {
    /// The JWT `sub` when authenticated, else an id of this connection alone.
    pub user_id: String,
    pub role: Role,
    /// `profile.connectionDetails`.
    pub details: Value,
}

/// A decoded, validated Pact request.
#[derive(Debug, Clone, PartialEq)]
pub enum PactRequest {
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
    /// A client heartbeat; only a `ref` makes it answer.
    Ping,
}

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
    Pact {
        conn: ConnId,
        room: String,
        reference: Option<Value>,
        request: PactRequest,
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
}

pub struct Engine {
    /// Live rooms: those with at least one member. Durable state of the others is in `store`.
    rooms: AHashMap<String, Room>,
    store: Box<dyn StateStore>,
    broker: Box<dyn Broker>,
}

impl Engine {
    pub fn new(store: Box<dyn StateStore>, broker: Box<dyn Broker>) -> Engine {
        Engine {
            rooms: AHashMap::new(),
            store,
            broker,
        }
    }

    /// Applies `command` at time `now_ms`, leaving frames to send in `out`.
    pub fn handle(&mut self, command: Command, now_ms: u64, out: &mut Outbox) {
        let first_send = out.sends.len();
        let room_name = match &command {
            Command::Join { room, .. }
            | Command::Leave { room, .. }
            | Command::Pact { room, .. }
            | Command::Broadcast { room, .. }
            | Command::SetConfig { room, .. } => room.clone(),
        };
        match command {
            Command::Join { conn, room, joiner } => {
                if !self.rooms.contains_key(&room) {
                    let loaded = Room::load(&room, self.store.load(&room));
                    self.rooms.insert(room.clone(), loaded);
                }
                let room = self.rooms.get_mut(&room).expect("inserted above");
                room.last_activity_ms = now_ms;
                room.join(
                    conn,
                    joiner.user_id,
                    joiner.role,
                    joiner.details,
                    self.store.as_mut(),
                    out,
                );
            }
            Command::Leave { conn, room } => {
                if let Some(live) = self.rooms.get_mut(&room) {
                    live.last_activity_ms = now_ms;
                    live.leave(conn, out);
                }
            }
            Command::Pact {
                conn,
                room,
                reference,
                request,
            } => {
                if let Some(live) = self.rooms.get_mut(&room) {
                    live.last_activity_ms = now_ms;
                    live.apply(conn, reference.as_ref(), request, self.store.as_mut(), out);
                }
            }
            Command::Broadcast {
                room,
                kind,
                data,
                to,
            } => {
                if let Some(live) = self.rooms.get_mut(&room) {
                    live.broadcast(to.as_deref(), &kind, &data, out);
                }
            }
            Command::SetConfig { room, config } => {
                let store = self.store.as_mut();
                match self.rooms.get_mut(&room) {
                    Some(live) => live.set_config(config, store, out),
                    None => store.put_config(&room, &config),
                }
            }
        }
        for send in out.sends[first_send..].iter().filter(|s| s.room_event) {
            self.broker.publish(&room_name, "pact", &send.frame);
        }
        if self.rooms.get(&room_name).is_some_and(Room::is_empty) {
            self.rooms.remove(&room_name);
        }
    }

    /// The room's details, whether or not it has members now.
    pub fn details(&mut self, name: &str) -> RoomDetails {
        match self.rooms.get(name) {
            Some(room) => room.details(),
            None => Room::load(name, self.store.load(name)).details(),
        }
    }

    /// Number of live rooms on this core.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }
}

#[cfg(test)]
mod tests;
