//! Helpers for the integration tests: start a real server on `127.0.0.1:0` and talk to it
//! with real WebSocket clients (tungstenite, blocking, with timeouts) and raw TCP.

pub mod redis;

use rookery::Config;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
pub use std::time::Duration as _Duration;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

pub mod tls;

/// How long a test waits for an expected frame before failing.
pub const WAIT: Duration = Duration::from_secs(15);

/// Starts a server with `cores` cores; `tweak` adjusts the config first.
pub fn server_with(cores: usize, tweak: impl FnOnce(&mut Config)) -> SocketAddr {
    if std::env::var_os("ROOKERY_TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .try_init();
    }
    let mut config = Config::local();
    config.cores = Some(cores);
    tweak(&mut config);
    rookery::start(config).expect("server starts").addr
}

/// Starts a server with default settings on `cores` cores.
pub fn server(cores: usize) -> SocketAddr {
    server_with(cores, |_| {})
}

/// A room name owned by core `core` of a `cores`-core server.
pub fn room_on_core(core: usize, cores: usize, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|name| rookery::ids::owner_core(name, cores) == core)
        .unwrap()
}

pub struct Client {
    pub ws: WebSocket<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Connects to `path` (e.g. `/websocket?room=x`).
    pub fn connect(addr: SocketAddr, path: &str) -> Client {
        let url = format!("ws://{addr}{path}");
        let (ws, _) = tungstenite::connect(url).expect("websocket connects");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(WAIT)).unwrap();
            s.set_nodelay(true).unwrap();
        }
        Client { ws }
    }

    /// Connects a websockets.do client to `channel`; returns it and its `CONNECTED` event.
    pub fn wsdo(addr: SocketAddr, channel: &str) -> (Client, Value) {
        let mut c = Client::connect(addr, &format!("/{channel}/listen"));
        let connected = c.recv_type("CONNECTED");
        (c, connected)
    }

    /// Connects a pact client to `room`; consumes `config` and returns the `profile` data.
    pub fn pact(addr: SocketAddr, room: &str) -> (Client, Value) {
        let mut c = Client::connect(addr, &format!("/websocket?room={room}"));
        assert_eq!(c.recv()["type"], "config");
        let profile = c.recv_type("profile");
        (c, profile["data"].clone())
    }

    pub fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).expect("send");
    }

    /// Sends every message of `vs` in one write, so that they reach the server together.
    pub fn send_all(&mut self, vs: &[Value]) {
        for v in vs {
            self.ws.write(Message::text(v.to_string())).expect("send");
        }
        self.ws.flush().expect("send");
    }

    pub fn send_text(&mut self, s: &str) {
        self.ws.send(Message::text(s.to_owned())).expect("send");
    }

    /// The next WebSocket message, retrying reads interrupted by a signal (EINTR).
    pub fn read(&mut self) -> tungstenite::Result<Message> {
        loop {
            match self.ws.read() {
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                    continue
                }
                other => return other,
            }
        }
    }

    /// The next JSON message, skipping protocol frames and server heartbeats.
    pub fn recv(&mut self) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "no message within {WAIT:?}");
            match self.read() {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).expect("server sends JSON");
                    if v["type"] == "ping" {
                        continue;
                    }
                    return v;
                }
                Ok(Message::Close(c)) => panic!("closed while waiting for a message: {c:?}"),
                Ok(_) => continue,
                Err(e) => panic!("no message: {e}"),
            }
        }
    }

    /// The next message, which must have `type` `kind`.
    pub fn recv_type(&mut self, kind: &str) -> Value {
        let v = self.recv();
        assert_eq!(v["type"], kind, "expected a {kind} message, got {v}");
        v
    }

    /// Sends `v` with `ref` and returns the reply carrying that ref (skipping events).
    pub fn call(&mut self, mut v: Value, reference: &str) -> Value {
        v["ref"] = json!(reference);
        self.send(v);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let m = self.recv();
            if m["ref"] == reference {
                return m;
            }
        }
        panic!("no reply for ref {reference}");
    }

    /// Asserts nothing but heartbeats arrives for `ms` milliseconds.
    pub fn expect_silence(&mut self, ms: u64) {
        let deadline = Instant::now() + Duration::from_millis(ms);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.set_timeout(left);
            match self.read() {
                Ok(Message::Text(t)) if t.contains("\"type\":\"ping\"") => continue,
                Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
                Ok(m) => panic!("expected silence, got {m:?}"),
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => panic!("expected silence, got {e}"),
            }
        }
        self.set_timeout(WAIT);
    }

    /// Reads until the server's close frame, answers it, and waits for the server to end
    /// the TCP connection; returns the close code and reason.
    pub fn expect_close(&mut self) -> (u16, String) {
        self.expect_close_after(|_| {})
    }

    /// Like [`Client::expect_close`], handing every message that comes before the close
    /// frame to `each`.
    pub fn expect_close_after(&mut self, mut each: impl FnMut(Message)) -> (u16, String) {
        let (code, reason) = loop {
            match self.read() {
                Ok(Message::Close(Some(frame))) => {
                    break (u16::from(frame.code), frame.reason.to_string())
                }
                Ok(Message::Close(None)) => break (CloseCode::Status.into(), String::new()),
                Ok(m) => each(m),
                Err(e) => panic!("expected a close frame, got {e}"),
            }
        };
        // Reading on sends our close reply; the server then closes the socket.
        loop {
            match self.read() {
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed)
                | Err(tungstenite::Error::AlreadyClosed) => break,
                Err(tungstenite::Error::Io(e))
                    if e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut =>
                {
                    break
                }
                Err(e) => panic!("the server did not end the connection after the close: {e}"),
            }
        }
        (code, reason)
    }

    fn set_timeout(&mut self, d: Duration) {
        match self.ws.get_ref() {
            MaybeTlsStream::Plain(s) => s.set_read_timeout(Some(d)).unwrap(),
            MaybeTlsStream::Rustls(s) => s.sock.set_read_timeout(Some(d)).unwrap(),
            _ => {}
        }
    }
}

