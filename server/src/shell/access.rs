//! The access log: one line per HTTP request, per WebSocket opened, refused, closed by the
//! server and ended, under the target `rookery::access` (silence it with
//! `log = "info,rookery::access=off"`).
//!
//! Every line of a WebSocket's life carries `conn` (the connection id, `CORE.SEQ`, unique
//! for the life of the process), so `grep -w 'conn=1.42'` (text) or
//! `grep '"conn":"1.42"'` (JSON) gives a connection's whole story; the open line also names
//! its `client` (the dialect's public id, which the admin API and other clients see), so a
//! client id leads to the connection id. Query strings are never logged: they may hold
//! tokens (`?token=`).

use super::conn::Conn;
use crate::dialect::Dialect;
use std::net::SocketAddr;

const TARGET: &str = "rookery::access";

/// The status code of an HTTP response we wrote (`HTTP/1.1 200 OK…`), 0 if unreadable.
fn status_of(response: &[u8]) -> u16 {
    response
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// An HTTP request answered with `response`, `micros` after its head was read.
pub fn http(peer: SocketAddr, method: &str, path: &str, response: &[u8], micros: u128) {
    let status = status_of(response);
    tracing::info!(target: TARGET, %peer, method, path, status, micros, "http");
}

/// A WebSocket upgrade answered with an HTTP error (`response`) instead of 101.
pub fn ws_refused(peer: SocketAddr, dialect: Dialect, path: &str, response: &[u8]) {
    let status = status_of(response);
    let dialect = dialect.name();
    tracing::info!(target: TARGET, %peer, dialect, path, status, "ws refused");
}

/// A WebSocket session opened.
pub fn ws_open(conn: &Conn, peer: SocketAddr, room: Option<&str>) {
    let id = conn.id;
    let dialect = conn.dialect.name();
    let client = conn.with_peer(|p| p.public_id.to_string());
    let user = conn.user_id();
    let user = user.as_deref().unwrap_or("-");
    let room = room.unwrap_or("-");
    tracing::info!(target: TARGET, conn = %id, %client, %peer, dialect, room, user, "ws open");
}

/// The server started a WebSocket's close handshake.
pub fn ws_close(conn: &Conn, code: u16, reason: &str) {
    let id = conn.id;
    tracing::info!(target: TARGET, conn = %id, code, reason, "ws close");
}

/// A WebSocket session ended (its socket is done); `code` is the close code the server
/// sent, or none when the client closed or went away first.
pub fn ws_end(conn: &Conn, now_ms: u64) {
    let id = conn.id;
    let dialect = conn.dialect.name();
    let ms = now_ms.saturating_sub(conn.opened_ms);
    let by = match conn.close_code() {
        Some(code) => format!("server {code}"),
        None => "client".to_owned(),
    };
    tracing::info!(target: TARGET, conn = %id, dialect, ms, closed_by = %by, "ws end");
}
