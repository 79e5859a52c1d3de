//! The room engine: every room's authoritative state, with no IO and no clock of its own.
//!
//! One [`Engine`] runs on each core and owns the rooms whose names hash to that core. The
//! shell feeds it [`Command`]s (from connections and HTTP requests on any core) together
//! with the current time, and carries out what it leaves in the [`Outbox`]: encoded events,
//! each encoded once, for lists of recipient connections, and answers for waiting requests.
//! Tests drive it directly, with no sockets and no sleeps.

pub mod broker;
pub mod emit;
pub mod poll;
pub mod room;
pub mod store;
pub mod subscriptions;

use crate::dialect::{pact, wsdo, Dialect, Wire};
use crate::ids::ConnId;
use ahash::AHashMap;
use broker::Broker;
use bytes::Bytes;
use emit::{AckTracker, EmitOutcome, ReplyToken, Targets};
use rookery_protocol::pact::Role;
use room::{Room, RoomDetails};
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use store::StateStore;
use subscriptions::Topic;

/// One encoded event for a set of recipients. The bytes are shared, never copied per
/// recipient.
#[derive(Debug, Clone)]
pub struct Send {
    pub to: Vec<ConnId>,
    pub wire: Wire,
    /// A room event (fanout), as opposed to a direct reply: only these reach the broker.
    pub room_event: bool,
}

/// What the engine asks the shell to do after a command.
#[derive(Debug, Default)]
pub struct Outbox {
    pub sends: Vec<Send>,
    /// Answers for requests waiting elsewhere (HTTP emits).
    pub replies: Vec<(ReplyToken, EmitOutcome)>,
    /// Connections to close: code and reason.
    pub closes: Vec<(ConnId, u16, String)>,
}

/// Limits the engine enforces. Each is configurable (see `docs/CONFIG.md`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Subscriptions one Pact connection may hold.
    pub max_subscriptions: usize,
    /// Live rooms this core may hold; a join that would open one more is refused.
    pub max_rooms: usize,
    /// Property/presence updates (Pact `login`, wsdo `PRESENCE`) per member per window.
    pub presence_updates: u32,
    pub presence_window_ms: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_subscriptions: 256,
            max_rooms: usize::MAX,
            presence_updates: 20,
            presence_window_ms: 10_000,
        }
    }
}

impl Outbox {
    pub fn to_one(&mut self, conn: ConnId, frame: Bytes) {
        self.to_one_wire(conn, Wire::Frame(frame));
    }

    pub fn to_one_wire(&mut self, conn: ConnId, wire: Wire) {
        self.sends.push(Send {
            to: vec![conn],
            wire,
            room_event: false,
        });
    }

    pub fn to_many(&mut self, to: Vec<ConnId>, frame: Bytes) {
        self.to_many_wire(to, Wire::Frame(frame));
    }

