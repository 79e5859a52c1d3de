//! Reads on readiness: wait until a socket is readable, then take what it has with one
//! non-blocking `recv` into the core's read buffer.
//!
//! Owned-buffer reads (io_uring's usual way) keep a buffer in the kernel's hands for as long
//! as the read is pending — for an idle connection, forever; for a connection still to send
//! its request, as long as the client takes. Waiting for readiness holds no buffer.
//!
//! The buffer is one per core (thread), made once: a buffer on the stack would be zeroed
//! (16 KiB of `memset`) for every read.

use std::cell::RefCell;
use std::os::fd::RawFd;

/// Most bytes taken from a socket per readiness: a larger backlog is read after the next
/// readiness, so one busy client cannot hold its core.
pub const MAX_READ: usize = 16 * 1024;

pub enum Received {
    /// This many bytes were read and handed over.
    Bytes(usize),
    /// A spurious readiness: nothing to read yet.
    Nothing,
    /// The peer closed, or the socket failed.
    End,
}

thread_local! {
    static BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; MAX_READ].into_boxed_slice());
}

/// One non-blocking `recv` of up to [`MAX_READ`] bytes from `fd`; what it reads goes to
/// `take`.
pub fn recv_now(fd: RawFd, take: impl FnOnce(&[u8])) -> Received {
    BUFFER.with(|buffer| match buffer.try_borrow_mut() {
        Ok(mut buf) => recv_into(fd, &mut buf, take),
        // Called from a `take` (nothing does so today): a buffer of its own.
        Err(_) => recv_into(fd, &mut vec![0; MAX_READ], take),
    })
}

fn recv_into(fd: RawFd, buf: &mut [u8], take: impl FnOnce(&[u8])) -> Received {
    // SAFETY: `buf` is writable for `buf.len()` bytes for the whole call, and the kernel
    // writes at most that many; `take` sees only the `n` bytes it wrote. MSG_DONTWAIT makes
    // the call return at once whatever the socket's blocking mode.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    match n {
        0 => Received::End,
        n if n > 0 => {
            let n = n as usize;
            take(&buf[..n]);
            Received::Bytes(n)
        }
        _ => match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Received::Nothing,
            _ => Received::End,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn reads_what_is_there_then_would_block_then_sees_the_end() {
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.write_all(b"hello").unwrap();
        let mut got = Vec::new();
        assert!(matches!(
            recv_now(b.as_raw_fd(), |bytes| got.extend_from_slice(bytes)),
            Received::Bytes(5)
        ));
        assert_eq!(got, b"hello");
        assert!(matches!(recv_now(b.as_raw_fd(), |_| {}), Received::Nothing));
        drop(a);
        assert!(matches!(recv_now(b.as_raw_fd(), |_| {}), Received::End));
    }

    /// A backlog larger than the buffer is taken `MAX_READ` bytes at a time, each byte
    /// once and in order: the call never writes past the buffer, nor hands over more than
    /// it wrote.
    #[test]
    fn a_large_backlog_comes_in_buffer_sized_reads() {
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let sent: Vec<u8> = (0..MAX_READ * 3 + 123).map(|i| (i % 253) as u8).collect();
        let writer = std::thread::spawn(move || a.write_all(&sent).map(|_| sent));
        let mut got = Vec::new();
        let mut largest = 0;
        while got.len() < MAX_READ * 3 + 123 {
            if let Received::Bytes(n) =
                recv_now(b.as_raw_fd(), |bytes| got.extend_from_slice(bytes))
            {
                largest = largest.max(n);
            }
        }
        let sent = writer.join().unwrap().unwrap();
        assert!(largest <= MAX_READ);
        assert!(got == sent, "every byte once, in order");
    }

    /// A `recv_now` from inside another's `take` reads into a buffer of its own: the outer
    /// bytes are not overwritten.
    #[test]
    fn a_nested_read_does_not_overwrite_the_outer_one() {
        let (mut a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (mut c, d) = std::os::unix::net::UnixStream::pair().unwrap();
        a.write_all(b"outer").unwrap();
        c.write_all(b"inner!").unwrap();
        let (mut outer, mut inner) = (Vec::new(), Vec::new());
        recv_now(b.as_raw_fd(), |bytes| {
            recv_now(d.as_raw_fd(), |nested| inner.extend_from_slice(nested));
            outer.extend_from_slice(bytes);
        });
        assert_eq!(outer, b"outer");
        assert_eq!(inner, b"inner!");
    }
}
