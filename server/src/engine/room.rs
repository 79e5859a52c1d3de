//! One room's authoritative state and the rules of every Pact feature acting on it.
//!
//! A room lives on the core its name hashes to. Its members may be connected on any core:
//! the room only knows their [`ConnId`]s and hands frames for them to the [`Outbox`].

use super::emit::{sample, EmitOutcome, Targets};
use super::poll::Poll;
use super::store::{RoomSnapshot, StateStore};
use super::subscriptions::{Subscriptions, Topic};
use super::{Emit, Outbox, PactRequest};
use crate::dialect::event::{self, Event};
use crate::dialect::{lambda, pact, wsdo, Dialect, Wire};
use crate::ids::ConnId;
use ahash::AHashMap;
use rookery_protocol::pact::{
    codes, public_properties, types, ChatEvent, CounterValue, Member, PollStats, PresenceDiff,
    PresenceSnapshot, Profile, PublicUser, Role,
};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, VecDeque};

/// The default room config, a JSON object in a string (Pact's README).
pub const DEFAULT_CONFIG: &str = "{}";

/// One connection's membership.
#[derive(Debug)]
pub struct MemberState {
    /// The public id: Pact's `profile.id`, websockets.do's `clientID`.
    pub id: String,
    /// Whom votes count for, when not the public id (the JWT `sub` of a connection whose
    /// public id differs); `None` for the common case, so the id is not stored twice.
    user: Option<String>,
    pub dialect: Dialect,
    pub suffix: u64,
    pub properties: Map<String, Value>,
    pub subscriptions: Subscriptions,
    pub role: Role,
    /// The joiner's connection details as JSON text: a parsed map costs ~600 bytes per
    /// member (a B-tree node), the text ~40, and it is read only for `profile`.
    pub details: Box<str>,
    /// Start of the current presence-update window, and updates made in it.
    presence_window_start: u64,
    presence_updates: u32,
}

impl MemberState {
    /// Whom votes count for: the JWT `sub` when authenticated, else the connection's own id.
    pub fn user_id(&self) -> &str {
        self.user.as_deref().unwrap_or(&self.id)
    }

    fn public(&self) -> Member {
        Member {
            id: self.id.clone(),
            suffix: self.suffix,
            properties: public_properties(&self.properties),
        }
    }

    fn profile(&self) -> Profile {
        Profile {
            suffix: self.suffix,
            properties: self.properties.clone(),
            id: self.id.clone(),
            connection_details: serde_json::from_str(&self.details).unwrap_or(Value::Null),
            role: self.role,
        }
    }
}

#[derive(Debug, Default)]
pub struct Room {
    pub name: String,
    /// Ordered by id so snapshots and details list members in a stable order.
    pub members: BTreeMap<ConnId, MemberState>,
    /// user id → number of that user's connections in this room (ephemeral votes go when 0).
    users: AHashMap<String, u32>,
    suffix: u64,
    config: Option<String>,
    polls: BTreeMap<String, Poll>,
    ephemeral_polls: BTreeMap<String, Poll>,
    counters: BTreeMap<String, Decimal>,
    /// Payloads of recent emits, oldest first (websockets.do's `/history`).
    history: VecDeque<Value>,
    pub last_activity_ms: u64,
}

/// What a request is applied with: the time, and the limits to enforce.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub now_ms: u64,
    pub limits: &'a super::Limits,
}

/// What happened to a member, for presence watchers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Presence {
    Joined,
    Left,
    Updated,
}

/// Sends `event` to `recipients`, encoded once for each dialect among them.
fn send_event(
    recipients: impl Iterator<Item = (ConnId, Dialect)>,
    event: &Event<'_>,
    out: &mut Outbox,
) {
    let mut by_dialect: [Vec<ConnId>; 5] = Default::default();
    for (conn, dialect) in recipients {
        by_dialect[dialect.index()].push(conn);
    }
    for (dialect, conns) in Dialect::ALL.into_iter().zip(by_dialect) {
        if !conns.is_empty() {
            out.to_many_wire(conns, event::encode(dialect, event));
        }
    }
}

/// A member as websockets.do lists it.
fn wsdo_member(member: &Member) -> Value {
    serde_json::json!({"clientID": member.id, "presence": member.properties})
}

/// Which poll family a vote or snapshot is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollKind {
    Durable,
    Ephemeral,
}

