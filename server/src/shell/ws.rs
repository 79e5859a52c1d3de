//! A WebSocket session in any dialect: upgrade, identify, join, then one task that reads
//! and writes until the socket ends, then leave.
//!
//! The session feeds what it reads to tungstenite; every text message is decoded on this
//! core by the connection's dialect (so JSON parsing spreads over all cores) and handed to
//! [`super::handlers`]. The same task drains the connection's send queue.
//!
//! What a session task keeps while its connection is idle is what an idle connection
//! costs, so the task is small: opening and closing run as boxed futures (their state —
//! the request, SLIP's backend call — lives only while they run), handling a message and
//! the write in flight are boxed too, and the socket is read on readiness into a buffer on
//! the stack, so no read buffer is held while waiting.

use super::conn::{write_batch, Batch, Conn, Written};
use super::core::{now_ms, Core};
use super::recv::{recv_now, Received};
use super::session;
use crate::dialect::{slip, Dialect, Refusal};
use crate::engine::{Command, Identity};
use crate::http::{self, Request};
use bytes::Bytes;
use monoio::io::{AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tungstenite::handshake::server::create_response;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

/// The 101 response for `req`, or the 400 JSON error when it is no valid upgrade.
fn accept_upgrade(req: &Request) -> Result<Vec<u8>, Vec<u8>> {
    let mut builder = tungstenite::http::Request::builder()
        .method(req.method.as_str())
        .uri(req.path.as_str())
        .version(if req.version == 0 {
            tungstenite::http::Version::HTTP_10
        } else {
            tungstenite::http::Version::HTTP_11
        });
    for (name, value) in &req.headers {
        builder = builder.header(name.as_str(), value.as_slice());
    }
    let request = builder
        .body(())
        .map_err(|_| http::json_error(400, "bad_request", "malformed upgrade request"))?;
    let response = create_response(&request)
        .map_err(|e| http::json_error(400, "bad_upgrade", &e.to_string()))?;
    let mut out = Vec::with_capacity(160);
    tungstenite::handshake::server::write_response(&mut out, &response)
        .map_err(|_| http::json_error(400, "bad_upgrade", "cannot build the response"))?;
    Ok(out)
}

/// The user of the request's token (`Authorization: Bearer` or `?token=`): `Ok(None)` when
/// there is no token, `Err(reason)` when there is one and it is refused.
fn identify(core: &Core, req: &Request) -> Result<Option<String>, String> {
    let token = req
        .bearer()
        .or_else(|| req.query_param("token").filter(|t| !t.is_empty()));
    match token {
        None => Ok(None),
        Some(token) => core
            .shared
            .verifier
            .verify(token)
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

/// Runs a session of `dialect` on `stream`, whose request head was `req`; `leftover` holds
/// bytes the client sent after the head. `room` is the room joined at once (none for
/// Lambda, which joins by message).
///
/// The upgrade runs here, in the request's task; the open session then runs as a task of
/// its own, which holds only [`Session`] and a pending readiness wait while idle.
pub async fn serve_ws(
    core: Rc<Core>,
    stream: TcpStream,
    peer: SocketAddr,
    req: Request,
    leftover: Vec<u8>,
    dialect: Dialect,
    room: Option<String>,
) {
    if let Some(session) = open(core, stream, peer, req, dialect, room).await {
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
        core,
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
        Some(Box::pin(feed(&core, &conn, leftover)));
    let mut reading = true;
    let mut closed = false;
    loop {
        if !reading && handling.is_none() && !closed {
            handling = Some(Box::pin(async {
                close(&core, &conn).await;
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
            Event::Readable(true) => handling = Some(Box::pin(on_readable(&core, &conn))),
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
struct Session {
    core: Rc<Core>,
    conn: Rc<Conn>,
    reader: OwnedReadHalf<TcpStream>,
    writer: OwnedWriteHalf<TcpStream>,
    /// The connection's place under the connection limits.
    _admission: super::admission::Admission,
}

/// Upgrades the connection, identifies the user, registers the connection and joins its
/// room. `None` when the upgrade is refused (the refusal has been written).
async fn open(
    core: Rc<Core>,
    mut stream: TcpStream,
    peer: SocketAddr,
    req: Request,
    dialect: Dialect,
    room: Option<String>,
) -> Option<Session> {
    let accept = match accept_upgrade(&req) {
        Ok(accept) => accept,
        Err(refusal) => {
            let _ = stream.write_all(refusal).await;
            return None;
        }
    };
    let admission = match super::admission::admit(&core.shared, peer.ip()) {
        Ok(admission) => admission,
        Err(refusal) => {
            let response = http::json_error(503, refusal.code, &refusal.message);
            let _ = stream.write_all(response).await;
            return None;
        }
    };
    let config = &core.config;
    let id = core.next_conn_id();
    let now = now_ms();
    let (user, token_error) = match identify(&core, &req) {
        Ok(user) => (user, None),
        Err(reason) => (None, Some(reason)),
    };
    let protocol = dialect.protocol();
    let public_id = protocol.new_public_id(user.as_deref(), now);
    // SLIP: the backend decides whether the connection opens, before the handshake ends.
    let mut slip_events = Vec::new();
    if dialect == Dialect::Slip {
        // Boxed: the backend call's state is needed by SLIP's upgrades only.
        match Box::pin(slip_open(&core, &req, &public_id)).await {
            Ok(events) => slip_events = events,
            Err(refusal) => {
                let _ = stream.write_all(refusal).await;
                return None;
            }
        }
    }
    drop(req);
    let identity = Arc::new(Identity { public_id, user });
    let conn = Rc::new(Conn::new(
        id,
        room.clone(),
        dialect,
        identity.clone(),
        stream.as_raw_fd(),
        config.max_outbound_bytes,
        core.metrics.clone(),
        config.max_message_size,
        now,
    ));
    *conn.rate.borrow_mut() =
        crate::ratelimit::TokenBucket::new(config.max_message_rate, config.message_burst, now);
    // The 101 goes first in the queue; everything else follows it.
    conn.send(Bytes::from(accept), now);
    core.register(conn.clone());
    let (reader, writer) = stream.into_split();

    // The dialect's greeting. A refused token is told either here or in the room's
    // welcome (`Reply::TokenRefused`), as each dialect chooses.
    let refused = token_error.as_deref();
    let greeting = conn.with_peer(|peer| protocol.greeting(peer, room.as_deref(), refused));
    for frame in greeting {
        conn.send(frame, now);
    }
    if !slip_events.is_empty() {
        let mut actions = Vec::new();
        slip::apply(slip_events, &mut actions);
        Box::pin(session::carry_out(&core, &conn, actions)).await;
    }
    if let Some(room) = &room {
        let details = serde_json::json!({"ip": peer.ip().to_string(), "core": core.id});
        session::join_room_with(&core, &conn, room, details, token_error).await;
    }
    Some(Session {
        core,
        conn,
        reader,
        writer,
        _admission: admission,
    })
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
async fn on_readable(core: &Rc<Core>, conn: &Rc<Conn>) -> bool {
    match recv_now(conn.fd(), |bytes| take_bytes(core, conn, bytes)) {
        Received::Bytes(_) => after_bytes(core, conn).await,
        Received::Nothing => true,
        Received::End => false,
    }
}

/// Hands `bytes` (sent right after the request head) to tungstenite and handles them.
async fn feed(core: &Rc<Core>, conn: &Rc<Conn>, bytes: Vec<u8>) -> bool {
    if bytes.is_empty() {
        return true;
    }
    take_bytes(core, conn, &bytes);
    after_bytes(core, conn).await
}

/// Counts bytes from the client and adds them to tungstenite's input.
fn take_bytes(core: &Core, conn: &Conn, bytes: &[u8]) {
    core.metrics.bytes_in.add(bytes.len() as u64);
    conn.with_ws(|ws| ws.push(bytes));
}

/// Handles the messages that bytes just added to tungstenite's input complete.
async fn after_bytes(core: &Rc<Core>, conn: &Rc<Conn>) -> bool {
    if conn.dialect.protocol().any_frame_is_alive() {
        conn.last_seen_ms.set(now_ms());
    }
    let alive = process_frames(core, conn).await;
    conn.rest_ws();
    alive
}

/// Leaves the connection's rooms once its socket is done.
async fn close(core: &Rc<Core>, conn: &Rc<Conn>) {
    let id = conn.id;
    tracing::debug!(conn = id.0, "session over");
    core.unregister(id);
    conn.mark_dead();
    for room in conn.rooms() {
        let leave = Command::Leave {
            conn: id,
            room: room.clone(),
        };
        core.command(&room, leave).await;
    }
    session::closed(core, conn).await;
}

/// Handles every complete message now buffered. Returns false when the session is over.
async fn process_frames(core: &Rc<Core>, conn: &Rc<Conn>) -> bool {
    loop {
        let next = conn.with_ws(|ws| ws.ctx.read(&mut ws.stream));
        match next {
            Ok(Message::Text(_) | Message::Binary(_)) if !admit_message(core, conn) => {}
            Ok(Message::Text(text)) => {
                core.metrics.messages_in.inc();
                session::text(core, conn, text.as_bytes()).await;
            }
            Ok(Message::Binary(_)) if conn.dialect.protocol().binary_closes() => {
                core.metrics.messages_in.inc();
                conn.close(CloseCode::Unsupported, "text frames only", now_ms());
                return false;
            }
            Ok(Message::Binary(_)) => {
                core.metrics.messages_in.inc();
                core.metrics.error_frames.inc();
                if let Some(frame) = session::refusal(conn, Refusal::Binary) {
                    conn.send(frame, now_ms());
                }
            }
            Ok(_) => {} // ping, pong, close: tungstenite queued what the protocol requires.
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

/// Asks the SLIP backend whether the connection may open. `Ok` holds the events after the
/// leading `ACCEPT`; `Err` the HTTP response refusing the upgrade, with the statuses the
/// seed's code used: 500 when the backend fails or answers non-2xx, 400 for invalid events
/// or a first event that is not `ACCEPT`, 406 for `ACCEPT` with `DISCONNECT`.
async fn slip_open(
    core: &Core,
    req: &Request,
    conn_id: &str,
) -> Result<Vec<slip::BackendEvent>, Vec<u8>> {
    let body = slip::open_body(&req.headers);
    let Some(request) = slip::backend_request(&core.config, conn_id, body, now_ms()) else {
        return Err(http::json_error(
            503,
            "unavailable",
            "SLIP is not configured (--slip-target-url)",
        ));
    };
    let answer = match core.backend(request).await {
        Ok(answer) => answer,
        Err(e) => return Err(http::json_error(500, "backend_error", &e.to_string())),
    };
    if !(200..300).contains(&answer.status) {
        let message = format!("the backend answered {}", answer.status);
        return Err(http::json_error(500, "backend_error", &message));
    }
    let invalid = || http::json(400, &serde_json::json!({"message": "invalid commands"}));
    let mut events = slip::parse_events(&answer.body).ok_or_else(invalid)?;
    if events.first() != Some(&slip::BackendEvent::Accept) {
        return Err(invalid());
    }
    if events.contains(&slip::BackendEvent::Disconnect) {
        return Err(http::json(
            406,
            &serde_json::json!({"message": "the backend accepted and disconnected"}),
        ));
    }
    events.remove(0);
    Ok(events)
}

/// Applies the connection's rate limit to one message: false when it is dropped (answered
/// once per run of drops with a `rate_limited` error, or closing the connection with 1008
/// once the run is as long as the burst). Messages after a close are ignored.
fn admit_message(core: &Core, conn: &Conn) -> bool {
    if conn.state() != super::conn::State::Open {
        return false;
    }
    let now = now_ms();
    let verdict = conn.rate.borrow_mut().check(now);
    match verdict {
        crate::ratelimit::Verdict::Pass => true,
        crate::ratelimit::Verdict::Drop { first } => {
            core.metrics.rate_limited.inc();
            if first {
                if let Some(frame) = session::refusal(conn, Refusal::RateLimited) {
                    core.metrics.error_frames.inc();
                    conn.send(frame, now);
                }
            }
            false
        }
        crate::ratelimit::Verdict::Close => {
            core.metrics.rate_limited.inc();
            core.close(conn, CloseCode::Policy, "rate limit exceeded", now);
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
