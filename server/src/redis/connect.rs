//! Opening a connection to Redis, the one way every connection of the client is opened
//! (command and subscriber connections of every core, first connections and reconnects):
//! TCP, then TLS for `rediss://`, then `AUTH` and `SELECT` when the URL asks for them,
//! then a `PING` so that a Redis that wants a password the URL does not give is known at
//! once (`NOAUTH`), not at the first real command.
//!
//! TLS is rustls (0.23, ring, as for the server's own TLS) driven on the monoio stream by
//! hand, as `shell::tls` does: the handshake here, before anything else, then the
//! connection's halves ([`super::stream`]) feed ciphertext to rustls and hand out
//! plaintext, and encrypt what is written. The server certificate is checked against `--redis-ca FILE` (PEM) when
//! given, else against the system's roots (Debian's `ca-certificates`, through
//! `rustls-native-certs`), with the URL's host as SNI and as the name the certificate
//! must hold (an IP address for `rediss://10.0.0.5`). A client certificate
//! (`--redis-cert`, `--redis-key`) is sent when given, for a Redis with
//! `tls-auth-clients yes` (its default once TLS is on).
//!
//! A refusal (wrong password, a certificate that does not verify, an unknown database) is
//! logged once per node while it stays the same (every core's two connections retry with
//! backoff and would otherwise repeat it), with the password redacted; a Redis that is
//! merely unreachable is logged at debug level as before.

use super::resp::{self, Frame, FrameReader};
pub use super::stream::{Connection, ReadHalf, WriteHalf};
use super::url::RedisUrl;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The TCP connection, then the rest of the opening (TLS, `AUTH`, `SELECT`, `PING`), must
/// each be done within this: a Redis that takes the connection and then says nothing (hung,
/// or a TLS port spoken to in plain) is reported (once) and tried again.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How to reach the node's Redis: the parsed `--redis-url`, its TLS settings, and the last
/// refusal logged. Made once at start; shared by every core.
pub struct Link {
    pub url: RedisUrl,
    /// The URL's host, resolved at start.
    pub addr: SocketAddr,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    /// The last refusal logged (so that it is logged once, not once per try and core).
    refusal: Mutex<Option<String>>,
}

impl Link {
    /// `--redis-url` and its TLS files, checked: the URL parsed and resolved, the files
    /// read. Errors are one line and never hold the password.
    pub fn new(url: &str, files: &TlsFiles) -> Result<Link, String> {
        let url = RedisUrl::parse(url)?;
        let addr = url.resolve()?;
        let tls = if url.tls {
            let name = ServerName::try_from(url.host.clone()).map_err(|e| {
                format!(
                    "--redis-url {}: the host is not a TLS name: {e}",
                    url.shown()
                )
            })?;
            Some((client_config(files)?, name))
        } else if let Some(flag) = files.set() {
            return Err(format!(
                "{flag} is set but --redis-url {} is not TLS (rediss://)",
                url.shown()
            ));
        } else {
            None
        };
        Ok(Link {
            url,
            addr,
            tls,
            refusal: Mutex::default(),
        })
    }

    /// Logs a refusal, unless it is the one logged last.
    fn refused(&self, why: &str) {
        let mut last = self.refusal.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() != Some(why) {
            tracing::error!(url = %self.url.shown(), "redis refused this node: {why}");
            *last = Some(why.to_owned());
        }
    }

    fn accepted(&self) {
        let mut last = self.refusal.lock().unwrap_or_else(|e| e.into_inner());
        if last.take().is_some() {
            tracing::info!(url = %self.url.shown(), "redis accepts this node again");
        }
    }
}

/// The files of TLS to Redis (`--redis-ca`, `--redis-cert`, `--redis-key`).
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// The CA Redis's certificate must chain to (else the system's roots).
    pub ca: Option<PathBuf>,
    /// A client certificate chain and its key, for a Redis that asks for one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    /// The first flag that is set, if any.
    fn set(&self) -> Option<&'static str> {
        [
            ("--redis-ca", &self.ca),
            ("--redis-cert", &self.cert),
            ("--redis-key", &self.key),
        ]
        .into_iter()
        .find_map(|(flag, path)| path.is_some().then_some(flag))
    }
}

/// The TLS client settings: roots from `--redis-ca` (PEM, one or more certificates) or the
/// system's; a client certificate from `--redis-cert` and `--redis-key`, if given.
fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match files.ca.as_deref() {
        Some(path) => {
            let shown = path.display();
            let bytes =
                std::fs::read(path).map_err(|e| format!("--redis-ca {shown}: cannot read: {e}"))?;
            for cert in CertificateDer::pem_slice_iter(&bytes) {
                let cert = cert.map_err(|e| format!("--redis-ca {shown}: not PEM: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("--redis-ca {shown}: a bad certificate: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("--redis-ca {shown}: holds no certificate"));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err("rediss:// without --redis-ca needs the system's root \
                            certificates, and none were found (install ca-certificates, or \
                            give --redis-ca FILE)"
                    .into());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS to redis: {e}"))?
        .with_root_certificates(roots);
    let config = match (&files.cert, &files.key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = crate::tls::read_chain("--redis-cert", cert)?;
            let key_der = crate::tls::read_key("--redis-key", key)?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                format!(
                    "--redis-key {} does not go with --redis-cert {}: {e}",
                    key.display(),
                    cert.display()
                )
            })?
        }
        (Some(_), None) => return Err("--redis-cert is set without --redis-key".into()),
        (None, Some(_)) => return Err("--redis-key is set without --redis-cert".into()),
    };
    Ok(Arc::new(config))
}