impl PollKind {
    fn type_name(self) -> &'static str {
        match self {
            PollKind::Durable => types::POLL,
            PollKind::Ephemeral => types::EPHEMERAL_POLL,
        }
    }
}

impl Room {
    /// A live room, with whatever the store kept of it.
    pub fn load(name: &str, snapshot: Option<RoomSnapshot>) -> Room {
        let snapshot = snapshot.unwrap_or_default();
        let mut polls = BTreeMap::new();
        for (id, votes) in snapshot.polls {
            let mut poll = Poll::default();
            for (user, answer) in votes {
                poll.vote(&user, &answer);
            }
            if !poll.is_empty() {
                polls.insert(id, poll);
            }
        }
        Room {
            name: name.to_owned(),
            suffix: snapshot.suffix,
            config: snapshot.config,
            polls,
            counters: snapshot.counters,
            ..Room::default()
        }
    }

    pub fn config(&self) -> &str {
        self.config.as_deref().unwrap_or(DEFAULT_CONFIG)
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Adds a connection. A Pact member gets `config`, then its `profile`; a wsdo member
    /// gets `CONNECTED` with everyone else. Presence watchers in every dialect see it join.
    pub fn join(
        &mut self,
        conn: ConnId,
        joiner: super::Joiner,
        store: &mut dyn StateStore,
        out: &mut Outbox,
    ) {
        self.suffix += 1;
        store.put_suffix(&self.name, self.suffix);
        *self.users.entry(joiner.user_id.clone()).or_insert(0) += 1;
        let member = MemberState {
            id: joiner.id.clone(),
            user: (joiner.user_id != joiner.id).then(|| joiner.user_id.clone()),
            dialect: joiner.dialect,
            suffix: self.suffix,
            properties: Map::new(),
            subscriptions: Subscriptions::default(),
            role: joiner.role,
            details: joiner.details.to_string().into_boxed_str(),
            presence_window_start: 0,
            presence_updates: 0,
        };
        match member.dialect {
            Dialect::Pact => {
                out.to_one(conn, pact::encode(types::CONFIG, None, &self.config()));
                out.to_one(conn, pact::encode(types::PROFILE, None, &member.profile()));
            }
            Dialect::Wsdo => {
                let members: Vec<Value> = self
                    .members
                    .values()
                    .map(|m| wsdo_member(&m.public()))
                    .collect();
                let payload = serde_json::json!({ "members": members });
                out.to_one_wire(
                    conn,
                    Wire::WsdoBody(wsdo::body(wsdo::CONNECTED, &payload, Default::default())),
                );
            }
            // jac's `connection` event and SLIP's backend answers are the connection's own
            // business (its core sends them).
            Dialect::Jac | Dialect::Slip => {}
            Dialect::Lambda => out.to_one(conn, lambda::join_success()),
        }
        if let Some(reason) = &joiner.token_error {
            match member.dialect {
                Dialect::Pact => out.to_one(conn, pact::error(None, codes::INVALID_TOKEN, reason)),
                Dialect::Wsdo => out.to_one_wire(
                    conn,
                    Wire::WsdoBody(wsdo::body(
                        wsdo::ERROR,
                        &wsdo::error_payload(wsdo::codes::INVALID_TOKEN, reason),
                        Default::default(),
                    )),
                ),
                // Told by the connection's core, which greets them.
                Dialect::Jac | Dialect::Lambda | Dialect::Slip => {}
            }
        }
        let public = member.public();
        self.members.insert(conn, member);
        self.presence_changed(Presence::Joined, &public, Some(conn), out);
    }

    /// Removes a connection. When it was its user's last one here, the user's ephemeral votes
    /// go too and the polls' new stats are sent.
    pub fn leave(&mut self, conn: ConnId, out: &mut Outbox) {
        let Some(member) = self.members.remove(&conn) else {
            return;
        };
        self.presence_changed(Presence::Left, &member.public(), None, out);
        let remaining = match self.users.get_mut(member.user_id()) {
            Some(n) => {
                *n -= 1;
                *n
            }
            None => 0,
        };
        if remaining > 0 {
            return;
        }
        self.users.remove(member.user_id());
        let changed: Vec<String> = self
            .ephemeral_polls
            .iter_mut()
            .filter_map(|(id, poll)| poll.retract(member.user_id()).then(|| id.clone()))
            .collect();
        for id in changed {
            self.send_poll_stats(PollKind::Ephemeral, &id, out);
            if self.ephemeral_polls.get(&id).is_some_and(Poll::is_empty) {
                self.ephemeral_polls.remove(&id);
            }
        }
    }

    /// Replaces a member's properties (Pact `login`, wsdo `PRESENCE`) and tells the room.
    fn set_properties(&mut self, conn: ConnId, properties: Map<String, Value>, out: &mut Outbox) {
        let Some(member) = self.members.get_mut(&conn) else {
            return;
        };
        member.properties = properties;
        let public = member.public();
        self.presence_changed(Presence::Updated, &public, None, out);
    }

    /// wsdo `PRESENCE`: the new presence goes to every wsdo member, the sender included.
    pub fn set_presence(
        &mut self,
        conn: ConnId,
        presence: Map<String, Value>,
        context: Context<'_>,
        out: &mut Outbox,
    ) {
        if !self.presence_allowed(conn, context) {
            let payload = wsdo::error_payload(
                wsdo::codes::RATE_LIMITED,
                "too many presence updates: slow down",
            );
            out.to_one_wire(
                conn,
                Wire::WsdoBody(wsdo::body(wsdo::ERROR, &payload, Default::default())),
            );
            return;
        }
        self.set_properties(conn, presence, out);
    }

    /// Counts a property/presence update of `conn`; false once the window's allowance is
    /// used up.
    fn presence_allowed(&mut self, conn: ConnId, context: Context<'_>) -> bool {
        let Some(member) = self.members.get_mut(&conn) else {
            return false;
        };
        let limits = context.limits;
        if context.now_ms >= member.presence_window_start + limits.presence_window_ms {
            member.presence_window_start = context.now_ms;
            member.presence_updates = 0;
        }
        if member.presence_updates >= limits.presence_updates {
            return false;
        }
        member.presence_updates += 1;
        true
    }

    /// Tells presence watchers of every dialect that `member` joined, left or changed:
    /// Pact `presence` subscribers, and every wsdo member (but `except`, the joiner).
    fn presence_changed(
        &self,
        change: Presence,
        member: &Member,
        except: Option<ConnId>,
        out: &mut Outbox,
    ) {
        let (pact_type, wsdo_type) = match change {
            Presence::Joined => (types::PRESENCE_JOINED, wsdo::PRESENCE_JOINED),
            Presence::Left => (types::PRESENCE_LEFT, wsdo::PRESENCE_LEFT),
            Presence::Updated => (types::PRESENCE_UPDATED, wsdo::PRESENCE_UPDATED),
        };
        let diff = PresenceDiff {
            member: member.clone(),
            count: self.members.len(),
        };
        self.fanout(types::PRESENCE, None, pact_type, &diff, out);
        let wsdo_members: Vec<ConnId> = self
            .members
            .iter()
            .filter(|(c, m)| m.dialect == Dialect::Wsdo && Some(**c) != except)
            .map(|(c, _)| *c)
            .collect();
        if !wsdo_members.is_empty() {
            let payload = match change {
                Presence::Left => serde_json::json!({ "clientID": member.id }),
                _ => wsdo_member(member),
            };
            out.to_many_wire(
                wsdo_members,
                Wire::WsdoBody(wsdo::body(wsdo_type, &payload, Default::default())),
            );
        }
    }

    /// Sends an emit's payload to its targets, each in its dialect (wsdo `DATA`, Pact
    /// `broadcast`), and records it in the history. Returns the ids it went to, or why not.
    pub fn emit(
        &mut self,
        emit: &Emit,
        out: &mut Outbox,
    ) -> Result<Vec<(ConnId, String)>, EmitOutcome> {
        let Emit {
            payload,
            targets,
            event_id,
            require_ack,
            seed,
            history_size,
            ..
        } = emit;
        let (require_ack, seed, history_size) = (*require_ack, *seed, *history_size);
        let members: Vec<(ConnId, &MemberState)> =
            self.members.iter().map(|(c, m)| (*c, m)).collect();
        let chosen: Vec<(ConnId, &MemberState)> = match targets {
            Targets::All => members,
            Targets::Random(0) => return Err(EmitOutcome::NoClients),
            Targets::Random(n) if *n > members.len() => {
                return Err(EmitOutcome::NotEnoughClients {
                    wanted: *n,
                    connected: members.len(),
                })
            }
            Targets::Random(n) => sample(members.len(), *n, seed)
                .into_iter()
                .map(|i| members[i])
                .collect(),
            Targets::Ids(ids) => {
                let picked: Vec<_> = members
                    .into_iter()
                    .filter(|(_, m)| ids.contains(&m.id))
                    .collect();
                if picked.is_empty() {
                    return Err(EmitOutcome::NoClients);
                }
                picked
            }
        };
        let event = Event::Publish {
            data: payload,
            sender: "server",
            event_id,
            requires_ack: require_ack,
        };
        send_event(chosen.iter().map(|(c, m)| (*c, m.dialect)), &event, out);
        if history_size > 0 {
            self.history.push_back(payload.clone());
            while self.history.len() > history_size {
                self.history.pop_front();
            }
        }
        Ok(chosen.iter().map(|(c, m)| (*c, m.id.clone())).collect())
    }

    /// The public id of a member.
    pub fn member_id(&self, conn: ConnId) -> Option<&str> {
        self.members.get(&conn).map(|m| m.id.as_str())
    }

    pub fn dialect_of(&self, conn: ConnId) -> Option<Dialect> {
        self.members.get(&conn).map(|m| m.dialect)
    }

    /// The most recent `limit` emitted payloads, oldest first.
    pub fn history(&self, limit: usize) -> Vec<Value> {
        let skip = self.history.len().saturating_sub(limit);
        self.history.iter().skip(skip).cloned().collect()
    }

    pub fn take_history(&mut self) -> VecDeque<Value> {
        std::mem::take(&mut self.history)
    }

    pub fn restore_history(&mut self, history: VecDeque<Value>) {
        self.history = history;
    }

    /// Applies one Pact request from `conn`. A request with `reference` gets exactly one
    /// direct reply carrying it: its natural reply, `ok`, or `error`.
    pub fn apply(
        &mut self,
        conn: ConnId,
        reference: Option<&Value>,
        request: PactRequest,
        context: Context<'_>,
        store: &mut dyn StateStore,
        out: &mut Outbox,
    ) {
        if !self.members.contains_key(&conn) {
            // The connection left (or never joined) while this request was in flight.
            return;
        }
        let result = match request {
            PactRequest::Login(_) if !self.presence_allowed(conn, context) => {
                Err((codes::RATE_LIMITED, "too many logins: slow down".to_owned()))
            }
            PactRequest::Login(properties) => {
                let member = self.members.get_mut(&conn).expect("checked above");
                member.properties = properties.clone();
                let profile = member.profile();
                out.to_one(conn, pact::encode(types::PROFILE, reference, &profile));
                self.set_properties(conn, properties, out);
                return;
            }
            PactRequest::Profile => {
                let profile = self.members[&conn].profile();
                out.to_one(conn, pact::encode(types::PROFILE, reference, &profile));
                return;
            }
            PactRequest::Subscribe(topic)
                if self.members[&conn].subscriptions.len() >= context.limits.max_subscriptions
                    && !self.members[&conn].subscriptions.has(&topic) =>
            {
                Err((
                    codes::LIMIT_EXCEEDED,
                    format!(
                        "at most {} subscriptions per connection",
                        context.limits.max_subscriptions
                    ),
                ))
            }
            PactRequest::Subscribe(topic) => {
                self.members
                    .get_mut(&conn)
                    .expect("checked above")
                    .subscriptions
                    .subscribe(&topic);
                self.send_snapshot(conn, &topic, out);
                Ok(())
            }
            PactRequest::Unsubscribe(topic) => {
                self.members
                    .get_mut(&conn)
                    .expect("checked above")
                    .subscriptions
                    .unsubscribe(&topic);
                Ok(())
            }
            PactRequest::Chat(message) => {
                let sender = &self.members[&conn];
                let event = ChatEvent {
                    message,
                    user: PublicUser {
                        suffix: sender.suffix,
                        properties: public_properties(&sender.properties),
                    },
                };
                self.fanout(types::CHAT, None, types::CHAT, &event, out);
                Ok(())
            }
            PactRequest::Vote {
                ephemeral,
                poll,
                answer,
            } => {
                let user = self.members[&conn].user_id().to_owned();
                let kind = if ephemeral {
                    PollKind::Ephemeral
                } else {
                    PollKind::Durable
                };
                let polls = match kind {
                    PollKind::Durable => &mut self.polls,
                    PollKind::Ephemeral => &mut self.ephemeral_polls,
                };
                if polls.entry(poll.clone()).or_default().vote(&user, &answer) {
                    if kind == PollKind::Durable {
                        store.put_vote(&self.name, &poll, &user, Some(&answer));
                    }
                    self.send_poll_stats(kind, &poll, out);
                }
                Ok(())
            }
            PactRequest::Counter { counter, delta } => {
                let current = self.counters.get(&counter).copied().unwrap_or_default();
                match current.checked_add(delta) {
                    Some(value) => {
                        let value = value.normalize();
                        self.counters.insert(counter.clone(), value);
                        store.put_counter(&self.name, &counter, value);
                        let event = CounterValue {
                            id: counter.clone(),
                            value: pact::decimal_number(value),
                        };
                        self.fanout(types::COUNTER, Some(&counter), types::COUNTER, &event, out);
                        Ok(())
                    }
                    None => Err((codes::INVALID_DATA, "counter overflow".to_owned())),
                }
            }
            PactRequest::Config(config) => {
                if self.members[&conn].role != Role::Admin {
                    Err((codes::FORBIDDEN, "config needs the admin role".to_owned()))
                } else {
                    self.set_config(config, store, out);
                    Ok(())
                }
            }
            PactRequest::Broadcast { to, kind, data } => {
                if self.members[&conn].role != Role::Admin {
                    Err((
                        codes::FORBIDDEN,
                        "broadcast needs the admin role".to_owned(),
                    ))
                } else {
                    self.broadcast(to.as_deref(), &kind, &data, out);
                    Ok(())
                }
            }
            PactRequest::Ping => Ok(()),
            // Acks are the engine's (they may finish an emit); it never passes them here.
            PactRequest::Ack(_) => Ok(()),
        };
        match result {
            Ok(()) => {
                if let Some(reference) = reference {
                    out.to_one(conn, pact::ok(reference));
                }
            }
            Err((code, message)) => out.to_one(conn, pact::error(reference, code, &message)),
        }
    }

    /// Stores the config and sends it to every member.
    pub fn set_config(&mut self, config: String, store: &mut dyn StateStore, out: &mut Outbox) {
        store.put_config(&self.name, &config);
        let frame = pact::encode(types::CONFIG, None, &config);
        self.config = Some(config);
        out.to_many(self.members_speaking(Dialect::Pact), frame);
    }

    /// Sends `{type: kind, data}` to every member, each in its dialect, or only to Pact
    /// subscribers of topic `to` (the other dialects have no subscriptions).
    pub fn broadcast(&mut self, to: Option<&str>, kind: &str, data: &Value, out: &mut Outbox) {
        let event = Event::Broadcast { kind, data };
        match to {
            None => send_event(
                self.members.iter().map(|(c, m)| (*c, m.dialect)),
                &event,
                out,
            ),
            Some(topic) => {
                let topic = Topic::parse(topic);
                let recipients = self.recipients(&topic.kind, topic.id.as_deref());
                out.to_many_wire(recipients, event::encode(Dialect::Pact, &event));
            }
        }
    }

    /// Publishes `data` to every member, each in its dialect. A Lambda sender then gets
    /// `publishSuccess` (after its own copy of the message).
    pub fn publish(
        &mut self,
        sender: Option<ConnId>,
        sender_label: &str,
        data: &Value,
        event_id: &str,
        out: &mut Outbox,
    ) {
        let event = Event::Publish {
            data,
            sender: sender_label,
            event_id,
            requires_ack: false,
        };
        send_event(
            self.members.iter().map(|(c, m)| (*c, m.dialect)),
            &event,
            out,
        );
        if let Some(sender) = sender {
            if self.dialect_of(sender) == Some(Dialect::Lambda) {
                out.to_one(sender, lambda::publish_success());
            }
        }
    }

    /// Sets a member's role and sends it its new `profile` (Pact `authenticate`).
    pub fn set_role(
        &mut self,
        conn: ConnId,
        role: Role,
        reference: Option<&Value>,
        out: &mut Outbox,
    ) {
        if let Some(member) = self.members.get_mut(&conn) {
            member.role = role;
            out.to_one(
                conn,
                pact::encode(types::PROFILE, reference, &member.profile()),
            );
        }
    }

    fn members_speaking(&self, dialect: Dialect) -> Vec<ConnId> {
        self.members
            .iter()
            .filter(|(_, m)| m.dialect == dialect)
            .map(|(c, _)| *c)
            .collect()
    }

    fn recipients(&self, kind: &str, id: Option<&str>) -> Vec<ConnId> {
        self.members
            .iter()
            .filter(|(_, m)| m.subscriptions.wants(kind, id))
            .map(|(c, _)| *c)
            .collect()
    }

    /// Encodes `data` once as `event_type` and queues it for subscribers of `kind`/`id`.
    fn fanout<T: Serialize>(
        &self,
        kind: &str,
        id: Option<&str>,
        event_type: &str,
        data: &T,
        out: &mut Outbox,
    ) {
        let recipients = self.recipients(kind, id);
        if !recipients.is_empty() {
            out.to_many(recipients, pact::encode(event_type, None, data));
        }
    }

    fn poll_stats(&self, kind: PollKind, id: &str) -> PollStats {
        let polls = match kind {
            PollKind::Durable => &self.polls,
            PollKind::Ephemeral => &self.ephemeral_polls,
        };
        PollStats {
            id: id.to_owned(),
            stats: polls.get(id).map(|p| p.stats().clone()).unwrap_or_default(),
        }
    }

    fn send_poll_stats(&self, kind: PollKind, id: &str, out: &mut Outbox) {
        let stats = self.poll_stats(kind, id);
        let name = kind.type_name();
        self.fanout(name, Some(id), name, &stats, out);
    }

    /// The current state of what `topic` covers, sent to a new subscriber at once.
    fn send_snapshot(&self, conn: ConnId, topic: &Topic, out: &mut Outbox) {
        let matches = |id: &str| topic.id.as_deref().is_none_or(|wanted| wanted == id);
        match topic.kind.as_str() {
            types::POLL | types::EPHEMERAL_POLL => {
                let kind = if topic.kind == types::POLL {
                    PollKind::Durable
                } else {
                    PollKind::Ephemeral
                };
                let polls = match kind {
                    PollKind::Durable => &self.polls,
                    PollKind::Ephemeral => &self.ephemeral_polls,
                };
                for id in polls.keys().filter(|id| matches(id)) {
                    let stats = self.poll_stats(kind, id);
                    out.to_one(conn, pact::encode(kind.type_name(), None, &stats));
                }
            }
            types::COUNTER => {
                for (id, value) in self.counters.iter().filter(|(id, _)| matches(id)) {
                    let event = CounterValue {
                        id: id.clone(),
                        value: pact::decimal_number(*value),
                    };
                    out.to_one(conn, pact::encode(types::COUNTER, None, &event));
                }
            }
            types::PRESENCE => {
                out.to_one(conn, pact::encode(types::PRESENCE, None, &self.presence()));
            }
            _ => {}
        }
    }

    pub fn presence(&self) -> PresenceSnapshot {
        PresenceSnapshot {
            members: self.members.values().map(MemberState::public).collect(),
            count: self.members.len(),
        }
    }

    /// Pact-style room details, for `GET /api/rooms/:room`.
    pub fn details(&self) -> RoomDetails {
        let polls = |polls: &BTreeMap<String, Poll>| {
            polls
                .iter()
                .map(|(id, p)| (id.clone(), p.stats().clone()))
                .collect()
        };
        let presence = self.presence();
        RoomDetails {
            room: self.name.clone(),
            count: presence.count,
            members: presence.members,
            polls: polls(&self.polls),
            ephemeral_polls: polls(&self.ephemeral_polls),
            counters: self
                .counters
                .iter()
                .map(|(id, v)| (id.clone(), pact::decimal_number(*v)))
                .collect(),
            config: self.config().to_owned(),
        }
    }
}

/// The body of `GET /api/rooms/:room`.
#[derive(Serialize, Debug)]
pub struct RoomDetails {
    pub room: String,
    pub count: usize,
    pub members: Vec<Member>,
    pub polls: BTreeMap<String, BTreeMap<String, u64>>,
    #[serde(rename = "ephemeralPolls")]
    pub ephemeral_polls: BTreeMap<String, BTreeMap<String, u64>>,
    pub counters: BTreeMap<String, Box<serde_json::value::RawValue>>,
    pub config: String,
}
