//! A WebSocket session in any dialect: the upgrade (`upgrade.rs`), then one task that reads
//! and writes until the socket ends, then leave.
//!
//! The session feeds what it reads to tungstenite; every text message is decoded on this
//! core by the connection's dialect (so JSON parsing spreads over all cores), whose rules
//! [`super::session`] carries out. The same task drains the connection's send queue.
//!
//! An idle connection has no task: its session parks (`parking.rs`) and is started again
//! when its socket or its queue needs it. While it runs, the task is small: opening and
//! closing run as boxed futures (their state — the request, SLIP's backend call — lives
//! only while they run), handling a message and the wait for room in a full socket are
//! boxed too, writes finish within the call that makes them (`batch.rs`), and the socket
//! is read on readiness into the core's read buffer, so no read buffer is held while
//! waiting. `sizes_of_what_an_idle_connection_holds` (below) prints the sizes and bounds
//! the task's.

use super::batch::{Batch, Written};
use super::conn::Conn;
use super::mailbox::now_ms;
use super::parking::{self, Parked};
use super::recv::{recv_now, Received};
use super::session;
use super::shard::Shard;
use super::upgrade;
use crate::dialect::{Dialect, Refusal};
use crate::engine::Command;
use crate::http::Request;
use monoio::io::AsyncWriteRent;
use monoio::net::TcpStream;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
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
/// what is queued and shut the socket down. While the connection is idle the task ends and
/// the session waits parked (`parking.rs`), started again by [`resume`].
///
/// One task does both (rather than a reader and a writer) because a task is what a
/// connection costs while it runs: it waits on the socket's readiness and on the queue at
/// once. It owns the whole socket: both directions only need `&TcpStream` (readiness waits)
/// and the descriptor (the non-blocking `recv` and `sendmsg`), so the stream is never split.
fn run(session: Session, leftover: Vec<u8>) -> impl Future<Output = ()> {
    // Not an `async fn`: its arguments would be kept in the task beside the locals moved
    // out of them. The block captures the session's parts once.
    let Session {
        shard,
        conn,
        stream,
        _admission: admission,
    } = session;
    // What the client sent after the request head goes to tungstenite now; the task keeps
    // only whether there is something to handle.
    let start = if feed(&shard, &conn, &leftover) {
        Start::Handle
    } else {
        Start::Wait
    };
    drop(leftover);
    live(shard, conn, stream, admission, start)
}

/// Starts a parked session again (`parking.rs`): it reads at once when its socket woke it
/// (`readable`), else it looks at what it was woken for.
pub fn resume(
    shard: Rc<Shard>,
    conn: Rc<Conn>,
    parked: Parked,
    readable: bool,
) -> impl Future<Output = ()> {
    let Parked {
        stream, admission, ..
    } = parked;
    let start = if readable { Start::Read } else { Start::Wait };
    live(shard, conn, stream, admission, start)
}

/// How a session's task starts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Handle what tungstenite already holds (sent right after the request head).
    Handle,
    /// Read now: the socket reported.
    Read,
    /// Wait for the socket or the queue.
    Wait,
}

/// How [`drive`] ended.
enum Ending {
    /// The session is idle and may park.
    Park,
    /// The session is over; `true` when a write failed.
    Over(bool),
}

/// The session's task from `start` on: [`drive`] until it parks or ends; then either
/// park, or close the socket and give back the connection's place.
///
/// Not an `async fn` (clippy would have one): an `async fn` keeps its arguments in the task
/// beside the locals the loop moves them into, ~130 bytes more in every running session.
#[allow(clippy::manual_async_fn)]
fn live(
    shard: Rc<Shard>,
    conn: Rc<Conn>,
    mut stream: TcpStream,
    mut admission: super::admission::Admission,
    start: Start,
) -> impl Future<Output = ()> {
    async move {
        let mut start = start;
        let failed = loop {
            let ending = drive(&shard, &conn, &stream, start).await;
            match ending {
                Ending::Over(failed) => break failed,
                Ending::Park => {
                    conn.drop_ws_at_rest();
                    let parked = Parked {
                        stream,
                        admission,
                        at_ms: now_ms(),
                    };
                    match parking::park(&conn, parked) {
                        Ok(()) => return,
                        Err(back) => {
                            // Not parked (the epoll set refused the socket): run on.
                            stream = back.stream;
                            admission = back.admission;
                            conn.stay_running();
                            start = Start::Wait;
                        }
                    }
                }
            }
        };
        if !failed {
            if let Some(goodbye) = conn.tls_goodbye() {
                // Boxed: its writability wait held in this task's state would grow every
                // session's task.
                let _ = Box::pin(write_all(&stream, Batch::of(goodbye))).await;
            }
            let _ = stream.shutdown().await;
        }
        conn.release_fd();
        // Named here so that the block holds it: the connection keeps its place under the
        // connection limits until its session is over.
        drop(admission);
    }
}

