//! The broker seam: rooms shared by several nodes. A node publishes the events its rooms
//! make (the engine leaves them in `Outbox::published` when it has a broker feed) and
//! receives those other nodes publish in rooms it has members in; they enter its engine as
//! `Command::Remote`, which delivers them to the node's own members their scope covers.
//!
//! A node running alone has no broker. [`MemoryBroker`] joins nodes inside one process (for
//! tests); every implementation passes the same [`contract`] suite.

pub mod contract;
mod memory;

pub use memory::{MemoryBroker, MemoryHub};

use crate::engine::Published;

/// Why the broker could not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The broker cannot be reached now; the same call may work later.
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
}

/// A node's link to the other nodes.
pub trait Broker {
    /// From now on, receive what other nodes publish in `room`.
    fn subscribe(&mut self, room: &str) -> Result<(), BrokerError>;

    /// Stop receiving `room`'s events (the node has no member there any more).
    fn unsubscribe(&mut self, room: &str) -> Result<(), BrokerError>;

    /// Publishes an event this node's room made, with its position and scope.
    fn publish(&mut self, event: &Published) -> Result<(), BrokerError>;

    /// Adds to `into` what other nodes published in the subscribed rooms since the last
    /// call, in the order each room's events were published.
    fn receive(&mut self, into: &mut Vec<Published>) -> Result<(), BrokerError>;
}
