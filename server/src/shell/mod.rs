//! The monoio shell: one runtime thread per core, each accepting on the shared port, reading
//! request heads and handing sockets to their protocol. Thin by design: the rules live in
//! the engine and the dialects.

pub mod conn;
pub mod core;
pub mod memstream;
pub mod router;
pub mod ws;

use self::core::{run_deliveries, run_engine, run_ticker, Core, DeliveryBatch, Link, ToOwner};
use crate::config::{Config, DriverChoice};
use crate::http::{self, parse_head};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{ListenerOpts, TcpListener, TcpStream};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

/// A running server.
pub struct ServerHandle {
    /// The address actually bound (the real port when the config said port 0).
    pub addr: SocketAddr,
    /// The io driver the cores run on: `"io_uring"` or `"epoll"`.
    pub driver: &'static str,
    threads: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// Blocks until every core thread has exited.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Picks the driver: io_uring when asked or available, else epoll.
fn choose_driver(choice: DriverChoice) -> io::Result<&'static str> {
    let uring = monoio::utils::detect_uring();
    match choice {
        DriverChoice::Uring if !uring => Err(io::Error::other(
            "io_uring was requested but is not available on this kernel",
        )),
        DriverChoice::Uring => Ok("io_uring"),
        DriverChoice::Auto if uring => Ok("io_uring"),
        DriverChoice::Auto | DriverChoice::Epoll => Ok("epoll"),
    }
}

/// Starts every core and returns once all of them are listening.
pub fn start(config: Config) -> io::Result<ServerHandle> {
    let cores = config.core_count();
    let driver = choose_driver(config.driver)?;
    tracing::info!(driver, cores, "starting rookery");
    if driver == "epoll" {
        tracing::warn!("io_uring unavailable or disabled: running on epoll");
    }
    let config = Arc::new(config);
    let mut links = Vec::with_capacity(cores);
    let mut receivers = Vec::with_capacity(cores);
    for _ in 0..cores {
        let (ctx, crx) = flume::bounded::<ToOwner>(config.channel_capacity);
        let (dtx, drx) = flume::bounded::<DeliveryBatch>(config.channel_capacity);
        links.push(Link {
            commands: ctx,
            deliveries: dtx,
        });
        receivers.push((crx, drx));
    }
    let links = Arc::new(links);

    let mut threads = Vec::with_capacity(cores);
    let mut addr = config.listen;
    // Core 0 binds first, so that with port 0 every other core binds the same real port.
    for (id, (crx, drx)) in receivers.into_iter().enumerate() {
        let (bound_tx, bound_rx) = mpsc::channel::<io::Result<SocketAddr>>();
        let config = config.clone();
        let links = links.clone();
        let listen = addr;
        let thread = std::thread::Builder::new()
            .name(format!("rookery-core-{id}"))
            .spawn(move || {
                let body = async move {
                    let listener = match bind(listen) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = bound_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = bound_tx.send(listener.local_addr());
                    let core = Core::new(id, config, links);
                    monoio::spawn(run_engine(core.clone(), crx));
                    monoio::spawn(run_deliveries(core.clone(), drx));
                    monoio::spawn(run_ticker(core.clone()));
                    accept_loop(core, listener).await;
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
                    tracing::error!(core = id, error = %e, "runtime failed");
                }
            })?;
        let bound = bound_rx
            .recv()
            .map_err(|_| io::Error::other("core thread died before binding"))??;
        addr = bound;
        threads.push(thread);
    }
    tracing::info!(%addr, "listening");
    Ok(ServerHandle {
        addr,
        driver,
        threads,
    })
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let opts = ListenerOpts::new().reuse_port(true).backlog(4096);
    TcpListener::bind_with_config(addr, &opts)
}

async fn accept_loop(core: Rc<Core>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                monoio::spawn(serve_socket(core.clone(), stream, peer));
            }
            Err(e) => {
                // Out of descriptors or similar: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Reads a request head (within the handshake timeout) and routes it.
async fn serve_socket(core: Rc<Core>, mut stream: TcpStream, peer: SocketAddr) {
    let limit = Duration::from_millis(core.config.handshake_timeout_ms);
    let head = monoio::time::timeout(limit, read_head(&mut stream)).await;
    let refusal = match head {
        Ok(Ok((req, leftover))) => return router::route(core, stream, peer, req, leftover).await,
        Ok(Err(Some(refusal))) => refusal,
        Ok(Err(None)) => return,
        Err(_) => http::json_error(408, "timeout", "request head not received in time"),
    };
    let _ = stream.write_all(refusal).await;
}

/// The request head and any bytes after it; `Err(Some(response))` for a bad head,
/// `Err(None)` when the peer went away.
async fn read_head(stream: &mut TcpStream) -> Result<(http::Request, Vec<u8>), Option<Vec<u8>>> {
    let mut head = Vec::new();
    let mut chunk = Vec::with_capacity(2048);
    loop {
        let (result, buf) = stream.read(chunk).await;
        chunk = buf;
        match result {
            Ok(0) | Err(_) => return Err(None),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
        chunk.clear();
        match parse_head(&head) {
            Ok(Some((req, len))) => return Ok((req, head.split_off(len))),
            Ok(None) => continue,
            Err(e) => {
                return Err(Some(http::json_error(e.status, "bad_request", e.message)));
            }
        }
    }
}
