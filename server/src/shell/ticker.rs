//! A shard's clock: every tick it pings the live connections, closes the silent ones and
//! shuts down those whose close grace ran out (one timer wheel per shard, not a timer per
//! connection), expires handshake deadlines, and tells and closes the connections whose
//! token expired (`expiry.rs`, a wheel of its own on the same tick).

use super::conn::{Conn, State};
use super::expiry::Due;
use super::mailbox::now_ms;
use super::shard::Shard;
use crate::dialect::{TOKEN_EXPIRED_CLOSE, TOKEN_EXPIRED_REASON};
use crate::ids::ConnId;
use std::rc::Rc;
use std::time::Duration;
use tungstenite::protocol::frame::coding::CloseCode;

impl Shard {
    /// One pass of the wheel: ping the live, close the silent, shut down the closing ones
    /// whose grace ran out.
    fn check_deadlines(&self, now: u64, due: &mut Vec<ConnId>) {
        self.handshakes.expire(now);
        self.check_tokens(now, due);
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
                        conn.cool();
                        now + interval
                    }
                }
            };
            self.schedule(next, id);
        }
    }

    /// Tells the connections whose token just expired, closes those whose grace ran out.
    fn check_tokens(&self, now: u64, fired: &mut Vec<ConnId>) {
        let mut expiring = Vec::new();
        self.tokens.borrow_mut().due(now, fired, &mut expiring);
        for (id, due) in expiring {
            let Some(conn) = self.conns.borrow().get(&id).cloned() else {
                continue;
            };
            if conn.state() != State::Open {
                continue;
            }
            match due {
                Due::Tell { .. } => {
                    let grace = self.config.token_grace_ms;
                    let protocol = conn.dialect.protocol();
                    if let Some(frame) = conn.with_peer(|peer| protocol.token_expired(peer, grace))
                    {
                        conn.send(frame, now);
                    }
                }
                Due::Close => {
                    tracing::debug!(conn = %id, "token expired and not refreshed: closing");
                    let code = CloseCode::from(TOKEN_EXPIRED_CLOSE);
                    self.close(&conn, code, TOKEN_EXPIRED_REASON, now);
                }
            }
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
