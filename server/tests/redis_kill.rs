//! `kill -9` of a node sharing rooms through Redis (`--engine redis`, SPEC §5.4): the other
//! nodes remove its members within 8 s (`left` diffs to their presence watchers, its
//! members' ephemeral votes withdrawn), and a node killed again and again leaves no zombie
//! presence behind. Real processes: the binary, and a `redis-server` of the test's own
//! (`scripts/test.sh` installs it).

mod common;

use common::{eventually, get_status, http_status, listening, until, Running};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// A `redis-server` on a free loopback port, nothing persisted, killed on drop.
fn redis() -> (Running, u16, tempfile::TempDir) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server runs (scripts/test.sh installs it)");
    until(
        Duration::from_secs(10),
        "redis-server did not start",
        || {
            let pong = TcpStream::connect(("127.0.0.1", port))
                .ok()
                .and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                    s.write_all(b"PING\r\n").ok()?;
                    let mut buf = [0u8; 7];
                    s.read_exact(&mut buf).ok()?;
                    Some(buf)
                });
            pong == Some(*b"+PONG\r\n")
        },
    );
    (Running(child), port, dir)
}

fn node(redis_port: u16) -> (Running, String) {
    node_with(redis_port, &[])
}

/// A node with more flags.
fn node_with(redis_port: u16, extra: &[&str]) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rookery"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--cores",
            "1",
            "--store",
            "memory",
        ])
        .args(["--engine", "redis", "--redis-url"])
        .arg(format!("redis://127.0.0.1:{redis_port}"))
        .args(extra)
        .env("ROOKERY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (addr, _) = listening(&mut child);
    until(Duration::from_secs(10), "the node never got ready", || {
        get_status(&addr, "/readyz") == 200
    });
    (Running(child), addr)
}

fn connect(addr: &str, room: &str) -> Ws {
    let (ws, _) = tungstenite::connect(format!("ws://{addr}/websocket?room={room}")).unwrap();
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    ws
}

fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).unwrap();
}

/// The next message of type `kind` (skipping others), failing after 10 s.
fn next(ws: &mut Ws, kind: &str) -> Value {
    next_of(ws, &[kind])
}

/// The next message of one of these types (skipping others), failing after 10 s.
fn next_of(ws: &mut Ws, kinds: &[&str]) -> Value {
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < Duration::from_secs(10), "no {kinds:?}");
        match ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if kinds.iter().any(|k| v["type"] == *k) {
                    return v;
                }
            }
            Ok(_) => {}
            Err(e) => panic!("no {kinds:?}: {e}"),
        }
    }
}

#[test]
fn a_killed_nodes_members_leave_within_8_seconds_and_leave_no_zombies() {
    let (_redis, port, _dir) = redis();
    let (_a, a) = node(port);
    let mut watcher = connect(&a, "kill");
    next(&mut watcher, "profile");
    send(
        &mut watcher,
        json!({"type":"subscribe","data":"ephemeralPoll"}),
    );
    send(&mut watcher, json!({"type":"subscribe","data":"presence"}));
    assert_eq!(next(&mut watcher, "presence")["data"]["count"], 1);
    for cycle in 0..3 {
        let (mut b, b_addr) = node(port);
        let mut voter = connect(&b_addr, "kill");
        let mut quiet = connect(&b_addr, "kill");
        next(&mut voter, "profile");
        next(&mut quiet, "profile");
        assert_eq!(next(&mut watcher, "presence:joined")["data"]["count"], 2);
        assert_eq!(next(&mut watcher, "presence:joined")["data"]["count"], 3);
        send(
            &mut voter,
            json!({"type":"ephemeralPoll","data":{"id":"p","answer":"yes"}}),
        );
        let stats = next(&mut watcher, "ephemeralPoll");
        assert_eq!(stats["data"]["stats"], json!({"yes": 1}), "cycle {cycle}");

        b.0.kill().unwrap(); // SIGKILL: no goodbye
        b.0.wait().unwrap();
        let killed = Instant::now();
        // Two `left` diffs and, as the voter's last connection went, its vote withdrawn
        // (in whichever order the reaper removed them).
        let (mut counts, mut withdrawn) = (Vec::new(), None);
        while counts.len() < 2 || withdrawn.is_none() {
            let m = next_of(&mut watcher, &["presence:left", "ephemeralPoll"]);
            if m["type"] == "ephemeralPoll" {
                withdrawn = Some(m["data"]["stats"].clone());
            } else {
                counts.push(m["data"]["count"].clone());
            }
        }
        counts.sort_by_key(|c| c.as_u64());
        assert_eq!(counts, vec![json!(1), json!(2)], "cycle {cycle}");
        assert_eq!(withdrawn, Some(json!({})), "cycle {cycle}");
        let took = killed.elapsed();
        assert!(took <= Duration::from_secs(8), "cycle {cycle}: {took:?}");
        drop((voter, quiet));
    }
    // No zombie: the room holds the watcher alone.
    send(
        &mut watcher,
        json!({"type":"subscribe","data":"presence","ref":"again"}),
    );
    let snap = next(&mut watcher, "presence");
    assert_eq!(snap["data"]["count"], 1, "{snap}");
}

