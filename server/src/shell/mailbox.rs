//! How the shards of a node reach each other: each shard's mailbox of two bounded channels,
//! what travels on them, and what the shards share ([`Node`]).
//!
//! `commands` carries work for the rooms a shard owns (from connections and HTTP requests on
//! any shard); `deliveries` carries encoded events for connections a shard holds, and
//! requests about them. The delivery task never waits on anything but its own channel, so an
//! engine task blocked on a full delivery channel always makes progress: no cycle, no
//! deadlock, and backpressure reaches the sessions that produce the commands.

use super::metrics::Metrics;
use crate::config::Config;
use crate::dialect::{Dialect, Wire};
use crate::engine::emit::EmitOutcome;
use crate::engine::{Command, Emit};
use crate::ids::ConnId;
use crate::store::worker::StoreHandle;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

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
    /// The web console's questions (`console.rs`), asked only while one is open.
    Console(super::console::Ask),
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
pub struct Mailbox {
    pub commands: flume::Sender<ToOwner>,
    pub deliveries: flume::Sender<ToConns>,
}

/// Wall-clock milliseconds since the epoch: the engine's and the wheel's notion of now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// This node (the server process): what its shards share: configuration, mailboxes,
/// counters, the store.
pub struct Node {
    pub config: Config,
    pub verifier: crate::auth::Verifier,
    /// The HTTP client toward backends, when SLIP or walkers are configured.
    pub backend: Option<crate::backend::Backend>,
    pub mailboxes: Vec<Mailbox>,
    pub metrics: Vec<Arc<Metrics>>,
    pub driver: &'static str,
    /// Whether the kernel let this process set up io_uring (exported in `/metrics`).
    pub uring_available: bool,
    /// Set on SIGTERM/SIGINT: `readyz` answers 503, no new connection is admitted.
    pub draining: std::sync::atomic::AtomicBool,
    pub seats: super::admission::Seats,
    /// The state store, on its own thread.
    pub store: StoreHandle,
    /// Which web pages may talk to this server (`--allowed-origins`).
    pub origins: crate::origin::OriginPolicy,
    /// TLS, when `--tls-cert` and `--tls-key` are set: every socket speaks it.
    pub tls: Option<crate::tls::Tls>,
    /// With `--engine redis`: Redis, this node's id among the nodes, each core's link.
    pub redis: Option<crate::redis::RedisNode>,
}

impl Node {
    /// Open WebSocket connections on every core.
    pub fn open_connections(&self) -> u64 {
        self.metrics.iter().map(|m| m.connections.get()).sum()
    }
}
