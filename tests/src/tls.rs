//! TLS for the tests: a self-signed certificate made for the test (rcgen), a server that
//! serves it, and clients that trust it — WebSocket (tungstenite over rustls) and HTTPS.

use crate::{Client, WAIT};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use tungstenite::stream::MaybeTlsStream;

/// A certificate for `localhost` and `127.0.0.1`, its key, and the files holding them.
pub struct TestCert {
    pub dir: tempfile::TempDir,
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCert {
    /// A fresh self-signed certificate, written to `cert.pem` and `key.pem` in a temporary
    /// directory.
    pub fn new() -> TestCert {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("a certificate is made");
        let dir = tempfile::tempdir().unwrap();
        let cert = TestCert {
            dir,
            cert_pem: made.cert.pem(),
            key_pem: made.signing_key.serialize_pem(),
            der: made.cert.der().clone(),
        };
        std::fs::write(cert.cert_path(), &cert.cert_pem).unwrap();
        std::fs::write(cert.key_path(), &cert.key_pem).unwrap();
        cert
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// A client configuration that trusts this certificate only (TLS 1.2 and 1.3).
    pub fn client(&self) -> Arc<ClientConfig> {
        client_trusting(&self.der)
    }
}

impl Default for TestCert {
    fn default() -> Self {
        TestCert::new()
    }
}

/// A client configuration that trusts `der` only.
pub fn client_trusting(der: &CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(der.clone()).expect("the certificate is a root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Starts a server serving `cert` on `cores` cores; `tweak` adjusts the config first.
pub fn tls_server_with(
    cert: &TestCert,
    cores: usize,
    tweak: impl FnOnce(&mut rookery::Config),
) -> SocketAddr {
    crate::server_with(cores, |config| {
        config.tls_cert = Some(cert.cert_path());
        config.tls_key = Some(cert.key_path());
        tweak(config);
    })
}

/// A TLS stream to `addr` (named `localhost`), handshake done, with the usual timeouts.
pub fn tls_stream(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
) -> std::io::Result<StreamOwned<ClientConnection, TcpStream>> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(WAIT))?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

impl Client {
    /// Connects over TLS to `path` (e.g. `/websocket?room=x`): `wss://localhost:PORT/…`.
    pub fn connect_tls(addr: SocketAddr, path: &str, config: &Arc<ClientConfig>) -> Client {
        let stream = tls_stream(addr, config).expect("TLS handshake");
        let url = format!("wss://localhost:{}{path}", addr.port());
        let (ws, _) =
            tungstenite::client(url, MaybeTlsStream::Rustls(stream)).expect("websocket connects");
        Client { ws }
    }

    /// A pact client over TLS in `room`; consumes `config` and returns the `profile` data.
    pub fn pact_tls(
        addr: SocketAddr,
        room: &str,
        config: &Arc<ClientConfig>,
    ) -> (Client, serde_json::Value) {
        let mut c = Client::connect_tls(addr, &format!("/websocket?room={room}"), config);
        assert_eq!(c.recv()["type"], "config");
        let profile = c.recv_type("profile");
        (c, profile["data"].clone())
    }

    /// The certificate the server presented.
    pub fn peer_certificate(&self) -> CertificateDer<'static> {
        match self.ws.get_ref() {
            MaybeTlsStream::Rustls(s) => s.conn.peer_certificates().unwrap()[0].clone(),
            _ => panic!("not a TLS connection"),
        }
    }
}

/// `method path` with `headers` and `body` over HTTPS; returns status and body.
pub fn https(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = tls_stream(addr, config).expect("TLS handshake");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(req.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    stream.flush().unwrap();
    // The server ends its answer with close_notify: a clean end of the stream (rustls
    // reports a missing close_notify as an error).
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .expect("a complete, cleanly closed answer");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}
