//! A core's link to Redis with `--engine redis` (SPEC §5.4): the shell's side of the
//! engine's sequencer effects. It sends the engine's proposals to the sequencer script,
//! loads rooms from Redis (subscribing first, so nothing published after the load is
//! missed), reads history and fills gaps from each room's stream, and turns what the
//! subscription brings into `Command::Remote` for this core's engine — this node's own
//! events included: a node delivers a room's events only as Redis ordered them.
//!
//! Each core has its own command connection and subscriber connection (`crate::redis`; one
//! pair per master against a Redis Cluster), and holds the rooms it owns: a room's events
//! arrive on the core that owns it.

use super::calls::{calls, pack, Held, MAX_RUN_BYTES};
use super::mailbox::{now_ms, ToOwner};
use super::owner::Waiting;
use super::shard::Shard;
use crate::engine::command::{LoadResult, ReadResult};
use crate::engine::emit::EmitOutcome;
use crate::engine::outbox::{Fill, Op, Proposal};
use crate::engine::{
    Command, Entry, ErrorCode, History, HistoryQuery, Outbox, PollKind, PresenceChange, Published,
    Reply, RoomEvent, RoomSnapshot, Send,
};
use crate::ids::{random_u64, ConnId};
use crate::redis::resp::{self, Frame};
use crate::redis::subscriber::Push;
use crate::redis::wire::{self, channel, key};
use crate::redis::{scripts, Redis, RedisError, Stats};
use ahash::AHashMap;
use rust_decimal::Decimal;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::str::FromStr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// How soon a heartbeat that failed is tried again.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// How long a room's load waits for its subscription to be confirmed.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Pact suffixes a node reserves for a room at a time (`rk:{room}:suffix`).
const SUFFIX_BLOCK: u64 = 32;

/// One call's worth of a room's plain events: the room, their bodies a line each, and each
/// proposal with its number.
type Chunk = (String, String, Vec<(u64, Proposal)>);

/// Attempts at a counter's compare-and-set before the change is refused.
const MAX_CAS: usize = 64;

/// How often a node says it is alive, and how long a node may stay silent before the
/// others remove its members (SPEC: within 8 s; a reaper looks every second).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
const SILENT_AFTER_MS: u64 = 5_000;

/// The set of nodes and their last heartbeats (Redis time).
const NODES: &str = "rk:nodes";

/// The nodes being reaped, with when their reaper took them (Redis time): a reaping not
/// finished after [`REAP_STALE_MS`] (its reaper died or lost Redis halfway) is claimed
/// and done again by another node. Every step of a reaping only removes what is the
/// silent node's, so doing one twice is harmless.
const REAPING: &str = "rk:reaping";
const REAP_STALE_MS: u64 = 30_000;

#[derive(Clone, Copy)]
enum Script {
    Sequence,
    Load,
    Presence,
    SequenceRooms,
}

/// How many scripts [`Script`] names (the size of the SHA1 cache).
const SCRIPTS: usize = 4;

/// What one node asks another about connections it holds (on the holder's own channel,
/// `rk:node:<id>`): sends that are not room-scoped reach only the nodes that hold their
/// targets.
#[derive(serde::Serialize, serde::Deserialize)]
enum Routed {
    Targeted {
        users: Vec<String>,
        clients: Vec<String>,
        event: RoomEvent,
    },
    Disconnect {
        id: String,
    },
    /// SLIP control: subscribe (`true`) or unsubscribe the connection `conn` to channels.
    Slip {
        conn: String,
        channels: Vec<(bool, String)>,
    },
}

/// A node's own channel.
fn node_channel(node: u64) -> String {
    format!("rk:node:{node:016x}")
}

/// Which nodes hold connections of a user (`u`) or a client id (`c`): a hash with a field
/// per connection, `<node>:<conn>` (idempotent: a connection listed again after Redis lost
/// its data is listed once).
fn who(kind: char, name: &str) -> String {
    format!("rk:who:{kind}:{name}")
}

impl Script {
    fn source(self) -> &'static str {
        match self {
            Script::Sequence => scripts::SEQUENCE,
            Script::Load => scripts::LOAD,
            Script::Presence => scripts::PRESENCE,
            Script::SequenceRooms => scripts::SEQUENCE_ROOMS,
        }
    }
}

/// The set of rooms a node has (had) members in.
fn node_rooms(node: u64) -> String {
    format!("rk:node:{node:016x}:rooms")
}

/// The set of directory keys ([`who`]) where a node lists connections, each as
/// `<core>|<key>` (a core adds its member with its first connection there and removes it
/// with its last: each member has one writer): what a reaper walks to take a silent
/// node's connections out of the directory.
fn node_directory(node: u64) -> String {
    format!("rk:node:{node:016x}:who")
}

/// Set by the reaper once it removed a node's members and directory entries; the node, if
/// it is alive after all (stalled, not dead), sees it at its next heartbeat and lists
/// itself again. Expires: a node that is really dead never reads it.
fn node_reaped(node: u64) -> String {
    format!("rk:node:{node:016x}:reaped")
}

/// How long [`node_reaped`] waits for its node, in seconds.
const REAPED_TTL_S: &str = "600";

/// Directory keys a reaper cleans per round trip.
const REAP_BATCH: usize = 500;

/// The prefix of a node's members' keys in rooms' shared presence.
fn member_prefix(node: u64) -> String {
    format!("{node:016x}:")
}

pub struct Sequencer {
    shard: Rc<Shard>,
    redis: Rc<Redis>,
    stats: Arc<Stats>,
    /// This process among the nodes: events it proposed come back carrying it.
    node_id: u64,
    next: Cell<u64>,
    /// Replies waiting for the event of proposal `n` to come back.
    pending: RefCell<AHashMap<u64, Vec<Send>>>,
    /// The scripts' SHA1s once Redis has them (`SCRIPT LOAD`); `EVAL` until then.
    shas: RefCell<[Option<String>; SCRIPTS]>,
    /// A `SCRIPT LOAD` of each script is under way (one at a time).
    learning: Cell<[bool; SCRIPTS]>,
    /// Redis Cluster: a script takes one room's keys only, so runs of several rooms never
    /// share a call ([`Sequencer::propose_runs`]).
    cluster: bool,
    waiting: Waiting,
    history_size: usize,
    /// Plain events waiting for their room's call under way ([`Held`]).
    held: RefCell<Held>,
}

impl Sequencer {
    /// Connects this core to the node's Redis and starts its tasks (core 0 also
    /// heartbeats for the node and removes the members of silent nodes).
    pub fn start(shard: Rc<Shard>, waiting: Waiting) -> Rc<Self> {
        let redis = shard
            .node
            .redis
            .as_ref()
            .expect("started with --engine redis");
        let node_id = redis.id;
        let cluster = redis.cluster;
        let stats = redis.stats[shard.id].clone();
        let (pushes, pushed) = (
            redis.pushes[shard.id].clone(),
            redis.pushed[shard.id].clone(),
        );
        let redis = Redis::start(
            redis.link.clone(),
            redis.cluster,
            stats.clone(),
            node_id,
            shard.id,
            pushes,
        );
        if shard.id == 0 {
            redis.want(node_channel(node_id));
        }
        let sequencer = Rc::new(Sequencer {
            history_size: shard.config.history_size.max(1),
            shard,
            redis,
            stats,
            node_id,
            next: Cell::new(0),
            pending: RefCell::default(),
            shas: RefCell::default(),
            learning: Cell::default(),
            cluster,
            waiting,
            held: RefCell::default(),
        });
        monoio::spawn(run_pushes(sequencer.clone(), pushed));
        if sequencer.shard.id == 0 {
            monoio::spawn(run_heartbeat(sequencer.clone()));
        }
        sequencer
    }

