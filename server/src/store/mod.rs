//! The state-store seam: where rooms' durable state and history live while the engine does
//! not hold them.
//!
//! The engine never calls a store: it leaves [`Change`]s to commit and rooms to load in its
//! outbox. The shell commits a batch's changes before it releases the replies and events
//! that depend on them, and runs the store on a thread of its own ([`worker`]), so a slow
//! store never stalls a socket. Every implementation passes the same [`contract`] suite.

pub mod contract;
mod memory;
pub mod worker;

pub use memory::MemoryStore;

use crate::engine::{Change, RoomEvent, RoomSnapshot, Sequenced};

/// Why a store could not do what it was asked. The caller decides what a failure means for
/// the request behind it (a join is refused, an HTTP call answers 503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or written now; the same call may work later.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// What the store holds cannot be read back (corrupt, or from another version).
    #[error("the store's data is unreadable: {0}")]
    Corrupt(String),
}

/// Which part of a room's history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only events after this `seq`, oldest first, the first `limit` of them (resuming).
    pub after: Option<u64>,
    /// Only events before this `seq` (paging back).
    pub before: Option<u64>,
    /// At most this many events; without `after`, the newest ones (oldest first still).
    pub limit: usize,
}

impl HistoryQuery {
    /// The newest `limit` events.
    pub fn last(limit: usize) -> HistoryQuery {
        HistoryQuery {
            after: None,
            before: None,
            limit,
        }
    }
}

/// A page of a room's history.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct History {
    /// Oldest first, each with its position.
    pub events: Vec<Sequenced>,
    /// The `seq` of the oldest event the store still keeps for the room (`None`: none kept).
    /// A resume from `seq` S is complete only if S + 1 >= this.
    pub oldest: Option<u64>,
}

impl History {
    /// The payloads of the page's emits and publishes, oldest first (what websockets.do's
    /// `/history` lists).
    pub fn emitted(self) -> Vec<serde_json::Value> {
        self.events
            .into_iter()
            .filter_map(|e| match e.event {
                RoomEvent::Publish { data, .. } => Some(data),
                _ => None,
            })
            .collect()
    }
}

/// Where rooms' durable state and history are kept.
pub trait StateStore: Send {
    /// The room's durable state, or `None` if nothing was ever stored for it.
    fn load(&mut self, room: &str) -> Result<Option<RoomSnapshot>, StoreError>;

    /// Applies a batch of changes, in order. When it returns `Ok`, a `load` or `history`
    /// sees them all (and the implementation's durability promise holds for them).
    fn commit(&mut self, changes: &[Change]) -> Result<(), StoreError>;

    /// A page of the room's history.
    fn history(&mut self, room: &str, query: HistoryQuery) -> Result<History, StoreError>;
}
