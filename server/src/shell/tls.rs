//! TLS on the shell's own IO: rustls's sans-IO `ServerConnection`, fed at exactly the two
//! points where bytes cross the socket.
//!
//! - **In:** after the one non-blocking `recv` into the core's read buffer (`recv.rs`), the
//!   ciphertext goes through [`TlsConn::take`] (`read_tls`, `process_new_packets`), and the
//!   plaintext it yields is what the plain path would have had: the request head's buffer,
//!   or tungstenite's `MemStream`.
//! - **Out:** the frames of one batch (what the plain path writes with one `writev`) are
//!   encrypted together by [`TlsConn::seal`] (one `write_vectored` into rustls, which packs
//!   them into as few records as fit, then `write_tls`), and the ciphertext is written with
//!   one write, through the same batch, partial writes and all.
//!
//! Why not an async TLS stream around the socket (monoio-rustls and the like): the shell
//! does not read through a stream. It waits for readiness and reads into the core's buffer so
//! that an idle connection holds no read buffer and no pending read, and it writes the
//! core's shared `Bytes` with vectored writes; a stream adapter would put a pending owned
//! read (and its buffer) under every idle connection and a second copy of every frame in
//! its write path. Here a plain connection's path is unchanged (its `Option` is `None`),
//! and a TLS connection adds the encryption, the one copy of ciphertext out of rustls's
//! buffer and a short list of slices per batch.
//!
//! Memory: a TLS connection holds its `ServerConnection` (1,168 bytes) boxed for its whole
//! life, with its record keys and rustls's incoming-record buffer (4 KiB after a read that
//! left no partial record, up to one record until the next read): about 7.7 KB more than a
//! plain connection in the benchmark's W1 (`docs/SECURITY.md#tls`).

use bytes::Bytes;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};
use std::io::{BufRead, IoSlice, Write};
use std::sync::Arc;

/// What reading some ciphertext came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Took {
    /// Taken; any plaintext was handed over.
    Fine,
    /// The peer sent `close_notify`: nothing more will come.
    Closed,
    /// Not TLS, or TLS the server refuses (an old version, a bad record, a failed
    /// handshake): the connection is over; an alert may be waiting in [`TlsConn::drain`].
    Failed,
}

/// One connection's TLS state.
pub struct TlsConn {
    conn: ServerConnection,
    /// Whether any byte came from the peer yet (the first says whether it speaks TLS).
    heard: bool,
    failed: bool,
}

impl TlsConn {
    /// A new server side of a handshake, boxed (a plain connection's `Option` stays one
    /// pointer wide).
    pub fn new(config: &Arc<ServerConfig>) -> Option<Box<TlsConn>> {
        match ServerConnection::new(config.clone()) {
            Ok(mut conn) => {
                // The connection's own queue is bounded (`--max-outbound-bytes`), and a
                // batch is encrypted whole: no second bound in rustls.
                conn.set_buffer_limit(None);
                Some(Box::new(TlsConn {
                    conn,
                    heard: false,
                    failed: false,
                }))
            }
            Err(error) => {
                tracing::error!(%error, "TLS: cannot start a connection");
                None
            }
        }
    }

    /// Whether the handshake is still under way (nothing can be said to the client yet).
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Whether rustls has records to send (handshake messages, alerts, a key update).
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Whether `first`, the first bytes a client sent, is plain HTTP (a request line) rather
    /// than a TLS record (whose first byte is a content type, 20 to 24).
    pub fn is_plain_http(&self, first: &[u8]) -> bool {
        !self.heard && first.first().is_some_and(u8::is_ascii_uppercase)
    }

    /// Decrypts `ciphertext`; the plaintext goes to `plain`, in order.
    pub fn take(&mut self, mut ciphertext: &[u8], mut plain: impl FnMut(&[u8])) -> Took {
        self.heard = true;
        if self.failed {
            return Took::Failed;
        }
        while !ciphertext.is_empty() {
            match self.conn.read_tls(&mut ciphertext) {
                Ok(0) => return Took::Closed,
                Ok(_) => {}
                Err(_) => return self.fail(),
            }
            let state = match self.conn.process_new_packets() {
                Ok(state) => state,
                Err(error) => {
                    tracing::debug!(%error, "TLS: connection refused");
                    return self.fail();
                }
            };
            let closed = state.peer_has_closed();
            let mut reader = self.conn.reader();
            while let Ok(chunk) = reader.fill_buf() {
                if chunk.is_empty() {
                    break;
                }
                let n = chunk.len();
                plain(chunk);
                reader.consume(n);
            }
            if closed {
                return Took::Closed;
            }
        }
        Took::Fine
    }

