//! `--redis-url` as users write it, against a real `redis-server`: a password (percent-
//! encoded in the URL), an ACL user with its password, a database number, and TLS
//! (`rediss://`, the server's certificate checked against `--redis-ca`). Each test has
//! two nodes chatting through that Redis, so that both the command and the subscriber
//! connections of every node went through the same opening.

use rookery_tests::redis::{node_with, TestRedis};
use rookery_tests::tls::TestCert;
use rookery_tests::*;
use serde_json::json;
use std::net::SocketAddr;

/// Two nodes on `url` (and `--redis-ca` when given); a chat from one reaches the other.
fn chat_through(redis: &TestRedis, url: &str, ca: Option<&std::path::Path>, room: &str) {
    chat_through_with(redis, url, room, |c| c.redis_ca = ca.map(ToOwned::to_owned));
}

fn chat_through_with(
    redis: &TestRedis,
    url: &str,
    room: &str,
    more: impl Fn(&mut rookery::Config),
) {
    let tweak = |c: &mut rookery::Config| {
        c.redis_url = Some(url.to_owned());
        more(c);
    };
    let (a, b) = (node_with(redis, 1, tweak), node_with(redis, 1, tweak));
    chat_between(a, b, room);
}

fn chat_between(a: SocketAddr, b: SocketAddr, room: &str) {
    let (mut on_a, _) = Client::pact(a, room);
    let (mut on_b, _) = Client::pact(b, room);
    for (i, c) in [&mut on_a, &mut on_b].into_iter().enumerate() {
        let reply = c.call(json!({"type":"subscribe","data":"chat"}), &format!("s{i}"));
        assert_eq!(reply["type"], "ok", "{reply}");
    }
    on_a.send(json!({"type":"chat","data":"through redis"}));
    let m = on_b.recv_type("chat");
    assert_eq!(m["data"]["message"], "through redis", "{m}");
    assert_eq!(m["seq"], 1, "{m}");
    on_b.send(json!({"type":"chat","data":"and back"}));
    assert_eq!(on_a.recv_type("chat")["seq"], 1);
    assert_eq!(on_a.recv_type("chat")["seq"], 2);
}

#[test]
fn a_password_in_the_url_opens_a_redis_that_requires_one() {
    let password = "p@ss:w/rd%";
    let redis = TestRedis::start_with_password(password);
    let url = format!("redis://:p%40ss%3Aw%2Frd%25@{}", redis.addr);
    chat_through(&redis, &url, None, "pw");
    // The nodes really wrote there (as the default user, with the password).
    assert!(redis.cli(&["EXISTS", "rk:{pw}:seq"]).starts_with('1'));
}

#[test]
fn an_acl_user_with_its_password_opens_redis_as_that_user() {
    let redis = TestRedis::start_with_password("admin-only");
    // A user limited to Rookery's keys and channels, with every command.
    let set = redis.cli(&[
        "ACL", "SETUSER", "rook", "on", ">rook-pw", "~rk:*", "&rk:*", "+@all",
    ]);
    assert_eq!(set.trim(), "OK");
    let url = format!("redis://rook:rook-pw@{}", redis.addr);
    chat_through(&redis, &url, None, "acl");
    // Its commands ran as `rook` (the default user's password is not in the URL).
    let log = redis.cli(&["ACL", "LOG"]);
    assert!(!log.contains("rook"), "rook was refused something: {log}");
    let clients = redis.cli(&["CLIENT", "LIST"]);
    assert!(clients.contains("user=rook"), "{clients}");
}

#[test]
fn a_database_number_puts_the_keys_in_that_database() {
    let redis = TestRedis::start();
    let url = format!("redis://{}/3", redis.addr);
    chat_through(&redis, &url, None, "db");
    let in_3 = redis.cli(&["-n", "3", "KEYS", "rk:*"]);
    assert!(in_3.contains("rk:{db}:seq"), "{in_3}");
    let in_0 = redis.cli(&["-n", "0", "KEYS", "rk:{db}*"]);
    assert!(in_0.trim().is_empty(), "database 0 has {in_0}");
}

#[test]
fn two_nodes_chat_through_a_tls_only_redis() {
    let cert = TestCert::new();
    let redis = TestRedis::start_tls(&cert.cert_path(), &cert.key_path());
    // The certificate names 127.0.0.1 (and localhost): the host is checked against it.
    let url = format!("rediss://{}", redis.addr);
    chat_through(&redis, &url, Some(&cert.cert_path()), "tls");
    assert!(redis.cli(&["EXISTS", "rk:{tls}:seq"]).starts_with('1'));
}

#[test]
fn a_client_certificate_for_a_redis_that_asks_for_one() {
    let (server, client) = (TestCert::new(), TestCert::new());
    let redis = TestRedis::start_mutual_tls(
        &server.cert_path(),
        &server.key_path(),
        &client.cert_path(),
        [client.cert_path(), client.key_path()],
    );
    let url = format!("rediss://{}", redis.addr);
    chat_through_with(&redis, &url, "mtls", |c| {
        c.redis_ca = Some(server.cert_path());
        c.redis_cert = Some(client.cert_path());
        c.redis_key = Some(client.key_path());
    });
    assert!(redis.cli(&["EXISTS", "rk:{mtls}:seq"]).starts_with('1'));
}