    pub fn to_many_wire(&mut self, to: Vec<ConnId>, wire: Wire) {
        if !to.is_empty() {
            self.sends.push(Send {
                to,
                wire,
                room_event: true,
            });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sends.is_empty() && self.replies.is_empty() && self.closes.is_empty()
    }
}

/// Who is joining: decided by the connection's core (identity, transport facts).
#[derive(Debug, Clone)]
pub struct Joiner {
    /// The public id: Pact's `profile.id`, websockets.do's `clientID`, jac's `client_id`,
    /// Lambda's `senderId`.
    pub id: String,
    /// Whom votes count for: the JWT `sub` when authenticated, else `id`.
    pub user_id: String,
    pub dialect: Dialect,
    pub role: Role,
    /// Pact's `profile.connectionDetails`.
    pub details: Value,
    /// Why the connection's token was refused, told right after the greeting (Pact
    /// `error` after `profile`, wsdo `ERROR` after `CONNECTED`).
    pub token_error: Option<String>,
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
    /// Acknowledges the emit with this event id (native extension).
    Ack(String),
    /// A client heartbeat; only a `ref` makes it answer.
    Ping,
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
    pub history_size: usize,
    pub reply: ReplyToken,
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
    /// wsdo `PRESENCE`: replace the member's presence.
    Presence {
        conn: ConnId,
        room: String,
        presence: Map<String, Value>,
    },
    /// wsdo `ACK`.
    Ack {
        conn: ConnId,
        room: String,
        event_id: String,
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
        /// Lambda's `senderId` of the message: the sender's public id, or `"server"`.
        sender_label: String,
        data: Value,
        event_id: String,
    },
    /// Pact `authenticate` succeeded: the connection becomes an admin.
    SetRole {
        conn: ConnId,
        room: String,
        role: Role,
        reference: Option<Value>,
    },
    /// Time passes: expire ack deadlines.
    Tick,
}

pub struct Engine {
    /// Live rooms: those with at least one member. Durable state of the others is in `store`.
    rooms: AHashMap<String, Room>,
    /// Emit histories of rooms with no members, kept until a member comes back.
    idle_history: AHashMap<String, std::collections::VecDeque<Value>>,
    acks: AckTracker,
    store: Box<dyn StateStore>,
    broker: Box<dyn Broker>,
    limits: Limits,
}

impl Engine {
    pub fn new(store: Box<dyn StateStore>, broker: Box<dyn Broker>) -> Engine {
        Engine {
            rooms: AHashMap::new(),
            idle_history: AHashMap::new(),
            acks: AckTracker::default(),
            store,
            broker,
            limits: Limits::default(),
        }
    }

    /// The same engine with these limits.
    pub fn with_limits(mut self, limits: Limits) -> Engine {
        self.limits = limits;
        self
    }

    /// Applies `command` at time `now_ms`, leaving what to send in `out`.
    pub fn handle(&mut self, command: Command, now_ms: u64, out: &mut Outbox) {
        let first_send = out.sends.len();
        let room_name = match &command {
            Command::Join { room, .. }
            | Command::Leave { room, .. }
            | Command::Pact { room, .. }
            | Command::Presence { room, .. }
            | Command::Ack { room, .. }
            | Command::Emit { room, .. }
            | Command::Broadcast { room, .. }
            | Command::SetConfig { room, .. }
            | Command::Publish { room, .. }
            | Command::SetRole { room, .. } => room.clone(),
            Command::Tick => {
                self.acks.expire(now_ms, &mut out.replies);
                return;
            }
        };
        match command {
            Command::Join { conn, room, joiner } => {
                if !self.rooms.contains_key(&room) && self.rooms.len() >= self.limits.max_rooms {
                    let reason = "too many rooms on this server: try again later";
                    if joiner.dialect == Dialect::Lambda {
                        out.to_one(conn, crate::dialect::lambda::join_failure());
                    } else {
                        out.closes.push((conn, 1013, reason.to_owned()));
                    }
                    return;
                }
                let store = self.store.as_mut();
                let live = live_room(&mut self.rooms, &mut self.idle_history, store, &room);
                live.last_activity_ms = now_ms;
                live.join(conn, joiner, store, out);
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
                request: PactRequest::Ack(event_id),
            } => {
                if self
                    .rooms
                    .get(&room)
                    .is_some_and(|r| r.member_id(conn).is_some())
                {
                    self.ack(&room, conn, &event_id, out);
                    if let Some(reference) = reference {
                        out.to_one(conn, pact::ok(&reference));
                    }
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
                    let context = room::Context {
                        now_ms,
                        limits: &self.limits,
                    };
                    live.apply(
                        conn,
                        reference.as_ref(),
                        request,
                        context,
                        self.store.as_mut(),
                        out,
                    );
                }
            }
            Command::Presence {
                conn,
                room,
                presence,
            } => {
                if let Some(live) = self.rooms.get_mut(&room) {
                    live.last_activity_ms = now_ms;
                    let context = room::Context {
                        now_ms,
                        limits: &self.limits,
                    };
                    live.set_presence(conn, presence, context, out);
                }
            }
            Command::Ack {
                conn,
                room,
                event_id,
            } => self.ack(&room, conn, &event_id, out),
            Command::Emit { room, emit } => self.emit(&room, emit, now_ms, out),
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
            Command::Publish {
                room,
                sender,
                sender_label,
                data,
                event_id,
            } => {
                if let Some(live) = self.rooms.get_mut(&room) {
                    live.publish(sender, &sender_label, &data, &event_id, out);
                }
            }
            Command::SetRole {
                conn,
                room,
                role,
                reference,
            } => {
                if let Some(live) = self.rooms.get_mut(&room) {
                    live.set_role(conn, role, reference.as_ref(), out);
                }
            }
            Command::Tick => unreachable!("handled above"),
        }
        for send in out.sends[first_send..].iter().filter(|s| s.room_event) {
            self.broker.publish(&room_name, send.wire.bytes());
        }
        if self.rooms.get(&room_name).is_some_and(Room::is_empty) {
            let mut room = self.rooms.remove(&room_name).expect("checked above");
            let history = room.take_history();
            if !history.is_empty() {
                self.idle_history.insert(room_name, history);
            }
        }
    }

