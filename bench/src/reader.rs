//! The cheap receiving side of the load generator. With tokio-tungstenite, each delivery
//! costs the generator a task wake-up, a `Message` (an allocation), UTF-8 validation and a
//! `select!`: one worker process topped out near 3 M deliveries/s, so every fast server
//! measured as "as fast as the generator". Here a worker's subscribers are plain sockets in
//! one epoll set of its own, which tokio watches as a single file descriptor: one wake-up
//! reads every ready socket to the end (edge-triggered) into one buffer, and the frames are
//! followed by their headers (server frames are never masked) without copying, except a
//! frame split across two reads. Each text frame's payload is searched for the sender's
//! timestamp (`"T<µs>:`); every frame is counted, and dated by one clock reading per
//! wake-up.
//!
//! The handshake and the Pact subscribe happen before the socket joins the set, with a
//! plain HTTP/1.1 upgrade request (the response parsed by httparse) and frames read the
//! same way; what the server sent after the subscription's `ok` is kept and counted.

use crate::load::{System, Tally};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One subscriber's socket, past the handshake, and the start of a frame that the last
/// read ended inside.
pub struct RawConn {
    stream: std::net::TcpStream,
    partial: Vec<u8>,
    open: bool,
}

/// The client's frame of `opcode` with `payload`, masked (RFC 6455 §5.3: every client frame
/// is). The mask is fixed: the load generator has no need to defend against cache poisoning.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    frame
}

