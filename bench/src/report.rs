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

/// Sockets one worker process opens at most (the fd limit here is 20,000).
const PER_WORKER: usize = 9_000;

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

/// Runs a load over as many worker processes as its sockets need; sums their results.
fn load(target: &Target, args: &[(&str, String)], subscribers: usize) -> Value {
    let workers = subscribers.div_ceil(PER_WORKER).max(1);
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..workers)
        .map(|w| {
            let share = subscribers / workers + usize::from(w < subscribers % workers);
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", "1"]).arg(&exe).arg("worker");
            cmd.args(["--system", &target.name, "--addr", &target.server.addr]);
            cmd.args(["--subscribers", &share.to_string()]);
            for (k, v) in args {
                // Only the first worker publishes.
                if *k == "--publishers" && w > 0 {
                    cmd.args([*k, "0"]);
                } else {
                    cmd.args([*k, v.as_str()]);
                }
            }
            cmd.stdout(std::process::Stdio::piped());
            cmd.spawn().expect("worker starts")
        })
        .collect();
    let mut total = serde_json::json!({"connected":0,"failed":0,"sent":0,"delivered":0,"p50_us":0,"p99_us":0,"p999_us":0,"connect_secs":0.0});
    for child in children {
        let out = child.wait_with_output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        for k in ["connected", "failed", "sent", "delivered"] {
            total[k] = (total[k].as_u64().unwrap_or(0) + v[k].as_u64().unwrap_or(0)).into();
        }
        for k in ["p50_us", "p99_us", "p999_us"] {
            total[k] = total[k]
                .as_u64()
                .unwrap_or(0)
                .max(v[k].as_u64().unwrap_or(0))
                .into();
        }
        total["connect_secs"] = total["connect_secs"]
            .as_f64()
            .unwrap_or(0.0)
            .max(v["connect_secs"].as_f64().unwrap_or(0.0))
            .into();
    }
    total
}

/// One fanout measurement at `rate` messages/s to `n` subscribers.
struct Step {
    delivered_per_s: f64,
    expected_per_s: f64,
    p50: u64,
    p99: u64,
    p999: u64,
    cpu_per_delivery_ns: f64,
}

fn fanout(target: &Target, n: usize, rate: u64, seconds: u64, slow: f64, room: &str) -> Step {
    let cpu = target.server.cpu_seconds();
    let v = load(
        target,
        &[
            ("--prefix", room.into()),
            ("--publishers", "1".into()),
            ("--rate", rate.to_string()),
            ("--seconds", seconds.to_string()),
            ("--slow-percent", slow.to_string()),
        ],
        n,
    );
    let cpu = target.server.cpu_seconds() - cpu;
    let delivered = v["delivered"].as_f64().unwrap_or(0.0);
    let reading = n as f64 * (1.0 - slow / 100.0);
    Step {
        delivered_per_s: delivered / seconds as f64,
        expected_per_s: v["sent"].as_f64().unwrap_or(0.0) * reading / seconds as f64,
        p50: v["p50_us"].as_u64().unwrap_or(0),
        p99: v["p99_us"].as_u64().unwrap_or(0),
        p999: v["p999_us"].as_u64().unwrap_or(0),
        cpu_per_delivery_ns: if delivered > 0.0 {
            cpu * 1e9 / delivered
        } else {
            0.0
        },
    }
}

/// Steps the publish rate up until deliveries stop keeping up; the best deliveries/s.
fn saturate(target: &Target, n: usize, seconds: u64, room: &str) -> (f64, f64) {
    let mut best = (0.0f64, 0.0f64);
    let mut deliveries = 50_000.0;
    loop {
        let rate = ((deliveries / n as f64) as u64).max(1);
        let step = fanout(target, n, rate, seconds, 0.0, room);
        if step.delivered_per_s > best.0 {
            best = (step.delivered_per_s, step.cpu_per_delivery_ns);
        }
        let kept_up = step.delivered_per_s >= 0.9 * step.expected_per_s;
        if !kept_up || deliveries > 20_000_000.0 {
            return best;
        }
        deliveries *= 2.0;
    }
}

