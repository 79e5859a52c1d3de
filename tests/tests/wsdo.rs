//! Every example of seed 001 (websockets.do) over real sockets and real HTTP requests.

use rookery_tests::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn is_client_id(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 15 && s.starts_with("client_"))
}

#[test]
fn connected_lists_the_others_and_presence_events_follow() {
    let addr = server(2);
    let (mut a, connected) = Client::wsdo(addr, "lobby");
    assert!(is_client_id(&connected["clientID"]), "{connected}");
    assert_eq!(connected["latency"], 0);
    assert_eq!(connected["payload"]["members"], json!([]));
    let a_id = connected["clientID"].clone();

    let (mut b, connected) = Client::wsdo(addr, "lobby");
    let b_id = connected["clientID"].clone();
    assert_eq!(
        connected["payload"]["members"],
        json!([{"clientID": a_id, "presence": {}}]),
        "self excluded"
    );
    let joined = a.recv_type("PRESENCE:JOINED");
    assert_eq!(joined["payload"], json!({"clientID": b_id, "presence": {}}));
    assert_eq!(
        joined["clientID"], a_id,
        "clientID is the recipient's own id"
    );

    // Any letter case; the sender gets the update too.
    b.send(json!({"type":"presence","payload":{"username":"Cerulean"}}));
    for (c, me) in [(&mut a, &a_id), (&mut b, &b_id)] {
        let updated = c.recv_type("PRESENCE:UPDATED");
        assert_eq!(
            updated["payload"],
            json!({"clientID": b_id, "presence": {"username":"Cerulean"}})
        );
        assert_eq!(&updated["clientID"], me);
    }
    b.ws.close(None).unwrap();
    let left = a.recv_type("PRESENCE:LEFT");
    assert_eq!(left["payload"], json!({"clientID": b_id}));
}

#[test]
fn emit_by_post_and_by_get_reaches_every_listener() {
    let addr = server(2);
    let (mut a, _) = Client::wsdo(addr, "news");
    let (mut b, _) = Client::wsdo(addr, "news");
    a.recv_type("PRESENCE:JOINED");
    let (status, body) = http_json(addr, "POST", "/news/emit", &[], br#"{"hello":"world"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    let event_id = body["eventID"].as_str().unwrap().to_owned();
    assert!(
        event_id.starts_with("evt_") && event_id.len() == 12,
        "{event_id}"
    );
    assert_eq!(body["clients"].as_array().unwrap().len(), 2);
    for c in [&mut a, &mut b] {
        let data = c.recv_type("DATA");
        assert_eq!(data["payload"], json!({"hello":"world"}));
        assert_eq!(data["eventID"], event_id.as_str());
        assert!(is_client_id(&data["clientID"]));
        assert!(data["latency"].is_u64());
        assert!(data.get("requires_ack").is_none());
    }
    let (status, _) = http_json(addr, "GET", "/news/emit?hello=there&n=1", &[], b"");
    assert_eq!(status, 200);
    for c in [&mut a, &mut b] {
        assert_eq!(
            c.recv_type("DATA")["payload"],
            json!({"hello":"there","n":"1"})
        );
    }
}

#[test]
fn clients_parameter_targets_random_or_named_clients_never_everyone() {
    let addr = server(2);
    let mut clients: Vec<(Client, String)> = (0..3)
        .map(|_| {
            let (c, connected) = Client::wsdo(addr, "targets");
            (c, connected["clientID"].as_str().unwrap().to_owned())
        })
        .collect();
    // Drain the presence events of the later joiners.
    for (i, (c, _)) in clients.iter_mut().enumerate() {
        for _ in 0..(2 - i) {
            c.recv_type("PRESENCE:JOINED");
        }
    }
    let (status, body) = http_json(addr, "GET", "/targets/emit?x=1&clients=2", &[], b"");
    assert_eq!(status, 200, "{body}");
    let picked: BTreeSet<String> = body["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(picked.len(), 2, "two distinct clients");
    for (c, id) in clients.iter_mut() {
        if picked.contains(id) {
            assert_eq!(c.recv_type("DATA")["payload"], json!({"x":"1"}));
        } else {
            c.expect_silence(150);
        }
    }
    let (status, body) = http_json(addr, "GET", "/targets/emit?x=1&clients=4", &[], b"");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("not_enough_clients"))
    );
    let (status, body) = http_json(addr, "GET", "/targets/emit?x=1&clients=0", &[], b"");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_clients"))
    );
    let (status, body) = http_json(
        addr,
        "GET",
        "/targets/emit?x=1&clients=client_nobody00",
        &[],
        b"",
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("no_clients"))
    );
    for (c, _) in clients.iter_mut() {
        c.expect_silence(100);
    }
    let named = format!("/targets/emit?x=2&clients={}", clients[1].1);
    let (status, _) = http_json(addr, "GET", &named, &[], b"");
    assert_eq!(status, 200);
    assert_eq!(clients[1].0.recv_type("DATA")["payload"], json!({"x":"2"}));
    clients[0].0.expect_silence(100);
    clients[2].0.expect_silence(100);
}

