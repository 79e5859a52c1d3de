//! A core's Redis subscriber connection, on monoio: it holds the channels of the rooms this
//! core has members in (and the core's own probe channel), hands every message to the
//! core's Redis task, and after a reconnect subscribes again and says so
//! ([`Push::Resubscribed`]), so that the rooms fill what they missed from their streams.
//!
//! Channels are shard channels (`SSUBSCRIBE`, Redis 7), in Cluster and standalone alike:
//! in a Cluster a shard channel lives on the master of its slot, so a room's events go
//! only to that master's subscribers (plain `PUBLISH` would reach every node of the
//! Cluster), and one code path serves both. One `SSUBSCRIBE` per channel: in a Cluster the
//! channels of one command must share a slot.
//!
//! Probes (channels under [`PROBE_PREFIX`]) are recognised here: each one that comes back
//! marks this connection's pub/sub verified live (`Stats::probe_seen_ms`).

use super::connect::{connect, ConnectError, Connection, Link};
use super::resp::{self, Frame};
use super::stats::Stats;
use ahash::{AHashMap, AHashSet};
use monoio::io::AsyncWriteRentExt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// What the subscriber connection hands the core.
#[derive(Debug)]
pub enum Push {
    Message {
        channel: Vec<u8>,
        payload: Vec<u8>,
    },
    /// The connection came back and every channel is subscribed again: what was published
    /// meanwhile was missed.
    Resubscribed,
    /// Redis dropped a subscription this core still wants (in a Cluster: its slot moved
    /// to another master): it has to be made again where the slot is now.
    Dropped(String),
    /// Redis refused a subscription (in a Cluster: `MOVED`, the slot is elsewhere).
    Refused(String),
    /// Not the subscriber's: the other nodes took this one for dead (it was silent too
    /// long) and removed its members and directory entries, which the core lists again,
    /// as after `Resubscribed`. Sent to every core by the node's heartbeat (core 0).
    Reaped,
}

/// Probe channels start with this: see [`crate::redis::cluster`].
pub const PROBE_PREFIX: &str = "rk:probe:";

enum Ctl {
    /// Subscribe; `done` is answered once Redis confirmed it.
    Subscribe {
        channel: String,
        done: Option<flume::Sender<()>>,
    },
    Unsubscribe(String),
}

/// The control end of a core's subscriber connection.
#[derive(Clone)]
pub struct Subscriber {
    ctl: flume::Sender<Ctl>,
}

impl Subscriber {
    /// Starts the connection's task, to `addr` opened as `link` says; messages go to
    /// `pushes`.
    pub fn start(
        addr: SocketAddr,
        link: Arc<Link>,
        stats: Arc<Stats>,
        pushes: flume::Sender<Push>,
    ) -> Subscriber {
        let (ctl, queue) = flume::unbounded();
        monoio::spawn(run(addr, link, queue, stats, pushes));
        Subscriber { ctl }
    }

    /// Subscribes to `channel` and waits until Redis confirmed it (from then on nothing
    /// published there is missed while the connection holds).
    pub async fn subscribe(&self, channel: String) -> Result<(), ()> {
        let (done, confirmed) = flume::bounded(1);
        self.ctl
            .send(Ctl::Subscribe {
                channel,
                done: Some(done),
            })
            .map_err(|_| ())?;
        confirmed.recv_async().await.map_err(|_| ())
    }

    /// Subscribes without waiting.
    pub fn want(&self, channel: String) {
        let _ = self.ctl.send(Ctl::Subscribe {
            channel,
            done: None,
        });
    }

    pub fn unsubscribe(&self, channel: String) {
        let _ = self.ctl.send(Ctl::Unsubscribe(channel));
    }
}

#[derive(Default)]
struct State {
    wanted: AHashSet<String>,
    /// `SUNSUBSCRIBE`s sent and not confirmed yet, by channel (a confirmation of one of
    /// them is not Redis dropping the channel).
    leaving: AHashMap<String, usize>,
    /// Confirmations awaited, by channel.
    waiters: AHashMap<String, Vec<flume::Sender<()>>>,
}

