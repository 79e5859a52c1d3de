//! The state-store seam: where rooms' durable state and history live while the engine does
//! not hold them.
//!
//! The engine never calls a store: it leaves [`Change`]s to commit and rooms to load in its
//! outbox. The shell commits a batch's changes before it releases the replies and events
//! that depend on them, and runs the store on a thread of its own ([`worker`]), so a slow
//! store never stalls a socket. Every implementation passes the same [`contract`] suite.

pub mod contract;
mod disk;
mod log_index;
mod memory;
pub mod worker;

pub use disk::DiskStore;
pub use memory::MemoryStore;

use crate::engine::{Change, RoomEvent, RoomSnapshot};

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

pub use crate::engine::history::{Entry, History, HistoryQuery};

/// The payloads of a page's emits and publishes, oldest first (what websockets.do's
/// `/history` lists).
pub fn emitted(history: History) -> Vec<serde_json::Value> {
    history
        .events
        .into_iter()
        .filter_map(|e| match e.event.event {
            RoomEvent::Publish { data, .. } => Some(data.into_value()),
            _ => None,
        })
        .collect()
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

    /// Makes every commit so far durable against power loss (an fsync). A store that keeps
    /// nothing across restarts has nothing to do.
    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// A way to do what [`StateStore::sync`] does from another thread, while this store
    /// goes on committing (`None`: there is none; `sync` is the only way). An fsync takes
    /// milliseconds; with this, `--fsync interval` never holds commits up meanwhile.
    fn background_sync(&self) -> Option<SyncFn> {
        None
    }
}

/// Makes durable everything a store committed before the call (see
/// [`StateStore::background_sync`]).
pub type SyncFn = Box<dyn FnMut() -> Result<(), StoreError> + Send>;

/// Which store keeps rooms' state (`--store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// [`DiskStore`]: a directory that survives restarts (and, once synced, power loss).
    Disk,
    /// [`MemoryStore`]: nothing survives the process; for tests and throwaway servers.
    Memory,
}
