//! The raw ceiling: how fast the kernel lets one core relay frames to N sockets. One
//! thread, epoll (mio), no protocol logic beyond the handshake and unmasking: every text
//! frame a client sends is turned once into a server frame, queued for every socket in its
//! room (`/room/<name>`), and each socket's queue goes out in one `writev` per event batch.
//!
//! `peer_raw --listen 127.0.0.1:0` prints `listening on ADDR` once ready.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::io::{IoSlice, Read, Write};
use std::rc::Rc;

const LISTENER: Token = Token(usize::MAX);

struct Conn {
    stream: TcpStream,
    room: Option<String>,
    inbound: Vec<u8>,
    /// Frames waiting to be written; `offset` bytes of the first are written already.
    queue: Vec<Rc<Vec<u8>>>,
    offset: usize,
}

fn main() {
    let listen = std::env::args()
        .skip_while(|a| a != "--listen")
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let mut listener = TcpListener::bind(listen.parse().unwrap()).unwrap();
    println!("listening on {}", listener.local_addr().unwrap());
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .unwrap();
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut rooms: HashMap<String, Vec<usize>> = HashMap::new();
    let mut next = 0usize;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut dirty: Vec<usize> = Vec::new();
    loop {
        poll.poll(&mut events, None).unwrap();
        for event in &events {
            if event.token() == LISTENER {
                while let Ok((mut stream, _)) = listener.accept() {
                    let _ = stream.set_nodelay(true);
                    next += 1;
                    poll.registry()
                        .register(
                            &mut stream,
                            Token(next),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .unwrap();
                    conns.insert(
                        next,
                        Conn {
                            stream,
                            room: None,
                            inbound: Vec::new(),
                            queue: Vec::new(),
                            offset: 0,
                        },
                    );
                }
                continue;
            }
            let id = event.token().0;
            if event.is_writable() {
                dirty.push(id);
            }
            if !event.is_readable() {
                continue;
            }
            let mut closed = false;
            let mut frames: Vec<(String, Rc<Vec<u8>>)> = Vec::new();
            if let Some(conn) = conns.get_mut(&id) {
                loop {
                    match conn.stream.read(&mut buf) {
                        Ok(0) => {
                            closed = true;
                            break;
                        }
                        Ok(n) => conn.inbound.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            closed = true;
                            break;
                        }
                    }
                }
                if conn.room.is_none() {
                    if let Some((room, reply, used)) = handshake(&conn.inbound) {
                        conn.inbound.drain(..used);
                        conn.queue.push(Rc::new(reply));
                        rooms.entry(room.clone()).or_default().push(id);
                        conn.room = Some(room);
                        dirty.push(id);
                    }
                }
                if let Some(room) = conn.room.clone() {
                    while let Some((payload, used)) = unmask(&conn.inbound) {
                        conn.inbound.drain(..used);
                        if let Some(payload) = payload {
                            frames.push((room.clone(), Rc::new(server_frame(&payload))));
                        }
                    }
                }
            }
            for (room, frame) in frames {
                for member in rooms.get(&room).into_iter().flatten() {
                    if let Some(c) = conns.get_mut(member) {
                        c.queue.push(frame.clone());
                        dirty.push(*member);
                    }
                }
            }
            if closed {
                if let Some(conn) = conns.remove(&id) {
                    if let Some(room) = conn.room {
                        if let Some(m) = rooms.get_mut(&room) {
                            m.retain(|c| *c != id);
                        }
                    }
                }
            }
        }
        // One vectored write per socket with something queued.
        dirty.sort_unstable();
        dirty.dedup();
        for id in dirty.drain(..) {
            let Some(conn) = conns.get_mut(&id) else {
                continue;
            };
            while !conn.queue.is_empty() {
                let slices: Vec<IoSlice> = conn
                    .queue
                    .iter()
                    .take(512)
                    .enumerate()
                    .map(|(i, f)| IoSlice::new(if i == 0 { &f[conn.offset..] } else { &f[..] }))
                    .collect();
                match conn.stream.write_vectored(&slices) {
                    Ok(mut n) => {
                        n += conn.offset;
                        let mut done = 0;
                        for f in &conn.queue {
                            if n >= f.len() {
                                n -= f.len();
                                done += 1;
                            } else {
                                break;
                            }
                        }
                        conn.queue.drain(..done);
                        conn.offset = n;
                    }
                    Err(_) => break,
                }
            }
        }
    }
}

/// A complete upgrade request in `data`: its room, the 101, and the bytes it used.
fn handshake(data: &[u8]) -> Option<(String, Vec<u8>, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(used) = req.parse(data).ok()? else {
        return None;
    };
    let room = req.path?.trim_start_matches("/room/").to_owned();
    let key = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))?
        .value;
    let accept = tungstenite::handshake::derive_accept_key(key);
    let reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    Some((room, reply.into_bytes(), used))
}

/// The first complete client frame in `data`: its unmasked payload if it is a text frame,
/// and the bytes it used.
fn unmask(data: &[u8]) -> Option<(Option<Vec<u8>>, usize)> {
    if data.len() < 2 {
        return None;
    }
    let opcode = data[0] & 0x0f;
    let (len, mut at) = match data[1] & 0x7f {
        126 => (
            u16::from_be_bytes([*data.get(2)?, *data.get(3)?]) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(data.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let mask: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
    at += 4;
    let payload = data.get(at..at + len)?;
    let text = (opcode == 1).then(|| {
        payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect()
    });
    Some((text, at + len))
}

/// An unmasked, final text frame carrying `payload`.
fn server_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 10);
    f.push(0x81);
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n < 65536 => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}
