//! A connection's state shared on its core: who it is, its rooms, the bounded outbound
//! queue the fanout fills and the core's flusher (`flusher.rs`) or, when the socket is
//! full, the connection is TLS or closing, its session drains in batches (`batch.rs`), and
//! the WebSocket protocol state.

use super::batch::{spares, Batch, Written};
use super::metrics::Metrics;
use super::parking::{self, Parked};
use super::tls::TlsConn;
use super::wsstate::WsState;
use crate::dialect::{Dialect, Peer, Wire};
use crate::engine::Identity;
use crate::frame;
use crate::ids::ConnId;
use bytes::Bytes;
use smallvec::SmallVec;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Waker};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;

/// Most buffers taken into one vectored write (Linux's IOV_MAX is 1024).
pub(super) const MAX_IOVECS: usize = 512;

pub(super) use super::outframe::OutFrame;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Open,
    /// A close frame is queued; nothing else will be. Shut down after the close grace.
    Closing {
        since_ms: u64,
    },
    /// The socket's reading is over; the session ends once the queue is flushed or a write
    /// fails.
    Dead,
}

pub struct Conn {
    pub id: ConnId,
    /// The rooms this connection is a member of: one, fixed at connect, in most dialects;
    /// Lambda's `join` picks (and changes) it; SLIP's backend subscribes it to any number.
    rooms: RefCell<SmallVec<[String; 1]>>,
    pub dialect: Dialect,
    /// Who the connection is (shared with its memberships): what admin calls and targeted
    /// sends name.
    identity: RefCell<Arc<Identity>>,
    /// The socket's descriptor while the session holds the socket open; -1 after
    /// ([`Conn::release_fd`]).
    fd: Cell<RawFd>,
    /// What every connection of the core shares: its metrics and limits (one pointer here,
    /// not three fields in every connection).
    shared: Rc<ConnShared>,
    queue: RefCell<VecDeque<OutFrame>>,
    queued_bytes: Cell<usize>,
    /// What the socket had no room for (a whole batch or the rest of one), written before
    /// anything queued after it, by the session once the socket has room.
    blocked: RefCell<Option<Batch>>,
    /// Listed with the core's flusher (`flusher.rs`), which writes the queue at the end of
    /// the turn: listed once however many frames the turn queues.
    listed: Cell<bool>,
    /// The flusher's round that last wrote this connection ([`super::flusher::defer`]).
    flushed_in: Cell<u32>,
    writer: Cell<Option<Waker>>,
    /// While the session is parked (no task: `parking.rs`): its socket and admission.
    parked: Cell<Option<Box<Parked>>>,
    /// The socket is in the core's epoll set (re-armed, not added, at the next park).
    in_epoll: Cell<bool>,
    /// Parks in a row that the socket ended within `parking::SHORT_PARK_MS`; at
    /// `parking::HOT_AFTER` the connection is hot and stays running.
    short_parks: Cell<u8>,
    /// Something was read since the last ping (a hot connection cools without it).
    read_since_ping: Cell<bool>,
    state: Cell<State>,
    /// Last sign of life from the peer (any frame for Pact, `PONG` for wsdo).
    pub last_seen_ms: Cell<u64>,
    /// When the unanswered application ping went out (wsdo latency measurement).
    pub ping_sent_ms: Cell<Option<u64>>,
    /// Round-trip time measured by the last PING/PONG, in ms (wsdo's `latency`).
    pub latency_ms: Cell<u64>,
    /// Inbound message rate limit.
    pub rate: Cell<crate::ratelimit::TokenBucket>,
    /// When a draining server closes this connection (graceful shutdown).
    pub drain_at_ms: Cell<Option<u64>>,
    /// tungstenite's protocol state and its in-memory stream, while the client is
    /// mid-message ([`WsState`]); borrowed briefly, never across an await.
    ws: RefCell<Option<Box<WsState>>>,
    /// When the session opened (for the access log's duration).
    pub opened_ms: u64,
    /// The close code the server sent (0: none yet), for the access log.
    close_code: Cell<u16>,
    /// The connection's TLS state on a TLS listener: what it reads is decrypted, what it
    /// writes encrypted (`shell/tls.rs`). One pointer, `None`, on a plain one.
    tls: Option<Box<RefCell<TlsConn>>>,
}

