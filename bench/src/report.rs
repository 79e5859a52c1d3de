//! The comparison run: each system, each workload, repeated; medians and ranges into a
//! Markdown table.

use crate::{DataDir, ServerProcess, ThreadCpu};
use serde_json::Value;
use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

#[derive(clap::Args, Clone, Debug)]
pub struct RunArgs {
    /// A short run (under 2 minutes): fewer sizes, one repetition, short steps.
    #[arg(long)]
    pub quick: bool,
    /// Repetitions of each measurement (median and range are reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Systems to compare: rookery (`--store memory`), rookery-disk (`--store disk`, fsync
    /// every 5 ms, a fresh data directory per start), rookery-disk-always (the same with
    /// `--fsync always`), rookery-tls (`rookery` over TLS: `--tls-cert`/`--tls-key` with a
    /// certificate made for the run, the load generator on `wss://`; W1–W4 only),
    /// rookery-redis (two nodes with `--engine redis` and one Redis, all on the core one
    /// server gets; subscribers split over the nodes, publishers on the first), tokio,
    /// tokio-tuned, uws (uWebSockets, built by bench/peers/install.sh), node, nchan, raw
    /// (the ceiling).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "rookery,rookery-disk,tokio,tokio-tuned,uws,node,nchan,raw"
    )]
    pub systems: Vec<String>,
    /// Workloads: w1 idle, w2 fanout, w3 many rooms, w4 slow consumers (runs at W2's
    /// half-saturated rate, so only with w2), w5 durable writes (Rookery systems only).
    #[arg(long, value_delimiter = ',', default_value = "w1,w2,w3,w4,w5")]
    pub workloads: Vec<String>,
    /// Where the disk stores go: a fresh directory per server start, removed after
    /// (default: the system's temporary directory; never the repository).
    #[arg(long)]
    pub data_root: Option<String>,
    /// W5: connections writing.
    #[arg(long, default_value_t = 200)]
    pub w5_connections: usize,
    /// W5: rooms the connections spread over, one saturated measurement each (a room's
    /// commands run in order on one core); the fixed-rate measurement uses the first.
    #[arg(long, value_delimiter = ',', default_value = "20,1")]
    pub w5_rooms: Vec<usize>,
    /// W5: most writes per connection waiting for their `ok` (the pipelining window).
    #[arg(long, default_value_t = 16)]
    pub w5_window: usize,
    /// W5: the moderate offered rate (writes/s, all connections together) whose latency is
    /// reported beside the saturated one; 0 skips it.
    #[arg(long, default_value_t = 10_000.0)]
    pub w5_rate: f64,
    /// W5: what each connection writes, in turn: `counter`, `poll` (lasting state
    /// changes) and/or `chat` (an event appended to the room's history).
    #[arg(long, value_delimiter = ',', default_value = "counter,poll")]
    pub w5_kinds: Vec<String>,
    /// W5: the fsync modes `rookery-disk` is measured in.
    #[arg(long, value_delimiter = ',', default_value = "interval,always")]
    pub w5_fsync: Vec<String>,
    /// W5: where the server may run: `0` (pinned to core 0 with its store thread, like
    /// every other figure) and/or `all` (not pinned: both cores, still `--cores 1`; the
    /// load generator stays on core 1). Default: `0,all`; `0` with --quick.
    #[arg(long, value_delimiter = ',')]
    pub w5_server_cpus: Option<Vec<String>>,
    /// Stepped loads (W2, W3): each step offers this many times the one before. 2 doubles
    /// (the default: few steps); e.g. 1.19 (2^¼) pins a saturated rate down four times more
    /// finely, with about four times the steps.
    #[arg(long, default_value_t = 2.0)]
    pub step_factor: f64,
    /// How the load generator's subscribers read: `raw` (one epoll set per worker, frames
    /// followed by their headers; cheap enough to saturate every server here) or
    /// `tungstenite` (a tokio-tungstenite task per subscriber: the generator of results
    /// before the uWS comparison, whose own ceiling was ~3 M deliveries/s).
    #[arg(long, default_value = "raw")]
    pub reader: String,
    /// Where the binaries are.
    #[arg(long, default_value = "target/release")]
    pub bin_dir: String,
    /// The results file.
    #[arg(long, default_value = "bench/RESULTS.md")]
    pub out: String,
}

/// Sockets one worker process opens at most (the fd limit here is 20,000). Stepped loads
/// (W2 ≤ 10 k, W3) fit in one process; only W1 at 19 k needs two.
const PER_WORKER: usize = 18_000;

struct Target {
    name: String,
    /// Dropped (killed) before `data`, which it writes to.
    server: ServerProcess,
    /// A disk store's directory (or the TLS certificate's), removed when the target is
    /// dropped.
    #[allow(dead_code)]
    data: Option<DataDir>,
    /// Over TLS: the server's certificate (PEM), which the load generator trusts.
    tls_ca: Option<String>,
    /// The system's other processes, measured with `server` (CPU, memory): for
    /// `rookery-redis`, the second node and Redis.
    others: Vec<ServerProcess>,
    /// Other addresses serving the same rooms (the second node): subscribers spread over
    /// `server.addr` and these; publishers stay on `server.addr`.
    sub_addrs: Vec<String>,
}

impl Target {
    /// The load generator's `--tls-ca` for this target (none: plain `ws://`).
    fn tls_args(&self) -> Vec<String> {
        match &self.tls_ca {
            Some(ca) => vec!["--tls-ca".into(), ca.clone()],
            None => Vec::new(),
        }
    }

    /// The load generator's arguments that spread subscribers over the system's nodes.
    fn spread_args(&self, flag: &str) -> Vec<String> {
        if self.sub_addrs.is_empty() {
            return Vec::new();
        }
        vec![flag.into(), self.sub_addrs.join(",")]
    }

    /// Every process of the system.
    fn pids(&self) -> Vec<u32> {
        std::iter::once(&self.server)
            .chain(&self.others)
            .map(|p| p.child.id())
            .collect()
    }

    /// The resident memory of all the system's processes together.
    fn rss(&self) -> u64 {
        self.pids().into_iter().map(crate::rss_of).sum()
    }
}

/// Where a Rookery server keeps its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Store {
    Memory,
    /// `--store disk` with this `--fsync` mode (`interval`: every 5 ms, the default).
    Disk(&'static str),
    /// Two nodes with the memory store sharing rooms through one Redis (`rookery-redis`).
    Redis,
}

impl Store {
    /// The store a Rookery system name means; `None` for the peers.
    fn of(system: &str) -> Option<Store> {
        match system {
            "rookery" => Some(Store::Memory),
            "rookery-disk" => Some(Store::Disk("interval")),
            "rookery-disk-always" => Some(Store::Disk("always")),
            "rookery-redis" => Some(Store::Redis),
            _ => None,
        }
    }

    fn label(self) -> String {
        match self {
            Store::Memory => "memory".into(),
            Store::Disk("interval") => "disk, fsync interval (5 ms)".into(),
            Store::Disk(mode) => format!("disk, fsync {mode}"),
            Store::Redis => "two nodes on one Redis".into(),
        }
    }
}

