//! Tokens of an identity provider with the real `rookery` binary: RS256/ES256 keys from a
//! JWKS served by a tiny HTTP server in this test process (with kid rotation, forged kids
//! and a malformed set), a public key file, and `aud`/`iss` checks. Each refusal is a clear
//! `invalid_token` error and the connection goes on anonymous.

mod common;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

const BOUND: Duration = Duration::from_secs(30);
const RSA1: &str = include_str!("fixtures/rsa1.key");
const RSA2: &str = include_str!("fixtures/rsa2.key");
const EC1: &str = include_str!("fixtures/ec1.key");
const EC1_PUB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ec1.pub");
const MALFORMED_PUB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/malformed.pub");

/// A JWKS server: answers every request with the current document, counting requests.
struct Idp {
    port: u16,
    body: Arc<Mutex<Vec<u8>>>,
    hits: Arc<(Mutex<usize>, Condvar)>,
}

impl Idp {
    fn start(body: Vec<u8>) -> Idp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let body = Arc::new(Mutex::new(body));
        let hits = Arc::new((Mutex::new(0usize), Condvar::new()));
        let (b, h) = (body.clone(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                let doc = b.lock().unwrap().clone();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    doc.len()
                );
                let _ = stream.write_all(response.as_bytes());
                let _ = stream.write_all(&doc);
                let (count, changed) = &*h;
                *count.lock().unwrap() += 1;
                changed.notify_all();
            }
        });
        Idp { port, body, hits }
    }

    fn serve(&self, body: Vec<u8>) {
        *self.body.lock().unwrap() = body;
    }

    fn hits(&self) -> usize {
        *self.hits.0.lock().unwrap()
    }

    /// Waits until at least `n` requests were answered.
    fn wait_hits(&self, n: usize) {
        let (count, changed) = &*self.hits;
        let (count, timeout) = changed
            .wait_timeout_while(count.lock().unwrap(), BOUND, |c| *c < n)
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "the JWKS was fetched {} times, not {n}",
            *count
        );
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn private(alg: Algorithm, pem: &str) -> EncodingKey {
    match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
    }
}

fn jwks(keys: &[(&str, Algorithm, &str)]) -> Vec<u8> {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(kid, alg, pem)| {
            let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&private(*alg, pem), *alg).unwrap();
            let mut jwk = serde_json::to_value(jwk).unwrap();
            jwk["kid"] = json!(kid);
            jwk
        })
        .collect();
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

/// An IdP-style token: `aud` `app`, `iss` `https://idp.test`, valid ten minutes, unless
/// `claims` says otherwise.
fn idp_token(alg: Algorithm, pem: &str, kid: Option<&str>, sub: &str, claims: Value) -> String {
    let mut all =
        json!({"sub": sub, "aud": "app", "iss": "https://idp.test", "exp": now_s() + 600});
    for (k, v) in claims.as_object().unwrap() {
        all[k] = v.clone();
    }
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, &all, &private(alg, pem)).unwrap()
}

/// The server's log (stderr) as it comes, and a signal for each line.
type Log = Arc<(Mutex<String>, Condvar)>;

/// Waits until the log contains `text`; returns the log.
fn wait_log(log: &Log, text: &str) -> String {
    let (lines, more) = &**log;
    let (lines, timeout) = more
        .wait_timeout_while(lines.lock().unwrap(), BOUND, |l| !l.contains(text))
        .unwrap();
    assert!(!timeout.timed_out(), "{text:?} not logged: {lines}");
    lines.clone()
}

/// Starts the binary with `args`; its stderr (the log) is collected.
fn start(args: &[&str]) -> (common::Running, String, Log) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rookery"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--store",
            "memory",
            "--cores",
            "2",
        ])
        .args(args)
        .env("ROOKERY_LOG", "info")
        .env("ROOKERY_LOG_FORMAT", "text")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let log: Log = Arc::default();
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.0.lock().unwrap().push_str(&(line + "\n"));
            sink.1.notify_all();
        }
    });
    let (addr, _) = common::listening(&mut child);
    (common::Running(child), addr, log)
}

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

fn next(ws: &mut Ws) -> Value {
    let deadline = Instant::now() + BOUND;
    loop {
        assert!(Instant::now() < deadline, "nothing within {BOUND:?}");
        match ws.read().expect("a message") {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] != "ping" {
                    return v;
                }
            }
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

/// Connects a Pact client with `token`: its user id, and the token error it was told.
fn who(addr: &str, token: &str) -> (String, Option<String>) {
    let url = format!("ws://{addr}/websocket?room=idp&token={token}");
    let (mut ws, _) = tungstenite::connect(url).expect("connects");
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(BOUND)).unwrap();
    }
    let mut error = None;
    loop {
        let v = next(&mut ws);
        match v["type"].as_str() {
            Some("error") => {
                assert_eq!(v["data"]["code"], "invalid_token", "{v}");
                error = Some(v["data"]["message"].as_str().unwrap().to_owned());
            }
            Some("profile") => {
                let id = v["data"]["id"].as_str().unwrap().to_owned();
                if error.is_none() && id.len() == 36 {
                    // Anonymous: the refusal follows the profile in Pact's welcome.
                    let v = next(&mut ws);
                    assert_eq!(v["data"]["code"], "invalid_token", "{v}");
                    error = Some(v["data"]["message"].as_str().unwrap().to_owned());
                }
                return (id, error);
            }
            _ => {}
        }
    }
}

fn accepted(addr: &str, token: &str, user: &str) {
    let (id, error) = who(addr, token);
    assert_eq!((id.as_str(), error), (user, None));
}

fn refused(addr: &str, token: &str, why: &str) {
    let (id, error) = who(addr, token);
    assert_eq!(id.len(), 36, "anonymous, got {id}");
    let error = error.expect("an error");
    assert!(error.contains(why), "expected {why:?} in {error:?}");
}

