//! One core's shard of the node: its connections, its share of the rooms (an engine, run by
//! `owner.rs`), and the ways frames leave it: to its own connections, or through the other
//! shards' mailboxes (`mailbox.rs`).

use super::conn::{Conn, State};
use super::handshakes::Handshakes;
use super::mailbox::{now_ms, Mailbox, Node, ToConns, ToOwner};
use super::metrics::Metrics;
use super::names::NameIndex;
use crate::config::Config;
use crate::dialect::{Dialect, Wire};
use crate::engine::{Command, Outbox, RoomEvent};
use crate::fanout;
use crate::ids::{owner_core, ConnId};
use crate::wheel::Wheel;
use ahash::AHashMap;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use tungstenite::protocol::frame::coding::CloseCode;

pub struct Shard {
    pub id: usize,
    pub cores: usize,
    pub node: Arc<Node>,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    /// What every connection of this core points to: its metrics and limits.
    pub conn_shared: Rc<super::conn::ConnShared>,
    pub conns: RefCell<AHashMap<ConnId, Rc<Conn>>>,
    /// This core's connections by public id, and by authenticated user.
    by_public: RefCell<NameIndex>,
    by_user: RefCell<NameIndex>,
    next_seq: Cell<u64>,
    pub(super) wheel: RefCell<Wheel<ConnId>>,
    /// Token deadlines of the connections whose token has an `exp` (`expiry.rs`).
    pub(super) tokens: RefCell<super::expiry::TokenClocks>,
    /// Deadlines of sockets still sending their request head.
    pub handshakes: Handshakes,
    /// Reused for simd-json's in-place parsing.
    pub scratch: RefCell<Vec<u8>>,
    /// Backend calls this core has in flight.
    backend_in_flight: Cell<usize>,
    /// With `--engine redis`: this core's link to Redis (set by the owner task at start).
    pub sequencer: std::cell::OnceCell<Rc<super::sequencer::Sequencer>>,
}

impl Shard {
    pub fn new(id: usize, node: Arc<Node>) -> Rc<Shard> {
        let config = node.config.clone();
        let grace_ms = config.token_grace_ms;
        let tick = (config.ping_interval_ms / 4).clamp(10, 1000);
        let slots = (config.ping_interval_ms / tick + 2) as usize;
        Rc::new(Shard {
            id,
            cores: node.mailboxes.len(),
            metrics: node.metrics[id].clone(),
            conn_shared: Rc::new(super::conn::ConnShared {
                metrics: node.metrics[id].clone(),
                max_outbound: config.max_outbound_bytes,
                max_message: config.max_message_size,
            }),
            config,
            node,
            conns: RefCell::new(AHashMap::new()),
            by_public: RefCell::default(),
            by_user: RefCell::default(),
            next_seq: Cell::new(1),
            wheel: RefCell::new(Wheel::new(tick, slots, now_ms())),
            tokens: RefCell::new(super::expiry::TokenClocks::new(
                tick,
                slots,
                now_ms(),
                grace_ms,
            )),
            handshakes: Handshakes::default(),
            scratch: RefCell::new(Vec::new()),
            backend_in_flight: Cell::new(0),
            sequencer: std::cell::OnceCell::new(),
        })
    }

    pub fn next_conn_id(&self) -> ConnId {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        ConnId::new(self.id, seq)
    }

