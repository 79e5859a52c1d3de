//! A shard's clock: every tick it pings the live connections, closes the silent ones and
//! shuts down those whose close grace ran out (one timer wheel per shard, not a timer per
//! connection), and expires handshake deadlines.

use super::conn::{Conn, State};
use super::mailbox::now_ms;
use super::shard::Shard;
use crate::ids::ConnId;
use std::rc::Rc;
use std::time::Duration;
use tungstenite::protocol::frame::coding::CloseCode;

impl Shard {
    /// One pass of the wheel: ping the live, close the silent, shut down the closing ones
    /// whose grace ran out.
    fn check_deadlines(&self, now: u64, due: &mut Vec<ConnId>) {
        self.handshakes.expire(now);
        self.wheel.borrow_mut().advance(now, due);
        let interval = self.config.ping_interval_ms;
        for id in due.drain(..) {
            let Some(conn) = self.conns.borrow().get(&id).cloned() else {
                continue;
            };
            let next = match conn.state() {
                State::Dead => continue,
                State::Closing { since_ms } if now >= since_ms + self.config.close_grace_ms => {
                    tracing::debug!(conn = %id, "close grace over: shutting the socket down");
                    conn.shut_down();
                    continue;
                }
                State::Closing { since_ms } => since_ms + self.config.close_grace_ms,
                State::Open if conn.drain_at_ms.get().is_some_and(|at| at <= now) => {
                    conn.close(CloseCode::Away, "server shutting down", now);
                    now + self.config.close_grace_ms
                }
                State::Open => {
                    let silent = now.saturating_sub(conn.last_seen_ms.get());
                    if silent >= interval * u64::from(self.config.ping_missed) {
                        tracing::debug!(conn = %id, silent, "ping timeout");
                        self.ping_timeout(&conn, now);
                        now + self.config.close_grace_ms
                    } else {
                        self.ping(&conn, now);
                        now + interval
                    }
                }
            };
            self.schedule(next, id);
        }
    }

    /// Sends the connection's heartbeat (its dialect's), noting when, for the round trip.
    fn ping(&self, conn: &Conn, now: u64) {
        if conn.ping_sent_ms.get().is_none() {
            conn.ping_sent_ms.set(Some(now));
        }
        for frame in conn.with_peer(|peer| conn.dialect.protocol().ping(now, peer)) {
            conn.send(frame, now);
        }
    }

    fn ping_timeout(&self, conn: &Conn, now: u64) {
        if let Some(frame) = conn.with_peer(|peer| conn.dialect.protocol().ping_timeout(peer)) {
            conn.send(frame, now);
        }
        conn.close(CloseCode::Away, "ping timeout", now);
    }
}

/// Advances the connection wheel every tick.
pub async fn run_ticker(shard: Rc<Shard>) {
    let tick = Duration::from_millis(shard.wheel.borrow().tick_ms());
    let mut due = Vec::new();
    loop {
        monoio::time::sleep(tick).await;
        shard.check_deadlines(now_ms(), &mut due);
    }
}
