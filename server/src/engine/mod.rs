//! The room engine: every room's authoritative state, with no IO, no clock of its own and no
//! wire format.
//!
//! One [`Engine`] runs on each core and owns the rooms whose names hash to that core. The
//! shell feeds it [`Command`]s (from connections, HTTP requests, the store and the broker)
//! with the current time, and carries out the effects it leaves in the [`Outbox`]: room
//! events in no dialect with their audiences, replies, state changes to commit, rooms to
//! load, events to publish. Tests drive it directly, with no sockets and no sleeps.
//!
//! The engine never calls the store: a room it does not hold is asked for (`Outbox::loads`)
//! and the commands for it wait until the shell answers with [`Command::Loaded`].

pub mod command;
pub mod emit;
pub mod event;
pub mod history;
pub mod inspect;
pub mod member;
pub mod outbox;
pub mod payload;
pub mod poll;
pub mod room;
pub mod snapshot;
pub mod subscriptions;

pub use command::{Command, Emit, LoadResult, Request};
pub use event::{
    ErrorCode, Payload, PollKind, Position, PresenceChange, Reply, RoomEvent, Sequenced,
};
pub use history::{Entry, History, HistoryQuery, Read, ReadFor};
pub use member::{CodecId, Identity, Joiner, Traits};
pub use outbox::{Audience, Change, Fill, Op, Outbox, Proposal, Published, Scope, Send};
pub use room::RoomDetails;
pub use snapshot::RoomSnapshot;

use crate::ids::ConnId;
use ahash::AHashMap;
use emit::{AckTracker, EmitOutcome};
use room::{Context, Room};

/// Limits the engine enforces. Each is configurable (see `docs/CONFIG.md`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// Live rooms this core may hold; a join that would open one more is refused.
    pub max_rooms: usize,
    /// Property/presence updates (Pact `login`, wsdo `PRESENCE`) per member per window.
    pub presence_updates: u32,
    pub presence_window_ms: u64,
    /// Events a room's history keeps (a resume further back than this reloads instead).
    pub history_size: usize,
    /// How long history events count, in ms (0: no age bound).
    pub history_ttl_ms: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_subscriptions: 256,
            max_rooms: usize::MAX,
            presence_updates: 20,
            presence_window_ms: 10_000,
            history_size: 100,
            history_ttl_ms: 0,
        }
    }
}

/// Close code and reason for a join the store could not serve.
const UNAVAILABLE: (u16, &str) = (1011, "room state unavailable: try again later");

pub struct Engine {
    /// Live rooms: those with members (or in the middle of a command). The durable state of
    /// the others is in the store.
    rooms: AHashMap<String, Room>,
    /// Rooms asked of the store, with the commands waiting for them, in order.
    loading: AHashMap<String, Vec<Command>>,
    acks: AckTracker,
    limits: Limits,
    /// Copy events into `Outbox::published` for a broker (off on a single node).
    broker_feed: bool,
    /// Lasting events are decided by a shared sequencer (`--engine redis`).
    sequencer: bool,
    /// State of the generator of new epochs (seeded by the shell, so tests are repeatable).
    epoch_state: u64,
    /// Observers of rooms (the console's live tail, `inspect.rs`): they get every event of
    /// the room without being members. Empty unless a console tails a room.
    observers: AHashMap<String, Vec<(ConnId, CodecId)>>,
    /// The room name of the command being handled, kept after the command is applied (to
    /// unload the room if it emptied): a buffer reused from command to command rather than
    /// a string made for each.
    name: String,
}

impl Engine {
    /// An engine whose new epochs come from `seed`.
    pub fn new(seed: u64) -> Engine {
        Engine {
            rooms: AHashMap::new(),
            loading: AHashMap::new(),
            acks: AckTracker::default(),
            limits: Limits::default(),
            broker_feed: false,
            sequencer: false,
            epoch_state: seed,
            observers: AHashMap::new(),
            name: String::new(),
        }
    }