    pub fn owner_of(&self, room: &str) -> &Mailbox {
        &self.node.mailboxes[owner_core(room, self.cores)]
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
            self.tokens.borrow_mut().forget(id);
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
        } else {
            // No such connection (any more): the id may be a web console's tail.
            super::console::to_tail(to, wire);
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
    pub(super) fn drain(&self, jitter_ms: u64, now: u64) {
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

    /// The connection's token rights end at `exp_ms` (`None`: never): see `expiry.rs`.
    pub fn watch_token(&self, id: ConnId, exp_ms: Option<u64>) {
        self.tokens.borrow_mut().watch(id, exp_ms);
    }

    pub(super) fn schedule(&self, at: u64, id: ConnId) {
        self.wheel.borrow_mut().schedule(at, id);
    }

    /// Sends a command to the owner of its room, waiting while its channel is full.
    pub async fn command(&self, command: Command) {
        let owner = self.owner_of(command.room().unwrap_or_default());
        let _ = owner.commands.send_async(ToOwner::Engine(command)).await;
    }

    /// Carries out an outbox's closes and sends: each send is encoded once per dialect among
    /// its recipients; local recipients get it now; each other core with recipients gets one
    /// batch holding every frame for it.
    pub async fn dispatch(&self, out: &mut Outbox) {
        let now = now_ms();
        for (conn, code, reason) in out.closes.drain(..) {
            if conn.shard() == self.id {
                self.close_id(conn, code, &reason, now);
            } else if conn.shard() < self.cores {
                let close = ToConns::Close { conn, code, reason };
                let _ = self.node.mailboxes[conn.shard()]
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
                if conn.shard() == self.id {
                    self.deliver(conn, &wire, now);
                } else if conn.shard() < self.cores {
                    per_core[conn.shard()].push(conn);
                }
            }
            for (shard, conns) in per_core.iter_mut().enumerate() {
                if !conns.is_empty() {
                    remote[shard].push((wire.clone(), std::mem::take(conns)));
                }
            }
        }
        for (shard, batch) in remote.into_iter().enumerate() {
            if !batch.is_empty() {
                let _ = self.node.mailboxes[shard]
                    .deliveries
                    .send_async(ToConns::Deliver(batch))
                    .await;
            }
        }
    }

    /// One pass of the wheel: ping the live, close the silent, shut down the closing ones
    /// whose grace ran out.
    /// POSTs to a backend, within this shard's bound on calls in flight.
    pub async fn backend(
        &self,
        request: crate::backend::BackendRequest,
    ) -> Result<crate::backend::BackendResponse, crate::backend::BackendError> {
        use crate::backend::BackendError;
        let Some(backend) = self.node.backend.as_ref() else {
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

    /// Whether another of this core's connections than `except` is `user`'s.
    pub(super) fn other_with_user(&self, user: &str, except: ConnId) -> bool {
        let conns = self.conns.borrow();
        let index = self.by_user.borrow();
        index
            .candidates(user)
            .iter()
            .filter(|id| **id != except)
            .filter_map(|id| conns.get(id))
            .any(|conn| conn.has_user(user))
    }

    /// Whether another of this core's connections than `except` has public id `id`.
    pub(super) fn other_with_id(&self, id: &str, except: ConnId) -> bool {
        let conns = self.conns.borrow();
        let index = self.by_public.borrow();
        index
            .candidates(id)
            .iter()
            .filter(|c| **c != except)
            .filter_map(|c| conns.get(c))
            .any(|conn| conn.has_public_id(id))
    }

    /// This core's connections with public id `id`.
    pub fn conns_with_id(&self, id: &str) -> Vec<Rc<Conn>> {
        self.named(&self.by_public, id, |c| c.has_public_id(id))
    }

    /// Closes this core's connections whose public id is `id`.
    pub(super) fn disconnect(&self, id: &str, now: u64) -> usize {
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
    pub(super) fn deliver_targeted(
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
        if let Some(sequencer) = self.sequencer.get() {
            sequencer.directory(conn.id, conn.user_id().as_deref(), &conn.public_id(), true);
        }
    }

    pub fn unindex(&self, conn: &Conn) {
        self.by_public
            .borrow_mut()
            .remove(&conn.public_id(), conn.id);
        if let Some(user) = conn.user_id() {
            self.by_user.borrow_mut().remove(&user, conn.id);
        }
        if let Some(sequencer) = self.sequencer.get() {
            sequencer.directory(conn.id, conn.user_id().as_deref(), &conn.public_id(), false);
        }
    }

    /// Sends `event` to every connection of `users` and `clients`, on every core and (with
    /// `--engine redis`) on the other nodes that hold some of them.
    pub async fn send_targeted_event(
        &self,
        users: Vec<String>,
        clients: Vec<String>,
        event: RoomEvent,
    ) {
        if let Some(sequencer) = self.sequencer.get() {
            sequencer.route_targeted(&users, &clients, &event);
        }
        self.send_targeted(users, clients, crate::fanout::encode_all(event))
            .await;
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
        for mailbox in &self.node.mailboxes {
            let message = ToConns::Targeted {
                users: users.clone(),
                clients: clients.clone(),
                wires: wires.clone(),
            };
            let _ = mailbox.deliveries.send_async(message).await;
        }
    }
}