/// A frame's header: (opcode, header length, payload length), or `None` while `bytes` does
/// not hold the whole header yet.
fn header(bytes: &[u8]) -> Option<(u8, usize, usize)> {
    let b1 = *bytes.get(1)?;
    let opcode = bytes[0] & 0x0f;
    let masked = b1 & 0x80 != 0;
    let (len, mut head) = match b1 & 0x7f {
        126 => (
            u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    if masked {
        head += 4;
    }
    (bytes.len() >= head).then_some((opcode, head, len))
}

/// The send timestamp in a payload: the digits after the first `"T`.
fn timestamp(payload: &[u8]) -> Option<u64> {
    let at = payload.windows(2).position(|w| w == b"\"T")? + 2;
    let mut value = 0u64;
    let mut digits = 0;
    for &b in &payload[at..] {
        if !b.is_ascii_digit() {
            break;
        }
        value = value * 10 + (b - b'0') as u64;
        digits += 1;
    }
    (digits > 0).then_some(value)
}

/// What one whole frame means to a subscriber.
enum Seen {
    /// A text frame with a timestamp.
    Stamped(u64),
    /// Anything else that needs no answer.
    Other,
    /// A ping: answer with a pong of this payload.
    Ping(Vec<u8>),
    /// The server closes.
    Close,
}

fn see(frame: &[u8], head: usize, opcode: u8) -> Seen {
    let payload = &frame[head..];
    match opcode {
        0x1 | 0x0 => timestamp(payload).map_or(Seen::Other, Seen::Stamped),
        0x9 => Seen::Ping(payload.to_vec()),
        0x8 => Seen::Close,
        _ => Seen::Other,
    }
}

impl RawConn {
    /// Follows the frames of `data` (what one read brought), after the partial frame kept
    /// from the last read; `on` gets every whole frame's meaning.
    fn take(&mut self, mut data: &[u8], on: &mut impl FnMut(Seen)) {
        if !self.partial.is_empty() {
            // Complete the header first, then the frame, from the front of `data`.
            loop {
                if let Some((opcode, head, len)) = header(&self.partial) {
                    let need = (head + len).saturating_sub(self.partial.len());
                    let take = need.min(data.len());
                    self.partial.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.partial.len() < head + len {
                        return;
                    }
                    let seen = see(&self.partial, head, opcode);
                    self.partial.clear();
                    on(seen);
                    break;
                }
                let Some((&b, rest)) = data.split_first() else {
                    return;
                };
                self.partial.push(b);
                data = rest;
            }
        }
        while let Some((opcode, head, len)) = header(data) {
            if data.len() < head + len {
                break;
            }
            on(see(&data[..head + len], head, opcode));
            data = &data[head + len..];
        }
        self.partial.extend_from_slice(data);
    }

    fn pong(&mut self, payload: &[u8]) {
        // Small and rare: a full send buffer only loses this pong.
        let _ = self.stream.write_all(&client_frame(0xA, payload));
    }
}

impl RawConn {
    /// Reads and drops what the server sent (a publisher's echoes), following the frames;
    /// the pongs owed for its pings go to `out`. False once the socket has ended.
    fn drain(&mut self, buffer: &mut [u8], out: &mut Vec<u8>) -> bool {
        loop {
            match self.stream.read(buffer) {
                Ok(0) => return false,
                Ok(n) => {
                    self.take(&buffer[..n], &mut |seen| {
                        if let Seen::Ping(payload) = seen {
                            out.extend_from_slice(&client_frame(0xA, &payload));
                        }
                    });
                    if n < buffer.len() {
                        return true;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// Writes as much of `out` as the socket takes now; false once the socket has failed.
    fn write_some(&mut self, out: &mut Vec<u8>) -> bool {
        while !out.is_empty() {
            match self.stream.write(out) {
                Ok(0) => return false,
                Ok(n) => {
                    out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }
}

/// A publisher on a plain socket, the raw reader's way: each message its own masked frame
/// and its own `send` (as tokio-tungstenite's `send` did, Nagle's algorithm on as there),
/// its echoes read and dropped every tick. The tokio-tungstenite publisher (still used over
/// TLS) cost the generator its framing, a task wake-up per echo and a 128 KiB `memset` per
/// read: in W3 the generator's core was full before the raw ceiling's was
/// (bench/README.md, "the load generator's own ceiling").
pub async fn publish(
    mut conn: RawConn,
    rates: Vec<f64>,
    size: usize,
    members: f64,
    tally: Rc<Tally>,
) {
    let _ = conn.stream.set_nodelay(false);
    let mut buffer = vec![0u8; 64 * 1024];
    // Bytes the socket had no room for (a frame's tail, or pongs), written first.
    let mut unsent = Vec::new();
    for (step, &rate) in rates.iter().enumerate() {
        let step_start = tally.start_us + step as u64 * tally.step_us;
        let mut sent = 0u64;
        loop {
            let now = crate::load::now_us();
            if tally.stop.get() || now >= step_start + tally.step_us {
                break;
            }
            if !conn.drain(&mut buffer, &mut unsent) {
                return;
            }
            while sent < Tally::due(now, step_start, rate) {
                if !conn.write_some(&mut unsent) {
                    return;
                }
                if !unsent.is_empty() {
                    // The server is behind: try again next tick.
                    break;
                }
                let text = crate::load::publish_text(size);
                unsent = client_frame(0x1, text.as_bytes());
                if !conn.write_some(&mut unsent) {
                    return;
                }
                sent += 1;
                tally.published(step, members);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if tally.stop.get() {
            return;
        }
    }
}

/// Opens a subscriber: the upgrade, then (Pact) `subscribe chat` and its `ok`. What arrived
/// after the `ok` stays in the connection's partial buffer, to be followed first.
pub async fn connect(system: System, addr: &str, room: &str) -> Option<RawConn> {
    let connect = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream.set_nodelay(true).ok()?;
        let path = match system {
            System::Rookery => format!("/websocket?room={room}"),
            System::Relay => format!("/room/{room}"),
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut buffer = Vec::with_capacity(4096);
        let body_at = loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buffer.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&buffer) {
                Ok(httparse::Status::Complete(at)) if response.code == Some(101) => break at,
                Ok(httparse::Status::Complete(_)) | Err(_) => return None,
                Ok(httparse::Status::Partial) => {}
            }
        };
        let mut pending = buffer.split_off(body_at);
        if system == System::Rookery {
            let subscribe = client_frame(0x1, br#"{"type":"subscribe","data":"chat","ref":1}"#);
            stream.write_all(&subscribe).await.ok()?;
            // The greeting (config, profile), then the subscription's `ok`.
            loop {
                if let Some((_, head, len)) = header(&pending) {
                    if pending.len() >= head + len {
                        let frame: Vec<u8> = pending.drain(..head + len).collect();
                        let text = &frame[head..];
                        if text.windows(8).any(|w| w == b"\"ref\":1,")
                            || text.ends_with(b"\"ref\":1}")
                        {
                            break;
                        }
                        continue;
                    }
                }
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                pending.extend_from_slice(&chunk[..n]);
            }
        }
        // tokio leaves the socket non-blocking.
        let conn = RawConn {
            stream: stream.into_std().ok()?,
            partial: pending,
            open: true,
        };
        Some(conn)
    };
    tokio::time::timeout(Duration::from_secs(30), connect)
        .await
        .ok()
        .flatten()
}

/// An epoll set of sockets; closed when dropped.
struct Epoll(OwnedFd);

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl Epoll {
    fn new() -> std::io::Result<Epoll> {
        // SAFETY: epoll_create1 returns a new descriptor (owned from here on) or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a descriptor nobody else owns.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Watches `fd` for input, edge-triggered, reporting `token`.
    fn add(&self, fd: RawFd, token: u64) -> std::io::Result<()> {
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token,
        };
        // SAFETY: both descriptors are open; `event` lives across the call.
        let r = unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// The ready tokens, without waiting.
    fn ready(&self, events: &mut [libc::epoll_event]) -> usize {
        // SAFETY: `events` is writable for its length.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                0,
            )
        };
        n.max(0) as usize
    }
}

/// Reads every connection in `conns` until `done` turns true, counting each stamped frame
/// in `tally` (by its send time and by its arrival).
pub async fn read_all(
    mut conns: Vec<RawConn>,
    tally: Rc<Tally>,
    mut done: tokio::sync::watch::Receiver<bool>,
) {
    let epoll = Epoll::new().expect("epoll");
    for (i, conn) in conns.iter().enumerate() {
        epoll
            .add(conn.stream.as_raw_fd(), i as u64)
            .expect("epoll add");
    }
    // SAFETY: the AsyncFd owns the set, so its descriptor stays open (and the same) until
    // the AsyncFd is dropped and deregisters it.
    let epoll = unsafe { AsyncFd::register(epoll) }.expect("tokio watches the epoll set");
    let mut buffer = vec![0u8; 256 * 1024];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    // Frames kept from before the load started (the greeting's tail): follow them first.
    let now = crate::load::now_us();
    for conn in conns.iter_mut() {
        let kept = std::mem::take(&mut conn.partial);
        conn.take(&kept, &mut |seen| {
            if let Seen::Stamped(sent) = seen {
                tally.record_at(sent, now);
            }
        });
    }
    loop {
        let mut guard = tokio::select! {
            guard = epoll.readable() => guard.expect("epoll readable"),
            _ = done.wait_for(|d| *d) => return,
        };
        loop {
            let n = epoll.get_ref().ready(&mut events);
            if n == 0 {
                break;
            }
            let now = crate::load::now_us();
            for event in &events[..n] {
                let conn = &mut conns[event.u64 as usize];
                while conn.open {
                    match conn.stream.read(&mut buffer) {
                        Ok(0) => conn.open = false,
                        Ok(got) => {
                            let mut pongs = Vec::new();
                            conn.take(&buffer[..got], &mut |seen| match seen {
                                Seen::Stamped(sent) => tally.record_at(sent, now),
                                Seen::Ping(payload) => pongs.push(payload),
                                Seen::Close => {}
                                Seen::Other => {}
                            });
                            for payload in pongs {
                                conn.pong(&payload);
                            }
                            // A short read emptied the socket (epoll(7): for a stream
                            // socket that is as good as EAGAIN, and data arriving later
                            // makes a new edge): no second read to hear EAGAIN.
                            if got < buffer.len() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => conn.open = false,
                    }
                }
            }
            if n < events.len() {
                break;
            }
        }
        // Drained: wait for the set's next edge (tokio keeps the readiness when a new
        // edge came after this guard's, so nothing that arrived meanwhile is lost).
        guard.clear_ready();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x81];
        if payload.len() < 126 {
            f.push(payload.len() as u8);
        } else {
            f.push(126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(payload);
        f
    }

    fn conn() -> RawConn {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        RawConn {
            stream,
            partial: Vec::new(),
            open: true,
        }
    }

    #[test]
    fn frames_split_anywhere_are_followed() {
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        for i in 0..50u64 {
            let body = format!(
                "{{\"type\":\"chat\",\"data\":{{\"message\":\"T{}:{}\"}}}}",
                1000 + i,
                "x".repeat((i as usize * 7) % 200)
            );
            bytes.extend(server_frame(body.as_bytes()));
            want.push(1000 + i);
        }
        for cut in [1, 2, 3, 5, 7, 64, 129, 1000] {
            let mut c = conn();
            let mut got = Vec::new();
            for piece in bytes.chunks(cut) {
                c.take(piece, &mut |s| {
                    if let Seen::Stamped(t) = s {
                        got.push(t)
                    }
                });
            }
            assert_eq!(got, want, "pieces of {cut}");
            assert!(c.partial.is_empty());
        }
    }

    #[test]
    fn pings_and_closes_are_told_apart() {
        let mut c = conn();
        let mut seen = Vec::new();
        let mut bytes = vec![0x89, 2, b'h', b'i', 0x88, 0];
        bytes.extend(server_frame(b"{\"no\":\"stamp\"}"));
        c.take(&bytes, &mut |s| {
            seen.push(match s {
                Seen::Ping(p) => format!("ping {}", String::from_utf8(p).unwrap()),
                Seen::Close => "close".into(),
                Seen::Other => "other".into(),
                Seen::Stamped(t) => format!("stamp {t}"),
            })
        });
        assert_eq!(seen, ["ping hi", "close", "other"]);
    }

    /// A publisher drops what the server sends, split anywhere, owes a pong for each ping
    /// (queued behind any unsent bytes, never inside a frame), and writes what it queued
    /// whole and in order.
    #[test]
    fn a_publisher_drains_echoes_answers_pings_and_writes_in_order() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        stream.set_nonblocking(true).unwrap();
        let mut c = RawConn {
            stream,
            partial: Vec::new(),
            open: true,
        };
        let mut sent = server_frame(b"\"T1:echo");
        sent.extend([0x89, 2, b'h', b'i']);
        server.write_all(&sent[..5]).unwrap();
        let (mut buffer, mut out) = (vec![0u8; 16], b"tail".to_vec());
        // Wait until the first bytes are there (loopback, but another thread's write).
        while c.stream.peek(&mut [0u8; 1]).is_err() {}
        assert!(c.drain(&mut buffer, &mut out));
        server.write_all(&sent[5..]).unwrap();
        while out.len() == 4 {
            assert!(c.drain(&mut buffer, &mut out), "open");
        }
        let mut expected = b"tail".to_vec();
        expected.extend(client_frame(0xA, b"hi"));
        assert_eq!(out, expected, "the pong after what was unsent");
        assert!(c.write_some(&mut out));
        assert!(out.is_empty());
        let mut got = vec![0u8; expected.len()];
        server.read_exact(&mut got).unwrap();
        assert_eq!(got, expected);
        drop(server);
        while c.drain(&mut buffer, &mut out) {}
        assert!(out.is_empty(), "the end is not a ping");
    }

    #[test]
    fn client_frames_are_masked_and_sized() {
        let f = client_frame(0x1, &[b'a'; 300]);
        assert_eq!(f[0], 0x81);
        assert_eq!(f[1], 0x80 | 126);
        assert_eq!(u16::from_be_bytes([f[2], f[3]]), 300);
        assert_eq!(f.len(), 4 + 4 + 300);
        assert_eq!(header(&f), Some((0x1, 8, 300)));
    }
}