/// `GET path` over a fresh TCP connection; returns status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    raw_http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Any request: `method path` with extra `headers` and `body`; returns status and body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    raw_http(addr, &request(method, path, headers, body))
}

/// The bytes of a request `method path` with `headers` and `body`.
fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Like [`http`], with the body parsed as JSON.
pub fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    let (status, text) = http(addr, method, path, headers, body);
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    (status, json)
}

/// Like [`http_json`], for a response the server may rightly hold back for a while: waits
/// up to `wait` for it.
pub fn http_json_within(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    wait: Duration,
) -> (u16, Value) {
    let (status, text) = raw_http_within(addr, &request(method, path, headers, body), wait);
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    (status, json)
}

/// Sends raw bytes and reads the whole response; returns status and body.
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    raw_http_within(addr, request, WAIT)
}

/// Like [`raw_http`], waiting up to `wait` (rather than [`WAIT`]) for each read.
pub fn raw_http_within(addr: SocketAddr, request: &[u8], wait: Duration) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(request).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

/// One client frame: `first` is the first header byte (FIN, RSV bits, opcode), masked or
/// not as `masked` says.
pub fn raw_frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut f = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(mask_bit | n as u8),
        n if n < 65536 => {
            f.push(mask_bit | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(mask_bit | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let mask = [0x37u8, 0xfa, 0x21, 0x3d];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

/// A raw TCP WebSocket client, for frames a well-behaved library refuses to send.
pub struct RawClient {
    pub stream: TcpStream,
}

impl RawClient {
    /// Performs the upgrade on `path` and reads the 101.
    pub fn connect(addr: SocketAddr, path: &str) -> RawClient {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        RawClient { stream }
    }

    /// Sends one frame: `first` is the first header byte (FIN, RSV bits, opcode), masked
    /// or not as `masked` says.
    pub fn send_raw(&mut self, first: u8, payload: &[u8], masked: bool) {
        self.stream
            .write_all(&raw_frame(first, payload, masked))
            .unwrap();
    }

    /// Sends masked frames (`(first header byte, payload)` each) in one write, so that they
    /// reach the server together and are handled in one read.
    pub fn send_together(&mut self, frames: &[(u8, &[u8])]) {
        let bytes: Vec<u8> = frames
            .iter()
            .flat_map(|(first, payload)| raw_frame(*first, payload, true))
            .collect();
        self.stream.write_all(&bytes).unwrap();
    }

    /// Reads frames until one that is not a ping/pong/heartbeat text, answering nothing;
    /// returns its opcode and payload.
    pub fn next_frame_skipping(&mut self, skip: &[u8]) -> (u8, Vec<u8>) {
        loop {
            let (op, payload) = self.read_frame();
            if !skip.contains(&op) {
                return (op, payload);
            }
        }
    }

    /// Sends one masked frame with `opcode` (and FIN) carrying `payload`.
    pub fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut f = vec![0x80 | opcode];
        let mask = [1u8, 2, 3, 4];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&f).unwrap();
    }

    /// Reads the next frame; returns its opcode and payload.
    pub fn read_frame(&mut self) -> (u8, Vec<u8>) {
        let mut h = [0u8; 2];
        self.stream.read_exact(&mut h).expect("a frame header");
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).unwrap();
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).unwrap();
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload).unwrap();
        (h[0] & 0x0f, payload)
    }

    /// Reads frames until a close frame; returns its code and reason.
    pub fn read_close(&mut self) -> (u16, String) {
        loop {
            let (opcode, payload) = self.read_frame();
            if opcode == 0x8 {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                return (code, String::from_utf8_lossy(&payload[2..]).into_owned());
            }
        }
    }
}

