//! The monoio shell: one runtime thread per core, each accepting on the shared port, reading
//! request heads and handing sockets to their protocol. Thin by design: the rules live in
//! the engine and the dialects.

pub mod access;
pub mod admin_api;
pub mod admission;
pub mod assets;
pub mod batch;
pub mod calls;
pub mod conn;
pub mod console;
pub mod deliveries;
pub mod expiry;
pub mod flusher;
pub mod handshakes;
pub mod mailbox;
pub mod memstream;
pub mod metrics;
pub mod names;
mod outframe;
pub mod owner;
pub mod parking;
pub mod recv;
pub mod room_api;
pub mod router;
pub mod sequencer;
pub mod session;
pub mod shard;
pub mod ticker;
pub mod tls;
pub mod upgrade;
pub mod ws;
pub mod wsstate;

use self::deliveries::run_deliveries;
use self::mailbox::{now_ms, Mailbox, Node, ToConns, ToOwner};
use self::owner::{run_engine, run_engine_clock};
use self::shard::Shard;
use self::ticker::run_ticker;
use crate::config::{Config, DriverChoice};
use crate::http::{self, parse_head};
use crate::origin::Verdict;
use monoio::net::{ListenerOpts, TcpListener, TcpStream};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// A running server.
pub struct ServerHandle {
    /// The address actually bound (the real port when the config said port 0).
    pub addr: SocketAddr,
    /// The io driver the cores run on: `"io_uring"` or `"epoll"`.
    pub driver: &'static str,
    /// The operator listener's address (`--admin-listen`), when there is one.
    pub admin_addr: Option<SocketAddr>,
    node: Arc<Node>,
}

impl ServerHandle {
    /// Starts a graceful shutdown: `readyz` answers 503, new WebSocket connections are
    /// refused, and every connection is closed with 1001 within the jitter window.
    pub fn shutdown(&self) {
        self.node
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let jitter_ms = self.node.config.shutdown_jitter_ms;
        for mailbox in &self.node.mailboxes {
            let _ = mailbox.deliveries.send(ToConns::Drain { jitter_ms });
        }
    }

    /// Fsyncs every commit made so far (the last step of a graceful shutdown: the store's
    /// thread is not joined, so its own last fsync may not run before the process exits).
    pub fn sync_store(&self) -> Result<(), crate::store::StoreError> {
        self.node.store.sync().wait_blocking()
    }

