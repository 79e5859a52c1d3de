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
    pub fn parse(name: &str) -> System {
        match name {
            "rookery" => System::Rookery,
            _ => System::Relay,
        }
    }

    pub fn url(self, addr: &str, room: &str) -> String {
        match self {
            System::Rookery => format!("ws://{addr}/websocket?room={room}"),
            System::Relay => format!("ws://{addr}/room/{room}"),
        }
    }
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

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects, subscribing where the system needs it.
pub async fn connect(system: System, addr: &str, room: &str) -> Option<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async(system.url(addr, room))
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

    /// Counts a delivery sent at `sent_us`, received now.
    fn record(&self, sent_us: u64) {
        if let Some(step) = self.step_at(sent_us) {
            let cell = &self.delivered_by_send[step];
            cell.set(cell.get() + 1);
        }
        let now = now_us();
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
                let due = (now.saturating_sub(step_start) as f64 / 1e6 * rate) as u64;
                while sent < due {
                    if sink.send(Message::text(publish_text(size))).await.is_err() {
                        return;
                    }
                    sent += 1;
                    let cell = &tally.sent[step];
                    cell.set(cell.get() + 1);
                    let cell = &tally.expected[step];
                    cell.set(cell.get() + members);
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
}
