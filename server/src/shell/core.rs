//! One core: its connections, its share of the rooms (an [`Engine`]), the channels that
//! link it to the other cores, and the tasks that move frames between them.
//!
//! Two bounded channels lead into each core. `commands` carries work for the rooms this core
//! owns (from connections and HTTP requests on any core); `deliveries` carries encoded
//! events for connections this core holds, and requests about them. The delivery task never
//! waits on anything but its own channel, so an engine task blocked on a full delivery
//! channel always makes progress: no cycle, no deadlock, and backpressure reaches the
//! sessions that produce the commands.

use super::conn::{Conn, State};
use super::handshakes::Handshakes;
use super::metrics::Metrics;
use super::names::NameIndex;
use crate::config::Config;
use crate::dialect::{Dialect, Wire};
use crate::engine::emit::EmitOutcome;
use crate::engine::{Command, Emit, Outbox};
use crate::fanout;
use crate::ids::{owner_core, ConnId};
use crate::store::worker::StoreHandle;
use crate::wheel::Wheel;
use ahash::AHashMap;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tungstenite::protocol::frame::coding::CloseCode;

/// Work for a room owner.
pub enum ToOwner {
    Engine(Command),
    /// An HTTP emit; its outcome goes back on `reply`.
    Emit {
        room: String,
        emit: Emit,
        reply: flume::Sender<EmitOutcome>,
    },
    /// `GET /api/rooms/:room`: the details as JSON text.
    Details {
        room: String,
        reply: flume::Sender<String>,
    },
}

/// Work for the core holding some connections.
pub enum ToConns {
    /// Encoded events, each with its recipients on this core.
    Deliver(Vec<(Wire, Vec<ConnId>)>),
    /// Close every connection whose public id is `id`; answers how many.
    Disconnect {
        id: String,
        reply: flume::Sender<usize>,
    },
    /// An event for every connection of these users and these client ids, in each
    /// dialect (indexed by [`Dialect::index`]).
    Targeted {
        users: Vec<String>,
        clients: Vec<String>,
        wires: Arc<[Option<Wire>; Dialect::COUNT]>,
    },
    /// Close this connection (the engine refused it, e.g. over the room limit).
    Close {
        conn: ConnId,
        code: u16,
        reason: String,
    },
    /// Graceful shutdown: close every connection within the jitter window.
    Drain { jitter_ms: u64 },
    /// SLIP control API: carry out `events` for the SLIP connection with this id.
    Slip {
        conn: String,
        events: Vec<crate::dialect::slip::BackendEvent>,
    },
}

/// The sending ends of one core's two inbound channels.
#[derive(Clone)]
pub struct Link {
    pub commands: flume::Sender<ToOwner>,
    pub deliveries: flume::Sender<ToConns>,
}

/// Wall-clock milliseconds since the epoch: the engine's and the wheel's notion of now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Everything shared by the cores: configuration, channels, counters.
pub struct Shared {
    pub config: Config,
    pub verifier: crate::auth::Verifier,
    /// The HTTP client toward backends, when SLIP or walkers are configured.
    pub backend: Option<crate::backend::Backend>,
    pub links: Vec<Link>,
    pub metrics: Vec<Arc<Metrics>>,
    pub driver: &'static str,
    /// Set on SIGTERM/SIGINT: `readyz` answers 503, no new connection is admitted.
    pub draining: std::sync::atomic::AtomicBool,
    pub seats: super::admission::Seats,
    /// The state store, on its own thread.
    pub store: StoreHandle,
}

impl Shared {
    /// Open WebSocket connections on every core.
    pub fn open_connections(&self) -> u64 {
        self.metrics.iter().map(|m| m.connections.get()).sum()
    }
}

pub struct Core {
    pub id: usize,
    pub cores: usize,
    pub shared: Arc<Shared>,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    pub conns: RefCell<AHashMap<ConnId, Rc<Conn>>>,
    /// This core's connections by public id, and by authenticated user.
    by_public: RefCell<NameIndex>,
    by_user: RefCell<NameIndex>,
    next_seq: Cell<u64>,
    wheel: RefCell<Wheel<ConnId>>,
    /// Deadlines of sockets still sending their request head.
    pub handshakes: Handshakes,
    /// Reused for simd-json's in-place parsing.
    pub scratch: RefCell<Vec<u8>>,
    /// Backend calls this core has in flight.
    backend_in_flight: Cell<usize>,
}

