//! Idle sessions without a task: a connection with nothing to read, nothing for its session
//! to write and nothing being handled gives up its task ("parks"); what the session needs
//! to carry on — the socket and its place under the connection limits — waits in a
//! [`Parked`] record on the connection, and the socket in the core's own epoll set. One
//! task per core ([`run_parking`]) starts a session again ("unparks") when its socket has
//! something to read (or ends), or when something needs the session ([`wake`]: a full
//! socket, a close, anything `Conn::wake_session` is called for).
//!
//! Why: a task is what an idle connection used to cost most — its future (the socket, the
//! readiness wait, the loop's state) and monoio's record of the pending poll, ~400 bytes of
//! an idle connection's ~1.4 KB. A parked connection keeps a 128-byte record instead, and
//! the kernel keeps its place in the epoll set (memory outside the process, as every epoll
//! server pays it).
//!
//! The epoll set is registered one-shot (`EPOLLONESHOT`, level-triggered), re-armed at each
//! park: a socket that has bytes already when it parks reports at once, so nothing read is
//! left waiting. Frames queued for a parked connection are the core's flusher's to write,
//! as for a running one; only what the flusher leaves to the session wakes it.
//!
//! A busy connection does not park after every message: one that is woken by its socket
//! within [`SHORT_PARK_MS`] of parking, [`HOT_AFTER`] times in a row, stays running ("hot")
//! until a ping interval passes without it reading anything (`Conn::cool`, from the
//! ticker). A client that connects, subscribes and goes quiet parks after its first
//! message; one that sends all the time keeps its task.

use super::admission::Admission;
use super::conn::Conn;
use super::mailbox::now_ms;
use super::shard::Shard;
use crate::ids::ConnId;
use monoio::net::{TcpStream, UnixStream};
use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::pin;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// A park shorter than this, ended by the socket, counts towards making a connection hot.
pub const SHORT_PARK_MS: u64 = 50;

/// Short parks in a row after which a connection stays running.
pub const HOT_AFTER: u8 = 3;

/// Epoll events taken per `epoll_wait`.
const EVENTS: usize = 256;

/// What a parked session keeps: its socket and its place under the connection limits.
pub struct Parked {
    pub stream: TcpStream,
    pub admission: Admission,
    /// When it parked, to tell a busy connection from a quiet one.
    pub at_ms: u64,
}

thread_local! {
    /// This core's epoll set of parked sockets (-1 until [`epoll_set`] made it).
    static EPOLL: Cell<RawFd> = const { Cell::new(-1) };
    /// Parked connections something needs the session for, in the order woken.
    static WOKEN: RefCell<Vec<ConnId>> = const { RefCell::new(Vec::new()) };
    /// The parking task, while it waits.
    static WAKER: Cell<Option<Waker>> = const { Cell::new(None) };
}

/// Makes this core's epoll set, as a stream whose readability the parking task awaits
/// (an epoll descriptor is readable while events are pending). Only readiness is ever asked
/// of that stream — never a read or a write, which an epoll descriptor refuses — and it
/// owns the descriptor, closing it when the task ends. Made with the core, before any
/// connection.
pub fn epoll_set() -> std::io::Result<UnixStream> {
    // SAFETY: epoll_create1 takes no pointers; it returns a new descriptor or -1.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by epoll_create1: open, and owned by nothing else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let stream = UnixStream::from_std(std::os::unix::net::UnixStream::from(owned))?;
    EPOLL.set(stream.as_raw_fd());
    Ok(stream)
}

/// Parks `conn`'s session: registers its socket with the core's epoll set (re-arming the
/// one-shot registration), and leaves `parked` on the connection. Gives `parked` back when
/// the socket could not be registered (the session then runs on).
pub fn park(conn: &Conn, parked: Parked) -> Result<(), Parked> {
    let epoll = EPOLL.get();
    if epoll < 0 {
        return Err(parked);
    }
    let fd = parked.stream.as_raw_fd();
    let mut event = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32,
        u64: conn.id.0,
    };
    let op = if conn.in_epoll() {
        libc::EPOLL_CTL_MOD
    } else {
        libc::EPOLL_CTL_ADD
    };
    // SAFETY: `event` is a valid epoll_event for the call's duration; `epoll` is this
    // core's epoll descriptor (kept open by the parking task for the core's life) and `fd`
    // the connection's socket, open while `parked` holds it.
    let result = unsafe { libc::epoll_ctl(epoll, op, fd, &mut event) };
    if result < 0 {
        tracing::debug!(conn = %conn.id, error = %std::io::Error::last_os_error(), "could not park");
        return Err(parked);
    }
    conn.set_in_epoll();
    conn.park(Box::new(parked));
    Ok(())
}

