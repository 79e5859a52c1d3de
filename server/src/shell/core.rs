//! One core: its connections, its share of the rooms (an [`Engine`]), the channels that
//! link it to the other cores, and the tasks that move frames between them.
//!
//! Two bounded channels lead into each core. `commands` carries work for the rooms this core
//! owns (from connections on any core); `deliveries` carries encoded frames for connections
//! this core holds. The delivery task never waits on anything but its own channel, so an
//! engine task blocked on a full delivery channel always makes progress: no cycle, no
//! deadlock, and backpressure reaches the readers that produce the commands.

use super::conn::{Conn, State};
use crate::config::Config;
use crate::dialect::pact;
use crate::engine::broker::LocalBroker;
use crate::engine::store::MemoryStore;
use crate::engine::{Command, Engine, Outbox};
use crate::frame;
use crate::ids::{owner_core, ConnId};
use crate::wheel::Wheel;
use ahash::AHashMap;
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tungstenite::protocol::frame::coding::CloseCode;

/// Work for a room owner.
pub enum ToOwner {
    Engine(Command),
    /// `GET /api/rooms/:room`: the details as JSON text.
    Details {
        room: String,
        reply: flume::Sender<String>,
    },
}

/// Frames for connections held by the receiving core: each frame with its recipients.
pub type DeliveryBatch = Vec<(Bytes, Vec<ConnId>)>;

/// The sending ends of one core's two inbound channels.
#[derive(Clone)]
pub struct Link {
    pub commands: flume::Sender<ToOwner>,
    pub deliveries: flume::Sender<DeliveryBatch>,
}

/// Wall-clock milliseconds since the epoch: the engine's and the wheel's notion of now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a connection's wheel entry is checked for.
pub struct Core {
    pub id: usize,
    pub cores: usize,
    pub config: Arc<Config>,
    pub links: Arc<Vec<Link>>,
    pub conns: RefCell<AHashMap<ConnId, Rc<Conn>>>,
    next_seq: Cell<u64>,
    wheel: RefCell<Wheel<ConnId>>,
    /// Reused for simd-json's in-place parsing.
    pub scratch: RefCell<Vec<u8>>,
}

impl Core {
    pub fn new(id: usize, config: Arc<Config>, links: Arc<Vec<Link>>) -> Rc<Core> {
        let tick = (config.ping_interval_ms / 4).clamp(10, 1000);
        let slots = (config.ping_interval_ms / tick + 2) as usize;
        Rc::new(Core {
            id,
            cores: links.len(),
            config,
            links,
            conns: RefCell::new(AHashMap::new()),
            next_seq: Cell::new(1),
            wheel: RefCell::new(Wheel::new(tick, slots, now_ms())),
            scratch: RefCell::new(Vec::new()),
        })
    }

    pub fn next_conn_id(&self) -> ConnId {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        ConnId::new(self.id, seq)
    }

    pub fn owner_of(&self, room: &str) -> &Link {
        &self.links[owner_core(room, self.cores)]
    }

    /// Registers a live connection and schedules its first ping check.
    pub fn register(&self, conn: Rc<Conn>) {
        let at = now_ms() + self.config.ping_interval_ms;
        self.wheel.borrow_mut().schedule(at, conn.id);
        self.conns.borrow_mut().insert(conn.id, conn);
    }

    pub fn unregister(&self, id: ConnId) {
        self.conns.borrow_mut().remove(&id);
    }

    /// Queues `frame` for a connection of this core, if it is still here.
    pub fn deliver(&self, to: ConnId, frame: &Bytes, now: u64) {
        let conn = self.conns.borrow().get(&to).cloned();
        if let Some(conn) = conn {
            let was_open = conn.state() == State::Open;
            if !conn.send(frame.clone(), now) && was_open {
                // Just closed as a slow consumer: shut it down once the close grace is over.
                self.wheel
                    .borrow_mut()
                    .schedule(now + self.config.close_grace_ms, to);
            }
        }
    }

    /// Sends a command to the owner of `room`, waiting while its channel is full.
    pub async fn command(&self, room: &str, command: Command) {
        let _ = self
            .owner_of(room)
            .commands
            .send_async(ToOwner::Engine(command))
            .await;
    }