#[test]
fn require_ack_answers_200_when_all_ack_and_408_naming_the_silent_across_cores() {
    // Every target must ack within the timeout: a margin for a busy machine. (The 408 case
    // below waits it out.)
    const ACK_TIMEOUT: Duration = Duration::from_secs(5);
    let addr = server_with(2, |c| c.ack_timeout_ms = ACK_TIMEOUT.as_millis() as u64);
    let emit = move |n: u32| {
        http_json_within(
            addr,
            "POST",
            "/acks/emit?require-ack=true",
            &[],
            format!("{{\"n\":{n}}}").as_bytes(),
            ACK_TIMEOUT + WAIT,
        )
    };
    // Pact clients report their core: make sure targets sit on both cores.
    let mut pact = Vec::new();
    let mut cores = BTreeSet::new();
    while cores.len() < 2 {
        let (c, profile) = Client::pact(addr, "acks");
        cores.insert(profile["connectionDetails"]["core"].as_u64().unwrap());
        pact.push((c, profile["id"].as_str().unwrap().to_owned()));
        assert!(pact.len() < 64, "connections never spread over both cores");
    }
    let mut wsdo: Vec<(Client, String)> = (0..4)
        .map(|_| {
            let (c, connected) = Client::wsdo(addr, "acks");
            (c, connected["clientID"].as_str().unwrap().to_owned())
        })
        .collect();

    // Everyone acks: 200 with every id.
    let emitter = std::thread::spawn(move || emit(1));
    let mut expected = BTreeSet::new();
    for (c, id) in wsdo.iter_mut() {
        let data = loop {
            let m = c.recv();
            if m["type"] == "DATA" {
                break m;
            }
        };
        assert_eq!(data["requires_ack"], true);
        c.send(json!({"type":"ACK","payload":{"eventID": data["eventID"]}}));
        assert_eq!(
            c.recv_type("ACK-RECIEVED")["payload"]["eventID"],
            data["eventID"]
        );
        expected.insert(id.clone());
    }
    for (c, id) in pact.iter_mut() {
        let data = c.recv_type("broadcast");
        assert_eq!(data["requires_ack"], true);
        c.send(json!({"type":"ack","data":{"eventID": data["eventID"]}}));
        expected.insert(id.clone());
    }
    let (status, body) = emitter.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let acked: BTreeSet<String> = body["acked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(acked, expected);

    // One wsdo client never acks: 408 after the timeout, naming it.
    let silent = wsdo[0].1.clone();
    let started = Instant::now();
    let emitter = std::thread::spawn(move || emit(2));
    for (c, _) in wsdo.iter_mut().skip(1) {
        let data = c.recv_type("DATA");
        c.send(json!({"type":"ACK","payload":{"eventID": data["eventID"]}}));
    }
    for (c, _) in pact.iter_mut() {
        let data = c.recv_type("broadcast");
        c.send(json!({"type":"ack","data":{"eventID": data["eventID"]}}));
    }
    let (status, body) = emitter.join().unwrap();
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["code"], "ack_timeout");
    assert_eq!(body["missing"], json!([silent]));
    assert_eq!(body["acked"].as_array().unwrap().len(), expected.len() - 1);
    assert!(started.elapsed() >= ACK_TIMEOUT - Duration::from_millis(100));
}

#[test]
fn history_keeps_recent_payloads_in_order() {
    let addr = server_with(2, |c| c.history_size = 3);
    for i in 0..5 {
        let (status, _) = http_json(
            addr,
            "POST",
            "/hist/emit",
            &[],
            format!("{{\"i\":{i}}}").as_bytes(),
        );
        assert_eq!(status, 200);
    }
    let (status, body) = http_json(addr, "GET", "/hist/history", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(body, json!({"history":[{"i":2},{"i":3},{"i":4}]}));
    let (_, body) = http_json(addr, "GET", "/hist/history?limit=2", &[], b"");
    assert_eq!(body, json!({"history":[{"i":3},{"i":4}]}));
    let (status, body) = http_json(addr, "GET", "/hist/history?limit=x", &[], b"");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_limit"))
    );
    let (_, body) = http_json(addr, "GET", "/empty/history", &[], b"");
    assert_eq!(body, json!({"history":[]}));
}

