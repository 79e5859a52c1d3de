//! Soak test: thousands of Pact connections join and leave rooms on every core for a few
//! minutes, voting, counting, chatting, logging in and sending malformed frames, and leave
//! cleanly or abruptly. At the end of each round every room's state (presence, poll tallies,
//! counter values) must equal what the clients' own record says, connections and rooms
//! must be back to zero, and memory must not grow from one round to the next.
//!
//! `cargo run --release -p rookery-bench --bin soak -- --help`

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use rookery_bench::{http, metric, DataDir, ServerProcess};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Debug)]
struct Args {
    /// The server binary.
    #[arg(long, default_value = "target/release/rookery")]
    server: String,
    /// Server cores.
    #[arg(long, default_value_t = 2)]
    cores: usize,
    /// Rounds; memory after the last must match memory after the first.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Seconds of load per round.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Connections open at once.
    #[arg(long, default_value_t = 2000)]
    connections: usize,
    /// Rooms.
    #[arg(long, default_value_t = 40)]
    rooms: usize,
    /// The server's store: `memory`, or `disk` in a fresh directory under the system's
    /// temporary directory (removed at the end), never the server's default `./rookery-data`.
    /// With `disk` the server's memory includes fjall's memtable (up to 64 MiB before a
    /// flush) and block cache, which fill over the first minutes: short rounds see them as
    /// growth.
    #[arg(long, default_value = "memory", value_parser = ["memory", "disk"])]
    store: String,
}

/// What the clients know they did (only operations the server acknowledged).
#[derive(Default)]
struct Record {
    counters: HashMap<String, i64>,
    /// room → user → answer of the durable poll `p`.
    votes: HashMap<String, HashMap<String, String>>,
}

#[derive(Default)]
struct Tally {
    sessions: AtomicU64,
    abrupt: AtomicU64,
    operations: AtomicU64,
    malformed: AtomicU64,
    failures: AtomicU64,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON message that is not a heartbeat.
async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .ok()??;
        match message.ok()? {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).ok()?;
                if v["type"] != "ping" {
                    return Some(v);
                }
            }
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

/// Sends `message` with `ref` and waits for the reply carrying it.
async fn call(ws: &mut Ws, mut message: Value, reference: u64) -> Option<Value> {
    message["ref"] = json!(reference);
    ws.send(Message::text(message.to_string())).await.ok()?;
    loop {
        let reply = next_json(ws).await?;
        if reply["ref"] == reference {
            return Some(reply);
        }
    }
}

