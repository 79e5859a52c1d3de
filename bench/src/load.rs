//! The load itself: subscribers that count deliveries and record publish-to-receive
//! latency from the timestamp in each payload, and a publisher at a set rate.

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

/// How to talk to one system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// Rookery's pact dialect: subscribe to `chat`, publish `chat`.
    Rookery,
    /// A relay that forwards every text frame to the sender's room (tokio peer, Node ws,
    /// the raw ceiling): rooms at `/room/<name>`.
    Relay,
}

impl System {
    /// `rookery` and its variants (`rookery-disk`, …) speak Pact; everything else relays.
    pub fn parse(name: &str) -> System {
        if name == "rookery" || name.starts_with("rookery-") {
            System::Rookery
        } else {
            System::Relay
        }
    }

    pub fn url(self, addr: &str, room: &str) -> String {
        let scheme = if TLS.get().is_some() { "wss" } else { "ws" };
        match self {
            System::Rookery => format!("{scheme}://{addr}/websocket?room={room}"),
            System::Relay => format!("{scheme}://{addr}/room/{room}"),
        }
    }
}

/// The TLS client configuration every connection of this process uses, once
/// [`use_tls`] set it: `wss://` then, trusting the one certificate given.
static TLS: std::sync::OnceLock<std::sync::Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();