/// Starts `system` for one measurement, pinned to core 0.
fn start(system: &str, run: &RunArgs) -> Target {
    if let Some(store) = Store::of(system) {
        return start_rookery(system, store, Some("0"), run);
    }
    if system == "rookery-tls" {
        return start_rookery_tls(run);
    }
    let bin_dir = &run.bin_dir;
    let server = match system {
        "tokio" => start_peer(&[&format!("{bin_dir}/peer_tokio")]),
        "tokio-tuned" => start_peer(&[&format!("{bin_dir}/peer_tokio_tuned")]),
        "uws" => start_peer(&["bench/peers/uws/peer_uws", "--listen", "127.0.0.1:0"]),
        "raw" => start_peer(&[&format!("{bin_dir}/peer_raw")]),
        "node" => start_peer(&["node", "bench/peers/ws-relay.js", "--listen", "127.0.0.1:0"]),
        "nchan" => start_nchan(),
        other => panic!("unknown system {other}"),
    };
    Target {
        name: system.to_owned(),
        server,
        data: None,
        tls_ca: None,
        others: Vec::new(),
        sub_addrs: Vec::new(),
    }
}

/// Rookery with `--cores 1`, no message rate limit and `store` (the memory store named
/// explicitly, so that no data directory is made; a disk store in a fresh directory under
/// `--data-root`), pinned to `cpu` when given.
fn start_rookery(name: &str, store: Store, cpu: Option<&str>, run: &RunArgs) -> Target {
    if store == Store::Redis {
        return start_rookery_redis(cpu, run);
    }
    let binary = format!("{}/rookery", run.bin_dir);
    let mut args: Vec<String> = ["--cores", "1", "--max-message-rate", "0"]
        .map(String::from)
        .to_vec();
    let has_store = crate::supports_flag(&binary, "--store");
    let mut data = None;
    match store {
        // A server from before the disk store has only the memory store and no flag.
        Store::Memory if !has_store => {}
        Store::Memory => args.extend(["--store".into(), "memory".into()]),
        Store::Redis => unreachable!("started above"),
        Store::Disk(fsync) => {
            assert!(has_store, "{binary} has no --store: it cannot run {name}");
            let root = run
                .data_root
                .clone()
                .map_or_else(std::env::temp_dir, std::path::PathBuf::from);
            let dir = DataDir::new(&root);
            args.extend(["--store".into(), "disk".into(), "--data-dir".into()]);
            args.push(dir.path.display().to_string());
            args.extend(["--fsync".into(), fsync.into()]);
            data = Some(dir);
        }
    }
    Target {
        name: name.to_owned(),
        server: ServerProcess::start_on(cpu, &binary, &args),
        data,
        tls_ca: None,
        others: Vec::new(),
        sub_addrs: Vec::new(),
    }
}

/// `rookery-redis`: two Rookery nodes (`--engine redis`, memory store, `--cores 1` each)
/// sharing their rooms through one Redis (no persistence), all three pinned to `cpu` when
/// given, as one server is: the figures are what the whole system does with that core.
/// `server` is node A (publishers); subscribers spread over A and B.
fn start_rookery_redis(cpu: Option<&str>, run: &RunArgs) -> Target {
    let binary = rookery_with(run, "--redis-url", "rookery-redis");
    let redis = start_redis(cpu);
    let args = memory_node([
        "--engine".into(),
        "redis".into(),
        "--redis-url".into(),
        format!("redis://{}", redis.addr),
    ]);
    let a = ServerProcess::start_on(cpu, &binary, &args);
    let b = ServerProcess::start_on(cpu, &binary, &args);
    for node in [&a, &b] {
        wait_ready(&node.addr);
    }
    Target {
        name: "rookery-redis".into(),
        server: a,
        data: None,
        tls_ca: None,
        sub_addrs: vec![b.addr.clone()],
        others: vec![b, redis],
    }
}

/// The `rookery` binary of the run, which must know `flag` to run `system`.
fn rookery_with(run: &RunArgs, flag: &str, system: &str) -> String {
    let binary = format!("{}/rookery", run.bin_dir);
    assert!(
        crate::supports_flag(&binary, flag),
        "{binary} has no {flag}: it cannot run {system}"
    );
    binary
}

/// A Rookery node's arguments as every memory-store system runs it (`--cores 1`, no
/// message rate limit), then `more`.
fn memory_node<const N: usize>(more: [String; N]) -> Vec<String> {
    [
        "--cores",
        "1",
        "--max-message-rate",
        "0",
        "--store",
        "memory",
    ]
    .map(String::from)
    .into_iter()
    .chain(more)
    .collect()
}