    /// Queues a script call now (so that calls queued one after the other run in that
    /// order); `EVALSHA` once Redis has the script.
    fn queue_script(
        &self,
        script: Script,
        keys: &[String],
        args: &[String],
    ) -> crate::redis::cluster::Queued {
        let sha = self.shas.borrow()[script as usize].clone();
        let mut command: Vec<&str> = Vec::with_capacity(3 + keys.len() + args.len());
        let count = keys.len().to_string();
        match &sha {
            Some(sha) => command.extend(["EVALSHA", sha.as_str()]),
            None => command.extend(["EVAL", script.source()]),
        }
        command.push(&count);
        command.extend(keys.iter().map(String::as_str));
        command.extend(args.iter().map(String::as_str));
        self.redis.queue(&command)
    }

    /// Runs a script, with `EVAL` when Redis lost it; learns its SHA1 for next time.
    async fn script(
        self: &Rc<Self>,
        script: Script,
        keys: &[String],
        args: &[String],
    ) -> Result<Frame, RedisError> {
        let first = self.queue_script(script, keys, args).wait().await;
        let frame = one(first)?;
        match frame {
            Frame::Error(e) if e.starts_with("NOSCRIPT") => {
                self.shas.borrow_mut()[script as usize] = None;
                self.learn_sha(script);
                one(self.queue_script(script, keys, args).wait().await)?.into_result()
            }
            frame => {
                if self.shas.borrow()[script as usize].is_none() {
                    self.learn_sha(script);
                }
                frame.into_result()
            }
        }
    }

    fn learn_sha(self: &Rc<Self>, script: Script) {
        let mut learning = self.learning.get();
        if std::mem::replace(&mut learning[script as usize], true) {
            return;
        }
        self.learning.set(learning);
        let this = self.clone();
        monoio::spawn(async move {
            let load = ["SCRIPT", "LOAD", script.source()];
            if let Ok(frame) = this.redis.call_all(&load).await {
                if let Some(sha) = resp::text(&frame) {
                    this.shas.borrow_mut()[script as usize] = Some(sha.to_owned());
                }
            }
            let mut learning = this.learning.get();
            learning[script as usize] = false;
            this.learning.set(learning);
        });
    }

    /// Hands a proposal other than a plain event (those go by `propose_runs`) to the
    /// sequencer script. Its replies wait for its event to come back; its emit outcomes
    /// are answered once Redis took it.
    pub fn propose(self: &Rc<Self>, mut proposal: Proposal) {
        if let Op::Ack { event_id, client } = &proposal.op {
            // Not sequenced: `! [event id, client]` on the room's channel.
            let ack = serde_json::to_string(&(event_id, client)).expect("strings serialize");
            let message = format!("! {ack}");
            let queued = self
                .redis
                .queue(&["SPUBLISH", &channel(&proposal.room), &message]);
            monoio::spawn(async move {
                let _ = queued.wait().await;
            });
            return;
        }
        let n = self.number(&mut proposal);
        let (script, (keys, args)) = match &proposal.op {
            Op::Presence { change, .. } => {
                if *change == PresenceChange::Joined {
                    self.register(&proposal.room);
                }
                (Script::Presence, self.presence_call(&proposal, n))
            }
            _ => (Script::Sequence, self.sequence_call(&proposal, n, false)),
        };
        let queued = self.queue_script(script, &keys, &args);
        let this = self.clone();
        monoio::spawn(async move {
            let mut answer = this.answer(script, queued, &keys, &args).await;
            let mut attempts = 0;
            // A counter sum the script would not make exactly (beyond 28 digits), or one
            // moved since: add to what is there with rust_decimal and compare-and-set.
            while let Ok(Frame::Array(parts)) = &answer {
                if resp::text(&parts[0]) != Some("conflict") {
                    break;
                }
                attempts += 1;
                let current = parts.get(1).and_then(resp::text).unwrap_or("0");
                match this.counter_retry(&mut proposal, current, attempts) {
                    Ok(()) => {
                        let (keys, args) = this.sequence_call(&proposal, n, true);
                        answer = this.script(Script::Sequence, &keys, &args).await;
                    }
                    Err(why) => {
                        answer = Err(RedisError::Reply(why.into()));
                        break;
                    }
                }
            }
            this.settle(n, proposal, answer).await;
        });
    }

    /// Hands a turn's proposals to the sequencer script, in order: each run of plain events
    /// of one room (a publisher's backlog read at once, say) goes as one call, which Redis
    /// sequences as it would each alone (op `events`) for one script run instead of many;
    /// plain events wait while their room has such a call under way ([`Held`]).
    pub fn propose_all(self: &Rc<Self>, proposals: impl IntoIterator<Item = Proposal>) {
        let mut ready = Vec::new();
        for mut call in calls(proposals) {
            if matches!(call[0].op, Op::Event) {
                let now = self.held.borrow_mut().offer(call);
                ready.extend(now);
                continue;
            }
            // What came before goes before it (and what its room holds, first).
            ready.extend(self.held.borrow_mut().release(&call[0].room));
            self.propose_runs(std::mem::take(&mut ready));
            if !matches!(call[0].op, Op::Presence { .. } | Op::Ack { .. }) {
                self.count_call(1);
            }
            self.propose(call.pop().expect("one"));
        }
        self.propose_runs(ready);
    }

    fn count_call(&self, events: usize) {
        self.stats.events_proposed.fetch_add(events as u64, Relaxed);
        self.stats.sequencer_calls.fetch_add(1, Relaxed);
    }

    /// Proposes runs of plain events (each of one room, in the order made), queued at once
    /// so that Redis takes them in that order. With standalone Redis, runs of several
    /// rooms share a call ([`pack`], `SEQUENCE_ROOMS`): a turn of many quiet rooms is one
    /// script run, not one per room. A lone run, or any with Redis Cluster, goes as op
    /// `events` of its room.
    fn propose_runs(self: &Rc<Self>, runs: Vec<Vec<Proposal>>) {
        let chunks: Vec<Chunk> = runs
            .into_iter()
            .flat_map(|run| self.numbered(run))
            .collect();
        let calls = if self.cluster {
            (0..chunks.len()).map(|i| i..i + 1).collect()
        } else {
            let sizes: Vec<(usize, usize)> = chunks
                .iter()
                .map(|(_, bodies, numbered)| (numbered.len(), bodies.len()))
                .collect();
            pack(&sizes)
        };
        let mut chunks = chunks.into_iter();
        for call in calls {
            let mut these: Vec<Chunk> = chunks.by_ref().take(call.len()).collect();
            match these.len() {
                1 => self.call_events(these.pop().expect("one")),
                _ => self.call_rooms(these),
            }
        }
    }

