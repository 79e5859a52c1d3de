//! `rookery-bench`: a WebSocket load generator that measures Rookery and its peers side by
//! side. `worker` runs one process's share of a load and prints JSON; `run` starts each
//! system, spreads loads over workers (one process holds at most ~19,990 sockets here),
//! and writes a results table. See `bench/README.md`.

use clap::{Parser, Subcommand};
use rookery_bench::load::{self, System, Tally};
use rookery_bench::{reader, report};

/// A subscriber of a stepped load, by how it reads (`--reader`).
enum Subscriber {
    Raw(reader::RawConn),
    Tungstenite(Box<load::Ws>),
}

/// A publisher: a plain socket written the raw reader's way (`--reader raw`, plain TCP), or
/// tokio-tungstenite's (TLS, `--reader tungstenite`).
enum Publisher {
    Raw(reader::RawConn),
    Tungstenite(Box<load::Ws>),
}
use std::rc::Rc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One process's share of a load; prints a JSON result line.
    Worker(WorkerArgs),
    /// W5: connections sending durable writes (Pact `counter`/`poll` with a `ref`),
    /// counting the `ok`s; prints `start`, `end` and a JSON result line.
    Writer(WriterArgs),
    /// The comparison: every system, every workload, repeated; writes the results.
    Run(report::RunArgs),
}

#[derive(clap::Args, Clone, Debug)]
pub struct WorkerArgs {
    #[arg(long)]
    system: String,
    #[arg(long)]
    addr: String,
    /// More addresses of the same system (other nodes sharing its rooms): subscribers
    /// spread over `--addr` and these, so that each room has members on every one
    /// (subscriber `i` of room `i mod rooms` on address `(i / rooms) mod count`);
    /// publishers stay on `--addr`.
    #[arg(long, value_delimiter = ',')]
    sub_addrs: Vec<String>,
    /// Rooms `<prefix>-0` … `<prefix>-(rooms-1)`; subscribers spread over them.
    #[arg(long, default_value = "bench")]
    prefix: String,
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Publisher connections, each in its own room (publisher `i` in room `i·7919 mod rooms`).
    #[arg(long, default_value_t = 0)]
    publishers: usize,
    /// The schedule: each publisher's messages/s in each step (`0` holds the connections
    /// idle for a step).
    #[arg(long, value_delimiter = ',', default_value = "100")]
    rates: Vec<f64>,
    /// Seconds per step.
    #[arg(long, default_value_t = 2.0)]
    step_seconds: f64,
    /// Saturation: stop once a step's messages reached fewer than this share of their
    /// recipients (judged a step later, so slow deliveries count) and the step after it
    /// delivered no more (< 1.1×) than the best before; 0 runs every step.
    #[arg(long, default_value_t = 0.0)]
    stop_below: f64,
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Share of subscribers that never read (W4), in percent.
    #[arg(long, default_value_t = 0.0)]
    slow_percent: f64,
    /// Connections opened at once.
    #[arg(long, default_value_t = 200)]
    wave: usize,
    /// How subscribers read: `raw` (one epoll set, frames followed by their headers; the
    /// default: cheap enough not to be the ceiling) or `tungstenite` (a tokio-tungstenite
    /// task per subscriber, as before; its ceiling is near 3 M deliveries/s here).
    #[arg(long, default_value = "raw")]
    reader: String,
    /// Connect with `wss://`, trusting the PEM certificate in this file.
    #[arg(long)]
    tls_ca: Option<String>,
}

#[derive(clap::Args, Clone, Debug)]
pub struct WriterArgs {
    #[arg(long, default_value = "rookery")]
    system: String,
    #[arg(long)]
    addr: String,
    /// More addresses of the same system (other nodes sharing its rooms): connections
    /// spread over `--addr` and these (connection `i` on address `i mod count`).
    #[arg(long, value_delimiter = ',')]
    more_addrs: Vec<String>,
    /// Rooms `<prefix>-0` … `<prefix>-(rooms-1)`; connection `i` is in room `i mod rooms`.
    #[arg(long, default_value = "w5")]
    prefix: String,
    #[arg(long, default_value_t = 20)]
    rooms: usize,
    #[arg(long, default_value_t = 200)]
    connections: usize,
    /// Most writes per connection waiting for their `ok`.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Offered writes/s over all connections; 0: each connection keeps its window full.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// What each connection sends, in turn: `counter` (+1), `poll` (a vote that moves),
    /// `chat` (128 bytes, W2's payload).
    #[arg(long, value_delimiter = ',', default_value = "counter,poll")]
    kinds: Vec<String>,
    /// Seconds of writes before the measured window (not counted).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Connections opened at once.
    #[arg(long, default_value_t = 200)]
    wave: usize,
    /// Connect with `wss://`, trusting the PEM certificate in this file.
    #[arg(long)]
    tls_ca: Option<String>,
}