#[test]
fn ping_pong_measures_latency_and_silence_gets_ping_timeout() {
    // A client that does not PONG for two intervals (2 s) is closed: a margin for the
    // answering client's thread to be scheduled late on a busy machine.
    let addr = server_with(2, |c| {
        c.ping_interval_ms = 1_000;
        c.close_grace_ms = 100;
    });
    let connecting = Instant::now();
    let (mut a, _) = Client::wsdo(addr, "pings");
    let (mut silent, connected) = Client::wsdo(addr, "pings");
    let silent_id = connected["clientID"].clone();
    // The next PING to `c`, past the presence event of `silent` joining.
    fn next_ping(c: &mut Client) -> Value {
        loop {
            let m = c.recv();
            if m["type"] == "PING" {
                return m;
            }
            assert_eq!(m["type"], "PRESENCE:JOINED");
        }
    }
    let ping = next_ping(&mut a);
    assert_eq!(ping["payload"], json!({}));
    // The delay to measure.
    std::thread::sleep(Duration::from_millis(60));
    a.send(json!({"type":"PONG"}));
    // The PONG's latency comes with a later PING (the next one may have left before the
    // PONG arrived, with the latency so far: none).
    let mut latency = 0;
    for _ in 0..3 {
        latency = next_ping(&mut a)["latency"].as_u64().unwrap();
        if latency > 0 {
            break;
        }
    }
    // At least the delay, at most the time since the PING can have been sent.
    let most = connecting.elapsed().as_millis() as u64;
    assert!(
        (60..=most).contains(&latency),
        "latency {latency}, at most {most}"
    );
    a.send(json!({"type":"PONG"}));
    // `a` goes on answering every PING, on its own thread, until it sees `silent` leave.
    let answering = std::thread::spawn(move || loop {
        let m = a.recv();
        if m["type"] == "PRESENCE:LEFT" {
            return m;
        }
        if m["type"] == "PING" {
            a.send(json!({"type":"PONG"}));
        }
    });
    // The silent one: ERROR PING_TIMEOUT, then the close.
    let error = loop {
        let m = silent.recv();
        if m["type"] == "ERROR" {
            break m;
        }
        assert_eq!(m["type"], "PING");
    };
    assert_eq!(error["payload"]["code"], "PING_TIMEOUT");
    assert_eq!(
        error["payload"]["message"],
        "Client did not respond to PING event"
    );
    assert_eq!(silent.expect_close().0, 1001);
    let left = answering.join().expect("the answering client stays");
    assert_eq!(left["payload"]["clientID"], silent_id);
}

#[test]
fn bad_input_gets_error_events_and_the_socket_stays_open() {
    let addr = server(1);
    let (mut c, _) = Client::wsdo(addr, "junk");
    for (junk, code) in [
        ("not json", "INVALID_JSON"),
        ("[1]", "INVALID_JSON"),
        (r#"{"payload":{}}"#, "INVALID_JSON"),
        (r#"{"type":"HELLO"}"#, "UNKNOWN_TYPE"),
        (r#"{"type":"PRESENCE","payload":[1]}"#, "INVALID_PAYLOAD"),
        (
            r#"{"type":"ACK","payload":{"eventID":5}}"#,
            "INVALID_PAYLOAD",
        ),
    ] {
        c.send_text(junk);
        let e = c.recv_type("ERROR");
        assert_eq!(e["payload"]["code"], code, "{junk}");
        assert!(e["payload"]["message"].is_string());
    }
    c.ws.send(tungstenite::Message::binary(vec![1, 2, 3]))
        .unwrap();
    assert_eq!(c.recv_type("ERROR")["payload"]["code"], "UNSUPPORTED_DATA");
    // An ACK for an unknown event is harmless.
    c.send(json!({"type":"ACK","payload":{"eventID":"evt_unknown0"}}));
    c.send(json!({"type":"PRESENCE","payload":{"ok":true}}));
    assert_eq!(
        c.recv_type("PRESENCE:UPDATED")["payload"]["presence"],
        json!({"ok":true})
    );
}

#[test]
fn an_emit_reaches_pact_members_of_the_same_room_as_a_broadcast() {
    let addr = server(2);
    let (mut pact, _) = Client::pact(addr, "shared");
    let (mut wsdo, connected) = Client::wsdo(addr, "shared");
    assert_eq!(connected["payload"]["members"].as_array().unwrap().len(), 1);
    let (status, _) = http_json(addr, "POST", "/shared/emit", &[], br#"{"hello":"pact"}"#);
    assert_eq!(status, 200);
    let b = pact.recv_type("broadcast");
    assert_eq!(b["data"], json!({"hello":"pact"}));
    assert!(b["eventID"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(wsdo.recv_type("DATA")["payload"], json!({"hello":"pact"}));
}
