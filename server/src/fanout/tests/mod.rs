//! Rooms on the wire: the engine, the in-memory store and the codecs together, with no
//! sockets and no sleeps (time is an argument). What each connection receives is asserted
//! as the JSON its dialect's clients see.

mod dialects;
mod pact;
mod resume;

use crate::dialect::{wsdo, Dialect, Wire};
use crate::engine::emit::{EmitOutcome, ReplyToken, Targets};
use crate::engine::subscriptions::Topic;
use crate::engine::{self, Command, Emit, Identity, Joiner, Outbox, Request, RoomDetails};
use crate::ids::ConnId;
use crate::store::{HistoryQuery, MemoryStore, StateStore};
use bytes::Bytes;
use rookery_protocol::pact::Role;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::str::FromStr;
use std::sync::Arc;

const ROOM: &str = "lobby";

/// An engine wired to a store as the shell wires them: changes are committed and loads
/// answered before the outbox is looked at.
struct Engine {
    engine: engine::Engine,
    store: MemoryStore,
    /// Reads of history are kept here instead of answered at once (see `answer_reads`).
    hold_reads: bool,
    held_reads: Vec<engine::Read>,
}

impl Engine {
    fn handle(&mut self, command: Command, now: u64, out: &mut Outbox) {
        self.engine.handle(command, now, out);
        loop {
            self.store
                .commit(&std::mem::take(&mut out.changes))
                .unwrap();
            for read in std::mem::take(&mut out.reads) {
                if self.hold_reads {
                    self.held_reads.push(read);
                } else {
                    self.answer(read, now, out);
                }
            }
            if out.loads.is_empty() {
                break;
            }
            for room in std::mem::take(&mut out.loads) {
                let result = self.store.load(&room).map_err(|e| e.to_string());
                self.engine
                    .handle(Command::Loaded { room, result }, now, out);
            }
        }
    }

    fn details(&mut self, room: &str) -> RoomDetails {
        match self.engine.details(room) {
            Some(details) => details,
            None => RoomDetails::of_snapshot(room, self.store.load(room).unwrap()),
        }
    }

    /// The room's last `limit` emitted payloads, oldest first (websockets.do's `/history`).
    fn history(&mut self, room: &str, limit: usize) -> Vec<Value> {
        let page = self.store.history(room, HistoryQuery::last(limit)).unwrap();
        crate::store::emitted(page)
    }

    /// Answers one read from the store, as the shell does.
    fn answer(&mut self, read: engine::Read, now: u64, out: &mut Outbox) {
        let result = self
            .store
            .history(&read.room, read.query)
            .map_err(|e| e.to_string());
        self.handle(Command::Read { read, result }, now, out);
    }

    /// Answers the reads held back so far.
    fn answer_reads(&mut self, now: u64) -> Outbox {
        let mut out = Outbox::default();
        for read in std::mem::take(&mut self.held_reads) {
            self.answer(read, now, &mut out);
        }
        out
    }

    fn room_count(&self) -> usize {
        self.engine.room_count()
    }

    fn pending_acks(&self) -> usize {
        self.engine.pending_acks()
    }
}

/// An engine with a store keeping 2 history events per room.
fn engine() -> Engine {
    Engine {
        engine: engine::Engine::new(1),
        store: MemoryStore::new(2),
        hold_reads: false,
        held_reads: Vec::new(),
    }
}

fn conn(n: u64) -> ConnId {
    ConnId::new((n % 2) as usize, n)
}

/// Decodes the JSON payload of a frame built by `frame::text` (the first, when several).
fn json_of(frame: &Bytes) -> Vec<Value> {
    let mut values = Vec::new();
    let mut rest = &frame[..];
    while !rest.is_empty() {
        let len = rest[1] & 0x7f;
        let (start, len) = match len {
            126 => (4, u16::from_be_bytes([rest[2], rest[3]]) as usize),
            127 => (
                10,
                u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize,
            ),
            n => (2, n as usize),
        };
        values.push(serde_json::from_slice(&rest[start..start + len]).unwrap());
        rest = &rest[start + len..];
    }
    values
}

/// Every frame of `out`, encoded as the shell encodes it, with its recipients.
fn frames(out: &Outbox) -> Vec<(Wire, Vec<ConnId>)> {
    let mut encoded = Vec::new();
    for send in out.sends.iter().cloned() {
        crate::fanout::encode(send, &mut encoded);
    }
    encoded
}