/// Waits (up to 20 s) until a node answers `/readyz` with 200: with `--engine redis`,
/// until its link to Redis is live.
fn wait_ready(addr: &str) {
    for _ in 0..200 {
        if crate::http(addr, "GET", "/readyz", "").0 == 200 {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the node at {addr} did not become ready");
}

/// A `redis-server` for one measurement, on a free loopback port, without persistence.
fn start_redis(cpu: Option<&str>) -> ServerProcess {
    use std::io::{Read, Write};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut command = Command::new("taskset");
    command.args(["-c", cpu.unwrap_or("0-1023"), "redis-server"]);
    let child = command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server starts (apt-get install redis-server)");
    // Killed and waited for when dropped, the panic below included.
    let redis = ServerProcess {
        child,
        addr: format!("127.0.0.1:{port}"),
    };
    for _ in 0..200 {
        if let Ok(mut s) = std::net::TcpStream::connect(&redis.addr) {
            let mut pong = [0u8; 7];
            if s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut pong).is_ok() {
                return redis;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("redis-server did not answer on {}", redis.addr);
}

/// `rookery` (memory store, pinned to core 0) serving TLS with a self-signed certificate
/// for `localhost` made for this start (ECDSA P-256, rcgen's default), in a directory of
/// its own removed after.
fn start_rookery_tls(run: &RunArgs) -> Target {
    let dir = DataDir::new(&std::env::temp_dir());
    std::fs::create_dir_all(&dir.path).unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("a certificate");
    let cert = dir.path.join("cert.pem");
    let key = dir.path.join("key.pem");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let binary = rookery_with(run, "--tls-cert", "rookery-tls");
    let args = memory_node([
        "--tls-cert".into(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
    ]);
    Target {
        name: "rookery-tls".into(),
        server: ServerProcess::start_on(Some("0"), &binary, &args),
        tls_ca: Some(cert.display().to_string()),
        data: Some(dir),
        others: Vec::new(),
        sub_addrs: Vec::new(),
    }
}

/// Starts a peer that prints `listening on ADDR`, pinned like the server to one core.
fn start_peer(command: &[&str]) -> ServerProcess {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new("taskset")
        .args(["-c", "0"])
        .args(command)
        .env("TOKIO_WORKER_THREADS", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (bench/peers/install.sh builds the peers)",
                command[0]
            )
        });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    ServerProcess { child, addr }
}

/// nginx + nchan, one process (no master), pinned like the others, on a free port.
fn start_nchan() -> ServerProcess {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("rookery-nchan-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = std::fs::read_to_string("bench/peers/nchan.conf.template")
        .expect("bench/peers/nchan.conf.template (run from the repository root)")
        .replace("PIDFILE", &dir.join("nginx.pid").display().to_string())
        .replace("TMPDIR", &dir.display().to_string())
        .replace("PORT", &port.to_string());
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new("taskset")
        .args(["-c", "0", "nginx", "-c"])
        .arg(&conf_path)
        .args(["-p"])
        .arg(&dir)
        .spawn()
        .expect("nginx starts (bench/peers/install.sh installs it)");
    let addr = format!("127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ServerProcess { child, addr }
}

/// One step of a stepped load, as the server and the receivers saw it.
#[derive(Clone, Debug)]
struct Step {
    /// Deliveries received per second during the step.
    delivered_per_s: f64,
    /// Deliveries of the step's messages (whenever they arrived) per second of the step.
    reached_per_s: f64,
    expected_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    /// Server CPU time (user + system) per delivery in this step.
    cpu_per_delivery_ns: f64,
    /// The same, by server thread group (IO core, store thread, fjall's workers, other).
    threads_per_delivery_ns: ThreadCpu,
    /// CPU the rest of the machine used during the step, in cores (busy time of the
    /// machine minus the server's and the load generator's).
    other_cores: f64,
}

impl Step {
    /// The share of the step's messages' recipients they reached (1 = no loss).
    fn reached_share(&self) -> f64 {
        self.reached_per_s / self.expected_per_s.max(1e-9)
    }

    /// The step's messages reached at least 90 % of their recipients.
    fn kept_up(&self) -> bool {
        self.reached_share() >= 0.9
    }
}

/// Runs a stepped load in one worker process (pinned to core 1), sampling the server's CPU
/// time as each step ends. Returns the steps run (the worker stops after the first that
/// falls behind) and the server's peak RSS seen at step ends.
fn stepped(target: &Target, args: &[(&str, String)], subscribers: usize) -> (Vec<Step>, u64) {
    use std::io::{BufRead, BufReader};
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "1"]).arg(&exe).arg("worker");
    cmd.args(["--system", &target.name, "--addr", &target.server.addr]);
    cmd.args(target.tls_args());
    cmd.args(target.spread_args("--sub-addrs"));
    cmd.args(["--subscribers", &subscribers.to_string()]);
    for (k, v) in args {
        cmd.args([*k, v.as_str()]);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("worker starts");
    let worker = child.id();
    let pids = target.pids();
    let mut samples = Vec::new();
    let mut peak_rss = 0;
    let mut result = Value::Null;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        if line == "start" || line.starts_with("step ") {
            samples.push(Sample::take(&pids, worker));
            peak_rss = peak_rss.max(target.rss());
        } else if line.starts_with('{') {
            result = serde_json::from_str(&line).unwrap_or(Value::Null);
        }
    }
    let _ = child.wait();
    let seconds = result["step_seconds"].as_f64().unwrap_or(1.0);
    let steps = result["steps"].as_array().cloned().unwrap_or_default();
    let steps = steps
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let delivered = s["delivered"].as_f64().unwrap_or(0.0);
            let used = match (samples.get(k), samples.get(k + 1)) {
                (Some(a), Some(b)) => b.since(a),
                _ => Used::default(),
            };
            let ms = |key: &str| s[key].as_f64().unwrap_or(0.0) / 1000.0;
            let per = |cpu: f64| {
                if delivered > 0.0 {
                    cpu * 1e9 / delivered
                } else {
                    0.0
                }
            };
            Step {
                delivered_per_s: delivered / seconds,
                reached_per_s: s["delivered_by_send"].as_f64().unwrap_or(0.0) / seconds,
                expected_per_s: s["expected"].as_f64().unwrap_or(0.0) / seconds,
                p50_ms: ms("p50_us"),
                p99_ms: ms("p99_us"),
                p999_ms: ms("p999_us"),
                cpu_per_delivery_ns: per(used.server),
                threads_per_delivery_ns: ThreadCpu {
                    core: per(used.threads.core),
                    store: per(used.threads.store),
                    fjall: per(used.threads.fjall),
                    other: per(used.threads.other),
                },
                other_cores: used.other_cores(),
            }
        })
        .collect();
    (steps, peak_rss)
}

/// CPU times at one moment of a measurement.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    at: f64,
    server: f64,
    threads: ThreadCpu,
    client: f64,
    machine_busy: f64,
    machine_total: f64,
}

/// CPU used between two samples: seconds, except `other_cores`.
#[derive(Clone, Copy, Debug, Default)]
struct Used {
    wall: f64,
    server: f64,
    threads: ThreadCpu,
    client: f64,
    machine_busy: f64,
}

impl Sample {
    /// `server`: the system's processes, whose CPU is added up.
    fn take(server: &[u32], client: u32) -> Sample {
        let (busy, total) = crate::machine_ticks();
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Sample {
            at,
            server: server.iter().map(|&p| crate::cpu_seconds_of(p)).sum(),
            threads: server.iter().fold(ThreadCpu::default(), |all, &p| {
                all.plus(&crate::thread_cpu_of(p))
            }),
            client: crate::cpu_seconds_of(client),
            machine_busy: busy / 100.0,
            machine_total: total / 100.0,
        }
    }

    fn since(&self, before: &Sample) -> Used {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let total = self.machine_total - before.machine_total;
        let wall = self.at - before.at;
        Used {
            wall,
            server: self.server - before.server,
            threads: self.threads.since(&before.threads),
            client: self.client - before.client,
            // Machine busy seconds, scaled to the wall time (ticks are coarse).
            machine_busy: if total > 0.0 {
                (self.machine_busy - before.machine_busy) / total * cpus * wall
            } else {
                0.0
            },
        }
    }
}

impl Used {
    /// Cores the rest of the machine kept busy.
    fn other_cores(&self) -> f64 {
        if self.wall <= 0.0 {
            return 0.0;
        }
        ((self.machine_busy - self.server - self.client) / self.wall).max(0.0)
    }
}

/// Deliveries/s offered by each step of a schedule: from `first` (25 k; 50 k in `--quick`,
/// which skips a step to stay under 2 minutes), each `factor` times the last (`--step-factor`,
/// 2 by default), up to 12.8 M (past every system's capacity on this machine).
fn schedule(first: f64, factor: f64) -> Vec<f64> {
    let factor = factor.max(1.01);
    std::iter::successors(Some(25_000.0), |d| Some(d * factor))
        .take_while(|d| *d <= 12_800_000.0 * 1.0001)
        .filter(|d| *d >= first * 0.9999)
        .collect()
}

/// The schedule as publish rates, for `per_message` deliveries per published message and
/// `publishers` publishers.
fn rates(first: f64, factor: f64, per_message: f64, publishers: f64) -> String {
    schedule(first, factor)
        .iter()
        .map(|d| format!("{:.3}", d / per_message / publishers))
        .collect::<Vec<_>>()
        .join(",")
}

/// The step with the most deliveries/s.
fn best(steps: &[Step]) -> Option<&Step> {
    steps
        .iter()
        .max_by(|a, b| a.delivered_per_s.total_cmp(&b.delivered_per_s))
}