    /// Carries out an outbox: local recipients get the frame now; each other core with
    /// recipients gets one batch holding every frame for it.
    pub async fn dispatch(&self, out: &mut Outbox) {
        let now = now_ms();
        let mut remote: Vec<DeliveryBatch> = vec![Vec::new(); self.cores];
        for send in out.sends.drain(..) {
            let mut per_core: Vec<Vec<ConnId>> = vec![Vec::new(); self.cores];
            for to in send.to {
                if to.core() == self.id {
                    self.deliver(to, &send.frame, now);
                } else if to.core() < self.cores {
                    per_core[to.core()].push(to);
                }
            }
            for (core, conns) in per_core.into_iter().enumerate() {
                if !conns.is_empty() {
                    remote[core].push((send.frame.clone(), conns));
                }
            }
        }
        for (core, batch) in remote.into_iter().enumerate() {
            if !batch.is_empty() {
                let _ = self.links[core].deliveries.send_async(batch).await;
            }
        }
    }

    /// One pass of the ping wheel: ping the live, close the silent, shut down the closing
    /// ones whose grace ran out.
    fn check_deadlines(&self, now: u64, due: &mut Vec<ConnId>) {
        self.wheel.borrow_mut().advance(now, due);
        let interval = self.config.ping_interval_ms;
        for id in due.drain(..) {
            let Some(conn) = self.conns.borrow().get(&id).cloned() else {
                continue;
            };
            let next = match conn.state() {
                State::Dead => continue,
                State::Closing { since_ms } if now >= since_ms + self.config.close_grace_ms => {
                    tracing::debug!(conn = id.0, "close grace over: shutting the socket down");
                    conn.shut_down();
                    continue;
                }
                State::Closing { since_ms } => since_ms + self.config.close_grace_ms,
                State::Open => {
                    let silent = now.saturating_sub(conn.last_seen_ms.get());
                    if silent >= interval * u64::from(self.config.ping_missed) {
                        tracing::debug!(conn = id.0, silent, "ping timeout");
                        conn.close(CloseCode::Away, "ping timeout", now);
                        now + self.config.close_grace_ms
                    } else {
                        conn.send(frame::ping(&now.to_be_bytes()), now);
                        conn.send(pact::ping(now), now);
                        now + interval
                    }
                }
            };
            self.wheel.borrow_mut().schedule(next, id);
        }
    }
}

/// Applies commands for the rooms this core owns, then dispatches what they produced.
pub async fn run_engine(core: Rc<Core>, commands: flume::Receiver<ToOwner>) {
    let mut engine = Engine::new(Box::<MemoryStore>::default(), Box::new(LocalBroker));
    let mut out = Outbox::default();
    while let Ok(first) = commands.recv_async().await {
        let now = now_ms();
        let mut next = Some(first);
        // Take what is already queued too, so one dispatch carries many events.
        let mut taken = 0;
        while let Some(message) = next {
            match message {
                ToOwner::Engine(command) => engine.handle(command, now, &mut out),
                ToOwner::Details { room, reply } => {
                    let json = serde_json::to_string(&engine.details(&room))
                        .unwrap_or_else(|_| "{}".to_owned());
                    let _ = reply.try_send(json);
                }
            }
            taken += 1;
            next = if taken < 256 {
                commands.try_recv().ok()
            } else {
                None
            };
        }
        core.dispatch(&mut out).await;
    }
}

/// Queues frames sent to this core's connections by room owners on other cores.
pub async fn run_deliveries(core: Rc<Core>, deliveries: flume::Receiver<DeliveryBatch>) {
    while let Ok(batch) = deliveries.recv_async().await {
        let now = now_ms();
        for (frame, conns) in batch {
            for to in conns {
                core.deliver(to, &frame, now);
            }
        }
    }
}

/// Advances the ping wheel every tick.
pub async fn run_ticker(core: Rc<Core>) {
    let tick = Duration::from_millis(core.wheel.borrow().tick_ms());
    let mut due = Vec::new();
    loop {
        monoio::time::sleep(tick).await;
        core.check_deadlines(now_ms(), &mut due);
    }
}