    /// The same engine with these limits.
    pub fn with_limits(mut self, limits: Limits) -> Engine {
        self.limits = limits;
        self
    }

    /// The same engine, copying every event it makes into `Outbox::published`.
    pub fn with_broker_feed(mut self) -> Engine {
        self.broker_feed = true;
        self
    }

    /// The same engine, with lasting events decided by a sequencer shared with other nodes
    /// (Redis): they go to `Outbox::proposals`, and rooms deliver them when they come back
    /// as `Command::Remote`, in `seq` order, asking for fills of gaps (`Outbox::fills`).
    pub fn with_sequencer(mut self) -> Engine {
        self.sequencer = true;
        self
    }

    /// Applies `command` at time `now_ms`, leaving what to do in `out`.
    pub fn handle(&mut self, command: Command, now_ms: u64, out: &mut Outbox) {
        if let Command::RemoteAck {
            event_id, client, ..
        } = &command
        {
            // Another node's member acked an emit: this node's tracker counts it if the
            // emit is this node's.
            let (_, done) = self.acks.ack(event_id, client);
            out.outcomes.extend(done);
            return;
        }
        if let Command::Resync = command {
            // The sequencer's stream may have moved on meanwhile: every live room reads
            // what it missed.
            let context = Context {
                now_ms,
                limits: &self.limits,
                broker_feed: self.broker_feed,
                sequencer: self.sequencer,
                observers: &[],
            };
            for room in self.rooms.values_mut() {
                room.ask_fill(out);
                room.announce_members(context, out);
            }
            return;
        }
        let Some(room) = command.room() else {
            self.acks.expire(now_ms, &mut out.outcomes);
            return;
        };
        // Taken, not borrowed: `self` is changed below (a command handled from within this
        // one takes an empty buffer).
        let mut name = std::mem::take(&mut self.name);
        name.clear();
        name.push_str(room);
        if let Command::Loaded { room, result } = command {
            return self.loaded(room, result, now_ms, out);
        }
        if let Command::Suffixes { room, block } = command {
            return self.suffixes(room, block, now_ms, out);
        }
        if let Some(waiting) = self.loading.get_mut(&name) {
            waiting.push(command);
            return;
        }
        // With a sequencer, what sends into a room is proposed even when none of its
        // members is here: the room is made live for it (its members may be elsewhere).
        let sends_in = self.sequencer
            && matches!(
                command,
                Command::Broadcast { .. } | Command::Publish { .. } | Command::SetConfig { .. }
            );
        if !self.rooms.contains_key(&name)
            && (sends_in || matches!(command, Command::Join { .. } | Command::Emit { .. }))
        {
            if let Command::Join { conn, joiner, .. } = &command {
                if self.rooms.len() + self.loading.len() >= self.limits.max_rooms {
                    let reason = "too many rooms on this server: try again later".to_owned();
                    return refuse_join(*conn, joiner, 1013, reason, out);
                }
            }
            self.loading.insert(name.clone(), vec![command]);
            out.loads.push(name);
            return;
        }
        if matches!(command, Command::Join { .. })
            && self.rooms.get(&name).is_some_and(Room::suffixes_used_up)
        {
            // Its block of suffixes is used up: this join and what follows wait for more.
            self.loading.insert(name.clone(), vec![command]);
            out.suffixes.push(name);
            return;
        }
        self.apply(command, now_ms, out);
        self.unload_if_empty(&name, out);
        self.name = name;
    }

    /// The sequencer answered a room's request for suffixes: the commands that waited go
    /// on (joins are refused if there are none).
    fn suffixes(
        &mut self,
        name: String,
        block: Result<(u64, u64), String>,
        now_ms: u64,
        out: &mut Outbox,
    ) {
        let waiting = self.loading.remove(&name).unwrap_or_default();
        match (block, self.rooms.get_mut(&name)) {
            (Ok((from, until)), Some(room)) => {
                room.take_suffixes(from, until);
                for command in waiting {
                    self.handle(command, now_ms, out);
                }
            }
            (result, _) => {
                if let Err(error) = result {
                    tracing::error!(room = %name, %error, "no suffixes for a room");
                }
                for command in waiting {
                    match command {
                        Command::Join { conn, joiner, .. } => {
                            let (code, reason) = UNAVAILABLE;
                            refuse_join(conn, &joiner, code, reason.to_owned(), out);
                        }
                        command => self.handle(command, now_ms, out),
                    }
                }
            }
        }
        self.unload_if_empty(&name, out);
    }

