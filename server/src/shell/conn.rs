//! A connection's state shared on its core: the bounded outbound queue the fanout fills,
//! the WebSocket protocol state, and the writer that drains the queue with one vectored
//! write per batch.

use super::memstream::MemStream;
use crate::frame;
use crate::ids::ConnId;
use bytes::Bytes;
use monoio::buf::IoVecBuf;
use monoio::io::AsyncWriteRent;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::os::fd::RawFd;
use std::task::{Poll, Waker};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::WebSocketContext;

/// Most frames taken into one vectored write (Linux's IOV_MAX is 1024).
const MAX_IOVECS: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Open,
    /// A close frame is queued; nothing else will be. Shut down after the close grace.
    Closing {
        since_ms: u64,
    },
    /// The reader finished; the writer exits once the queue is flushed or fails.
    Dead,
}

pub struct Conn {
    pub id: ConnId,
    /// The room this connection is a member of.
    pub room: String,
    fd: RawFd,
    max_outbound: usize,
    queue: RefCell<VecDeque<Bytes>>,
    queued_bytes: Cell<usize>,
    writer: Cell<Option<Waker>>,
    state: Cell<State>,
    /// Last time anything arrived from the peer (liveness for the ping wheel).
    pub last_seen_ms: Cell<u64>,
    /// tungstenite's protocol state and its in-memory stream; borrowed briefly, never
    /// across an await.
    pub ws: RefCell<(WebSocketContext, MemStream)>,
}

impl Conn {
    pub fn new(
        id: ConnId,
        room: String,
        fd: RawFd,
        max_outbound: usize,
        ws: WebSocketContext,
        now_ms: u64,
    ) -> Conn {
        Conn {
            id,
            room,
            fd,
            max_outbound,
            queue: RefCell::new(VecDeque::new()),
            queued_bytes: Cell::new(0),
            writer: Cell::new(None),
            state: Cell::new(State::Open),
            last_seen_ms: Cell::new(now_ms),
            ws: RefCell::new((ws, MemStream::default())),
        }
    }

    pub fn state(&self) -> State {
        self.state.get()
    }

    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.get()
    }

    fn enqueue(&self, frame: Bytes) {
        self.queued_bytes.set(self.queued_bytes.get() + frame.len());
        self.queue.borrow_mut().push_back(frame);
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    /// Queues a frame for this connection. Past the outbound bound the connection is a slow
    /// consumer: its unsent frames are dropped and it is closed with 1008. Returns whether
    /// the frame was queued.
    pub fn send(&self, frame: Bytes, now_ms: u64) -> bool {
        if self.state.get() != State::Open {
            return false;
        }
        if self.queued_bytes.get() + frame.len() > self.max_outbound {
            self.queue.borrow_mut().clear();
            self.queued_bytes.set(0);
            let reason = format!(
                "slow consumer: more than {} bytes queued",
                self.max_outbound
            );
            self.close(CloseCode::Policy, &reason, now_ms);
            return false;
        }
        self.enqueue(frame);
        true
    }

    /// Moves whatever tungstenite wrote (pongs, close replies) into the send queue.
    pub fn flush_protocol(&self) {
        let bytes = {
            let mut ws = self.ws.borrow_mut();
            let (ctx, stream) = &mut *ws;
            let _ = ctx.flush(stream);
            if stream.outbound.is_empty() {
                return;
            }
            Bytes::from(std::mem::take(&mut stream.outbound))
        };
        if self.state.get() != State::Dead {
            self.enqueue(bytes);
        }
    }

    /// Starts the close handshake with `code` and `reason` (through tungstenite, so it knows
    /// a close was sent). Only the first close counts.
    pub fn close(&self, code: CloseCode, reason: &str, now_ms: u64) {
        if self.state.get() != State::Open {
            return;
        }
        self.state.set(State::Closing { since_ms: now_ms });
        {
            let mut ws = self.ws.borrow_mut();
            let (ctx, stream) = &mut *ws;
            let frame = CloseFrame {
                code,
                reason: truncate(reason).to_owned().into(),
            };
            if ctx.close(stream, Some(frame)).is_err() {
                // tungstenite already considers the stream closed: write the frame ourselves.
                stream
                    .outbound
                    .extend_from_slice(&frame::close(code.into(), reason));
            }
        }
        self.flush_protocol();
    }

    /// Ends the connection now: the socket is shut down, so a pending read returns and a
    /// pending write fails; both tasks then finish.
    pub fn shut_down(&self) {
        // SAFETY: `fd` belongs to this connection's socket, which outlives `Conn`'s use by
        // its reader and writer; shutdown(2) does not close or invalidate the descriptor.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RDWR);
        }
    }

    /// The reader is done: the writer flushes what is left and exits.
    pub fn mark_dead(&self) {
        self.state.set(State::Dead);
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    /// Waits until there is something to write (or the connection is dead), then moves up
    /// to [`MAX_IOVECS`] frames into `batch`. Returns false when the writer should exit.
    async fn next_batch(&self, batch: &mut Vec<Bytes>) -> bool {
        poll_fn(|cx| {
            if !self.queue.borrow().is_empty() || self.state.get() == State::Dead {
                Poll::Ready(())
            } else {
                self.writer.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await;
        let mut queue = self.queue.borrow_mut();
        let n = queue.len().min(MAX_IOVECS);
        let mut bytes = 0;
        batch.extend(queue.drain(..n).inspect(|f| bytes += f.len()));
        self.queued_bytes.set(self.queued_bytes.get() - bytes);
        !batch.is_empty()
    }
}

fn truncate(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Frames to write with one `writev`, and their iovecs (rebuilt after a partial write).
struct Batch {
    frames: Vec<Bytes>,
    iovecs: Vec<libc::iovec>,
}

// SAFETY: the iovecs point into `frames`, which the batch owns and does not change while a
// write is in flight (it is moved into the operation and handed back after).
unsafe impl IoVecBuf for Batch {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iovecs.as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iovecs.len()
    }
}

impl Batch {
    fn point_iovecs(&mut self) {
        self.iovecs.clear();
        self.iovecs.extend(self.frames.iter().map(|f| libc::iovec {
            iov_base: f.as_ptr() as *mut libc::c_void,
            iov_len: f.len(),
        }));
    }

    /// Drops `written` bytes from the front.
    fn advance(&mut self, mut written: usize) {
        let mut done = 0;
        for f in &mut self.frames {
            if written >= f.len() {
                written -= f.len();
                done += 1;
            } else {
                let _ = f.split_to(written);
                break;
            }
        }
        self.frames.drain(..done);
    }
}

/// Drains `conn`'s queue into the socket, one vectored write per batch, until the
/// connection is dead and flushed or the socket fails.
pub async fn write_loop<W: AsyncWriteRent>(conn: std::rc::Rc<Conn>, mut sink: W) {
    let mut batch = Batch {
        frames: Vec::with_capacity(16),
        iovecs: Vec::with_capacity(16),
    };
    loop {
        if !conn.next_batch(&mut batch.frames).await {
            break;
        }
        while !batch.frames.is_empty() {
            batch.point_iovecs();
            let (result, returned) = sink.writev(batch).await;
            batch = returned;
            match result {
                Ok(0) | Err(_) => {
                    conn.shut_down();
                    conn.mark_dead();
                    return;
                }
                Ok(n) => batch.advance(n),
            }
        }
    }
    let _ = sink.shutdown().await;
}
