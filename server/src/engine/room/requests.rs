//! A member's requests to its room: properties, subscriptions, chat, votes, counters and the
//! admin requests, each answered by exactly one reply when it carries a `ref`.

use super::{poll_topic, Context, Room};
use crate::engine::command::Request;
use crate::engine::event::{ErrorCode, PollKind, PresenceChange, Reply, RoomEvent};
use crate::engine::outbox::{Change, Op, Outbox, Scope, Send};
use crate::engine::subscriptions::Topic;
use crate::ids::ConnId;
use rookery_protocol::pact::{public_properties, types, PublicUser, Role};
use serde_json::{Map, Value};
use std::borrow::Cow;

pub(super) type Refusal = (ErrorCode, String);

impl Room {
    /// Applies one request from `conn`. A request with `reference` gets exactly one direct
    /// reply carrying it: its natural reply, `Ok`, or `Error`.
    pub fn apply(
        &mut self,
        conn: ConnId,
        reference: Option<Value>,
        request: Request,
        context: Context<'_>,
        out: &mut Outbox,
    ) {
        let Some(codec) = self.members.get(&conn).map(|m| m.codec) else {
            // The connection left (or never joined) while this request was in flight.
            return;
        };
        let proposed = out.proposals.len();
        match self.apply_request(conn, &reference, request, context, out) {
            Ok(true) => {}
            Ok(false) => {
                if let Some(reference) = reference {
                    let ok = Send::Reply {
                        to: conn,
                        codec,
                        reply: Reply::Ok { reference },
                    };
                    // With a sequencer the request is applied when its event comes back.
                    match out.proposals[proposed..].last_mut() {
                        Some(proposal) => proposal.replies.push(ok),
                        None => out.sends.push(ok),
                    }
                }
            }
            Err((code, message)) => {
                let error = Reply::Error {
                    reference,
                    code,
                    message,
                };
                out.reply(conn, codec, error);
            }
        }
    }

    /// Applies a request; `Ok(true)` when it already gave its natural reply.
    fn apply_request(
        &mut self,
        conn: ConnId,
        reference: &Option<Value>,
        request: Request,
        context: Context<'_>,
        out: &mut Outbox,
    ) -> Result<bool, Refusal> {
        let limits = context.limits;
        match request {
            Request::Login(properties) => {
                if !self.take_update(conn, context) {
                    return Err((ErrorCode::RateLimited, "too many logins: slow down".into()));
                }
                let pos = self.wire_pos();
                let member = self.members.get_mut(&conn).expect("checked by apply");
                member.set_properties(properties.clone());
                let reply = Reply::Profile {
                    reference: reference.clone(),
                    profile: member.profile(pos),
                };
                out.reply(conn, member.codec, reply);
                self.set_properties(conn, properties, context, out);
                Ok(true)
            }
            Request::Profile => {
                let member = &self.members[&conn];
                let reply = Reply::Profile {
                    reference: reference.clone(),
                    profile: member.profile(self.wire_pos()),
                };
                out.reply(conn, member.codec, reply);
                Ok(true)
            }
            Request::Subscribe(topic) => {
                let subscriptions = &self.members[&conn].subscriptions;
                if subscriptions.len() >= limits.max_subscriptions && !subscriptions.has(&topic) {
                    let max = limits.max_subscriptions;
                    let message = format!("at most {max} subscriptions per connection");
                    return Err((ErrorCode::LimitExceeded, message));
                }
                let member = self.members.get_mut(&conn).expect("checked by apply");
                member.subscriptions.subscribe(&topic);
                self.members_changed();
                self.send_snapshot(conn, &topic, out);
                Ok(false)
            }
            Request::Unsubscribe(topic) => {
                let member = self.members.get_mut(&conn).expect("checked by apply");
                member.subscriptions.unsubscribe(&topic);
                self.members_changed();
                Ok(false)
            }
            Request::Chat(message) => {
                let sender = &self.members[&conn];
                let event = RoomEvent::Chat {
                    message: message.into(),
                    user: PublicUser {
                        suffix: sender.suffix,
                        properties: public_properties(sender.properties()),
                    },
                };
                let scope = Scope::Topic {
                    kind: Cow::Borrowed(types::CHAT),
                    id: None,
                };
                self.fan_out(event, scope, context, out);
                Ok(false)
            }
            Request::Vote {
                ephemeral,
                poll,
                answer,
            } => {
                self.vote(conn, ephemeral, poll, answer, context, out);
                Ok(false)
            }
            Request::Counter { counter, delta } => {
                let current = self.counters.get(&counter).copied().unwrap_or_default();
                let Some(value) = current.checked_add(delta) else {
                    return Err((ErrorCode::InvalidData, "counter overflow".into()));
                };
                let value = value.normalize();
                let scope = Scope::Topic {
                    kind: Cow::Borrowed(types::COUNTER),
                    id: Some(counter.clone()),
                };
                if context.sequencer {
                    let op = Op::Counter {
                        id: counter.clone(),
                        expected: current,
                        delta,
                    };
                    let event = RoomEvent::Counter { id: counter, value };
                    self.propose(event, scope, op, context, out);
                    return Ok(false);
                }
                self.counters.insert(counter.clone(), value);
                out.changes.push(Change::Counter {
                    room: self.name.clone(),
                    counter: counter.clone(),
                    value,
                });
                let event = RoomEvent::Counter { id: counter, value };
                self.fan_out(event, scope, context, out);
                Ok(false)
            }
            Request::Config(config) => {
                self.require_admin(conn, "config")?;
                self.set_config(config, context, out);
                Ok(false)
            }
            Request::Broadcast { to, kind, data } => {
                self.require_admin(conn, "broadcast")?;
                self.broadcast(to.as_deref(), kind, data, context, out);
                Ok(false)
            }
            Request::Resume { epoch, seq } => {
                self.resume(conn, reference, &epoch, seq, context, out)?;
                Ok(true)
            }
            Request::History { limit, before } => {
                self.read_history(conn, reference, limit, before, context, out);
                Ok(true)
            }
            // Acks are the engine's (they may finish an emit); pings only answer.
            Request::Ping | Request::Ack(_) => Ok(false),
        }
    }