/// Of the steps that kept up, the one whose rate is nearest `rate` (log scale).
fn nearest(steps: &[Step], rate: f64) -> Option<(usize, &Step)> {
    steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.kept_up())
        .min_by(|a, b| {
            let d = |s: &Step| (s.delivered_per_s / rate).ln().abs();
            d(a.1).total_cmp(&d(b.1))
        })
}

/// Median and range of one figure over the runs.
fn median_range(mut v: Vec<f64>) -> (f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn fmt_mr(v: Vec<f64>, unit: &str) -> (f64, String) {
    if v.is_empty() {
        return (0.0, "–".into());
    }
    let (m, lo, hi) = median_range(v);
    let unit = if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    };
    (
        m,
        format!("{}{unit} ({}–{})", human(m), human(lo), human(hi)),
    )
}

fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0} k", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Latency percentiles over runs: `p50 a (lo–hi) ms, p99 …`.
fn latency_text(steps: &[Step]) -> String {
    if steps.is_empty() {
        return "–".into();
    }
    let of = |f: fn(&Step) -> f64| fmt_mr(steps.iter().map(f).collect(), "ms").1;
    format!(
        "p50 {}, p99 {}, p999 {}",
        of(|s| s.p50_ms),
        of(|s| s.p99_ms),
        of(|s| s.p999_ms)
    )
}

/// W2 at one N, one step of each run per figure.
struct Fanout {
    n: usize,
    /// The saturated (best) step.
    saturated: Vec<Step>,
    /// The step nearest half the saturated rate.
    half: Vec<Step>,
    /// The step at [`COMMON_RATE`].
    common: Vec<Step>,
    /// Every step of each run.
    steps: Vec<Vec<Step>>,
}

/// Delivered ÷ published over runs, in percent.
fn reached_text(steps: &[Step]) -> String {
    fmt_mr(
        steps.iter().map(|s| 100.0 * s.reached_share()).collect(),
        "%",
    )
    .1
}

/// Every figure of one system.
#[derive(Default)]
struct Figures {
    w2: Vec<Fanout>,
    /// W4: readers' per-subscriber rate vs W2's at the same step (%), server RSS growth (B).
    w4: Vec<(f64, f64)>,
    /// W1 per N: bytes per connection, connections/s.
    w1: Vec<(usize, Vec<f64>, Vec<f64>)>,
    /// W3: the saturated step of each run.
    w3: Vec<Step>,
    /// W3: every step of each run.
    w3_steps: Vec<Vec<Step>>,
}

/// Deliveries/s at which every system's latency is compared.
const COMMON_RATE: f64 = 50_000.0;

/// The workloads of a run, from `--workloads`.
struct Selected {
    w1: bool,
    w2: bool,
    w3: bool,
    w4: bool,
    w5: bool,
}

impl Selected {
    fn of(names: &[String]) -> Selected {
        let has = |w: &str| names.iter().any(|n| n.eq_ignore_ascii_case(w));
        for n in names {
            assert!(
                ["w1", "w2", "w3", "w4", "w5"].contains(&n.to_ascii_lowercase().as_str()),
                "unknown workload {n} (w1, w2, w3, w4, w5)"
            );
        }
        let s = Selected {
            w1: has("w1"),
            w2: has("w2"),
            w3: has("w3"),
            w4: has("w4") && has("w2"),
            w5: has("w5"),
        };
        if has("w4") && !s.w4 {
            eprintln!("w4 runs at W2's half-saturated rate: it needs w2 too; skipped");
        }
        s
    }
}

pub fn run(args: RunArgs) {
    let runs = if args.quick { 1 } else { args.runs.max(1) };
    let step = if args.quick { "1" } else { "2" };
    let idle_hold = if args.quick { "1" } else { "4" };
    let fanout_sizes: Vec<usize> = if args.quick {
        vec![1_000]
    } else {
        vec![100, 1_000, 10_000]
    };
    let idle_sizes: Vec<usize> = if args.quick {
        vec![1_000]
    } else {
        vec![1_000, 5_000, 19_000]
    };
    let w3_subscribers = if args.quick { 2_000 } else { 10_000 };
    let first = if args.quick { 50_000.0 } else { 25_000.0 };
    let selected = Selected::of(&args.workloads);
    let date = Command::new("date")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let load_before = loadavg();
    // Each measurement's runs go round the systems (run 1 of every system, then run 2, …),
    // so that a burst of other work on the machine weighs on all of them alike.
    let mut all: Vec<(String, Figures)> = args
        .systems
        .iter()
        .map(|system| {
            let mut f = Figures::default();
            if selected.w2 {
                f.w2 = fanout_sizes
                    .iter()
                    .map(|&n| Fanout {
                        n,
                        saturated: Vec::new(),
                        half: Vec::new(),
                        common: Vec::new(),
                        steps: Vec::new(),
                    })
                    .collect();
            }
            (system.clone(), f)
        })
        .collect();
    if selected.w2 {
        for (i, &n) in fanout_sizes.iter().enumerate() {
            for r in 0..runs {
                for (system, f) in all.iter_mut() {
                    let target = start(system, &args);
                    let (steps, _) = stepped(
                        &target,
                        &[
                            ("--prefix", format!("w2-{r}")),
                            ("--reader", args.reader.clone()),
                            ("--publishers", "1".into()),
                            ("--rates", rates(first, args.step_factor, n as f64, 1.0)),
                            ("--step-seconds", step.into()),
                            ("--stop-below", "0.9".into()),
                        ],
                        n,
                    );
                    let w = &mut f.w2[i];
                    w.steps.push(steps.clone());
                    let Some(top) = best(&steps).cloned() else {
                        continue;
                    };
                    if let Some((_, s)) = nearest(&steps, top.delivered_per_s / 2.0) {
                        w.half.push(s.clone());
                    }
                    if let Some((_, s)) = nearest(&steps, COMMON_RATE) {
                        if (s.delivered_per_s / COMMON_RATE - 1.0).abs() < 0.2 {
                            w.common.push(s.clone());
                        }
                    }
                    eprintln!(
                        "{system} W2 n={n} run {r}: {} deliveries/s, {:.0} ns/delivery",
                        human(top.delivered_per_s),
                        top.cpu_per_delivery_ns
                    );
                    w.saturated.push(top);
                }
            }
            // W4 at the largest N: the rate of W2's half-saturation step, 1 % never reading.
            // Its figure: the share of what was published to the readers that they
            // received in the second (steady) step, over the same share in W2 at that rate.
            if !selected.w4 || n != *fanout_sizes.last().unwrap() {
                continue;
            }
            for r in 0..runs {
                for (system, f) in all.iter_mut() {
                    let half = &f.w2[i].half;
                    if half.is_empty() {
                        continue;
                    }
                    let half_rate = median_range(half.iter().map(|s| s.expected_per_s).collect()).0;
                    let w2_share = median_range(half.iter().map(Step::reached_share).collect()).0;
                    let target = start(system, &args);
                    let before = target.rss();
                    let rate = format!("{:.3}", half_rate / n as f64);
                    let (steps, peak) = stepped(
                        &target,
                        &[
                            ("--prefix", format!("w4-{r}")),
                            ("--reader", args.reader.clone()),
                            ("--publishers", "1".into()),
                            ("--rates", format!("{rate},{rate}")),
                            ("--step-seconds", step.into()),
                            ("--slow-percent", "1".into()),
                        ],
                        n,
                    );
                    if let Some(last) = steps.last() {
                        let share = last.delivered_per_s / last.expected_per_s.max(1e-9);
                        let growth = peak.saturating_sub(before) as f64;
                        f.w4.push((100.0 * share / w2_share.max(1e-9), growth));
                    }
                }
            }
        }
    }
    if selected.w1 {
        for &n in &idle_sizes {
            for (_, f) in all.iter_mut() {
                f.w1.push((n, Vec::new(), Vec::new()));
            }
            for _ in 0..runs {
                for (system, f) in all.iter_mut() {
                    let target = start(system, &args);
                    let (bytes, rate) = idle(&target, n, idle_hold);
                    let (_, per, connect) = f.w1.last_mut().unwrap();
                    per.push(bytes);
                    connect.push(rate);
                }
            }
            for (system, f) in &all {
                let (_, per, _) = f.w1.last().unwrap();
                eprintln!("{system} W1 n={n}: {}", fmt_mr(per.clone(), "B/conn").1);
            }
        }
    }
    if selected.w3 {
        for r in 0..runs {
            for (system, f) in all.iter_mut() {
                let target = start(system, &args);
                let (steps, _) = stepped(
                    &target,
                    &[
                        ("--prefix", format!("w3-{r}")),
                        ("--reader", args.reader.clone()),
                        ("--rooms", (w3_subscribers / 10).to_string()),
                        ("--publishers", "100".into()),
                        ("--rates", rates(first, args.step_factor, 10.0, 100.0)),
                        ("--step-seconds", step.into()),
                        ("--stop-below", "0.9".into()),
                    ],
                    w3_subscribers,
                );
                f.w3_steps.push(steps.clone());
                if let Some(top) = best(&steps) {
                    eprintln!(
                        "{system} W3 run {r}: {} deliveries/s, {:.0} ns/delivery",
                        human(top.delivered_per_s),
                        top.cpu_per_delivery_ns
                    );
                    f.w3.push(top.clone());
                }
            }
        }
    }
    let w5 = if selected.w5 {
        durable_writes(&args, runs)
    } else {
        Vec::new()
    };
    let load_after = loadavg();
    let report = render(
        &args,
        runs,
        &date,
        &all,
        &fanout_sizes,
        &selected,
        &w5,
        (&load_before, &load_after),
    );
    std::fs::write(&args.out, &report).expect("results written");
    println!("{report}");
}

