//! A WebSocket session in any dialect: the upgrade (`upgrade.rs`), then one task that reads
//! and writes until the socket ends, then leave.
//!
//! The session feeds what it reads to tungstenite; every text message is decoded on this
//! core by the connection's dialect (so JSON parsing spreads over all cores), whose rules
//! [`super::session`] carries out. The same task drains the connection's send queue.
//!
//! What a session task keeps while its connection is idle is what an idle connection
//! costs, so the task is small: opening and closing run as boxed futures (their state —
//! the request, SLIP's backend call — lives only while they run), handling a message and
//! the write in flight are boxed too, and the socket is read on readiness into a buffer on
//! the stack, so no read buffer is held while waiting.

use super::batch::{write_batch, Batch, Written};
use super::conn::Conn;
use super::mailbox::now_ms;
use super::recv::{recv_now, Received};
use super::session;
use super::shard::Shard;
use super::upgrade;
use crate::dialect::{Dialect, Refusal};
use crate::engine::Command;
use crate::http::Request;
use monoio::io::{AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf};
use monoio::net::TcpStream;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::Poll;
use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

/// Runs a session of `dialect` on `socket`, whose request head was `req`; `leftover` holds
/// bytes the client sent after the head (plaintext: over TLS, already decrypted). `room` is
/// the room joined at once (none for Lambda, which joins by message).
///
/// The upgrade runs here, in the request's task; the open session then runs as a task of
/// its own, which holds only [`Session`] and a pending readiness wait while idle.
pub async fn serve_ws(
    shard: Rc<Shard>,
    socket: super::tls::Socket,
    peer: SocketAddr,
    req: Request,
    leftover: Vec<u8>,
    dialect: Dialect,
    room: Option<String>,
) {
    if let Some(session) = upgrade::open(shard, socket, peer, req, dialect, room).await {
        monoio::spawn(run(session, leftover));
    }
}

