//! TLS (`--tls-cert`, `--tls-key`): every endpoint over `wss://` and `https://` with real
//! TLS clients (rustls, trusting a certificate made for the test), and what is refused:
//! TLS 1.1, plain HTTP, garbage, silence, bad certificate files.

use rookery_tests::tls::*;
use rookery_tests::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A Pact client in `room`, subscribed to chat.
fn subscribed(addr: SocketAddr, room: &str, cert: &TestCert, name: &str) -> Client {
    let (mut c, _) = Client::pact_tls(addr, room, &cert.client());
    let reply = c.call(json!({"type":"subscribe","data":"chat"}), name);
    assert_eq!(reply["type"], "ok", "{reply}");
    c
}

#[test]
fn pact_chat_round_trips_over_wss_on_every_core() {
    let cert = TestCert::new();
    let addr = tls_server_with(&cert, 2, |_| {});
    let mut a = subscribed(addr, "tls-room", &cert, "a");
    let mut b = subscribed(addr, "tls-room", &cert, "b");
    a.send(json!({"type":"chat","data":{"text":"over TLS"}}));
    for c in [&mut a, &mut b] {
        let chat = c.recv_type("chat");
        assert_eq!(chat["data"]["message"], json!({"text":"over TLS"}));
    }
    // A message larger than one TLS record (16 KiB) each way, and many small ones sent
    // together (one batch of frames: packed into few records).
    let big = "x".repeat(50_000);
    b.send(json!({"type":"chat","data":big}));
    for c in [&mut a, &mut b] {
        assert_eq!(c.recv_type("chat")["data"]["message"], json!(big));
    }
    let many: Vec<Value> = (0..50)
        .map(|i| json!({"type":"chat","data":format!("m{i}")}))
        .collect();
    a.send_all(&many);
    for c in [&mut a, &mut b] {
        for i in 0..50 {
            assert_eq!(
                c.recv_type("chat")["data"]["message"],
                json!(format!("m{i}"))
            );
        }
    }
    assert_eq!(a.peer_certificate(), cert.der, "the configured certificate");
}

#[test]
fn websockets_do_listens_over_wss_and_emits_over_https() {
    let cert = TestCert::new();
    let addr = tls_server_with(&cert, 2, |_| {});
    let mut listener = Client::connect_tls(addr, "/news/listen", &cert.client());
    assert_eq!(listener.recv()["type"], "CONNECTED");
    let (status, body) = https(
        addr,
        &cert.client(),
        "POST",
        "/news/emit",
        &[],
        br#"{"hello":"tls"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let event = listener.recv();
    assert_eq!(event["payload"], json!({"hello":"tls"}), "{event}");
}

#[test]
fn http_routes_answer_over_https() {
    let cert = TestCert::new();
    let addr = tls_server_with(&cert, 1, |_| {});
    let (status, body) = https(addr, &cert.client(), "GET", "/healthz", &[], b"");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, body) = https(addr, &cert.client(), "GET", "/nowhere", &[], b"");
    assert_eq!(status, 404, "{body}");
    // The server's own origin is its https:// one.
    let own = format!("https://localhost:{}", addr.port());
    let host = format!("localhost:{}", addr.port());
    let mut stream = tls_stream(addr, &cert.client()).unwrap();
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nOrigin: {own}\r\n\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains(&format!("access-control-allow-origin: {own}")),
        "{text}"
    );
}

/// A ClientHello that offers TLS 1.1 at most (no `supported_versions`), as an old client
/// sends it.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version: TLS 1.1
    body.extend([0x42; 32]); // random
    body.push(0); // no session id
    let suites: [u8; 8] = [0xc0, 0x13, 0xc0, 0x14, 0x00, 0x2f, 0x00, 0x35];
    body.extend((suites.len() as u16).to_be_bytes());
    body.extend(suites);
    body.extend([1, 0]); // compression: null
    let name = b"localhost";
    let mut list = vec![0];
    list.extend((name.len() as u16).to_be_bytes());
    list.extend(name);
    let mut sni = vec![0x00, 0x00];
    sni.extend(((list.len() + 2) as u16).to_be_bytes());
    sni.extend((list.len() as u16).to_be_bytes());
    sni.extend(list);
    body.extend((sni.len() as u16).to_be_bytes());
    body.extend(sni);
    let mut handshake = vec![1]; // client_hello
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// Everything the server sends on `stream` until it closes it.
fn read_to_end(mut stream: TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match read_some(&mut stream, &mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the server did not close the socket: {e} (got {got:?})"),
        }
    }
}

#[test]
fn tls_1_1_is_refused_with_an_alert_and_others_go_on() {
    let cert = TestCert::new();
    let addr = tls_server_with(&cert, 1, |_| {});
    let mut chat = subscribed(addr, "old-clients", &cert, "s");
    let mut old = TcpStream::connect(addr).unwrap();
    old.write_all(&tls11_client_hello()).unwrap();
    let answer = read_to_end(old);
    // One fatal alert record (handshake_failure or protocol_version), then the end.
    assert_eq!(answer.len(), 7, "{answer:?}");
    assert_eq!(answer[0], 0x15, "an alert record: {answer:?}");
    assert_eq!(answer[5], 2, "fatal: {answer:?}");
    assert!([40, 70].contains(&answer[6]), "{answer:?}");
    // A client limited to TLS 1.2 gets in.
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let tls12 = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let (status, _) = https(
        addr,
        &std::sync::Arc::new(tls12),
        "GET",
        "/healthz",
        &[],
        b"",
    );
    assert_eq!(status, 200);
    chat.send(json!({"type":"chat","data":"still here"}));
    assert_eq!(chat.recv_type("chat")["data"]["message"], "still here");
}