    /// Drops the room `name` if nobody is in it, keeping its position for its next life.
    fn unload_if_empty(&mut self, name: &str, out: &mut Outbox) {
        if self.rooms.get(name).is_some_and(Room::is_empty) {
            let room = self.rooms.remove(name).expect("checked above");
            out.changes.push(room.position_change());
            if self.sequencer {
                out.idle.push(room.name);
            }
        }
    }

    /// The store answered: the room goes live and its waiting commands are applied.
    fn loaded(&mut self, name: String, result: LoadResult, now_ms: u64, out: &mut Outbox) {
        let waiting = self.loading.remove(&name).unwrap_or_default();
        match result {
            Ok(snapshot) => {
                let room = Room::load(&name, snapshot, || self.new_epoch());
                self.rooms.insert(name.clone(), room);
                for command in waiting {
                    self.handle(command, now_ms, out);
                }
                // Nothing may have stayed (every waiting command was a leave, say).
                self.unload_if_empty(&name, out);
            }
            Err(error) => {
                tracing::error!(room = %name, %error, "the store could not load a room");
                for command in waiting {
                    match command {
                        Command::Join { conn, joiner, .. } => {
                            let (code, reason) = UNAVAILABLE;
                            refuse_join(conn, &joiner, code, reason.to_owned(), out);
                        }
                        Command::Emit { emit, .. } => {
                            out.outcomes.push((emit.reply, EmitOutcome::Unavailable));
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    fn apply(&mut self, command: Command, now_ms: u64, out: &mut Outbox) {
        let room = command.room().unwrap_or_default();
        let context = Context {
            now_ms,
            limits: &self.limits,
            broker_feed: self.broker_feed,
            sequencer: self.sequencer,
            observers: inspect::observers_of(&self.observers, room),
        };
        match command {
            Command::Join { conn, room, joiner } => {
                if let Some(live) = self.rooms.get_mut(&room) {
                    live.join(conn, joiner, context, out);
                }
            }
            Command::Request {
                conn,
                room,
                reference,
                request: Request::Ack(event_id),
            } => {
                let Some(live) = self.rooms.get_mut(&room) else {
                    return;
                };
                let Some(member) = live.member(conn) else {
                    return;
                };
                let (codec, client) = (member.codec, member.id().to_owned());
                let (mut expected, done) = self.acks.ack(&event_id, &client);
                if self.sequencer && live.take_awaited_ack(&event_id, conn) {
                    // Delivered here for an emit made here or on another node: the node
                    // that made it counts the ack (its own tracker did, if it is this one).
                    if !expected {
                        live.relay_ack(&event_id, &client, context, out);
                    }
                    expected = true;
                }
                if expected {
                    out.reply(conn, codec, Reply::AckReceived { event_id });
                }
                out.outcomes.extend(done);
                if let Some(reference) = reference {
                    out.reply(conn, codec, Reply::Ok { reference });
                }
            }
            Command::Emit { room, emit } => self.emit(&room, emit, now_ms, out),
            Command::SetConfig { room, config } => match self.rooms.get_mut(&room) {
                Some(live) => live.set_config(config, context, out),
                None => out.changes.push(Change::Config { room, config }),
            },
            command => {
                let Some(live) = command.room().and_then(|r| self.rooms.get_mut(r)) else {
                    return;
                };
                match command {
                    Command::Leave { conn, .. } => live.leave(conn, context, out),
                    Command::Request {
                        conn,
                        reference,
                        request,
                        ..
                    } => live.apply(conn, reference, request, context, out),
                    Command::Presence { conn, presence, .. } => {
                        live.set_presence(conn, presence, context, out)
                    }
                    Command::Broadcast { kind, data, to, .. } => {
                        live.broadcast(to.as_deref(), kind, data, context, out)
                    }
                    Command::Publish {
                        sender,
                        sender_label,
                        data,
                        event_id,
                        ..
                    } => live.publish(sender, sender_label, data, event_id, context, out),
                    Command::SetRole {
                        conn,
                        role,
                        reference,
                        ..
                    } => live.set_role(conn, role, reference, out),
                    Command::Remote(published) => live.deliver_remote(published, context, out),
                    Command::Filled {
                        oldest, complete, ..
                    } => live.filled(oldest, complete, context, out),
                    Command::Read { read, result } => live.read_done(read, result, out),
                    Command::Join { .. }
                    | Command::Emit { .. }
                    | Command::SetConfig { .. }
                    | Command::Loaded { .. }
                    | Command::Resync
                    | Command::Suffixes { .. }
                    | Command::RemoteAck { .. }
                    | Command::Tick => unreachable!("handled above"),
                }
            }
        }
    }

    fn emit(&mut self, room: &str, emit: Emit, now_ms: u64, out: &mut Outbox) {
        let context = Context {
            now_ms,
            limits: &self.limits,
            broker_feed: self.broker_feed,
            sequencer: self.sequencer,
            observers: inspect::observers_of(&self.observers, room),
        };
        let Some(live) = self.rooms.get_mut(room) else {
            return;
        };
        let proposed = out.proposals.len();
        let outcome = match live.emit(&emit, context, out) {
            Err(refusal) => refusal,
            Ok(sent) if emit.require_ack && !sent.is_empty() => {
                let ids = sent;
                let deadline = now_ms + emit.ack_timeout_ms;
                self.acks
                    .wait(emit.event_id, emit.reply, ids, deadline, now_ms);
                return;
            }
            Ok(_) if emit.require_ack => EmitOutcome::Acked {
                event_id: emit.event_id,
                acked: Vec::new(),
            },
            Ok(sent) => EmitOutcome::Sent {
                event_id: emit.event_id,
                clients: sent,
            },
        };
        // With a sequencer, sent once the sequencer took it.
        match out.proposals[proposed..].last_mut() {
            Some(proposal) => proposal.outcomes.push((emit.reply, outcome)),
            None => out.outcomes.push((emit.reply, outcome)),
        }
    }

    /// A fresh epoch: 16 hex digits from the seeded generator (splitmix64).
    fn new_epoch(&mut self) -> String {
        self.epoch_state = self.epoch_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.epoch_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        format!("{:016x}", z ^ (z >> 31))
    }

    /// The details of a live room; `None` when the room is not live here (its state is the
    /// store's then: see [`RoomDetails::of_snapshot`]).
    pub fn details(&self, name: &str) -> Option<RoomDetails> {
        self.rooms.get(name).map(Room::details)
    }

    /// A live room's stream position.
    pub fn position(&self, name: &str) -> Option<Position> {
        self.rooms.get(name).map(Room::position)
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

/// Refuses a join: a member that stays when refused is told so, the others are closed.
fn refuse_join(conn: ConnId, joiner: &Joiner, code: u16, reason: String, out: &mut Outbox) {
    if joiner.traits.stays_when_refused {
        out.reply(conn, joiner.codec, Reply::JoinRefused { reason });
    } else {
        out.closes.push((conn, code, reason));
    }
}

impl RoomDetails {
    /// The details of a room that is not live, from what the store kept of it.
    pub fn of_snapshot(name: &str, snapshot: Option<RoomSnapshot>) -> RoomDetails {
        Room::load(name, snapshot, String::new).details()
    }
}

#[cfg(test)]
mod sequencer_tests;
#[cfg(test)]
mod tests;
