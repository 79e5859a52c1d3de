//! The load itself: subscribers that count deliveries and record publish-to-receive
//! latency from the timestamp in each payload, and a publisher at a set rate.

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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

/// What the subscribers of one process saw.
#[derive(Default)]
pub struct Counts {
    pub delivered: AtomicU64,
}

/// Reads deliveries until `until`, counting and timing them; `reading == false` makes a
/// subscriber that never reads (W4's slow consumers).
pub async fn subscribe(
    mut ws: Ws,
    counts: Arc<Counts>,
    histogram: Arc<std::sync::Mutex<Histogram<u64>>>,
    until: Instant,
    reading: bool,
) {
    if !reading {
        tokio::time::sleep_until(until.into()).await;
        drop(ws);
        return;
    }
    let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut delivered = 0u64;
    loop {
        let next = tokio::time::timeout_at(until.into(), ws.next()).await;
        let Ok(Some(Ok(message))) = next else { break };
        if let Message::Text(text) = message {
            if let Some(sent) = sent_us(&text) {
                let _ = local.record(now_us().saturating_sub(sent).max(1));
                delivered += 1;
                if delivered.is_multiple_of(256) {
                    counts.delivered.fetch_add(256, Ordering::Relaxed);
                }
            }
        }
    }
    counts
        .delivered
        .fetch_add(delivered % 256, Ordering::Relaxed);
    let _ = histogram.lock().unwrap().add(&local);
}

/// Publishes `rate` messages per second of `size` bytes into `ws` until `until`.
pub async fn publish(mut ws: Ws, rate: u64, size: usize, until: Instant) -> u64 {
    let mut sent = 0u64;
    let start = Instant::now();
    // Drain whatever comes back (a relay echoes to the sender too).
    let (mut sink, mut stream) = ws_split(&mut ws);
    let drain = async { while let Some(Ok(_)) = stream.next().await {} };
    let send = async {
        while Instant::now() < until {
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            while sent < due {
                if sink.send(Message::text(publish_text(size))).await.is_err() {
                    return;
                }
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::select! {
        _ = send => {}
        _ = drain => {}
    }
    sent
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
