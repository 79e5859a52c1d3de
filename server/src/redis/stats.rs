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
    /// Events this core proposed to the sequencer script, and the script calls that
    /// carried them (fewer under load: a run of one room's events is one call).
    pub events_proposed: AtomicU64,
    pub sequencer_calls: AtomicU64,
    /// Of those calls, the ones that carried the runs of several rooms (standalone Redis:
    /// `SEQUENCE_ROOMS`).
    pub multi_room_calls: AtomicU64,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn live_link(now: u64) -> Arc<Stats> {
        let link = Stats::default();
        link.command_up.store(true, Ordering::Relaxed);
        link.subscriber_up.store(true, Ordering::Relaxed);
        link.probe_seen_ms.store(now, Ordering::Relaxed);
        Arc::new(link)
    }

    #[test]
    fn a_cluster_core_is_live_only_when_every_serving_master_is() {
        let now = 10_000;
        let core = Stats::default();
        core.cluster.store(true, Ordering::Relaxed);
        assert!(!core.live(now), "no slot map yet");
        let links = vec![live_link(now), live_link(now), live_link(now)];
        *core.links.write().unwrap() = links.clone();
        assert!(core.live(now) && core.commands_up());
        links[1]
            .probe_seen_ms
            .store(now - PROBE_STALE_MS - 1, Ordering::Relaxed);
        assert!(!core.live(now), "one master's pub/sub is silent");
        assert!(core.commands_up());
        links[2].command_up.store(false, Ordering::Relaxed);
        assert!(!core.commands_up());
        links[0].pending.store(2, Ordering::Relaxed);
        links[2].pending.store(3, Ordering::Relaxed);
        links[1].rtt_us.store(700, Ordering::Relaxed);
        assert_eq!(core.total(|s| &s.pending, false), 5);
        assert_eq!(core.total(|s| &s.rtt_us, true), 700);
    }
}