    fn require_admin(&self, conn: ConnId, what: &str) -> Result<(), Refusal> {
        if self.members[&conn].role == Role::Admin {
            Ok(())
        } else {
            let message = format!("{what} needs the admin role");
            Err((ErrorCode::Forbidden, message))
        }
    }

    /// Casts (or moves) the member's user's vote and sends the poll's new tally.
    fn vote(
        &mut self,
        conn: ConnId,
        ephemeral: bool,
        poll: String,
        answer: String,
        context: Context<'_>,
        out: &mut Outbox,
    ) {
        let user = self.members[&conn].user_id().to_owned();
        let kind = if ephemeral {
            PollKind::Ephemeral
        } else {
            PollKind::Durable
        };
        if context.sequencer {
            let event = RoomEvent::Poll {
                kind,
                id: poll.clone(),
                stats: Default::default(),
            };
            let scope = Scope::Topic {
                kind: Cow::Borrowed(poll_topic(kind)),
                id: Some(poll.clone()),
            };
            let op = Op::Vote {
                kind,
                poll,
                user,
                answer: Some(answer),
            };
            return self.propose(event, scope, op, context, out);
        }
        let polls = match kind {
            PollKind::Durable => &mut self.polls,
            PollKind::Ephemeral => &mut self.ephemeral_polls,
        };
        if !polls.entry(poll.clone()).or_default().vote(&user, &answer) {
            return;
        }
        if kind == PollKind::Durable {
            out.changes.push(Change::Vote {
                room: self.name.clone(),
                poll: poll.clone(),
                user,
                answer: Some(answer),
            });
        }
        self.send_poll_stats(kind, &poll, context, out);
    }

    /// Counts a property/presence update of `conn`; false once the window's allowance is
    /// used up.
    fn take_update(&mut self, conn: ConnId, context: Context<'_>) -> bool {
        let limits = context.limits;
        self.members.get_mut(&conn).is_some_and(|m| {
            m.take_update(
                context.now_ms,
                limits.presence_updates,
                limits.presence_window_ms,
            )
        })
    }

    /// Replaces a member's properties (Pact `login`, wsdo `PRESENCE`) and tells the room.
    fn set_properties(
        &mut self,
        conn: ConnId,
        properties: Map<String, Value>,
        context: Context<'_>,
        out: &mut Outbox,
    ) {
        let Some(member) = self.members.get_mut(&conn) else {
            return;
        };
        member.set_properties(properties);
        let public = member.public();
        let user = member.user_id().to_owned();
        let diff = (PresenceChange::Updated, public, conn, &*user);
        self.presence_changed(diff, None, context, out);
    }

    /// websockets.do `PRESENCE`: the new presence goes to every presence watcher, the
    /// sender included; rate-limited like `login`.
    pub fn set_presence(
        &mut self,
        conn: ConnId,
        presence: Map<String, Value>,
        context: Context<'_>,
        out: &mut Outbox,
    ) {
        let Some(codec) = self.members.get(&conn).map(|m| m.codec) else {
            return;
        };
        if !self.take_update(conn, context) {
            let error = Reply::Error {
                reference: None,
                code: ErrorCode::RateLimited,
                message: "too many presence updates: slow down".into(),
            };
            out.reply(conn, codec, error);
            return;
        }
        self.set_properties(conn, presence, context, out);
    }

    /// Sets a member's role and sends it its new profile (Pact `authenticate`).
    pub fn set_role(
        &mut self,
        conn: ConnId,
        role: Role,
        reference: Option<Value>,
        out: &mut Outbox,
    ) {
        let pos = self.wire_pos();
        if let Some(member) = self.members.get_mut(&conn) {
            member.role = role;
            let reply = Reply::Profile {
                reference,
                profile: member.profile(pos),
            };
            out.reply(conn, member.codec, reply);
        }
    }

    /// The current state of what `topic` covers, sent to a new subscriber at once.
    pub(super) fn send_snapshot(&self, conn: ConnId, topic: &Topic, out: &mut Outbox) {
        let codec = self.members[&conn].codec;
        let matches = |id: &str| topic.id.as_deref().is_none_or(|wanted| wanted == id);
        let kind = match topic.kind.as_str() {
            types::POLL => Some(PollKind::Durable),
            types::EPHEMERAL_POLL => Some(PollKind::Ephemeral),
            _ => None,
        };
        if let Some(kind) = kind {
            debug_assert_eq!(poll_topic(kind), topic.kind);
            for id in self.polls(kind).keys().filter(|id| matches(id)) {
                out.reply(conn, codec, Reply::Snapshot(self.poll_event(kind, id)));
            }
            return;
        }
        match topic.kind.as_str() {
            types::COUNTER => {
                for (id, value) in self.counters.iter().filter(|(id, _)| matches(id)) {
                    let event = RoomEvent::Counter {
                        id: id.clone(),
                        value: *value,
                    };
                    out.reply(conn, codec, Reply::Snapshot(event));
                }
            }
            types::PRESENCE => out.reply(conn, codec, Reply::Presence(self.presence())),
            _ => {}
        }
    }
}
