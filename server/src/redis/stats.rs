//! What a node's Redis connections tell monitoring (`/metrics`) and `/readyz`, shared by
//! every core's connections.
//!
//! Against a standalone Redis a core has one command and one subscriber connection, and
//! its `Stats` are theirs. Against a Cluster it has a pair per master (a link), each with
//! its own `Stats` listed in the core's [`Stats::links`]: the core is live only when every
//! master that serves slots is reachable both ways.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

#[derive(Debug, Default)]
pub struct Stats {
    /// The command connection is up.
    pub command_up: AtomicBool,
    /// The subscriber connection is up and its subscriptions are made.
    pub subscriber_up: AtomicBool,
    /// When a probe published on the command connection last came back on the subscriber
    /// connection (ms since the Unix epoch): pub/sub verified live.
    pub probe_seen_ms: AtomicU64,
    /// The last command's round trip, in µs.
    pub rtt_us: AtomicU64,
    /// Reconnections of either connection.
    pub reconnects: AtomicU64,
    /// Commands written and not answered yet.
    pub pending: AtomicU64,
    /// Cluster only: the links to the masters that serve slots (replaced when the slot
    /// map changes). Empty against a standalone Redis.
    pub links: RwLock<Vec<Arc<Stats>>>,
    /// Cluster only: the core runs against a Cluster, so that an empty `links` (the slot
    /// map not known yet) is not live.
    pub cluster: AtomicBool,
}

/// How long a probe may be overdue before pub/sub counts as broken.
pub const PROBE_STALE_MS: u64 = 1_000;

impl Stats {
    /// Whether this core can reach Redis both ways now: commands work and its pub/sub
    /// subscription delivered a probe within [`PROBE_STALE_MS`] (against a Cluster: on
    /// every master that serves slots).
    pub fn live(&self, now_ms: u64) -> bool {
        if self.cluster.load(Ordering::Relaxed) {
            let links = self.links.read().expect("not poisoned");
            return !links.is_empty() && links.iter().all(|link| link.live(now_ms));
        }
        self.command_up.load(Ordering::Relaxed)
            && self.subscriber_up.load(Ordering::Relaxed)
            && now_ms.saturating_sub(self.probe_seen_ms.load(Ordering::Relaxed)) <= PROBE_STALE_MS
    }

    /// Whether commands can be sent (to every master, against a Cluster).
    pub fn commands_up(&self) -> bool {
        if self.cluster.load(Ordering::Relaxed) {
            let links = self.links.read().expect("not poisoned");
            return !links.is_empty() && links.iter().all(|link| link.commands_up());
        }
        self.command_up.load(Ordering::Relaxed)
    }

    /// A figure summed (or, with `max`, the largest) over this core's own connections and
    /// its links.
    pub fn total(&self, field: fn(&Stats) -> &AtomicU64, max: bool) -> u64 {
        let own = field(self).load(Ordering::Relaxed);
        let links = self.links.read().expect("not poisoned");
        links
            .iter()
            .map(|link| link.total(field, max))
            .fold(own, |a, b| if max { a.max(b) } else { a + b })
    }
}