    /// A run of one room's plain events numbered, with their bodies a line each: one call's
    /// worth, or (bodies of more than [`MAX_RUN_BYTES`] in all) several, each counted as
    /// a call under way for the room ([`Held`]).
    fn numbered(&self, run: Vec<Proposal>) -> Vec<Chunk> {
        let room = run[0].room.clone();
        let mut calls: Vec<Chunk> = vec![(room.clone(), String::new(), Vec::new())];
        for mut proposal in run {
            let n = self.number(&mut proposal);
            let body = self.body(&proposal, n).0;
            let (_, bodies, numbered) = calls.last_mut().expect("one call at least");
            if !numbered.is_empty() && bodies.len() + 1 + body.len() > MAX_RUN_BYTES {
                calls.push((room.clone(), body, vec![(n, proposal)]));
                continue;
            }
            if !numbered.is_empty() {
                bodies.push('\n');
            }
            bodies.push_str(&body);
            numbered.push((n, proposal));
        }
        self.held
            .borrow_mut()
            .also_under_way(&room, calls.len() - 1);
        calls
    }

    /// One script call (op `events`) of a room's plain events, numbered, with their bodies
    /// a line each; once it is answered, what waited for it goes and each proposal settles.
    fn call_events(self: &Rc<Self>, (room, bodies, numbered): Chunk) {
        self.count_call(numbered.len());
        // ARGV 4 (one event's body) is unused: the count and the bodies follow the op.
        let mut args = self.sequence_args(&room, String::new());
        args.extend(["events".to_owned(), numbered.len().to_string(), bodies]);
        let keys = sequence_keys(&room, None);
        let queued = self.queue_script(Script::Sequence, &keys, &args);
        let this = self.clone();
        monoio::spawn(async move {
            let answer = this.answer(Script::Sequence, queued, &keys, &args).await;
            let next = this.held.borrow_mut().answered(&room);
            this.propose_runs(next);
            for (n, proposal) in numbered {
                this.settle(n, proposal, answer.clone()).await;
            }
        });
    }

    /// One script call (`SEQUENCE_ROOMS`) of the runs of several rooms, each as
    /// [`Sequencer::call_events`] would send it; once answered, what waited for any of
    /// those rooms goes (together), and each proposal settles with its run's answer.
    fn call_rooms(self: &Rc<Self>, chunks: Vec<Chunk>) {
        let events = chunks.iter().map(|c| c.2.len()).sum();
        self.count_call(events);
        self.stats.multi_room_calls.fetch_add(1, Relaxed);
        let mut keys = Vec::with_capacity(3 * chunks.len());
        let mut args = Vec::with_capacity(1 + 4 * chunks.len());
        args.push(self.history_size.to_string());
        let mut runs = Vec::with_capacity(chunks.len());
        for (room, bodies, numbered) in chunks {
            keys.extend([key(&room, "epoch"), key(&room, "seq"), key(&room, "log")]);
            args.extend([
                channel(&room),
                new_epoch(),
                numbered.len().to_string(),
                bodies,
            ]);
            runs.push((room, numbered));
        }
        let queued = self.queue_script(Script::SequenceRooms, &keys, &args);
        let this = self.clone();
        monoio::spawn(async move {
            let answer = this
                .answer(Script::SequenceRooms, queued, &keys, &args)
                .await;
            let mut next = Vec::new();
            for (room, _) in &runs {
                next.extend(this.held.borrow_mut().answered(room));
            }
            this.propose_runs(next);
            for (i, (_, numbered)) in runs.into_iter().enumerate() {
                // A run's answer, as a call of its own would have had it (a refused run's
                // error an `Err`, logged when it settles).
                let answer = match &answer {
                    Ok(Frame::Array(each)) => each
                        .get(i)
                        .cloned()
                        .ok_or_else(|| {
                            RedisError::Reply("the sequencer answered fewer runs".into())
                        })
                        .and_then(Frame::into_result),
                    other => other.clone(),
                };
                for (n, proposal) in numbered {
                    this.settle(n, proposal, answer.clone()).await;
                }
            }
        });
    }

    /// A proposal's number among this node's (what its event comes back carrying); its
    /// replies wait under it.
    fn number(&self, proposal: &mut Proposal) -> u64 {
        let n = self.next.get() + 1;
        self.next.set(n);
        let replies = std::mem::take(&mut proposal.replies);
        if !replies.is_empty() {
            self.pending.borrow_mut().insert(n, replies);
        }
        n
    }

    /// The answer to a queued script call: sent again with `EVAL` if Redis lost the
    /// script (and its SHA1 learnt again), learning the SHA1 if it was not known yet.
    async fn answer(
        self: &Rc<Self>,
        script: Script,
        queued: crate::redis::cluster::Queued,
        keys: &[String],
        args: &[String],
    ) -> Result<Frame, RedisError> {
        match one(queued.wait().await) {
            Ok(Frame::Error(e)) if e.starts_with("NOSCRIPT") => {
                self.shas.borrow_mut()[script as usize] = None;
                self.script(script, keys, args).await
            }
            Ok(frame) => {
                if self.shas.borrow()[script as usize].is_none() {
                    self.learn_sha(script);
                }
                frame.into_result()
            }
            Err(e) => Err(e),
        }
    }

