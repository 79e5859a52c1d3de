//! Deadlines for sockets still sending their request head: one queue per core, checked by
//! the core's ticker, instead of a runtime timer per socket.
//!
//! A monoio timer is ~640 bytes; a connect storm keeps thousands of sockets waiting for
//! their request at once, and that memory, freed after, stays in the allocator's arena. The
//! timeout is the same for every socket, so deadlines are queued in the order they fall due
//! and a queue entry is ~40 bytes. The deadline fires up to one tick late.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::rc::Rc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Reading,
    Done,
    TimedOut,
}

/// A socket's deadline: when, which socket, and its ticket's phase.
type Deadline = (u64, RawFd, Rc<Cell<Phase>>);

#[derive(Default)]
pub struct Handshakes {
    due: RefCell<VecDeque<Deadline>>,
}

/// A socket's place in the queue; dropping it (or [`Ticket::finish`]) takes it out.
pub struct Ticket(Rc<Cell<Phase>>);

impl Ticket {
    /// The request has been read (or not): the deadline no longer applies. Returns whether
    /// it had passed.
    pub fn finish(self) -> bool {
        self.0.get() == Phase::TimedOut
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.0.get() == Phase::Reading {
            self.0.set(Phase::Done);
        }
    }
}

impl Handshakes {
    /// Starts the deadline of the socket `fd`, whose request is being read. The caller holds
    /// the socket open at least as long as the ticket.
    pub fn start(&self, fd: RawFd, deadline_ms: u64) -> Ticket {
        let phase = Rc::new(Cell::new(Phase::Reading));
        self.due
            .borrow_mut()
            .push_back((deadline_ms, fd, phase.clone()));
        Ticket(phase)
    }

    /// Ends the reads of sockets whose deadline has passed (`shutdown(SHUT_RD)`: their read
    /// sees the end, and the answer can still be written). Returns how many.
    pub fn expire(&self, now_ms: u64) -> usize {
        let mut due = self.due.borrow_mut();
        let mut expired = 0;
        while due.front().is_some_and(|(at, _, _)| *at <= now_ms) {
            let (_, fd, phase) = due.pop_front().expect("front exists");
            if phase.get() == Phase::Reading {
                phase.set(Phase::TimedOut);
                // SAFETY: while its ticket reads `Reading`, the socket is open (its holder
                // keeps it open longer than the ticket); shutdown(2) does not close it.
                unsafe {
                    libc::shutdown(fd, libc::SHUT_RD);
                }
                expired += 1;
            }
        }
        if due.is_empty() && due.capacity() > 1024 {
            *due = VecDeque::new();
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    #[test]
    fn only_sockets_still_reading_past_their_deadline_are_shut() {
        let handshakes = Handshakes::default();
        let (_a, mut slow) = std::os::unix::net::UnixStream::pair().unwrap();
        let (_c, quick) = std::os::unix::net::UnixStream::pair().unwrap();
        let slow_ticket = handshakes.start(slow.as_raw_fd(), 100);
        let quick_ticket = handshakes.start(quick.as_raw_fd(), 150);
        assert_eq!(handshakes.expire(99), 0, "not due yet");
        assert!(!quick_ticket.finish(), "finished in time");
        assert_eq!(handshakes.expire(200), 1, "only the one still reading");
        assert!(slow_ticket.finish(), "timed out");
        let mut buf = [0u8; 1];
        assert_eq!(slow.read(&mut buf).unwrap(), 0, "its read sees the end");
        assert_eq!(handshakes.expire(300), 0, "each deadline fires once");
    }
}