/// `/proc/loadavg`'s three load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One W5 measurement's setting: a Rookery store, where the server runs, and the load.
#[derive(Clone, Debug, PartialEq)]
struct W5Case {
    store: Store,
    /// `Some("0")`: pinned to core 0; `None`: both cores.
    cpu: Option<&'static str>,
    rooms: usize,
    /// Offered writes/s; 0: saturated (every connection keeps its window full).
    rate: f64,
}

/// One W5 measurement.
#[derive(Clone, Debug, Default)]
struct WriteRun {
    /// `ok`s received per second of the measured window.
    acked_per_s: f64,
    /// Writes sent per second of the window.
    sent_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    /// Server CPU per acknowledged write, µs, in all and by thread group.
    cpu_per_write_us: f64,
    threads_per_write_us: ThreadCpu,
    /// The server's CPU use during the window, in cores.
    server_cores: f64,
    /// The load generator's CPU use during the window, in cores (1: it was the limit).
    client_cores: f64,
    other_cores: f64,
    /// Error replies, connections that broke, writes never answered.
    errors: f64,
    broken: f64,
    unanswered: f64,
}

/// W5 durable writes: for every Rookery system of the run (each fsync mode of
/// `--w5-fsync` for `rookery-disk`) and every server placement of `--w5-server-cpus`:
/// saturated at each room count of `--w5-rooms`, then at `--w5-rate` over the first.
fn durable_writes(args: &RunArgs, runs: usize) -> Vec<(W5Case, Vec<WriteRun>)> {
    let mut stores = Vec::new();
    for system in &args.systems {
        let add: Vec<Store> = match Store::of(system) {
            None => Vec::new(),
            Some(Store::Disk("interval")) => args
                .w5_fsync
                .iter()
                .map(|m| match m.as_str() {
                    "interval" => Store::Disk("interval"),
                    "always" => Store::Disk("always"),
                    other => panic!("unknown fsync mode {other} (interval, always)"),
                })
                .collect(),
            Some(store) => vec![store],
        };
        for store in add {
            if !stores.contains(&store) {
                stores.push(store);
            }
        }
    }
    let placements: Vec<Option<&'static str>> = args
        .w5_server_cpus
        .clone()
        .unwrap_or_else(|| {
            if args.quick {
                vec!["0".into()]
            } else {
                vec!["0".into(), "all".into()]
            }
        })
        .iter()
        .map(|p| match p.as_str() {
            "0" => Some("0"),
            "all" => None,
            other => panic!("--w5-server-cpus takes 0 and all, not {other}"),
        })
        .collect();
    let mut loads: Vec<(usize, f64)> = args.w5_rooms.iter().map(|&r| (r.max(1), 0.0)).collect();
    if args.w5_rate > 0.0 {
        loads.push((
            args.w5_rooms.first().copied().unwrap_or(20).max(1),
            args.w5_rate,
        ));
    }
    let mut cases: Vec<(W5Case, Vec<WriteRun>)> = Vec::new();
    for &cpu in &placements {
        for &(rooms, rate) in &loads {
            for &store in &stores {
                cases.push((
                    W5Case {
                        store,
                        cpu,
                        rooms,
                        rate,
                    },
                    Vec::new(),
                ));
            }
        }
    }
    let (warmup, seconds) = if args.quick { (0.5, 1.5) } else { (1.0, 3.0) };
    // Runs go round the stores of one placement and load, as elsewhere.
    let mut i = 0;
    while i < cases.len() {
        let group: Vec<usize> = (i..cases.len())
            .take_while(|&j| {
                cases[j].0.cpu == cases[i].0.cpu
                    && cases[j].0.rooms == cases[i].0.rooms
                    && cases[j].0.rate == cases[i].0.rate
            })
            .collect();
        for r in 0..runs {
            for &j in &group {
                let case = cases[j].0.clone();
                let run = writes_once(args, &case, r, warmup, seconds);
                eprintln!(
                    "W5 {} {} rooms={} {} run {r}: {} writes/s ({} sent/s), p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, {:.2} µs CPU/write (store thread {:.2}), client {:.0} %, other {:.2} cores{}",
                    case.store.label(),
                    placement(case.cpu),
                    case.rooms,
                    load_label(&case, args),
                    human(run.acked_per_s),
                    human(run.sent_per_s),
                    run.p50_ms,
                    run.p99_ms,
                    run.max_ms,
                    run.cpu_per_write_us,
                    run.threads_per_write_us.store,
                    run.client_cores * 100.0,
                    run.other_cores,
                    if run.errors + run.broken + run.unanswered > 0.0 {
                        format!(", {} errors, {} broken, {} unanswered", run.errors, run.broken, run.unanswered)
                    } else {
                        String::new()
                    }
                );
                cases[j].1.push(run);
            }
        }
        i += group.len();
    }
    cases
}