/// Reads, handles and writes until the session is over, or idle and allowed to park.
async fn drive(shard: &Rc<Shard>, conn: &Rc<Conn>, stream: &TcpStream, start: Start) -> Ending {
    // Handling runs beside the writes (a handler may wait on a backend for seconds
    // while broadcasts keep arriving for this connection), boxed: not idle state.
    let mut flow = Flow {
        handling: match start {
            Start::Handle => Some(Box::pin(after_bytes(shard, conn))),
            Start::Read => Some(Box::pin(on_readable(shard, conn))),
            Start::Wait => None,
        },
        room_wait: None,
        reading: true,
        closed: false,
        failed: false,
    };
    let mut read_wait = pin!(stream.readable(false));
    loop {
        if !flow.reading && flow.handling.is_none() && !flow.closed {
            flow.handling = Some(Box::pin(async {
                close(shard, conn).await;
                false
            }));
            flow.closed = true;
        }
        let flushed = flow.failed || !conn.has_queued();
        if flow.closed && flow.handling.is_none() && flushed {
            return Ending::Over(flow.failed);
        }
        let event = poll_fn(|cx| match flow.poll(cx, conn, read_wait.as_mut()) {
            // Nothing to do until the socket or the queue says so: park, if allowed.
            Poll::Pending if flow.idle() && conn.may_park() => Poll::Ready(Event::Idle),
            other => other,
        })
        .await;
        let batch = match event {
            Event::Idle => return Ending::Park,
            Event::Readable(true) => {
                flow.handling = Some(Box::pin(on_readable(shard, conn)));
                continue;
            }
            Event::Readable(false) => {
                flow.reading = false;
                continue;
            }
            Event::Handled(alive) => {
                flow.handling = None;
                if !alive {
                    flow.reading = false;
                } else if flow.reading {
                    read_wait.set(stream.readable(false));
                }
                continue;
            }
            Event::Queued => {
                // Not written at once: after a poll round trip (writable at once,
                // unless the socket is full), with everything queued by then.
                // Writing at every wake-up sends a small TCP segment per wake-up,
                // and under load that per-packet work (the peer's wake-up above
                // all) swamps the core: W3 fell to half its rate past saturation.
                flow.room_wait = Some(Box::pin(stream.writable(false)));
                continue;
            }
            Event::Writable(ready) => {
                flow.room_wait = None;
                let blocked = conn.take_blocked();
                if !ready {
                    // The wait failed: so does the write.
                    let error = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
                    let batch = blocked.unwrap_or_else(super::batch::spares::take_batch);
                    let _ = conn.after_write(Err(error), batch);
                    flow.failed = true;
                    continue;
                }
                match blocked.or_else(|| conn.next_batch()) {
                    Some(batch) => batch,
                    None => continue,
                }
            }
        };
        match conn.write(batch) {
            Written::All => {}
            Written::Partly(rest) => {
                // The socket's buffer is full: wait for room before writing the rest.
                conn.set_blocked(rest);
                flow.room_wait = Some(Box::pin(stream.writable(false)));
            }
            Written::Failed => flow.failed = true,
        }
    }
}

/// What a session's loop keeps between events, besides the readiness wait: one struct,
/// so that the loop's poll borrows one thing (each borrow held across the wait is a
/// pointer in every idle task).
struct Flow<'a> {
    /// Handling what was read (or closing), while it runs.
    handling: Option<Pin<Box<dyn Future<Output = bool> + 'a>>>,
    /// The wait for room before the next write: for the batch the socket had no room for
    /// (`Conn::blocked`), or for frames just queued that the flusher does not write.
    /// Boxed: an idle session holds none.
    room_wait: Option<Pin<Box<dyn Future<Output = std::io::Result<()>> + 'a>>>,
    /// The socket may still have bytes to read.
    reading: bool,
    /// The session is closing (leaving its rooms).
    closed: bool,
    /// A write failed: nothing more can be written.
    failed: bool,
}