/// Makes every connection of this process `wss://`, trusting only the PEM certificate in
/// `ca` (the one the driver made for the server under test). Session resumption is off, so
/// that every connection costs a full handshake, as a crowd of new clients does.
pub fn use_tls(ca: &str) {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_file(ca)
        .unwrap_or_else(|e| panic!("--tls-ca {ca}: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).expect("a usable certificate");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    let _ = TLS.set(std::sync::Arc::new(config));
}

/// Microseconds since the epoch: payload timestamps (clients may be in other processes).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A chat message whose text is `T<micros>:` padded to `size` bytes.
pub fn publish_text(size: usize) -> String {
    let mut text = format!("T{}:", now_us());
    while text.len() < size {
        text.push('x');
    }
    format!("{{\"type\":\"chat\",\"data\":\"{text}\"}}")
}

/// The send timestamp in a received frame: the digits after the first `"T`.
pub fn sent_us(frame: &str) -> Option<u64> {
    let start = frame.find("\"T")? + 2;
    let digits: &str = &frame[start..];
    let end = digits.find(|c: char| !c.is_ascii_digit())?;
    digits[..end].parse().ok()
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects, subscribing where the system needs it.
pub async fn connect(system: System, addr: &str, room: &str) -> Option<Ws> {
    connect_with(system, addr, room, None, false).await
}

/// A publisher's connection: as [`connect`]'s, with a 4 KiB read buffer for the echoes it
/// drains (tungstenite zeroes its default 128 KiB buffer on every read: with one small
/// echo per read that `memset` was a tenth of the generator's time in W3).
pub async fn connect_publisher(system: System, addr: &str, room: &str) -> Option<Ws> {
    let config =
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096);
    connect_with(system, addr, room, Some(config), false).await
}

/// W5's connections: `TCP_NODELAY` (a write is not held back by Nagle's algorithm while an
/// earlier one is unacknowledged) and a 4 KiB read buffer (tungstenite's default 128 KiB
/// buffer is zeroed on every read, which made `memset` half of the load generator's time
/// when each read brings one small `ok`).
pub async fn connect_for_writes(system: System, addr: &str, room: &str) -> Option<Ws> {
    let config =
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096);
    connect_with(system, addr, room, Some(config), true).await
}

async fn connect_with(
    system: System,
    addr: &str,
    room: &str,
    config: Option<tokio_tungstenite::tungstenite::protocol::WebSocketConfig>,
    nodelay: bool,
) -> Option<Ws> {
    let connector = TLS
        .get()
        .map(|tls| tokio_tungstenite::Connector::Rustls(tls.clone()));
    let url = system.url(addr, room);
    let (mut ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(url, config, nodelay, connector)
            .await
            .ok()?;
    if system == System::Rookery {
        ws.send(Message::text(
            r#"{"type":"subscribe","data":"chat","ref":1}"#,
        ))
        .await
        .ok()?;
        // config, profile, then the subscription's ok.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let message = tokio::time::timeout_at(deadline.into(), ws.next())
                .await
                .ok()??;
            if let Ok(Message::Text(t)) = message {
                if t.contains("\"ref\":1") {
                    break;
                }
            }
        }
    }
    Some(ws)
}

/// What one worker's connections saw, step by step. The worker runs on one thread
/// (a current-thread runtime), so plain cells suffice.
pub struct Tally {
    /// When step 0 starts, in microseconds since the epoch (receivers date deliveries by it).
    pub start_us: u64,
    pub step_us: u64,
    /// Deliveries received during each step (throughput).
    pub delivered: Vec<Cell<u64>>,
    /// Deliveries of the messages published during each step, whenever they arrived
    /// (keeping up: at N = 10 k a publish takes the server ~100 ms to write to every socket,
    /// so counting by arrival would call a late step behind).
    pub delivered_by_send: Vec<Cell<u64>>,
    /// Messages published during each step.
    pub sent: Vec<Cell<u64>>,
    /// Deliveries this worker's reading subscribers should see for what was published.
    pub expected: Vec<Cell<f64>>,
    /// Publish-to-receive latency of each step, past its first quarter (so the backlog of
    /// the step before does not count).
    pub latency: RefCell<Vec<Histogram<u64>>>,
    /// Set when publishing stopped: the step that fell behind, or the last.
    pub stop: Cell<bool>,
}

impl Tally {
    pub fn new(steps: usize, start_us: u64, step_us: u64) -> Tally {
        let histogram = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        Tally {
            start_us,
            step_us,
            delivered: (0..steps).map(|_| Cell::new(0)).collect(),
            delivered_by_send: (0..steps).map(|_| Cell::new(0)).collect(),
            sent: (0..steps).map(|_| Cell::new(0)).collect(),
            expected: (0..steps).map(|_| Cell::new(0.0)).collect(),
            latency: RefCell::new((0..steps).map(|_| histogram()).collect()),
            stop: Cell::new(false),
        }
    }

    /// The step `at_us` falls in, if within the schedule.
    fn step_at(&self, at_us: u64) -> Option<usize> {
        let since = at_us.checked_sub(self.start_us)?;
        let step = (since / self.step_us) as usize;
        (step < self.delivered.len()).then_some(step)
    }

    /// Counts a message published in `step`, for `members` reading subscribers.
    pub fn published(&self, step: usize, members: f64) {
        let cell = &self.sent[step];
        cell.set(cell.get() + 1);
        let cell = &self.expected[step];
        cell.set(cell.get() + members);
    }

    /// Messages due by `now` in the step that began at `step_start`, at `rate` a second.
    pub fn due(now: u64, step_start: u64, rate: f64) -> u64 {
        (now.saturating_sub(step_start) as f64 / 1e6 * rate) as u64
    }

    /// Counts a delivery sent at `sent_us`, received now.
    fn record(&self, sent_us: u64) {
        self.record_at(sent_us, now_us());
    }

    /// Counts a delivery sent at `sent_us`, received at `now` (µs since the epoch).
    pub fn record_at(&self, sent_us: u64, now: u64) {
        if let Some(step) = self.step_at(sent_us) {
            let cell = &self.delivered_by_send[step];
            cell.set(cell.get() + 1);
        }
        let Some(step) = self.step_at(now) else {
            return;
        };
        let cell = &self.delivered[step];
        cell.set(cell.get() + 1);
        if (now - self.start_us) % self.step_us >= self.step_us / 4 {
            let _ = self.latency.borrow_mut()[step].record(now.saturating_sub(sent_us).max(1));
        }
    }
}

/// Reads deliveries until `done` turns true, counting and timing them; `reading == false`
/// makes a subscriber that never reads (W4's slow consumers).
pub async fn subscribe(
    mut ws: Ws,
    tally: Rc<Tally>,
    mut done: tokio::sync::watch::Receiver<bool>,
    reading: bool,
) {
    if !reading {
        let _ = done.wait_for(|d| *d).await;
        return;
    }
    loop {
        tokio::select! {
            message = ws.next() => {
                let Some(Ok(message)) = message else { break };
                if let Message::Text(text) = message {
                    if let Some(sent) = sent_us(&text) {
                        tally.record(sent);
                    }
                }
            }
            _ = done.wait_for(|d| *d) => break,
        }
    }
}

/// Publishes into `ws` at `rates[k]` messages/s during step `k` of the tally's schedule,
/// until the schedule ends or the tally says stop. `members` is how many of this worker's
/// reading subscribers are in the publisher's room (the expected deliveries per message).
pub async fn publish(mut ws: Ws, rates: Vec<f64>, size: usize, members: f64, tally: Rc<Tally>) {
    // Drain whatever comes back (a relay echoes to the sender too).
    let (mut sink, mut stream) = ws_split(&mut ws);
    let drain = async { while let Some(Ok(_)) = stream.next().await {} };
    let send = async {
        let step_us = tally.step_us;
        for (step, &rate) in rates.iter().enumerate() {
            let step_start = tally.start_us + step as u64 * step_us;
            let mut sent = 0u64;
            loop {
                let now = now_us();
                if tally.stop.get() || now >= step_start + step_us {
                    break;
                }
                while sent < Tally::due(now, step_start, rate) {
                    if sink.send(Message::text(publish_text(size))).await.is_err() {
                        return;
                    }
                    sent += 1;
                    tally.published(step, members);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            if tally.stop.get() {
                return;
            }
        }
    };
    tokio::select! {
        _ = send => {}
        _ = drain => {}
    }
}

/// W5: what one writer worker's connections did during the measured window.
pub struct Writes {
    /// Sending starts (warm-up included).
    pub begin: Instant,
    /// The measured window: acknowledgements received in it count, with their latency.
    pub measure_from: Instant,
    pub end: Instant,
    /// Writes sent in the window.
    pub sent: Cell<u64>,
    /// `ok`s for this connection's refs received in the window.
    pub acked: Cell<u64>,
    /// `ok`s received at any time (a check that every write was answered).
    pub acked_total: Cell<u64>,
    pub sent_total: Cell<u64>,
    /// `error` replies, and the first one's text.
    pub errors: Cell<u64>,
    pub first_error: RefCell<Option<String>>,
    /// Client send → `ok` latency of the window's acks, in µs.
    pub latency: RefCell<Histogram<u64>>,
    /// Connections that ended early (closed or failed).
    pub broken: Cell<u64>,
}

impl Writes {
    pub fn new(begin: Instant, measure_from: Instant, end: Instant) -> Writes {
        Writes {
            begin,
            measure_from,
            end,
            sent: Cell::new(0),
            acked: Cell::new(0),
            acked_total: Cell::new(0),
            sent_total: Cell::new(0),
            errors: Cell::new(0),
            first_error: RefCell::new(None),
            latency: RefCell::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap()),
            broken: Cell::new(0),
        }
    }
}

/// The kinds of durable write W5 sends, in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// `counter` +1 on counter `c`.
    Counter,
    /// A vote in poll `p`, alternating `a` and `b` so that every vote moves the tally.
    Poll,
    /// A 128-byte chat message (W2's payload), appended to the room's history.
    Chat,
}

impl WriteKind {
    pub fn parse(name: &str) -> Option<WriteKind> {
        match name {
            "counter" => Some(WriteKind::Counter),
            "poll" => Some(WriteKind::Poll),
            "chat" => Some(WriteKind::Chat),
            _ => None,
        }
    }

    /// The request with `ref` `r`; `n` counts this connection's writes of this kind.
    pub fn request(self, r: u64, n: u64) -> String {
        match self {
            WriteKind::Counter => {
                format!(r#"{{"type":"counter","ref":{r},"data":{{"id":"c","value":1}}}}"#)
            }
            WriteKind::Poll => {
                let answer = if n.is_multiple_of(2) { "a" } else { "b" };
                format!(r#"{{"type":"poll","ref":{r},"data":{{"id":"p","answer":"{answer}"}}}}"#)
            }
            WriteKind::Chat => {
                let mut text = format!("T{}:", now_us());
                while text.len() < 128 {
                    text.push('x');
                }
                format!(r#"{{"type":"chat","ref":{r},"data":"{text}"}}"#)
            }
        }
    }
}

/// The `ref` of a direct reply, and whether it is an `ok` (else an `error`); `None` for
/// anything else (events, `ping`, …).
pub fn reply_ref(frame: &str) -> Option<(u64, bool)> {
    let ok = frame.contains(r#""type":"ok""#);
    if !ok && !frame.contains(r#""type":"error""#) {
        return None;
    }
    let start = frame.find(r#""ref":"#)? + 6;
    let digits = &frame[start..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    Some((digits[..end].parse().ok()?, ok))
}

/// W5: one connection sending durable writes (`kinds` in turn, each with a fresh `ref`)
/// with at most `window` unanswered at once, at `rate` writes/s (`0`: as fast as the
/// window allows), from `writes.begin` to `writes.end`; `phase` (0..1) spreads the
/// connections' send times. Each `ok` frees a slot; its latency is from the moment the
/// write was handed to the socket to the moment the `ok` was read.
pub async fn write(
    mut ws: Ws,
    kinds: Rc<[WriteKind]>,
    window: usize,
    rate: f64,
    phase: f64,
    writes: Rc<Writes>,
) {
    use futures_util::FutureExt;
    use std::collections::HashMap;
    let window = window.max(1);
    let mut pending: HashMap<u64, Instant> = HashMap::with_capacity(window * 2);
    // Refs above the subscribe's (1).
    let mut next_ref = 1_000u64;
    let mut sent = 0u64;
    let mut of_kind = vec![0u64; kinds.len()];
    let mut broken = false;
    loop {
        let now = Instant::now();
        if now >= writes.end {
            break;
        }
        let since = now.saturating_duration_since(writes.begin).as_secs_f64();
        let due = if rate > 0.0 {
            ((since * rate + phase) as u64).saturating_sub(sent)
        } else {
            u64::MAX
        };
        let n = (window.saturating_sub(pending.len()) as u64).min(due);
        for _ in 0..n {
            let k = (sent % kinds.len() as u64) as usize;
            let text = kinds[k].request(next_ref, of_kind[k]);
            of_kind[k] += 1;
            if ws.feed(Message::text(text)).await.is_err() {
                broken = true;
                break;
            }
            pending.insert(next_ref, Instant::now());
            next_ref += 1;
            sent += 1;
            writes.sent_total.set(writes.sent_total.get() + 1);
            if Instant::now() >= writes.measure_from {
                writes.sent.set(writes.sent.get() + 1);
            }
        }
        if broken || (n > 0 && ws.flush().await.is_err()) {
            broken = true;
            break;
        }
        // Wait for a reply, or (at a set rate) until the next write is due.
        let wait_until = if rate > 0.0 && pending.len() < window {
            let next = (sent as f64 + 1.0 - phase) / rate;
            (writes.begin + Duration::from_secs_f64(next.max(0.0))).min(writes.end)
        } else {
            writes.end
        };
        let first = match tokio::time::timeout_at(wait_until.into(), ws.next()).await {
            Err(_) => continue,
            Ok(Some(Ok(message))) => message,
            Ok(_) => {
                broken = true;
                break;
            }
        };
        // That reply, and every other one already here.
        let mut message = Some(first);
        while let Some(m) = message.take() {
            if let Message::Text(text) = m {
                take_reply(&text, &mut pending, &writes);
            }
            match ws.next().now_or_never() {
                Some(Some(Ok(m))) => message = Some(m),
                Some(_) => {
                    broken = true;
                    break;
                }
                None => {}
            }
        }
        if broken {
            break;
        }
    }
    // Let the writes in flight be answered (they count in no window), then close.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !broken && !pending.is_empty() {
        match tokio::time::timeout_at(deadline.into(), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => take_reply(&text, &mut pending, &writes),
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    if broken {
        writes.broken.set(writes.broken.get() + 1);
    }
    let _ = ws.close(None).await;
}

fn take_reply(text: &str, pending: &mut std::collections::HashMap<u64, Instant>, writes: &Writes) {
    let Some((r, ok)) = reply_ref(text) else {
        return;
    };
    let Some(sent_at) = pending.remove(&r) else {
        return;
    };
    if !ok {
        writes.errors.set(writes.errors.get() + 1);
        writes
            .first_error
            .borrow_mut()
            .get_or_insert_with(|| text.to_owned());
        return;
    }
    writes.acked_total.set(writes.acked_total.get() + 1);
    let now = Instant::now();
    if now >= writes.measure_from && now < writes.end {
        writes.acked.set(writes.acked.get() + 1);
        let us = now.duration_since(sent_at).as_micros() as u64;
        let _ = writes.latency.borrow_mut().record(us.max(1));
    }
}

fn ws_split(
    ws: &mut Ws,
) -> (
    impl futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + '_,
    impl futures_util::Stream<Item = tokio_tungstenite::tungstenite::Result<Message>> + '_,
) {
    StreamExt::split(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_a_frame() {
        let text = publish_text(128);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["data"].as_str().unwrap().len(), 128);
        let echoed = format!(
            "{{\"type\":\"chat\",\"data\":{{\"message\":{}}}}}",
            v["data"]
        );
        let sent = sent_us(&echoed).unwrap();
        assert!(now_us() - sent < 1_000_000);
    }

    #[test]
    fn replies_give_their_ref() {
        assert_eq!(reply_ref(r#"{"type":"ok","ref":1234}"#), Some((1234, true)));
        assert_eq!(
            reply_ref(r#"{"type":"error","ref":7,"data":{"code":"invalid_data"}}"#),
            Some((7, false))
        );
        assert_eq!(
            reply_ref(r#"{"type":"counter","data":{"id":"c","value":3},"seq":4}"#),
            None
        );
        let v: serde_json::Value = serde_json::from_str(&WriteKind::Poll.request(5, 1)).unwrap();
        assert_eq!(v["data"]["answer"], "b");
        let v: serde_json::Value = serde_json::from_str(&WriteKind::Counter.request(6, 0)).unwrap();
        assert_eq!(v["ref"], 6);
        assert_eq!(System::parse("rookery-disk"), System::Rookery);
        assert_eq!(System::parse("raw"), System::Relay);
    }
}