impl Core {
    pub fn new(id: usize, shared: Arc<Shared>) -> Rc<Core> {
        let config = shared.config.clone();
        let tick = (config.ping_interval_ms / 4).clamp(10, 1000);
        let slots = (config.ping_interval_ms / tick + 2) as usize;
        Rc::new(Core {
            id,
            cores: shared.links.len(),
            metrics: shared.metrics[id].clone(),
            config,
            shared,
            conns: RefCell::new(AHashMap::new()),
            by_public: RefCell::default(),
            by_user: RefCell::default(),
            next_seq: Cell::new(1),
            wheel: RefCell::new(Wheel::new(tick, slots, now_ms())),
            handshakes: Handshakes::default(),
            scratch: RefCell::new(Vec::new()),
            backend_in_flight: Cell::new(0),
        })
    }

    pub fn next_conn_id(&self) -> ConnId {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        ConnId::new(self.id, seq)
    }

    pub fn owner_of(&self, room: &str) -> &Link {
        &self.shared.links[owner_core(room, self.cores)]
    }

    /// Registers a live connection and schedules its first ping.
    pub fn register(&self, conn: Rc<Conn>) {
        let at = now_ms() + self.config.ping_interval_ms;
        self.wheel.borrow_mut().schedule(at, conn.id);
        self.index(&conn);
        self.conns.borrow_mut().insert(conn.id, conn);
        self.metrics.connections.inc();
        self.metrics.connections_total.inc();
    }

    pub fn unregister(&self, id: ConnId) {
        let removed = self.conns.borrow_mut().remove(&id);
        if let Some(conn) = removed {
            self.unindex(&conn);
            self.metrics.connections.sub(1);
        }
    }

    /// Queues an encoded event for a connection of this core, if it is still here.
    pub fn deliver(&self, to: ConnId, wire: &Wire, now: u64) {
        let conn = self.conns.borrow().get(&to).cloned();
        if let Some(conn) = conn {
            let was_open = conn.state() == State::Open;
            if conn.send_wire(wire, now) {
                self.metrics.deliveries.inc();
            } else if was_open {
                // Just closed as a slow consumer: shut it down once the close grace is over.
                self.schedule(now + self.config.close_grace_ms, to);
            }
        }
    }

    /// Closes the connection `id` of this core, if it is still here.
    pub fn close_id(&self, id: ConnId, code: u16, reason: &str, now: u64) {
        let conn = self.conns.borrow().get(&id).cloned();
        if let Some(conn) = conn {
            self.close(&conn, CloseCode::from(code), reason, now);
        }
    }

    /// Graceful shutdown: closes every connection at a random moment within `jitter_ms`,
    /// so that clients do not all reconnect elsewhere at once.
    fn drain(&self, jitter_ms: u64, now: u64) {
        let conns: Vec<Rc<Conn>> = self.conns.borrow().values().cloned().collect();
        for conn in conns {
            let at = now + crate::ids::random_u64() % jitter_ms.max(1);
            conn.drain_at_ms.set(Some(at));
            self.schedule(at, conn.id);
        }
    }

    /// Closes a connection of this core with `code` and shuts it down after the grace.
    pub fn close(&self, conn: &Conn, code: CloseCode, reason: &str, now: u64) {
        conn.close(code, reason, now);
        self.schedule(now + self.config.close_grace_ms, conn.id);
    }

    fn schedule(&self, at: u64, id: ConnId) {
        self.wheel.borrow_mut().schedule(at, id);
    }

    /// Sends a command to the owner of `room`, waiting while its channel is full.
    pub async fn command(&self, room: &str, command: Command) {
        let _ = self
            .owner_of(room)
            .commands
            .send_async(ToOwner::Engine(command))
            .await;
    }