/// What all of a core's connections share (`Shard::conn_shared`).
#[derive(Debug)]
pub struct ConnShared {
    pub metrics: Arc<Metrics>,
    /// Bound on a connection's unsent bytes (`--max-outbound-bytes`).
    pub max_outbound: usize,
    /// The largest message (and frame) accepted (`--max-message-size`).
    pub max_message: usize,
}

impl Conn {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: ConnId,
        room: Option<String>,
        dialect: Dialect,
        identity: Arc<Identity>,
        fd: RawFd,
        tls: Option<Box<TlsConn>>,
        shared: Rc<ConnShared>,
        now_ms: u64,
    ) -> Conn {
        Conn {
            id,
            rooms: RefCell::new(room.into_iter().collect()),
            dialect,
            identity: RefCell::new(identity),
            fd: Cell::new(fd),
            shared,
            queue: RefCell::new(VecDeque::new()),
            queued_bytes: Cell::new(0),
            blocked: RefCell::new(None),
            listed: Cell::new(false),
            flushed_in: Cell::new(u32::MAX - 1),
            writer: Cell::new(None),
            parked: Cell::new(None),
            in_epoll: Cell::new(false),
            short_parks: Cell::new(0),
            read_since_ping: Cell::new(false),
            state: Cell::new(State::Open),
            last_seen_ms: Cell::new(now_ms),
            ping_sent_ms: Cell::new(None),
            latency_ms: Cell::new(0),
            rate: Cell::new(crate::ratelimit::TokenBucket::new(0, 1, now_ms)),
            drain_at_ms: Cell::new(None),
            ws: RefCell::new(None),
            opened_ms: now_ms,
            close_code: Cell::new(0),
            tls: tls.map(|tls| Box::new(RefCell::new(*tls))),
        }
    }

    /// The connection's TLS state, on a TLS listener.
    pub fn tls(&self) -> Option<&RefCell<TlsConn>> {
        self.tls.as_deref()
    }

    /// Whether rustls has records of its own to send (an alert, a key update).
    fn tls_pending(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|tls| tls.borrow().wants_write())
    }

    /// Wakes the session's writer when rustls has something of its own to send (after a
    /// read: nothing was queued, so nothing else would).
    pub fn after_tls_read(&self) {
        if self.tls_pending() {
            self.wake_session();
        }
    }

    /// The last bytes of a TLS connection (its `close_notify`, after anything pending).
    pub fn tls_goodbye(&self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.tls.as_ref()?.borrow_mut().close(&mut out);
        Some(out).filter(|out| !out.is_empty())
    }

    /// The (first) room.
    pub fn room(&self) -> Option<String> {
        self.rooms.borrow().first().cloned()
    }

    pub fn rooms(&self) -> Vec<String> {
        self.rooms.borrow().to_vec()
    }

    /// Runs `f` with the connection's rooms (borrowed: `f` must not change them).
    pub fn with_rooms<T>(&self, f: impl FnOnce(&[String]) -> T) -> T {
        f(&self.rooms.borrow())
    }

    /// Adds a room; false when already a member.
    pub fn add_room(&self, room: &str) -> bool {
        let mut rooms = self.rooms.borrow_mut();
        if rooms.iter().any(|r| r == room) {
            return false;
        }
        rooms.push(room.to_owned());
        true
    }

    /// Removes a room; false when not a member.
    pub fn remove_room(&self, room: &str) -> bool {
        let mut rooms = self.rooms.borrow_mut();
        let before = rooms.len();
        rooms.retain(|r| r != room);
        rooms.len() != before
    }

    /// Who the connection is now.
    pub fn identity(&self) -> Arc<Identity> {
        self.identity.borrow().clone()
    }

    pub fn public_id(&self) -> String {
        self.identity.borrow().public_id.clone()
    }

    /// What its dialect needs to know of it to write it a frame of its own.
    pub fn with_peer<T>(&self, f: impl FnOnce(&Peer<'_>) -> T) -> T {
        let identity = self.identity.borrow();
        f(&Peer {
            public_id: &identity.public_id,
            user: identity.user.as_deref(),
            latency_ms: self.latency_ms.get(),
        })
    }

    /// The socket's descriptor while the connection's session holds the socket open, -1
    /// after.
    pub fn fd(&self) -> RawFd {
        self.fd.get()
    }

    /// The session is about to close the socket: nothing may use its descriptor any more
    /// (the number may soon name another socket).
    pub fn release_fd(&self) {
        self.fd.set(-1);
    }

    pub fn has_public_id(&self, id: &str) -> bool {
        self.identity.borrow().public_id == id
    }

    pub fn has_user(&self, user: &str) -> bool {
        self.identity.borrow().user.as_deref() == Some(user)
    }

    /// The authenticated user, if any.
    pub fn user_id(&self) -> Option<String> {
        self.identity.borrow().user.clone()
    }

    /// Becomes someone else; the core's index must follow ([`super::shard::Shard`]).
    pub fn set_identity(&self, identity: Identity) {
        *self.identity.borrow_mut() = Arc::new(identity);
    }

    pub fn state(&self) -> State {
        self.state.get()
    }

    /// The close code the server sent, if it started the close.
    pub fn close_code(&self) -> Option<u16> {
        Some(self.close_code.get()).filter(|c| *c != 0)
    }

    /// Sets the connection's unsent byte count, and the core's gauge with it.
    fn set_queued(&self, bytes: usize) {
        let before = self.queued_bytes.replace(bytes);
        if bytes >= before {
            self.shared
                .metrics
                .queued_bytes
                .add((bytes - before) as u64);
        } else {
            self.shared
                .metrics
                .queued_bytes
                .sub((before - bytes) as u64);
        }
    }

    fn enqueue(&self, frame: OutFrame) {
        self.set_queued(self.queued_bytes.get() + frame.len());
        let mut queue = self.queue.borrow_mut();
        if queue.capacity() == 0 {
            *queue = spares::take_queue();
        }
        queue.push_back(frame);
        drop(queue);
        if self.flusher_writes() {
            if !self.listed.replace(true) {
                super::flusher::list(self.id);
            }
        } else {
            self.wake_session();
        }
    }

    /// Whether the core's flusher writes this connection's queue: an open plain-TCP
    /// connection whose socket had room for the last write. Otherwise its session does
    /// (`flusher.rs` says why).
    fn flusher_writes(&self) -> bool {
        self.tls.is_none()
            && self.state.get() == State::Open
            && self.fd.get() >= 0
            && self.blocked.borrow().is_none()
    }

    /// The flusher's part: writes what is queued (the connection was listed), now, without
    /// waiting. What the socket has no room for is left blocked for the session, woken to
    /// wait for room; a failed write ends the connection (`after_write` wakes the session).
    /// False when the connection stays listed for the next round: it was written in the
    /// round before this one ([`super::flusher::defer`]).
    pub fn flush_listed(&self) -> bool {
        if !self.listed.get() {
            return true;
        }
        let flushers = self.flusher_writes();
        if flushers && super::flusher::defer(self.flushed_in.get()) {
            return false;
        }
        self.listed.set(false);
        if !flushers {
            // The session writes it now (it is woken whenever that changes).
            return true;
        }
        self.flushed_in.set(super::flusher::round());
        let Some(batch) = self.next_batch() else {
            return true;
        };
        if let Written::Partly(rest) = self.write(batch) {
            self.set_blocked(rest);
            self.wake_session();
        }
        true
    }

    /// Writes what of `batch` the socket takes now, without waiting, and accounts for it:
    /// `Partly` with all or the rest of the batch when the socket had no room for it.
    pub fn write(&self, mut batch: Batch) -> Written {
        loop {
            match batch.write_now(self.fd()) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Written::Partly(batch)
                }
                result => return self.after_write(result, batch),
            }
        }
    }

    /// The batch a write left for the socket to have room, if any: it goes before
    /// anything queued.
    pub fn take_blocked(&self) -> Option<Batch> {
        self.blocked.borrow_mut().take()
    }

    /// Leaves the rest of a batch to write once the socket has room.
    pub fn set_blocked(&self, rest: Batch) {
        *self.blocked.borrow_mut() = Some(rest);
    }

    /// Queues a frame for this connection. Past the outbound bound the connection is a slow
    /// consumer: its unsent frames are dropped and it is closed with 1008. Returns whether
    /// the frame was queued.
    ///
    /// The bound is on the backlog: a frame onto an empty queue is always taken, however
    /// large. Alone it says nothing about the consumer's pace, and a room's event is larger
    /// than the message it carries, so one message of the largest size allowed never closes
    /// its recipient.
    pub fn send(&self, frame: Bytes, now_ms: u64) -> bool {
        self.send_parts(OutFrame::Whole(frame), now_ms)
    }

    /// Queues an encoded event; a body is finished for this recipient by its dialect
    /// (websockets.do: its `clientID` and `latency`).
    pub fn send_wire(&self, wire: &Wire, now_ms: u64) -> bool {
        match wire {
            Wire::Frame(frame) => self.send(frame.clone(), now_ms),
            Wire::Body(body) => {
                let (head, tail) =
                    self.with_peer(|peer| self.dialect.protocol().finish(body, peer));
                self.send_parts(OutFrame::pieces(head, body.clone(), tail), now_ms)
            }
        }
    }

    fn send_parts(&self, frame: OutFrame, now_ms: u64) -> bool {
        if self.state.get() != State::Open {
            return false;
        }
        let len = frame.len();
        let queued = self.queued_bytes.get();
        if queued > 0 && queued + len > self.shared.max_outbound {
            self.shared.metrics.slow_consumers.inc();
            self.queue.borrow_mut().clear();
            self.set_queued(0);
            let reason = format!(
                "slow consumer: more than {} bytes queued",
                self.shared.max_outbound
            );
            self.close(CloseCode::Policy, &reason, now_ms);
            return false;
        }
        self.shared.metrics.frames_out.inc();
        self.enqueue(frame);
        true
    }

    /// Runs `f` on the protocol state, made first if the connection had none.
    pub fn with_ws<R>(&self, f: impl FnOnce(&mut WsState) -> R) -> R {
        let mut ws = self.ws.borrow_mut();
        f(ws.get_or_insert_with(|| Box::new(WsState::new(self.shared.max_message))))
    }

    /// After handling what was read: drops the protocol state when a new one would behave
    /// the same (open connection, whole messages, all consumed and flushed), so an idle
    /// connection holds none; else gives back the memory a burst left. A hot connection
    /// (`parking.rs`: it reads again within milliseconds) keeps it until it parks: making
    /// and dropping it for every read (tungstenite's context, its buffers) was ~1,000
    /// instructions a read in malloc and free (callgrind, W3's publishers).
    pub fn rest_ws(&self) {
        if self.is_hot() {
            if let Some(state) = self.ws.borrow_mut().as_mut() {
                state.stream.compact();
            }
            return;
        }
        self.drop_ws_at_rest();
    }

    /// Drops the protocol state if it is at rest (see [`Conn::rest_ws`]), whether hot or
    /// not: as the session parks.
    pub fn drop_ws_at_rest(&self) {
        let mut ws = self.ws.borrow_mut();
        if let Some(state) = ws.as_mut() {
            if self.state.get() == State::Open && state.at_rest() {
                *ws = None;
            } else {
                state.stream.compact();
            }
        }
    }

    /// Moves whatever tungstenite wrote (pongs, close replies) into the send queue.
    pub fn flush_protocol(&self) {
        let bytes = {
            let mut ws = self.ws.borrow_mut();
            let Some(ws) = ws.as_mut() else {
                return;
            };
            let WsState { ctx, stream, .. } = &mut **ws;
            let _ = ctx.flush(stream);
            if stream.outbound.is_empty() {
                return;
            }
            Bytes::from(std::mem::take(&mut stream.outbound))
        };
        if self.state.get() != State::Dead {
            self.enqueue(OutFrame::Whole(bytes));
        }
    }

    /// Starts the close handshake with `code` and `reason` (through tungstenite, so it knows
    /// a close was sent). Only the first close counts.
    pub fn close(&self, code: CloseCode, reason: &str, now_ms: u64) {
        if self.state.get() != State::Open {
            return;
        }
        self.state.set(State::Closing { since_ms: now_ms });
        self.shared.metrics.closed_with(code.into());
        self.close_code.set(code.into());
        super::access::ws_close(self, code.into(), reason);
        self.with_ws(|ws| {
            let frame = CloseFrame {
                code,
                reason: truncate(reason).to_owned().into(),
            };
            if ws.ctx.close(&mut ws.stream, Some(frame)).is_err() {
                // tungstenite already considers the stream closed: write the frame ourselves.
                ws.stream
                    .outbound
                    .extend_from_slice(&frame::close(code.into(), reason));
            }
        });
        self.flush_protocol();
    }

    /// Ends the connection now: the socket is shut down, so the readiness wait returns and
    /// the next write fails; the session then finishes. Does nothing once the session has
    /// let the socket go.
    pub fn shut_down(&self) {
        let fd = self.fd.get();
        if fd < 0 {
            return;
        }
        // SAFETY: `fd` is this connection's socket, which its session holds open until it
        // calls `release_fd` (after which `fd` is -1 and we returned above); shutdown(2)
        // neither closes nor invalidates the descriptor, and touches no memory of ours.
        unsafe {
            libc::shutdown(fd, libc::SHUT_RDWR);
        }
    }

    /// The peer is gone or the session is closing: nothing more is queued; what is queued
    /// is still flushed.
    pub fn mark_dead(&self) {
        self.state.set(State::Dead);
        self.wake_session();
    }

    /// Whether the session has something to write: a blocked batch, or frames queued
    /// that the flusher does not write (listed ones it does, while the connection is
    /// open); when not, `cx` is woken once it has (or the connection dies).
    pub fn poll_queued(&self, cx: &mut Context<'_>) -> bool {
        // Listed frames of an open connection are the flusher's to write.
        let flushers = self.listed.get() && self.state.get() == State::Open;
        let queued = !flushers && !self.queue.borrow().is_empty();
        if queued || self.blocked.borrow().is_some() || self.tls_pending() {
            true
        } else {
            self.writer.set(Some(cx.waker().clone()));
            false
        }
    }

    /// Wakes the session: its task, or, while it is parked, the core's parking task, which
    /// starts it again.
    fn wake_session(&self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        } else if self.is_parked() {
            parking::wake(self.id);
        }
    }

    /// Whether the session may give up its task now that it waits (`parking.rs`): a
    /// connection whose writes are the flusher's (open, plain TCP, nothing blocked) that is
    /// not hot, with nothing for the session to write (listed frames are the flusher's).
    pub fn may_park(&self) -> bool {
        self.flusher_writes()
            && !self.is_hot()
            && (self.listed.get() || self.queue.borrow().is_empty())
    }

    /// Leaves the parked session's record here; its task is ending (its waker goes).
    pub fn park(&self, parked: Box<Parked>) {
        self.writer.set(None);
        self.parked.set(Some(parked));
        self.shared.metrics.parked.inc();
    }

    /// Takes the parked session's record back (`None` when the session is running).
    pub fn unpark(&self) -> Option<Box<Parked>> {
        let parked = self.parked.take();
        if parked.is_some() {
            self.shared.metrics.parked.sub(1);
        }
        parked
    }

    pub fn is_parked(&self) -> bool {
        let parked = self.parked.take();
        let is = parked.is_some();
        self.parked.set(parked);
        is
    }

    pub fn in_epoll(&self) -> bool {
        self.in_epoll.get()
    }

    pub fn set_in_epoll(&self) {
        self.in_epoll.set(true);
    }

    /// Counts a park the socket ended: `short` (soon after it began) ones in a row make
    /// the connection hot; a long one starts the count again.
    pub fn count_park(&self, short: bool) {
        let count = if short {
            (self.short_parks.get() + 1).min(parking::HOT_AFTER)
        } else {
            0
        };
        self.short_parks.set(count);
    }

    /// Whether the connection is hot: its session keeps its task (and its protocol state)
    /// until a ping interval passes without reads.
    pub fn is_hot(&self) -> bool {
        self.short_parks.get() >= parking::HOT_AFTER
    }

    /// Makes the connection hot: its session keeps its task until a ping interval passes
    /// without reads (a session that could not park).
    pub fn stay_running(&self) {
        self.short_parks.set(parking::HOT_AFTER);
    }

    /// Something was read: a hot connection stays hot through the next ping.
    pub fn note_read(&self) {
        self.read_since_ping.set(true);
    }

    /// At each ping: a hot connection that read nothing since the last one is hot no more,
    /// and its session is woken to park.
    pub fn cool(&self) {
        let read = self.read_since_ping.replace(false);
        if !read && self.is_hot() {
            self.short_parks.set(0);
            self.wake_session();
        }
    }

    /// Whether anything is still to be written (queued, blocked or rustls' own).
    pub fn has_queued(&self) -> bool {
        !self.queue.borrow().is_empty() || self.blocked.borrow().is_some() || self.tls_pending()
    }

    /// The next vectored write: queued frames (up to [`MAX_IOVECS`] buffers) in one of the
    /// core's spare batches. `None` when nothing is queued.
    pub fn next_batch(&self) -> Option<Batch> {
        let mut batch = spares::take_batch();
        let filled = self.fill(&mut batch.0.frames);
        if let Some(tls) = self.tls() {
            return seal(tls, batch);
        }
        if filled {
            Some(batch)
        } else {
            spares::give_batch(batch);
            None
        }
    }

    /// Accounts for a finished write of `batch`: what is left of it to write, if anything.
    /// A failed write ends the connection (the socket is shut down, so its read ends too).
    pub fn after_write(&self, result: std::io::Result<usize>, mut batch: Batch) -> Written {
        match result {
            Ok(0) | Err(_) => {
                spares::give_batch(batch);
                self.shut_down();
                self.mark_dead();
                Written::Failed
            }
            Ok(n) => {
                self.shared.metrics.bytes_out.add(n as u64);
                self.shared.metrics.socket_writes.inc();
                batch.advance(n);
                if batch.0.frames.is_empty() {
                    spares::give_batch(batch);
                    Written::All
                } else {
                    Written::Partly(batch)
                }
            }
        }
    }

    /// Moves queued frames into `batch` (up to [`MAX_IOVECS`] buffers); false when there
    /// were none. An emptied queue gives its buffer back to the core's spares.
    fn fill(&self, batch: &mut Vec<Bytes>) -> bool {
        let mut queue = self.queue.borrow_mut();
        // Room for the whole queue at once (a frame is one buffer or more), not by doubling.
        batch.reserve(queue.len().min(MAX_IOVECS));
        let mut bytes = 0;
        while let Some(frame) = queue.front() {
            if !batch.is_empty() && batch.len() + frame.buffers() > MAX_IOVECS {
                break;
            }
            let frame = queue.pop_front().expect("front exists");
            bytes += frame.len();
            frame.move_into(batch);
        }
        self.set_queued(self.queued_bytes.get() - bytes);
        if queue.is_empty() {
            spares::give_queue(std::mem::take(&mut *queue));
        }
        !batch.is_empty()
    }
}

