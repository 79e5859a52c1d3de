//! Batches: the frames written to a connection with one vectored write, and the
//! per-core spare buffers that batches and send queues borrow while they have work.
//!
//! A batch is written with one non-blocking `sendmsg` (a `writev` with `MSG_DONTWAIT`): by
//! the core's flusher at the end of the turn that queued its frames (`flusher.rs`), or by
//! the connection's session once monoio's `TcpStream::writable` says the socket has room
//! (after a write the socket had no room for, over TLS, while closing). The write is over
//! when the call returns, so the batch's buffers are never in the kernel's hands past it:
//! nothing is lent to an operation in flight.

use super::conn::OutFrame;
use bytes::Bytes;
use std::os::fd::RawFd;

/// What a finished write leaves to do.
pub enum Written {
    /// The batch went out whole.
    All,
    /// The rest of the batch, still to write.
    Partly(Batch),
    /// The socket failed; the connection is over.
    Failed,
}

/// How many bytes of small frames a write copies into one contiguous buffer (the core's
/// cork) before handing them to the kernel, and how small "small" is.
///
/// A fanout queues the same frame on many connections, so its bytes are hot in cache; one
/// copy of a connection's small frames into a buffer that every write of the core reuses
/// (so it stays in cache too) lets the kernel take one long iovec instead of a hundred
/// short ones, which costs it less than our copy does. Large frames are written from their
/// own bytes: copying them would cost more than the iovec saves.
const CORK_BYTES: usize = 64 * 1024;
const CORK_BELOW: usize = 2 * 1024;

thread_local! {
    /// The core's cork: filled and emptied within one `write_now`, never kept across calls.
    static CORK: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(CORK_BYTES));
}

/// Whether a frame of `len` bytes goes into the cork, which already holds `used`.
fn corked(len: usize, used: usize) -> bool {
    len < CORK_BELOW && used + len <= CORK_BYTES
}

/// The iovec of `cork[start..end]`.
fn cork_slice(cork: &[u8], start: usize, end: usize) -> libc::iovec {
    let slice = &cork[start..end];
    libc::iovec {
        iov_base: slice.as_ptr() as *mut libc::c_void,
        iov_len: slice.len(),
    }
}

/// Frames to write with one `writev`.
///
/// Boxed, so that a batch waiting for the socket to have room makes the session's task
/// one pointer larger, no more.
pub struct Batch(pub(super) Box<Buffers>);

pub(super) struct Buffers {
    pub(super) frames: Vec<Bytes>,
    /// Scratch for the iovecs of one write, rebuilt from `frames` right before each.
    iovecs: Vec<libc::iovec>,
}

impl Batch {
    /// Writes as much of the batch as the socket `fd` takes now, without waiting: the
    /// number of bytes written, or the error (`WouldBlock`: the socket has no room).
    /// Never raises SIGPIPE.
    pub fn write_now(&mut self, fd: RawFd) -> std::io::Result<usize> {
        let Buffers { frames, iovecs } = &mut *self.0;
        // A lone frame gains nothing from a copy.
        let copies = |len: usize, used: usize| frames.len() > 1 && corked(len, used);
        CORK.with_borrow_mut(|cork| {
            cork.clear();
            // Pass 1: small frames are copied into the core's cork, in order (no frame is
            // split: one that does not fit, or is not small, is written from its own bytes).
            for f in frames.iter() {
                if copies(f.len(), cork.len()) {
                    cork.extend_from_slice(f);
                }
            }
            // Pass 2: the iovecs, the same decisions again — a run of copied frames is one
            // slice of the cork, made only now that the cork no longer changes.
            iovecs.clear();
            let (mut used, mut run) = (0, None::<usize>);
            for f in frames.iter() {
                if copies(f.len(), used) {
                    run.get_or_insert(used);
                    used += f.len();
                    continue;
                }
                if let Some(start) = run.take() {
                    iovecs.push(cork_slice(cork, start, used));
                }
                iovecs.push(libc::iovec {
                    iov_base: f.as_ptr() as *mut libc::c_void,
                    iov_len: f.len(),
                });
            }
            if let Some(start) = run {
                iovecs.push(cork_slice(cork, start, used));
            }
            // SAFETY: a zeroed msghdr is valid (no name, no control data).
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = iovecs.as_mut_ptr();
            msg.msg_iovlen = iovecs.len() as _;
            // SAFETY: each iovec was made just above either from a frame of `frames`, which
            // this call holds borrowed (through `&mut self`), or from a range of `cork`
            // that pass 1 filled and that nothing changes before this call returns (the
            // cork is borrowed here, and this thread does nothing else meanwhile): every
            // iovec points to `iov_len` live, initialised bytes, and the kernel only reads
            // them (a send copies them into the socket's buffer before it returns).
            // `iovecs` itself lives as long, and `msg_iovlen` is its length. MSG_DONTWAIT:
            // the call never blocks, whatever the socket's mode; MSG_NOSIGNAL: a reset
            // peer is an EPIPE, not a signal.
            let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        })
    }