    /// Carries out an outbox's closes and sends: each send is encoded once per dialect among
    /// its recipients; local recipients get it now; each other core with recipients gets one
    /// batch holding every frame for it.
    pub async fn dispatch(&self, out: &mut Outbox) {
        let now = now_ms();
        for (conn, code, reason) in out.closes.drain(..) {
            if conn.core() == self.id {
                self.close_id(conn, code, &reason, now);
            } else if conn.core() < self.cores {
                let close = ToConns::Close { conn, code, reason };
                let _ = self.shared.links[conn.core()]
                    .deliveries
                    .send_async(close)
                    .await;
            }
        }
        let mut encoded = Vec::new();
        for send in out.sends.drain(..) {
            fanout::encode(send, &mut encoded);
        }
        let mut remote: Vec<Vec<(Wire, Vec<ConnId>)>> = vec![Vec::new(); self.cores];
        // Recipients on other cores, grouped per core; reused from frame to frame.
        let mut per_core: Vec<Vec<ConnId>> = vec![Vec::new(); self.cores];
        for (wire, to) in encoded {
            for conn in to {
                if conn.core() == self.id {
                    self.deliver(conn, &wire, now);
                } else if conn.core() < self.cores {
                    per_core[conn.core()].push(conn);
                }
            }
            for (core, conns) in per_core.iter_mut().enumerate() {
                if !conns.is_empty() {
                    remote[core].push((wire.clone(), std::mem::take(conns)));
                }
            }
        }
        for (core, batch) in remote.into_iter().enumerate() {
            if !batch.is_empty() {
                let _ = self.shared.links[core]
                    .deliveries
                    .send_async(ToConns::Deliver(batch))
                    .await;
            }
        }
    }

    /// One pass of the wheel: ping the live, close the silent, shut down the closing ones
    /// whose grace ran out.
    fn check_deadlines(&self, now: u64, due: &mut Vec<ConnId>) {
        self.handshakes.expire(now);
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
                State::Open if conn.drain_at_ms.get().is_some_and(|at| at <= now) => {
                    conn.close(CloseCode::Away, "server shutting down", now);
                    now + self.config.close_grace_ms
                }
                State::Open => {
                    let silent = now.saturating_sub(conn.last_seen_ms.get());
                    if silent >= interval * u64::from(self.config.ping_missed) {
                        tracing::debug!(conn = id.0, silent, "ping timeout");
                        self.ping_timeout(&conn, now);
                        now + self.config.close_grace_ms
                    } else {
                        self.ping(&conn, now);
                        now + interval
                    }
                }
            };
            self.schedule(next, id);
        }
    }

    /// Sends the connection's heartbeat (its dialect's), noting when, for the round trip.
    fn ping(&self, conn: &Conn, now: u64) {
        if conn.ping_sent_ms.get().is_none() {
            conn.ping_sent_ms.set(Some(now));
        }
        for frame in conn.with_peer(|peer| conn.dialect.protocol().ping(now, peer)) {
            conn.send(frame, now);
        }
    }

    fn ping_timeout(&self, conn: &Conn, now: u64) {
        if let Some(frame) = conn.with_peer(|peer| conn.dialect.protocol().ping_timeout(peer)) {
            conn.send(frame, now);
        }
        conn.close(CloseCode::Away, "ping timeout", now);
    }

    /// POSTs to a backend, within this core's bound on calls in flight.
    pub async fn backend(
        &self,
        request: crate::backend::BackendRequest,
    ) -> Result<crate::backend::BackendResponse, crate::backend::BackendError> {
        use crate::backend::BackendError;
        let Some(backend) = self.shared.backend.as_ref() else {
            return Err(BackendError::Failed("no backend configured".into()));
        };
        if self.backend_in_flight.get() >= self.config.backend_max_in_flight {
            self.metrics.backend_failures.inc();
            return Err(BackendError::Overloaded);
        }
        self.backend_in_flight.set(self.backend_in_flight.get() + 1);
        self.metrics.backend_requests.inc();
        let result = backend.post(request).await;
        self.backend_in_flight.set(self.backend_in_flight.get() - 1);
        match &result {
            Err(BackendError::Timeout) => self.metrics.backend_timeouts.inc(),
            Err(_) => self.metrics.backend_failures.inc(),
            Ok(r) if !(200..300).contains(&r.status) => self.metrics.backend_failures.inc(),
            Ok(_) => {}
        }
        result
    }

    /// This core's connections with public id `id`.
    pub fn conns_with_id(&self, id: &str) -> Vec<Rc<Conn>> {
        self.named(&self.by_public, id, |c| c.has_public_id(id))
    }

    /// Closes this core's connections whose public id is `id`.
    fn disconnect(&self, id: &str, now: u64) -> usize {
        let matching = self.conns_with_id(id);
        let mut closed = 0;
        for conn in matching.iter().filter(|c| c.state() == State::Open) {
            self.close(conn, CloseCode::Normal, "disconnected by the server", now);
            closed += 1;
        }
        closed
    }

    /// This core's connections that `index` lists under `name` and that `is_named` confirms.
    fn named(
        &self,
        index: &RefCell<NameIndex>,
        name: &str,
        is_named: impl Fn(&Conn) -> bool,
    ) -> Vec<Rc<Conn>> {
        let conns = self.conns.borrow();
        index
            .borrow()
            .candidates(name)
            .iter()
            .filter_map(|id| conns.get(id))
            .filter(|conn| is_named(conn))
            .cloned()
            .collect()
    }

    /// Delivers a targeted send to this core's connections of `users` and `clients`, each
    /// connection at most once, in its own dialect.
    fn deliver_targeted(
        &self,
        users: &[String],
        clients: &[String],
        wires: &[Option<Wire>; Dialect::COUNT],
        now: u64,
    ) {
        let mut seen = ahash::AHashSet::new();
        let by_user = users
            .iter()
            .flat_map(|u| self.named(&self.by_user, u, |c| c.has_user(u)));
        let by_client = clients.iter().flat_map(|c| self.conns_with_id(c));
        for conn in by_user.chain(by_client) {
            if let Some(wire) = &wires[conn.dialect.index()] {
                if seen.insert(conn.id) {
                    self.deliver(conn.id, wire, now);
                }
            }
        }
    }

    /// Indexes a connection under its public id (and user, if any).
    pub fn index(&self, conn: &Conn) {
        self.by_public.borrow_mut().add(&conn.public_id(), conn.id);
        if let Some(user) = conn.user_id() {
            self.by_user.borrow_mut().add(&user, conn.id);
        }
    }

    pub fn unindex(&self, conn: &Conn) {
        self.by_public
            .borrow_mut()
            .remove(&conn.public_id(), conn.id);
        if let Some(user) = conn.user_id() {
            self.by_user.borrow_mut().remove(&user, conn.id);
        }
    }

    /// Sends `wires` (one per dialect) to every connection of `users` and `clients` on
    /// every core. Connections are found by the core that holds them, so ids and users are
    /// known everywhere without shared state.
    pub async fn send_targeted(
        &self,
        users: Vec<String>,
        clients: Vec<String>,
        wires: [Option<Wire>; Dialect::COUNT],
    ) {
        let wires = Arc::new(wires);
        for link in &self.shared.links {
            let message = ToConns::Targeted {
                users: users.clone(),
                clients: clients.clone(),
                wires: wires.clone(),
            };
            let _ = link.deliveries.send_async(message).await;
        }
    }
}

