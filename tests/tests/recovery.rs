//! Resume after a disconnect (SPEC §5.3), over real sockets: randomized disconnect/resume
//! cycles checked against what a publisher had acknowledged, with the algorithm a real
//! client uses (hold the lasting events that arrive before `resumed`, then apply them in
//! `seq` order, dropping every `seq` already applied). Inside the history window nothing is
//! lost, duplicated or reordered; outside it (or in another epoch) the answer is
//! `recovered: false` with snapshots of the true current state.
//!
//! The random choices come from a seeded xorshift; the seed is printed, and
//! `ROOKERY_TEST_SEED=<seed>` replays a run.

use rookery_tests::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

/// xorshift64*: small, seeded, good enough to pick test cases.
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

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi);
        lo + self.next() % (hi - lo + 1)
    }

    /// True with probability `percent`%.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Counter increments, in hundredths: exact decimals, some of which a float would round.
const DELTAS: [(&str, i64); 7] = [
    ("0.1", 10),
    ("0.2", 20),
    ("2.5", 250),
    ("-0.75", -75),
    ("1", 100),
    ("17.75", 1775),
    ("-15.14", -1514),
];
const COUNTERS: [&str; 3] = ["c0", "c1", "c2"];
const POLLS: [&str; 3] = ["p0", "p1", "p2"];
const ANSWERS: [&str; 4] = ["a", "b", "c", "d"];
const TOPICS: [&str; 3] = ["chat", "counter", "poll"];

/// A value in hundredths as the server writes it: an exact decimal, normalized.
fn decimal(hundredths: i64) -> String {
    let sign = if hundredths < 0 { "-" } else { "" };
    let abs = hundredths.unsigned_abs();
    let (whole, frac) = (abs / 100, abs % 100);
    match frac {
        0 => format!("{sign}{whole}"),
        f if f % 10 == 0 => format!("{sign}{whole}.{}", f / 10),
        f => format!("{sign}{whole}.{f:02}"),
    }
}