/// Asks the parking task to start `id`'s session again (something needs it).
pub fn wake(id: ConnId) {
    WOKEN.with_borrow_mut(|woken| woken.push(id));
    if let Some(waker) = WAKER.take() {
        waker.wake();
    }
}

/// The core's parking task: starts again, with `resume`, the parked sessions whose socket
/// reports (readable, or ended) and those [`wake`] names. Holds the epoll set for the
/// core's life.
pub async fn run_parking<F, R>(shard: Rc<Shard>, epoll: UnixStream, resume: R)
where
    R: Fn(Rc<Shard>, Rc<Conn>, Parked, bool) -> F,
    F: Future<Output = ()> + 'static,
{
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    let mut ready: Vec<(ConnId, bool)> = Vec::new();
    loop {
        {
            let mut readable = pin!(epoll.readable(false));
            poll_fn(|cx| {
                if WOKEN.with_borrow(|woken| !woken.is_empty()) {
                    return Poll::Ready(());
                }
                WAKER.set(Some(cx.waker().clone()));
                readable.as_mut().poll(cx).map(|_| ())
            })
            .await;
        }
        take_events(epoll.as_raw_fd(), &mut events, &mut ready);
        WOKEN.with_borrow_mut(|woken| ready.extend(woken.drain(..).map(|id| (id, false))));
        let now = now_ms();
        for (id, by_socket) in ready.drain(..) {
            let Some(conn) = shard.conns.borrow().get(&id).cloned() else {
                continue;
            };
            // Already running (woken twice, or by its socket and for a write at once).
            let Some(parked) = conn.unpark() else {
                continue;
            };
            if by_socket {
                conn.count_park(now.saturating_sub(parked.at_ms) < SHORT_PARK_MS);
            }
            monoio::spawn(resume(shard.clone(), conn, *parked, by_socket));
        }
    }
}

/// Takes the pending events of the epoll set without waiting: the connections whose
/// socket reported, each marked as woken by its socket.
fn take_events(epoll: RawFd, events: &mut [libc::epoll_event], ready: &mut Vec<(ConnId, bool)>) {
    loop {
        // SAFETY: `events` is valid for `events.len()` entries, which epoll_wait fills at
        // most; a timeout of 0 never blocks.
        let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, 0) };
        if n <= 0 {
            return;
        }
        let n = n as usize;
        ready.extend(events[..n].iter().map(|e| (ConnId(e.u64), true)));
        if n < events.len() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream as StdStream;

    /// The registration the parked sockets get: one-shot and level-triggered, so a socket
    /// with bytes already waiting when it parks reports at once (nothing is left unread),
    /// and reports once until it is parked again.
    #[test]
    fn a_parked_socket_reports_bytes_already_there_once() {
        // SAFETY: as in `epoll_set`.
        let epoll = unsafe { OwnedFd::from_raw_fd(libc::epoll_create1(libc::EPOLL_CLOEXEC)) };
        let (mut client, server) = StdStream::pair().unwrap();
        client.write_all(b"hello").unwrap();
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32,
            u64: 42,
        };
        // SAFETY: valid descriptors and event, as in `park`.
        let added = unsafe {
            libc::epoll_ctl(
                epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                server.as_raw_fd(),
                &mut event,
            )
        };
        assert_eq!(added, 0);
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 4];
        let mut ready = Vec::new();
        take_events(epoll.as_raw_fd(), &mut events, &mut ready);
        assert_eq!(
            ready,
            vec![(ConnId(42), true)],
            "bytes there before the park"
        );
        client.write_all(b"more").unwrap();
        take_events(epoll.as_raw_fd(), &mut events, &mut ready);
        assert_eq!(ready.len(), 1, "one-shot: silent until re-armed");
        // SAFETY: as above.
        let rearmed = unsafe {
            libc::epoll_ctl(
                epoll.as_raw_fd(),
                libc::EPOLL_CTL_MOD,
                server.as_raw_fd(),
                &mut event,
            )
        };
        assert_eq!(rearmed, 0);
        take_events(epoll.as_raw_fd(), &mut events, &mut ready);
        assert_eq!(ready.len(), 2, "re-armed with bytes unread: reports again");
        drop(client);
        take_events(epoll.as_raw_fd(), &mut events, &mut ready);
        assert_eq!(ready.len(), 2, "still disarmed");
    }
}