    /// Recomputes a counter proposal from the value Redis holds: `counter overflow` when
    /// the sum does not fit, `counter busy` when it kept losing to other changes.
    fn counter_retry(
        &self,
        proposal: &mut Proposal,
        current: &str,
        attempts: usize,
    ) -> Result<(), &'static str> {
        let Op::Counter {
            expected, delta, ..
        } = &mut proposal.op
        else {
            return Err("counter overflow");
        };
        let current = Decimal::from_str(current).map_err(|_| "counter overflow")?;
        let value = current
            .checked_add(*delta)
            .ok_or("counter overflow")?
            .normalize();
        if attempts > MAX_CAS {
            return Err("counter busy");
        }
        *expected = current;
        if let RoomEvent::Counter { value: v, .. } = &mut proposal.event {
            *v = value;
        }
        Ok(())
    }

    /// What became of a proposal: taken (its outcomes answered), nothing to do (a vote
    /// that changed nothing: its replies go now), or refused (errors for the replies).
    async fn settle(&self, n: u64, proposal: Proposal, answer: Result<Frame, RedisError>) {
        let verdict = match &answer {
            Ok(Frame::Array(parts)) => resp::text(&parts[0]).unwrap_or("").to_owned(),
            // The presence script answers the room's count.
            Ok(Frame::Integer(_)) => "ok".to_owned(),
            Ok(_) => String::new(),
            Err(error) => {
                tracing::warn!(room = %proposal.room, %error, "the sequencer did not take a change");
                String::new()
            }
        };
        let taken = verdict == "ok";
        for (token, outcome) in proposal.outcomes {
            let outcome = if taken {
                outcome
            } else {
                EmitOutcome::Unavailable
            };
            if let Some(reply) = self.waiting.borrow_mut().remove(&token) {
                let _ = reply.try_send(outcome);
            }
        }
        if taken {
            return;
        }
        let replies = self.pending.borrow_mut().remove(&n).unwrap_or_default();
        let mut out = Outbox::default();
        for send in replies {
            match send {
                Send::Reply {
                    to,
                    codec,
                    reply: Reply::Ok { reference },
                } if verdict != "same" => {
                    let refused = match &answer {
                        Err(RedisError::Reply(e)) if e == "counter overflow" => {
                            (ErrorCode::InvalidData, "counter overflow".to_owned())
                        }
                        Err(RedisError::Reply(e)) if e == "counter busy" => (
                            ErrorCode::Unavailable,
                            "the counter kept changing under this change: try again".to_owned(),
                        ),
                        // Written, never answered: Redis may still apply it.
                        Err(RedisError::Unavailable(e)) if e.starts_with("no reply within") => (
                            ErrorCode::Unavailable,
                            "redis did not answer in time: the change may still be applied".into(),
                        ),
                        _ => (
                            ErrorCode::Unavailable,
                            "the room's state is unavailable (redis): try again later".into(),
                        ),
                    };
                    let error = Reply::Error {
                        reference: Some(reference),
                        code: refused.0,
                        message: refused.1,
                    };
                    out.reply(to, codec, error);
                }
                Send::Reply {
                    reply: Reply::Published,
                    ..
                } if verdict != "same" => {}
                send => out.sends.push(send),
            }
        }
        if !out.sends.is_empty() {
            self.shard.dispatch(&mut out).await;
        }
    }

    /// Lists `room` among this node's rooms (what a reaper walks if the node goes silent)
    /// and the node among the nodes, queued just before a join. Not in the presence script:
    /// these keys are the node's, in other slots than the room's in a Redis Cluster.
    fn register(&self, room: &str) {
        let me = format!("{:016x}", self.node_id);
        self.redis
            .queue(&["EVAL", scripts::REGISTER, "1", NODES, &me])
            .detach();
        self.redis
            .queue(&["SADD", &node_rooms(self.node_id), room])
            .detach();
    }

    /// The keys and arguments of the presence script for a member's diff.
    fn presence_call(&self, proposal: &Proposal, n: u64) -> (Vec<String>, Vec<String>) {
        let Op::Presence {
            change,
            conn,
            user,
            member,
        } = &proposal.op
        else {
            unreachable!("a presence proposal");
        };
        let room = &proposal.room;
        let keys = vec![
            key(room, "members"),
            key(room, "users"),
            key(room, "polls"),
            key(room, "epoch"),
            key(room, "seq"),
            key(room, "log"),
        ];
        let op = match change {
            PresenceChange::Joined => "join",
            PresenceChange::Updated => "update",
            PresenceChange::Left => "leave",
        };
        let member_json = serde_json::to_string(member).expect("members serialize");
        let value = format!("{}:{user}{member_json}", user.len());
        let scope = serde_json::to_string(&proposal.scope).expect("scopes serialize");
        let origin = format!("[{},{n}]", self.node_id);
        let args = vec![
            channel(room),
            new_epoch(),
            self.history_size.to_string(),
            proposal.at_ms.to_string(),
            key(room, "poll:"),
            op.to_owned(),
            format!("{}{}", member_prefix(self.node_id), conn.0),
            value,
            user.clone(),
            scope,
            origin,
        ];
        (keys, args)
    }

    /// The keys and arguments of the sequencer script for `proposal`; a counter's delta
    /// is added in the script, or with `cas` the value the proposal computed is set if
    /// the counter still holds the value it expected.
    fn sequence_call(&self, proposal: &Proposal, n: u64, cas: bool) -> (Vec<String>, Vec<String>) {
        let room = &proposal.room;
        let (body, suffix) = self.body(proposal, n);
        let poll = match &proposal.op {
            Op::Vote { kind, poll, .. } => wire::poll_member(*kind == PollKind::Ephemeral, poll),
            _ => String::new(),
        };
        let keys = sequence_keys(room, (!poll.is_empty()).then_some(poll.as_str()));
        let mut args = self.sequence_args(room, body);
        match &proposal.op {
            Op::Config(config) => args.extend(["config".into(), config.clone()]),
            Op::Counter {
                id,
                expected,
                delta,
            } => {
                // A compare-and-set sets the value `counter_retry` put in the event.
                let (expected, value) = match (&proposal.event, cas) {
                    (RoomEvent::Counter { value, .. }, true) => {
                        (expected.normalize().to_string(), value.to_string())
                    }
                    _ => (String::new(), String::new()),
                };
                args.extend([
                    "counter".into(),
                    id.clone(),
                    delta.normalize().to_string(),
                    expected,
                    value,
                    suffix.unwrap_or_default(),
                ]);
            }
            Op::Vote { user, answer, .. } => args.extend([
                "vote".into(),
                user.clone(),
                answer.clone().unwrap_or_default(),
                suffix.unwrap_or_default(),
                poll,
            ]),
            Op::Presence { .. } | Op::Ack { .. } => unreachable!("not the sequencer script's"),
            // Every run of plain events, one event included, goes as op `events`.
            Op::Event => unreachable!("plain events go by propose_runs"),
        }
        (keys, args)
    }

    /// The sequencer script's first arguments, the same for every op: ARGV 1 the room's
    /// channel, 2 an epoch for a room Redis does not know, 3 the history size, 4 `body`.
    fn sequence_args(&self, room: &str, body: String) -> Vec<String> {
        vec![
            channel(room),
            new_epoch(),
            self.history_size.to_string(),
            body,
        ]
    }

    /// The body of proposal `n` as the script takes it (split where the script puts a
    /// counter's value or a poll's stats: [`wire::encode_body`]).
    fn body(&self, proposal: &Proposal, n: u64) -> (String, Option<String>) {
        wire::encode_body(&wire::Body {
            scope: Cow::Borrowed(&proposal.scope),
            at_ms: proposal.at_ms,
            origin: (self.node_id, n),
            key: None,
            event: Cow::Borrowed(&proposal.event),
        })
    }

    /// A room's state from Redis; with `subscribe`, the room's channel is subscribed
    /// first (confirmed), so that no event after the state read is missed.
    pub async fn load(self: &Rc<Self>, room: String, subscribe: bool) -> LoadResult {
        if subscribe {
            let confirmed = self.redis.subscribe(channel(&room));
            match monoio::time::timeout(SUBSCRIBE_TIMEOUT, confirmed).await {
                Ok(Ok(())) => {}
                _ => {
                    return Err(
                        "redis is unavailable: the room's channel was not subscribed".into(),
                    )
                }
            }
        }
        let keys = [
            key(&room, "epoch"),
            key(&room, "seq"),
            key(&room, "state"),
            key(&room, "polls"),
            key(&room, "members"),
            key(&room, "suffix"),
        ];
        // A room made live here gets a block of suffixes; a look at its details none.
        let block = if subscribe { SUFFIX_BLOCK } else { 0 };
        let args = [new_epoch(), key(&room, "poll:"), block.to_string()];
        let frame = self
            .script(Script::Load, &keys, &args)
            .await
            .map_err(|e| e.to_string())?;
        let mut snapshot = snapshot_of(frame, &member_prefix(self.node_id))?;
        if let Some(until) = snapshot.suffix_until {
            snapshot.suffix = until.saturating_sub(block);
        }
        Ok(Some(snapshot))
    }

    /// Reserves another block of Pact suffixes for a room and hands it to the engine.
    pub fn reserve_suffixes(self: &Rc<Self>, room: String) {
        let this = self.clone();
        monoio::spawn(async move {
            let own = this.shard.node.mailboxes[this.shard.id].commands.clone();
            let block = SUFFIX_BLOCK.to_string();
            let until = this
                .redis
                .call(&["INCRBY", &key(&room, "suffix"), &block])
                .await;
            let block = match until.map(|f| resp::int(&f)) {
                Ok(Some(until)) if until >= 0 => {
                    let until = until as u64;
                    Ok((until.saturating_sub(SUFFIX_BLOCK), until))
                }
                Ok(_) => Err("an unexpected answer to INCRBY".to_owned()),
                Err(e) => Err(e.to_string()),
            };
            let answer = Command::Suffixes { room, block };
            let _ = own.send_async(ToOwner::Engine(answer)).await;
        });
    }

    /// The room has no member on this core any more: stop receiving its events.
    pub fn idle(&self, room: &str) {
        self.redis.unsubscribe(channel(room));
    }

    /// Reads what a room missed after a gap and hands it to the engine, then
    /// `Command::Filled`.
    pub fn fill(self: &Rc<Self>, fill: Fill) {
        let this = self.clone();
        monoio::spawn(async move {
            let own = this.shard.node.mailboxes[this.shard.id].commands.clone();
            let log = key(&fill.room, "log");
            let epoch = this.redis.call(&["GET", &key(&fill.room, "epoch")]).await;
            let same = matches!(&epoch, Ok(f) if resp::text(f) == Some(fill.epoch.as_str()));
            // A new epoch: its stream is read from its start.
            let from = if same {
                format!("{}-0", fill.after + 1)
            } else {
                "-".to_owned()
            };
            let read = this.redis.call(&["XRANGE", &log, &from, "+"]).await;
            let complete = read.is_ok();
            if let Ok(frame) = read {
                for (entry, origin) in entries_with_origin(frame) {
                    // The first entry read may be a run that began at or before `after`.
                    if same && entry.seq() <= fill.after {
                        continue;
                    }
                    // This node's own event, missed live: its replies go with it.
                    let replies = match origin.0 == this.node_id {
                        true => this.pending.borrow_mut().remove(&origin.1),
                        false => None,
                    };
                    let published = Published {
                        room: fill.room.clone(),
                        event: entry.event,
                        scope: entry.scope,
                        replies: replies.unwrap_or_default(),
                        member_key: None,
                    };
                    let command = Command::Remote(published);
                    if own.send_async(ToOwner::Engine(command)).await.is_err() {
                        return;
                    }
                }
            }
            // Read after the events: what the stream keeps now (older ones are gone).
            let first = this
                .redis
                .call(&["XRANGE", &log, "-", "+", "COUNT", "1"])
                .await;
            let oldest = first.as_ref().ok().and_then(|f| {
                let entries = entries(f.clone());
                entries.first().map(Entry::seq)
            });
            let done = Command::Filled {
                room: fill.room,
                oldest,
                complete: complete && first.is_ok(),
            };
            let _ = own.send_async(ToOwner::Engine(done)).await;
        });
    }

    /// A page of a room's history from its stream. An entry holds one event or a run
    /// (`wire`), and its id is its last event's `seq`: so the entries from `after + 1` on
    /// begin with the first event wanted (the first of them may start earlier), and an
    /// entry before `before` may have its run's end at or past it.
    pub async fn read(&self, room: &str, query: HistoryQuery) -> ReadResult {
        let log = key(room, "log");
        let limit = query.limit.max(1);
        let count = limit.to_string();
        let wanted = |e: &Entry| {
            query.after.is_none_or(|after| e.seq() > after)
                && query.before.is_none_or(|before| e.seq() < before)
        };
        let mut events = match (query.after, query.before) {
            (Some(after), _) => {
                // Each entry read holds at least one event after `after`: `limit` entries
                // hold the first `limit` such events.
                let from = format!("{}-0", after + 1);
                self.entries(&["XRANGE", &log, &from, "+", "COUNT", &count])
                    .await?
            }
            (None, Some(before)) if before <= 1 => return Ok(History::default()),
            (None, Some(before)) => {
                // The entry whose run reaches `before` first, then the ones wholly before.
                let from = format!("{before}-0");
                let mut events = self
                    .entries(&["XRANGE", &log, &from, "+", "COUNT", "1"])
                    .await?;
                let from = format!("{}-0", before - 1);
                let older = self
                    .entries(&["XREVRANGE", &log, &from, "-", "COUNT", &count])
                    .await?;
                events.extend(older);
                events
            }
            (None, None) => {
                self.entries(&["XREVRANGE", &log, "+", "-", "COUNT", &count])
                    .await?
            }
        };
        events.retain(wanted);
        events.sort_by_key(Entry::seq);
        if query.after.is_some() {
            events.truncate(limit);
        } else {
            events.drain(..events.len().saturating_sub(limit));
        }
        if let Some(since) = query.since_ms {
            events.retain(|e| e.at_ms >= since);
        }
        let oldest = self
            .entries(&["XRANGE", &log, "-", "+", "COUNT", "1"])
            .await?;
        let oldest = oldest.first().map(Entry::seq);
        Ok(History { events, oldest })
    }

    /// The history entries a stream read (`XRANGE`, `XREVRANGE`) answers, in its order.
    async fn entries(&self, call: &[&str]) -> Result<Vec<Entry>, String> {
        let frame = self.redis.call(call).await.map_err(|e| e.to_string())?;
        Ok(entries(frame))
    }
}