fn median_range(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn fmt_mr(v: Vec<f64>, unit: &str) -> (f64, String) {
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

pub fn run(args: RunArgs) {
    let runs = if args.quick { 1 } else { args.runs.max(1) };
    let seconds = if args.quick { 1 } else { 4 };
    let idle_hold = if args.quick { "2" } else { "4" };
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
    let mut report = String::new();
    let date = Command::new("date")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _ = writeln!(report, "# Benchmark results\n\nProduced by `{}` on {date}; {cpus} cores, server pinned to core 0 (`taskset`), load generator on core 1. {runs} run(s) per figure: median (min–max).\n", std::env::args().collect::<Vec<_>>().join(" "));

    let mut w2: Vec<(String, usize, f64, String, String)> = Vec::new();
    let mut lat: Vec<(String, usize, String)> = Vec::new();
    let mut w4: Vec<(String, String)> = Vec::new();
    let mut w1: Vec<(String, usize, String)> = Vec::new();
    let mut w3: Vec<(String, f64, String)> = Vec::new();
    for system in &args.systems {
        for &n in &fanout_sizes {
            let mut rates = Vec::new();
            let mut cpus_ns = Vec::new();
            for r in 0..runs {
                let target = start(system, &args.bin_dir);
                let (best, cpu) = saturate(&target, n, seconds, &format!("w2-{r}"));
                rates.push(best);
                cpus_ns.push(cpu);
            }
            let (median, text) = fmt_mr(rates, "deliveries/s");
            let (_, cpu_text) = fmt_mr(cpus_ns, "ns");
            eprintln!("{system} W2 n={n}: {text}");
            w2.push((system.clone(), n, median, text, cpu_text));
            // Latency at half the saturated rate, and W4 at that rate with 1 % not reading.
            let rate = ((median / 2.0) / n as f64).max(1.0) as u64;
            let (mut p50, mut p99, mut p999, mut keep) = (vec![], vec![], vec![], vec![]);
            for r in 0..runs {
                let target = start(system, &args.bin_dir);
                let s = fanout(&target, n, rate, seconds, 0.0, &format!("lat-{r}"));
                p50.push(s.p50 as f64 / 1000.0);
                p99.push(s.p99 as f64 / 1000.0);
                p999.push(s.p999 as f64 / 1000.0);
                if n >= 1_000 {
                    let base = s.delivered_per_s / n as f64;
                    let slow = fanout(&target, n, rate, seconds, 1.0, &format!("w4-{r}"));
                    let per_reader = slow.delivered_per_s / (n as f64 * 0.99);
                    keep.push(100.0 * per_reader / base.max(1e-9));
                }
            }
            let line = format!(
                "p50 {} ms, p99 {} ms, p999 {} ms",
                fmt_mr(p50, "").1,
                fmt_mr(p99, "").1,
                fmt_mr(p999, "").1
            );
            lat.push((system.clone(), n, line));
            if !keep.is_empty() && n == *fanout_sizes.last().unwrap() {
                w4.push((system.clone(), fmt_mr(keep, "%").1));
            }
        }
        for &n in &idle_sizes {
            let mut per = Vec::new();
            for _ in 0..runs {
                let target = start(system, &args.bin_dir);
                let before = target.server.rss();
                let exe = std::env::current_exe().unwrap();
                let workers = n.div_ceil(PER_WORKER);
                let mut handles: Vec<_> = (0..workers)
                    .map(|w| {
                        let share = n / workers + usize::from(w < n % workers);
                        Command::new("taskset")
                            .args(["-c", "1"])
                            .arg(&exe)
                            .args(["worker", "--system", system, "--addr", &target.server.addr])
                            .args(["--subscribers", &share.to_string(), "--seconds", idle_hold])
                            .stdout(std::process::Stdio::null())
                            .spawn()
                            .unwrap()
                    })
                    .collect();
                // The workers hold their connections idle for a few seconds once all are
                // up: the peak RSS until they exit is the server with N idle connections.
                let mut peak = 0;
                while handles
                    .iter_mut()
                    .any(|h| h.try_wait().ok().flatten().is_none())
                {
                    peak = peak.max(target.server.rss());
                    std::thread::sleep(Duration::from_millis(200));
                }
                per.push(peak.saturating_sub(before) as f64 / n as f64);
            }
            let (_, text) = fmt_mr(per, "B/conn");
            eprintln!("{system} W1 n={n}: {text}");
            w1.push((system.clone(), n, text));
        }
        let mut w3_rates = Vec::new();
        let n = if args.quick { 2_000 } else { 10_000 };
        let rooms = n / 10;
        for r in 0..runs {
            let target = start(system, &args.bin_dir);
            let cpu = target.server.cpu_seconds();
            let v = load(
                &target,
                &[
                    ("--prefix", format!("w3-{r}")),
                    ("--rooms", rooms.to_string()),
                    ("--publishers", "100".into()),
                    ("--rate", "200".into()),
                    ("--seconds", seconds.to_string()),
                ],
                n,
            );
            let _ = target.server.cpu_seconds() - cpu;
            w3_rates.push(v["delivered"].as_f64().unwrap_or(0.0) / seconds as f64);
        }
        let (m, text) = fmt_mr(w3_rates, "deliveries/s");
        eprintln!("{system} W3: {text}");
        w3.push((system.clone(), m, text));
    }

    let baseline = |n: usize| {
        w2.iter()
            .find(|r| r.0 == "rookery" && r.1 == n)
            .map(|r| r.2)
    };
    let _ = writeln!(report, "## W2 fanout, 1 publisher → N subscribers, 128-byte payloads, rate stepped to saturation\n\n| system | N | saturated deliveries/s | Rookery ÷ system | server CPU per delivery |\n|---|---|---|---|---|");
    for (s, n, m, text, cpu) in &w2 {
        let ratio = baseline(*n).map_or("–".into(), |b| format!("{:.2}×", b / m.max(1e-9)));
        let _ = writeln!(report, "| {s} | {n} | {text} | {ratio} | {cpu} |");
    }
    let _ = writeln!(report, "\n## W2 latency at half of each system's saturated rate (publish → receive)\n\n| system | N | latency |\n|---|---|---|");
    for (s, n, line) in &lat {
        let _ = writeln!(report, "| {s} | {n} | {line} |");
    }
    let _ = writeln!(report, "\n## W4: the same with 1 % of subscribers not reading\n\n| system | reading subscribers' rate vs W2 |\n|---|---|");
    for (s, text) in &w4 {
        let _ = writeln!(report, "| {s} | {text} |");
    }
    let _ = writeln!(report, "\n## W1 idle connections: server memory per connection (RSS delta ÷ N)\n\n| system | N | memory |\n|---|---|---|");
    for (s, n, text) in &w1 {
        let _ = writeln!(report, "| {s} | {n} | {text} |");
    }
    let rook3 = w3.iter().find(|r| r.0 == "rookery").map(|r| r.1);
    let _ = writeln!(report, "\n## W3 many rooms: N/10 rooms × 10 subscribers, 100 publishers at 200 msg/s each\n\n| system | deliveries/s | Rookery ÷ system |\n|---|---|---|");
    for (s, m, text) in &w3 {
        let ratio = rook3.map_or("–".into(), |b| format!("{:.2}×", b / m.max(1e-9)));
        let _ = writeln!(report, "| {s} | {text} | {ratio} |");
    }
    std::fs::write(&args.out, &report).expect("results written");
    println!("{report}");
}