/// Why a connection could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// Nobody answered, or the connection broke or stalled while opening: try again.
    Unreachable(String),
    /// Redis (or its TLS) said no: a wrong password, a certificate that does not verify, a
    /// database it does not have. Logged once (see [`Link`]); trying again is still right
    /// (an operator may fix Redis's side).
    Refused(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Unreachable(why) | ConnectError::Refused(why) => f.write_str(why),
        }
    }
}

/// Opens a connection to `addr` as `link` says (TLS, `AUTH`, `SELECT`), ready for
/// commands. `addr` is `link.addr` for a standalone Redis; a client of several servers
/// (a Cluster's masters) passes each one's.
pub async fn connect(addr: SocketAddr, link: &Link) -> Result<Connection, ConnectError> {
    let result = open(addr, link).await;
    match &result {
        Ok(_) => link.accepted(),
        Err(ConnectError::Refused(why)) => link.refused(why),
        Err(ConnectError::Unreachable(_)) => {}
    }
    result
}

async fn open(addr: SocketAddr, link: &Link) -> Result<Connection, ConnectError> {
    let unreachable = |e: io::Error| ConnectError::Unreachable(e.to_string());
    let connecting = monoio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect_addr(addr)).await;
    let stream = connecting
        .map_err(|_| {
            ConnectError::Unreachable(format!("no connection within {CONNECT_TIMEOUT:?}"))
        })?
        .map_err(unreachable)?;
    let _ = stream.set_nodelay(true);
    let greeting = monoio::time::timeout(CONNECT_TIMEOUT, greet(stream, link)).await;
    greeting.unwrap_or_else(|_| {
        // Logged (once): a Redis that takes connections and answers nothing is hung, or
        // is not speaking what the URL says.
        let hint = match link.url.tls {
            true => "hung, or not a TLS port?",
            false => "hung, or a TLS port? then rediss://",
        };
        Err(ConnectError::Refused(format!(
            "it took the connection but did not answer within {CONNECT_TIMEOUT:?} ({hint})"
        )))
    })
}

/// TLS when asked, then `AUTH`, `SELECT` and `PING`.
async fn greet(mut stream: TcpStream, link: &Link) -> Result<Connection, ConnectError> {
    let connection = match &link.tls {
        None => Connection::plain(stream),
        Some((config, name)) => {
            let mut tls = ClientConnection::new(config.clone(), name.clone())
                .map_err(|e| ConnectError::Refused(format!("TLS: {e}")))?;
            // Each write is encrypted and drained at once: no second bound in rustls.
            tls.set_buffer_limit(None);
            handshake(&mut stream, &mut tls).await?;
            Connection::tls(stream, tls)
        }
    };
    hello(connection, &link.url).await
}

/// The TLS handshake on the whole stream, before it is split.
async fn handshake(stream: &mut TcpStream, tls: &mut ClientConnection) -> Result<(), ConnectError> {
    let unreachable = |e: io::Error| ConnectError::Unreachable(format!("TLS: {e}"));
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        flush_tls(stream, tls).await.map_err(unreachable)?;
        if !tls.is_handshaking() {
            return Ok(());
        }
        let (read, back) = stream.read(buf).await;
        buf = back;
        let n = read.map_err(unreachable)?;
        if n == 0 {
            return Err(ConnectError::Unreachable(
                "closed during the TLS handshake (is the port a TLS port?)".into(),
            ));
        }
        let mut data = &buf[..n];
        while !data.is_empty() {
            tls.read_tls(&mut data).map_err(unreachable)?;
            if let Err(e) = tls.process_new_packets() {
                // rustls queued an alert saying why: tell Redis too, then give up.
                let _ = flush_tls(stream, tls).await;
                return Err(ConnectError::Refused(format!("TLS: {e}")));
            }
        }
    }
}

/// Writes whatever rustls has to send.
async fn flush_tls(stream: &mut TcpStream, tls: &mut ClientConnection) -> io::Result<()> {
    while tls.wants_write() {
        let mut out = Vec::new();
        tls.write_tls(&mut out)?;
        let (result, _) = stream.write_all(out).await;
        result?;
    }
    Ok(())
}

