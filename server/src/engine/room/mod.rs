//! One room's authoritative state: members, polls, counters, config and its stream position.
//!
//! A room lives on the core its name hashes to. Its members may be connected on any core:
//! the room only knows their [`ConnId`]s. Whatever happens becomes a [`RoomEvent`] for the
//! members its [`Scope`] covers, or a [`Reply`] to one member, left in the [`Outbox`].

mod inspect;
mod publish;
mod replay;
mod requests;

use super::event::{PollKind, Position, PresenceChange, Reply, RoomEvent, Sequenced};
use super::history::Entry;
use super::member::{CodecId, Joiner, MemberState, UserKey};
use super::outbox::{Audience, Change, Fill, Op, Outbox, Proposal, Published, Scope};
use super::poll::Poll;
use super::snapshot::RoomSnapshot;
use super::Limits;
use crate::ids::ConnId;
use ahash::AHashMap;
use rookery_protocol::pact::{types, Member, Pos, PresenceSnapshot};
use rust_decimal::Decimal;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The default room config, a JSON object in a string (Pact's README).
pub const DEFAULT_CONFIG: &str = "{}";

#[derive(Debug, Default)]
pub struct Room {
    pub name: String,
    /// Ordered by id so snapshots and details list members in a stable order.
    members: BTreeMap<ConnId, MemberState>,
    /// user id → number of that user's connections in this room (ephemeral votes go when 0).
    /// Keyed by a member's identity (no string of its own per member).
    users: AHashMap<UserKey, u32>,
    suffix: u64,
    /// With a sequencer: the end of this node's block of suffixes (unique in the room
    /// across nodes); `None` alone.
    suffix_until: Option<u64>,
    config: Option<String>,
    polls: BTreeMap<String, Poll>,
    ephemeral_polls: BTreeMap<String, Poll>,
    counters: BTreeMap<String, Decimal>,
    /// The stream's epoch and the last `seq` given to a lasting event.
    epoch: Arc<str>,
    seq: u64,
    /// Members waiting for a replay from the store (their live events are held meanwhile).
    replaying: usize,
    /// With a sequencer: events that came after a gap, waiting for it to be filled.
    held: BTreeMap<u64, Published>,
    /// With a sequencer: a fill of a gap was asked for and not answered yet.
    filling: bool,
    /// With a sequencer: another fill is wanted once this one is answered (the link to the
    /// sequencer came back meanwhile: the one in flight may have read too early).
    refill: bool,
    /// With a sequencer: the members other nodes hold, by key (a copy of the room's shared
    /// presence, following its diffs).
    others: BTreeMap<String, Member>,
    /// With a sequencer: emits asking for acks that were delivered to members here, with
    /// the members yet to ack (the oldest are forgotten past [`MAX_AWAITED`]).
    awaited: AHashMap<String, Vec<ConnId>>,
    awaited_order: std::collections::VecDeque<String>,
    /// The audience of the last event sent to a whole topic (`Scope::Topic` with no id:
    /// every chat, most of what rooms carry), kept until a member joins, leaves, subscribes
    /// or unsubscribes ([`Self::members_changed`]): choosing it asked every member's
    /// subscriptions for every event, ~130 instructions a member (~8 % of a saturated W3
    /// core under callgrind, rooms of 11); a copy of the kept one is a few.
    topic_audience: Option<(Cow<'static, str>, Audience)>,
}

/// The most connections an event's audience reserves room for before it is filled.
const MAX_AUDIENCE_RESERVED: usize = 1024;

/// Emits asking for acks a room remembers having delivered (with a sequencer).
const MAX_AWAITED: usize = 1024;

/// What a command is applied with: the time, the limits, and whether events go to a broker.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub now_ms: u64,
    pub limits: &'a Limits,
    /// Copy every event into `Outbox::published` (for other nodes).
    pub broker_feed: bool,
    /// Lasting events are decided by a sequencer shared by several nodes (Redis): they go
    /// to `Outbox::proposals` and are delivered when they come back positioned.
    pub sequencer: bool,
    /// Who observes this room without being a member (the console's live tail): every event
    /// goes to them too, whatever its scope. Empty unless a console tails the room.
    pub observers: &'a [(ConnId, CodecId)],
}

impl Room {
    /// A live room, with whatever the store kept of it; a room the store knows nothing of
    /// starts the stream `new_epoch`.
    pub fn load(
        name: &str,
        snapshot: Option<RoomSnapshot>,
        new_epoch: impl FnOnce() -> String,
    ) -> Room {
        let snapshot = snapshot.unwrap_or_default();
        let tally = |kept: BTreeMap<String, BTreeMap<String, String>>| {
            let mut polls = BTreeMap::new();
            for (id, votes) in kept {
                let mut poll = Poll::default();
                for (user, answer) in votes {
                    poll.vote(&user, &answer);
                }
                if !poll.is_empty() {
                    polls.insert(id, poll);
                }
            }
            polls
        };
        let polls = tally(snapshot.polls);
        let ephemeral_polls = tally(snapshot.ephemeral_polls);
        let (epoch, seq) = match snapshot.epoch {
            Some(epoch) => (Arc::from(epoch), snapshot.seq),
            None => (Arc::from(new_epoch()), 0),
        };
        Room {
            name: name.to_owned(),
            suffix: snapshot.suffix,
            suffix_until: snapshot.suffix_until,
            config: snapshot.config,
            polls,
            ephemeral_polls,
            others: snapshot.members,
            counters: snapshot.counters,
            epoch,
            seq,
            ..Room::default()
        }
    }

    pub fn config(&self) -> &str {
        self.config.as_deref().unwrap_or(DEFAULT_CONFIG)
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Members on every node, as this node knows them: its own at once, the others' as
    /// their diffs arrive (what its presence snapshots and diffs count).
    fn member_count(&self) -> usize {
        self.members.len() + self.others.len()
    }

    /// The room's current stream position.
    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch.clone(),
            seq: self.seq,
        }
    }

    /// The room's position as the wire carries it (in profiles).
    pub fn wire_pos(&self) -> Pos {
        Pos {
            epoch: self.epoch.to_string(),
            seq: self.seq,
        }
    }

    /// The change that keeps the room's position while it is idle.
    pub fn position_change(&self) -> Change {
        Change::Position {
            room: self.name.clone(),
            epoch: self.epoch.to_string(),
            seq: self.seq,
        }
    }

    /// Whether a join needs a new block of suffixes first (with a sequencer).
    pub fn suffixes_used_up(&self) -> bool {
        self.suffix_until.is_some_and(|until| self.suffix >= until)
    }

    /// A new block of suffixes, `(from, until]`.
    pub fn take_suffixes(&mut self, from: u64, until: u64) {
        self.suffix = from;
        self.suffix_until = Some(until);
    }

    /// The public id of a member.
    pub fn member_id(&self, conn: ConnId) -> Option<&str> {
        self.members.get(&conn).map(MemberState::id)
    }

    pub fn member(&self, conn: ConnId) -> Option<&MemberState> {
        self.members.get(&conn)
    }

    /// Adds a connection: it is welcomed (config, profile, and the other members when its
    /// traits ask), told if its token was refused, and presence watchers see it join.
    pub fn join(&mut self, conn: ConnId, joiner: Joiner, context: Context<'_>, out: &mut Outbox) {
        self.suffix += 1;
        out.changes.push(Change::Suffix {
            room: self.name.clone(),
            suffix: self.suffix,
        });
        *self
            .users
            .entry(UserKey(joiner.identity.clone()))
            .or_insert(0) += 1;
        let member = MemberState::new(&joiner, self.suffix);
        let members = if member.traits.greeted_with_members {
            let here = self.members.values().map(MemberState::public);
            here.chain(self.others.values().cloned()).collect()
        } else {
            Vec::new()
        };
        let welcome = Reply::Welcome {
            config: self.config().to_owned(),
            profile: member.profile(self.wire_pos()),
            members,
        };
        out.reply(conn, member.codec, welcome);
        if let Some(reason) = joiner.token_error {
            out.reply(conn, member.codec, Reply::TokenRefused { reason });
        }
        let public = member.public();
        let user = member.user_id().to_owned();
        self.members.insert(conn, member);
        self.members_changed();
        let diff = (PresenceChange::Joined, public, conn, &*user);
        self.presence_changed(diff, Some(conn), context, out);
    }

    /// Removes a connection. When it was its user's last one here, the user's ephemeral votes
    /// go too and the polls' new tallies are sent.
    pub fn leave(&mut self, conn: ConnId, context: Context<'_>, out: &mut Outbox) {
        let Some(member) = self.members.remove(&conn) else {
            return;
        };
        self.members_changed();
        if member.replay.is_some() {
            self.replaying -= 1;
        }
        let diff = (
            PresenceChange::Left,
            member.public(),
            conn,
            member.user_id(),
        );
        self.presence_changed(diff, None, context, out);
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
            self.send_poll_stats(PollKind::Ephemeral, &id, context, out);
            if self.ephemeral_polls.get(&id).is_some_and(Poll::is_empty) {
                self.ephemeral_polls.remove(&id);
            }
        }
    }

    /// Tells presence watchers that `member` (connection `conn` of `user`) joined, left or
    /// changed. With a sequencer, every node's watchers are told, through it.
    fn presence_changed(
        &mut self,
        (change, member, conn, user): (PresenceChange, Member, ConnId, &str),
        except: Option<ConnId>,
        context: Context<'_>,
        out: &mut Outbox,
    ) {
        let scope = Scope::Presence { except };
        if context.sequencer {
            let event = RoomEvent::Presence {
                change,
                member: member.clone(),
                count: self.member_count(),
            };
            let op = Op::Presence {
                change,
                conn,
                user: user.to_owned(),
                member,
            };
            return self.propose(event, scope, op, context, out);
        }
        let event = RoomEvent::Presence {
            change,
            member,
            count: self.members.len(),
        };
        self.fan_out(event, scope, context, out);
    }

    /// Gives `event` its position if it lasts, and queues it for the members `scope` covers
    /// (and for the broker, when there is one).
    fn fan_out(&mut self, event: RoomEvent, scope: Scope, context: Context<'_>, out: &mut Outbox) {
        let audience = self.audience(&scope);
        self.fan_out_to(event, audience, scope, context, out);
    }

    /// [`Self::fan_out`] to an audience already chosen. A lasting event is also appended to
    /// the room's history (which moves the stored position with it, so a crash never hands
    /// out a `seq` twice). Members in the middle of a replay get it after their replay.
    fn fan_out_to(
        &mut self,
        event: RoomEvent,
        mut audience: Audience,
        scope: Scope,
        context: Context<'_>,
        out: &mut Outbox,
    ) {
        if context.sequencer && event.is_lasting() {
            return self.propose(event, scope, Op::Event, context, out);
        }
        let position = event.is_lasting().then(|| {
            self.seq += 1;
            self.position()
        });
        let sequenced = Sequenced { position, event };
        if sequenced.position.is_some() {
            out.changes.push(Change::Append {
                room: self.name.clone(),
                entry: Entry {
                    event: sequenced.clone(),
                    scope: scope.clone(),
                    at_ms: context.now_ms,
                },
            });
        }
        if self.replaying > 0 {
            self.hold_for_replay(&mut audience, &sequenced);
        }
        for (conn, codec) in context.observers {
            audience.add(*codec, *conn);
        }
        if context.broker_feed {
            out.published.push(Published {
                room: self.name.clone(),
                event: sequenced.clone(),
                scope,
                replies: Vec::new(),
                member_key: None,
            });
        }
        out.event(sequenced, audience);
    }

    /// Hands a lasting change to the sequencer (see [`Proposal`]).
    fn propose(
        &mut self,
        event: RoomEvent,
        scope: Scope,
        op: Op,
        context: Context<'_>,
        out: &mut Outbox,
    ) {
        out.proposals.push(Proposal {
            room: self.name.clone(),
            event,
            scope,
            at_ms: context.now_ms,
            op,
            replies: Vec::new(),
            outcomes: Vec::new(),
        });
    }

    /// Delivers an event another node published (or, with a sequencer, any positioned
    /// event of this room, this node's own included), to this node's members its scope
    /// covers.
    pub fn deliver_remote(
        &mut self,
        mut published: Published,
        context: Context<'_>,
        out: &mut Outbox,
    ) {
        if !context.sequencer {
            let audience = self.audience(&published.scope);
            out.event(published.event, audience);
            return;
        }
        let Some(position) = published.event.position.clone() else {
            if let RoomEvent::Presence {
                change,
                member,
                count,
            } = &mut published.event.event
            {
                if let Some(key) = &published.member_key {
                    match change {
                        PresenceChange::Left => self.others.remove(key),
                        _ => self.others.insert(key.clone(), member.clone()),
                    };
                }
                // Redis counted in its order of joins, which can lag this node's own
                // members (they count here at once): watchers got this node's view in
                // their snapshot, so the diff carries the same view's count.
                *count = self.member_count();
            }
            let mut audience = self.audience(&published.scope);
            for (conn, codec) in context.observers {
                audience.add(*codec, *conn);
            }
            out.event(published.event, audience);
            out.sends.extend(published.replies);
            return;
        };
        if position.epoch != self.epoch {
            // The sequencer lost the room's stream (a flush, a new Redis): a new epoch
            // starts; members resuming from the old one get `recovered: false`.
            tracing::warn!(room = %self.name, epoch = %position.epoch, "the room's stream has a new epoch");
            self.epoch = position.epoch.clone();
            self.seq = 0;
            self.held.clear();
            self.filling = false;
        }
        if position.seq <= self.seq {
            return; // Seen already (a fill and the live stream overlap).
        }
        if position.seq == self.seq + 1 && self.held.is_empty() {
            // The usual case, in order with nothing held: no trip through `held`.
            self.seq += 1;
            self.release(published, context, out);
            return;
        }
        self.held.insert(position.seq, published);
        self.release_held(context, out);
        if !self.held.is_empty() {
            self.ask_fill(out);
        }
    }

    /// Asks for what the room missed after its `seq` to be read back from the
    /// sequencer's history (one fill at a time).
    pub fn ask_fill(&mut self, out: &mut Outbox) {
        if self.filling {
            self.refill = true;
        } else {
            self.filling = true;
            out.fills.push(Fill {
                room: self.name.clone(),
                epoch: self.epoch.to_string(),
                after: self.seq,
            });
        }
    }

    /// A fill was answered (its events came before this). What the stream no longer keeps
    /// (before `oldest`) is gone: delivery goes on after it (logged; members see `seq`
    /// jump) rather than waiting for ever. What it keeps but the fill did not bring (made
    /// after the fill read) is read again.
    pub fn filled(
        &mut self,
        oldest: Option<u64>,
        complete: bool,
        context: Context<'_>,
        out: &mut Outbox,
    ) {
        self.filling = false;
        if !complete {
            // The stream could not be read: the next resync or gap asks again.
            return;
        }
        if let Some((&first, _)) = self.held.iter().next() {
            let kept_from = oldest.unwrap_or(first).min(first);
            if kept_from > self.seq + 1 {
                let (from, to) = (self.seq + 1, kept_from - 1);
                tracing::warn!(room = %self.name, from, to, "events lost from the room's history");
                self.seq = to;
            }
        }
        self.release_held(context, out);
        if !self.held.is_empty() || std::mem::take(&mut self.refill) {
            self.ask_fill(out);
        }
    }

    /// Delivers the held events that follow the room's `seq` without a gap.
    fn release_held(&mut self, context: Context<'_>, out: &mut Outbox) {
        while let Some(published) = self.held.remove(&(self.seq + 1)) {
            self.seq += 1;
            self.release(published, context, out);
        }
    }

    /// Delivers the event of the room's next `seq` (already counted) to its members here.
    fn release(&mut self, published: Published, context: Context<'_>, out: &mut Outbox) {
        self.mirror(&published.event.event);
        let mut audience = self.audience(&published.scope);
        if let RoomEvent::Publish {
            requires_ack: true,
            event_id,
            ..
        } = &published.event.event
        {
            self.await_acks(event_id, &audience);
        }
        if self.replaying > 0 {
            self.hold_for_replay(&mut audience, &published.event);
        }
        for (conn, codec) in context.observers {
            audience.add(*codec, *conn);
        }
        out.event(published.event, audience);
        out.sends.extend(published.replies);
    }

    /// Remembers that `audience` was sent the emit `event_id`, which asks for acks.
    fn await_acks(&mut self, event_id: &str, audience: &Audience) {
        let conns: Vec<ConnId> = audience
            .groups
            .iter()
            .flat_map(|(_, conns)| conns.iter().copied())
            .collect();
        if conns.is_empty() {
            return;
        }
        self.awaited.insert(event_id.to_owned(), conns);
        self.awaited_order.push_back(event_id.to_owned());
        while self.awaited_order.len() > MAX_AWAITED {
            if let Some(old) = self.awaited_order.pop_front() {
                self.awaited.remove(&old);
            }
        }
    }

    /// Whether `conn` was sent the emit `event_id` and had not acked it yet (it has now).
    pub fn take_awaited_ack(&mut self, event_id: &str, conn: ConnId) -> bool {
        let Some(conns) = self.awaited.get_mut(event_id) else {
            return false;
        };
        let Some(at) = conns.iter().position(|c| *c == conn) else {
            return false;
        };
        conns.swap_remove(at);
        if conns.is_empty() {
            self.awaited.remove(event_id);
        }
        true
    }

    /// Tells the room's other nodes that `client` acked `event_id`.
    pub fn relay_ack(
        &mut self,
        event_id: &str,
        client: &str,
        context: Context<'_>,
        out: &mut Outbox,
    ) {
        let op = Op::Ack {
            event_id: event_id.to_owned(),
            client: client.to_owned(),
        };
        // The event is not sent: the op is what travels.
        let event = RoomEvent::Config {
            config: String::new(),
        };
        self.propose(event, Scope::Room, op, context, out);
    }

    /// Keeps this node's copy of the room's state (for snapshots and details) as the
    /// sequencer decided it.
    fn mirror(&mut self, event: &RoomEvent) {
        match event {
            RoomEvent::Counter { id, value } => {
                self.counters.insert(id.clone(), *value);
            }
            RoomEvent::Config { config } => self.config = Some(config.clone()),
            RoomEvent::Poll { kind, id, stats } => {
                let polls = match kind {
                    PollKind::Durable => &mut self.polls,
                    PollKind::Ephemeral => &mut self.ephemeral_polls,
                };
                if stats.is_empty() {
                    polls.remove(id);
                } else {
                    polls.insert(id.clone(), Poll::tallied(stats.clone()));
                }
            }
            _ => {}
        }
    }

    /// Who is a member, or what a member subscribes to, changed: a kept audience is stale.
    pub(super) fn members_changed(&mut self) {
        self.topic_audience = None;
    }

    /// The members `scope` covers, grouped by codec.
    fn audience(&mut self, scope: &Scope) -> Audience {
        let mut audience = Audience::default();
        // At most every member; capped, so that a few subscribers in a huge room do not
        // reserve room for all of it.
        let room_for = self.members.len().min(MAX_AUDIENCE_RESERVED);
        let mut add = |conn: &ConnId, m: &MemberState| audience.add_sized(m.codec, *conn, room_for);
        match scope {
            // The common scopes skip the per-member match.
            Scope::Room => self.members.iter().for_each(|(c, m)| add(c, m)),
            Scope::Topic { kind, id: None } => {
                if let Some((kept_kind, kept)) = &self.topic_audience {
                    if kept_kind == kind {
                        return kept.clone();
                    }
                }
                self.members
                    .iter()
                    .filter(|(_, m)| m.subscriptions.wants(kind, None))
                    .for_each(|(c, m)| add(c, m));
                self.topic_audience = Some((kind.clone(), audience.clone()));
            }
            Scope::Topic { kind, id } => self
                .members
                .iter()
                .filter(|(_, m)| m.subscriptions.wants(kind, id.as_deref()))
                .for_each(|(c, m)| add(c, m)),
            scope => self
                .members
                .iter()
                .filter(|(c, m)| covers(scope, **c, m))
                .for_each(|(c, m)| add(c, m)),
        }
        audience
    }

    fn polls(&self, kind: PollKind) -> &BTreeMap<String, Poll> {
        match kind {
            PollKind::Durable => &self.polls,
            PollKind::Ephemeral => &self.ephemeral_polls,
        }
    }

    fn poll_event(&self, kind: PollKind, id: &str) -> RoomEvent {
        RoomEvent::Poll {
            kind,
            id: id.to_owned(),
            stats: self
                .polls(kind)
                .get(id)
                .map(|p| p.stats().clone())
                .unwrap_or_default(),
        }
    }

    fn send_poll_stats(
        &mut self,
        kind: PollKind,
        id: &str,
        context: Context<'_>,
        out: &mut Outbox,
    ) {
        let event = self.poll_event(kind, id);
        let scope = Scope::Topic {
            kind: Cow::Borrowed(poll_topic(kind)),
            id: Some(id.to_owned()),
        };
        self.fan_out(event, scope, context, out);
    }

    pub fn presence(&self) -> PresenceSnapshot {
        let here = self.members.values().map(MemberState::public);
        PresenceSnapshot {
            members: here.chain(self.others.values().cloned()).collect(),
            count: self.member_count(),
        }
    }

    /// With a sequencer: this node's members, announced again (after the link to the
    /// sequencer was down, other nodes may have removed them as a silent node's).
    pub fn announce_members(&mut self, context: Context<'_>, out: &mut Outbox) {
        let members: Vec<_> = self
            .members
            .iter()
            .map(|(conn, m)| (*conn, m.public(), m.user_id().to_owned()))
            .collect();
        for (conn, public, user) in members {
            let diff = (PresenceChange::Joined, public, conn, &*user);
            self.presence_changed(diff, Some(conn), context, out);
        }
    }

    /// Pact-style room details, for `GET /api/rooms/:room`.
    pub fn details(&self) -> RoomDetails {
        let tallies = |polls: &BTreeMap<String, Poll>| {
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
            polls: tallies(&self.polls),
            ephemeral_polls: tallies(&self.ephemeral_polls),
            counters: self.counters.clone(),
            config: self.config().to_owned(),
        }
    }
}

