//! Idle sessions park (give up their task, `server/src/shell/parking.rs`) and are started
//! again by whatever needs them: bytes from the client, frames the server has for them, a
//! full socket, a close from either side — on both io drivers. `rookery_sessions_parked`
//! says how many are parked.

use rookery::config::DriverChoice;
use rookery_tests::*;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

const KEY: &str = "parking-admin-key";

/// A connection that sends in quick succession stays running ("hot") until a ping interval
/// passes without it sending: pings every 300 ms here, so that such a connection parks again
/// soon, and a silence of many intervals (the clients read only when a test says so, so
/// they answer pings late) is no ping timeout.
fn quick_cooling(c: &mut rookery::config::Config) {
    c.ping_interval_ms = 300;
    c.ping_missed = 1000;
}

fn parked(addr: SocketAddr) -> u64 {
    metric(addr, "rookery_sessions_parked")
}

/// Waits until `n` sessions are parked and `n` connections open.
fn until_parked(addr: SocketAddr, n: u64) {
    eventually(WAIT, Duration::from_millis(20), || {
        let (p, c) = (parked(addr), metric(addr, "rookery_connections"));
        (p == n && c == n)
            .then_some(())
            .ok_or_else(|| format!("{p} parked of {c} connections, waiting for {n}"))
    });
}

fn parked_sessions_wake_for_what_they_send_and_are_sent(driver: DriverChoice) {
    let addr = server_with(1, |c| {
        c.driver = driver;
        c.admin_key = Some(KEY.into());
        quick_cooling(c);
    });
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (mut c, profile) = Client::pact(addr, "parking");
        c.call(json!({"type":"subscribe","data":"chat"}), "s");
        clients.push((c, profile["id"].as_str().unwrap().to_owned()));
    }
    until_parked(addr, 3);

    // A parked client speaks: its session wakes, handles it, and every member (all
    // parked) hears it, in order. (Five messages at once may make it hot: it parks again
    // once a ping interval passes without it sending.)
    for i in 0..5 {
        clients[1].0.send(json!({"type":"chat","data":i}));
    }
    for (c, _) in clients.iter_mut() {
        for i in 0..5 {
            assert_eq!(c.recv_type("chat")["data"]["message"], i);
        }
    }
    until_parked(addr, 3);

    // The server closes a parked connection (admin API): it is woken to send the close.
    let (mut kicked, id) = clients.remove(0);
    let auth = format!("Bearer {KEY}");
    let (status, body) = http_json(
        addr,
        "DELETE",
        &format!("/api/clients/{id}"),
        &[("Authorization", auth.as_str())],
        b"",
    );
    assert_eq!((status, &body["disconnected"]), (200, &json!(1)));
    assert_eq!(
        kicked.expect_close(),
        (1000, "disconnected by the server".into())
    );
    until_parked(addr, 2);

    // A parked client closes: the session wakes to its socket's end and leaves the room.
    let (gone, _) = clients.remove(0);
    drop(gone);
    until_parked(addr, 1);
    let details = wait_for_room(addr, "parking", |d| d["count"] == 1);
    assert_eq!(details["count"], 1);

    // And one more message reaches the last one, parked all along.
    let (mut late, _) = Client::pact(addr, "parking");
    late.send(json!({"type":"chat","data":"last"}));
    assert_eq!(clients[0].0.recv_type("chat")["data"]["message"], "last");
}

#[test]
fn parked_sessions_wake_on_io_uring() {
    parked_sessions_wake_for_what_they_send_and_are_sent(DriverChoice::Auto);
}

#[test]
fn parked_sessions_wake_on_epoll() {
    parked_sessions_wake_for_what_they_send_and_are_sent(DriverChoice::Epoll);
}

/// A parked connection whose socket fills (its client not reading) is started again to wait
/// for room, gets every frame in order once its client reads, and parks again. Pings keep
/// their default interval (25 s): nothing but the full socket wakes the session.
#[test]
fn a_parked_connection_with_a_full_socket_gets_everything_in_order() {
    const MESSAGES: usize = 700;
    let addr = server_with(1, |c| {
        c.admin_key = Some(KEY.into());
        c.max_outbound_bytes = 64 << 20;
    });
    let (mut reader, _) = Client::pact(addr, "full");
    until_parked(addr, 1);
    // ~42 MB: more than the socket buffers can hold here (the reader's up to 32 MB, the
    // server's 4 MB), so the flusher is left with the rest: a full socket.
    let filler = "x".repeat(60_000);
    let auth = format!("Bearer {KEY}");
    for i in 0..MESSAGES {
        let body = json!({"type":"broadcast","data":format!("{i:04}{filler}")}).to_string();
        let headers = [("Authorization", auth.as_str())];
        let (status, _) = http_json(
            addr,
            "POST",
            "/api/rooms/full/broadcast",
            &headers,
            body.as_bytes(),
        );
        assert_eq!(status, 200);
    }
    eventually(WAIT, Duration::from_millis(20), || {
        let queued = metric(addr, "rookery_send_queue_bytes");
        (queued > 1 << 20)
            .then_some(())
            .ok_or_else(|| format!("only {queued} bytes held back: the socket never filled"))
    });
    for i in 0..MESSAGES {
        let text = reader.recv_type("broadcast")["data"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(&text[..4], format!("{i:04}"), "message {i} out of order");
    }
    until_parked(addr, 1);
}