    fn fail(&mut self) -> Took {
        self.failed = true;
        Took::Failed
    }

    /// Encrypts `frames`, in order, appending their records (and anything else rustls has
    /// to send) to `out`.
    pub fn seal(&mut self, frames: &[Bytes], out: &mut Vec<u8>) {
        if !self.failed {
            let mut slices: Vec<IoSlice<'_>> = frames.iter().map(|f| IoSlice::new(f)).collect();
            let mut rest = &mut slices[..];
            let mut writer = self.conn.writer();
            while !rest.is_empty() {
                // All of it (no buffer limit), unless the keys must be updated first:
                // rustls then takes the rest after the key update.
                match writer.write_vectored(rest) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => IoSlice::advance_slices(&mut rest, n),
                }
            }
        }
        self.drain(out);
    }

    /// Appends what rustls has to send to `out`.
    pub fn drain(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            match self.conn.write_tls(out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// Says `close_notify`: appends the alert (after anything else pending) to `out`.
    pub fn close(&mut self, out: &mut Vec<u8>) {
        if !self.failed && !self.conn.is_handshaking() {
            self.conn.send_close_notify();
        }
        self.drain(out);
    }
}

/// A socket before its request is served: the stream and, on a TLS listener, its TLS state.
/// Everything written to it is a final answer (HTTP responses close the connection; an
/// upgrade's session writes through its `Conn`).
pub struct Socket {
    pub stream: TcpStream,
    pub tls: Option<Box<TlsConn>>,
}

impl Socket {
    /// Writes `response` and ends the conversation: encrypted and followed by
    /// `close_notify` over TLS; nothing when the TLS handshake never finished (there is no
    /// key to say anything with).
    pub async fn answer(&mut self, response: Vec<u8>) {
        let bytes = match &mut self.tls {
            None => response,
            Some(tls) if tls.is_handshaking() => {
                let mut out = Vec::new();
                tls.drain(&mut out);
                out
            }
            Some(tls) => {
                let mut out = Vec::with_capacity(response.len() + 64);
                tls.seal(&[Bytes::from(response)], &mut out);
                tls.close(&mut out);
                out
            }
        };
        if !bytes.is_empty() {
            let _ = self.stream.write_all(bytes).await;
        }
    }

    /// Writes `bytes` as one part of a longer answer (the console's server-sent events):
    /// encrypted over TLS, and the conversation goes on. False when the write failed (or
    /// the TLS handshake never finished).
    pub async fn write_part(&mut self, bytes: Vec<u8>) -> bool {
        let bytes = match &mut self.tls {
            None => bytes,
            Some(tls) if tls.is_handshaking() => return false,
            Some(tls) => {
                let mut out = Vec::with_capacity(bytes.len() + 64);
                tls.seal(&[Bytes::from(bytes)], &mut out);
                out
            }
        };
        self.stream.write_all(bytes).await.0.is_ok()
    }

    /// Writes what rustls has to send now (handshake messages, an alert). False when the
    /// write failed.
    pub async fn flush_tls(&mut self) -> bool {
        let Some(tls) = &mut self.tls else {
            return true;
        };
        if !tls.wants_write() {
            return true;
        }
        let mut out = Vec::new();
        tls.drain(&mut out);
        let (result, _) = self.stream.write_all(out).await;
        result.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, RootCertStore};
    use std::io::Read;

    /// The server's configuration with a certificate made for the test, and the certificate.
    fn server_config() -> (Arc<ServerConfig>, CertificateDer<'static>) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let files = crate::tls::TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        std::fs::write(&files.cert, made.cert.pem()).unwrap();
        std::fs::write(&files.key, made.signing_key.serialize_pem()).unwrap();
        let tls = crate::tls::Tls::new(&files).unwrap();
        (tls.config.clone(), made.cert.der().clone())
    }

    /// A server-side `TlsConn` and a rustls client, handshake done in memory.
    fn pair() -> (Box<TlsConn>, ClientConnection) {
        let (server_config, cert) = server_config();
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        let mut client = ClientConnection::new(Arc::new(config), name).unwrap();
        let mut server = TlsConn::new(&server_config).unwrap();
        while client.is_handshaking() || server.is_handshaking() {
            let mut to_server = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut to_server).unwrap();
            }
            assert_eq!(server.take(&to_server, |_| {}), Took::Fine);
            let mut to_client = Vec::new();
            server.drain(&mut to_client);
            client.read_tls(&mut &to_client[..]).unwrap();
            client.process_new_packets().unwrap();
        }
        (server, client)
    }

    /// The records in `bytes`: (content type, length) of each.
    fn records(mut bytes: &[u8]) -> Vec<(u8, usize)> {
        let mut out = Vec::new();
        while bytes.len() >= 5 {
            let len = u16::from_be_bytes([bytes[3], bytes[4]]) as usize;
            out.push((bytes[0], len));
            bytes = &bytes[5 + len..];
        }
        assert!(bytes.is_empty(), "whole records");
        out
    }

    fn client_reads(client: &mut ClientConnection, ciphertext: &[u8]) -> Vec<u8> {
        let mut input = ciphertext;
        let mut plain = Vec::new();
        while !input.is_empty() {
            client.read_tls(&mut input).unwrap();
            client.process_new_packets().unwrap();
            let mut chunk = Vec::new();
            let _ = client.reader().read_to_end(&mut chunk);
            plain.extend(chunk);
        }
        plain
    }

    #[test]
    fn a_batch_of_frames_is_sealed_into_as_few_records_as_fit() {
        let (mut server, mut client) = pair();
        let frames: Vec<Bytes> = (0..100)
            .map(|i| Bytes::from(format!("frame {i};")))
            .collect();
        let mut out = Vec::new();
        server.seal(&frames, &mut out);
        assert_eq!(records(&out).len(), 1, "100 small frames, one record");
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
        assert_eq!(client_reads(&mut client, &out), expected);

        let big = vec![Bytes::from(vec![7u8; 40_000]), Bytes::from_static(b"tail")];
        let mut out = Vec::new();
        server.seal(&big, &mut out);
        assert_eq!(records(&out).len(), 3, "16 KiB records");
        let plain = client_reads(&mut client, &out);
        assert_eq!(plain.len(), 40_004);
        assert!(plain.ends_with(b"tail"));
    }

    #[test]
    fn what_the_client_sends_comes_out_whole_in_any_pieces() {
        let (mut server, mut client) = pair();
        let message = vec![b'm'; 50_000];
        client.writer().write_all(&message).unwrap();
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        // Fed in reads of odd sizes, as the socket may hand them over.
        let mut plain = Vec::new();
        for piece in wire.chunks(1_000 + 7) {
            assert_eq!(
                server.take(piece, |p| plain.extend_from_slice(p)),
                Took::Fine
            );
        }
        assert_eq!(plain, message);
        // close_notify ends it; what came before it is still handed over.
        client.writer().write_all(b"last").unwrap();
        client.send_close_notify();
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        let mut plain = Vec::new();
        assert_eq!(
            server.take(&wire, |p| plain.extend_from_slice(p)),
            Took::Closed
        );
        assert_eq!(plain, b"last");
    }

    #[test]
    fn garbage_fails_and_leaves_an_alert_to_send() {
        let (mut server, _) = pair();
        assert_eq!(
            server.take(&[0x17, 0x03, 0x03, 0x00, 0x03, 1, 2, 3], |_| {}),
            Took::Failed
        );
        let mut out = Vec::new();
        server.drain(&mut out);
        // TLS 1.3 encrypts its alerts: an application-data record from the outside.
        assert_eq!(records(&out).len(), 1, "an alert");
        assert_eq!(server.take(b"more", |_| {}), Took::Failed, "stays failed");
    }

    #[test]
    fn plain_http_is_told_from_a_client_hello_before_anything_else() {
        let (config, _) = server_config();
        let mut fresh = TlsConn::new(&config).unwrap();
        assert!(fresh.is_plain_http(b"GET /healthz HTTP/1.1\r\n"));
        assert!(fresh.is_plain_http(b"POST /x/emit HTTP/1.1\r\n"));
        assert!(!fresh.is_plain_http(&[0x16, 0x03, 0x01, 0x00, 0x05]));
        assert!(!fresh.is_plain_http(b""));
        assert_eq!(
            fresh.take(&[0x16, 0x03, 0x01], |_| {}),
            Took::Fine,
            "a partial record"
        );
        assert!(!fresh.is_plain_http(b"GET"), "only the first bytes tell");
    }

    #[test]
    #[ignore = "prints the size of a TLS connection's state: cargo test -- --ignored --nocapture"]
    fn size_of_a_connections_tls_state() {
        println!(
            "ServerConnection: {} bytes; TlsConn: {} bytes",
            std::mem::size_of::<ServerConnection>(),
            std::mem::size_of::<TlsConn>()
        );
    }
}
