//! The comparison run: each system, each workload, repeated; medians and ranges into a
//! Markdown table.

use crate::ServerProcess;
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
    /// Systems to compare: rookery, tokio, node, nchan, raw (the ceiling).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "rookery,tokio,node,nchan,raw"
    )]
    pub systems: Vec<String>,
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
    server: ServerProcess,
}

fn start(system: &str, bin_dir: &str) -> Target {
    let server = match system {
        "rookery" => ServerProcess::start_on(
            Some("0"),
            &format!("{bin_dir}/rookery"),
            &["--cores", "1", "--max-message-rate", "0"].map(String::from),
        ),
        "tokio" => start_peer(&[&format!("{bin_dir}/peer_tokio")]),
        "raw" => start_peer(&[&format!("{bin_dir}/peer_raw")]),
        "node" => start_peer(&["node", "bench/peers/ws-relay.js", "--listen", "127.0.0.1:0"]),
        "nchan" => start_nchan(),
        other => panic!("unknown system {other}"),
    };
    Target {
        name: system.to_owned(),
        server,
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
        .expect("peer starts");
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
    cmd.args(["--subscribers", &subscribers.to_string()]);
    for (k, v) in args {
        cmd.args([*k, v.as_str()]);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("worker starts");
    let mut cpu = Vec::new();
    let mut peak_rss = 0;
    let mut result = Value::Null;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        if line == "start" || line.starts_with("step ") {
            cpu.push(target.server.cpu_seconds());
            peak_rss = peak_rss.max(target.server.rss());
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
            let used = match (cpu.get(k), cpu.get(k + 1)) {
                (Some(a), Some(b)) => b - a,
                _ => 0.0,
            };
            let ms = |key: &str| s[key].as_f64().unwrap_or(0.0) / 1000.0;
            Step {
                delivered_per_s: delivered / seconds,
                reached_per_s: s["delivered_by_send"].as_f64().unwrap_or(0.0) / seconds,
                expected_per_s: s["expected"].as_f64().unwrap_or(0.0) / seconds,
                p50_ms: ms("p50_us"),
                p99_ms: ms("p99_us"),
                p999_ms: ms("p999_us"),
                cpu_per_delivery_ns: if delivered > 0.0 {
                    used * 1e9 / delivered
                } else {
                    0.0
                },
            }
        })
        .collect();
    (steps, peak_rss)
}

/// Deliveries/s offered by each step of a schedule: from `first` (25 k; 50 k in `--quick`,
/// which skips a step to stay under 2 minutes), doubling, up to 12.8 M (past every system's
/// capacity on this machine).
fn schedule(first: f64) -> Vec<f64> {
    (0..10)
        .map(|k| 25_000.0 * f64::from(1u32 << k))
        .filter(|d| *d >= first)
        .collect()
}

/// The schedule as publish rates, for `per_message` deliveries per published message and
/// `publishers` publishers.
fn rates(first: f64, per_message: f64, publishers: f64) -> String {
    schedule(first)
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
    (
        m,
        format!("{} {unit} ({}–{})", human(m), human(lo), human(hi)),
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
}

/// Deliveries/s at which every system's latency is compared.
const COMMON_RATE: f64 = 50_000.0;

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
    let date = Command::new("date")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mut all: Vec<(String, Figures)> = Vec::new();
    for system in &args.systems {
        let mut f = Figures::default();
        for &n in &fanout_sizes {
            let (mut sat, mut half, mut common) = (Vec::new(), Vec::new(), Vec::new());
            for r in 0..runs {
                let target = start(system, &args.bin_dir);
                let (steps, _) = stepped(
                    &target,
                    &[
                        ("--prefix", format!("w2-{r}")),
                        ("--publishers", "1".into()),
                        ("--rates", rates(first, n as f64, 1.0)),
                        ("--step-seconds", step.into()),
                        ("--stop-below", "0.9".into()),
                    ],
                    n,
                );
                let Some(top) = best(&steps).cloned() else {
                    continue;
                };
                if let Some((_, s)) = nearest(&steps, top.delivered_per_s / 2.0) {
                    half.push(s.clone());
                }
                if let Some((_, s)) = nearest(&steps, COMMON_RATE) {
                    if (s.delivered_per_s / COMMON_RATE - 1.0).abs() < 0.2 {
                        common.push(s.clone());
                    }
                }
                eprintln!(
                    "{system} W2 n={n} run {r}: {} deliveries/s",
                    human(top.delivered_per_s)
                );
                sat.push(top);
            }
            // W4 at the largest N: the rate of W2's half-saturation step, 1 % never reading.
            // Its figure: the share of what was published to the readers that they
            // received in the second (steady) step, over the same share in W2 at that rate.
            if n == *fanout_sizes.last().unwrap() && !half.is_empty() {
                let half_rate = median_range(half.iter().map(|s| s.expected_per_s).collect()).0;
                let w2_share = median_range(half.iter().map(Step::reached_share).collect()).0;
                for r in 0..runs {
                    let target = start(system, &args.bin_dir);
                    let before = target.server.rss();
                    let rate = format!("{:.3}", half_rate / n as f64);
                    let (steps, peak) = stepped(
                        &target,
                        &[
                            ("--prefix", format!("w4-{r}")),
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
            f.w2.push(Fanout {
                n,
                saturated: sat,
                half,
                common,
            });
        }
        for &n in &idle_sizes {
            let (mut per, mut connect) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                let target = start(system, &args.bin_dir);
                let (bytes, rate) = idle(&target, n, idle_hold);
                per.push(bytes);
                connect.push(rate);
            }
            eprintln!("{system} W1 n={n}: {}", fmt_mr(per.clone(), "B/conn").1);
            f.w1.push((n, per, connect));
        }
        for r in 0..runs {
            let target = start(system, &args.bin_dir);
            let (steps, _) = stepped(
                &target,
                &[
                    ("--prefix", format!("w3-{r}")),
                    ("--rooms", (w3_subscribers / 10).to_string()),
                    ("--publishers", "100".into()),
                    ("--rates", rates(first, 10.0, 100.0)),
                    ("--step-seconds", step.into()),
                    ("--stop-below", "0.9".into()),
                ],
                w3_subscribers,
            );
            if let Some(top) = best(&steps) {
                eprintln!(
                    "{system} W3 run {r}: {} deliveries/s",
                    human(top.delivered_per_s)
                );
                f.w3.push(top.clone());
            }
        }
        all.push((system.clone(), f));
    }
    let report = render(&args, runs, &date, &all, &fanout_sizes);
    std::fs::write(&args.out, &report).expect("results written");
    println!("{report}");
}

/// W1: `n` connections held idle over as many workers as the fd limit needs. Returns the
/// server's RSS growth per connection and the connect rate (connections/s).
fn idle(target: &Target, n: usize, hold: &str) -> (f64, f64) {
    let before = target.server.rss();
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
        peak = peak.max(target.server.rss());
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
fn render(
    args: &RunArgs,
    runs: usize,
    date: &str,
    all: &[(String, Figures)],
    sizes: &[usize],
) -> String {
    let mut out = String::new();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let _ = writeln!(out, "# Benchmark results\n\nProduced by `{command}` on {date}; {cpus} cores, each server pinned to core 0 (`taskset`), the load generator (one process, one thread) on core 1. {runs} run(s) per figure: median (min–max) over runs. Each step of a stepped load lasts {} s.\n", if args.quick { 1 } else { 2 });
    let rookery = all.iter().find(|(s, _)| s == "rookery").map(|(_, f)| f);
    let median_of =
        |steps: &[Step]| median_range(steps.iter().map(|s| s.delivered_per_s).collect()).0;
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
    let largest = sizes.last().copied().unwrap_or(0);
    let _ = writeln!(out, "\n## W4 slow consumers: W2 at N = {largest}, half the saturated rate, 1 % of subscribers never reading\n\n| system | reading subscribers' rate vs W2 | server RSS growth during the run |\n|---|---|---|");
    for (system, f) in all {
        let keep = fmt_mr(f.w4.iter().map(|w| w.0).collect(), "%").1;
        let growth = fmt_mr(f.w4.iter().map(|w| w.1 / 1e6).collect(), "MB").1;
        let _ = writeln!(out, "| {system} | {keep} | {growth} |");
    }
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
    out
}
