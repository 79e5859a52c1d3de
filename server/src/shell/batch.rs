//! Batches: the frames a connection's session writes with one vectored write, and the
//! per-core spare buffers that batches and send queues borrow while they have work.

use super::conn::OutFrame;
use bytes::Bytes;
use monoio::buf::IoVecBuf;
use monoio::io::AsyncWriteRent;

/// What a finished write leaves to do.
pub enum Written {
    /// The batch went out whole.
    All,
    /// The rest of the batch, still to write.
    Partly(Batch),
    /// The socket failed; the connection is over.
    Failed,
}

/// Frames to write with one `writev`, and their iovecs (rebuilt after a partial write).
///
/// Boxed, so that a write in flight (which holds its batch) is small enough to live in the
/// session's task without making it much larger.
pub struct Batch(pub(super) Box<Buffers>);

pub(super) struct Buffers {
    pub(super) frames: Vec<Bytes>,
    iovecs: Vec<libc::iovec>,
}

// SAFETY: the iovecs point into `frames`, which the batch owns and does not change while a
// write is in flight (it is moved into the operation and handed back after).
unsafe impl IoVecBuf for Batch {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.0.iovecs.as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.0.iovecs.len()
    }
}

impl Batch {
    pub(super) fn point_iovecs(&mut self) {
        self.0.iovecs.clear();
        self.0
            .iovecs
            .extend(self.0.frames.iter().map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            }));
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
}

/// Writes `batch` with one vectored write, handing back the sink and the batch.
///
/// The batch's buffers are the core's, not the connection's: taken when there is work and
/// given back after, so an idle connection holds none.
pub async fn write_batch<W: AsyncWriteRent>(
    mut sink: W,
    batch: Batch,
) -> (W, std::io::Result<usize>, Batch) {
    let (result, batch) = sink.writev(batch).await;
    (sink, result, batch)
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
            .unwrap_or_else(|| VecDeque::with_capacity(4))
    }

    /// `queue` must be empty.
    pub fn give_queue(queue: VecDeque<OutFrame>) {
        if queue.capacity() <= MAX_FRAMES {
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
            assert_eq!(take_queue().as_slices().0.as_ptr(), ptr);
        }
    }
}