/// `AUTH`, `SELECT` and `PING`, pipelined; the connection once all three answered well.
async fn hello(mut connection: Connection, url: &RedisUrl) -> Result<Connection, ConnectError> {
    let mut bytes = Vec::new();
    let mut asked = Vec::new();
    if let Some(password) = &url.password {
        let who = match &url.username {
            Some(user) => {
                resp::encode_command(&mut bytes, &["AUTH", user, password]);
                format!("AUTH as user {user:?}")
            }
            None => {
                resp::encode_command(&mut bytes, &["AUTH", password]);
                "AUTH with a password".to_owned()
            }
        };
        asked.push(who);
    }
    if let Some(db) = url.db {
        resp::encode_command(&mut bytes, &["SELECT", &db.to_string()]);
        asked.push(format!("SELECT {db}"));
    }
    resp::encode_command(&mut bytes, &["PING"]);
    asked.push("PING".to_owned());
    let unreachable = |e: String| ConnectError::Unreachable(e);
    let (result, _) = connection.wr.write_all(bytes).await;
    result.map_err(|e| unreachable(e.to_string()))?;
    let mut reader = FrameReader::new();
    let mut frames = Vec::new();
    while frames.len() < asked.len() {
        if let Err(e) = reader.read(&mut connection.rd, &mut frames).await {
            // A TLS alert is Redis saying no (no client certificate, a refused one); a
            // closed or broken connection is not.
            return Err(match connection.rd.tls_failure() {
                Some(why) => ConnectError::Refused(format!("TLS: {why}")),
                // Redis answers even what it refuses: a close or a reset with no answer
                // at all is most often a TLS port spoken to in plain.
                None if frames.is_empty() && !url.tls => ConnectError::Refused(format!(
                    "{e} before answering {} (is it a TLS port? then rediss://)",
                    asked[0]
                )),
                None => unreachable(e),
            });
        }
    }
    for (what, frame) in asked.iter().zip(&frames) {
        if let Frame::Error(e) = frame {
            let hint = if e.starts_with("NOAUTH") {
                " (Redis wants a password: give it in the URL, redis://:PASSWORD@HOST)"
            } else {
                ""
            };
            return Err(ConnectError::Refused(format!("{what}: {e}{hint}")));
        }
    }
    if frames.len() > asked.len() {
        return Err(unreachable(
            "more replies than commands while connecting".into(),
        ));
    }
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn files(dir: &Path, ca: &str, cert: Option<&str>, key: Option<&str>) -> TlsFiles {
        let path = |name: &str| dir.join(name);
        TlsFiles {
            ca: (!ca.is_empty()).then(|| path(ca)),
            cert: cert.map(path),
            key: key.map(path),
        }
    }

    #[test]
    fn tls_files_are_checked_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), made.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), made.signing_key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("empty.pem"), "").unwrap();
        let d = dir.path();
        let url = "rediss://:hunter2@127.0.0.1:6380";
        assert!(Link::new(url, &files(d, "ca.pem", None, None)).is_ok());
        assert!(Link::new(url, &files(d, "ca.pem", Some("ca.pem"), Some("key.pem"))).is_ok());
        let cases = [
            (url, files(d, "missing.pem", None, None), "cannot read"),
            (
                url,
                files(d, "empty.pem", None, None),
                "holds no certificate",
            ),
            (url, files(d, "key.pem", None, None), "holds no certificate"),
            (
                url,
                files(d, "ca.pem", Some("ca.pem"), None),
                "without --redis-key",
            ),
            (
                url,
                files(d, "ca.pem", None, Some("key.pem")),
                "without --redis-cert",
            ),
            (
                url,
                files(d, "ca.pem", Some("empty.pem"), Some("key.pem")),
                "--redis-cert",
            ),
            (
                url,
                files(d, "ca.pem", Some("ca.pem"), Some("ca.pem")),
                "--redis-key",
            ),
            (
                "redis://:hunter2@127.0.0.1:6379",
                files(d, "ca.pem", None, None),
                "--redis-ca is set but",
            ),
            (
                "redis://:hunter2@127.0.0.1:6379",
                files(d, "", Some("ca.pem"), Some("key.pem")),
                "--redis-cert is set but",
            ),
        ];
        for (url, files, why) in cases {
            let error = Link::new(url, &files).err().unwrap_or_default();
            assert!(error.contains(why), "{files:?}: {error:?}");
            assert!(!error.contains("hunter2"), "{error}");
        }
    }

    #[test]
    fn a_tls_name_is_the_urls_host() {
        let dir = tempfile::tempdir().unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), made.cert.pem()).unwrap();
        let files = files(dir.path(), "ca.pem", None, None);
        let link = Link::new("rediss://localhost:6380", &files).unwrap();
        let (_, name) = link.tls.as_ref().unwrap();
        assert_eq!(name.to_str(), "localhost");
        let link = Link::new("rediss://[::1]:6380", &files).unwrap();
        assert!(matches!(link.tls.unwrap().1, ServerName::IpAddress(_)));
        assert!(Link::new("redis://127.0.0.1", &TlsFiles::default())
            .unwrap()
            .tls
            .is_none());
    }
}