/// Carries out a batch's sequencer effects (called by the owner after the batch's commit
/// to the local store was sent): proposals, room loads, history reads, gap fills, rooms
/// gone idle, and the details of rooms not live here (read from Redis).
pub fn carry_out(
    shard: &Rc<Shard>,
    sequencer: &Rc<Sequencer>,
    out: &mut Outbox,
    details: &mut Vec<(String, flume::Sender<String>)>,
) {
    sequencer.propose_all(out.proposals.drain(..));
    for room in out.idle.drain(..) {
        sequencer.idle(&room);
    }
    for room in out.suffixes.drain(..) {
        sequencer.reserve_suffixes(room);
    }
    for fill in out.fills.drain(..) {
        sequencer.fill(fill);
    }
    let own = shard.node.mailboxes[shard.id].commands.clone();
    for room in out.loads.drain(..) {
        let (this, own) = (sequencer.clone(), own.clone());
        monoio::spawn(async move {
            let result = this.load(room.clone(), true).await;
            let _ = own
                .send_async(ToOwner::Engine(Command::Loaded { room, result }))
                .await;
        });
    }
    for read in out.reads.drain(..) {
        let (this, own) = (sequencer.clone(), own.clone());
        monoio::spawn(async move {
            let result = this.read(&read.room, read.query).await;
            let _ = own
                .send_async(ToOwner::Engine(Command::Read { read, result }))
                .await;
        });
    }
    for (room, reply) in details.drain(..) {
        let this = sequencer.clone();
        monoio::spawn(async move {
            // Redis unavailable drops `reply`: the HTTP request answers 503.
            if let Ok(snapshot) = this.load(room.clone(), false).await {
                let idle = crate::engine::RoomDetails::of_snapshot(&room, snapshot);
                let _ = reply.try_send(crate::dialect::pact::room_details(&idle));
            }
        });
    }
}

