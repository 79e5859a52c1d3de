//! Durable rooms with the real binary (SPEC §5.2–5.3): acknowledged writes survive `kill -9`
//! and restarts (polls, exact counters, config, Pact suffixes, history, the epoch); the
//! memory store keeps nothing; a data directory that is locked, of another format or not a
//! directory stops the server at startup with a clear message and is left as it was.
//!
//! Every test waits on events (stdout lines, frames, process exits), never on time; the
//! one sleep (in the kill loop) only picks a random moment to kill at.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use rust_decimal::Decimal;

/// How long anything the server should do promptly may take on a busy machine.
const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Data directories and processes
// ---------------------------------------------------------------------------------------

/// A fresh directory path under the system's temp dir (not created), removed on drop.
struct DataDir(PathBuf);

impl DataDir {
    fn new(name: &str) -> DataDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "rookery-durability-{}-{n}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        let _ = std::fs::remove_file(&path);
        DataDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn arg(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp path")
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A running `rookery` process.
struct Server {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
}

/// What a launch came to: a server that listens, or a process that exited.
enum Launch {
    Listening(Server),
    Exited { code: Option<i32>, stderr: String },
}

/// Starts the binary with `args` (after `--listen 127.0.0.1:0`) and waits for its first
/// stdout line ("rookery listening on ADDR (DRIVER)") or its exit.
fn launch(args: &[&str]) -> Launch {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rookery"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("ROOKERY_LOG", "warn")
        .env("ROOKERY_LOG_FORMAT", "text")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stderr = Arc::new(Mutex::new(String::new()));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    {
        let stderr = stderr.clone();
        let mut pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => stderr
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
            let _ = done_tx.send(());
        });
    }
    let (line_tx, line_rx) = mpsc::channel::<Option<String>>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let first = match reader.read_line(&mut line) {
            Ok(n) if n > 0 => Some(line.clone()),
            _ => None,
        };
        let _ = line_tx.send(first);
        // Keep the pipe open (and drained) for the process's life.
        let mut sink = Vec::new();
        let _ = reader.read_to_end(&mut sink);
    });
    let first = line_rx
        .recv_timeout(WAIT * 2)
        .unwrap_or_else(|_| panic!("no stdout line and no exit within {:?}", WAIT * 2));
    match first {
        Some(line) => {
            let rest = line
                .strip_prefix("rookery listening on ")
                .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
            let addr = rest.split(' ').next().unwrap().trim().to_owned();
            Launch::Listening(Server {
                child,
                addr,
                stderr,
            })
        }
        None => {
            let code = wait_exit(&mut child, WAIT);
            let _ = done_rx.recv_timeout(WAIT);
            let stderr = stderr.lock().unwrap().clone();
            Launch::Exited { code, stderr }
        }
    }
}

/// Starts a server that must come up.
fn start(args: &[&str]) -> Server {
    match launch(args) {
        Launch::Listening(server) => server,
        Launch::Exited { code, stderr } => {
            panic!("the server did not start (exit {code:?}): {stderr}")
        }
    }
}

/// A server on `dir` (disk store), 2 cores, no message rate limit, and `extra` flags.
fn start_on(dir: &DataDir, extra: &[&str]) -> Server {
    let mut args = vec![
        "--cores",
        "2",
        "--data-dir",
        dir.arg(),
        "--max-message-rate",
        "0",
    ];
    args.extend_from_slice(extra);
    start(&args)
}

/// Waits for `child` to exit (up to `wait`); its exit code (`None`: killed by a signal).
fn wait_exit(child: &mut Child, wait: Duration) -> Option<i32> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(
            Instant::now() < deadline,
            "the process did not exit within {wait:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Server {
    /// SIGKILL, and reap it.
    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }

    /// SIGTERM; it must drain and exit 0.
    fn terminate(mut self) {
        // SAFETY: kill(2) with the pid of our own child and a valid signal number.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "SIGTERM sent");
        let code = wait_exit(&mut self.child, WAIT);
        assert_eq!(
            code,
            Some(0),
            "a graceful exit; stderr: {}",
            self.stderr.lock().unwrap()
        );
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// A Pact client
// ---------------------------------------------------------------------------------------

struct Ws {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
}

/// A frame as text and as JSON (the text keeps numbers exact).
type Frame = (String, Value);

impl Ws {
    /// Connects to `room`; returns the client, the connect `config` frame's data and the
    /// `profile` data.
    fn pact(server: &Server, room: &str) -> (Ws, Value, Value) {
        let url = format!("ws://{}/websocket?room={room}", server.addr);
        let (ws, _) = tungstenite::connect(url).expect("websocket connects");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(WAIT)).unwrap();
            s.set_nodelay(true).unwrap();
        }
        let mut c = Ws { ws };
        let (_, config) = c.recv();
        assert_eq!(config["type"], "config", "{config}");
        let (_, profile) = c.recv();
        assert_eq!(profile["type"], "profile", "{profile}");
        (c, config["data"].clone(), profile["data"].clone())
    }

    fn send_text(&mut self, text: &str) -> tungstenite::Result<()> {
        self.ws.send(Message::text(text.to_owned()))
    }

    /// The next JSON text frame, skipping heartbeats.
    fn next(&mut self) -> tungstenite::Result<Frame> {
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).expect("the server sends JSON");
                    if v["type"] == "ping" {
                        continue;
                    }
                    return Ok((t.to_string(), v));
                }
                Ok(Message::Close(c)) => {
                    return Err(tungstenite::Error::Io(std::io::Error::other(format!(
                        "closed: {c:?}"
                    ))))
                }
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn recv(&mut self) -> Frame {
        self.next().unwrap_or_else(|e| panic!("no message: {e}"))
    }

    /// Sends `text` (which carries `"ref": reference`) and returns every frame before the
    /// reply, and the reply.
    fn call_text(&mut self, text: &str, reference: &str) -> (Vec<Frame>, Frame) {
        self.send_text(text).expect("send");
        let mut before = Vec::new();
        loop {
            let frame = self.recv();
            if frame.1["ref"] == reference {
                return (before, frame);
            }
            before.push(frame);
        }
    }

    fn call(&mut self, mut v: Value, reference: &str) -> (Vec<Frame>, Value) {
        v["ref"] = json!(reference);
        let (before, (_, reply)) = self.call_text(&v.to_string(), reference);
        (before, reply)
    }

    /// Subscribes to `topic` and returns the snapshot frames (before the `ok`).
    fn subscribe(&mut self, topic: &str) -> Vec<Frame> {
        let (snapshots, ok) = self.call(json!({"type":"subscribe","data":topic}), "sub");
        assert_eq!(ok["type"], "ok", "{ok}");
        snapshots
    }

    /// The room's whole history, oldest first, as JSON values.
    fn history(&mut self) -> (Vec<Value>, Value) {
        let (texts, pos) = self.history_text();
        let events = texts
            .iter()
            .map(|t| serde_json::from_str(t).unwrap())
            .collect();
        (events, pos)
    }
}