/// An open session's life, in one task: read and handle messages, and drain the send queue
/// with one vectored write at a time, until the socket ends; then leave the rooms, flush
/// what is queued and shut the socket down.
///
/// One task does both (rather than a reader and a writer) because a task is what an idle
/// connection costs: it waits on the socket's readiness and on the queue at once.
async fn run(session: Session, leftover: Vec<u8>) {
    let Session {
        shard,
        conn,
        reader,
        writer,
        _admission,
    } = session;
    let mut sink = Some(writer);
    // The 101 is queued: the first write starts at once.
    let mut writing = next_write(&conn, &mut sink, None);
    let mut read_wait = pin!(readable(&reader));
    // Handling runs beside the writes (a handler may wait on a backend for seconds while
    // broadcasts keep arriving for this connection), boxed: it is not idle state.
    let mut handling: Option<Pin<Box<dyn Future<Output = bool> + '_>>> =
        Some(Box::pin(feed(&shard, &conn, leftover)));
    let mut reading = true;
    let mut closed = false;
    loop {
        if !reading && handling.is_none() && !closed {
            handling = Some(Box::pin(async {
                close(&shard, &conn).await;
                false
            }));
            closed = true;
        }
        let flushed = writing.is_none() && (sink.is_none() || !conn.has_queued());
        if closed && handling.is_none() && flushed {
            break;
        }
        let event = poll_fn(|cx| {
            if let Some(write) = writing.as_mut() {
                if let Poll::Ready(done) = write.as_mut().poll(cx) {
                    return Poll::Ready(Event::Wrote(done));
                }
            } else if sink.is_some() && conn.poll_queued(cx) {
                return Poll::Ready(Event::Queued);
            }
            if let Some(handler) = handling.as_mut() {
                if let Poll::Ready(alive) = handler.as_mut().poll(cx) {
                    return Poll::Ready(Event::Handled(alive));
                }
            } else if reading {
                if let Poll::Ready(result) = read_wait.as_mut().poll(cx) {
                    return Poll::Ready(Event::Readable(result.is_ok()));
                }
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Readable(true) => handling = Some(Box::pin(on_readable(&shard, &conn))),
            Event::Readable(false) => reading = false,
            Event::Handled(alive) => {
                handling = None;
                if !alive {
                    reading = false;
                } else if reading {
                    read_wait.set(readable(&reader));
                }
            }
            Event::Queued => writing = next_write(&conn, &mut sink, None),
            Event::Wrote((out, result, batch)) => {
                writing = None;
                match conn.after_write(result, batch) {
                    Written::All => sink = Some(out),
                    Written::Partly(rest) => {
                        sink = Some(out);
                        writing = next_write(&conn, &mut sink, Some(rest));
                    }
                    Written::Failed => {}
                }
            }
        }
    }
    if let Some(mut out) = sink {
        if let Some(goodbye) = conn.tls_goodbye() {
            // Boxed: a write future held in this task's state would grow every session's
            // task, idle ones included, by its size (~240 B per connection, measured in W1).
            let _ = Box::pin(out.write_all(goodbye)).await;
        }
        let _ = out.shutdown().await;
    }
}

/// Starts writing `rest` (what a partial write left) or else what is queued, when the
/// sink is free (no write in flight, the socket not failed) and there is something to write.
///
/// The write in flight is boxed, so an idle session's task holds no room for one.
#[allow(clippy::type_complexity)]
fn next_write<W: AsyncWriteRent + 'static>(
    conn: &Conn,
    sink: &mut Option<W>,
    rest: Option<Batch>,
) -> Option<Pin<Box<impl Future<Output = (W, std::io::Result<usize>, Batch)>>>> {
    sink.as_ref()?;
    let batch = match rest {
        Some(rest) => rest,
        None => conn.next_batch()?,
    };
    let out = sink.take()?;
    Some(Box::pin(write_batch(out, batch)))
}

/// What woke a session.
enum Event<W> {
    /// The socket is readable (`false`: waiting for it failed).
    Readable(bool),
    /// Frames are queued and no write is in flight.
    Queued,
    /// A write finished.
    Wrote(W),
    /// Handling what was read (or closing) finished; `false`: the session is over.
    Handled(bool),
}

/// An open session: what its task holds for the connection's life.
pub(super) struct Session {
    pub(super) shard: Rc<Shard>,
    pub(super) conn: Rc<Conn>,
    pub(super) reader: OwnedReadHalf<TcpStream>,
    pub(super) writer: OwnedWriteHalf<TcpStream>,
    /// The connection's place under the connection limits.
    pub(super) _admission: super::admission::Admission,
}

/// Waits until the socket has bytes, an end or an error to report.
async fn readable(reader: &OwnedReadHalf<TcpStream>) -> std::io::Result<()> {
    // SAFETY: the write half uses the shared stream only to submit its writes (each
    // operation holds its own handle on the descriptor); waiting for readiness reads
    // nothing of the stream's state, exactly as monoio's own read half does.
    let stream: &TcpStream = unsafe { &*reader.0.get() };
    stream.readable(false).await
}

/// Reads what the socket has (up to [`super::recv::MAX_READ`], without blocking) and handles it.
/// Returns false when the session is over.
async fn on_readable(shard: &Rc<Shard>, conn: &Rc<Conn>) -> bool {
    let mut open = true;
    match recv_now(conn.fd(), |bytes| open = take_bytes(shard, conn, bytes)) {
        // What came before a TLS close or failure is handled still.
        Received::Bytes(_) => after_bytes(shard, conn).await && open,
        Received::Nothing => true,
        Received::End => false,
    }
}

/// Hands `bytes` (sent right after the request head, plaintext) to tungstenite and handles
/// them.
async fn feed(shard: &Rc<Shard>, conn: &Rc<Conn>, bytes: Vec<u8>) -> bool {
    if bytes.is_empty() {
        return true;
    }
    shard.metrics.bytes_in.add(bytes.len() as u64);
    conn.with_ws(|ws| ws.push(&bytes));
    after_bytes(shard, conn).await
}

/// Counts bytes from the client and adds them to tungstenite's input: as they are, or
/// decrypted on a TLS connection. False when the TLS connection is over (the peer's
/// `close_notify`, or a record rustls refuses).
fn take_bytes(shard: &Shard, conn: &Conn, bytes: &[u8]) -> bool {
    shard.metrics.bytes_in.add(bytes.len() as u64);
    let Some(tls) = conn.tls() else {
        conn.with_ws(|ws| ws.push(bytes));
        return true;
    };
    let took = tls
        .borrow_mut()
        .take(bytes, |plain| conn.with_ws(|ws| ws.push(plain)));
    conn.after_tls_read();
    took == super::tls::Took::Fine
}

/// Handles the messages that bytes just added to tungstenite's input complete.
async fn after_bytes(shard: &Rc<Shard>, conn: &Rc<Conn>) -> bool {
    if conn.dialect.protocol().any_frame_is_alive() {
        conn.last_seen_ms.set(now_ms());
    }
    let alive = process_frames(shard, conn).await;
    conn.rest_ws();
    alive
}

/// Leaves the connection's rooms once its socket is done.
async fn close(shard: &Rc<Shard>, conn: &Rc<Conn>) {
    let id = conn.id;
    super::access::ws_end(conn, now_ms());
    shard.unregister(id);
    conn.mark_dead();
    for room in conn.rooms() {
        let leave = Command::Leave { conn: id, room };
        shard.command(leave).await;
    }
    session::closed(shard, conn).await;
}

/// Handles every complete message now buffered. Returns false when the session is over.
async fn process_frames(shard: &Rc<Shard>, conn: &Rc<Conn>) -> bool {
    loop {
        let next = conn.with_ws(|ws| ws.ctx.read(&mut ws.stream));
        match next {
            Ok(Message::Text(_) | Message::Binary(_)) if !admit_message(shard, conn) => {}
            Ok(Message::Text(text)) => {
                shard.metrics.messages_in.inc();
                session::text(shard, conn, text.as_bytes()).await;
            }
            Ok(Message::Binary(data)) if conn.dialect.protocol().takes_binary() => {
                shard.metrics.messages_in.inc();
                session::binary(shard, conn, &data).await;
            }
            Ok(Message::Binary(_)) if conn.dialect.protocol().binary_closes() => {
                shard.metrics.messages_in.inc();
                conn.close(CloseCode::Unsupported, "text frames only", now_ms());
                return false;
            }
            Ok(Message::Binary(_)) => {
                shard.metrics.messages_in.inc();
                shard.metrics.error_frame(conn.dialect);
                if let Some(frame) = session::refusal(conn, Refusal::Binary) {
                    conn.send(frame, now_ms());
                }
            }
            Ok(Message::Ping(_)) => {
                // RFC 6455 §5.5.2: a pong goes out "as soon as practical". Queued now, it
                // is not held behind what the rest of this read leads to: the end of a
                // fragmented message the ping interrupted may follow in the same read, and
                // handling it may wait (on a backend, on a room owner).
                conn.flush_protocol();
            }
            Ok(_) => {} // pong, close: tungstenite queued what the protocol requires.
            Err(WsError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                conn.flush_protocol();
                return true;
            }
            Err(WsError::ConnectionClosed) | Err(WsError::AlreadyClosed) => {
                conn.flush_protocol();
                return false;
            }
            Err(error) => {
                let (code, reason) = close_for(&error);
                conn.close(code, &reason, now_ms());
                // The stream cannot be parsed past an error (RFC 6455 §7.1.7: fail the
                // connection): the writer flushes the close frame, then the socket ends.
                return false;
            }
        }
    }
}

/// Applies the connection's rate limit to one message: false when it is dropped (answered
/// once per run of drops with a `rate_limited` error, or closing the connection with 1008
/// once the run is as long as the burst). Messages after a close are ignored.
fn admit_message(shard: &Shard, conn: &Conn) -> bool {
    if conn.state() != super::conn::State::Open {
        return false;
    }
    let now = now_ms();
    let verdict = conn.rate.borrow_mut().check(now);
    match verdict {
        crate::ratelimit::Verdict::Pass => true,
        crate::ratelimit::Verdict::Drop { first } => {
            shard.metrics.rate_limited.inc();
            if first {
                if let Some(frame) = session::refusal(conn, Refusal::RateLimited) {
                    shard.metrics.error_frame(conn.dialect);
                    conn.send(frame, now);
                }
            }
            false
        }
        crate::ratelimit::Verdict::Close => {
            shard.metrics.rate_limited.inc();
            shard.close(conn, CloseCode::Policy, "rate limit exceeded", now);
            false
        }
    }
}

/// The close code and reason for a protocol-level failure.
fn close_for(error: &WsError) -> (CloseCode, String) {
    match error {
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => (
            CloseCode::Size,
            format!("message of {size} bytes exceeds the limit of {max_size}"),
        ),
        WsError::Capacity(e) => (CloseCode::Size, e.to_string()),
        WsError::Utf8(_) => (CloseCode::Invalid, "invalid UTF-8 in a text message".into()),
        WsError::Protocol(ProtocolError::InvalidCloseSequence) => {
            (CloseCode::Protocol, "invalid close sequence".into())
        }
        WsError::Protocol(e) => (CloseCode::Protocol, e.to_string()),
        other => (CloseCode::Error, other.to_string()),
    }
}
