//! A connection to Redis once opened (`connect`): plain TCP or TLS, split into a reading
//! and a writing half that the client's tasks drive at the same time. Both halves are
//! monoio's `AsyncReadRent`/`AsyncWriteRent`, so the command and subscriber connections
//! use them as they would a `TcpStream`'s.
//!
//! Over TLS the halves share the rustls connection (`Rc<RefCell<_>>`, one core); neither
//! holds it across an `await`. A read takes ciphertext from the socket, feeds it to
//! rustls and hands out plaintext; a write encrypts, then writes the ciphertext (with
//! anything else rustls has to send, such as a reply to a key update the reading half
//! took in: it leaves with the next write).

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable,
};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::ClientConnection;
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::rc::Rc;

/// A connection ready for commands (plain or TLS), to be split into its two halves.
pub struct Connection {
    pub(super) rd: ReadHalf,
    pub(super) wr: WriteHalf,
}

impl Connection {
    /// A plain TCP connection.
    pub(super) fn plain(stream: TcpStream) -> Connection {
        let (rd, wr) = stream.into_split();
        Connection {
            rd: ReadHalf::Plain(rd),
            wr: WriteHalf::Plain(wr),
        }
    }

    /// A TLS connection whose handshake is done.
    pub(super) fn tls(stream: TcpStream, tls: ClientConnection) -> Connection {
        let tls = Rc::new(RefCell::new(tls));
        let (rd, wr) = stream.into_split();
        Connection {
            rd: ReadHalf::Tls(TlsRead {
                tcp: rd,
                tls: tls.clone(),
                cipher: vec![0; 16 * 1024],
                fed: 0,
                len: 0,
                plain: vec![0; 16 * 1024],
                failed: None,
            }),
            wr: WriteHalf::Tls(TlsWrite {
                tcp: wr,
                tls,
                out: Vec::new(),
            }),
        }
    }

    /// The reading and the writing halves, each usable from its own task of the core.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        (self.rd, self.wr)
    }
}

/// The reading half of a [`Connection`].
pub enum ReadHalf {
    Plain(OwnedReadHalf<TcpStream>),
    Tls(TlsRead),
}

impl ReadHalf {
    /// Why TLS failed, if it did (an alert from Redis, a bad record).
    pub fn tls_failure(&self) -> Option<&str> {
        match self {
            ReadHalf::Tls(rd) => rd.failed.as_deref(),
            ReadHalf::Plain(_) => None,
        }
    }
}

/// The writing half of a [`Connection`].
pub enum WriteHalf {
    Plain(OwnedWriteHalf<TcpStream>),
    Tls(TlsWrite),
}

/// Reads ciphertext and hands out plaintext. The rustls connection is shared with the
/// writing half; neither holds it across an `await`.
pub struct TlsRead {
    tcp: OwnedReadHalf<TcpStream>,
    tls: Rc<RefCell<ClientConnection>>,
    /// Ciphertext read; `cipher[fed..len]` is not given to rustls yet.
    cipher: Vec<u8>,
    fed: usize,
    len: usize,
    /// Plaintext out of rustls, before it is copied into the caller's buffer.
    plain: Vec<u8>,
    /// Why TLS failed, once it did (a Redis that wants a client certificate says so with
    /// an alert after the handshake, at the first read).
    failed: Option<String>,
}

impl TlsRead {
    /// Up to `max` bytes of plaintext into `self.plain`; 0 when the stream is over.
    async fn read_plain(&mut self, max: usize) -> io::Result<usize> {
        let max = max.min(self.plain.len());
        loop {
            {
                let mut tls = self.tls.borrow_mut();
                match tls.reader().read(&mut self.plain[..max]) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if self.fed < self.len {
                    let mut data = &self.cipher[self.fed..self.len];
                    let took = tls.read_tls(&mut data)?;
                    self.fed += took;
                    if let Err(e) = tls.process_new_packets() {
                        self.failed = Some(e.to_string());
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    continue;
                }
            }
            let buf = std::mem::take(&mut self.cipher);
            let (read, back) = self.tcp.read(buf).await;
            self.cipher = back;
            let n = read?;
            if n == 0 {
                return Ok(0);
            }
            (self.fed, self.len) = (0, n);
        }
    }
}

/// Encrypts what is written and writes the ciphertext.
pub struct TlsWrite {
    tcp: OwnedWriteHalf<TcpStream>,
    tls: Rc<RefCell<ClientConnection>>,
    out: Vec<u8>,
}

impl TlsWrite {
    /// Writes all of `data` (encrypted), or fails.
    async fn write_plain(&mut self, data: &[u8]) -> io::Result<()> {
        self.seal(data)?;
        let out = std::mem::take(&mut self.out);
        let (result, mut back) = self.tcp.write_all(out).await;
        back.clear();
        self.out = back;
        result.map(|_| ())
    }

    /// Encrypts `data` into `self.out`, with anything else rustls has to send (a reply to
    /// a key update the reading half took in).
    fn seal(&mut self, data: &[u8]) -> io::Result<()> {
        let mut tls = self.tls.borrow_mut();
        tls.writer().write_all(data)?;
        while tls.wants_write() {
            tls.write_tls(&mut self.out)?;
        }
        Ok(())
    }
}

impl AsyncReadRent for ReadHalf {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        match self {
            ReadHalf::Plain(rd) => rd.read(buf).await,
            ReadHalf::Tls(rd) => {
                let room = buf.bytes_total();
                let n = match rd.read_plain(room).await {
                    Ok(n) => n,
                    Err(e) => return (Err(e), buf),
                };
                // Safety: `n` is within the buffer's capacity, and `plain[..n]` is
                // initialized.
                unsafe {
                    buf.write_ptr()
                        .copy_from_nonoverlapping(rd.plain.as_ptr(), n);
                    buf.set_init(n);
                }
                (Ok(n), buf)
            }
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        if let ReadHalf::Plain(rd) = self {
            return rd.readv(buf).await;
        }
        // Safety: the first slice of `buf` lives as long as `buf`, which this holds.
        let n = match unsafe { RawBuf::new_from_iovec_mut(&mut buf) } {
            Some(raw) => match self.read(raw).await {
                (Ok(n), _) => n,
                (Err(e), _) => return (Err(e), buf),
            },
            None => 0,
        };
        unsafe { buf.set_init(n) };
        (Ok(n), buf)
    }
}

impl AsyncWriteRent for WriteHalf {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            WriteHalf::Plain(wr) => wr.write(buf).await,
            WriteHalf::Tls(wr) => {
                // Safety: `read_ptr()..bytes_init()` is the buffer's initialized part.
                let data = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
                let n = data.len();
                match wr.write_plain(data).await {
                    Ok(()) => (Ok(n), buf),
                    Err(e) => (Err(e), buf),
                }
            }
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        if let WriteHalf::Plain(wr) = self {
            return wr.writev(buf).await;
        }
        // Safety: the first slice of `buf` lives as long as `buf`, which this holds.
        match unsafe { RawBuf::new_from_iovec(&buf) } {
            Some(raw) => {
                let (result, _) = self.write(raw).await;
                (result, buf)
            }
            None => (Ok(0), buf),
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            WriteHalf::Plain(wr) => wr.flush().await,
            WriteHalf::Tls(wr) => wr.tcp.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            WriteHalf::Plain(wr) => wr.shutdown().await,
            WriteHalf::Tls(wr) => {
                wr.tls.borrow_mut().send_close_notify();
                wr.write_plain(&[]).await?;
                wr.tcp.shutdown().await
            }
        }
    }
}