async fn session(addr: String, room: String, record: Arc<Mutex<Record>>, tally: Arc<Tally>) {
    let url = format!("ws://{addr}/websocket?room={room}");
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
        tally.failures.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let ok = async {
        next_json(&mut ws).await?; // config
        let profile = next_json(&mut ws).await?;
        let id = profile["data"]["id"].as_str()?.to_owned();
        let actions = rand::thread_rng().gen_range(1..20);
        for reference in 0..actions {
            let choice = rand::thread_rng().gen_range(0..6);
            match choice {
                0 => {
                    let answer = ["a", "b", "c"][rand::thread_rng().gen_range(0..3)];
                    let reply = call(
                        &mut ws,
                        json!({"type":"poll","data":{"id":"p","answer":answer}}),
                        reference,
                    )
                    .await?;
                    if reply["type"] == "ok" {
                        record
                            .lock()
                            .unwrap()
                            .votes
                            .entry(room.clone())
                            .or_default()
                            .insert(id.clone(), answer.to_owned());
                    }
                }
                1 => {
                    let answer = ["x", "y"][rand::thread_rng().gen_range(0..2)];
                    call(
                        &mut ws,
                        json!({"type":"ephemeralPoll","data":{"id":"e","answer":answer}}),
                        reference,
                    )
                    .await?;
                }
                2 => {
                    let delta: i64 = rand::thread_rng().gen_range(-5..=5);
                    let reply = call(
                        &mut ws,
                        json!({"type":"counter","data":{"id":"c","value":delta}}),
                        reference,
                    )
                    .await?;
                    if reply["type"] == "ok" {
                        *record
                            .lock()
                            .unwrap()
                            .counters
                            .entry(room.clone())
                            .or_default() += delta;
                    }
                }
                3 => {
                    call(&mut ws, json!({"type":"chat","data":"soak"}), reference).await?;
                }
                4 => {
                    call(
                        &mut ws,
                        json!({"type":"login","data":{"n":reference}}),
                        reference,
                    )
                    .await?;
                }
                _ => {
                    ws.send(Message::text("{malformed")).await.ok()?;
                    let reply = next_json(&mut ws).await?;
                    if reply["type"] != "error" {
                        return None;
                    }
                    tally.malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
            tally.operations.fetch_add(1, Ordering::Relaxed);
            let pause = rand::thread_rng().gen_range(0..150);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        Some(())
    }
    .await;
    if ok.is_none() {
        tally.failures.fetch_add(1, Ordering::Relaxed);
    }
    tally.sessions.fetch_add(1, Ordering::Relaxed);
    if rand::thread_rng().gen_bool(0.5) {
        // Abrupt: the TCP connection just goes away.
        tally.abrupt.fetch_add(1, Ordering::Relaxed);
        drop(ws);
    } else {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    }
}

async fn round(args: &Args, addr: &str, record: &Arc<Mutex<Record>>) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let slots = Arc::new(tokio::sync::Semaphore::new(args.connections));
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    while Instant::now() < end {
        let permit = slots.clone().acquire_owned().await.unwrap();
        let room = format!("soak-{}", rand::thread_rng().gen_range(0..args.rooms));
        let (addr, record, tally) = (addr.to_owned(), record.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            session(addr, room, record, tally).await;
            drop(permit);
        }));
        if tasks.len().is_multiple_of(64) {
            tasks.retain(|t| !t.is_finished());
            // Connect in waves: the listen backlog and ephemeral ports are finite.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    tally
}

/// Checks every room against the record; returns the problems found.
fn verify(args: &Args, addr: &str, record: &Record) -> Vec<String> {
    let mut problems = Vec::new();
    for i in 0..args.rooms {
        let room = format!("soak-{i}");
        let (_, body) = http(addr, "GET", &format!("/api/rooms/{room}"), "");
        let details: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if details["count"] != 0 {
            problems.push(format!("{room}: {} members left", details["count"]));
        }
        let counter = record.counters.get(&room).copied().unwrap_or(0);
        let got = details["counters"]["c"].as_i64().unwrap_or(0);
        if got != counter {
            problems.push(format!("{room}: counter {got}, clients say {counter}"));
        }
        let mut expected: HashMap<String, u64> = HashMap::new();
        for answer in record.votes.get(&room).into_iter().flat_map(|v| v.values()) {
            *expected.entry(answer.clone()).or_default() += 1;
        }
        let got: HashMap<String, u64> = details["polls"]["p"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        if got != expected {
            problems.push(format!("{room}: poll {got:?}, clients say {expected:?}"));
        }
        if details["ephemeralPolls"] != json!({}) {
            problems.push(format!(
                "{room}: ephemeral votes left: {}",
                details["ephemeralPolls"]
            ));
        }
    }
    problems
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let mut server_args: Vec<String> = vec![
        "--cores".into(),
        args.cores.to_string(),
        "--max-message-rate".into(),
        "0".into(),
        "--store".into(),
        args.store.clone(),
    ];
    let data = (args.store == "disk").then(|| DataDir::new(&std::env::temp_dir()));
    if let Some(data) = &data {
        server_args.extend(["--data-dir".into(), data.path.display().to_string()]);
    }
    let server = ServerProcess::start(&args.server, &server_args);
    let addr = server.addr.clone();
    let record = Arc::new(Mutex::new(Record::default()));
    let baseline = server.rss();
    println!("soak: {} rounds of {} s, {} connections at once, {} rooms, {} cores, {} store; server RSS at start {} KiB",
        args.rounds, args.seconds, args.connections, args.rooms, args.cores, args.store, baseline / 1024);
    let mut after_rounds = Vec::new();
    let mut failed = false;
    for r in 1..=args.rounds {
        let started = Instant::now();
        let tally = round(&args, &addr, &record).await;
        // Let the server notice every disconnect.
        let deadline = Instant::now() + Duration::from_secs(30);
        while metric(&addr, "rookery_connections").unwrap_or(1.0) > 0.0 && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let connections = metric(&addr, "rookery_connections").unwrap_or(-1.0);
        let rooms = metric(&addr, "rookery_rooms").unwrap_or(-1.0);
        let problems = verify(&args, &addr, &record.lock().unwrap());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = server.rss();
        after_rounds.push(rss);
        println!(
            "round {r}: {:.0} s, {} sessions ({} abrupt), {} operations, {} malformed frames answered, {} client failures; \
             after: connections {connections}, rooms {rooms}, server RSS {} KiB, problems {}",
            started.elapsed().as_secs_f64(),
            tally.sessions.load(Ordering::Relaxed),
            tally.abrupt.load(Ordering::Relaxed),
            tally.operations.load(Ordering::Relaxed),
            tally.malformed.load(Ordering::Relaxed),
            tally.failures.load(Ordering::Relaxed),
            rss / 1024,
            problems.len()
        );
        for p in problems.iter().take(20) {
            println!("  problem: {p}");
        }
        failed |= !problems.is_empty()
            || connections != 0.0
            || rooms != 0.0
            || tally.failures.load(Ordering::Relaxed) > 0;
    }
    let first = after_rounds[0];
    let last = *after_rounds.last().unwrap();
    let grew = last > first + first / 10 + 4 * 1024 * 1024;
    println!(
        "memory: {} KiB after round 1, {} KiB after round {} ({})",
        first / 1024,
        last / 1024,
        args.rounds,
        if grew { "GREW" } else { "no growth" }
    );
    if failed || grew {
        println!("soak: FAILED");
        // exit skips destructors: stop the server, then remove its data directory.
        drop(server);
        drop(data);
        std::process::exit(1);
    }
    println!("soak: passed");
}