const SECRET: &str = "kill-test-secret";
const ADMIN: &str = "kill-test-admin";

/// An HS256 token for `sub` (the nodes' `--jwt-secret` is [`SECRET`]).
fn token(sub: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": sub, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// `redis-cli` against the test's Redis: its output lines.
fn cli(port: u16, args: &[&str]) -> Vec<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A jac connection of user `sub` on `addr`; its client id.
fn jac_user(addr: &str, sub: &str) -> (Ws, String) {
    let path = format!(
        "ws://{addr}/jac/websocket?channel_id=c&token={}",
        token(sub)
    );
    let (mut ws, _) = tungstenite::connect(path).unwrap();
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    let hello = next(&mut ws, "connection");
    let id = hello["data"]["client_id"].as_str().unwrap().to_owned();
    (ws, id)
}

/// Posts `/api/notify` to `addr` with `body`; the status.
fn notify(addr: &str, body: &str) -> u16 {
    http_status(
        addr,
        &format!(
            "POST /api/notify HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ADMIN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// The next text message that is not a jac control message (`connection`, pings…).
fn next_data(ws: &mut Ws) -> Value {
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < Duration::from_secs(10), "no data");
        match ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v.get("type").is_none() {
                    return v;
                }
            }
            Ok(_) => {}
            Err(e) => panic!("no data: {e}"),
        }
    }
}

