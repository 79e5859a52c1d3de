//! The client and the scripts against a real `redis-server` (one per test, see `testing`).

use super::resp::{self, Frame};
use super::testing::TestRedis;
use super::{scripts, Client, RedisError, Stats};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn run<F: std::future::Future<Output = ()>>(f: F) {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("a runtime")
        .block_on(f)
}

/// Waits (bounded) until the client's connection is up.
async fn connected(addr: std::net::SocketAddr) -> Client {
    let link = super::Link::new(&format!("redis://{addr}"), &Default::default());
    connected_through(link.expect("a good URL")).await
}

/// Waits (bounded) until a client on `link` is connected.
async fn connected_through(link: super::Link) -> Client {
    let client = Client::start(link.addr, Arc::new(link), Arc::new(Stats::default()));
    let start = Instant::now();
    loop {
        match client.call(&["PING"]).await {
            Ok(_) => return client,
            Err(_) => {
                assert!(start.elapsed() < Duration::from_secs(10), "never connected");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// `n` tasks that each `SET` their own key and `GET` it back, all at once on `client`
/// (pipelined); each answers the value it read.
fn set_and_get_at_once(client: &Client, n: usize) -> Vec<monoio::task::JoinHandle<Option<i64>>> {
    (0..n)
        .map(|i| {
            let client = client.clone();
            monoio::spawn(async move {
                let key = format!("k{i}");
                client.call(&["SET", &key, &i.to_string()]).await.unwrap();
                resp::int(&client.call(&["GET", &key]).await.unwrap())
            })
        })
        .collect()
}

#[test]
fn replies_come_back_to_their_callers_in_order() {
    let redis = TestRedis::start();
    run(async move {
        let client = connected(redis.addr).await;
        let calls = set_and_get_at_once(&client, 200);
        for (i, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await, Some(i as i64));
        }
        let error = client.call(&["INCR", "k1", "extra"]).await.unwrap_err();
        assert!(matches!(error, RedisError::Reply(_)), "{error:?}");
    });
}

#[test]
fn tls_carries_pipelined_calls_and_replies_larger_than_a_record() {
    let redis = TestRedis::start_tls();
    let files = super::TlsFiles {
        ca: redis.ca.clone(),
        ..Default::default()
    };
    let link = super::Link::new(&format!("rediss://{}/1", redis.addr), &files).unwrap();
    run(async move {
        let client = connected_through(link).await;
        // 300 KB each way: many TLS records, and more than one read of the socket.
        let big: String = (0..300_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        client.call(&["SET", "big", &big]).await.unwrap();
        let calls = set_and_get_at_once(&client, 100);
        let got = client.call(&["GET", "big"]).await.unwrap();
        assert_eq!(resp::text(&got).map(str::len), Some(big.len()));
        assert_eq!(resp::text(&got), Some(big.as_str()));
        for (i, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await, Some(i as i64));
        }
        // `/1` selected database 1 on this connection.
        let info = client.call(&["CLIENT", "INFO"]).await.unwrap();
        assert!(resp::text(&info).unwrap().contains(" db=1 "), "{info:?}");
    });
}

#[test]
fn a_dead_server_fails_calls_at_once_and_a_new_one_is_found() {
    let redis = TestRedis::start();
    let addr = redis.addr;
    run(async move {
        let client = connected(addr).await;
        drop(redis);
        let start = Instant::now();
        // Fails (at once, or once the broken connection is noticed), never hangs.
        while client.call(&["PING"]).await.is_ok() {
            assert!(start.elapsed() < Duration::from_secs(10));
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(matches!(
            client.call(&["PING"]).await,
            Err(RedisError::Unavailable(_))
        ));
    });
}

/// EVALs the sequencer script for a chat-like event; returns its answer.
async fn sequence(client: &Client, room: &str, op: &[&str]) -> Vec<Frame> {
    use super::wire::{channel, key};
    let mut args = vec![
        "EVAL".to_owned(),
        scripts::SEQUENCE.to_owned(),
        "6".into(),
        key(room, "epoch"),
        key(room, "seq"),
        key(room, "log"),
        key(room, "state"),
        key(room, "poll:d:p"),
        key(room, "polls"),
        channel(room),
        "fresh".into(),
        "100".into(),
    ];
    args.extend(op.iter().map(|s| s.to_string()));
    match client.call(&args).await.unwrap() {
        Frame::Array(parts) => parts,
        other => panic!("{other:?}"),
    }
}

/// The room's history stream: (entry id, message) of each entry, oldest first.
async fn log_of(client: &Client, room: &str) -> Vec<(String, String)> {
    let log = client
        .call(&["XRANGE", &super::wire::key(room, "log"), "-", "+"])
        .await
        .unwrap();
    let Frame::Array(entries) = log else { panic!() };
    entries
        .iter()
        .map(|entry| {
            let Frame::Array(entry) = entry else { panic!() };
            let Frame::Array(fields) = &entry[1] else {
                panic!()
            };
            (
                resp::text(&entry[0]).unwrap().to_owned(),
                resp::text(&fields[1]).unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_sequencer_numbers_keeps_and_compares_exactly() {
    let redis = TestRedis::start();
    run(async move {
        let client = connected(redis.addr).await;
        let a = sequence(&client, "r", &["{}", "event"]).await;
        let b = sequence(&client, "r", &["{}", "event"]).await;
        assert_eq!(resp::text(&a[1]), Some("fresh"), "the epoch is made once");
        assert_eq!(resp::text(&b[2]), Some("2"));
        // Exact decimals: the script adds in decimal; a compare-and-set compares strings.
        let add = sequence(&client, "r", &["<", "counter", "c", "0.1", "", "", ">"]).await;
        assert_eq!(resp::text(&add[0]), Some("ok"));
        let add = sequence(&client, "r", &["<", "counter", "c", "0.2", "", "", ">"]).await;
        assert_eq!(resp::text(&add[0]), Some("ok"));
        let stale = ["<", "counter", "c", "0.1", "0.1", "0.2", ">"];
        let stale = sequence(&client, "r", &stale).await;
        assert_eq!(resp::text(&stale[0]), Some("conflict"));
        assert_eq!(
            resp::text(&stale[1]),
            Some("0.3"),
            "not 0.30000000000000004"
        );
        let cas = ["<", "counter", "c", "1", "0.3", "1.3", ">"];
        assert_eq!(
            resp::text(&sequence(&client, "r", &cas).await[0]),
            Some("ok")
        );
        // Votes: a repeat changes nothing, a move re-tallies.
        let vote = |a: &'static str| ["{\"x\":", "vote", "u1", a, "}", "d:p"];
        let v = sequence(&client, "r", &vote("yes")).await;
        assert_eq!(resp::text(&v[2]), Some("6"));
        assert_eq!(
            resp::text(&sequence(&client, "r", &vote("yes")).await[0]),
            Some("same")
        );
        let entries = log_of(&client, "r").await;
        assert_eq!(entries.len(), 6);
        assert_eq!(entries[3].1, "fresh 4\n<0.3>", "the sum is in the event");
        let (id, message) = &entries[5];
        assert_eq!(id, "6-0", "stream ids are seqs");
        assert_eq!(message, "fresh 6\n{\"x\":{\"yes\":1}}");
    });
}

/// Op `events`: several plain events in one call get the next seqs, in order, as if
/// proposed one by one, kept as one stream entry (its id the last seq) and published as
/// one message; the stream is trimmed by id, keeping at least the history size in events.
#[test]
fn a_run_of_events_is_sequenced_in_one_call_as_if_one_by_one() {
    let redis = TestRedis::start();
    run(async move {
        let client = connected(redis.addr).await;
        let one = sequence(&client, "r", &["a", "event"]).await;
        assert_eq!(resp::text(&one[2]), Some("1"));
        let run = sequence(&client, "r", &["", "events", "3", "b\nc d\ne"]).await;
        assert_eq!(resp::text(&run[0]), Some("ok"));
        assert_eq!(resp::text(&run[1]), Some("fresh"));
        assert_eq!(resp::text(&run[2]), Some("4"), "the last event's seq");
        let after = sequence(&client, "r", &["f", "event"]).await;
        assert_eq!(resp::text(&after[2]), Some("5"));
        let entries = log_of(&client, "r").await;
        let expected = [
            ("1-0", "fresh 1\na"),
            ("4-0", "fresh 2\nb\nc d\ne"),
            ("5-0", "fresh 5\nf"),
        ]
        .map(|(id, m)| (id.to_owned(), m.to_owned()));
        assert_eq!(entries, expected);
        // The history size (100 here): old entries go, whole, and never one of the last
        // 100 events (`~`: Redis drops whole nodes of up to 100 entries). Runs of 7, so
        // entries and events differ.
        for _ in 0..400 {
            sequence(&client, "t", &["", "events", "7", "x\nx\nx\nx\nx\nx\nx"]).await;
        }
        let entries = log_of(&client, "t").await;
        let first: u64 = entries[0]
            .1
            .split(['\n', ' '])
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            first <= 2800 - 100 + 1,
            "the last 100 events are kept: {first}"
        );
        assert!(entries.len() < 300, "trimmed: {} entries", entries.len());
    });
}

/// `SEQUENCE_ROOMS`: each room's run as op `events` would sequence it, in order (a room
/// may come twice), and a room whose run Redis refuses fails alone.
#[test]
fn runs_of_several_rooms_are_sequenced_in_one_call_each_as_alone() {
    use super::wire::{channel, key};
    let redis = TestRedis::start();
    run(async move {
        let client = connected(redis.addr).await;
        sequence(&client, "a", &["a0", "event"]).await;
        // Room "bad": its stream holds an id past anything its seq will give.
        client
            .call(&["XADD", &key("bad", "log"), "1000-0", "m", "x"])
            .await
            .unwrap();
        let runs = [
            ("a", "2", "a1\na2"),
            ("bad", "1", "z"),
            ("b", "1", "b1"),
            ("a", "1", "a3"),
        ];
        let mut args = vec!["EVAL".to_owned(), scripts::SEQUENCE_ROOMS.to_owned()];
        args.push((3 * runs.len()).to_string());
        for (room, _, _) in runs {
            args.extend([key(room, "epoch"), key(room, "seq"), key(room, "log")]);
        }
        args.push("100".into());
        for (room, count, bodies) in runs {
            let epoch = format!("new-{room}");
            args.extend([channel(room), epoch, count.into(), bodies.into()]);
        }
        let Frame::Array(answers) = client.call(&args).await.unwrap() else {
            panic!()
        };
        let answer = |i: usize| match &answers[i] {
            Frame::Array(parts) => parts
                .iter()
                .map(|p| resp::text(p).unwrap().to_owned())
                .collect(),
            other => vec![format!("{other:?}")],
        };
        assert_eq!(answer(0), ["ok", "fresh", "3"], "room a's epoch is kept");
        assert!(
            matches!(&answers[1], Frame::Error(e) if e.contains("ID")),
            "{:?}",
            answers[1]
        );
        assert_eq!(
            answer(2),
            ["ok", "new-b", "1"],
            "a new room's epoch is made"
        );
        assert_eq!(answer(3), ["ok", "fresh", "4"], "after the run before it");
        let expected = [
            ("1-0", "fresh 1\na0"),
            ("3-0", "fresh 2\na1\na2"),
            ("4-0", "fresh 4\na3"),
        ]
        .map(|(id, m)| (id.to_owned(), m.to_owned()));
        assert_eq!(log_of(&client, "a").await, expected);
        assert_eq!(
            log_of(&client, "b").await,
            [("1-0".to_owned(), "new-b 1\nb1".to_owned())]
        );
        assert_eq!(log_of(&client, "bad").await.len(), 1, "nothing added");
    });
}

/// The script's decimal addition against rust_decimal's (what a node alone computes), on
/// values of every sign, scale and length up to 28 digits: the same text, or a refusal
/// (`conflict`, so the node adds itself) where the sum needs more than 28 digits.
#[test]
fn the_scripts_decimal_sums_are_rust_decimals() {
    use rust_decimal::Decimal;
    use std::str::FromStr;
    let redis = TestRedis::start();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut value = move || {
        let digits = 1 + next() % 28;
        let mut text: String = (0..digits)
            .map(|_| char::from(b'0' + (next() % 10) as u8))
            .collect();
        let scale = (next() % (digits + 1)) as usize;
        if scale > 0 {
            text.insert(text.len() - scale, '.');
        }
        if next() % 2 == 0 {
            text.insert(0, '-');
        }
        Decimal::from_str(&text).unwrap().normalize()
    };
    let mut pairs: Vec<(Decimal, Decimal)> = (0..400).map(|_| (value(), value())).collect();
    for (a, b) in [
        ("0.1", "0.2"),
        ("1", "-1"),
        ("-0.5", "0.25"),
        ("9999999999999999999999999999", "1"),
        ("0.0000000000000000000000000001", "1"),
        ("123.450", "-123.45"),
    ] {
        pairs.push((Decimal::from_str(a).unwrap(), Decimal::from_str(b).unwrap()));
    }
    run(async move {
        let client = connected(redis.addr).await;
        let (mut summed, mut refused) = (0, 0);
        for (k, (a, b)) in pairs.iter().enumerate() {
            let id = k.to_string();
            let (a_text, b_text) = (a.normalize().to_string(), b.normalize().to_string());
            let first = sequence(&client, "d", &["", "counter", &id, &a_text, "", "", ""]).await;
            assert_eq!(resp::text(&first[0]), Some("ok"), "0 + {a_text}");
            let sum = sequence(&client, "d", &["", "counter", &id, &b_text, "", "", ""]).await;
            // rust_decimal keeps the larger scale unless it had to round.
            let exact = a
                .checked_add(*b)
                .filter(|s| s.scale() == a.scale().max(b.scale()))
                .map(|s| s.normalize());
            let fits = |s: &Decimal| {
                let text = s.abs().to_string().replace('.', "");
                text.trim_start_matches('0').len() <= 28
            };
            match exact.filter(fits) {
                Some(expected) => {
                    assert_eq!(resp::text(&sum[0]), Some("ok"), "{a_text} + {b_text}");
                    let held = client
                        .call(&["HGET", &super::wire::key("d", "state"), &format!("c:{id}")])
                        .await
                        .unwrap();
                    assert_eq!(
                        resp::text(&held),
                        Some(expected.to_string().as_str()),
                        "{a_text} + {b_text}"
                    );
                    summed += 1;
                }
                None => {
                    assert_eq!(resp::text(&sum[0]), Some("conflict"), "{a_text} + {b_text}");
                    refused += 1;
                }
            }
        }
        // Both paths were taken, often.
        assert!(
            summed >= 100 && refused >= 20,
            "{summed} sums, {refused} refusals"
        );
    });
}

/// Round trips per second, pipelined from many tasks and one at a time (busy machine,
/// indicative): `cargo test -p rookery --release round_trips -- --ignored --nocapture`.
#[test]
#[ignore]
fn round_trips() {
    let redis = TestRedis::start();
    run(async move {
        let client = connected(redis.addr).await;
        measure(&client, "plain").await;
    });
    // The same over TLS (`rediss://`, the server's certificate checked).
    let redis = TestRedis::start_tls();
    let files = super::TlsFiles {
        ca: redis.ca.clone(),
        ..Default::default()
    };
    let link = super::Link::new(&format!("rediss://{}", redis.addr), &files).unwrap();
    run(async move {
        let client = connected_through(link).await;
        measure(&client, "TLS").await;
    });
}

async fn measure(client: &Client, what: &str) {
    let n = 20_000;
    let start = Instant::now();
    for _ in 0..n {
        client.call(&["PING"]).await.unwrap();
    }
    let one = n as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let client = client.clone();
            monoio::spawn(async move {
                for _ in 0..n / 64 {
                    client.call(&["PING"]).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await;
    }
    let piped = (n / 64 * 64) as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let client = client.clone();
            monoio::spawn(async move {
                for i in 0..n / 64 {
                    let body = format!("{{\"n\":{i}}}");
                    sequence(&client, &format!("bench{}", t % 8), &[&body, "event"]).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await;
    }
    let scripted = (n / 64 * 64) as f64 / start.elapsed().as_secs_f64();
    println!(
        "{what}, busy machine, indicative: PING one at a time {one:.0}/s, PING pipelined (64 \
         tasks) {piped:.0}/s, sequencer EVAL pipelined (64 tasks, 8 rooms) {scripted:.0}/s"
    );
}