/// The sequencer script's keys for `room` (KEYS 5 is the poll's votes hash for a vote).
fn sequence_keys(room: &str, poll: Option<&str>) -> Vec<String> {
    vec![
        key(room, "epoch"),
        key(room, "seq"),
        key(room, "log"),
        key(room, "state"),
        match poll {
            Some(poll) => wire::poll_key(room, poll),
            None => key(room, "state"),
        },
        key(room, "polls"),
    ]
}

/// The one reply of a one-command job.
fn one(frames: Result<Vec<Frame>, RedisError>) -> Result<Frame, RedisError> {
    frames?
        .pop()
        .ok_or_else(|| RedisError::Unavailable("no reply".into()))
}

trait IntoResult {
    fn into_result(self) -> Result<Frame, RedisError>;
}

impl IntoResult for Frame {
    fn into_result(self) -> Result<Frame, RedisError> {
        match self {
            Frame::Error(e) => Err(RedisError::Reply(e)),
            frame => Ok(frame),
        }
    }
}

/// A candidate epoch for a room Redis does not know (the first script to run for the room
/// makes it the room's). Every proposal carries one, so it is drawn from a per-core
/// generator (splitmix64, seeded from the OS once) rather than the OS each time:
/// unpredictability is not needed, only that epochs never repeat, which 64 random bits
/// make as unlikely as before.
fn new_epoch() -> String {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(random_u64());
    }
    let mut z = STATE.with(|state| {
        let next = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(next);
        next
    });
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("{:016x}", z ^ (z >> 31))
}

/// History entries of an `XRANGE` answer (entries that do not decode are logged and left
/// out).
fn entries(frame: Frame) -> Vec<Entry> {
    entries_with_origin(frame)
        .into_iter()
        .map(|(entry, _)| entry)
        .collect()
}

/// [`entries`], each with the node (and its proposal) that made it.
fn entries_with_origin(frame: Frame) -> Vec<(Entry, (u64, u64))> {
    let Frame::Array(items) = frame else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Frame::Array(mut parts) = item else {
            continue;
        };
        let Some(Frame::Array(fields)) = parts.pop() else {
            continue;
        };
        let Some(Frame::BulkString(message)) = fields.into_iter().nth(1) else {
            continue;
        };
        for message in decoded("a room's history", &message) {
            let (event, scope, origin, at_ms) = message.sequenced();
            let entry = Entry {
                event,
                scope,
                at_ms,
            };
            out.push((entry, origin));
        }
    }
    out
}

/// The events of a message from a room's channel or stream, in order; a message or a
/// body that does not decode is logged (with where it came from) and left out.
fn decoded<'a>(source: &'a str, message: &'a [u8]) -> impl Iterator<Item = wire::Message> + 'a {
    let warn = move |error: String| tracing::warn!(%source, %error, "an undecodable message");
    let events = wire::decode(message).map_err(warn).into_iter().flatten();
    events.filter_map(move |event| event.map_err(warn).ok())
}

/// A room's snapshot from the load script's answer; members whose key starts with `mine`
/// are this node's own (it knows them better) and are left out.
fn snapshot_of(frame: Frame, mine: &str) -> Result<RoomSnapshot, String> {
    let bad = || "an unexpected answer from redis to a room's load".to_owned();
    let Frame::Array(parts) = frame else {
        return Err(bad());
    };
    let [epoch, seq, state, polls, members, until] =
        <[Frame; 6]>::try_from(parts).map_err(|_| bad())?;
    let mut snapshot = RoomSnapshot {
        epoch: resp::text(&epoch).map(str::to_owned),
        seq: resp::int(&seq).unwrap_or(0).max(0) as u64,
        suffix_until: Some(resp::int(&until).ok_or_else(bad)?.max(0) as u64),
        ..RoomSnapshot::default()
    };
    for (field, value) in pairs(state) {
        if field == "config" {
            snapshot.config = Some(value);
        } else if let Some(counter) = field.strip_prefix("c:") {
            if let Ok(value) = Decimal::from_str(&value) {
                snapshot.counters.insert(counter.to_owned(), value);
            }
        }
    }
    let Frame::Array(polls) = polls else {
        return Err(bad());
    };
    let mut polls = polls.into_iter();
    while let (Some(member), Some(votes)) = (polls.next(), polls.next()) {
        let Some(member) = resp::text(&member).map(str::to_owned) else {
            continue;
        };
        let votes = pairs(votes).collect();
        if let Some(id) = member.strip_prefix("d:") {
            snapshot.polls.insert(id.to_owned(), votes);
        } else if let Some(id) = member.strip_prefix("e:") {
            snapshot.ephemeral_polls.insert(id.to_owned(), votes);
        }
    }
    for (key, value) in pairs(members) {
        if key.starts_with(mine) {
            continue;
        }
        let member = value
            .split_once(':')
            .and_then(|(n, rest)| rest.get(n.parse::<usize>().ok()?..))
            .and_then(|json| serde_json::from_str(json).ok());
        if let Some(member) = member {
            snapshot.members.insert(key, member);
        }
    }
    Ok(snapshot)
}

/// A flat `[field, value, …]` array as pairs of strings.
fn pairs(frame: Frame) -> impl Iterator<Item = (String, String)> {
    let items = match frame {
        Frame::Array(items) => items,
        _ => Vec::new(),
    };
    let texts: Vec<String> = items
        .iter()
        .map(|f| resp::text(f).unwrap_or("").to_owned())
        .collect();
    let mut out = Vec::with_capacity(texts.len() / 2);
    let mut it = texts.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    out.into_iter()
}

/// Turns what the subscription brings into commands for this core's engine.
async fn run_pushes(this: Rc<Sequencer>, pushed: flume::Receiver<Push>) {
    let own = this.shard.node.mailboxes[this.shard.id].commands.clone();
    let mine = node_channel(this.node_id);
    while let Ok(push) = pushed.recv_async().await {
        let command = match push {
            Push::Resubscribed | Push::Reaped => {
                // What follows needs the command connection too, which reconnects on its
                // own: wait for it (bounded; a Redis that is gone again resubscribes again).
                for _ in 0..50 {
                    if this.stats.commands_up() {
                        break;
                    }
                    monoio::time::sleep(Duration::from_millis(100)).await;
                }
                this.relist();
                Command::Resync
            }
            Push::Dropped(channel) => {
                this.redis.dropped(&channel);
                continue;
            }
            Push::Refused(error) => {
                this.redis.refused(&error);
                continue;
            }
            Push::Message { channel, payload } => {
                if channel == mine.as_bytes() {
                    routed(&this.shard, &payload).await;
                    continue;
                }
                let Some(room) = wire::room_of(&channel) else {
                    continue;
                };
                if let Some(ack) = payload.strip_prefix(b"! ") {
                    let Ok((event_id, client)) = serde_json::from_slice::<(String, String)>(ack)
                    else {
                        continue;
                    };
                    let room = room.to_owned();
                    let ack = Command::RemoteAck {
                        room,
                        event_id,
                        client,
                    };
                    if own.send_async(ToOwner::Engine(ack)).await.is_err() {
                        return;
                    }
                    continue;
                }
                // One publication may carry several events (op `events`): each is a
                // command of its own, in order.
                for message in decoded(room, &payload) {
                    let command = this.remote(room, message);
                    if own.send_async(ToOwner::Engine(command)).await.is_err() {
                        return;
                    }
                }
                continue;
            }
        };
        if own.send_async(ToOwner::Engine(command)).await.is_err() {
            return;
        }
    }
}