#[test]
fn jwks_tokens_with_kid_rotation_forged_kids_and_claim_checks() {
    let idp = Idp::start(jwks(&[
        ("r1", Algorithm::RS256, RSA1),
        ("e1", Algorithm::ES256, EC1),
    ]));
    let url = format!("http://127.0.0.1:{}/jwks", idp.port);
    let (_server, addr, _log) = start(&[
        "--jwt-jwks-url",
        &url,
        "--jwt-audience",
        "app",
        "--jwt-issuer",
        "https://idp.test",
    ]);
    let none = json!({});
    accepted(
        &addr,
        &idp_token(Algorithm::RS256, RSA1, Some("r1"), "ann", none.clone()),
        "ann",
    );
    accepted(
        &addr,
        &idp_token(Algorithm::ES256, EC1, Some("e1"), "ben", none.clone()),
        "ben",
    );
    // Every failure says which.
    let cases = [
        (
            idp_token(
                Algorithm::RS256,
                RSA1,
                Some("r1"),
                "x",
                json!({"aud":"other"}),
            ),
            "audience",
        ),
        (
            idp_token(
                Algorithm::RS256,
                RSA1,
                Some("r1"),
                "x",
                json!({"iss":"https://evil.test"}),
            ),
            "issuer",
        ),
        (
            idp_token(
                Algorithm::RS256,
                RSA1,
                Some("r1"),
                "x",
                json!({"exp": now_s() - 30}),
            ),
            "expired",
        ),
        (
            idp_token(
                Algorithm::RS256,
                RSA1,
                Some("r1"),
                "x",
                json!({"nbf": now_s() + 600}),
            ),
            "not valid yet",
        ),
        (
            idp_token(Algorithm::RS256, RSA2, Some("r1"), "x", none.clone()),
            "signature",
        ),
        (
            idp_token(Algorithm::ES256, EC1, Some("r1"), "x", none.clone()),
            "does not accept",
        ),
        (
            encode(
                &Header::default(),
                &json!({"sub":"x"}),
                &EncodingKey::from_secret(b"k"),
            )
            .unwrap(),
            "HS256",
        ),
        ("not.a.jwt".to_owned(), "malformed"),
    ];
    for (token, why) in &cases {
        refused(&addr, token, why);
    }

    // The provider rotates its keys: a token with the new kid waits for one refresh.
    let before = idp.hits();
    idp.serve(jwks(&[("r2", Algorithm::RS256, RSA2)]));
    accepted(
        &addr,
        &idp_token(Algorithm::RS256, RSA2, Some("r2"), "cat", none.clone()),
        "cat",
    );
    assert_eq!(idp.hits(), before + 1, "one refresh for the new kid");
    // The retired key is gone.
    refused(
        &addr,
        &idp_token(Algorithm::RS256, RSA1, Some("r1"), "x", none.clone()),
        "key id",
    );

    // A flood of forged kids costs the provider nothing more within the cooldown.
    let before = idp.hits();
    for i in 0..20 {
        let forged = idp_token(
            Algorithm::RS256,
            RSA2,
            Some(&format!("forged-{i}")),
            "x",
            none.clone(),
        );
        refused(&addr, &forged, "\"forged-");
    }
    assert!(
        idp.hits() <= before + 1,
        "{} fetches for 20 forged kids",
        idp.hits() - before
    );
    // The server is fine: the rotated key still works.
    accepted(
        &addr,
        &idp_token(Algorithm::RS256, RSA2, Some("r2"), "dan", none),
        "dan",
    );
}

#[test]
fn a_malformed_jwks_is_logged_and_retried_and_its_url_query_never_logged() {
    let idp = Idp::start(b"this is no key set".to_vec());
    let url = format!("http://127.0.0.1:{}/jwks?api_key=s3cr3t-query", idp.port);
    let (_server, addr, log) = start(&["--jwt-jwks-url", &url]);
    idp.wait_hits(1);
    idp.serve(jwks(&[("r1", Algorithm::RS256, RSA1)]));
    // A token arriving now makes the server fetch again rather than wait for the backoff.
    accepted(
        &addr,
        &idp_token(Algorithm::RS256, RSA1, Some("r1"), "eve", json!({})),
        "eve",
    );
    let log = wait_log(&log, "JWKS fetched");
    assert!(log.contains("JWKS fetch failed"), "{log}");
    assert!(log.contains("not a JSON Web Key Set"), "{log}");
    assert!(
        !log.contains("s3cr3t-query"),
        "the URL's query was logged: {log}"
    );
}

#[test]
fn a_public_key_file_verifies_its_algorithm_only() {
    let (_server, addr, _log) = start(&["--jwt-public-key", EC1_PUB]);
    accepted(
        &addr,
        &idp_token(Algorithm::ES256, EC1, None, "fay", json!({})),
        "fay",
    );
    refused(
        &addr,
        &idp_token(Algorithm::RS256, RSA1, None, "x", json!({})),
        "does not accept",
    );
}

#[test]
fn a_bad_public_key_file_refuses_to_start_naming_it() {
    for (path, why) in [
        (MALFORMED_PUB, "neither an RSA nor a P-256"),
        ("/nonexistent/key.pem", "cannot read it"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_rookery"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--store",
                "memory",
                "--jwt-public-key",
                path,
            ])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--jwt-public-key") && stderr.contains(path),
            "{stderr}"
        );
        assert!(stderr.contains(why), "{stderr}");
        assert!(out.stdout.is_empty(), "it did not listen");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_rookery"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--store",
            "memory",
            "--jwt-jwks-url",
            "ftp://idp/keys",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--jwt-jwks-url"));
}