    /// Open WebSocket connections on every core.
    pub fn open_connections(&self) -> u64 {
        self.node.open_connections()
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &Config {
        &self.node.config
    }

    /// Whether the listeners speak TLS.
    pub fn tls(&self) -> bool {
        self.node.tls.is_some()
    }

    /// Reads the TLS certificate and key again, from `files` (SIGHUP): new handshakes get
    /// them, open connections keep theirs. A bad file changes nothing; the error says why.
    /// Returns the new certificate's SHA-256 fingerprint.
    pub fn reload_tls(&self, files: &crate::tls::TlsFiles) -> Result<String, String> {
        match &self.node.tls {
            Some(tls) => tls.reload(files),
            None => Err("TLS is off: --tls-cert and --tls-key take effect on restart".into()),
        }
    }
}

/// Opens the configured store: the disk store on its own thread, the memory store on the
/// cores (see `store/worker.rs`). A data directory that cannot be used (locked by another
/// process, from another version, unreadable) stops the start with an error that says
/// which and why, before anything in it is changed.
fn open_store(config: &Config) -> io::Result<crate::store::worker::StoreHandle> {
    use crate::config::FsyncChoice;
    use crate::store::worker::{Durability, StoreHandle};
    use crate::store::{DiskStore, MemoryStore, StoreKind};
    if config.store == StoreKind::Memory {
        return Ok(StoreHandle::in_memory(MemoryStore::new(
            config.history_size,
        )));
    }
    let store = DiskStore::open(&config.data_dir, config.history_size)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let durability = match config.fsync {
        FsyncChoice::Always => Durability::Always,
        FsyncChoice::Interval => Durability::EveryMs(config.fsync_ms),
    };
    let dir = config.data_dir.display();
    tracing::info!(%dir, fsync = ?config.fsync, fsync_ms = config.fsync_ms, "disk store open");
    StoreHandle::spawn(Box::new(store), durability)
}

/// Picks the driver: io_uring when asked or available, else epoll. Returns it and whether
/// io_uring is available at all. A fallback is logged as a warning that says why and what
/// to do, since it costs throughput and an operator may not expect it (Docker's and
/// containerd's default seccomp profiles block io_uring; see docs/DEPLOY.md).
fn choose_driver(choice: DriverChoice) -> io::Result<(&'static str, bool)> {
    let uring = monoio::utils::detect_uring();
    let driver = match choice {
        DriverChoice::Uring if !uring => {
            return Err(io::Error::other(
                "io_uring was requested (--driver uring) but this process cannot use it: \
                 the kernel lacks it, or a seccomp profile (Docker's default, for one) blocks \
                 it; see docs/DEPLOY.md#containers",
            ))
        }
        DriverChoice::Uring => "io_uring",
        DriverChoice::Auto if uring => "io_uring",
        DriverChoice::Auto => {
            tracing::warn!(
                "io_uring is not available to this process (blocked by a seccomp profile such \
                 as Docker's default, or missing from the kernel): falling back to epoll; \
                 see docs/DEPLOY.md#containers"
            );
            "epoll"
        }
        DriverChoice::Epoll => {
            tracing::info!("running on epoll (--driver epoll)");
            "epoll"
        }
    };
    Ok((driver, uring))
}

/// Starts every core and returns once all of them are listening.
pub fn start(config: Config) -> io::Result<ServerHandle> {
    config.check().map_err(io::Error::other)?;
    let cores = config.core_count();
    let (driver, uring_available) = choose_driver(config.driver)?;
    tracing::info!(
        driver,
        cores,
        version = env!("CARGO_PKG_VERSION"),
        "starting rookery"
    );
    let mut mailboxes = Vec::with_capacity(cores);
    let mut receivers = Vec::with_capacity(cores);
    for _ in 0..cores {
        let (ctx, crx) = flume::bounded::<ToOwner>(config.channel_capacity);
        let (dtx, drx) = flume::bounded::<ToConns>(config.channel_capacity);
        mailboxes.push(Mailbox {
            commands: ctx,
            deliveries: dtx,
        });
        receivers.push((crx, drx));
    }
    let backend = if config.slip_target_url.is_some() || config.backend_url.is_some() {
        let policy = crate::backend::BackendPolicy {
            timeout: Duration::from_millis(config.backend_timeout_ms),
            retries: config.backend_retries,
            backoff: Duration::from_millis(50),
        };
        Some(crate::backend::Backend::start(
            policy,
            config.backend_max_in_flight * cores,
        )?)
    } else {
        None
    };
    let tls = match config.tls_files() {
        Ok(Some(files)) => Some(crate::tls::Tls::new(&files)),
        Ok(None) => None,
        Err(e) => Some(Err(e)),
    }
    .transpose()
    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let origins = config
        .origin_policy()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
        .over_tls(tls.is_some());
    let verifier = crate::auth::Verifier::from_config(&config)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let store = open_store(&config)?;
    let redis_link = config.redis_link().map_err(io::Error::other)?;
    if let Some(link) = &redis_link {
        let (url, addr, cluster) = (link.url.shown(), link.addr, config.redis_cluster);
        tracing::info!(%url, %addr, cluster, "rooms are shared through redis (--engine redis)");
    }
    let node = Arc::new(Node {
        redis: redis_link
            .map(|link| crate::redis::RedisNode::new(link, config.redis_cluster, cores)),
        origins,
        tls,
        store,
        verifier,
        backend,
        mailboxes,
        metrics: (0..cores).map(|_| Arc::default()).collect(),
        driver,
        uring_available,
        config,
        draining: Default::default(),
        seats: Default::default(),
    });

    let mut addr = node.config.listen;
    let mut admin_addr = None;
    // Core 0 binds first, so that with port 0 every other core binds the same real port.
    for (id, (crx, drx)) in receivers.into_iter().enumerate() {
        type Bound = io::Result<(SocketAddr, Option<SocketAddr>)>;
        let (bound_tx, bound_rx) = mpsc::channel::<Bound>();
        let node = node.clone();
        let listen = addr;
        // Core threads run for the life of the process: their handles are not kept.
        std::thread::Builder::new()
            .name(format!("rookery-core-{id}"))
            .spawn(move || {
                let body = async move {
                    // The operator listener (`--admin-listen`) is core 0's alone: its
                    // traffic is a scrape now and then.
                    let admin_listen = node.config.admin_listen.filter(|_| id == 0);
                    let listeners = bind(listen).and_then(|public| {
                        let admin = admin_listen.map(bind_admin).transpose()?;
                        Ok((public, admin))
                    });
                    let (listener, admin) = match listeners {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = bound_tx.send(Err(e));
                            return;
                        }
                    };
                    let turn_marker = match flusher::turn_marker() {
                        Ok(pair) => pair,
                        Err(e) => {
                            let _ = bound_tx.send(Err(e));
                            return;
                        }
                    };
                    let epoll = match parking::epoll_set() {
                        Ok(epoll) => epoll,
                        Err(e) => {
                            let _ = bound_tx.send(Err(e));
                            return;
                        }
                    };
                    let admin_bound = admin.as_ref().map(TcpListener::local_addr).transpose();
                    let bound = listener.local_addr().and_then(|a| Ok((a, admin_bound?)));
                    let _ = bound_tx.send(bound);
                    let shard = Shard::new(id, node);
                    if let Some(admin) = admin {
                        monoio::spawn(accept_loop(shard.clone(), admin, Listener::Admin));
                    }
                    monoio::spawn(run_engine(shard.clone(), crx));
                    monoio::spawn(run_deliveries(shard.clone(), drx));
                    monoio::spawn(flusher::run_flusher(shard.clone(), turn_marker));
                    monoio::spawn(parking::run_parking(shard.clone(), epoll, ws::resume));
                    monoio::spawn(run_ticker(shard.clone()));
                    monoio::spawn(run_engine_clock(shard.clone()));
                    accept_loop(shard, listener, Listener::Public).await;
                };
                let result = if driver == "io_uring" {
                    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                        .enable_timer()
                        .build()
                        .map(|mut rt| rt.block_on(body))
                } else {
                    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                        .enable_timer()
                        .build()
                        .map(|mut rt| rt.block_on(body))
                };
                if let Err(e) = result {
                    tracing::error!(shard = id, error = %e, "runtime failed");
                }
            })?;
        let (bound, admin) = bound_rx
            .recv()
            .map_err(|_| io::Error::other("core thread died before binding"))??;
        addr = bound;
        admin_addr = admin_addr.or(admin);
    }
    tracing::info!(%addr, "listening");
    if let Some(admin) = admin_addr {
        tracing::info!(%admin, "operator routes (/metrics, the admin API) listening");
    }
    Ok(ServerHandle {
        addr,
        driver,
        admin_addr,
        node,
    })
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let opts = ListenerOpts::new().reuse_port(true).backlog(4096);
    TcpListener::bind_with_config(addr, &opts)
}