#[test]
fn a_killed_nodes_connections_leave_the_directory_and_sends_find_the_user_elsewhere() {
    let (_redis, port, _dir) = redis();
    let flags = ["--jwt-secret", SECRET, "--admin-key", ADMIN];
    let (mut a, a_addr) = node_with(port, &flags);
    let (_b, b_addr) = node_with(port, &flags);
    let (_c, c_addr) = node_with(port, &flags);
    // Erin on a, twice (one user, two client ids); a bystander on b.
    let (_erin1, erin1_id) = jac_user(&a_addr, "n::erin");
    let (_erin2, _) = jac_user(&a_addr, "n::erin");
    let (_bob, bob_id) = jac_user(&b_addr, "n::bob");
    let user_key = "rk:who:u:n::erin";
    let client_key = format!("rk:who:c:{erin1_id}");
    // The directory lists a's connections (fire and forget: wait until it has).
    until(Duration::from_secs(10), "erin never listed", || {
        cli(port, &["HLEN", user_key]) == ["2"]
    });
    let fields = cli(port, &["HKEYS", user_key]);
    let a_node = fields[0].split_once(':').unwrap().0.to_owned();
    let a_index = format!("rk:node:{a_node}:who");
    assert_eq!(
        cli(port, &["SCARD", &a_index]),
        ["3"],
        "one user, two clients"
    );
    assert_eq!(cli(port, &["EXISTS", &client_key]), ["1"]);

    a.0.kill().unwrap(); // SIGKILL: no goodbye
    a.0.wait().unwrap();
    let killed = Instant::now();
    // Erin comes back on b.
    let (mut erin_b, _) = jac_user(&b_addr, "n::erin");
    // Within the reap window, a's entries are gone: erin's key holds b's connection
    // only, erin's old client ids are unknown, a's own set of keys is gone; bob stays.
    eventually(killed, Duration::from_secs(8), || {
        let fields = cli(port, &["HKEYS", user_key]);
        let gone = fields.len() == 1
            && !fields[0].starts_with(&a_node)
            && cli(port, &["EXISTS", &client_key, &a_index]) == ["0"];
        (!gone).then(|| format!("a's directory entries stayed: {fields:?}"))
    });
    assert_eq!(cli(port, &["EXISTS", &format!("rk:who:c:{bob_id}")]), ["1"]);
    // A send to erin from c reaches her on b.
    assert_eq!(
        notify(&c_addr, r#"{"users":["n::erin"],"data":{"hi":"erin"}}"#),
        200
    );
    assert_eq!(next_data(&mut erin_b), json!({"hi":"erin"}));
}

#[test]
fn a_stalled_node_taken_for_dead_lists_itself_again_when_it_resumes() {
    let (_redis, port, _dir) = redis();
    let flags = ["--jwt-secret", SECRET, "--admin-key", ADMIN];
    let (a, a_addr) = node_with(port, &flags);
    let (_b, b_addr) = node_with(port, &flags);
    let mut watcher = connect(&b_addr, "stall");
    next(&mut watcher, "profile");
    send(&mut watcher, json!({"type":"subscribe","data":"presence"}));
    assert_eq!(next(&mut watcher, "presence")["data"]["count"], 1);
    let mut member = connect(&a_addr, "stall");
    next(&mut member, "profile");
    assert_eq!(next(&mut watcher, "presence:joined")["data"]["count"], 2);
    let (mut erin, _) = jac_user(&a_addr, "n::erin");
    let user_key = "rk:who:u:n::erin";
    until(Duration::from_secs(10), "erin never listed", || {
        cli(port, &["HLEN", user_key]) == ["1"]
    });

    // Stalled, not dead: its sockets stay open. The others take it for dead: its member
    // leaves, its directory entries go.
    common::signal(&a.0, "STOP");
    assert_eq!(next(&mut watcher, "presence:left")["data"]["count"], 1);
    until(Duration::from_secs(10), "erin stayed listed", || {
        cli(port, &["EXISTS", user_key]) == ["0"]
    });
    common::signal(&a.0, "CONT");
    // Back: it lists itself again, and its member is in the room again.
    assert_eq!(next(&mut watcher, "presence:joined")["data"]["count"], 2);
    until(Duration::from_secs(10), "erin never listed again", || {
        cli(port, &["HLEN", user_key]) == ["1"]
    });
    assert_eq!(
        notify(&b_addr, r#"{"users":["n::erin"],"data":{"back":1}}"#),
        200
    );
    assert_eq!(next_data(&mut erin), json!({"back":1}));
    drop(member);
}

#[test]
fn a_reaping_left_unfinished_is_taken_up_by_another_node() {
    let (_redis, port, _dir) = redis();
    // As a reaper that died halfway leaves it: node ff claimed long ago (score 0 on
    // Redis's clock), its directory entries still there, next to another node's.
    let (ghost, other) = ("00000000000000ff", "00000000000000ee");
    let user_key = "rk:who:u:n::ghost";
    let ghost_index = format!("rk:node:{ghost}:who");
    cli(port, &["HSET", user_key, &format!("{ghost}:1"), "1"]);
    cli(port, &["HSET", user_key, &format!("{other}:2"), "1"]);
    cli(port, &["SADD", &ghost_index, &format!("0|{user_key}")]);
    cli(port, &["ZADD", "rk:reaping", "0", ghost]);
    // And node dd, whose reaping was left unfinished but which heartbeats again.
    let alive = "00000000000000dd";
    let now =
        "local t = redis.call('TIME') return redis.call('ZADD', KEYS[1], t[1] * 1000, ARGV[1])";
    cli(port, &["EVAL", now, "1", "rk:nodes", alive]);
    cli(port, &["ZADD", "rk:reaping", "0", alive]);

    let (_b, _) = node(port);
    // The dead node's entries go, the other node's stay; the live one is told; no
    // reaping is left.
    let flag = format!("rk:node:{alive}:reaped");
    eventually(Instant::now(), Duration::from_secs(10), || {
        let fields = cli(port, &["HKEYS", user_key]);
        let done = fields == [format!("{other}:2")]
            && cli(port, &["EXISTS", &ghost_index]) == ["0"]
            && cli(port, &["EXISTS", &flag]) == ["1"]
            && cli(port, &["ZCARD", "rk:reaping"]) == ["0"];
        (!done).then(|| format!("not taken up: {fields:?}"))
    });
}