#[derive(Deserialize)]
struct HistoryFrame<'a> {
    #[serde(borrow)]
    data: HistoryData<'a>,
}

#[derive(Deserialize)]
struct HistoryData<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
    pos: Value,
}

impl Ws {
    /// The room's whole history as the server wrote each event (text), oldest first, and
    /// the position; paged back with `before`.
    fn history_text(&mut self) -> (Vec<String>, Value) {
        let mut events: Vec<String> = Vec::new();
        let mut before: Option<u64> = None;
        let mut pos = Value::Null;
        loop {
            let mut data = json!({"limit": 400});
            if let Some(b) = before {
                data["before"] = json!(b);
            }
            let message = json!({"type":"history","data":data,"ref":"history"}).to_string();
            let (_, (text, page)) = self.call_text(&message, "history");
            assert_eq!(page["type"], "history", "{page}");
            let frame: HistoryFrame = serde_json::from_str(&text).unwrap();
            if pos.is_null() {
                pos = frame.data.pos.clone();
            }
            if frame.data.events.is_empty() {
                break;
            }
            let mut page: Vec<String> = frame
                .data
                .events
                .iter()
                .map(|e| e.get().to_owned())
                .collect();
            let seqs: Vec<u64> = page
                .iter()
                .map(|t| seq(&serde_json::from_str(t).unwrap()))
                .collect();
            assert!(
                seqs.windows(2).all(|w| w[1] == w[0] + 1),
                "a page is oldest first, every seq once: {seqs:?}"
            );
            if let Some(b) = before {
                assert_eq!(*seqs.last().unwrap() + 1, b, "pages meet");
            }
            before = Some(seqs[0]);
            page.append(&mut events);
            events = page;
            if before == Some(1) {
                break;
            }
        }
        (events, pos)
    }
}

fn seq(frame: &Value) -> u64 {
    frame["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no seq: {frame}"))
}

#[derive(Deserialize)]
struct CounterFrame<'a> {
    #[serde(borrow)]
    data: CounterData<'a>,
}

#[derive(Deserialize)]
struct CounterData<'a> {
    id: String,
    #[serde(borrow)]
    value: &'a RawValue,
}

/// A counter frame's id and value exactly as written (the JSON number's text).
fn counter_text(text: &str) -> (String, String) {
    let frame: CounterFrame = serde_json::from_str(text).expect("a counter frame");
    (frame.data.id, frame.data.value.get().to_owned())
}

/// The counters' exact values, from the snapshots of a `counter` subscribe.
fn counters(snapshots: &[Frame]) -> BTreeMap<String, String> {
    snapshots
        .iter()
        .filter(|(_, v)| v["type"] == "counter")
        .map(|(text, _)| counter_text(text))
        .collect()
}

/// The polls' stats (answer → count), from the snapshots of a `poll` subscribe; polls
/// without votes are left out.
fn polls(snapshots: &[Frame]) -> BTreeMap<String, BTreeMap<String, u64>> {
    snapshots
        .iter()
        .filter(|(_, v)| v["type"] == "poll")
        .filter_map(|(_, v)| {
            let stats: BTreeMap<String, u64> = v["data"]["stats"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(_, n)| n.as_u64() != Some(0))
                .map(|(a, n)| (a.clone(), n.as_u64().unwrap()))
                .collect();
            (!stats.is_empty()).then(|| (v["data"]["id"].as_str().unwrap().to_owned(), stats))
        })
        .collect()
}

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap_or_else(|e| panic!("{text:?} is not a decimal: {e}"))
}

/// `text` as the server writes an exact decimal: normalized.
fn normalized(d: Decimal) -> String {
    d.normalize().to_string()
}