    fn emit(&mut self, room: &str, emit: Emit, now_ms: u64, out: &mut Outbox) {
        let store = self.store.as_mut();
        let live = live_room(&mut self.rooms, &mut self.idle_history, store, room);
        let sent = live.emit(&emit, out);
        let outcome = match sent {
            Err(refusal) => refusal,
            Ok(sent) if emit.require_ack && !sent.is_empty() => {
                let ids = sent.into_iter().map(|(_, id)| id).collect();
                self.acks.wait(
                    emit.event_id,
                    emit.reply,
                    ids,
                    now_ms + emit.ack_timeout_ms,
                    now_ms,
                );
                return;
            }
            Ok(_) if emit.require_ack => EmitOutcome::Acked {
                event_id: emit.event_id,
                acked: Vec::new(),
            },
            Ok(sent) => EmitOutcome::Sent {
                event_id: emit.event_id,
                clients: sent.into_iter().map(|(_, id)| id).collect(),
            },
        };
        out.replies.push((emit.reply, outcome));
    }

    fn ack(&mut self, room: &str, conn: ConnId, event_id: &str, out: &mut Outbox) {
        let Some(live) = self.rooms.get(room) else {
            return;
        };
        let (Some(id), Some(dialect)) = (live.member_id(conn), live.dialect_of(conn)) else {
            return;
        };
        let (expected, done) = self.acks.ack(event_id, id);
        if expected && dialect == Dialect::Wsdo {
            let payload = serde_json::json!({ "eventID": event_id });
            out.to_one_wire(
                conn,
                Wire::WsdoBody(wsdo::body(wsdo::ACK_RECEIVED, &payload, Default::default())),
            );
        }
        if let Some(reply) = done {
            out.replies.push(reply);
        }
    }

    /// The room's details, whether or not it has members now.
    pub fn details(&mut self, name: &str) -> RoomDetails {
        match self.rooms.get(name) {
            Some(room) => room.details(),
            None => Room::load(name, self.store.load(name)).details(),
        }
    }

    /// The room's last `limit` emitted payloads, oldest first.
    pub fn history(&self, name: &str, limit: usize) -> Vec<Value> {
        match self.rooms.get(name) {
            Some(room) => room.history(limit),
            None => self.idle_history.get(name).map_or_else(Vec::new, |h| {
                h.iter()
                    .skip(h.len().saturating_sub(limit))
                    .cloned()
                    .collect()
            }),
        }
    }

    /// Number of live rooms on this core.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Number of emits waiting for acks.
    pub fn pending_acks(&self) -> usize {
        self.acks.len()
    }
}

/// The live room `name`, loaded from the store (and its idle history) if need be.
fn live_room<'a>(
    rooms: &'a mut AHashMap<String, Room>,
    idle_history: &mut AHashMap<String, std::collections::VecDeque<Value>>,
    store: &mut dyn StateStore,
    name: &str,
) -> &'a mut Room {
    if !rooms.contains_key(name) {
        let mut room = Room::load(name, store.load(name));
        if let Some(history) = idle_history.remove(name) {
            room.restore_history(history);
        }
        rooms.insert(name.to_owned(), room);
    }
    rooms.get_mut(name).expect("inserted above")
}

#[cfg(test)]
mod tests;