/// The operator listener: one socket, never shared (no `SO_REUSEPORT`, so an address in use
/// is an error at start, naming the flag).
fn bind_admin(addr: SocketAddr) -> io::Result<TcpListener> {
    let opts = ListenerOpts::new().reuse_port(false).backlog(64);
    TcpListener::bind_with_config(addr, &opts)
        .map_err(|e| io::Error::new(e.kind(), format!("--admin-listen {addr}: {e}")))
}

/// Which listener a request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// `--listen`: everything, but the operator routes when `--admin-listen` is set.
    Public,
    /// `--admin-listen`: the operator routes and the health checks only.
    Admin,
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, kind: Listener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                monoio::spawn(serve_socket(shard.clone(), stream, peer, kind));
            }
            Err(e) => {
                // Out of descriptors or similar: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Reads a request (within the handshake timeout, TLS handshake included) and routes it.
async fn serve_socket(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr, kind: Listener) {
    let max_body = shard.config.max_body_size;
    let ticket = shard.handshakes.start(
        stream.as_raw_fd(),
        now_ms() + shard.config.handshake_timeout_ms,
    );
    let tls = match &shard.node.tls {
        None => None,
        Some(tls) => match tls::TlsConn::new(&tls.config) {
            Some(conn) => Some(conn),
            None => return,
        },
    };
    let mut socket = tls::Socket { stream, tls };
    let request = read_request(&mut socket, max_body).await;
    let request = if ticket.finish() {
        Err(TimedOut)
    } else {
        Ok(request)
    };
    // Boxed: while it waits for the request (a connect storm has thousands waiting), the
    // task holds only the wait's state.
    Box::pin(serve_request(shard, socket, peer, request, kind)).await;
}

/// Serves what [`read_request`] read (or answers why there is nothing to serve).
async fn serve_request(
    shard: Rc<Shard>,
    mut socket: tls::Socket,
    peer: SocketAddr,
    request: Result<ReadRequest, TimedOut>,
    kind: Listener,
) {
    let refusal = match request {
        // Boxed: the upgrade's or the handler's state is made only once the request is
        // here, not while the task waits for it, and each is only as large as it needs.
        Ok(Ok((req, leftover))) => {
            // A page from an origin that is not allowed gets nothing else (origin.rs).
            let origin = match shard.node.origins.check(&req) {
                Verdict::Refused(refusal) => {
                    access::http(peer, &req.method, &req.path, &refusal, 0);
                    socket.answer(refusal).await;
                    return;
                }
                Verdict::Allowed(origin) => Some(origin),
                Verdict::NoOrigin => None,
            };
            // With --admin-listen each listener serves its own routes only (router.rs).
            if !router::serves(&req, kind, shard.config.admin_listen.is_some()) {
                let refusal = http::json_error(404, "not_found", "no such route");
                access::http(peer, &req.method, &req.path, &refusal, 0);
                socket.answer(refusal).await;
                return;
            }
            let echo_path = shard.config.echo_path.as_deref();
            return match router::upgrade_target(&req, echo_path) {
                Some(Ok((dialect, room))) => {
                    let upgrade = ws::serve_ws(shard, socket, peer, req, leftover, dialect, room);
                    Box::pin(upgrade).await
                }
                Some(Err(refusal)) => {
                    access::http(peer, &req.method, &req.path, &refusal, 0);
                    socket.answer(refusal).await;
                }
                None => Box::pin(router::route(shard, socket, peer, req, origin)).await,
            };
        }
        Ok(Err(Some(refusal))) => refusal,
        Ok(Err(None)) => {
            // A TLS client refused (an alert may be waiting) or gone.
            socket.flush_tls().await;
            return;
        }
        Err(_) => http::json_error(408, "timeout", "request not received in time"),
    };
    socket.answer(refusal).await;
}

/// The request head did not arrive within the handshake timeout.
struct TimedOut;

type ReadRequest = Result<(http::Request, Vec<u8>), Option<Vec<u8>>>;

/// The request (head and `Content-Length` body) and any bytes after it;
/// `Err(Some(response))` for a bad request, `Err(None)` when the peer went away (or, over
/// TLS, failed the handshake).
///
/// Over TLS the same loop runs the handshake: each read's ciphertext is decrypted into the
/// request's buffer (`tls::TlsConn::take`) and what rustls answers (its handshake flights)
/// is written before the next wait, so the handshake deadline covers the TLS handshake too.
async fn read_request(socket: &mut tls::Socket, max_body: usize) -> ReadRequest {
    let mut buf = Vec::new();
    let fd = socket.stream.as_raw_fd();
    let mut head: Option<(http::Request, usize, usize)> = None;
    loop {
        if head.is_none() {
            match parse_head(&buf) {
                Ok(Some((req, len))) => {
                    let body_len = req
                        .content_length()
                        .map_err(|e| Some(http::json_error(e.status, "bad_request", e.message)))?;
                    if body_len > max_body {
                        return Err(Some(http::json_error(
                            413,
                            "payload_too_large",
                            &format!("request body over {max_body} bytes"),
                        )));
                    }
                    head = Some((req, len, body_len));
                }
                Ok(None) => {}
                Err(e) => return Err(Some(http::json_error(e.status, "bad_request", e.message))),
            }
        }
        if let Some((_, len, body_len)) = &head {
            if buf.len() >= len + body_len {
                let (mut req, len, body_len) = head.expect("checked above");
                let mut rest = buf.split_off(len);
                let leftover = rest.split_off(body_len);
                req.body = rest;
                return Ok((req, leftover));
            }
        }
        // On readiness, so that no read buffer is held while the client takes its time.
        if socket.stream.readable(false).await.is_err() {
            return Err(None);
        }
        let Some(tls) = &mut socket.tls else {
            if let recv::Received::End = recv::recv_now(fd, |bytes| buf.extend_from_slice(bytes)) {
                return Err(None);
            }
            continue;
        };
        let mut took = tls::Took::Fine;
        let mut plain_http = false;
        let received = recv::recv_now(fd, |bytes| {
            if tls.is_plain_http(bytes) {
                plain_http = true;
            } else {
                took = tls.take(bytes, |plain| buf.extend_from_slice(plain));
            }
        });
        if plain_http {
            // Plain HTTP to a TLS port: told so in plain HTTP, which it can read.
            socket.tls = None;
            return Err(Some(http::json_error(
                400,
                "tls_required",
                "this port speaks TLS: use https:// or wss://",
            )));
        }
        match (received, took) {
            (recv::Received::End, _) | (_, tls::Took::Closed | tls::Took::Failed) => {
                return Err(None)
            }
            _ => {}
        }
        // Boxed: a plain socket's waiting task keeps no room for a write it never makes.
        if !Box::pin(socket.flush_tls()).await {
            return Err(None);
        }
    }
}