/// An HTTP request over a fresh connection; status and body.
fn http(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

/// xorshift64*, seeded and printed (`ROOKERY_TEST_SEED` replays a run).
struct Rng(u64);

impl Rng {
    fn seeded(test: &str) -> Rng {
        let seed = std::env::var("ROOKERY_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap();
                (now.as_nanos() as u64) ^ (std::process::id() as u64).rotate_left(32)
            })
            .max(1);
        println!("{test}: seed {seed} (ROOKERY_TEST_SEED={seed} replays it)");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

// ---------------------------------------------------------------------------------------
// kill -9 under steady writes
// ---------------------------------------------------------------------------------------

/// One write a writer sent.
#[derive(Debug, Clone)]
enum Op {
    Chat(String),
    Vote { poll: String, answer: String },
    Count { counter: String, delta: Decimal },
}

/// What one writer did in one cycle: every write it sent (in order) and which of them were
/// acknowledged; the seqs of its own chats as it saw them come back.
#[derive(Debug, Default)]
struct WriterLog {
    sent: Vec<Op>,
    acked: Vec<bool>,
    seen: Vec<(u64, String)>,
    /// What went wrong before the kill, if anything.
    error: Option<String>,
}

impl WriterLog {
    /// The fewest writes that landed: up to the last acknowledged one (a connection's
    /// writes are applied and committed in order, so an acknowledged write's predecessors
    /// landed too).
    fn landed_at_least(&self) -> usize {
        self.acked.iter().rposition(|a| *a).map_or(0, |i| i + 1)
    }

    fn acked_count(&self) -> usize {
        self.acked.iter().filter(|a| **a).count()
    }
}

const INCREMENTS: [&str; 7] = ["0.1", "0.2", "2.5", "0.01", "1234.56", "7", "0.333"];
const ANSWERS: [&str; 3] = ["yes", "no", "maybe"];
const IN_FLIGHT: usize = 4;

/// A writer: one connection (one anonymous user) sending chats, counter increments and
/// votes (each in a poll it has not voted in) with refs, up to [`IN_FLIGHT`] at a time,
/// until the server goes away.
fn writer(
    addr: String,
    room: String,
    name: String,
    seed: u64,
    started: mpsc::Sender<()>,
    killing: Arc<AtomicBool>,
) -> WriterLog {
    let url = format!("ws://{addr}/websocket?room={room}");
    let (ws, _) = tungstenite::connect(url).expect("websocket connects");
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_nodelay(true).unwrap();
    }
    let mut c = Ws { ws };
    assert_eq!(c.recv().1["type"], "config");
    assert_eq!(c.recv().1["type"], "profile");
    c.subscribe("chat");
    let mut rng = Rng(seed.max(1));
    let mut log = WriterLog::default();
    let mut outstanding = 0usize;
    let mut votes = 0u64;
    let mut announced = false;
    loop {
        while outstanding < IN_FLIGHT {
            let n = log.sent.len();
            let write = match rng.range(0, 3) {
                0 | 1 => Op::Chat(format!("{name}-{n}")),
                2 => Op::Count {
                    counter: format!("k{}", rng.range(0, 2)),
                    delta: dec(INCREMENTS[rng.range(0, INCREMENTS.len() as u64 - 1) as usize]),
                },
                _ => {
                    votes += 1;
                    Op::Vote {
                        poll: format!("poll-{votes}"),
                        answer: ANSWERS[rng.range(0, 2) as usize].to_owned(),
                    }
                }
            };
            let message = match &write {
                Op::Chat(text) => json!({"type":"chat","data":text,"ref":n}),
                Op::Count { counter, delta } => {
                    json!({"type":"counter","data":{"id":counter,"value":delta.to_string()},"ref":n})
                }
                Op::Vote { poll, answer } => {
                    json!({"type":"poll","data":{"id":poll,"answer":answer},"ref":n})
                }
            };
            // Sent (as far as we know) from here: it may land even if the send fails.
            log.sent.push(write);
            log.acked.push(false);
            outstanding += 1;
            if let Err(e) = c.send_text(&message.to_string()) {
                if !killing.load(Ordering::SeqCst) {
                    log.error = Some(format!("a send failed before the kill: {e}"));
                }
                return log;
            }
        }
        let (_, frame) = match c.next() {
            Ok(frame) => frame,
            Err(e) => {
                if !killing.load(Ordering::SeqCst) {
                    log.error = Some(format!("the connection failed before the kill: {e}"));
                }
                return log;
            }
        };
        match frame["type"].as_str() {
            Some("ok") => {
                let n = frame["ref"].as_u64().expect("a numeric ref") as usize;
                assert!(!log.acked[n], "two oks for {n}");
                log.acked[n] = true;
                outstanding -= 1;
                if !announced {
                    announced = true;
                    let _ = started.send(());
                }
            }
            Some("chat") => {
                let text = frame["data"]["message"].as_str().unwrap_or_default();
                if text.starts_with(&format!("{name}-")) {
                    log.seen.push((seq(&frame), text.to_owned()));
                }
            }
            _ => {
                log.error = Some(format!("unexpected {frame}"));
                return log;
            }
        }
    }
}

/// What a fresh client sees after a restart.
#[derive(Debug, Clone)]
struct Observed {
    epoch: String,
    seq: u64,
    suffix: u64,
    counters: BTreeMap<String, String>,
    polls: BTreeMap<String, BTreeMap<String, u64>>,
    history: Vec<Value>,
}

fn observe(server: &Server, room: &str) -> Observed {
    let (mut c, _, profile) = Ws::pact(server, room);
    let counters = counters(&c.subscribe("counter"));
    let polls = polls(&c.subscribe("poll"));
    let (history, pos) = c.history();
    assert_eq!(pos, profile["pos"], "nothing happened in between");
    Observed {
        epoch: profile["pos"]["epoch"].as_str().unwrap().to_owned(),
        seq: profile["pos"]["seq"].as_u64().unwrap(),
        suffix: profile["suffix"].as_u64().unwrap(),
        counters,
        polls,
        history,
    }
}

/// The state the room must have if writer `w` landed its first `landed[w]` writes, on top
/// of `base`.
fn expected_state(
    base: &Observed,
    logs: &[WriterLog],
    landed: &[usize],
) -> (
    BTreeMap<String, Decimal>,
    BTreeMap<String, BTreeMap<String, u64>>,
) {
    let mut counters: BTreeMap<String, Decimal> = base
        .counters
        .iter()
        .map(|(k, v)| (k.clone(), dec(v)))
        .collect();
    let mut polls = base.polls.clone();
    for (log, &n) in logs.iter().zip(landed) {
        for write in &log.sent[..n] {
            match write {
                Op::Count { counter, delta } => {
                    *counters.entry(counter.clone()).or_default() += *delta
                }
                Op::Vote { poll, answer } => {
                    *polls
                        .entry(poll.clone())
                        .or_default()
                        .entry(answer.clone())
                        .or_default() += 1
                }
                Op::Chat(_) => {}
            }
        }
    }
    (counters, polls)
}

/// Every choice of how many writes each writer landed: from its last acknowledged write to
/// everything it sent.
fn landings(logs: &[WriterLog]) -> Vec<Vec<usize>> {
    let mut all = vec![Vec::new()];
    for log in logs {
        let mut next = Vec::new();
        for partial in &all {
            for n in log.landed_at_least()..=log.sent.len() {
                let mut v = partial.clone();
                v.push(n);
                next.push(v);
            }
        }
        all = next;
    }
    all
}

const KILL_CYCLES: u64 = 24;
const WRITERS: usize = 3;
const KILL_HISTORY: u64 = 5000;

#[test]
fn kill_9_under_steady_writes_loses_no_acknowledged_write() {
    let test_started = Instant::now();
    let mut rng = Rng::seeded("kill -9 loop");
    let dir = DataDir::new("kill9");
    let room = "durable";
    let history_size = KILL_HISTORY.to_string();
    // Every other server fsyncs per batch; a kill loses nothing acknowledged either way.
    let launch = |n: u64| {
        let fsync = if n.is_multiple_of(2) {
            "interval"
        } else {
            "always"
        };
        start_on(&dir, &["--history-size", &history_size, "--fsync", fsync])
    };
    let mut server = launch(0);
    let mut before = observe(&server, room);
    assert_eq!(before.seq, 0, "a new room");
    let epoch = before.epoch.clone();
    // (seq → frame) of every event ever seen in history: a seq never changes its event.
    let mut known: BTreeMap<u64, Value> = BTreeMap::new();
    let mut per_cycle = Vec::new();
    let mut in_flight_landed = 0;
    let mut in_flight_total = 0;
    for cycle in 0..KILL_CYCLES {
        let killing = Arc::new(AtomicBool::new(false));
        let (started_tx, started_rx) = mpsc::channel();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (addr, room) = (server.addr.clone(), room.to_owned());
                let name = format!("c{cycle}w{w}");
                let seed = rng.next();
                let started = started_tx.clone();
                let killing = killing.clone();
                std::thread::spawn(move || writer(addr, room, name, seed, started, killing))
            })
            .collect();
        // Once every writer has had a write acknowledged, kill at a random moment.
        for _ in 0..WRITERS {
            started_rx
                .recv_timeout(WAIT)
                .expect("every writer gets an ok");
        }
        std::thread::sleep(Duration::from_millis(rng.range(50, 500)));
        killing.store(true, Ordering::SeqCst);
        let pid = server.pid();
        server.kill9();
        let logs: Vec<WriterLog> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        for log in &logs {
            assert!(
                log.error.is_none(),
                "cycle {cycle} (pid {pid}): {:?}",
                log.error
            );
        }
        let acked: usize = logs.iter().map(WriterLog::acked_count).sum();
        let uncertain: usize = logs
            .iter()
            .map(|l| l.sent.len() - l.landed_at_least())
            .sum();
        per_cycle.push(acked);

        // Back up on the same directory: same epoch, seqs go on, nothing acknowledged lost.
        // (This server takes the next cycle's writes.)
        server = launch(cycle + 1);
        let after = observe(&server, room);
        let context = format!("cycle {cycle} ({acked} acknowledged, {uncertain} in flight)");
        assert_eq!(
            after.epoch, epoch,
            "{context}: a disk store keeps its epoch"
        );
        assert!(after.seq >= before.seq, "{context}: seqs go on");
        assert!(
            after.suffix > before.suffix + WRITERS as u64,
            "{context}: suffixes are never reused ({} after {} and {WRITERS} writers)",
            after.suffix,
            before.suffix
        );
        let max_seen = logs
            .iter()
            .flat_map(|l| l.seen.iter().map(|(s, _)| *s))
            .max();
        assert!(
            max_seen.is_none_or(|s| s <= after.seq),
            "{context}: an event was seen at seq {max_seen:?} but the room restarted at {}",
            after.seq
        );
        // History: the last min(size, seq) events, consecutive, each seq's event unchanged.
        let oldest = after.seq.saturating_sub(KILL_HISTORY) + 1;
        let seqs: Vec<u64> = after.history.iter().map(seq).collect();
        assert_eq!(
            seqs,
            (oldest..=after.seq).collect::<Vec<_>>(),
            "{context}: history is the window, oldest first"
        );
        for event in &after.history {
            if let Some(old) = known.get(&seq(event)) {
                assert_eq!(
                    old,
                    event,
                    "{context}: seq {} changed its event",
                    seq(event)
                );
            }
        }
        // The writers' own chats, as they saw them, are in history at those seqs.
        for log in &logs {
            for (s, text) in &log.seen {
                if *s >= oldest {
                    let event = &after.history[(*s - oldest) as usize];
                    assert_eq!(
                        (&event["type"], &event["data"]["message"]),
                        (&json!("chat"), &json!(text)),
                        "{context}: seq {s} was {text} when sent"
                    );
                }
            }
        }
        // The new events are exactly the landed writes: find how many each writer landed
        // (at least up to its last acknowledged write), consistently with everything seen.
        let new_events: Vec<&Value> = after
            .history
            .iter()
            .filter(|e| seq(e) > before.seq)
            .collect();
        let whole_cycle_in_window = before.seq + 1 >= oldest;
        let chats_by_writer = |w: usize| -> Vec<String> {
            let prefix = format!("c{cycle}w{w}-");
            new_events
                .iter()
                .filter(|e| e["type"] == "chat")
                .filter_map(|e| e["data"]["message"].as_str())
                .filter(|m| m.starts_with(&prefix))
                .map(str::to_owned)
                .collect()
        };
        // First the plain bounds: every acknowledged write is there (increments are
        // positive, and every vote is a new user's in its poll), and nothing more than
        // what was sent.
        let least: Vec<usize> = logs.iter().map(WriterLog::landed_at_least).collect();
        let most: Vec<usize> = logs.iter().map(|l| l.sent.len()).collect();
        let (low_counters, low_polls) = expected_state(&before, &logs, &least);
        let (high_counters, high_polls) = expected_state(&before, &logs, &most);
        for (id, high) in &high_counters {
            let low = low_counters.get(id).copied().unwrap_or_default();
            let got = after.counters.get(id).map(|v| dec(v));
            assert!(
                got.is_some_and(|got| low <= got && got <= *high),
                "{context}: counter {id} is {got:?}, not in {low} (acknowledged) ..= {high} (sent)"
            );
        }
        for (poll, answers) in &high_polls {
            for (answer, high) in answers {
                let low = low_polls.get(poll).and_then(|a| a.get(answer)).copied();
                let got = after.polls.get(poll).and_then(|a| a.get(answer)).copied();
                assert!(
                    low.unwrap_or(0) <= got.unwrap_or(0) && got.unwrap_or(0) <= *high,
                    "{context}: poll {poll} answer {answer} has {got:?} votes, not in \
                     {low:?} (acknowledged) ..= {high} (sent)"
                );
            }
        }
        if whole_cycle_in_window {
            for (w, log) in logs.iter().enumerate() {
                let acked: Vec<&String> = log.sent[..log.landed_at_least()]
                    .iter()
                    .filter_map(|op| match op {
                        Op::Chat(text) => Some(text),
                        _ => None,
                    })
                    .collect();
                let got = chats_by_writer(w);
                let got: Vec<&String> = got.iter().collect();
                assert!(
                    got.starts_with(&acked),
                    "{context}: writer {w}'s acknowledged chats are not all in history, in \
                     order: {} acknowledged, history has {:?}..",
                    acked.len(),
                    &got[..got.len().min(5)]
                );
            }
        }
        // Then exactly: some number of each writer's unacknowledged writes (a prefix of
        // them, as a connection's writes are applied in order) landed, and that explains
        // every counter, every poll, the chats and the room's seq at once.
        let mut matches = Vec::new();
        for landed in landings(&logs) {
            let (counters, polls) = expected_state(&before, &logs, &landed);
            let counters_ok = counters.len() == after.counters.len()
                && counters
                    .iter()
                    .all(|(id, value)| after.counters.get(id) == Some(&normalized(*value)));
            let polls_ok = polls == after.polls;
            let events: usize = logs
                .iter()
                .zip(&landed)
                .map(|(log, &n)| {
                    // A vote or an increment is one event, a chat one; all are lasting.
                    log.sent[..n].len()
                })
                .sum();
            let seq_ok = after.seq == before.seq + events as u64;
            let chats_ok = (0..WRITERS).all(|w| {
                let expected: Vec<String> = logs[w].sent[..landed[w]]
                    .iter()
                    .filter_map(|write| match write {
                        Op::Chat(text) => Some(text.clone()),
                        _ => None,
                    })
                    .collect();
                let got = chats_by_writer(w);
                if whole_cycle_in_window {
                    got == expected
                } else {
                    expected.ends_with(&got)
                }
            });
            if counters_ok && polls_ok && seq_ok && chats_ok {
                matches.push(landed);
            }
        }
        assert!(
            !matches.is_empty(),
            "{context}: no landing of the writes explains what the restarted server holds: \
             counters {:?} (before {:?}), seq {} (before {}), {} polls; acked/sent per writer \
             {:?}",
            after.counters,
            before.counters,
            after.seq,
            before.seq,
            after.polls.len(),
            logs.iter()
                .map(|l| (l.acked_count(), l.landed_at_least(), l.sent.len()))
                .collect::<Vec<_>>()
        );
        let landed = &matches[0];
        in_flight_total += uncertain;
        in_flight_landed += logs
            .iter()
            .zip(landed)
            .map(|(l, &n)| n - l.landed_at_least())
            .sum::<usize>();
        for event in &after.history {
            known.insert(seq(event), event.clone());
        }
        before = after;
    }
    let total: usize = per_cycle.iter().sum();
    println!(
        "kill -9 loop: {KILL_CYCLES} cycles, {WRITERS} writers; acknowledged writes per cycle \
         {per_cycle:?} (total {total}, min {}); in flight at the kills: {in_flight_total}, of \
         which {in_flight_landed} landed; room at seq {}; {:.1?}",
        per_cycle.iter().min().unwrap(),
        before.seq,
        test_started.elapsed()
    );
    // Not vacuous: every cycle had writes acknowledged, and many in all.
    for (cycle, n) in per_cycle.iter().enumerate() {
        assert!(
            *n >= 3 * WRITERS,
            "cycle {cycle}: only {n} writes acknowledged"
        );
    }
    assert!(
        total >= 40 * KILL_CYCLES as usize,
        "only {total} writes acknowledged in all"
    );
    assert!(!before.counters.is_empty() && !before.polls.is_empty());
}