/// Carries out what other cores ask of this core's connections.
pub async fn run_deliveries(core: Rc<Core>, deliveries: flume::Receiver<ToConns>) {
    while let Ok(message) = deliveries.recv_async().await {
        let now = now_ms();
        match message {
            ToConns::Deliver(batch) => {
                for (wire, conns) in batch {
                    for to in conns {
                        core.deliver(to, &wire, now);
                    }
                }
            }
            ToConns::Disconnect { id, reply } => {
                let _ = reply.try_send(core.disconnect(&id, now));
            }
            ToConns::Targeted {
                users,
                clients,
                wires,
            } => core.deliver_targeted(&users, &clients, &wires, now),
            ToConns::Close { conn, code, reason } => core.close_id(conn, code, &reason, now),
            ToConns::Drain { jitter_ms } => core.drain(jitter_ms, now),
            ToConns::Slip { conn, events } => {
                // Carrying them out sends commands, which may wait: not on this task, which
                // must never wait (see the module docs).
                for target in core.conns_with_id(&conn) {
                    if target.dialect == Dialect::Slip {
                        let core = core.clone();
                        let events = events.clone();
                        monoio::spawn(async move {
                            let mut actions = Vec::new();
                            crate::dialect::slip::apply(events, &mut actions);
                            super::session::carry_out(&core, &target, actions).await;
                        });
                    }
                }
            }
        }
    }
}

/// Advances the connection wheel every tick.
pub async fn run_ticker(core: Rc<Core>) {
    let tick = Duration::from_millis(core.wheel.borrow().tick_ms());
    let mut due = Vec::new();
    loop {
        monoio::time::sleep(tick).await;
        core.check_deadlines(now_ms(), &mut due);
    }
}
