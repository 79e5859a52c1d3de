//! What a node's Redis connections tell monitoring (`/metrics`) and `/readyz`, shared by
//! every core's connections.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
}

/// How long a probe may be overdue before pub/sub counts as broken.
pub const PROBE_STALE_MS: u64 = 1_000;

impl Stats {
    /// Whether this core can reach Redis both ways now: commands work and its pub/sub
    /// subscription delivered a probe within [`PROBE_STALE_MS`].
    pub fn live(&self, now_ms: u64) -> bool {
        self.command_up.load(Ordering::Relaxed)
            && self.subscriber_up.load(Ordering::Relaxed)
            && now_ms.saturating_sub(self.probe_seen_ms.load(Ordering::Relaxed)) <= PROBE_STALE_MS
    }
}
