//! Per-core counters, read by `GET /metrics` on any core.
//!
//! Names follow Prometheus' conventions (`rookery_` prefix, base units, `_total` on
//! counters, `_info` on constant-1 metrics whose labels carry the information), and every
//! label takes values from a fixed set (close codes, dialects, drivers, the version):
//! nothing a client chooses (rooms, users, connections) becomes a label.
//!
//! Each core writes only its own counters, so an increment is a relaxed load and store of
//! a value no other core writes: no locked read-modify-write, no cache line bouncing
//! between writers. Readers on other cores see a recent value, which is all Prometheus needs.

use crate::dialect::Dialect;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// A counter with a single writer (its core).
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    pub fn inc(&self) {
        self.add(1);
    }

    /// For gauges.
    pub fn sub(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_sub(n),
            Ordering::Relaxed,
        );
    }

    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Close codes and error codes counted separately.
pub const COUNTED_CLOSE_CODES: [u16; 8] = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011];

#[derive(Default, Debug)]
pub struct Metrics {
    pub connections: Counter,
    pub connections_total: Counter,
    /// Sessions parked (no task: `parking.rs`), a gauge.
    pub parked: Counter,
    pub rooms: Counter,
    pub messages_in: Counter,
    pub bytes_in: Counter,
    pub frames_out: Counter,
    pub bytes_out: Counter,
    pub deliveries: Counter,
    pub http_requests: Counter,
    /// Bytes queued to connections and not yet written (a gauge).
    pub queued_bytes: Counter,
    pub ack_timeouts: Counter,
    pub slow_consumers: Counter,
    pub pending_acks: Counter,
    pub backend_requests: Counter,
    pub rate_limited: Counter,
    pub backend_failures: Counter,
    pub backend_timeouts: Counter,
    /// Vectored writes to connections' sockets (with `frames_out`: frames per write).
    pub socket_writes: Counter,
    /// Rounds of the cores' flushers (`flusher.rs`): with the writes, how much each round
    /// gathers.
    pub flusher_rounds: Counter,
    closes: [Counter; COUNTED_CLOSE_CODES.len()],
    error_frames: [Counter; Dialect::COUNT],
}

impl Metrics {
    /// Counts an error frame sent to a client of `dialect` for bad input.
    pub fn error_frame(&self, dialect: Dialect) {
        self.error_frames[dialect.index()].inc();
    }

    /// Error frames sent to clients of `dialect` so far.
    pub fn error_frames_of(&self, dialect: Dialect) -> u64 {
        self.error_frames[dialect.index()].get()
    }

    /// Connections the server closed with `code` so far (0 for a code not counted).
    pub fn closed(&self, code: u16) -> u64 {
        COUNTED_CLOSE_CODES
            .iter()
            .position(|c| *c == code)
            .map_or(0, |i| self.closes[i].get())
    }

    pub fn closed_with(&self, code: u16) {
        if let Some(i) = COUNTED_CLOSE_CODES.iter().position(|c| *c == code) {
            self.closes[i].inc();
        }
    }
}

/// How the state store is doing (it is shared by every core).
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreHealth {
    /// Failed commit and fsync attempts (each is retried until it succeeds).
    pub failures: u64,
    /// Whether the last attempt succeeded.
    pub healthy: bool,
}

/// What the node runs on, for the `_info` metrics.
#[derive(Debug, Clone, Copy)]
pub struct Runtime {
    /// The io driver in use: `io_uring` or `epoll`.
    pub driver: &'static str,
    /// Whether the kernel let this process set up io_uring (false under Docker's default
    /// seccomp profile, for one): with `--driver auto` and false, the node fell back.
    pub uring_available: bool,
}