/// CPU seconds (user + system) this process used so far.
fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// W5's worker: connects, writes (warm-up, then the measured window), prints `start` and
/// `end` at the window's edges (the driver samples the server's CPU there), then a JSON
/// result line.
async fn writer(args: WriterArgs) {
    if let Some(ca) = &args.tls_ca {
        load::use_tls(ca);
    }
    let system = System::parse(&args.system);
    let kinds: Rc<[load::WriteKind]> = args
        .kinds
        .iter()
        .map(|k| load::WriteKind::parse(k).unwrap_or_else(|| panic!("unknown write kind {k}")))
        .collect();
    let started = Instant::now();
    let mut connections = Vec::with_capacity(args.connections);
    let mut failed = 0usize;
    let rooms = args.rooms.max(1);
    let addrs: Vec<String> = std::iter::once(args.addr.clone())
        .chain(args.more_addrs.iter().cloned())
        .collect();
    for chunk in (0..args.connections)
        .collect::<Vec<_>>()
        .chunks(args.wave.max(1))
    {
        let connecting: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let url_room = format!("{}-{}", args.prefix, i % rooms);
                let addr = addrs[i % addrs.len()].clone();
                tokio::task::spawn_local(async move {
                    load::connect_for_writes(system, &addr, &url_room).await
                })
            })
            .collect();
        for c in connecting {
            match c.await.ok().flatten() {
                Some(ws) => connections.push(ws),
                None => failed += 1,
            }
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let begin = Instant::now() + Duration::from_millis(100);
    let measure_from = begin + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.seconds);
    let writes = Rc::new(load::Writes::new(begin, measure_from, end));
    let count = connections.len().max(1);
    let per_connection = args.rate / count as f64;
    let mut tasks = Vec::new();
    for (i, ws) in connections.into_iter().enumerate() {
        let task = load::write(
            ws,
            kinds.clone(),
            args.window,
            per_connection,
            i as f64 / count as f64,
            writes.clone(),
        );
        tasks.push(tokio::task::spawn_local(task));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    println!("start");
    let cpu_from = own_cpu_seconds();
    tokio::time::sleep_until(end.into()).await;
    println!("end");
    let client_cpu = own_cpu_seconds() - cpu_from;
    for t in tasks {
        let _ = t.await;
    }
    let h = writes.latency.borrow();
    let result = serde_json::json!({
        "connected": args.connections - failed,
        "failed": failed,
        "connect_secs": connect_secs,
        "seconds": args.seconds,
        "sent": writes.sent.get(),
        "acked": writes.acked.get(),
        "sent_total": writes.sent_total.get(),
        "acked_total": writes.acked_total.get(),
        "errors": writes.errors.get(),
        "first_error": writes.first_error.borrow().clone(),
        "broken": writes.broken.get(),
        "p50_us": h.value_at_quantile(0.5),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
        "mean_us": h.mean(),
        "client_cpu_s": client_cpu,
    });
    println!("{result}");
}