fn placement(cpu: Option<&str>) -> &'static str {
    match cpu {
        Some(_) => "core 0",
        None => "both cores",
    }
}

fn load_label(case: &W5Case, args: &RunArgs) -> String {
    if case.rate > 0.0 {
        format!("{} writes/s offered", human(case.rate))
    } else {
        format!("saturated, window {}", args.w5_window)
    }
}

/// One W5 measurement on a fresh server: the writer worker pinned to core 1.
fn writes_once(args: &RunArgs, case: &W5Case, r: usize, warmup: f64, seconds: f64) -> WriteRun {
    use std::io::{BufRead, BufReader};
    let name = match case.store {
        Store::Memory => "rookery",
        Store::Disk(_) => "rookery-disk",
        Store::Redis => "rookery-redis",
    };
    let target = start_rookery(name, case.store, case.cpu, args);
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new("taskset")
        .args(["-c", "1"])
        .arg(&exe)
        .arg("writer")
        .args(["--system", &target.name, "--addr", &target.server.addr])
        .args(target.spread_args("--more-addrs"))
        .args(["--prefix", &format!("w5-{r}")])
        .args(["--rooms", &case.rooms.to_string()])
        .args(["--connections", &args.w5_connections.to_string()])
        .args(["--window", &args.w5_window.to_string()])
        .args(["--kinds", &args.w5_kinds.join(",")])
        .args(["--rate", &case.rate.to_string()])
        .args([
            "--warmup",
            &warmup.to_string(),
            "--seconds",
            &seconds.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("writer starts");
    let pids = target.pids();
    let worker = child.id();
    let mut samples = Vec::new();
    let mut result = Value::Null;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        if line == "start" || line == "end" {
            samples.push(Sample::take(&pids, worker));
        } else if line.starts_with('{') {
            result = serde_json::from_str(&line).unwrap_or(Value::Null);
        }
    }
    let _ = child.wait();
    let used = match (samples.first(), samples.get(1)) {
        (Some(a), Some(b)) => b.since(a),
        _ => Used::default(),
    };
    let f = |k: &str| result[k].as_f64().unwrap_or(0.0);
    let acked = f("acked");
    let secs = f("seconds").max(1e-9);
    let per = |cpu: f64| if acked > 0.0 { cpu * 1e6 / acked } else { 0.0 };
    if let Some(e) = result["first_error"].as_str() {
        eprintln!("W5: first error reply: {e}");
    }
    WriteRun {
        acked_per_s: acked / secs,
        sent_per_s: f("sent") / secs,
        p50_ms: f("p50_us") / 1000.0,
        p99_ms: f("p99_us") / 1000.0,
        p999_ms: f("p999_us") / 1000.0,
        max_ms: f("max_us") / 1000.0,
        cpu_per_write_us: per(used.server),
        threads_per_write_us: ThreadCpu {
            core: per(used.threads.core),
            store: per(used.threads.store),
            fjall: per(used.threads.fjall),
            other: per(used.threads.other),
        },
        server_cores: used.server / used.wall.max(1e-9),
        client_cores: f("client_cpu_s") / secs,
        other_cores: used.other_cores(),
        errors: f("errors"),
        broken: f("broken"),
        unanswered: (f("sent_total") - f("acked_total") - f("errors")).max(0.0),
    }
}

/// W1: `n` connections held idle over as many workers as the fd limit needs. Returns the
/// server's RSS growth per connection and the connect rate (connections/s).
fn idle(target: &Target, n: usize, hold: &str) -> (f64, f64) {
    let before = target.rss();
    let exe = std::env::current_exe().unwrap();
    let workers = n.div_ceil(PER_WORKER);
    let mut handles: Vec<_> = (0..workers)
        .map(|w| {
            let share = n / workers + usize::from(w < n % workers);
            Command::new("taskset")
                .args(["-c", "1"])
                .arg(&exe)
                .args(["worker", "--system", &target.name])
                .args(["--addr", &target.server.addr])
                .args(target.tls_args())
                .args(target.spread_args("--sub-addrs"))
                .args(["--subscribers", &share.to_string()])
                .args(["--rates", "0", "--step-seconds", hold])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // The workers hold their connections idle once all are up: the peak RSS until they
    // exit is the server with N idle connections.
    let mut peak = 0;
    while handles
        .iter_mut()
        .any(|h| h.try_wait().ok().flatten().is_none())
    {
        peak = peak.max(target.rss());
        std::thread::sleep(Duration::from_millis(200));
    }
    let (mut connected, mut secs) = (0.0, 0.0f64);
    for h in handles {
        let out = h.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Value = text
            .lines()
            .find(|l| l.starts_with('{'))
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null);
        connected += v["connected"].as_f64().unwrap_or(0.0);
        secs = secs.max(v["connect_secs"].as_f64().unwrap_or(0.0));
    }
    (
        peak.saturating_sub(before) as f64 / n as f64,
        connected / secs.max(1e-9),
    )
}

/// The Markdown report.
#[allow(clippy::too_many_arguments)]
fn render(
    args: &RunArgs,
    runs: usize,
    date: &str,
    all: &[(String, Figures)],
    sizes: &[usize],
    selected: &Selected,
    w5: &[(W5Case, Vec<WriteRun>)],
    load: (&str, &str),
) -> String {
    let mut out = String::new();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| format!(" at commit `{}`", String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_default();
    let _ = writeln!(out, "# Benchmark results\n\nProduced by `{command}`{commit} on {date}; {cpus} cores, each server pinned to core 0 (`taskset`) unless said otherwise, the load generator (one process, one thread) on core 1. {runs} run(s) per figure: median (min–max) over runs, each run of a figure going round the systems. Each step of a stepped load lasts {} s. Load average (1, 5, 15 min) before the run: {}; after: {}.\n", if args.quick { 1 } else { 2 }, load.0, load.1);
    if all.iter().any(|(s, _)| Store::of(s).is_some()) {
        let _ = writeln!(out, "Rookery runs with `--cores 1 --max-message-rate 0` and `--store memory` (`rookery`) or `--store disk` in a fresh data directory under {} per start (`rookery-disk`: `--fsync interval`, every 5 ms; `rookery-disk-always`: `--fsync always`); the disk store's thread (and fjall's workers) share core 0 with the IO core (the memory store runs on the IO core itself).\n", args.data_root.clone().unwrap_or_else(|| std::env::temp_dir().display().to_string()));
    }
    if all.iter().any(|(s, _)| s == "rookery-tls") {
        let _ = writeln!(out, "`rookery-tls` is `rookery` (memory store) serving TLS (`--tls-cert`, `--tls-key`: a self-signed ECDSA P-256 certificate made per start); the load generator connects with `wss://` (rustls, ring; TLS 1.3, no session resumption: every connection a full handshake).\n");
    }
    if all.iter().any(|(s, _)| s == "rookery-redis") {
        let _ = writeln!(out, "`rookery-redis` is two Rookery nodes (`--cores 1 --store memory --engine redis`) sharing their rooms through one `redis-server` (no persistence), all three on the core a single server gets (core 0, or unpinned where W5 says *both cores*): its CPU and memory figures are the three processes' together. Subscribers alternate between the nodes (each room has members on both); publishers and W5's writers: publishers on the first node, writers alternating.\n");
    }
    let rookery = all.iter().find(|(s, _)| s == "rookery").map(|(_, f)| f);
    let median_of =
        |steps: &[Step]| median_range(steps.iter().map(|s| s.delivered_per_s).collect()).0;
    if selected.w2 {
        let _ = writeln!(out, "## W2 fanout: 1 publisher → N subscribers in one room, 128-byte payloads\n\nThe offered rate doubles every step from {} deliveries/s until a step's messages reach fewer than 90 % of their recipients (counted a step later) and the next step delivers no more; the figure is the step that delivered the most per second (by arrival).\n\n| system | N | saturated deliveries/s | Rookery ÷ system | server CPU per delivery |\n|---|---|---|---|---|", human(if args.quick { 50_000.0 } else { 25_000.0 }));
        for (system, f) in all {
            for Fanout {
                n, saturated: sat, ..
            } in &f.w2
            {
                let base = rookery
                    .and_then(|r| r.w2.iter().find(|w| w.n == *n))
                    .map(|w| median_of(&w.saturated));
                let m = median_of(sat);
                let ratio = base.map_or("–".into(), |b| format!("{:.2}×", b / m.max(1e-9)));
                let (_, text) = fmt_mr(
                    sat.iter().map(|s| s.delivered_per_s).collect(),
                    "deliveries/s",
                );
                let (_, cpu) = fmt_mr(sat.iter().map(|s| s.cpu_per_delivery_ns).collect(), "ns");
                let _ = writeln!(out, "| {system} | {n} | {text} | {ratio} | {cpu} |");
            }
        }
        let _ = writeln!(out, "\n## W2 latency at a common rate: {} deliveries/s for every system (publish → receive)\n\n| system | N | latency | delivered / published |\n|---|---|---|---|", human(COMMON_RATE));
        for (system, f) in all {
            for Fanout { n, common, .. } in &f.w2 {
                let _ = writeln!(
                    out,
                    "| {system} | {n} | {} | {} |",
                    latency_text(common),
                    reached_text(common)
                );
            }
        }
        let _ = writeln!(out, "\n## W2 latency at half of each system's saturated rate (the step nearest half)\n\n| system | N | rate | latency | delivered / published |\n|---|---|---|---|---|");
        for (system, f) in all {
            for Fanout { n, half, .. } in &f.w2 {
                let rate = fmt_mr(
                    half.iter().map(|s| s.delivered_per_s).collect(),
                    "deliveries/s",
                )
                .1;
                let _ = writeln!(
                    out,
                    "| {system} | {n} | {rate} | {} | {} |",
                    latency_text(half),
                    reached_text(half)
                );
            }
        }
    }
    if selected.w4 {
        let largest = sizes.last().copied().unwrap_or(0);
        let _ = writeln!(out, "\n## W4 slow consumers: W2 at N = {largest}, half the saturated rate, 1 % of subscribers never reading\n\n| system | reading subscribers' rate vs W2 | server RSS growth during the run |\n|---|---|---|");
        for (system, f) in all {
            let keep = fmt_mr(f.w4.iter().map(|w| w.0).collect(), "%").1;
            let growth = fmt_mr(f.w4.iter().map(|w| w.1 / 1e6).collect(), "MB").1;
            let _ = writeln!(out, "| {system} | {keep} | {growth} |");
        }
    }
    if selected.w1 {
        let _ = writeln!(out, "\n## W1 idle connections: server memory per connection (peak RSS − RSS before, ÷ N)\n\n| system | N | memory | connect rate |\n|---|---|---|---|");
        for (system, f) in all {
            for (n, per, connect) in &f.w1 {
                let _ = writeln!(
                    out,
                    "| {system} | {n} | {} | {} |",
                    fmt_mr(per.clone(), "B/conn").1,
                    fmt_mr(connect.clone(), "conn/s").1
                );
            }
        }
    }
    if selected.w3 {
        let rook3 = rookery.map(|r| median_of(&r.w3));
        let _ = writeln!(out, "\n## W3 many rooms: N/10 rooms × 10 subscribers, 100 publishers each in its own room\n\nStepped like W2.\n\n| system | saturated deliveries/s | Rookery ÷ system | server CPU per delivery |\n|---|---|---|---|");
        for (system, f) in all {
            let m = median_of(&f.w3);
            let ratio = rook3.map_or("–".into(), |b| format!("{:.2}×", b / m.max(1e-9)));
            let (_, text) = fmt_mr(
                f.w3.iter().map(|s| s.delivered_per_s).collect(),
                "deliveries/s",
            );
            let (_, cpu) = fmt_mr(f.w3.iter().map(|s| s.cpu_per_delivery_ns).collect(), "ns");
            let _ = writeln!(out, "| {system} | {text} | {ratio} | {cpu} |");
        }
    }
    render_disk_vs_memory(&mut out, all, selected);
    if selected.w5 && !w5.is_empty() {
        render_w5(&mut out, args, w5);
    }
    out
}

/// W2 and W3 of each disk-store system against `rookery` (the memory store): throughput as
/// a share of the memory store's (the median of the per-run ratios, runs being
/// interleaved), server CPU per delivery, and where a disk server's CPU went.
fn render_disk_vs_memory(out: &mut String, all: &[(String, Figures)], selected: &Selected) {
    let Some((_, memory)) = all.iter().find(|(s, _)| s == "rookery") else {
        return;
    };
    let disks: Vec<_> = all
        .iter()
        .filter(|(s, _)| matches!(Store::of(s), Some(Store::Disk(_))))
        .collect();
    if disks.is_empty() || !(selected.w2 || selected.w3) {
        return;
    }
    let _ = writeln!(out, "\n## Durability: disk vs memory store (W2, W3)\n\nEvery chat is a lasting event: with `--store disk` it is appended to the room's history (the newest 100 kept) and delivered once its batch is committed. `disk ÷ memory` is the median of the per-run ratios of saturated deliveries/s (run k of each system ran back to back); the target is ≥ 80 %. CPU per delivery: the whole server, then the disk server's store thread and fjall's workers alone (from `/proc/PID/task/*/stat`).\n\n| workload | system | memory deliveries/s | disk deliveries/s | disk ÷ memory | CPU per delivery, memory | CPU per delivery, disk | of which store thread / fjall workers | other load |\n|---|---|---|---|---|---|---|---|---|");
    let row = |out: &mut String, what: &str, system: &str, mem: &[Step], disk: &[Step]| {
        let ratios: Vec<f64> = mem
            .iter()
            .zip(disk)
            .map(|(m, d)| 100.0 * d.delivered_per_s / m.delivered_per_s.max(1e-9))
            .collect();
        let rate = |v: &[Step]| fmt_mr(v.iter().map(|s| s.delivered_per_s).collect(), "").1;
        let cpu = |v: &[Step]| fmt_mr(v.iter().map(|s| s.cpu_per_delivery_ns).collect(), "ns").1;
        let store = fmt_mr(
            disk.iter()
                .map(|s| s.threads_per_delivery_ns.store)
                .collect(),
            "ns",
        )
        .1;
        let fjall = fmt_mr(
            disk.iter()
                .map(|s| s.threads_per_delivery_ns.fjall)
                .collect(),
            "ns",
        )
        .1;
        let other = fmt_mr(
            mem.iter().chain(disk).map(|s| s.other_cores).collect(),
            "cores",
        )
        .1;
        let _ = writeln!(
            out,
            "| {what} | {system} | {} | {} | {} | {} | {} | {store} / {fjall} | {other} |",
            rate(mem),
            rate(disk),
            fmt_mr(ratios, "%").1,
            cpu(mem),
            cpu(disk)
        );
    };
    for (system, disk) in &disks {
        for (m, d) in memory.w2.iter().zip(&disk.w2) {
            row(
                out,
                &format!("W2 N = {}", m.n),
                system,
                &m.saturated,
                &d.saturated,
            );
        }
        if selected.w3 {
            row(out, "W3", system, &memory.w3, &disk.w3);
        }
    }
    // The saturated steps ran at different rates, and a server's CPU per delivery falls as
    // its rate rises (more frames merge per socket write): compare at one rate too.
    let _ = writeln!(out, "\nAt the same offered rate: in each run, the highest step that both kept up with (≥ 90 % delivered); CPU per delivery by thread (medians).\n\n| workload | system | deliveries/s | memory: CPU per delivery (IO core / store thread) | disk: CPU per delivery (IO core / store thread / fjall workers) | disk − memory |\n|---|---|---|---|---|---|");
    let same = |out: &mut String,
                what: &str,
                system: &str,
                mem: &[Vec<Step>],
                disk: &[Vec<Step>]| {
        let pairs: Vec<(&Step, &Step)> = mem
            .iter()
            .zip(disk)
            .filter_map(|(m, d)| {
                (0..m.len().min(d.len()))
                    .rev()
                    .find(|&k| m[k].kept_up() && d[k].kept_up())
                    .map(|k| (&m[k], &d[k]))
            })
            .collect();
        if pairs.is_empty() {
            return;
        }
        let f = |g: &dyn Fn(&(&Step, &Step)) -> f64| median_range(pairs.iter().map(g).collect()).0;
        let _ = writeln!(
            out,
            "| {what} | {system} | {} | {:.0} ns ({:.0} / {:.0}) | {:.0} ns ({:.0} / {:.0} / {:.0}) | {:+.0} ns |",
            fmt_mr(pairs.iter().map(|p| p.1.delivered_per_s).collect(), "").1,
            f(&|p| p.0.cpu_per_delivery_ns),
            f(&|p| p.0.threads_per_delivery_ns.core),
            f(&|p| p.0.threads_per_delivery_ns.store),
            f(&|p| p.1.cpu_per_delivery_ns),
            f(&|p| p.1.threads_per_delivery_ns.core),
            f(&|p| p.1.threads_per_delivery_ns.store),
            f(&|p| p.1.threads_per_delivery_ns.fjall),
            f(&|p| p.1.cpu_per_delivery_ns - p.0.cpu_per_delivery_ns),
        );
    };
    for (system, disk) in &disks {
        for (m, d) in memory.w2.iter().zip(&disk.w2) {
            same(out, &format!("W2 N = {}", m.n), system, &m.steps, &d.steps);
        }
        if selected.w3 {
            same(out, "W3", system, &memory.w3_steps, &disk.w3_steps);
        }
    }
}

/// W5's tables: throughput and latency per store, placement and load; then where the
/// server's CPU went per write.
fn render_w5(out: &mut String, args: &RunArgs, w5: &[(W5Case, Vec<WriteRun>)]) {
    let writes = if args.w5_kinds == ["counter", "poll"] {
        "`{\"type\":\"counter\",\"ref\":R,\"data\":{\"id\":\"c\",\"value\":1}}` and a vote in poll `p` that moves between two answers (both lasting: state changed and the event appended to the room's history)".to_owned()
    } else {
        format!("`{}` (`--w5-kinds`: `counter` +1, `poll` a vote that moves, `chat` 128 bytes appended to the room's history)", args.w5_kinds.join("`, `"))
    };
    let _ = writeln!(out, "\n## W5 durable writes: {} connections, each with up to {} writes waiting for their `ok`\n\nEach connection sends, in turn, {writes}, each with a fresh `ref`; a write counts once its `{{\"type\":\"ok\",\"ref\":R}}` arrived. Saturated: every connection keeps its window full; fixed rate: the writes are spread evenly over the connections and the second (so a write mostly waits for nothing but its own commit). Latency: from handing the write to the socket to reading its `ok` (at saturation it is mostly queueing: connections × window ÷ throughput). `--cores 1` throughout; *core 0* pins the server (IO core, store thread, fjall's workers) to core 0, *both cores* leaves it unpinned (the load generator stays pinned to core 1). Load generator: its CPU use (1 core = it was the limit).\n\n| store | server on | rooms | load | acked writes/s | latency p50 / p99 / p999 | server CPU per write | load generator | other load |\n|---|---|---|---|---|---|---|---|---|", args.w5_connections, args.w5_window);
    for (case, runs) in w5 {
        let f = |g: fn(&WriteRun) -> f64, unit: &str| fmt_mr(runs.iter().map(g).collect(), unit).1;
        let problems: f64 = runs
            .iter()
            .map(|r| r.errors + r.broken + r.unanswered)
            .sum();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {}{} | {} / {} / {} | {} | {} | {} |",
            case.store.label(),
            placement(case.cpu),
            case.rooms,
            load_label(case, args),
            f(|r| r.acked_per_s, ""),
            if problems > 0.0 {
                format!(" ({problems} errors, broken connections or unanswered writes)")
            } else {
                String::new()
            },
            f(|r| r.p50_ms, "ms"),
            f(|r| r.p99_ms, "ms"),
            f(|r| r.p999_ms, "ms"),
            f(|r| r.cpu_per_write_us, "µs"),
            f(|r| 100.0 * r.client_cores, "%"),
            f(|r| r.other_cores, "cores"),
        );
    }
    let _ = writeln!(out, "\nWhere the server's CPU went, per acknowledged write (µs; medians), by thread: the IO core (`rookery-core-0`: WebSocket, Pact, the room's state, history entries built), the store thread (`rookery-store`: the batch's keys planned, history entries encoded as JSON, trimming, fjall's write batch and journal write, fsync calls), fjall's workers (memtable flushes, compaction), other threads; and the server's CPU use in cores.\n\n| store | server on | rooms | load | IO core | store thread | fjall workers | other | server cores busy |\n|---|---|---|---|---|---|---|---|---|");
    for (case, runs) in w5 {
        let m = |g: fn(&WriteRun) -> f64| median_range(runs.iter().map(g).collect()).0;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            case.store.label(),
            placement(case.cpu),
            case.rooms,
            load_label(case, args),
            m(|r| r.threads_per_write_us.core),
            m(|r| r.threads_per_write_us.store),
            m(|r| r.threads_per_write_us.fjall),
            m(|r| r.threads_per_write_us.other),
            m(|r| r.server_cores),
        );
    }
}