/// Whether an event for `scope` reaches member `m` (connection `conn`).
fn covers(scope: &Scope, conn: ConnId, m: &MemberState) -> bool {
    match scope {
        Scope::Room => true,
        Scope::Topic { kind, id } => m.subscriptions.wants(kind, id.as_deref()),
        Scope::Members(ids) => ids.iter().any(|id| id == m.id()),
        Scope::Presence { except } => {
            Some(conn) != *except
                && (m.traits.always_sees_presence || m.subscriptions.wants(types::PRESENCE, None))
        }
    }
}

/// The subscription topic of a poll family.
pub fn poll_topic(kind: PollKind) -> &'static str {
    match kind {
        PollKind::Durable => types::POLL,
        PollKind::Ephemeral => types::EPHEMERAL_POLL,
    }
}

/// A room's state as `GET /api/rooms/:room` shows it (rendered by the pact codec).
#[derive(Debug, Clone, PartialEq)]
pub struct RoomDetails {
    pub room: String,
    pub count: usize,
    pub members: Vec<Member>,
    pub polls: BTreeMap<String, BTreeMap<String, u64>>,
    pub ephemeral_polls: BTreeMap<String, BTreeMap<String, u64>>,
    pub counters: BTreeMap<String, Decimal>,
    pub config: String,
}