impl Drop for Conn {
    /// Whatever was still queued (a socket that failed, a session that ended) leaves the
    /// core's queued-bytes gauge with the connection.
    fn drop(&mut self) {
        self.set_queued(0);
    }
}

/// Over TLS: `batch`'s frames (and whatever rustls has to send) encrypted together, as the
/// one buffer of the same batch, which the session then writes as it would the frames.
fn seal(tls: &RefCell<TlsConn>, mut batch: Batch) -> Option<Batch> {
    let frames = &mut batch.0.frames;
    let plain: usize = frames.iter().map(Bytes::len).sum();
    // Room for the records' overhead (at most 29 bytes per record of up to 16 KiB).
    let mut out = Vec::with_capacity(plain + (plain / 16_384 + 1) * 29 + 64);
    tls.borrow_mut().seal(frames, &mut out);
    frames.clear();
    if out.is_empty() {
        spares::give_batch(batch);
        return None;
    }
    frames.push(Bytes::from(out));
    Some(batch)
}

fn truncate(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn conn_on(fd: RawFd) -> Conn {
        let identity = Arc::new(Identity {
            public_id: "p".into(),
            user: None,
        });
        let shared = Rc::new(ConnShared {
            metrics: Arc::new(Metrics::default()),
            max_outbound: 1 << 20,
            max_message: 1 << 16,
        });
        Conn::new(
            ConnId(1),
            None,
            Dialect::Pact,
            identity,
            fd,
            None,
            shared,
            0,
        )
    }

    /// The protocol state is dropped after each read while the connection is cold (an idle
    /// connection holds none), kept while it is hot, and dropped as the session parks.
    #[test]
    fn a_hot_connection_keeps_its_protocol_state_until_it_parks() {
        let (_a, b) = UnixStream::pair().unwrap();
        let conn = conn_on(b.as_raw_fd());
        let has_ws = |conn: &Conn| conn.ws.borrow().is_some();
        conn.with_ws(|_| ());
        conn.rest_ws();
        assert!(!has_ws(&conn), "cold: dropped after the read");
        conn.stay_running();
        conn.with_ws(|_| ());
        conn.rest_ws();
        assert!(has_ws(&conn), "hot: kept for the next read");
        conn.with_ws(|ws| ws.push(&[0x81]));
        conn.drop_ws_at_rest();
        assert!(has_ws(&conn), "mid-frame: never dropped");
        conn.with_ws(|ws| *ws = WsState::new(1 << 16));
        conn.drop_ws_at_rest();
        assert!(!has_ws(&conn), "at rest as it parks: dropped");
    }

    /// A connection its socket wakes soon after each park, `HOT_AFTER` times in a row,
    /// keeps its task; it may park again once a ping interval passes without a read.
    #[test]
    fn a_connection_busy_in_quick_succession_stays_running_until_a_quiet_ping() {
        let (_a, b) = UnixStream::pair().unwrap();
        let conn = conn_on(b.as_raw_fd());
        assert!(conn.may_park(), "a new connection parks when idle");
        conn.count_park(true);
        conn.count_park(false);
        conn.count_park(true);
        conn.count_park(true);
        assert!(
            conn.may_park(),
            "a long park in between starts the count again"
        );
        conn.count_park(true);
        assert!(!conn.may_park(), "hot");
        conn.note_read();
        conn.cool();
        assert!(!conn.may_park(), "it read since the last ping: still hot");
        conn.cool();
        assert!(conn.may_park(), "a ping interval without reads: cold again");
        conn.stay_running();
        assert!(!conn.may_park(), "a session that could not park runs on");
        conn.send(Bytes::from_static(b"x"), 0);
        conn.cool();
        assert!(
            conn.may_park(),
            "frames listed for the flusher are no reason to run"
        );
        conn.close(CloseCode::Normal, "bye", 0);
        assert!(
            !conn.may_park(),
            "a closing connection's session finishes it"
        );
    }

    /// `shut_down` acts on the descriptor only while the session holds the socket: once it
    /// lets go (and the number may name another socket), a late shutdown (the ticker's
    /// close grace) touches nothing.
    #[test]
    fn a_released_socket_is_never_shut_down() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let released = conn_on(a.as_raw_fd());
        released.release_fd();
        released.shut_down();
        (&a).write_all(b"still here").unwrap();
        let mut buf = [0u8; 10];
        b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"still here");

        let held = conn_on(a.as_raw_fd());
        held.shut_down();
        let mut rest = Vec::new();
        assert_eq!(
            b.read_to_end(&mut rest).unwrap(),
            0,
            "shut down: the peer sees the end"
        );
        assert!((&a).write_all(b"x").is_err(), "and cannot be written to");
    }

    /// An open connection's frames are the flusher's: listed once however many a turn
    /// queues, written by `flush_listed` without the session; what the socket has no room
    /// for is left blocked, in order before anything queued after it, for the session
    /// (which is then told it has something to write), and a closing connection's frames
    /// are the session's again.
    #[test]
    fn the_flusher_writes_an_open_connections_frames_and_leaves_a_full_socket_to_the_session() {
        use std::task::{Context, Waker};
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let conn = conn_on(a.as_raw_fd());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(conn.send(Bytes::from_static(b"one "), 0));
        assert!(conn.send(Bytes::from_static(b"two "), 0));
        assert!(conn.listed.get(), "listed for the flusher");
        assert!(!conn.poll_queued(&mut cx), "not the session's to write");
        conn.flush_listed();
        assert!(!conn.has_queued());
        let mut buf = [0u8; 8];
        b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"one two ");

        // A full socket: the flusher writes what fits and leaves the rest blocked.
        let big = Bytes::from(vec![b'x'; 1 << 20]);
        assert!(conn.send(big, 0));
        conn.flush_listed();
        assert!(conn.blocked.borrow().is_some(), "the rest waits for room");
        assert!(conn.poll_queued(&mut cx), "the session's to write now");
        assert!(conn.send(Bytes::from_static(b"after"), 0));
        assert!(
            !conn.listed.get(),
            "not the flusher's while a batch is blocked"
        );
        conn.flush_listed();
        assert!(conn.blocked.borrow().is_some() && conn.has_queued());
        // The session writes the blocked rest first, then the queue, in order.
        let mut received = Vec::new();
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            if let Some(batch) = conn.take_blocked().or_else(|| conn.next_batch()) {
                if let Written::Partly(rest) = conn.write(batch) {
                    conn.set_blocked(rest);
                }
            }
            let n = b.read(&mut chunk).unwrap();
            received.extend_from_slice(&chunk[..n]);
            if received.len() == (1 << 20) + 5 {
                break;
            }
        }
        assert!(received[..1 << 20].iter().all(|&c| c == b'x'));
        assert_eq!(&received[1 << 20..], b"after");
        assert!(!conn.has_queued());

        // Open again with room: the flusher's; closing: the session's.
        assert!(conn.send(Bytes::from_static(b"x"), 0));
        assert!(conn.listed.get());
        conn.close(CloseCode::Normal, "bye", 0);
        assert!(
            conn.poll_queued(&mut cx),
            "a closing connection's queue is the session's"
        );
        conn.flush_listed();
        assert!(conn.has_queued(), "and the flusher leaves it alone");
    }

    /// A partial write leaves the rest of the batch, in order, to write next; a failed one
    /// ends the connection.
    #[test]
    fn after_a_write_what_is_left_is_the_unwritten_tail() {
        let (a, _b) = UnixStream::pair().unwrap();
        let conn = conn_on(a.as_raw_fd());
        assert!(conn.send(Bytes::from_static(b"hello "), 0));
        assert!(conn.send(Bytes::from_static(b"world"), 0));
        let batch = conn.next_batch().expect("queued");
        let Written::Partly(rest) = conn.after_write(Ok(8), batch) else {
            panic!("partly")
        };
        let left: Vec<u8> = rest.0.frames.iter().flat_map(|f| f.to_vec()).collect();
        assert_eq!(left, b"rld");
        assert!(matches!(conn.after_write(Ok(3), rest), Written::All));
        assert!(conn.next_batch().is_none());
        assert!(conn.send(Bytes::from_static(b"more"), 0));
        let batch = conn.next_batch().expect("queued");
        assert!(matches!(
            conn.after_write(Err(std::io::ErrorKind::BrokenPipe.into()), batch),
            Written::Failed
        ));
        assert_eq!(conn.state(), State::Dead);
    }
}