/// Every event `who` received in `out`, as JSON, in order. wsdo bodies are completed with
/// `who`'s tail, as its core would.
fn received(out: &Outbox, who: ConnId) -> Vec<Value> {
    frames(out)
        .into_iter()
        .filter(|(_, to)| to.contains(&who))
        .flat_map(|(wire, _)| match wire {
            Wire::Frame(frame) => json_of(&frame),
            Wire::Body(body) => {
                let (_, tail) = wsdo::finish(&body, &wsdo_id(who), 0);
                let mut text = body.to_vec();
                text.extend_from_slice(&tail);
                vec![serde_json::from_slice(&text).unwrap()]
            }
        })
        .collect()
}

/// Whether `out` sends nothing, answers nothing and closes nothing.
fn nothing(out: &Outbox) -> bool {
    frames(out).is_empty() && out.outcomes.is_empty() && out.closes.is_empty()
}

fn joiner(user: &str, dialect: Dialect, role: Role) -> Joiner {
    Joiner {
        identity: Arc::new(Identity {
            public_id: user.into(),
            user: None,
        }),
        codec: dialect.codec_id(),
        traits: dialect.traits(),
        role,
        details: None,
        token_error: None,
    }
}

fn join(e: &mut Engine, c: ConnId, user: &str) -> Outbox {
    join_as(e, c, user, Role::User)
}

fn join_as(e: &mut Engine, c: ConnId, user: &str, role: Role) -> Outbox {
    join_dialect(e, c, user, Dialect::Pact, role)
}

fn join_dialect(e: &mut Engine, c: ConnId, user: &str, dialect: Dialect, role: Role) -> Outbox {
    let mut out = Outbox::default();
    e.handle(
        Command::Join {
            conn: c,
            room: ROOM.into(),
            joiner: joiner(user, dialect, role),
        },
        0,
        &mut out,
    );
    out
}

/// A wsdo member's clientID in these tests: `client_<n>` for `conn(n)`.
fn wsdo_id(c: ConnId) -> String {
    format!("client_{}", c.0 & 0xFFFF_FFFF_FFFF)
}

fn join_wsdo(e: &mut Engine, c: ConnId) -> Outbox {
    join_dialect(e, c, &wsdo_id(c), Dialect::Wsdo, Role::User)
}

fn emit(e: &mut Engine, targets: Targets, require_ack: bool, now: u64) -> Outbox {
    let mut out = Outbox::default();
    e.handle(
        Command::Emit {
            room: ROOM.into(),
            emit: Emit {
                payload: json!({"hello":"world"}),
                targets,
                require_ack,
                event_id: "evt_test0001".into(),
                seed: 42,
                ack_timeout_ms: 5000,
                reply: ReplyToken(7),
            },
        },
        now,
        &mut out,
    );
    out
}

fn req(e: &mut Engine, c: ConnId, reference: Option<Value>, request: Request) -> Outbox {
    req_at(e, c, reference, request, 1)
}

/// A member's request handled at time `now`.
fn req_at(
    e: &mut Engine,
    c: ConnId,
    reference: Option<Value>,
    request: Request,
    now: u64,
) -> Outbox {
    let mut out = Outbox::default();
    let command = Command::Request {
        conn: c,
        room: ROOM.into(),
        reference,
        request,
    };
    e.handle(command, now, &mut out);
    out
}

fn ack(e: &mut Engine, c: ConnId, now: u64) -> Outbox {
    let mut out = Outbox::default();
    e.handle(
        Command::Request {
            conn: c,
            room: ROOM.into(),
            reference: None,
            request: Request::Ack("evt_test0001".into()),
        },
        now,
        &mut out,
    );
    out
}

fn leave(e: &mut Engine, c: ConnId) -> Outbox {
    let mut out = Outbox::default();
    e.handle(
        Command::Leave {
            conn: c,
            room: ROOM.into(),
        },
        2,
        &mut out,
    );
    out
}

fn sub(e: &mut Engine, c: ConnId, topic: &str) -> Outbox {
    req(e, c, None, Request::Subscribe(Topic::parse(topic)))
}

fn vote(e: &mut Engine, c: ConnId, ephemeral: bool, poll: &str, answer: &str) -> Outbox {
    req(
        e,
        c,
        None,
        Request::Vote {
            ephemeral,
            poll: poll.into(),
            answer: answer.into(),
        },
    )
}

fn count(e: &mut Engine, c: ConnId, id: &str, delta: &str) -> Outbox {
    req(
        e,
        c,
        None,
        Request::Counter {
            counter: id.into(),
            delta: Decimal::from_str(delta).unwrap(),
        },
    )
}

fn publish(e: &mut Engine, sender: Option<ConnId>, label: &str, data: Value) -> Outbox {
    let mut out = Outbox::default();
    e.handle(
        Command::Publish {
            room: ROOM.into(),
            sender,
            sender_label: label.into(),
            data,
            event_id: "evt_pub00001".into(),
        },
        0,
        &mut out,
    );
    out
}