// ---------------------------------------------------------------------------------------
// Restarts keep state (disk); the memory store keeps none
// ---------------------------------------------------------------------------------------

const ADMIN_KEY: &str = "durability-admin-key";
/// A value a float would round (its nearest f64 is 12345678901234568).
const BIG: &str = "12345678901234567.89";

/// Fills room `room`: exact counters, votes of three users, an admin config (over HTTP),
/// chats; checks the counter values as they are sent live (as text: exact); returns the
/// room's history (as text) and the highest suffix handed out.
fn fill(server: &Server, room: &str) -> (Vec<String>, u64) {
    let (mut a, _, pa) = Ws::pact(server, room);
    let (mut b, _, pb) = Ws::pact(server, room);
    let (mut c, _, pc) = Ws::pact(server, room);
    for topic in ["counter", "poll", "chat", "config"] {
        a.subscribe(topic);
    }
    let mut live: Vec<Frame> = Vec::new();
    let call = |c: &mut Ws, text: String, reference: &str, live: &mut Vec<Frame>| {
        let (before, (_, reply)) = c.call_text(&text, reference);
        assert_eq!(reply["type"], "ok", "{text} → {reply}");
        live.extend(before);
    };
    let counter = |id: &str, value: &str, r: &str| {
        format!(r#"{{"type":"counter","data":{{"id":"{id}","value":{value}}},"ref":"{r}"}}"#)
    };
    // Numbers go to the server as written (no float on the way); strings too. (The big
    // value as a JSON number: `a_counter_number_a_float_would_round_is_kept_exact`.)
    call(&mut a, counter("money", "0.1", "1"), "1", &mut live);
    call(&mut a, counter("money", "\"0.2\"", "2"), "2", &mut live);
    call(
        &mut a,
        counter("big", &format!("\"{BIG}\""), "3"),
        "3",
        &mut live,
    );
    call(&mut a, counter("big", "0.01", "4"), "4", &mut live);
    call(
        &mut a,
        counter("tiny", "\"-0.000001\"", "5"),
        "5",
        &mut live,
    );
    let vote = |poll: &str, answer: &str, r: &str| {
        json!({"type":"poll","data":{"id":poll,"answer":answer},"ref":r}).to_string()
    };
    call(&mut a, vote("colour", "red", "6"), "6", &mut live);
    call(&mut b, vote("colour", "blue", "7"), "7", &mut live);
    call(&mut c, vote("colour", "red", "8"), "8", &mut live);
    call(&mut c, vote("size", "L", "9"), "9", &mut live);
    let chat = |data: Value, r: &str| json!({"type":"chat","data":data,"ref":r}).to_string();
    call(&mut a, chat(json!("first"), "10"), "10", &mut live);
    let (status, body) = http(
        server,
        "PUT",
        &format!("/api/rooms/{room}/config"),
        &[("Authorization", &format!("Bearer {ADMIN_KEY}"))],
        r#"{"theme":"dark"}"#,
    );
    assert_eq!(status, 200, "{body}");
    call(
        &mut a,
        chat(json!({"text":"second","n":2}), "11"),
        "11",
        &mut live,
    );
    let (history, pos) = a.history_text();
    assert_eq!(
        history.len() as u64,
        pos["seq"].as_u64().unwrap(),
        "all kept"
    );
    // Everything a's subscriptions got live came with a seq, and the counters were exact.
    let exact: Vec<(String, String)> = [
        ("money", "0.1"),
        ("money", "0.3"),
        ("big", BIG),
        ("big", "12345678901234567.9"),
        ("tiny", "-0.000001"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let sent_live: Vec<(String, String)> = live
        .iter()
        .filter(|(_, v)| v["type"] == "counter")
        .map(|(t, v)| {
            assert!(v["seq"].is_u64(), "a lasting event: {t}");
            counter_text(t)
        })
        .collect();
    assert_eq!(sent_live, exact, "live counter values are exact");
    let in_history: Vec<(String, String)> = history
        .iter()
        .filter(|t| t.contains(r#""type":"counter""#))
        .map(|t| counter_text(t))
        .collect();
    assert_eq!(in_history, exact, "history's counter values are exact");
    let config = history
        .iter()
        .find(|t| t.contains(r#""type":"config""#))
        .expect("the config change is a lasting event");
    assert!(
        config.contains(r#""data":"{\"theme\":\"dark\"}""#),
        "{config}"
    );
    drop((b, c));
    let suffix = [pa, pb, pc]
        .iter()
        .map(|p| p["suffix"].as_u64().unwrap())
        .max()
        .unwrap();
    (history, suffix)
}

/// What must hold of room `room` after a restart of a disk store: the config, a higher
/// suffix than `suffix`, the position, exact counters, polls, the history (text for
/// text); and seqs go on. Returns the history and suffix after that.
fn check_kept(
    server: &Server,
    room: &str,
    history: &[String],
    suffix: u64,
    epoch: &str,
) -> (Vec<String>, u64) {
    let (mut c, config, profile) = Ws::pact(server, room);
    assert_eq!(config, json!(r#"{"theme":"dark"}"#), "the config is kept");
    let new_suffix = profile["suffix"].as_u64().unwrap();
    assert!(
        new_suffix > suffix,
        "suffixes go on: {new_suffix} after {suffix}"
    );
    let last = history.len() as u64;
    assert_eq!(
        profile["pos"],
        json!({"epoch":epoch,"seq":last}),
        "the position is kept"
    );
    let counters = counters(&c.subscribe("counter"));
    assert_eq!(counters["money"], "0.3", "0.1 + 0.2 is 0.3, exactly");
    assert_eq!(
        counters["big"], "12345678901234567.9",
        "{BIG} + 0.01, exactly"
    );
    assert_eq!(counters["tiny"], "-0.000001");
    assert_eq!(counters.len(), 3);
    let polls = polls(&c.subscribe("poll"));
    assert_eq!(
        polls,
        BTreeMap::from([
            (
                "colour".to_owned(),
                BTreeMap::from([("red".to_owned(), 2), ("blue".to_owned(), 1)])
            ),
            ("size".to_owned(), BTreeMap::from([("L".to_owned(), 1)])),
        ])
    );
    let (kept, pos) = c.history_text();
    assert_eq!(kept, history, "history is kept, event for event");
    assert_eq!(pos, json!({"epoch":epoch,"seq":last}));
    // Seqs go on from where they were.
    c.subscribe("chat");
    let (before, ok) = c.call(json!({"type":"chat","data":"after a restart"}), "after");
    assert_eq!(ok["type"], "ok");
    let chat = before
        .iter()
        .map(|(_, v)| v.clone())
        .find(|v| v["type"] == "chat")
        .unwrap_or_else(|| c.recv().1);
    assert_eq!(chat["seq"].as_u64(), Some(last + 1), "{chat}");
    let (history, _) = c.history_text();
    (history, new_suffix)
}

#[test]
fn a_restart_keeps_polls_counters_config_suffixes_history_and_the_epoch() {
    let dir = DataDir::new("restart");
    let args = ["--admin-key", ADMIN_KEY, "--shutdown-jitter-ms", "0"];
    let server = start_on(&dir, &args);
    let (history, suffix) = fill(&server, "keep");
    let (_, _, profile) = Ws::pact(&server, "keep");
    let epoch = profile["pos"]["epoch"].as_str().unwrap().to_owned();
    let suffix = suffix.max(profile["suffix"].as_u64().unwrap());
    // A graceful restart.
    server.terminate();
    let server = start_on(&dir, &args);
    let (history, suffix) = check_kept(&server, "keep", &history, suffix, &epoch);
    // kill -9: nothing acknowledged is lost either.
    server.kill9();
    let server = start_on(&dir, &args);
    let (history, suffix) = check_kept(&server, "keep", &history, suffix, &epoch);
    // And once more with nobody having been in the room since the start.
    server.kill9();
    let server = start_on(&dir, &args);
    check_kept(&server, "keep", &history, suffix, &epoch);
}

/// A JSON number with more digits than a float holds is still an exact decimal: the
/// counter adds it exactly, sends it exactly, and keeps it exactly across a restart.
#[test]
fn a_counter_number_a_float_would_round_is_kept_exact() {
    let dir = DataDir::new("bignumber");
    let server = start_on(&dir, &[]);
    let (mut c, _, _) = Ws::pact(&server, "numbers");
    c.subscribe("counter");
    let mut values = Vec::new();
    for (i, value) in [BIG, "0.01", "0.1", "0.2"].iter().enumerate() {
        let id = if i < 2 { "big" } else { "small" };
        let reference = format!("n{i}");
        let text = format!(
            r#"{{"type":"counter","data":{{"id":"{id}","value":{value}}},"ref":"{reference}"}}"#
        );
        let (before, (_, ok)) = c.call_text(&text, &reference);
        assert_eq!(ok["type"], "ok", "{ok}");
        let event = before
            .into_iter()
            .find(|(_, v)| v["type"] == "counter")
            .unwrap_or_else(|| c.recv());
        values.push(counter_text(&event.0));
    }
    let expected = [
        ("big", BIG),
        ("big", "12345678901234567.9"),
        ("small", "0.1"),
        ("small", "0.3"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(values, expected, "sent as JSON numbers, added exactly");
    server.terminate();
    let server = start_on(&dir, &[]);
    let (mut c, _, _) = Ws::pact(&server, "numbers");
    let kept = counters(&c.subscribe("counter"));
    assert_eq!(kept["big"], "12345678901234567.9");
    assert_eq!(kept["small"], "0.3");
}

#[test]
fn the_memory_store_keeps_nothing() {
    let dir = DataDir::new("memory");
    let args = [
        "--cores",
        "2",
        "--store",
        "memory",
        "--data-dir",
        dir.arg(),
        "--admin-key",
        ADMIN_KEY,
    ];
    let server = start(&args);
    let (history, _) = fill(&server, "gone");
    assert!(!history.is_empty());
    let (_, _, profile) = Ws::pact(&server, "gone");
    let epoch = profile["pos"]["epoch"].clone();
    server.kill9();
    let server = start(&args);
    let (mut c, config, profile) = Ws::pact(&server, "gone");
    assert_eq!(config, json!("{}"), "no config");
    assert_eq!(profile["suffix"], 1, "suffixes start again");
    assert_eq!(profile["pos"]["seq"], 0);
    assert_ne!(
        profile["pos"]["epoch"], epoch,
        "a new epoch: the history is gone"
    );
    assert!(counters(&c.subscribe("counter")).is_empty());
    assert!(polls(&c.subscribe("poll")).is_empty());
    assert!(c.history().0.is_empty());
    assert!(
        !dir.path().exists(),
        "the memory store writes no data directory"
    );
}

// ---------------------------------------------------------------------------------------
// Data directories the server must refuse, leaving them as they were
// ---------------------------------------------------------------------------------------

/// Every file and directory under `dir` with its contents' SHA-256 (or its kind).
fn listing(dir: &Path) -> BTreeMap<PathBuf, String> {
    use sha2::{Digest, Sha256};
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                found.insert(path.clone(), "dir".to_owned());
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                let hash: String = Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                found.insert(path, format!("{} bytes {hash}", bytes.len()));
            }
        }
    }
    found
}

/// Launches with `args`, which must fail: exit 1 and a line starting "rookery: cannot
/// start:"; returns that line.
fn refused(args: &[&str]) -> String {
    match launch(args) {
        Launch::Listening(server) => {
            let addr = server.addr.clone();
            server.kill9();
            panic!("the server started on {addr} with {args:?}");
        }
        Launch::Exited { code, stderr } => {
            assert_eq!(code, Some(1), "exit 1; stderr: {stderr}");
            let line = stderr
                .lines()
                .find(|l| l.starts_with("rookery: cannot start:"))
                .unwrap_or_else(|| panic!("no 'rookery: cannot start:' line in {stderr:?}"))
                .to_owned();
            println!("refused as expected: {line}");
            line
        }
    }
}

#[test]
fn a_data_dir_in_use_by_another_process_is_refused() {
    let dir = DataDir::new("locked");
    let first = start_on(&dir, &[]);
    let (mut c, _, _) = Ws::pact(&first, "r");
    assert_eq!(
        c.call(
            json!({"type":"counter","data":{"id":"c","value":"1.5"}}),
            "1"
        )
        .1["type"],
        "ok"
    );
    let before = listing(dir.path());
    let message = refused(&["--cores", "2", "--data-dir", dir.arg()]);
    assert!(
        message.contains(dir.arg()),
        "names the directory: {message}"
    );
    assert!(message.contains("locked"), "says it is locked: {message}");
    // The first server was not disturbed.
    assert_eq!(
        c.call(
            json!({"type":"counter","data":{"id":"c","value":"1.5"}}),
            "2"
        )
        .1["type"],
        "ok"
    );
    let counters = counters(&c.subscribe("counter"));
    assert_eq!(counters["c"], "3");
    drop(c);
    first.terminate();
    // The refused process changed nothing the first one does not write itself.
    let marker = dir.path().join("rookery.format");
    assert_eq!(
        before.get(&marker),
        listing(dir.path()).get(&marker),
        "the marker file"
    );
    // Free again once the first is gone.
    let again = start_on(&dir, &[]);
    let (mut c, _, _) = Ws::pact(&again, "r");
    assert_eq!(counters_of(&mut c)["c"], "3");
}

fn counters_of(c: &mut Ws) -> BTreeMap<String, String> {
    counters(&c.subscribe("counter"))
}

/// A store made by the server (one chat in it), closed gracefully.
fn made_store(name: &str) -> DataDir {
    let dir = DataDir::new(name);
    let server = start_on(&dir, &[]);
    let (mut c, _, _) = Ws::pact(&server, "r");
    assert_eq!(
        c.call(json!({"type":"chat","data":"kept"}), "1").1["type"],
        "ok"
    );
    drop(c);
    server.terminate();
    dir
}

/// The store's format marker (server/src/store/disk/mod.rs): the file `rookery.format`, read
/// before the database is opened.
#[test]
fn a_store_marked_with_another_format_is_refused_and_left_unchanged() {
    let dir = made_store("format-file");
    let marker = dir.path().join("rookery.format");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "rookery-store/2\n",
        "the marker is where the store's documentation says"
    );
    std::fs::write(&marker, "rookery-store/999\n").unwrap();
    let before = listing(dir.path());
    let message = refused(&["--cores", "2", "--data-dir", dir.arg()]);
    assert!(
        message.contains(dir.arg()),
        "names the directory: {message}"
    );
    assert!(
        message.contains("rookery-store/999") && message.contains("format"),
        "says what is wrong: {message}"
    );
    assert_eq!(
        listing(dir.path()),
        before,
        "nothing in the directory changed"
    );
}

/// The same format also travels inside the database (key `format` of keyspace `meta`): a
/// database of another format behind a right marker file is refused too.
#[test]
fn a_database_of_another_format_is_refused_and_left_unchanged() {
    let dir = made_store("format-key");
    {
        let database = fjall::Database::builder(dir.path()).open().unwrap();
        let meta = database
            .keyspace("meta", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        assert_eq!(
            meta.get("format").unwrap().as_deref(),
            Some(&b"rookery-store/2"[..]),
            "the key is where the store's documentation says"
        );
        meta.insert("format", "rookery-store/999").unwrap();
        database.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let before = listing(dir.path());
    let message = refused(&["--cores", "2", "--data-dir", dir.arg()]);
    assert!(
        message.contains(dir.arg()),
        "names the directory: {message}"
    );
    assert!(
        message.contains("rookery-store/999") && message.contains("format"),
        "says what is wrong: {message}"
    );
    assert_eq!(
        listing(dir.path()),
        before,
        "nothing in the directory changed"
    );
}

#[test]
fn a_directory_of_other_things_is_refused_and_left_unchanged() {
    let dir = DataDir::new("foreign");
    std::fs::create_dir_all(dir.path().join("photos")).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let before = listing(dir.path());
    let message = refused(&["--cores", "2", "--data-dir", dir.arg()]);
    assert!(
        message.contains(dir.arg()),
        "names the directory: {message}"
    );
    assert!(message.contains("not a Rookery store"), "{message}");
    assert_eq!(
        listing(dir.path()),
        before,
        "nothing in the directory changed"
    );
}

#[test]
fn a_regular_file_as_the_data_dir_is_refused() {
    let dir = DataDir::new("file");
    std::fs::write(dir.path(), "not a store").unwrap();
    let message = refused(&["--cores", "2", "--data-dir", dir.arg()]);
    assert!(message.contains(dir.arg()), "names the path: {message}");
    assert!(message.contains("not a directory"), "{message}");
    assert_eq!(std::fs::read(dir.path()).unwrap(), b"not a store");
}

#[test]
fn a_malformed_resume_over_the_wire_is_invalid_data() {
    let dir = DataDir::new("resume");
    let server = start_on(&dir, &[]);
    let (mut c, _, profile) = Ws::pact(&server, "r");
    let epoch = profile["pos"]["epoch"].as_str().unwrap().to_owned();
    for (i, data) in [
        json!(null),
        json!({"epoch": epoch}),
        json!({"epoch": epoch, "seq": -1}),
        json!({"epoch": epoch, "seq": "0"}),
        json!({"epoch": 1, "seq": 0}),
        json!({"epoch": epoch, "seq": 5}),
    ]
    .into_iter()
    .enumerate()
    {
        let reference = format!("r{i}");
        let (_, reply) = c.call(json!({"type":"resume","data":data}), &reference);
        assert_eq!(reply["type"], "error", "{data} → {reply}");
        assert_eq!(reply["data"]["code"], "invalid_data", "{data} → {reply}");
    }
    let (_, resumed) = c.call(
        json!({"type":"resume","data":{"epoch":epoch,"seq":0}}),
        "ok",
    );
    assert_eq!(resumed["data"]["recovered"], true, "{resumed}");
}