impl Sequencer {
    /// The command for one event from a room's channel, with the replies that waited for
    /// it if this node proposed it.
    fn remote(&self, room: &str, message: wire::Message) -> Command {
        let key = message.body.key.clone();
        let (event, mut scope, origin, _) = message.sequenced();
        let mine = origin.0 == self.node_id;
        let replies = if mine {
            self.pending.borrow_mut().remove(&origin.1)
        } else {
            // Connection ids are this node's: another node's exception excepts nobody here.
            if let crate::engine::Scope::Presence { except } = &mut scope {
                *except = None;
            }
            None
        };
        Command::Remote(Published {
            room: room.to_owned(),
            event,
            scope,
            replies: replies.unwrap_or_default(),
            // This node's own members are its engine's; the copy is of the others.
            member_key: key.filter(|_| !mine),
        })
    }
}

/// The node's heartbeat, and the removal of silent nodes' members: every second, the
/// node says it is alive and claims the nodes silent for [`SILENT_AFTER_MS`] (one node
/// claims each), then removes their members from each room they had members in (`left`
/// diffs to every node's watchers, ephemeral votes withdrawn).
async fn run_heartbeat(this: Rc<Sequencer>) {
    let me = format!("{:016x}", this.node_id);
    loop {
        let beat = ["EVAL", scripts::HEARTBEAT, "1", NODES, &me];
        if this.redis.call(&beat).await.is_err() {
            // Not connected yet (or any more): try again soon.
            monoio::time::sleep(RETRY_EVERY).await;
            continue;
        }
        let reaped = this
            .redis
            .call(&["GETDEL", &node_reaped(this.node_id)])
            .await;
        if matches!(reaped, Ok(Frame::BulkString(_))) {
            tracing::warn!(
                "the other nodes took this node for dead (silent for more than {} s) and \
                 removed its members: listing them again",
                SILENT_AFTER_MS / 1000
            );
            if let Some(redis) = &this.shard.node.redis {
                for core in &redis.pushes {
                    let _ = core.send(Push::Reaped);
                }
            }
        }
        // Silent nodes, and reapings that a reaper left unfinished (it died, or lost
        // Redis, on the way): claimed once each, recorded while under way.
        for (set, after_ms) in [(NODES, SILENT_AFTER_MS), (REAPING, REAP_STALE_MS)] {
            let after = after_ms.to_string();
            let claim = ["EVAL", scripts::CLAIM_SILENT, "1", set, &after];
            let Ok(Frame::Array(nodes)) = this.redis.call(&claim).await else {
                continue;
            };
            for name in nodes.iter().filter_map(resp::text) {
                let Ok(node) = u64::from_str_radix(name, 16) else {
                    continue;
                };
                if set == REAPING && this.beats_again(name).await {
                    // Alive after all, and partly removed: it lists itself again once it
                    // sees the flag.
                    let flag = node_reaped(node);
                    let _ = this
                        .redis
                        .call(&["SET", &flag, "1", "EX", REAPED_TTL_S])
                        .await;
                    let _ = this.redis.call(&["ZREM", REAPING, name]).await;
                    continue;
                }
                let record = ["EVAL", scripts::HEARTBEAT, "1", REAPING, name];
                if this.redis.call(&record).await.is_err() {
                    continue;
                }
                this.reap(node).await;
                let _ = this.redis.call(&["ZREM", REAPING, name]).await;
            }
        }
        monoio::time::sleep(HEARTBEAT_EVERY).await;
    }
}

impl Sequencer {
    /// Whether `node` heartbeats again (it is in the set of nodes).
    async fn beats_again(&self, node: &str) -> bool {
        matches!(
            self.redis.call(&["ZSCORE", NODES, node]).await,
            Ok(Frame::BulkString(_))
        )
    }

    /// Removes a silent node's members from every room it had members in.
    async fn reap(self: &Rc<Self>, node: u64) {
        let set = node_rooms(node);
        let Ok(rooms) = self.redis.call(&["SMEMBERS", &set]).await else {
            return;
        };
        let Frame::Array(rooms) = rooms else {
            return;
        };
        let rooms: Vec<String> = rooms
            .iter()
            .filter_map(resp::text)
            .map(str::to_owned)
            .collect();
        tracing::warn!(node = %format!("{node:016x}"), rooms = rooms.len(), "a node went silent: removing its members");
        for room in rooms {
            let keys = [
                key(&room, "members"),
                key(&room, "users"),
                key(&room, "polls"),
                key(&room, "epoch"),
                key(&room, "seq"),
                key(&room, "log"),
            ];
            let args = [
                channel(&room),
                new_epoch(),
                self.history_size.to_string(),
                now_ms().to_string(),
                key(&room, "poll:"),
                "reap".to_owned(),
                member_prefix(node),
            ];
            if let Err(error) = self.script(Script::Presence, &keys, &args).await {
                tracing::warn!(%room, %error, "a silent node's members could not be removed");
            }
        }
        let _ = self.redis.call(&["DEL", &set]).await;
        self.reap_directory(node).await;
        let flag = node_reaped(node);
        let _ = self
            .redis
            .call(&["SET", &flag, "1", "EX", REAPED_TTL_S])
            .await;
    }

    /// Takes a silent node's connections out of the directory of users and client ids, so
    /// that sends to them stop going to its channel: for each key the node listed
    /// connections under, its fields (`<node>:<conn>`) are deleted; other nodes' stay.
    /// Only this node's fields are touched and `HDEL` of a field already gone does
    /// nothing, so a second reaper doing the same (or a reaper that stopped halfway and a
    /// later one) is harmless. Keys go in batches of [`REAP_BATCH`], pipelined: two round
    /// trips per batch (`HKEYS`, then `HDEL`).
    async fn reap_directory(self: &Rc<Self>, node: u64) {
        let index = node_directory(node);
        let prefix = member_prefix(node);
        let mut cursor = "0".to_owned();
        let mut removed = 0usize;
        loop {
            let count = REAP_BATCH.to_string();
            let scan = ["SSCAN", &index, &cursor, "COUNT", &count];
            let Ok(Frame::Array(mut reply)) = self.redis.call(&scan).await else {
                return;
            };
            let members = reply.pop().map(pairs_of_array).unwrap_or_default();
            cursor = reply.first().and_then(resp::text).unwrap_or("0").to_owned();
            let mut keys: Vec<&str> = members
                .iter()
                .filter_map(|m| m.split_once('|').map(|(_, key)| key))
                .collect();
            keys.sort_unstable();
            keys.dedup();
            if !keys.is_empty() {
                removed += self.remove_fields(&keys, &prefix).await;
            }
            if cursor == "0" {
                break;
            }
        }
        let _ = self.redis.call(&["DEL", &index]).await;
        tracing::info!(node = %format!("{node:016x}"), removed, "a silent node's connections left the directory");
    }