    /// Drops `written` bytes from the front.
    pub(super) fn advance(&mut self, mut written: usize) {
        let mut done = 0;
        for f in &mut self.0.frames {
            if written >= f.len() {
                written -= f.len();
                done += 1;
            } else {
                let _ = f.split_to(written);
                break;
            }
        }
        self.0.frames.drain(..done);
    }

    /// Whether everything has been written.
    pub fn is_empty(&self) -> bool {
        self.0.frames.is_empty()
    }

    /// A batch of one buffer (a TLS connection's last records).
    pub fn of(bytes: Vec<u8>) -> Batch {
        let mut batch = spares::take_batch();
        batch.0.frames.push(Bytes::from(bytes));
        batch
    }
}

/// Buffers that writers and send queues use only while they have work, kept per core
/// (thread) for the next connection that does: a connection's idle cost excludes them.
pub(super) mod spares {
    use super::{Batch, OutFrame};
    use std::cell::RefCell;
    use std::collections::VecDeque;

    /// How many spares a core keeps, and the largest it keeps (bursts' buffers are freed).
    const KEEP: usize = 1024;
    const MAX_FRAMES: usize = 64;
    /// A send queue starts with room for a turn's frames under load and is kept up to
    /// `MAX_QUEUE` (4 KiB): queues that grew from 4 by doubling, and were freed past 64,
    /// were ~4 % of a saturated W3 core (callgrind). Only connections with traffic hold one.
    const NEW_QUEUE: usize = 16;
    const MAX_QUEUE: usize = 128;

    thread_local! {
        static BATCHES: RefCell<Vec<Batch>> = const { RefCell::new(Vec::new()) };
        static QUEUES: RefCell<Vec<VecDeque<OutFrame>>> = const { RefCell::new(Vec::new()) };
    }

    pub fn take_batch() -> Batch {
        BATCHES.with_borrow_mut(Vec::pop).unwrap_or_else(|| {
            Batch(Box::new(super::Buffers {
                frames: Vec::with_capacity(16),
                iovecs: Vec::with_capacity(16),
            }))
        })
    }

    pub fn give_batch(mut batch: Batch) {
        batch.0.frames.clear();
        batch.0.iovecs.clear();
        if batch.0.frames.capacity() <= MAX_FRAMES && batch.0.iovecs.capacity() <= MAX_FRAMES {
            BATCHES.with_borrow_mut(|spares| {
                if spares.len() < KEEP {
                    spares.push(batch);
                }
            });
        }
    }

    pub fn take_queue() -> VecDeque<OutFrame> {
        QUEUES
            .with_borrow_mut(Vec::pop)
            .unwrap_or_else(|| VecDeque::with_capacity(NEW_QUEUE))
    }

