//! Redis, for rooms shared by several nodes (`--engine redis`, SPEC §5.4): a small
//! pipelined RESP client per core on monoio ([`client`], [`subscriber`], every connection
//! opened by [`connect()`]: TCP, TLS, `AUTH`, `SELECT`, with `--redis-url` parsed by
//! [`url`]), behind one handle per core that routes commands and subscriptions
//! to a standalone Redis or to the masters of a Redis Cluster ([`cluster`], by the rules of
//! [`topology`]: slots, redirections, the slot map), the Lua scripts that make Redis each
//! room's sequencer ([`scripts`]) and the keys and message format ([`wire`]). The shell's
//! side, what a core does with them, is `shell::sequencer`.
//!
//! Why a client of our own: no Redis crate runs on monoio (`fred`'s `monoio` feature is an
//! empty placeholder, `redis` needs tokio or smol), and going through a tokio thread would
//! add a cross-thread hop to every event both ways. A per-core connection needs only
//! command encoding (a few lines) and reply parsing (the `redis-protocol` crate).
//! Measured in `client_tests::round_trips` (busy machine, indicative): 103–140 k
//! sequencer scripts/s pipelined from one core; see docs/CLUSTER.md#performance.

pub mod client;
pub mod cluster;
pub mod connect;
pub mod resp;
pub mod scripts;
pub mod stats;
pub mod stream;
pub mod subscriber;
pub mod topology;
pub mod url;
pub mod wire;

#[cfg(test)]
mod client_tests;
#[cfg(test)]
pub mod testing;

pub use client::{Client, RedisError};
pub use cluster::Redis;
pub use connect::{connect, Link, TlsFiles};
pub use stats::Stats;

use std::fmt::Write;
use std::sync::Arc;

/// A node's place among the nodes sharing Redis (`--engine redis`).
pub struct RedisNode {
    /// How to reach Redis (`--redis-url`, `--redis-ca`): every connection opens through it,
    /// to the URL's address (with `--redis-cluster`: any node of the Cluster, asked for
    /// the slot map) or to a Cluster master's.
    pub link: Arc<Link>,
    /// `--redis-cluster`: a Redis Cluster, keys and shard channels routed by slot.
    pub cluster: bool,
    /// This process among the nodes (random at each start): the key of its members in
    /// rooms' shared presence and of its heartbeat.
    pub id: u64,
    /// Each core's link health.
    pub stats: Vec<Arc<Stats>>,
    /// Each core's channel of [`subscriber::Push`]es, made here so that any core can
    /// reach every other ([`subscriber::Push::Reaped`] from core 0's heartbeat): the
    /// senders, and the receiver each core takes its own from.
    pub pushes: Vec<flume::Sender<subscriber::Push>>,
    pub pushed: Vec<flume::Receiver<subscriber::Push>>,
}

impl RedisNode {
    pub fn new(link: Link, cluster: bool, cores: usize) -> RedisNode {
        let (pushes, pushed) = (0..cores).map(|_| flume::unbounded()).unzip();
        RedisNode {
            link: Arc::new(link),
            cluster,
            id: crate::ids::random_u64(),
            stats: (0..cores).map(|_| Arc::default()).collect(),
            pushes,
            pushed,
        }
    }
}

/// Whether every core's link to Redis is live (`/readyz`); true when running alone.
pub fn all_live(node: Option<&RedisNode>, now_ms: u64) -> bool {
    node.is_none_or(|node| node.stats.iter().all(|s| s.live(now_ms)))
}

/// The Redis part of `/metrics` (nothing when running alone).
pub fn metrics_text(node: Option<&RedisNode>, now_ms: u64) -> String {
    let mut out = String::new();
    let Some(node) = node else {
        return out;
    };
    let cores = &node.stats;
    let max_rtt_us = cores
        .iter()
        .map(|s| s.total(|s| &s.rtt_us, true))
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "# HELP rookery_redis_rtt_seconds Round trip of the last Redis command (the slowest \
         core's).\n# TYPE rookery_redis_rtt_seconds gauge\nrookery_redis_rtt_seconds {}",
        max_rtt_us as f64 / 1e6
    );
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "rookery_redis_reconnects_total",
        "counter",
        "Reconnections to Redis (command and subscriber connections).",
        cores
            .iter()
            .map(|s| s.total(|s| &s.reconnects, false))
            .sum(),
    );
    metric(
        "rookery_redis_pending_commands",
        "gauge",
        "Redis commands written and not answered yet.",
        cores.iter().map(|s| s.total(|s| &s.pending, false)).sum(),
    );
    metric(
        "rookery_redis_proposed_events_total",
        "counter",
        "Events proposed to the sequencer script (chat, broadcasts, emits, config, counters, votes).",
        cores.iter().map(|s| s.total(|s| &s.events_proposed, false)).sum(),
    );
    metric(
        "rookery_redis_sequencer_calls_total",
        "counter",
        "Sequencer script calls that carried them (a run of one room's events is one call).",
        cores
            .iter()
            .map(|s| s.total(|s| &s.sequencer_calls, false))
            .sum(),
    );
    metric(
        "rookery_redis_multi_room_calls_total",
        "counter",
        "Of those calls, the ones that carried the runs of several rooms at once (standalone Redis).",
        cores
            .iter()
            .map(|s| s.total(|s| &s.multi_room_calls, false))
            .sum(),
    );
    metric(
        "rookery_redis_up",
        "gauge",
        "1 while every core's Redis link works both ways (pub/sub verified by a probe).",
        u64::from(all_live(Some(node), now_ms)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn metrics_are_there_with_redis_only_and_in_base_units() {
        assert_eq!(metrics_text(None, 0), "");
        let node = RedisNode::new(
            Link::new("redis://127.0.0.1:1", &TlsFiles::default()).unwrap(),
            false,
            2,
        );
        node.stats[1].rtt_us.store(1_500, Ordering::Relaxed);
        node.stats[0].pending.store(3, Ordering::Relaxed);
        let text = metrics_text(Some(&node), 0);
        assert!(
            text.contains("\nrookery_redis_rtt_seconds 0.0015\n"),
            "{text}"
        );
        assert!(
            text.contains("\nrookery_redis_pending_commands 3\n"),
            "{text}"
        );
        assert!(
            text.contains("\nrookery_redis_up 0\n"),
            "not connected: {text}"
        );
        assert!(!all_live(Some(&node), 0));
        assert!(all_live(None, 0), "alone: nothing to wait for");
    }
}
