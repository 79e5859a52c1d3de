//! A core's flusher: writes the frames queued for its open connections, one `sendmsg` per
//! connection per round of the runtime, from this one task — the way uWebSockets corks a
//! socket while an event is handled and uncorks it after.
//!
//! Why: a frame queued used to wake the connection's session, which waited for
//! writability (an io_uring poll, reaped when the runtime next asked the kernel for
//! completions) and then wrote. That wait gathered what a round queued into one write,
//! which is what keeps the packet count down under load (writing at every wake-up halved
//! W3 past saturation), but it cost, per connection and per round, a task wake-up, a boxed
//! readiness future, a poll submitted and reaped, and a second wake-up. The flusher keeps
//! the gathering and drops the rest: the first frame of a round lists its connection here
//! (`Conn::enqueue`), and the flusher waits for **one** poll of its own — on a socket pair
//! that always has room, so it completes at once but is reaped only with the round's other
//! completions ([`turn_marker`]) — then writes every connection listed before that wait.
//! A connection listed during the wait goes with the next round, as its own poll made it:
//! written at once instead, its frames went out in smaller writes, and W3 fell to two
//! thirds of its rate (bench/RESULTS.md).
//!
//! The session still writes when the flusher does not: a socket that had no room (the
//! rest of a batch waits in `Conn::blocked` for writability, on the session's task), a TLS
//! connection (its records are sealed by the session), and a connection that is closing
//! (whose session waits for its queue to be flushed before it ends).

use super::shard::Shard;
use crate::ids::ConnId;
use monoio::net::UnixStream;
use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

thread_local! {
    /// The connections of this core (thread) with frames for the flusher, in the order
    /// their first frame of the turn was queued.
    static LISTED: RefCell<Vec<ConnId>> = const { RefCell::new(Vec::new()) };
    /// The flusher's task, while it waits for a connection to be listed.
    static WAKER: Cell<Option<Waker>> = const { Cell::new(None) };
    /// How many rounds the flusher has written (wrapping): a connection written in one
    /// round is written next two rounds later at the earliest ([`defer`]).
    static ROUND: Cell<u32> = const { Cell::new(0) };
}

/// The round the flusher is writing now.
pub fn round() -> u32 {
    ROUND.get()
}

/// Whether a connection last written in round `last` waits for the next round: it was
/// written in the round just before this one. Under load every round lists every
/// connection with traffic, and writing each one every round made more, smaller writes
/// than the sessions' own polls had (W2 at N = 10 k fell by a third: bench/RESULTS.md);
/// every other round at most gathers twice the frames per write. A quiet connection,
/// written long ago, goes at once.
pub fn defer(last: u32) -> bool {
    last.wrapping_add(1) == ROUND.get()
}

/// Lists a connection whose queue the flusher is to write (the connection records that it
/// is listed, so that it is listed once per turn).
pub fn list(id: ConnId) {
    LISTED.with_borrow_mut(|listed| listed.push(id));
    if let Some(waker) = WAKER.take() {
        waker.wake();
    }
}

/// The socket pair whose writability the flusher waits for to find the end of a turn: a
/// socket that always has room (nothing reads or writes either end), so the wait is one
/// poll, completed at once but reaped only when the runtime next asks the kernel for
/// completions, after every task ready in this turn has run. Made with the core, before
/// any connection.
pub fn turn_marker() -> std::io::Result<(UnixStream, UnixStream)> {
    UnixStream::pair()
}

/// The core's flusher task: each time connections are listed, writes each one's queue.
/// A connection that is gone by then (its session over) is skipped: its frames went with
/// it.
pub async fn run_flusher(shard: Rc<Shard>, pair: (UnixStream, UnixStream)) {
    let mut turn = Vec::new();
    loop {
        poll_fn(|cx| {
            LISTED.with_borrow_mut(|listed| {
                if listed.is_empty() {
                    WAKER.set(Some(cx.waker().clone()));
                    Poll::Pending
                } else {
                    // Swapped, not drained: both buffers keep their capacity.
                    std::mem::swap(listed, &mut turn);
                    Poll::Ready(())
                }
            })
        })
        .await;
        // Listed before the wait, written after it: each connection's frames gather for a
        // whole round of the runtime (what the readers and deliveries ready in this turn
        // queue joins them). Connections listed during the wait wait for the next round,
        // as a session's own writability poll made them: writing them at once sent smaller
        // writes, and W3 fell to two thirds of its rate.
        // (A pair of our own cannot fail; if it did, writing at once is still right.)
        let _ = pair.0.writable(false).await;
        ROUND.set(ROUND.get().wrapping_add(1));
        shard.metrics.flusher_rounds.inc();
        for id in turn.drain(..) {
            let conn = shard.conns.borrow().get(&id).cloned();
            if let Some(conn) = conn {
                if !conn.flush_listed() {
                    // Still listed: the next round takes it.
                    LISTED.with_borrow_mut(|listed| listed.push(id));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection written in one round waits out the next and goes in the one after;
    /// one never written, or written long ago, goes at once, across the counter's wrap.
    #[test]
    fn a_connection_written_in_a_round_skips_only_the_next_one() {
        for start in [5, u32::MAX] {
            ROUND.set(start);
            let written = round();
            assert!(!defer(written), "in the round it was written in");
            ROUND.set(start.wrapping_add(1));
            assert!(defer(written), "the next round");
            ROUND.set(start.wrapping_add(2));
            assert!(!defer(written), "the round after");
        }
        ROUND.set(0);
        assert!(
            !defer(u32::MAX - 1),
            "never written (a new connection's mark)"
        );
    }
}
