//! A core's room-owner task: applies commands to the rooms this core owns, commits what
//! they changed to the store, and only then releases what they sent (so nobody sees a reply
//! or an event before the state it depends on is committed).
//!
//! Applying and releasing overlap: while one batch's commit is with the store, the owner
//! applies the next ones (up to [`IN_FLIGHT`] batches wait to be released), and a releaser
//! task releases each batch once its commit is answered, in the order they were made —
//! the store answers a core's commits in the order they were sent.

use super::mailbox::{now_ms, ToOwner};
use super::sequencer::{self, Sequencer};
use super::shard::Shard;
use crate::dialect::pact;
use crate::engine::emit::{EmitOutcome, ReplyToken};
use crate::engine::{Command, Engine, Outbox, RoomDetails};
use crate::ids::random_u64;
use crate::store::worker::Pending;
use ahash::AHashMap;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// Most commands applied before their effects are carried out.
const MAX_BATCH: usize = 256;

/// Most applied batches waiting for their commit before the owner waits too.
const IN_FLIGHT: usize = 2;

/// Requests waiting for an emit's outcome, by the token the engine answers with.
pub type Waiting = Rc<RefCell<AHashMap<ReplyToken, flume::Sender<EmitOutcome>>>>;

/// An applied batch on its way out: its commit (if it changed anything) and its effects.
struct Applied {
    commit: Option<Pending<()>>,
    out: Outbox,
}

/// Applies commands for the rooms this core owns, batch by batch.
pub async fn run_engine(shard: Rc<Shard>, commands: flume::Receiver<ToOwner>) {
    let mut engine = Engine::new(random_u64()).with_limits(shard.config.engine_limits(shard.cores));
    let waiting: Waiting = Rc::default();
    let sequencer = shard
        .node
        .redis
        .as_ref()
        .map(|_| Sequencer::start(shard.clone(), waiting.clone()));
    if let Some(sequencer) = &sequencer {
        engine = engine.with_sequencer();
        let _ = shard.sequencer.set(sequencer.clone());
    }
    let (applied, to_release) = flume::bounded::<Applied>(IN_FLIGHT);
    let (spent, reusable) = flume::unbounded::<Outbox>();
    monoio::spawn(release(shard.clone(), to_release, waiting.clone(), spent));
    let mut out = Outbox::default();
    let mut next_token = 0u64;
    let mut details = Vec::new();
    while let Ok(first) = commands.recv_async().await {
        let now = now_ms();
        let mut next = Some(first);
        // Take what is already queued too, so one commit and one dispatch carry many events.
        let mut taken = 0;
        while let Some(message) = next {
            match message {
                ToOwner::Engine(command) => engine.handle(command, now, &mut out),
                ToOwner::Emit {
                    room,
                    mut emit,
                    reply,
                } => {
                    next_token += 1;
                    emit.reply = ReplyToken(next_token);
                    waiting.borrow_mut().insert(emit.reply, reply);
                    engine.handle(Command::Emit { room, emit }, now, &mut out);
                }
                ToOwner::Details { room, reply } => match engine.details(&room) {
                    Some(live) => {
                        let _ = reply.try_send(pact::room_details(&live));
                    }
                    None => details.push((room, reply)),
                },
                ToOwner::Console(ask) => super::console::answer(&mut engine, ask),
            }
            taken += 1;
            next = if taken < MAX_BATCH {
                commands.try_recv().ok()
            } else {
                None
            };
        }
        let store = &shard.node.store;
        // The commit goes first: the loads and reads below, sent after it, see what it
        // changed.
        // The next turn's changes get the room this turn's took: growing a vector of
        // changes from empty in every turn was ~5 % of a saturated W3 core (callgrind).
        let commit = (!out.changes.is_empty()).then(|| {
            let room_for = out.changes.len();
            store.commit(std::mem::replace(
                &mut out.changes,
                Vec::with_capacity(room_for),
            ))
        });
        if let Some(sequencer) = &sequencer {
            // Rooms' shared state, history and events are Redis's.
            sequencer::carry_out(&shard, sequencer, &mut out, &mut details);
        }
        for room in out.loads.drain(..) {
            let pending = store.load(room.clone());
            answer_engine(&shard, pending, |result| Command::Loaded { room, result });
        }
        for read in out.reads.drain(..) {
            let pending = store.history(read.room.clone(), read.query);
            answer_engine(&shard, pending, |result| Command::Read { read, result });
        }
        for (room, reply) in details.drain(..) {
            let pending = store.load(room.clone());
            monoio::spawn(async move {
                // A store failure drops `reply`: the HTTP request answers 503.
                if let Ok(snapshot) = pending.wait().await {
                    let idle = RoomDetails::of_snapshot(&room, snapshot);
                    let _ = reply.try_send(pact::room_details(&idle));
                }
            });
        }
        shard.metrics.rooms.set(engine.room_count() as u64);
        shard.metrics.pending_acks.set(engine.pending_acks() as u64);
        // A node running alone has no broker: the engine's feed is off, nothing is here.
        out.published.clear();
        let next = reusable.try_recv().unwrap_or_default();
        let batch = Applied {
            commit,
            out: std::mem::replace(&mut out, next),
        };
        if applied.send_async(batch).await.is_err() {
            return;
        }
    }
}

/// Brings the store's answer back to this core's engine, as the command `answer` makes of
/// it, without holding up the owner meanwhile.
fn answer_engine<T: 'static>(
    shard: &Shard,
    pending: Pending<T>,
    answer: impl FnOnce(Result<T, String>) -> Command + 'static,
) {
    let own = shard.node.mailboxes[shard.id].commands.clone();
    monoio::spawn(async move {
        let result = pending.wait().await.map_err(|e| e.to_string());
        let _ = own.send_async(ToOwner::Engine(answer(result))).await;
    });
}

/// Releases applied batches in order, each once its commit is answered: answers emits,
/// then closes and delivers (`Shard::dispatch`). Hands each emptied outbox back for reuse.
async fn release(
    shard: Rc<Shard>,
    batches: flume::Receiver<Applied>,
    waiting: Waiting,
    spent: flume::Sender<Outbox>,
) {
    while let Ok(Applied { commit, mut out }) = batches.recv_async().await {
        if let Some(commit) = commit {
            // The store retries a failed commit until it succeeds, so what waits here is
            // never released before its state is stored. An error means the store's
            // thread is gone: the process is ending.
            if let Err(error) = commit.wait().await {
                tracing::error!(%error, "a commit was not answered");
            }
        }
        for (token, outcome) in out.outcomes.drain(..) {
            if matches!(outcome, EmitOutcome::AckTimeout { .. }) {
                shard.metrics.ack_timeouts.inc();
            }
            if let Some(reply) = waiting.borrow_mut().remove(&token) {
                let _ = reply.try_send(outcome);
            }
        }
        shard.dispatch(&mut out).await;
        let _ = spent.try_send(out);
    }
}

/// Lets this core's engine expire ack deadlines.
pub async fn run_engine_clock(shard: Rc<Shard>) {
    loop {
        monoio::time::sleep(Duration::from_millis(50)).await;
        let own = &shard.node.mailboxes[shard.id].commands;
        let _ = own.try_send(ToOwner::Engine(Command::Tick));
    }
}