    /// `queue` must be empty.
    pub fn give_queue(queue: VecDeque<OutFrame>) {
        if queue.capacity() <= MAX_QUEUE {
            QUEUES.with_borrow_mut(|spares| {
                if spares.len() < KEEP {
                    spares.push(queue);
                }
            });
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn buffers_given_back_are_reused_and_oversized_ones_are_not() {
            let mut batch = take_batch();
            batch.0.frames.push(bytes::Bytes::from_static(b"x"));
            let frames = batch.0.frames.as_ptr();
            give_batch(batch);
            let again = take_batch();
            assert!(again.0.frames.is_empty(), "given back empty");
            assert_eq!(again.0.frames.as_ptr(), frames, "the same buffer, reused");
            let mut big = again;
            big.0.frames.reserve(MAX_FRAMES * 2);
            let big_ptr = big.0.frames.as_ptr();
            give_batch(big);
            assert_ne!(
                take_batch().0.frames.as_ptr(),
                big_ptr,
                "a burst's buffer is freed"
            );

            let queue = take_queue();
            let ptr = queue.as_slices().0.as_ptr();
            give_queue(queue);
            let mut again = take_queue();
            assert_eq!(again.as_slices().0.as_ptr(), ptr);
            assert!(again.capacity() >= NEW_QUEUE);
            again.reserve(MAX_QUEUE + 1);
            let big_ptr = again.as_slices().0.as_ptr();
            give_queue(again);
            assert_ne!(
                take_queue().as_slices().0.as_ptr(),
                big_ptr,
                "a queue past MAX_QUEUE is freed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    /// Frames of many sizes (empty ones too), each filled with its own index.
    fn frames() -> (Vec<Bytes>, Vec<u8>) {
        let frames: Vec<Bytes> = (0..300usize)
            .map(|i| Bytes::from(vec![(i % 251) as u8; (i * 7919) % 20_000]))
            .collect();
        let all = frames.iter().flat_map(|f| f.to_vec()).collect();
        (frames, all)
    }

    /// Mostly small frames (copied into the cork), some large ones between them (written
    /// from their own bytes), more than the cork holds in all; no more frames than a batch
    /// takes (`MAX_IOVECS`: the kernel refuses more than 1,024 iovecs).
    fn small_frames() -> (Vec<Bytes>, Vec<u8>) {
        let frames: Vec<Bytes> = (0..500usize)
            .map(|i| {
                let len = if i % 97 == 0 {
                    5_000 + i
                } else {
                    (i * 31) % 1_500
                };
                Bytes::from(vec![(i % 251) as u8; len])
            })
            .collect();
        let all: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
        assert!(all.len() > 4 * CORK_BYTES);
        (frames, all)
    }

    /// A batch much larger than the socket's buffer goes out through many partial writes
    /// and "no room" answers, the reader taking a little at a time: what arrives is every
    /// byte of every frame, in order — the iovecs are rebuilt to what is left each time.
    #[test]
    fn partial_writes_resume_exactly_where_they_stopped() {
        partial_writes_deliver_every_byte_in_order(frames());
    }

    /// The same with small frames: each write copies those that fit into the cork (the
    /// rest after it, or the large frames between, from their own bytes), and a partial
    /// write that stops inside the cork resumes at the right byte of the right frame.
    #[test]
    fn corked_small_frames_arrive_whole_and_in_order() {
        partial_writes_deliver_every_byte_in_order(small_frames());
    }

    fn partial_writes_deliver_every_byte_in_order((frames, expected): (Vec<Bytes>, Vec<u8>)) {
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let mut batch = spares::take_batch();
        batch.0.frames.extend(frames);
        let mut got = Vec::with_capacity(expected.len());
        let (mut partial, mut full) = (0, 0);
        let mut buf = vec![0u8; 3_001];
        while !batch.is_empty() {
            match batch.write_now(a.as_raw_fd()) {
                Ok(n) => {
                    assert!(n > 0);
                    batch.advance(n);
                    if !batch.is_empty() {
                        partial += 1;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    full += 1;
                    let n = b.read(&mut buf).unwrap();
                    got.extend_from_slice(&buf[..n]);
                }
                Err(e) => panic!("{e}"),
            }
        }
        b.set_nonblocking(false).unwrap();
        drop(a);
        b.read_to_end(&mut got).unwrap();
        assert!(partial > 0 && full > 0, "the socket was full at times");
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "every byte, in order");
    }

    /// The batch's frames may be the only handles on their bytes: a write reads them
    /// through iovecs made from the frames it holds, never from a copy that outlived them.
    #[test]
    fn a_batch_owns_what_it_writes() {
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut batch = spares::take_batch();
        for i in 0..50u8 {
            // Each frame's only handle is in the batch.
            batch.0.frames.push(Bytes::from(vec![i; 100]));
        }
        batch.advance(150); // drop one frame and a half
        let n = batch.write_now(a.as_raw_fd()).unwrap();
        assert_eq!(n, 50 * 100 - 150);
        drop(batch);
        drop(a);
        let mut got = Vec::new();
        b.read_to_end(&mut got).unwrap();
        let expected: Vec<u8> = (0..50u8).flat_map(|i| vec![i; 100]).skip(150).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn a_closed_peer_is_an_error_not_a_signal() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        drop(b);
        let mut batch = Batch::of(b"bye".to_vec());
        let error = batch.write_now(a.as_raw_fd()).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe);
    }
}