/// Connects, runs the schedule, and prints `start`, a `step K` line as each step ends
/// (the driver samples the server's CPU time at those lines), then a JSON result line.
async fn worker(args: WorkerArgs) {
    if let Some(ca) = &args.tls_ca {
        load::use_tls(ca);
    }
    let system = System::parse(&args.system);
    // The raw reader speaks plain TCP only: over TLS subscribers read with tungstenite.
    let raw = match args.reader.as_str() {
        "raw" => args.tls_ca.is_none(),
        "tungstenite" => false,
        other => panic!("unknown --reader {other} (raw or tungstenite)"),
    };
    let addrs: Vec<String> = std::iter::once(args.addr.clone())
        .chain(args.sub_addrs.iter().cloned())
        .collect();
    let started = Instant::now();
    let mut subscribers: Vec<(usize, Subscriber)> = Vec::with_capacity(args.subscribers);
    let mut failed = 0usize;
    for chunk in (0..args.subscribers)
        .collect::<Vec<_>>()
        .chunks(args.wave.max(1))
    {
        let connecting: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let room = i % args.rooms;
                let url_room = format!("{}-{room}", args.prefix);
                let addr = addrs[(i / args.rooms) % addrs.len()].clone();
                tokio::task::spawn_local(async move {
                    let subscriber = if raw {
                        reader::connect(system, &addr, &url_room)
                            .await
                            .map(Subscriber::Raw)
                    } else {
                        load::connect(system, &addr, &url_room)
                            .await
                            .map(|ws| Subscriber::Tungstenite(Box::new(ws)))
                    };
                    subscriber.map(|s| (room, s))
                })
            })
            .collect();
        for c in connecting {
            match c.await.ok().flatten() {
                Some(s) => subscribers.push(s),
                None => failed += 1,
            }
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let slow_every = if args.slow_percent > 0.0 {
        (100.0 / args.slow_percent).round().max(1.0) as usize
    } else {
        usize::MAX
    };
    let reading = |i: usize| slow_every == usize::MAX || i % slow_every != slow_every - 1;
    let mut members = vec![0usize; args.rooms];
    for (i, (room, _)) in subscribers.iter().enumerate() {
        if reading(i) {
            members[*room] += 1;
        }
    }
    let mut publishers = Vec::new();
    for i in 0..args.publishers {
        let room = (i * 7919) % args.rooms;
        let url_room = format!("{}-{room}", args.prefix);
        let publisher = if raw {
            reader::connect(system, &args.addr, &url_room)
                .await
                .map(Publisher::Raw)
        } else {
            load::connect_publisher(system, &args.addr, &url_room)
                .await
                .map(|ws| Publisher::Tungstenite(Box::new(ws)))
        };
        if let Some(publisher) = publisher {
            publishers.push((room, publisher));
        }
    }

    let steps = args.rates.len();
    let step_us = (args.step_seconds * 1e6) as u64;
    let tally = Rc::new(Tally::new(steps, load::now_us() + 100_000, step_us));
    let (done_tx, done) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let mut raw_readers = Vec::new();
    // W4's slow subscribers stay open, never read, until the end.
    let mut idle = Vec::new();
    for (i, (_, subscriber)) in subscribers.into_iter().enumerate() {
        match subscriber {
            Subscriber::Raw(conn) if reading(i) => raw_readers.push(conn),
            Subscriber::Raw(conn) => idle.push(conn),
            Subscriber::Tungstenite(ws) => {
                let task = load::subscribe(*ws, tally.clone(), done.clone(), reading(i));
                tasks.push(tokio::task::spawn_local(task));
            }
        }
    }
    if !raw_readers.is_empty() {
        let task = reader::read_all(raw_readers, tally.clone(), done.clone());
        tasks.push(tokio::task::spawn_local(task));
    }
    for (room, publisher) in publishers {
        let (rates, members) = (args.rates.clone(), members[room] as f64);
        match publisher {
            Publisher::Raw(conn) => {
                let task = reader::publish(conn, rates, args.size, members, tally.clone());
                tokio::task::spawn_local(task);
            }
            Publisher::Tungstenite(ws) => {
                let task = load::publish(*ws, rates, args.size, members, tally.clone());
                tokio::task::spawn_local(task);
            }
        }
    }
    let wait_for =
        |us: u64| tokio::time::sleep(Duration::from_micros(us.saturating_sub(load::now_us())));
    wait_for(tally.start_us).await;
    println!("start");
    let mut ran = 0;
    for step in 0..steps {
        wait_for(tally.start_us + (step as u64 + 1) * step_us).await;
        println!("step {step}");
        ran = step + 1;
        if args.stop_below > 0.0 && step >= 1 {
            let judged = step - 1;
            let expected = tally.expected[judged].get();
            let behind = expected > 0.0
                && (tally.delivered_by_send[judged].get() as f64) < args.stop_below * expected;
            let best_before = (0..step)
                .map(|k| tally.delivered[k].get())
                .max()
                .unwrap_or(0);
            let improving = tally.delivered[step].get() as f64 >= 1.1 * best_before as f64;
            if behind && !improving {
                tally.stop.set(true);
                break;
            }
        }
    }
    tally.stop.set(true);
    // A delivery counts in the step it arrives in; give frames in flight a moment to land
    // (they count for no step), then end every subscriber.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = done_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    drop(idle);
    let latency = tally.latency.borrow();
    let results: Vec<_> = (0..ran)
        .map(|k| {
            let h = &latency[k];
            serde_json::json!({
                "rate": args.rates[k],
                "sent": tally.sent[k].get(),
                "delivered": tally.delivered[k].get(),
                "delivered_by_send": tally.delivered_by_send[k].get(),
                "expected": tally.expected[k].get(),
                "p50_us": h.value_at_quantile(0.5),
                "p99_us": h.value_at_quantile(0.99),
                "p999_us": h.value_at_quantile(0.999),
                "samples": h.len(),
            })
        })
        .collect();
    let result = serde_json::json!({
        "connected": args.subscribers - failed,
        "failed": failed,
        "connect_secs": connect_secs,
        "step_seconds": args.step_seconds,
        "steps": results,
    });
    println!("{result}");
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Worker(args) => {
            // One thread (the worker is pinned to one core): tasks share plain cells.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            tokio::task::LocalSet::new().block_on(&runtime, worker(args));
        }
        Command::Writer(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            tokio::task::LocalSet::new().block_on(&runtime, writer(args));
        }
        Command::Run(args) => report::run(args),
    }
}