    /// Deletes the fields starting with `prefix` from the hashes `keys`; answers how many.
    /// Each key's commands are queued at once (pipelined per master: in a Cluster the
    /// keys live in any slot) and waited for after.
    async fn remove_fields(self: &Rc<Self>, keys: &[&str], prefix: &str) -> usize {
        let asked: Vec<_> = keys
            .iter()
            .map(|key| self.redis.queue(&["HKEYS", key]))
            .collect();
        let mut deletes = Vec::new();
        for (key, asked) in keys.iter().zip(asked) {
            let Ok(mut fields) = asked.wait().await else {
                continue;
            };
            let mut command = vec!["HDEL".to_owned(), key.to_string()];
            command.extend(
                fields
                    .pop()
                    .map(pairs_of_array)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|f| f.starts_with(prefix)),
            );
            if command.len() > 2 {
                deletes.push(self.redis.queue(&command));
            }
        }
        let mut removed = 0;
        for delete in deletes {
            if let Ok(replies) = delete.wait().await {
                removed += replies.iter().filter_map(resp::int).sum::<i64>() as usize;
            }
        }
        removed
    }
}

/// The strings of an array reply.
fn pairs_of_array(frame: Frame) -> Vec<String> {
    match frame {
        Frame::Array(items) => items
            .iter()
            .filter_map(resp::text)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// Carries out what another node asked of this one's connections.
async fn routed(shard: &Rc<Shard>, payload: &[u8]) {
    match serde_json::from_slice::<Routed>(payload) {
        Ok(Routed::Targeted {
            users,
            clients,
            event,
        }) => {
            let wires = crate::fanout::encode_all(event);
            shard.send_targeted(users, clients, wires).await;
        }
        Ok(Routed::Disconnect { id }) => {
            super::admin_api::disconnect_here(shard, &id).await;
        }
        Ok(Routed::Slip { conn, channels }) => {
            use crate::dialect::slip::BackendEvent;
            let events: Vec<BackendEvent> = channels
                .into_iter()
                .map(|(on, channel)| match on {
                    true => BackendEvent::Subscribe(channel),
                    false => BackendEvent::Unsubscribe(channel),
                })
                .collect();
            for mailbox in &shard.node.mailboxes {
                let apply = super::mailbox::ToConns::Slip {
                    conn: conn.clone(),
                    events: events.clone(),
                };
                let _ = mailbox.deliveries.send_async(apply).await;
            }
        }
        Err(error) => tracing::warn!(%error, "an undecodable message on this node's channel"),
    }
}

impl Sequencer {
    /// Lists a connection of this node in the directory of users and client ids (when
    /// indexed), or takes it out (when not any more), so that other nodes know to send
    /// here.
    ///
    /// The node's own set of directory keys ([`node_directory`]) follows: this core's
    /// member for a key is added with its first connection there and removed with its
    /// last (the core's name indexes say which, and they are updated before this).
    pub fn directory(&self, conn: ConnId, user: Option<&str>, client: &str, listed: bool) {
        let user = user.map(|u| (who('u', u), !self.shard.other_with_user(u, conn)));
        let client = (who('c', client), !self.shard.other_with_id(client, conn));
        for (key, alone) in user.into_iter().chain([client]) {
            self.list(conn, &key, listed, alone);
        }
    }

    /// One directory key's update: the connection's field, and this core's member of the
    /// node's set of keys when `alone` (the first or last connection of the core there).
    fn list(&self, conn: ConnId, key: &str, listed: bool, alone: bool) {
        let field = format!("{}{}", member_prefix(self.node_id), conn.0);
        // Fire and forget: a lost update costs a publish nobody answers, or a send that
        // misses this node until Redis is back (then every connection is listed again,
        // `relist`). One command each: in a Cluster the two keys live in any slots.
        match listed {
            true => self.redis.queue(&["HSET", key, &field, "1"]).detach(),
            false => self.redis.queue(&["HDEL", key, &field]).detach(),
        }
        if alone {
            let index = node_directory(self.node_id);
            let member = format!("{}|{key}", self.shard.id);
            let verb = if listed { "SADD" } else { "SREM" };
            self.redis.queue(&[verb, &index, &member]).detach();
        }
    }

    /// Lists every connection of this core again (after the link to Redis was down: Redis
    /// may have lost the directory, or the others may have taken this node out of it
    /// while it was silent), with the node's set of keys.
    fn relist(&self) {
        for conn in self.shard.conns.borrow().values() {
            let user = conn.user_id();
            let keys = user
                .map(|u| who('u', &u))
                .into_iter()
                .chain([who('c', &conn.public_id())]);
            for key in keys {
                self.list(conn.id, &key, true, true);
            }
        }
    }

    /// Sends `event` to the connections of `users` and `clients` that other nodes hold,
    /// through those nodes' own channels only.
    pub fn route_targeted(
        self: &Rc<Self>,
        users: &[String],
        clients: &[String],
        event: &RoomEvent,
    ) {
        let keys: Vec<String> = users
            .iter()
            .map(|u| who('u', u))
            .chain(clients.iter().map(|c| who('c', c)))
            .collect();
        if keys.is_empty() {
            return;
        }
        let message = Routed::Targeted {
            users: users.to_vec(),
            clients: clients.to_vec(),
            event: event.clone(),
        };
        let message = serde_json::to_string(&message).expect("routed messages serialize");
        let this = self.clone();
        monoio::spawn(async move {
            for node in this.holders(&keys).await.into_keys() {
                let _ = this
                    .redis
                    .call(&["SPUBLISH", &node_channel(node), &message])
                    .await;
            }
        });
    }

    /// SLIP control: subscribes or unsubscribes the connection `conn` (held by another
    /// node) to a channel.
    pub async fn route_slip(&self, conn: &str, subscribe: bool, channel: &str) {
        let message = Routed::Slip {
            conn: conn.to_owned(),
            channels: vec![(subscribe, channel.to_owned())],
        };
        let message = serde_json::to_string(&message).expect("routed messages serialize");
        for node in self.holders(&[who('c', conn)]).await.into_keys() {
            let _ = self
                .redis
                .call(&["SPUBLISH", &node_channel(node), &message])
                .await;
        }
    }

    /// Closes the connections with public id `id` that other nodes hold; answers how many
    /// the directory counts there.
    pub async fn disconnect_elsewhere(&self, id: &str) -> usize {
        let holders = self.holders(&[who('c', id)]).await;
        let message = Routed::Disconnect { id: id.to_owned() };
        let message = serde_json::to_string(&message).expect("routed messages serialize");
        let mut count = 0;
        for (node, n) in holders {
            let _ = self
                .redis
                .call(&["SPUBLISH", &node_channel(node), &message])
                .await;
            count += n;
        }
        count
    }

    /// Other nodes holding what these directory entries name, with their counts.
    async fn holders(&self, keys: &[String]) -> AHashMap<u64, usize> {
        let mut nodes = AHashMap::new();
        for key in keys {
            if let Ok(frame) = self.redis.call(&["HGETALL", key]).await {
                for (field, _) in pairs(frame) {
                    let node = field.split_once(':').map(|(node, _)| node);
                    let Some(Ok(node)) = node.map(|n| u64::from_str_radix(n, 16)) else {
                        continue;
                    };
                    if node != self.node_id {
                        *nodes.entry(node).or_default() += 1;
                    }
                }
            }
        }
        nodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_do_not_repeat() {
        let epochs: std::collections::HashSet<String> = (0..10_000).map(|_| new_epoch()).collect();
        assert_eq!(epochs.len(), 10_000);
        assert!(epochs.iter().all(|e| e.len() == 16));
    }
}