async fn run(
    addr: SocketAddr,
    link: Arc<Link>,
    queue: flume::Receiver<Ctl>,
    stats: Arc<Stats>,
    pushes: flume::Sender<Push>,
) {
    let mut state = State::default();
    let mut backoff = Duration::from_millis(50);
    let mut first = true;
    loop {
        match connect(addr, &link).await {
            Ok(stream) => {
                if !first {
                    stats.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                backoff = Duration::from_millis(50);
                let error = serve(stream, &queue, &mut state, &stats, &pushes, !first).await;
                first = false;
                stats.subscriber_up.store(false, Ordering::Relaxed);
                tracing::warn!(%addr, %error, "redis subscriber connection lost");
            }
            // A refusal is logged by `connect`, once.
            Err(ConnectError::Refused(_)) => {}
            Err(error) => tracing::debug!(%addr, %error, "redis is not reachable"),
        }
        // Down: requests are remembered and made on the next connection.
        let wait = monoio::time::sleep(backoff);
        let mut wait = std::pin::pin!(wait);
        loop {
            monoio::select! {
                _ = &mut wait => break,
                ctl = queue.recv_async() => match ctl {
                    Ok(ctl) => {
                        remember(&mut state, ctl);
                    }
                    Err(_) => return,
                },
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

fn remember(state: &mut State, ctl: Ctl) -> Option<Vec<u8>> {
    match ctl {
        Ctl::Subscribe { channel, done } => {
            if let Some(done) = done {
                state.waiters.entry(channel.clone()).or_default().push(done);
            }
            // Asked again even when already wanted: Redis confirms a repeated SUBSCRIBE
            // too, so a waiter is never left waiting.
            state.wanted.insert(channel.clone());
            Some(resp::command(&["SSUBSCRIBE", &channel]))
        }
        Ctl::Unsubscribe(channel) => {
            state.wanted.remove(&channel);
            // Whoever waits for it to be subscribed here waits no more.
            state.waiters.remove(&channel);
            *state.leaving.entry(channel.clone()).or_default() += 1;
            Some(resp::command(&["SUNSUBSCRIBE", &channel]))
        }
    }
}

async fn serve(
    stream: Connection,
    queue: &flume::Receiver<Ctl>,
    state: &mut State,
    stats: &Stats,
    pushes: &flume::Sender<Push>,
    again: bool,
) -> String {
    let (mut rd, mut wr) = stream.into_split();
    let state = std::cell::RefCell::new(state);
    // A new connection: nothing is leaving it.
    state.borrow_mut().leaving.clear();
    if !state.borrow().wanted.is_empty() {
        let mut bytes = Vec::new();
        for channel in state.borrow().wanted.iter() {
            resp::encode_command(&mut bytes, &["SSUBSCRIBE", channel]);
        }
        let (result, _) = wr.write_all(bytes).await;
        if let Err(e) = result {
            return e.to_string();
        }
    }
    // A new connection is verified by a probe of its own, not one the last one saw.
    stats.probe_seen_ms.store(0, Ordering::Relaxed);
    stats.subscriber_up.store(true, Ordering::Relaxed);
    if again {
        let _ = pushes.send(Push::Resubscribed);
    }
    let reader = async {
        let mut replies = resp::FrameReader::new();
        let mut frames = Vec::new();
        loop {
            if let Err(e) = replies.read(&mut rd, &mut frames).await {
                return e;
            }
            for frame in frames.drain(..) {
                let Frame::Array(mut parts) = frame else {
                    if let Frame::Error(e) = frame {
                        tracing::warn!(error = %e, "redis refused a subscription");
                        let _ = pushes.send(Push::Refused(e));
                    }
                    continue;
                };
                let kind = parts.first().and_then(resp::text).unwrap_or("").to_owned();
                match kind.as_str() {
                    "smessage" | "message" if parts.len() == 3 => {
                        let payload = take_bytes(parts.pop());
                        let channel = take_bytes(parts.pop());
                        if channel.starts_with(PROBE_PREFIX.as_bytes()) {
                            stats.probe_seen_ms.store(now_ms(), Ordering::Relaxed);
                            continue;
                        }
                        let _ = pushes.send(Push::Message { channel, payload });
                    }
                    "ssubscribe" | "subscribe" => {
                        if let Some(channel) = parts.get(1).and_then(resp::text) {
                            let waiters = state.borrow_mut().waiters.remove(channel);
                            for done in waiters.into_iter().flatten() {
                                let _ = done.send(());
                            }
                        }
                    }
                    "sunsubscribe" => {
                        let Some(channel) = parts.get(1).and_then(resp::text) else {
                            continue;
                        };
                        let mut state = state.borrow_mut();
                        match state.leaving.get_mut(channel) {
                            Some(n) if *n > 1 => *n -= 1,
                            Some(_) => {
                                state.leaving.remove(channel);
                            }
                            // Not asked for: Redis dropped it (its slot moved away).
                            None => {
                                if state.wanted.remove(channel) {
                                    let _ = pushes.send(Push::Dropped(channel.to_owned()));
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    };
    let writer = async {
        loop {
            let Ok(ctl) = queue.recv_async().await else {
                return "subscriber stopped".to_owned();
            };
            let mut bytes = Vec::new();
            let mut next = Some(ctl);
            while let Some(ctl) = next {
                if let Some(command) = remember(&mut state.borrow_mut(), ctl) {
                    bytes.extend_from_slice(&command);
                }
                next = queue.try_recv().ok();
            }
            let (result, _) = wr.write_all(bytes).await;
            if let Err(e) = result {
                return e.to_string();
            }
        }
    };
    monoio::select! {
        e = reader => e,
        e = writer => e,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn take_bytes(frame: Option<Frame>) -> Vec<u8> {
    match frame {
        Some(Frame::BulkString(b)) | Some(Frame::SimpleString(b)) => b,
        _ => Vec::new(),
    }
}
