//! [`MemoryBroker`]: nodes of one process linked through a shared [`MemoryHub`], for tests of
//! several nodes without a network.

use super::{Broker, BrokerError};
use crate::engine::Published;
use ahash::{AHashMap, AHashSet};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Node {
    rooms: AHashSet<String>,
    inbox: VecDeque<Published>,
}

/// The nodes of one in-process cluster.
#[derive(Clone, Default)]
pub struct MemoryHub {
    nodes: Arc<Mutex<AHashMap<u64, Node>>>,
    next: Arc<Mutex<u64>>,
}

impl MemoryHub {
    /// A new node of this cluster.
    pub fn node(&self) -> MemoryBroker {
        let mut next = self.next.lock().expect("hub lock");
        *next += 1;
        self.nodes
            .lock()
            .expect("hub lock")
            .insert(*next, Node::default());
        MemoryBroker {
            hub: self.clone(),
            id: *next,
        }
    }
}

/// One node's link to the others of its [`MemoryHub`].
pub struct MemoryBroker {
    hub: MemoryHub,
    id: u64,
}

impl MemoryBroker {
    fn with_node<T>(&self, f: impl FnOnce(&mut Node) -> T) -> T {
        let mut nodes = self.hub.nodes.lock().expect("hub lock");
        f(nodes.get_mut(&self.id).expect("nodes stay"))
    }
}

impl Broker for MemoryBroker {
    fn subscribe(&mut self, room: &str) -> Result<(), BrokerError> {
        self.with_node(|node| node.rooms.insert(room.to_owned()));
        Ok(())
    }

    fn unsubscribe(&mut self, room: &str) -> Result<(), BrokerError> {
        self.with_node(|node| node.rooms.remove(room));
        Ok(())
    }

    fn publish(&mut self, event: &Published) -> Result<(), BrokerError> {
        let mut nodes = self.hub.nodes.lock().expect("hub lock");
        for (id, node) in nodes.iter_mut() {
            if *id != self.id && node.rooms.contains(&event.room) {
                node.inbox.push_back(event.clone());
            }
        }
        Ok(())
    }

    fn receive(&mut self, into: &mut Vec<Published>) -> Result<(), BrokerError> {
        self.with_node(|node| into.extend(node.inbox.drain(..)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_contract() {
        let hub = MemoryHub::default();
        super::super::contract::check(&mut || Box::new(hub.node()));
    }
}