/// A JSON number equal to the decimal `text` (as serde_json reads the server's number).
fn number(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn seq_of(frame: &Value) -> Option<u64> {
    frame.get("seq").and_then(Value::as_u64)
}

/// What the publisher expects its next published message to become.
enum Expect {
    Chat(String),
    Counter(String, String),
    Poll(String, String),
}

/// The connection that publishes. It is subscribed to everything it publishes, so it sees
/// every lasting event of the room with its `seq`: together with the acknowledgements this
/// is the truth the subscriber is checked against.
struct Publisher {
    c: Client,
    next_ref: u64,
    /// Refs sent whose `ok` has not come yet.
    unacked: BTreeSet<String>,
    /// Events published and not yet seen, in the order they were sent.
    expected: VecDeque<Expect>,
    /// Every lasting event of the room, by seq, as the publisher received it.
    truth: BTreeMap<u64, Value>,
    last_seq: u64,
    /// Counter values (hundredths) and current votes after everything sent so far.
    counters: BTreeMap<&'static str, i64>,
    votes: BTreeMap<&'static str, &'static str>,
    /// Each counter's and poll's values over time: (seq, value), for the state at any seq.
    counter_log: BTreeMap<String, Vec<(u64, Value)>>,
    poll_log: BTreeMap<String, Vec<(u64, Value)>>,
    chats_sent: u64,
    acked: u64,
}

impl Publisher {
    fn new(addr: SocketAddr, room: &str) -> (Publisher, Value) {
        let (mut c, profile) = Client::pact(addr, room);
        for (i, topic) in TOPICS.iter().enumerate() {
            let ok = c.call(json!({"type":"subscribe","data":topic}), &format!("s{i}"));
            assert_eq!(ok["type"], "ok", "{ok}");
        }
        let p = Publisher {
            c,
            next_ref: 0,
            unacked: BTreeSet::new(),
            expected: VecDeque::new(),
            truth: BTreeMap::new(),
            last_seq: profile["pos"]["seq"].as_u64().unwrap(),
            counters: BTreeMap::new(),
            votes: BTreeMap::new(),
            counter_log: BTreeMap::new(),
            poll_log: BTreeMap::new(),
            chats_sent: 0,
            acked: 0,
        };
        (p, profile)
    }

    /// Sends one random lasting change with a `ref` (mostly chats), without waiting.
    fn publish(&mut self, rng: &mut Rng) {
        self.next_ref += 1;
        let reference = format!("p{}", self.next_ref);
        let message = match rng.range(0, 9) {
            0..=5 => {
                self.chats_sent += 1;
                let text = format!("m{}", self.chats_sent);
                self.expected.push_back(Expect::Chat(text.clone()));
                json!({"type":"chat","data":text,"ref":reference})
            }
            6 | 7 => {
                let id = COUNTERS[rng.range(0, 2) as usize];
                let (text, hundredths) = DELTAS[rng.range(0, DELTAS.len() as u64 - 1) as usize];
                let value = self.counters.entry(id).or_default();
                *value += hundredths;
                let expected = decimal(*value);
                self.expected
                    .push_back(Expect::Counter(id.to_owned(), expected));
                // Half as numbers, half as numeric strings: both are exact decimals.
                let delta = if rng.chance(50) {
                    number(text)
                } else {
                    json!(text)
                };
                json!({"type":"counter","data":{"id":id,"value":delta},"ref":reference})
            }
            _ => {
                let id = POLLS[rng.range(0, 2) as usize];
                // A vote for the answer it already has changes nothing (and sends nothing).
                let current = self.votes.get(id).copied();
                let choices: Vec<&str> = ANSWERS
                    .iter()
                    .copied()
                    .filter(|a| Some(*a) != current)
                    .collect();
                let answer = choices[rng.range(0, choices.len() as u64 - 1) as usize];
                self.votes.insert(id, answer);
                self.expected
                    .push_back(Expect::Poll(id.to_owned(), answer.to_owned()));
                json!({"type":"poll","data":{"id":id,"answer":answer},"ref":reference})
            }
        };
        self.unacked.insert(reference);
        self.c.send(message);
    }

    fn publish_n(&mut self, rng: &mut Rng, n: u64) {
        for _ in 0..n {
            self.publish(rng);
        }
    }

    /// Reads until every publish is acknowledged and seen as an event, checking each event
    /// against what was sent (in order, consecutive seqs, exact values).
    fn settle(&mut self) {
        while !self.unacked.is_empty() || !self.expected.is_empty() {
            let frame = self.c.recv();
            if frame["type"] == "ok" {
                let reference = frame["ref"].as_str().unwrap_or_default().to_owned();
                assert!(self.unacked.remove(&reference), "an unexpected ok: {frame}");
                self.acked += 1;
                continue;
            }
            let seq = seq_of(&frame).unwrap_or_else(|| panic!("publisher got {frame}"));
            assert_eq!(
                seq,
                self.last_seq + 1,
                "the publisher's events skip: {frame}"
            );
            let expect = self
                .expected
                .pop_front()
                .unwrap_or_else(|| panic!("an event nobody published: {frame}"));
            let data = &frame["data"];
            match expect {
                Expect::Chat(text) => {
                    assert_eq!(frame["type"], "chat", "{frame}");
                    assert_eq!(data["message"], text.as_str(), "{frame}");
                }
                Expect::Counter(id, value) => {
                    assert_eq!(frame["type"], "counter", "{frame}");
                    assert_eq!(data["id"], id.as_str(), "{frame}");
                    assert_eq!(data["value"], number(&value), "exact: {value} in {frame}");
                    let log = self.counter_log.entry(id).or_default();
                    log.push((seq, data["value"].clone()));
                }
                Expect::Poll(id, answer) => {
                    assert_eq!(frame["type"], "poll", "{frame}");
                    assert_eq!(data, &json!({"id":id,"stats":{answer:1}}), "{frame}");
                    let log = self.poll_log.entry(id).or_default();
                    log.push((seq, data["stats"].clone()));
                }
            }
            self.truth.insert(seq, frame);
            self.last_seq = seq;
        }
    }

    /// The counters' values and the polls' stats as they were at `seq`.
    fn state_at(&self, seq: u64) -> State {
        let at = |log: &BTreeMap<String, Vec<(u64, Value)>>| -> BTreeMap<String, Value> {
            log.iter()
                .filter_map(|(id, values)| {
                    let n = values.partition_point(|(s, _)| *s <= seq);
                    (n > 0).then(|| (id.clone(), values[n - 1].1.clone()))
                })
                .collect()
        };
        State {
            counters: at(&self.counter_log),
            polls: at(&self.poll_log),
        }
    }
}

/// Counters (id → value) and polls (id → stats) as a client holds them.
#[derive(Debug, Clone, Default, PartialEq)]
struct State {
    counters: BTreeMap<String, Value>,
    polls: BTreeMap<String, Value>,
}

impl State {
    /// Takes in a counter or poll frame (an event or a snapshot); false for anything else.
    fn take(&mut self, frame: &Value) -> bool {
        let data = &frame["data"];
        let id = data["id"].as_str().unwrap_or_default().to_owned();
        match frame["type"].as_str() {
            Some("counter") => self.counters.insert(id, data["value"].clone()),
            Some("poll") => self.polls.insert(id, data["stats"].clone()),
            _ => return false,
        };
        true
    }
}

/// The subscriber: a client as a real application writes it.
struct Subscriber {
    c: Option<Client>,
    epoch: String,
    /// The last seq applied.
    last: u64,
    state: State,
    /// Every event applied since the last discontinuity (`recovered: false`), with seq.
    applied: Vec<(u64, Value)>,
    /// Where the current run of applied events starts (exclusive): after a reload, the
    /// reloaded position.
    run_start: u64,
    /// Frames dropped because their seq had been applied (the live and replayed copies of
    /// one event around a resume).
    duplicates_dropped: u64,
}

impl Subscriber {
    fn client(&mut self) -> &mut Client {
        self.c.as_mut().expect("connected")
    }

    /// Applies one lasting event in the connected, caught-up state: it must be the next.
    fn apply(&mut self, frame: Value) {
        let seq = seq_of(&frame).unwrap_or_else(|| panic!("not a lasting event: {frame}"));
        if seq <= self.last {
            self.duplicates_dropped += 1;
            return;
        }
        assert_eq!(
            seq,
            self.last + 1,
            "lost or reordered: applied up to {}, then got {frame}",
            self.last
        );
        self.last = seq;
        self.state.take(&frame);
        self.applied.push((seq, frame));
    }

    /// Reads and applies lasting events until `n` were applied.
    fn read_events(&mut self, n: u64) {
        let target = self.last + n;
        while self.last < target {
            let frame = self.client().recv();
            self.apply(frame);
        }
    }
}

/// Which side of the history window a cycle's resume is meant to land on.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Case {
    /// Everything missed (live events during the resume included) fits: must recover.
    Inside,
    /// More was missed than the history keeps: must reload.
    Outside,
    /// A position of another epoch: must reload.
    OtherEpoch,
}