impl Flow<'_> {
    /// Waiting only for the socket to be readable: nothing handled, no write waiting.
    fn idle(&self) -> bool {
        self.handling.is_none()
            && self.room_wait.is_none()
            && self.reading
            && !self.closed
            && !self.failed
    }

    /// What happened first: room for the blocked batch (or else frames queued), handling
    /// finished (or else the socket readable).
    fn poll<R: Future<Output = std::io::Result<()>>>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        conn: &Conn,
        read_wait: Pin<&mut R>,
    ) -> Poll<Event> {
        if let Some(wait) = self.room_wait.as_mut() {
            if let Poll::Ready(result) = wait.as_mut().poll(cx) {
                return Poll::Ready(Event::Writable(result.is_ok()));
            }
        } else if !self.failed && conn.poll_queued(cx) {
            return Poll::Ready(Event::Queued);
        }
        if let Some(handler) = self.handling.as_mut() {
            if let Poll::Ready(alive) = handler.as_mut().poll(cx) {
                return Poll::Ready(Event::Handled(alive));
            }
        } else if self.reading {
            if let Poll::Ready(result) = read_wait.poll(cx) {
                return Poll::Ready(Event::Readable(result.is_ok()));
            }
        }
        Poll::Pending
    }
}

/// Writes all of `batch` (a TLS connection's last records), waiting for room as needed.
/// False when the socket failed.
async fn write_all(stream: &TcpStream, mut batch: Batch) -> bool {
    loop {
        match batch.write_now(stream.as_raw_fd()) {
            Ok(0) => return false,
            Ok(n) => {
                batch.advance(n);
                if batch.is_empty() {
                    super::batch::spares::give_batch(batch);
                    return true;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if stream.writable(false).await.is_err() {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}

/// What woke a session.
enum Event {
    /// Nothing: the session waits for its socket only, and may park.
    Idle,
    /// The socket is readable (`false`: waiting for it failed).
    Readable(bool),
    /// Frames are queued and no write waits for room.
    Queued,
    /// The socket has room for the blocked batch or the queued frames (`false`: waiting
    /// for it failed).
    Writable(bool),
    /// Handling what was read (or closing) finished; `false`: the session is over.
    Handled(bool),
}

/// An open session: what its task holds for the connection's life.
pub(super) struct Session {
    pub(super) shard: Rc<Shard>,
    pub(super) conn: Rc<Conn>,
    pub(super) stream: TcpStream,
    /// The connection's place under the connection limits.
    pub(super) _admission: super::admission::Admission,
}

/// Reads what the socket has (up to [`super::recv::MAX_READ`], without blocking) and handles it.
/// Returns false when the session is over.
async fn on_readable(shard: &Rc<Shard>, conn: &Rc<Conn>) -> bool {
    conn.note_read();
    let mut open = true;
    match recv_now(conn.fd(), |bytes| open = take_bytes(shard, conn, bytes)) {
        // What came before a TLS close or failure is handled still.
        Received::Bytes(_) => after_bytes(shard, conn).await && open,
        Received::Nothing => true,
        Received::End => false,
    }
}

/// Hands `bytes` (sent right after the request head, plaintext) to tungstenite, to be
/// handled by [`after_bytes`]; false when there are none.
fn feed(shard: &Shard, conn: &Conn, bytes: &[u8]) -> bool {
    if bytes.is_empty() {
        return false;
    }
    shard.metrics.bytes_in.add(bytes.len() as u64);
    conn.with_ws(|ws| ws.push(bytes));
    true
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
    let mut bucket = conn.rate.get();
    let verdict = bucket.check(now);
    conn.rate.set(bucket);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `f` returns (an async fn's future), without calling it.
    fn returned_size<A, B, F>(_: fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// What an idle connection's task and records are made of (`bench/RESULTS.md`, "where
    /// an idle connection's bytes go"): `cargo test -p rookery --release sizes_of -- --nocapture`.
    #[test]
    fn sizes_of_what_an_idle_connection_holds() {
        let task = returned_size(run);
        println!("session future (run): {task} B");
        println!(
            "readiness wait: {} B",
            std::mem::size_of_val(&async {
                let stream: Option<&TcpStream> = None;
                if let Some(s) = stream {
                    let _ = s.readable(false).await;
                }
            })
        );
        let conn = std::mem::size_of::<Conn>();
        println!("Conn: {conn} B");
        println!("TcpStream: {} B", std::mem::size_of::<TcpStream>());
        println!(
            "WsState (mid-message only): {} B",
            std::mem::size_of::<super::super::wsstate::WsState>()
        );
        println!("Session: {} B", std::mem::size_of::<Session>());
        // A bound, so that something made to live in every idle task shows up here.
        assert!(task <= 640, "the session's future grew to {task} B");
        // 288 B of its own, and the parked session's record (`parking.rs`).
        assert!(conn <= 296, "Conn grew to {conn} B");
    }
}
