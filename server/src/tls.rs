//! TLS (`--tls-cert`, `--tls-key`): the certificate and key, checked and loaded; the rustls
//! server configuration every core's connections share; its reload on SIGHUP.
//!
//! No sockets here: the shell drives each connection's rustls state with its own reads and
//! writes (`shell/tls.rs`). The certificate is chosen per handshake by [`CertStore`], so a
//! reload swaps it for new handshakes while connections already open keep their keys.
//!
//! Protocol versions are TLS 1.3 and 1.2 only (rustls has nothing older); the cipher suites
//! are rustls's defaults (AEAD only, forward secrecy only). ALPN offers `http/1.1`, the only
//! HTTP this server speaks (WebSocket upgrades included). Session resumption uses stateless
//! tickets (keys rotated by rustls every 6 hours) so that a reconnect storm costs less than
//! full handshakes, and needs no state per client on the server (no session-id cache). A
//! reload also replaces the ticket keys: a session made under the old certificate cannot be
//! resumed, so after a reload (a renewal, or a key that leaked) every client proves the
//! server with the new certificate. No 0-RTT data (replayable).
//!
//! Key material is never logged nor put in an error: errors name the file and what is wrong
//! with it; the log names the certificate by its SHA-256 fingerprint.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, NoServerSessionStorage, ProducesTickets, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The certificate chain and key files of `--tls-cert` and `--tls-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The crypto provider: ring.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks the certificate chain and key: both PEM, the key one the provider can
/// sign with, and the key the one of the chain's first (end-entity) certificate. The error
/// is one line naming the file and the reason (never the key's bytes).
pub fn load(files: &TlsFiles) -> Result<Arc<CertifiedKey>, String> {
    let chain = read_chain("--tls-cert", &files.cert)?;
    let key = read_key("--tls-key", &files.key)?;
    let key_file = files.key.display();
    let cert_file = files.cert.display();
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "--tls-key {key_file} is not the key of the certificate in --tls-cert {cert_file}"
        ),
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            format!("--tls-cert {cert_file}: the certificate cannot be parsed ({e})")
        }
        _ => format!("--tls-key {key_file}: unusable private key ({e})"),
    })?;
    // `from_der` lets a key pass when its match cannot be told; refuse that too.
    certified.keys_match().map_err(|e| {
        format!("--tls-key {key_file} cannot be checked against --tls-cert {cert_file} ({e})")
    })?;
    Ok(Arc::new(certified))
}

fn read_file(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{flag} {}: cannot read it ({e})", path.display()))
}

/// A PEM certificate chain (end-entity first); errors name `flag`.
pub(crate) fn read_chain(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read_file(flag, path)?;
    let bad = |why: String| format!("{flag} {}: {why}", path.display());
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate chain ({e})")))?;
    if chain.is_empty() {
        return Err(bad(
            "no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(chain)
}

/// A PEM private key (PKCS#8, PKCS#1 or SEC1); errors name `flag`.
pub(crate) fn read_key(flag: &str, path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read_file(flag, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        let why = match e {
            rustls::pki_types::pem::Error::NoItemsFound
                if bytes.windows(23).any(|w| w == b"ENCRYPTED PRIVATE KEY--") =>
            {
                "an encrypted private key: give the decrypted key (`openssl pkey -in KEY \
                 -out KEY.pem` asks for its passphrase)"
                    .to_owned()
            }
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PEM private key in it (expected PKCS#8, PKCS#1 or SEC1)".to_owned()
            }
            // Other errors say where parsing stopped, not what the key holds.
            other => format!("not a PEM private key ({other})"),
        };
        format!("{flag} {}: {why}", path.display())
    })
}

/// The SHA-256 fingerprint of a certificate (hex, colon-separated), for logs.
pub fn fingerprint(cert: &CertifiedKey) -> String {
    let der = cert.cert.first().map(|c| c.as_ref()).unwrap_or_default();
    use sha2::Digest;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The certificate new handshakes get; replaced whole on reload.
#[derive(Debug)]
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().map(|c| c.clone()).unwrap_or_else(|p| {
            // A panic while holding the lock cannot leave a half-written Arc.
            p.into_inner().clone()
        }))
    }
}

/// The ticket keys (rustls's rotating ticketer), replaced whole on reload.
#[derive(Debug)]
struct Tickets {
    current: RwLock<Arc<dyn ProducesTickets>>,
}

impl Tickets {
    fn fresh() -> Result<Arc<dyn ProducesTickets>, String> {
        rustls::crypto::ring::Ticketer::new().map_err(|e| format!("TLS: {e}"))
    }

    fn get(&self) -> Arc<dyn ProducesTickets> {
        self.current
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }
}

impl ProducesTickets for Tickets {
    fn enabled(&self) -> bool {
        self.get().enabled()
    }

    fn lifetime(&self) -> u32 {
        self.get().lifetime()
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.get().encrypt(plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.get().decrypt(cipher)
    }
}

/// What the cores share: the rustls configuration and the certificate behind it.
pub struct Tls {
    pub config: Arc<ServerConfig>,
    store: Arc<CertStore>,
    tickets: Arc<Tickets>,
}

impl Tls {
    /// Loads the files and builds the configuration.
    pub fn new(files: &TlsFiles) -> Result<Tls, String> {
        let certified = load(files)?;
        tracing::info!(
            cert = %files.cert.display(),
            sha256 = %fingerprint(&certified),
            "TLS on: every listener serves https:// and wss://"
        );
        let store = Arc::new(CertStore {
            current: RwLock::new(certified),
        });
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(store.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tickets = Arc::new(Tickets {
            current: RwLock::new(Tickets::fresh()?),
        });
        config.ticketer = tickets.clone();
        config.session_storage = Arc::new(NoServerSessionStorage {});
        Ok(Tls {
            config: Arc::new(config),
            store,
            tickets,
        })
    }

    /// Reads the certificate and key again (from `files`, the paths now configured): new
    /// handshakes get them, and new ticket keys (no session of the old certificate is
    /// resumed); open connections keep theirs. A file that is bad now changes nothing and
    /// says why. Returns the new certificate's fingerprint.
    pub fn reload(&self, files: &TlsFiles) -> Result<String, String> {
        let certified = load(files)?;
        let fingerprint = fingerprint(&certified);
        let tickets = Tickets::fresh()?;
        // The certificate first: a ticket made between the two swaps is made with the old
        // keys, which are about to go, so it never resumes a session of the old certificate.
        *self
            .store
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = certified;
        *self
            .tickets
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = tickets;
        Ok(fingerprint)
    }
}