#[derive(Debug, Default)]
struct Totals {
    cycles: u64,
    recovered: u64,
    reloaded: u64,
    other_epoch: u64,
    replayed: u64,
    room_events: u64,
    abrupt: u64,
    graceful: u64,
    with_live_during_resume: u64,
}

const HISTORY: u64 = 24;
const CYCLES: u64 = 1000;

#[test]
fn a_thousand_random_disconnects_resume_exactly_inside_the_window() {
    resume_cycles("resume cycles", None);
}

/// The same against the disk store (the default): replays come from its history log.
#[test]
fn a_thousand_random_disconnects_resume_exactly_from_the_disk_store() {
    let dir = std::env::temp_dir().join(format!("rookery-recovery-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    resume_cycles("resume cycles on disk", Some(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

/// [`CYCLES`] random disconnects and resumes of one subscriber while a publisher writes,
/// with the store in `data_dir` (`None`: the memory store).
fn resume_cycles(seed: &str, data_dir: Option<&std::path::Path>) {
    let started = Instant::now();
    let mut rng = Rng::seeded(seed);
    let addr = server_with(2, |c| {
        c.history_size = HISTORY as usize;
        c.max_message_rate = 0;
        if let Some(dir) = data_dir {
            c.store = rookery::store::StoreKind::Disk;
            c.data_dir = dir.to_path_buf();
        }
    });
    let room = "resume-cycles";
    let (mut publisher, profile) = Publisher::new(addr, room);
    let epoch = profile["pos"]["epoch"].as_str().unwrap().to_owned();
    assert!(!epoch.is_empty());
    assert_eq!(publisher.last_seq, 0, "a new room starts at seq 0");
    publisher.publish_n(&mut rng, 5);
    publisher.settle();

    let (mut c, profile) = Client::pact(addr, room);
    assert_eq!(
        profile["pos"],
        json!({"epoch":epoch,"seq":publisher.last_seq})
    );
    for (i, topic) in TOPICS.iter().enumerate() {
        let ok = c.call(json!({"type":"subscribe","data":topic}), &format!("s{i}"));
        assert_eq!(ok["type"], "ok");
    }
    let mut sub = Subscriber {
        c: Some(c),
        epoch: epoch.clone(),
        last: publisher.last_seq,
        state: publisher.state_at(publisher.last_seq),
        applied: Vec::new(),
        run_start: publisher.last_seq,
        duplicates_dropped: 0,
    };
    let mut totals = Totals::default();

    for cycle in 0..CYCLES {
        let context = |what: &str| format!("cycle {cycle}: {what}");
        // Live traffic; the subscriber reads some of it and goes away mid-stream.
        let burst = rng.range(0, 6);
        publisher.publish_n(&mut rng, burst);
        let read = rng.range(0, burst);
        sub.read_events(read);
        let mut c = sub.c.take().unwrap();
        match rng.range(0, 2) {
            0 => {
                // The socket goes away: no close frame (an RST if frames were unread).
                totals.abrupt += 1;
                drop(c);
            }
            1 => {
                totals.graceful += 1;
                c.ws.close(None).expect("close");
                loop {
                    match c.read() {
                        Ok(_) => continue, // what comes after our close is not applied
                        Err(tungstenite::Error::ConnectionClosed) => break,
                        Err(e) => panic!("{}", context(&format!("close handshake: {e}"))),
                    }
                }
            }
            _ => {
                totals.graceful += 1;
                c.send(json!({"type":"close"}));
                let (code, _) = c.expect_close_after(|_| {});
                assert_eq!(code, 1000);
            }
        }
        publisher.settle();

        // While it is away: a random amount, inside or outside the window.
        let gap = publisher.last_seq - sub.last;
        let live_after = if rng.chance(50) { 0 } else { rng.range(1, 4) };
        let live_before = if rng.chance(70) { 0 } else { rng.range(1, 3) };
        let mut case = match rng.range(0, 99) {
            0..=4 => Case::OtherEpoch,
            5..=64 => Case::Inside,
            _ => Case::Outside,
        };
        let room_left = HISTORY.checked_sub(gap + live_before + live_after);
        if case == Case::Inside && room_left.is_none() {
            case = Case::Outside;
        }
        let away = match case {
            Case::Inside => {
                let room_left = room_left.unwrap();
                // Now and then exactly at the edge of the window.
                if rng.chance(15) {
                    room_left
                } else {
                    rng.range(0, room_left)
                }
            }
            Case::Outside => {
                let least = (HISTORY + 1).saturating_sub(gap + live_before);
                if rng.chance(15) {
                    least
                } else {
                    least + rng.range(0, HISTORY)
                }
            }
            Case::OtherEpoch => rng.range(0, 8),
        };
        publisher.publish_n(&mut rng, away);
        publisher.settle();

        // Back: connect, subscribe again (the client holds lasting events from now until
        // `resumed`), check the subscribe snapshots against the truth.
        let (mut c, profile) = Client::pact(addr, room);
        assert_eq!(
            profile["pos"],
            json!({"epoch":epoch,"seq":publisher.last_seq}),
            "{}",
            context("the profile's pos")
        );
        let mut held: Vec<Value> = Vec::new();
        let mut snapshots = State::default();
        let refs: Vec<String> = (0..TOPICS.len()).map(|i| format!("s{cycle}-{i}")).collect();
        let subscribes: Vec<Value> = TOPICS
            .iter()
            .zip(&refs)
            .map(|(t, r)| json!({"type":"subscribe","data":t,"ref":r}))
            .collect();
        c.send_all(&subscribes);
        let mut oks = 0;
        while oks < refs.len() {
            let frame = c.recv();
            if frame["type"] == "ok" {
                assert_eq!(
                    frame["ref"],
                    refs[oks].as_str(),
                    "{}",
                    context("subscribe oks in order")
                );
                oks += 1;
            } else if seq_of(&frame).is_some() {
                panic!(
                    "{}",
                    context(&format!("an event before anything was published: {frame}"))
                );
            } else {
                assert!(
                    snapshots.take(&frame),
                    "{}",
                    context(&format!("unexpected {frame}"))
                );
            }
        }
        assert_eq!(
            snapshots,
            publisher.state_at(publisher.last_seq),
            "{}",
            context("subscribe snapshots are the current state")
        );
        // Events after the subscribe and before the resume reach it live (and are replayed
        // too: the client drops one copy).
        publisher.publish_n(&mut rng, live_before);
        publisher.settle();
        let resume_epoch = match case {
            Case::OtherEpoch => format!("not-{epoch}"),
            _ => sub.epoch.clone(),
        };
        let reference = format!("r{cycle}");
        let from = sub.last;
        c.send(json!({"type":"resume","ref":reference,"data":{"epoch":resume_epoch,"seq":from}}));
        let at_resume = publisher.last_seq;
        // Live events while the replay is under way.
        publisher.publish_n(&mut rng, live_after);
        if live_after > 0 {
            totals.with_live_during_resume += 1;
        }
        let mut reload = State::default();
        let mut config = None;
        let resumed = loop {
            let frame = c.recv();
            match frame["type"].as_str() {
                Some("resumed") => break frame,
                _ if seq_of(&frame).is_some() => held.push(frame),
                Some("config") => {
                    assert!(config.is_none(), "{}", context("one config frame"));
                    assert!(
                        reload == State::default(),
                        "{}",
                        context("config comes first")
                    );
                    config = Some(frame["data"].clone());
                }
                _ => assert!(
                    reload.take(&frame),
                    "{}",
                    context(&format!("unexpected {frame}"))
                ),
            }
        };
        publisher.settle();
        assert_eq!(resumed["ref"], reference.as_str());
        let data = &resumed["data"];
        let pos_seq = data["pos"]["seq"].as_u64().unwrap();
        assert_eq!(
            data["pos"]["epoch"],
            epoch.as_str(),
            "{}",
            context("the room's epoch")
        );
        assert!(
            (at_resume..=publisher.last_seq).contains(&pos_seq),
            "{}",
            context(&format!(
                "pos {pos_seq} not in {at_resume}..={}",
                publisher.last_seq
            ))
        );
        let recovered = data["recovered"].as_bool().expect("recovered is a bool");
        let missed = data["missed"].as_u64().expect("missed is a number");
        // Whatever the room got before the resume was missed; live ones may be or not.
        let missed_before = at_resume - from;
        match case {
            Case::Inside => assert!(
                recovered,
                "{}",
                context(&format!(
                    "{} missed (+{live_after} live) of a history of {HISTORY} not recovered: {resumed}",
                    missed_before
                ))
            ),
            Case::Outside | Case::OtherEpoch => assert!(
                !recovered,
                "{}",
                context(&format!("{case:?} ({missed_before} missed) recovered: {resumed}"))
            ),
        }
        held.sort_by_key(|f| seq_of(f).unwrap());
        if recovered {
            totals.recovered += 1;
            assert!(
                config.is_none() && reload == State::default(),
                "{}",
                context("no snapshots")
            );
            assert!(
                (missed_before..=missed_before + live_after).contains(&missed),
                "{}",
                context(&format!(
                    "missed {missed}, expected {missed_before}..={}",
                    missed_before + live_after
                ))
            );
            if live_after == 0 {
                assert_eq!(missed, missed_before, "{}", context("missed"));
            }
            // The replay covers from+1 ..= from+missed, every one of them.
            let seen: BTreeSet<u64> = held.iter().filter_map(seq_of).collect();
            for seq in from + 1..=from + missed {
                assert!(
                    seen.contains(&seq),
                    "{}",
                    context(&format!("seq {seq} not replayed"))
                );
            }
            totals.replayed += missed;
            for frame in held {
                sub.apply(frame);
            }
        } else {
            totals.reloaded += 1;
            if case == Case::OtherEpoch {
                totals.other_epoch += 1;
            }
            assert_eq!(missed, 0, "{}", context("missed of a reload"));
            assert_eq!(
                config,
                Some(json!("{}")),
                "{}",
                context("the config snapshot")
            );
            assert_eq!(
                reload,
                publisher.state_at(pos_seq),
                "{}",
                context("the reload's snapshots are the state at its pos")
            );
            // A discontinuity: state from the snapshots, events from pos on.
            for frame in &held {
                assert!(
                    seq_of(frame).unwrap() <= pos_seq,
                    "{}",
                    context("held after pos")
                );
            }
            check_run(&sub, &publisher, &context("before the reload"));
            sub.state = reload;
            sub.last = pos_seq;
            sub.run_start = pos_seq;
            sub.applied.clear();
        }
        sub.c = Some(c);
        // Catch up with what the publisher has had acknowledged, live.
        let behind = publisher.last_seq - sub.last;
        sub.read_events(behind);
        check_run(&sub, &publisher, &context("after the resume"));
        assert_eq!(
            sub.state,
            publisher.state_at(sub.last),
            "{}",
            context("the subscriber's state")
        );
        totals.cycles += 1;
    }
    totals.room_events = publisher.last_seq;
    let chats_acked = publisher.chats_sent;
    println!(
        "{totals:?}; {} events acknowledged ({chats_acked} chats); {} duplicate copies dropped by seq; {:.1?}",
        publisher.acked,
        sub.duplicates_dropped,
        started.elapsed()
    );
    assert_eq!(totals.cycles, CYCLES);
    assert!(totals.recovered >= CYCLES / 3, "{totals:?}");
    assert!(
        totals.reloaded - totals.other_epoch >= CYCLES / 5,
        "{totals:?}"
    );
    assert!(totals.other_epoch >= 10, "{totals:?}");
    assert!(totals.with_live_during_resume >= CYCLES / 4, "{totals:?}");
}

/// The subscriber's run of applied events since its last reload is exactly the room's
/// events over that range: every one, once, in order, as the publisher saw it (so the chat
/// messages it shows are exactly the ones published).
fn check_run(sub: &Subscriber, publisher: &Publisher, context: &str) {
    let expected: Vec<(u64, &Value)> = match sub.run_start < sub.last {
        true => publisher
            .truth
            .range(sub.run_start + 1..=sub.last)
            .map(|(s, f)| (*s, f))
            .collect(),
        false => Vec::new(),
    };
    let got: Vec<(u64, &Value)> = sub.applied.iter().map(|(s, f)| (*s, f)).collect();
    if got != expected {
        let first = got
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(expected.len()));
        panic!(
            "{context}: the applied events differ from the room's at index {first}: got {:?}, \
             expected {:?} (lengths {} and {})",
            got.get(first),
            expected.get(first),
            got.len(),
            expected.len()
        );
    }
    let chats = |events: &[(u64, &Value)]| -> Vec<Value> {
        events
            .iter()
            .filter(|(_, f)| f["type"] == "chat")
            .map(|(_, f)| f["data"]["message"].clone())
            .collect()
    };
    assert_eq!(chats(&got), chats(&expected), "{context}: chat messages");
}

/// A subscriber of chat, counter and poll in `room`, with its profile.
fn subscribed(addr: SocketAddr, room: &str) -> (Client, Value) {
    let (mut c, profile) = Client::pact(addr, room);
    for (i, topic) in TOPICS.iter().enumerate() {
        let ok = c.call(json!({"type":"subscribe","data":topic}), &format!("sub{i}"));
        assert_eq!(ok["type"], "ok", "{ok}");
    }
    (c, profile)
}

#[test]
fn another_epoch_reloads_with_the_current_state() {
    let mut rng = Rng::seeded("another epoch");
    let addr = server_with(2, |c| {
        c.history_size = 50;
        c.max_message_rate = 0;
    });
    let (mut publisher, profile) = Publisher::new(addr, "epochs");
    let epoch = profile["pos"]["epoch"].as_str().unwrap().to_owned();
    publisher.publish_n(&mut rng, 30);
    publisher.settle();
    // Until there are counters and polls to reload.
    loop {
        let state = publisher.state_at(publisher.last_seq);
        if !state.counters.is_empty() && !state.polls.is_empty() {
            break;
        }
        publisher.publish_n(&mut rng, 1);
        publisher.settle();
    }
    let (mut c, _) = subscribed(addr, "epochs");
    // Even a position the room has (seq 0, seq 10) is not recovered in another epoch.
    for (i, seq) in [0, 10, publisher.last_seq].into_iter().enumerate() {
        let reference = format!("e{i}");
        c.send(
            json!({"type":"resume","ref":reference,"data":{"epoch":"some-other-epoch","seq":seq}}),
        );
        let mut frames = Vec::new();
        let resumed = loop {
            let f = c.recv();
            if f["type"] == "resumed" {
                break f;
            }
            frames.push(f);
        };
        assert_eq!(
            resumed,
            json!({"type":"resumed","ref":reference,"data":{"recovered":false,"missed":0,"pos":{"epoch":epoch,"seq":publisher.last_seq}}})
        );
        assert_eq!(frames[0], json!({"type":"config","data":"{}"}));
        let mut state = State::default();
        for f in &frames[1..] {
            assert!(seq_of(f).is_none(), "snapshots carry no seq: {f}");
            assert!(state.take(f), "{f}");
        }
        assert_eq!(state, publisher.state_at(publisher.last_seq));
        assert!(
            !state.counters.is_empty() && !state.polls.is_empty(),
            "{state:?}"
        );
    }
    // The same position in the right epoch: nothing missed.
    let ok = c.call(
        json!({"type":"resume","data":{"epoch":epoch,"seq":publisher.last_seq}}),
        "same",
    );
    assert_eq!(ok["data"]["recovered"], true);
    assert_eq!(ok["data"]["missed"], 0);
}

#[test]
fn a_position_ahead_of_the_room_and_malformed_positions_are_invalid_data() {
    let mut rng = Rng::seeded("bad positions");
    let addr = server_with(2, |c| c.max_message_rate = 0);
    let (mut publisher, profile) = Publisher::new(addr, "ahead");
    let epoch = profile["pos"]["epoch"].as_str().unwrap().to_owned();
    publisher.publish_n(&mut rng, 3);
    publisher.settle();
    let (mut c, _) = subscribed(addr, "ahead");
    let ahead = [publisher.last_seq + 1, publisher.last_seq + 1000, u64::MAX];
    for (i, seq) in ahead.into_iter().enumerate() {
        let reference = format!("ahead{i}");
        let reply = c.call(
            json!({"type":"resume","data":{"epoch":epoch,"seq":seq}}),
            &reference,
        );
        assert_eq!(reply["type"], "error", "{reply}");
        assert_eq!(reply["ref"], reference.as_str());
        assert_eq!(reply["data"]["code"], "invalid_data", "{reply}");
    }
    let malformed = [
        json!({"type":"resume"}),
        json!({"type":"resume","data":null}),
        json!({"type":"resume","data":[epoch, 1]}),
        json!({"type":"resume","data":"pos"}),
        json!({"type":"resume","data":{"epoch":epoch}}),
        json!({"type":"resume","data":{"seq":1}}),
        json!({"type":"resume","data":{"epoch":"","seq":1}}),
        json!({"type":"resume","data":{"epoch":7,"seq":1}}),
        json!({"type":"resume","data":{"epoch":epoch,"seq":-1}}),
        json!({"type":"resume","data":{"epoch":epoch,"seq":1.5}}),
        json!({"type":"resume","data":{"epoch":epoch,"seq":"1"}}),
        json!({"type":"resume","data":{"epoch":epoch,"seq":null}}),
        json!({"type":"resume","data":{"epoch":epoch,"seq":1e300}}),
        json!({"type":"resume","data":{"epoch":"e".repeat(1000),"seq":1}}),
    ];
    for (i, message) in malformed.into_iter().enumerate() {
        let reference = format!("bad{i}");
        let reply = c.call(message.clone(), &reference);
        assert_eq!(reply["type"], "error", "{message} → {reply}");
        assert_eq!(reply["ref"], reference.as_str(), "{message} → {reply}");
        assert_eq!(reply["data"]["code"], "invalid_data", "{message} → {reply}");
    }
    // Without a ref: the same error, without one.
    c.send(json!({"type":"resume","data":{"epoch":epoch}}));
    let error = c.recv_type("error");
    assert_eq!(error["data"]["code"], "invalid_data");
    assert!(error.get("ref").is_none(), "{error}");
    // The connection is as good as before: a valid resume recovers (nothing missed).
    let resumed = c.call(
        json!({"type":"resume","data":{"epoch":epoch,"seq":publisher.last_seq - 1}}),
        "good",
    );
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    assert_eq!(resumed["data"]["recovered"], true);
    assert_eq!(resumed["data"]["missed"], 1);
}

/// `history` pages: the newest events oldest first, each as it was sent (with its seq),
/// bounded by the history size, paged back with `before`.
#[test]
fn history_returns_the_last_events_oldest_first_and_pages_back() {
    let mut rng = Rng::seeded("history");
    const SIZE: u64 = 10;
    let addr = server_with(2, |c| {
        c.history_size = SIZE as usize;
        c.max_message_rate = 0;
    });
    let (mut publisher, _) = Publisher::new(addr, "hist");
    // An empty room's history.
    let (mut reader, profile) = Client::pact(addr, "hist");
    let epoch = profile["pos"]["epoch"].clone();
    let page = reader.call(json!({"type":"history","data":{"limit":5}}), "h0");
    assert_eq!(
        page,
        json!({"type":"history","ref":"h0","data":{"events":[],"pos":{"epoch":epoch,"seq":0}}})
    );
    publisher.publish_n(&mut rng, 25);
    publisher.settle();
    let last = publisher.last_seq;
    assert_eq!(last, 25);
    // `reader` subscribes to nothing: history is not limited to subscriptions.
    let expect = |from: u64, to: u64| -> Value {
        let events: Vec<Value> = match from <= to {
            true => publisher
                .truth
                .range(from..=to)
                .map(|(_, f)| f.clone())
                .collect(),
            false => Vec::new(),
        };
        json!({"events":events,"pos":{"epoch":epoch,"seq":last}})
    };
    let cases: [(Value, u64, u64); 8] = [
        (json!({"limit":100}), last - SIZE + 1, last),
        (json!({"limit":3}), last - 2, last),
        (json!({"limit":1}), last, last),
        (json!({"limit":3,"before":20}), 17, 19),
        (json!({"limit":100,"before":20}), last - SIZE + 1, 19),
        (
            json!({"limit":100,"before":last + 1}),
            last - SIZE + 1,
            last,
        ),
        (
            json!({"limit":5,"before":last - SIZE + 2}),
            last - SIZE + 1,
            last - SIZE + 1,
        ),
        (json!({"limit":0}), 1, 0),
    ];
    for (i, (data, from, to)) in cases.into_iter().enumerate() {
        let reference = format!("h{}", i + 1);
        let page = reader.call(json!({"type":"history","data":data}), &reference);
        assert_eq!(page["type"], "history", "{page}");
        assert_eq!(page["ref"], reference.as_str());
        assert_eq!(page["data"], expect(from, to), "{data}");
    }
    // Before the oldest kept event: nothing (those are gone), not older ones.
    for before in [1, 5, last - SIZE + 1] {
        let page = reader.call(
            json!({"type":"history","data":{"limit":10,"before":before}}),
            "old",
        );
        assert_eq!(page["data"]["events"], json!([]), "before {before}");
    }
    // Every page is oldest first with strictly increasing seqs, and mixes the event kinds.
    let page = reader.call(json!({"type":"history","data":{"limit":100}}), "all");
    let events = page["data"]["events"].as_array().unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| seq_of(e).unwrap()).collect();
    assert_eq!(seqs, (last - SIZE + 1..=last).collect::<Vec<_>>());
    // A malformed history request.
    for (i, data) in [json!({"limit":-1}), json!({"before":"x"}), json!([1])]
        .into_iter()
        .enumerate()
    {
        let reference = format!("bad{i}");
        let reply = reader.call(json!({"type":"history","data":data}), &reference);
        assert_eq!(reply["type"], "error", "{reply}");
        assert_eq!(reply["data"]["code"], "invalid_data", "{reply}");
    }
}
