//! `rookery-bench`: a WebSocket load generator that measures Rookery and its peers side by
//! side. `worker` runs one process's share of a load and prints JSON; `run` starts each
//! system, spreads loads over workers (one process holds at most ~19,990 sockets here),
//! and writes a results table. See `bench/README.md`.

use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use rookery_bench::load::{self, Counts, System};
use rookery_bench::report;
use std::sync::Arc;
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
    /// The comparison: every system, every workload, repeated; writes the results.
    Run(report::RunArgs),
}

#[derive(clap::Args, Clone, Debug)]
pub struct WorkerArgs {
    #[arg(long)]
    system: String,
    #[arg(long)]
    addr: String,
    /// Rooms `<prefix>-0` … `<prefix>-(rooms-1)`; subscribers spread over them.
    #[arg(long, default_value = "bench")]
    prefix: String,
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Publisher connections (each in a random room), publishing `rate` messages/s each.
    #[arg(long, default_value_t = 0)]
    publishers: usize,
    #[arg(long, default_value_t = 100)]
    rate: u64,
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Seconds of publishing after every connection is up.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Share of subscribers that never read (W4), in percent.
    #[arg(long, default_value_t = 0.0)]
    slow_percent: f64,
    /// Connections opened at once.
    #[arg(long, default_value_t = 200)]
    wave: usize,
}

async fn worker(args: WorkerArgs) {
    let system = System::parse(&args.system);
    let started = Instant::now();
    let mut subscribers = Vec::with_capacity(args.subscribers);
    let mut failed = 0usize;
    for chunk in (0..args.subscribers)
        .collect::<Vec<_>>()
        .chunks(args.wave.max(1))
    {
        let connecting: Vec<_> = chunk
            .iter()
            .map(|i| {
                let room = format!("{}-{}", args.prefix, i % args.rooms);
                let addr = args.addr.clone();
                tokio::spawn(async move { load::connect(system, &addr, &room).await })
            })
            .collect();
        for c in connecting {
            match c.await.ok().flatten() {
                Some(ws) => subscribers.push(ws),
                None => failed += 1,
            }
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let mut publishers = Vec::new();
    for i in 0..args.publishers {
        let room = format!("{}-{}", args.prefix, (i * 7919) % args.rooms);
        if let Some(ws) = load::connect(system, &args.addr, &room).await {
            publishers.push(ws);
        }
    }
    let until = Instant::now() + Duration::from_secs(args.seconds) + Duration::from_millis(500);
    let counts = Arc::new(Counts::default());
    let histogram = Arc::new(std::sync::Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
    ));
    let slow_every = if args.slow_percent > 0.0 {
        (100.0 / args.slow_percent).round().max(1.0) as usize
    } else {
        usize::MAX
    };
    let mut tasks = Vec::new();
    for (i, ws) in subscribers.into_iter().enumerate() {
        let reading = slow_every == usize::MAX || i % slow_every != slow_every - 1;
        tasks.push(tokio::spawn(load::subscribe(
            ws,
            counts.clone(),
            histogram.clone(),
            until,
            reading,
        )));
    }
    let publish_until = until - Duration::from_millis(500);
    let publishing: Vec<_> = publishers
        .into_iter()
        .map(|ws| tokio::spawn(load::publish(ws, args.rate, args.size, publish_until)))
        .collect();
    let mut sent = 0;
    for p in publishing {
        sent += p.await.unwrap_or(0);
    }
    for t in tasks {
        let _ = t.await;
    }
    let h = histogram.lock().unwrap();
    let result = serde_json::json!({
        "connected": args.subscribers - failed,
        "failed": failed,
        "connect_secs": connect_secs,
        "sent": sent,
        "delivered": counts.delivered.load(std::sync::atomic::Ordering::Relaxed),
        "seconds": args.seconds,
        "p50_us": h.value_at_quantile(0.5),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "samples": h.len(),
    });
    println!("{result}");
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Worker(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(worker(args));
        }
        Command::Run(args) => report::run(args),
    }
}
