//! Deadlines for sockets still sending their request head: one queue per core, checked by
//! the core's ticker, instead of a runtime timer per socket.
//!
//! A monoio timer is ~640 bytes; a connect storm keeps thousands of sockets waiting for
//! their request at once, and that memory, freed after, stays in the allocator's arena. The
//! timeout is the same for every socket, so deadlines are queued in the order they fall due
//! and a queue entry is ~40 bytes. The deadline fires up to one tick late.

use ahash::AHashMap;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::RawFd;

/// A socket's deadline: when, which socket, and its ticket's number.
type Deadline = (u64, RawFd, u32);

#[derive(Default)]
pub struct Handshakes {
    due: RefCell<VecDeque<Deadline>>,
    /// The tickets of sockets still reading their request, and whether each has timed out.
    /// Only while a socket reads: what an open connection keeps of its handshake is its
    /// deadline's queue entry (16 bytes), until the deadline passes.
    reading: RefCell<AHashMap<u32, bool>>,
    next: Cell<u32>,
}

/// A socket's place in the queue; dropping it (or [`Ticket::finish`]) takes it out.
pub struct Ticket<'a> {
    handshakes: &'a Handshakes,
    number: u32,
}

impl Ticket<'_> {
    /// The request has been read (or not): the deadline no longer applies. Returns whether
    /// it had passed.
    pub fn finish(self) -> bool {
        let timed_out = self.handshakes.end(self.number);
        // Ended: `Drop` would only look the number up again.
        std::mem::forget(self);
        timed_out
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.handshakes.end(self.number);
    }
}

impl Handshakes {
    /// Starts the deadline of the socket `fd`, whose request is being read. The caller holds
    /// the socket open at least as long as the ticket.
    pub fn start(&self, fd: RawFd, deadline_ms: u64) -> Ticket<'_> {
        let number = self.next.get();
        // Numbers wrap after 2^32 sockets; one still reading after that long has long
        // timed out and been taken out.
        self.next.set(number.wrapping_add(1));
        self.reading.borrow_mut().insert(number, false);
        self.due.borrow_mut().push_back((deadline_ms, fd, number));
        Ticket {
            handshakes: self,
            number,
        }
    }

    /// Takes ticket `number` out; whether its deadline had passed.
    fn end(&self, number: u32) -> bool {
        let mut reading = self.reading.borrow_mut();
        let timed_out = reading.remove(&number).unwrap_or(false);
        if reading.is_empty() && reading.capacity() > 1024 {
            *reading = AHashMap::new();
        }
        timed_out
    }

    /// Ends the reads of sockets whose deadline has passed (`shutdown(SHUT_RD)`: their read
    /// sees the end, and the answer can still be written). Returns how many.
    pub fn expire(&self, now_ms: u64) -> usize {
        let mut due = self.due.borrow_mut();
        let mut reading = self.reading.borrow_mut();
        let mut expired = 0;
        while due.front().is_some_and(|(at, _, _)| *at <= now_ms) {
            let (_, fd, number) = due.pop_front().expect("front exists");
            if let Some(timed_out @ false) = reading.get_mut(&number) {
                *timed_out = true;
                // SAFETY: while its ticket is out (its number among `reading`), the socket
                // is open (its holder keeps it open longer than the ticket); shutdown(2)
                // does not close it.
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

    /// A ticket given back (finished or dropped) leaves nothing behind, and its socket
    /// is never shut afterwards, even when its deadline passes later.
    #[test]
    fn a_ticket_given_back_is_forgotten() {
        let handshakes = Handshakes::default();
        let (_a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let dropped = handshakes.start(b.as_raw_fd(), 100);
        drop(dropped);
        let finished = handshakes.start(b.as_raw_fd(), 100);
        assert!(!finished.finish());
        assert!(handshakes.reading.borrow().is_empty(), "no ticket left");
        assert_eq!(handshakes.expire(200), 0, "nothing shut");
        let mut buf = [0u8; 1];
        b.set_nonblocking(true).unwrap();
        let read = (&b).read(&mut buf).map_err(|e| e.kind());
        assert_eq!(
            read,
            Err(std::io::ErrorKind::WouldBlock),
            "still open for reading"
        );
        assert!(handshakes.due.borrow().is_empty());
    }
}