#[test]
fn plain_http_to_a_tls_port_is_told_in_plain_http_and_others_go_on() {
    let cert = TestCert::new();
    let addr = tls_server_with(&cert, 1, |_| {});
    let mut chat = subscribed(addr, "mixed", &cert, "s");
    let (status, body) = http_get(addr, "/healthz");
    assert_eq!(status, 400, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "tls_required", "{body}");
    // A plain WebSocket client fails to connect, cleanly.
    let plain = tungstenite::connect(format!("ws://{addr}/websocket?room=mixed"));
    assert!(plain.is_err(), "a ws:// upgrade on a TLS port");
    chat.send(json!({"type":"chat","data":"undisturbed"}));
    assert_eq!(chat.recv_type("chat")["data"]["message"], "undisturbed");
}

#[test]
fn garbage_instead_of_a_client_hello_closes_that_socket_only() {
    let cert = TestCert::new();
    let addr = tls_server_with(&cert, 1, |_| {});
    let mut chat = subscribed(addr, "garbage", &cert, "s");
    for garbage in [
        &[0x16, 0x03, 0x01, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef][..],
        &[0x00; 64][..],
        &[0xff, 0x13, 0x37, 0x00, 0x10][..],
    ] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(garbage).unwrap();
        let answer = read_to_end(s);
        assert!(
            answer.is_empty() || answer[0] == 0x15,
            "nothing, or an alert: {answer:?}"
        );
    }
    chat.send(json!({"type":"chat","data":"fine"}));
    assert_eq!(chat.recv_type("chat")["data"]["message"], "fine");
    assert_eq!(
        https(addr, &cert.client(), "GET", "/healthz", &[], b"").0,
        200
    );
}

#[test]
fn the_handshake_deadline_covers_the_tls_handshake() {
    let cert = TestCert::new();
    // Long enough for the clients that do finish (their handshakes and the chat client's
    // request) on a busy machine; the silent and stalled ones are closed after it.
    let addr = tls_server_with(&cert, 1, |c| c.handshake_timeout_ms = 2_000);
    let mut chat = subscribed(addr, "slow", &cert, "s");
    // Opens TCP and sends nothing.
    let silent = TcpStream::connect(addr).unwrap();
    // Sends its ClientHello, then nothing (never finishes the handshake).
    let mut stalled = TcpStream::connect(addr).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut hello = rustls::ClientConnection::new(cert.client(), name).unwrap();
    let mut first = Vec::new();
    hello.write_tls(&mut first).unwrap();
    stalled.write_all(&first).unwrap();
    // Finishes the handshake, then sends no request.
    let idle = tls_stream(addr, &cert.client()).unwrap();

    assert!(
        read_to_end(silent).is_empty(),
        "nothing said to a silent socket"
    );
    let answer = read_to_end(stalled);
    assert_eq!(answer[0], 0x16, "its handshake was answered: {answer:?}");
    // The one that has keys is told why (408, encrypted), then closed cleanly.
    let mut idle = idle;
    let mut text = String::new();
    idle.read_to_string(&mut text).expect("a clean close");
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    chat.send(json!({"type":"chat","data":"on time"}));
    assert_eq!(chat.recv_type("chat")["data"]["message"], "on time");
}

#[test]
fn the_server_refuses_to_start_with_bad_tls_files() {
    let cert = TestCert::new();
    let other = TestCert::new();
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let encrypted = dir.path().join("encrypted.pem");
    std::fs::write(
        &encrypted,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");
    let start = |cert_path: Option<&std::path::Path>, key_path: Option<&std::path::Path>| {
        let mut config = rookery::Config::local();
        config.cores = Some(1);
        config.tls_cert = cert_path.map(Into::into);
        config.tls_key = key_path.map(Into::into);
        match rookery::start(config) {
            Ok(_) => panic!("started with cert {cert_path:?} and key {key_path:?}"),
            Err(e) => e.to_string(),
        }
    };
    let (c, k) = (cert.cert_path(), cert.key_path());
    let cases: Vec<(String, &str)> = vec![
        (start(Some(&c), None), "--tls-cert is set without --tls-key"),
        (start(None, Some(&k)), "--tls-key is set without --tls-cert"),
        (start(Some(&missing), Some(&k)), "cannot read it"),
        (start(Some(&junk), Some(&k)), "no PEM certificate in it"),
        (
            start(Some(&broken), Some(&k)),
            "the certificate cannot be parsed",
        ),
        (start(Some(&c), Some(&junk)), "no PEM private key in it"),
        (start(Some(&c), Some(&c)), "no PEM private key in it"),
        (
            start(Some(&c), Some(&encrypted)),
            "an encrypted private key",
        ),
        (
            start(Some(&c), Some(&other.key_path())),
            "is not the key of the certificate",
        ),
    ];
    for (error, expected) in cases {
        assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        assert!(!error.contains('\n'), "one line: {error:?}");
        assert!(!error.contains("PRIVATE KEY"), "no key material: {error:?}");
    }
}