/// One `read`, retried while a signal interrupts it (EINTR): the test process also runs
/// servers, and a blocking read in a test thread has been seen to return `Interrupted`
/// on a busy machine.
pub fn read_some(stream: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Polls every `every` until `poll` gives `Ok`, failing with the last `Err` it gave once
/// `within` has passed.
pub fn eventually<T>(
    within: Duration,
    every: Duration,
    mut poll: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match poll() {
            Ok(done) => return done,
            Err(why) => assert!(start.elapsed() < within, "{why}"),
        }
        std::thread::sleep(every);
    }
}

/// [`eventually`] for a condition that says no more than `what` when it fails.
pub fn until(within: Duration, every: Duration, what: &str, mut done: impl FnMut() -> bool) {
    eventually(within, every, || {
        done().then_some(()).ok_or_else(|| what.to_owned())
    });
}

/// Polls `GET /api/rooms/room` until `check` accepts the details or the wait runs out.
pub fn wait_for_room(addr: SocketAddr, room: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually(WAIT, Duration::from_millis(20), || {
        let (status, body) = http_get(addr, &format!("/api/rooms/{room}"));
        assert_eq!(status, 200);
        let details: Value = serde_json::from_str(&body).unwrap();
        match check(&details) {
            true => Ok(details),
            false => Err(format!("room never reached the state: {details}")),
        }
    })
}

/// The value of the unlabelled metric `name` (a counter or gauge) in `GET /metrics`.
pub fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (status, text) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no metric {name}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("metric {name}: {e}"))
}

/// The JWT secret test servers use with [`token`].
pub const JWT_SECRET: &str = "test-jwt-secret";

/// An HS256 token for `sub`, signed with `secret`, expiring `exp_offset_s` from now.
pub fn token_with(sub: &str, secret: &str, exp_offset_s: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": sub, "exp": now + exp_offset_s}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A valid token for `sub`.
pub fn token(sub: &str) -> String {
    token_with(sub, JWT_SECRET, 600)
}

/// Connects with an `Authorization` header.
pub fn connect_with_header(addr: SocketAddr, path: &str, authorization: &str) -> Client {
    use tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Authorization", authorization.parse().unwrap());
    let (ws, _) = tungstenite::connect(request).expect("websocket connects");
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(WAIT)).unwrap();
    }
    Client { ws }
}

/// One request a [`TestBackend`] received.
#[derive(Debug, Clone)]
pub struct Received {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// What a [`TestBackend`] answers: status, body, and a delay before answering.
pub type Answer = (u16, String, Duration);

/// A real HTTP backend on 127.0.0.1 that records requests and answers with `respond`.
pub struct TestBackend {
    pub url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

impl TestBackend {
    pub fn start(respond: impl Fn(&Received) -> Answer + Send + Sync + 'static) -> TestBackend {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("backend binds");
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = received.clone();
        let respond = std::sync::Arc::new(respond);
        std::thread::spawn(move || {
            for mut request in server.incoming_requests() {
                let mut body = String::new();
                let _ = request.as_reader().read_to_string(&mut body);
                let got = Received {
                    url: request.url().to_owned(),
                    headers: request
                        .headers()
                        .iter()
                        .map(|h| (h.field.as_str().to_string(), h.value.as_str().to_owned()))
                        .collect(),
                    body,
                };
                log.lock().unwrap().push(got.clone());
                let respond = respond.clone();
                std::thread::spawn(move || {
                    let (status, body, delay) = respond(&got);
                    std::thread::sleep(delay);
                    let _ = request
                        .respond(tiny_http::Response::from_string(body).with_status_code(status));
                });
            }
        });
        TestBackend { url, received }
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until a request matching `check` arrived, and returns it.
    pub fn wait_for(&self, check: impl Fn(&Received) -> bool) -> Received {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(r) = self.received().into_iter().find(|r| check(r)) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "the backend never got the request"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// An address nothing listens on.
pub fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}