/// Renders every core's counters, summed, in the Prometheus text format.
pub fn render(cores: &[std::sync::Arc<Metrics>], runtime: Runtime, store: StoreHealth) -> String {
    let sum = |f: &dyn Fn(&Metrics) -> u64| cores.iter().map(|m| f(m)).sum::<u64>();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "rookery_connections",
        "gauge",
        "Open WebSocket connections.",
        sum(&|m| m.connections.get()),
    );
    metric(
        "rookery_connections_total",
        "counter",
        "WebSocket connections accepted.",
        sum(&|m| m.connections_total.get()),
    );
    metric(
        "rookery_sessions_parked",
        "gauge",
        "Open WebSocket connections idle without a task of their own (parked).",
        sum(&|m| m.parked.get()),
    );
    metric(
        "rookery_rooms",
        "gauge",
        "Rooms with at least one member.",
        sum(&|m| m.rooms.get()),
    );
    metric(
        "rookery_messages_in_total",
        "counter",
        "WebSocket messages received.",
        sum(&|m| m.messages_in.get()),
    );
    metric(
        "rookery_bytes_in_total",
        "counter",
        "Bytes read from WebSocket connections.",
        sum(&|m| m.bytes_in.get()),
    );
    metric(
        "rookery_frames_out_total",
        "counter",
        "Frames queued to connections.",
        sum(&|m| m.frames_out.get()),
    );
    metric(
        "rookery_bytes_out_total",
        "counter",
        "Bytes written to connections.",
        sum(&|m| m.bytes_out.get()),
    );
    metric(
        "rookery_socket_writes_total",
        "counter",
        "Vectored writes to connections' sockets (frames out ÷ writes: frames per write).",
        sum(&|m| m.socket_writes.get()),
    );
    metric(
        "rookery_flusher_rounds_total",
        "counter",
        "Rounds in which the cores' flushers wrote the connections listed with them.",
        sum(&|m| m.flusher_rounds.get()),
    );
    metric(
        "rookery_fanout_deliveries_total",
        "counter",
        "Room events delivered to a recipient.",
        sum(&|m| m.deliveries.get()),
    );
    metric(
        "rookery_http_requests_total",
        "counter",
        "HTTP requests served.",
        sum(&|m| m.http_requests.get()),
    );
    metric(
        "rookery_send_queue_bytes",
        "gauge",
        "Bytes queued to connections, not yet written to their sockets.",
        sum(&|m| m.queued_bytes.get()),
    );
    metric(
        "rookery_ack_timeouts_total",
        "counter",
        "Emits whose acks did not all arrive in time.",
        sum(&|m| m.ack_timeouts.get()),
    );
    metric(
        "rookery_store_failures_total",
        "counter",
        "Failed store commit and fsync attempts (each is retried; replies wait for it).",
        store.failures,
    );
    metric(
        "rookery_store_healthy",
        "gauge",
        "1 while the store's last commit or fsync succeeded, else 0.",
        u64::from(store.healthy),
    );
    metric(
        "rookery_slow_consumers_total",
        "counter",
        "Connections closed for exceeding the outbound bound.",
        sum(&|m| m.slow_consumers.get()),
    );
    metric(
        "rookery_pending_acks",
        "gauge",
        "Emits waiting for acks.",
        sum(&|m| m.pending_acks.get()),
    );
    metric(
        "rookery_rate_limited_total",
        "counter",
        "Messages dropped by the per-connection rate limit.",
        sum(&|m| m.rate_limited.get()),
    );
    metric(
        "rookery_backend_requests_total",
        "counter",
        "Calls to backends (SLIP, walkers).",
        sum(&|m| m.backend_requests.get()),
    );
    metric(
        "rookery_backend_failures_total",
        "counter",
        "Backend calls refused, unreachable or answered with a non-2xx status.",
        sum(&|m| m.backend_failures.get()),
    );
    metric(
        "rookery_backend_timeouts_total",
        "counter",
        "Backend calls past their deadline.",
        sum(&|m| m.backend_timeouts.get()),
    );
    let _ = writeln!(out, "# HELP rookery_closes_total Connections closed by the server, by close code.\n# TYPE rookery_closes_total counter");
    for (i, code) in COUNTED_CLOSE_CODES.iter().enumerate() {
        let n = sum(&|m| m.closes[i].get());
        let _ = writeln!(out, "rookery_closes_total{{code=\"{code}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP rookery_error_frames_total Error frames sent for bad input, by dialect.\n# TYPE rookery_error_frames_total counter");
    for dialect in Dialect::ALL {
        let n = sum(&|m| m.error_frames[dialect.index()].get());
        let name = dialect.name();
        let _ = writeln!(out, "rookery_error_frames_total{{dialect=\"{name}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP rookery_io_driver_info The io driver in use (io_uring, or epoll as the fallback).\n# TYPE rookery_io_driver_info gauge\nrookery_io_driver_info{{driver=\"{}\"}} 1",
        runtime.driver
    );
    let _ = writeln!(
        out,
        "# HELP rookery_io_uring_available 1 when the kernel lets this process use io_uring, else 0 (e.g. blocked by a container's seccomp profile).\n# TYPE rookery_io_uring_available gauge\nrookery_io_uring_available {}",
        u8::from(runtime.uring_available)
    );
    let _ = writeln!(
        out,
        "# HELP rookery_build_info The running build.\n# TYPE rookery_build_info gauge\nrookery_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        out,
        "# HELP rookery_cores Runtime threads.\n# TYPE rookery_cores gauge\nrookery_cores {}",
        cores.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn renders_sums_over_cores() {
        let a = Arc::new(Metrics::default());
        let b = Arc::new(Metrics::default());
        a.connections.add(2);
        b.connections.add(3);
        b.connections.sub(1);
        a.closed_with(1009);
        a.error_frame(Dialect::Jac);
        b.error_frame(Dialect::Jac);
        b.queued_bytes.add(10);
        let store = StoreHealth {
            failures: 3,
            healthy: false,
        };
        let runtime = Runtime {
            driver: "epoll",
            uring_available: false,
        };
        let text = render(&[a, b], runtime, store);
        assert!(text.contains("\nrookery_connections 4\n"));
        assert!(text.contains("rookery_closes_total{code=\"1009\"} 1"));
        assert!(text.contains("rookery_io_driver_info{driver=\"epoll\"} 1"));
        assert!(text.contains("\nrookery_io_uring_available 0\n"));
        assert!(text.contains("rookery_error_frames_total{dialect=\"jac\"} 2"));
        assert!(text.contains("rookery_error_frames_total{dialect=\"pact\"} 0"));
        assert!(text.contains("\nrookery_send_queue_bytes 10\n"));
        assert!(text.contains("\nrookery_store_failures_total 3\n"));
        assert!(text.contains("\nrookery_store_healthy 0\n"));
    }

    /// Every metric rendered is in the metrics table of docs/HTTP.md.
    #[test]
    fn every_metric_is_documented() {
        let docs = include_str!("../../../docs/HTTP.md");
        let runtime = Runtime {
            driver: "io_uring",
            uring_available: true,
        };
        let text = render(
            &[Arc::new(Metrics::default())],
            runtime,
            StoreHealth::default(),
        );
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        assert!(names.len() > 20);
        for name in names {
            assert!(
                docs.contains(&format!("`{name}")),
                "{name} is not in docs/HTTP.md"
            );
        }
    }
}
