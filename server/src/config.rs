//! Configuration: flags, then `ROOKERY_*` environment variables, then the `--config` file
//! ([`crate::config_file`]), then these defaults.

pub use crate::store::StoreKind;

use clap::{Parser, ValueEnum};
use std::net::SocketAddr;

/// Which io driver each core's runtime uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DriverChoice {
    /// io_uring when the kernel allows it, else epoll.
    Auto,
    /// io_uring; fail to start when unavailable.
    Uring,
    /// epoll (monoio's legacy driver).
    Epoll,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// JSON when stderr is not a terminal, text otherwise.
    Auto,
    Text,
    Json,
}

#[derive(Parser, Debug, Clone)]
#[command(name = "rookery", version, about = "Realtime room server")]
pub struct Config {
    /// Address every core accepts on (SO_REUSEPORT). Port 0 picks a free port.
    #[arg(long, env = "ROOKERY_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Number of cores (one runtime thread each). Default: all available cores.
    #[arg(long, env = "ROOKERY_CORES")]
    pub cores: Option<usize>,

    /// io driver.
    #[arg(long, env = "ROOKERY_DRIVER", value_enum, default_value_t = DriverChoice::Auto)]
    pub driver: DriverChoice,

    /// Largest accepted WebSocket message (and frame), in bytes; larger closes with 1009.
    #[arg(long, env = "ROOKERY_MAX_MESSAGE_SIZE", default_value_t = 64 * 1024)]
    pub max_message_size: usize,

    /// Server ping interval in milliseconds.
    #[arg(long, env = "ROOKERY_PING_INTERVAL_MS", default_value_t = 25_000)]
    pub ping_interval_ms: u64,

    /// A connection silent for this many ping intervals is closed.
    #[arg(long, env = "ROOKERY_PING_MISSED", default_value_t = 2)]
    pub ping_missed: u32,

    /// Bound on a connection's unsent outbound bytes; past it the connection is closed with
    /// 1008 (slow consumer). At least `--max-message-size`.
    #[arg(long, env = "ROOKERY_MAX_OUTBOUND_BYTES", default_value_t = 1 << 20)]
    pub max_outbound_bytes: usize,

    /// Milliseconds a closing connection gets to finish the close handshake before its
    /// socket is shut down.
    #[arg(long, env = "ROOKERY_CLOSE_GRACE_MS", default_value_t = 2_000)]
    pub close_grace_ms: u64,

    /// Milliseconds a new socket gets to send a complete HTTP request head.
    #[arg(long, env = "ROOKERY_HANDSHAKE_TIMEOUT_MS", default_value_t = 10_000)]
    pub handshake_timeout_ms: u64,

    /// Capacity (messages) of each bounded cross-core channel.
    #[arg(long, env = "ROOKERY_CHANNEL_CAPACITY", default_value_t = 4096)]
    pub channel_capacity: usize,

    /// Bearer key of the admin API (`/api/rooms/:room/broadcast`, `…/config`,
    /// `DELETE /api/clients/:id`). Without it the admin API answers 403.
    #[arg(long, env = "ROOKERY_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,

    /// HS256 key of user tokens (JWT, `sub` = user id), from `Authorization: Bearer`,
    /// `?token=` or a message. Without it every token is refused and connections are
    /// anonymous.
    #[arg(long, env = "ROOKERY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// RS256/ES256 user tokens: a PEM file with the public key (RSA of 2048 bits or more,
    /// or P-256). A file that cannot be read or holds no such key stops the start.
    #[arg(long, env = "ROOKERY_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<std::path::PathBuf>,

    /// RS256/ES256 user tokens: the identity provider's JSON Web Key Set, fetched in the
    /// background, cached, refreshed every 5 minutes and when a token names an unknown
    /// `kid` (at most once per 10 s).
    #[arg(long, env = "ROOKERY_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,

    /// User tokens must have one of these `aud` values (comma-separated). Unset: any.
    #[arg(long, env = "ROOKERY_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// User tokens must have one of these `iss` values (comma-separated). Unset: any.
    #[arg(long, env = "ROOKERY_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// A connection whose token expires is told `token_expired` and closed (4001) unless it
    /// presents a fresh token within this many ms.
    #[arg(long, env = "ROOKERY_TOKEN_GRACE_MS", default_value_t = 30_000)]
    pub token_grace_ms: u64,

    /// Signing key of Pact's `authenticate` message (admin role). Without it `authenticate`
    /// is refused.
    #[arg(long, env = "ROOKERY_PACT_SIGNING_KEY", hide_env_values = true)]
    pub pact_signing_key: Option<String>,

    /// Only authenticated jac connections may send `user`/`channel`/`client` events.
    #[arg(long, env = "ROOKERY_JAC_REQUIRE_AUTH")]
    pub jac_require_auth: bool,

    /// SLIP: where the connections' events are POSTed. Without it `/slip` answers 503.
    #[arg(long, env = "ROOKERY_SLIP_TARGET_URL")]
    pub slip_target_url: Option<String>,

    /// SLIP: HS256 key of the tokens sent to the backend (audience `WebSocketEvent`) and
    /// required by `POST /slip/control` (audience `ControlEvent`).
    #[arg(long, env = "ROOKERY_SLIP_JWT_SECRET", hide_env_values = true)]
    pub slip_jwt_secret: Option<String>,

    /// jac walkers: `walker` events are POSTed to `<URL>/walker/<name>`.
    #[arg(long, env = "ROOKERY_BACKEND_URL")]
    pub backend_url: Option<String>,

    /// Deadline of one backend call (queueing, connecting, retries and the answer).
    #[arg(long, env = "ROOKERY_BACKEND_TIMEOUT_MS", default_value_t = 5_000)]
    pub backend_timeout_ms: u64,

    /// Retries of a backend call whose connection could not be made.
    #[arg(long, env = "ROOKERY_BACKEND_RETRIES", default_value_t = 2)]
    pub backend_retries: u32,

    /// Backend calls one core may have in flight; more are refused at once.
    #[arg(long, env = "ROOKERY_BACKEND_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub backend_max_in_flight: usize,

    /// Open WebSocket connections allowed in all (0: no limit); past it upgrades get 503.
    #[arg(long, env = "ROOKERY_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// Open WebSocket connections allowed from one IP address (0: no limit).
    #[arg(long, env = "ROOKERY_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: usize,

    /// Messages per second one connection may send (token bucket refill rate; 0: no limit).
    #[arg(long, env = "ROOKERY_MAX_MESSAGE_RATE", default_value_t = 100)]
    pub max_message_rate: u32,

    /// Messages one connection may send in a burst (token bucket size). Past the bucket a
    /// message is dropped with an error frame; as many drops again in a row close the
    /// connection with 1008.
    #[arg(long, env = "ROOKERY_MESSAGE_BURST", default_value_t = 200)]
    pub message_burst: u32,

    /// Subscriptions one Pact connection may hold.
    #[arg(long, env = "ROOKERY_MAX_SUBSCRIPTIONS", default_value_t = 256)]
    pub max_subscriptions: usize,

    /// Live rooms allowed in all (0: no limit); a join that would open one more is refused
    /// (close 1013, Lambda `joinFailure`).
    #[arg(long, env = "ROOKERY_MAX_ROOMS", default_value_t = 0)]
    pub max_rooms: usize,

    /// Property/presence updates (Pact `login`, wsdo `PRESENCE`) one member may make per
    /// window; more get a `rate_limited` error.
    #[arg(long, env = "ROOKERY_PRESENCE_UPDATES", default_value_t = 20)]
    pub presence_updates: u32,

    /// The presence-update window, in ms.
    #[arg(long, env = "ROOKERY_PRESENCE_WINDOW_MS", default_value_t = 10_000)]
    pub presence_window_ms: u64,

    /// On SIGTERM/SIGINT, clients are closed (1001) at random moments within this window.
    #[arg(long, env = "ROOKERY_SHUTDOWN_JITTER_MS", default_value_t = 2_000)]
    pub shutdown_jitter_ms: u64,

    /// On SIGTERM/SIGINT, the process exits at the latest this long after the signal.
    #[arg(long, env = "ROOKERY_SHUTDOWN_TIMEOUT_MS", default_value_t = 10_000)]
    pub shutdown_timeout_ms: u64,

    /// How long an emit with `require-ack` waits for every ack before answering 408.
    #[arg(long, env = "ROOKERY_ACK_TIMEOUT_MS", default_value_t = 5_000)]
    pub ack_timeout_ms: u64,

    /// Lasting events kept per room for resume, `history` and `GET /:channel/history`
    /// (0 keeps none: every resume that missed something reloads).
    #[arg(long, env = "ROOKERY_HISTORY_SIZE", default_value_t = 100)]
    pub history_size: usize,

    /// How long history events count, in ms (0: no age bound; the size bound still holds).
    #[arg(long, env = "ROOKERY_HISTORY_TTL_MS", default_value_t = 0)]
    pub history_ttl_ms: u64,

    /// Where rooms' state and history live: `disk` (in `--data-dir`, survives restarts) or
    /// `memory` (lost when the process ends).
    #[arg(long, env = "ROOKERY_STORE", value_enum, default_value_t = StoreKind::Disk)]
    pub store: StoreKind,

    /// The disk store's directory (created if missing; one process at a time).
    #[arg(long, env = "ROOKERY_DATA_DIR", default_value = "./rookery-data")]
    pub data_dir: std::path::PathBuf,

    /// When the disk store fsyncs: `interval` (every `--fsync-ms`) or `always` (every
    /// batch, before its replies are released).
    #[arg(long, env = "ROOKERY_FSYNC", value_enum, default_value_t = FsyncChoice::Interval)]
    pub fsync: FsyncChoice,

    /// With `--fsync interval`: the longest a committed batch waits for its fsync, in ms.
    #[arg(long, env = "ROOKERY_FSYNC_MS", default_value_t = 5)]
    pub fsync_ms: u64,

    /// Largest accepted HTTP request body, in bytes (larger: 413).
    #[arg(long, env = "ROOKERY_MAX_BODY_SIZE", default_value_t = 1 << 20)]
    pub max_body_size: usize,

    /// Serve `/metrics` and the admin HTTP API only on this address (a listener of its
    /// own, with `/healthz` and `/readyz`); the public listener then answers them 404.
    #[arg(long, env = "ROOKERY_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// Log format.
    #[arg(long, env = "ROOKERY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    /// Serve a WebSocket echo endpoint at this exact path (e.g. `/echo`): every message is
    /// sent back as it came, through the same connection path as a room's. For conformance
    /// runs (the Autobahn|Testsuite); off unless set.
    #[arg(long, env = "ROOKERY_ECHO_PATH")]
    pub echo_path: Option<String>,

    /// Web origins whose pages may open WebSockets and call the HTTP API from a browser,
    /// comma-separated: `scheme://host[:port]`, `*` for any, `https://*.example.com` for
    /// subdomains, `http://localhost:*` for any port. The server's own origin is always
    /// allowed. The default allows pages on this machine only (docs/SECURITY.md).
    #[arg(long, env = "ROOKERY_ALLOWED_ORIGINS", default_value = crate::origin::DEFAULT_ALLOWED_ORIGINS)]
    pub allowed_origins: String,

    /// Refuse requests that carry no `Origin` header (clients that are not browsers send
    /// none, and are let through otherwise).
    #[arg(long, env = "ROOKERY_REQUIRE_ORIGIN")]
    pub require_origin: bool,

    /// TLS: the certificate chain (PEM, end-entity first). With `--tls-key`, every listener
    /// serves `https://` and `wss://` only (TLS 1.2 and 1.3). Re-read on SIGHUP.
    #[arg(long, env = "ROOKERY_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// TLS: the private key of `--tls-cert` (PEM: PKCS#8, PKCS#1 or SEC1). Re-read on SIGHUP.
    #[arg(long, env = "ROOKERY_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<std::path::PathBuf>,

    /// Do not serve the demo page at `/demo` (chat, poll, counter, presence with the SDK
    /// embedded in the binary).
    #[arg(long, env = "ROOKERY_NO_DEMO")]
    pub no_demo: bool,

    /// How rooms are run: `alone` (this node decides its rooms' state) or `redis` (nodes
    /// share rooms through Redis at `--redis-url`, which sequences every room's events;
    /// docs/CLUSTER.md).
    #[arg(long, env = "ROOKERY_ENGINE", value_enum, default_value_t = EngineChoice::Alone)]
    pub engine: EngineChoice,

    /// The Redis server of `--engine redis`:
    /// `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`, or `rediss://…` for TLS (port 6379
    /// when left out; user and password percent-encoded).
    #[arg(long, env = "ROOKERY_REDIS_URL")]
    pub redis_url: Option<String>,

    /// With a `rediss://` `--redis-url`: the certificate authority (PEM, one or more
    /// certificates) that Redis's certificate must chain to. Default: the system's roots.
    #[arg(long, env = "ROOKERY_REDIS_CA", value_name = "PATH")]
    pub redis_ca: Option<std::path::PathBuf>,

    /// With a `rediss://` `--redis-url`: a client certificate chain (PEM) for a Redis that
    /// asks for one (`tls-auth-clients yes`). With `--redis-key`.
    #[arg(long, env = "ROOKERY_REDIS_CERT", value_name = "PATH")]
    pub redis_cert: Option<std::path::PathBuf>,

    /// The private key of `--redis-cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "ROOKERY_REDIS_KEY", value_name = "PATH")]
    pub redis_key: Option<std::path::PathBuf>,

    /// The Redis of `--redis-url` is a Redis Cluster (any of its nodes): the slot map is
    /// discovered, every command goes to the master of its key's slot and rooms' events
    /// travel on sharded pub/sub (docs/CLUSTER.md#redis-cluster).
    #[arg(long, env = "ROOKERY_REDIS_CLUSTER")]
    pub redis_cluster: bool,

    /// Log filter (`tracing` env-filter syntax: `info`, `rookery=debug`,
    /// `info,rookery::access=off`). Reloaded on SIGHUP.
    #[arg(long, env = "ROOKERY_LOG", default_value = DEFAULT_LOG, value_parser = parse_log_filter)]
    pub log: String,
}

/// The log filter by default: the storage engine narrates its housekeeping at info, and
/// warnings are what matter from it.
pub const DEFAULT_LOG: &str = "info,fjall=warn,lsm_tree=warn";

/// Accepts a log filter only if `tracing` can parse it, so a typo is an error at start.
fn parse_log_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// Whether a node runs its rooms alone or shares them with other nodes through Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineChoice {
    Alone,
    Redis,
}

/// When the disk store makes commits durable against power loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FsyncChoice {
    /// Every `--fsync-ms`.
    Interval,
    /// Every batch, before its replies are released.
    Always,
}

impl Config {
    /// Defaults, listening on `127.0.0.1:0` with the memory store: what tests and embedders
    /// start from (nothing written to the working directory).
    pub fn local() -> Config {
        Config::parse_from(["rookery", "--listen", "127.0.0.1:0", "--store", "memory"])
    }

    /// The engine's limits, for one of `cores` cores.
    pub fn engine_limits(&self, cores: usize) -> crate::engine::Limits {
        crate::engine::Limits {
            max_subscriptions: self.max_subscriptions,
            max_rooms: match self.max_rooms {
                0 => usize::MAX,
                n => n.div_ceil(cores.max(1)),
            },
            presence_updates: self.presence_updates,
            presence_window_ms: self.presence_window_ms,
            history_size: self.history_size,
            history_ttl_ms: self.history_ttl_ms,
        }
    }

    /// Checks the settings against each other, before anything starts: the error names the
    /// flags and says why.
    pub fn check(&self) -> Result<(), String> {
        if self.max_outbound_bytes < self.max_message_size {
            return Err(format!(
                "--max-outbound-bytes ({}) is less than --max-message-size ({}): a \
                 connection's send queue must hold at least one message of the largest size, \
                 or anything queued behind such a message closes it as a slow consumer; \
                 raise --max-outbound-bytes to at least {} or lower --max-message-size",
                self.max_outbound_bytes, self.max_message_size, self.max_message_size
            ));
        }
        if let Some(path) = &self.echo_path {
            check_echo_path(path)?;
        }
        self.origin_policy()?;
        crate::auth::Verifier::check_config(self)?;
        if let Some(files) = self.tls_files()? {
            crate::tls::load(&files)?;
        }
        self.redis_link()?;
        Ok(())
    }

    /// How to reach Redis with `--engine redis` (`None` when running alone): the URL
    /// parsed and resolved, the TLS settings loaded. Errors never show the password.
    pub fn redis_link(&self) -> Result<Option<crate::redis::Link>, String> {
        match (self.engine, &self.redis_url) {
            (EngineChoice::Alone, _) if self.redis_cluster => {
                Err("--redis-cluster needs --engine redis".into())
            }
            (EngineChoice::Alone, _) => Ok(None),
            (EngineChoice::Redis, None) => {
                Err("--engine redis needs --redis-url redis://HOST:PORT".into())
            }
            (EngineChoice::Redis, Some(url)) => {
                let files = crate::redis::TlsFiles {
                    ca: self.redis_ca.clone(),
                    cert: self.redis_cert.clone(),
                    key: self.redis_key.clone(),
                };
                let link = crate::redis::Link::new(url, &files)?;
                if self.redis_cluster && link.url.db.is_some_and(|db| db != 0) {
                    return Err(format!(
                        "--redis-url {}: a Redis Cluster has database 0 only (--redis-cluster)",
                        link.url.shown()
                    ));
                }
                Ok(Some(link))
            }
        }
    }

    /// `--tls-cert` and `--tls-key`: both or neither (`None`: plain `http://` and `ws://`).
    pub fn tls_files(&self) -> Result<Option<crate::tls::TlsFiles>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(crate::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            })),
            (Some(_), None) => Err("--tls-cert is set without --tls-key: TLS needs both".into()),
            (None, Some(_)) => Err("--tls-key is set without --tls-cert: TLS needs both".into()),
        }
    }

    /// `--allowed-origins` and `--require-origin`, parsed (the error names the bad rule).
    pub fn origin_policy(&self) -> Result<crate::origin::OriginPolicy, String> {
        crate::origin::OriginPolicy::parse(
            std::slice::from_ref(&self.allowed_origins),
            self.require_origin,
        )
    }

    /// The number of cores to run, at least 1.
    pub fn core_count(&self) -> usize {
        self.cores
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }
}

/// The echo endpoint's path must be a plain absolute path that names no dialect's endpoint
/// (it would shadow it).
fn check_echo_path(path: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("--echo-path {path:?}: {why}"));
    if !path.starts_with('/') || path.len() < 2 {
        return bad("must be an absolute path below / (e.g. /echo)");
    }
    if path.contains(['?', '#']) || path.chars().any(|c| c.is_ascii_control() || c == ' ') {
        return bad("must be a plain path: no query, fragment, space or control character");
    }
    let decoded: Vec<String> = path[1..]
        .split('/')
        .map(crate::http::decode_segment)
        .collect();
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let req = crate::http::Request {
        method: "GET".into(),
        path: path.to_owned(),
        query: Vec::new(),
        headers: Vec::new(),
        version: 1,
        body: Vec::new(),
    };
    if let Some((dialect, _)) = crate::dialect::Dialect::of_endpoint(&segments, &req, 0) {
        return bad(&format!("is the {dialect:?} dialect's endpoint"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_docs() {
        let c = Config::parse_from(["rookery"]);
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.ping_interval_ms, 25_000);
        assert_eq!(c.ping_missed, 2);
        assert_eq!(c.max_message_size, 65_536);
        assert_eq!(c.store, StoreKind::Disk);
        assert_eq!(c.data_dir, std::path::PathBuf::from("./rookery-data"));
        assert_eq!((c.fsync, c.fsync_ms), (FsyncChoice::Interval, 5));
        assert_eq!(
            c.echo_path, None,
            "the echo endpoint is off unless asked for"
        );
        assert_eq!(c.check(), Ok(()));
    }

    #[test]
    fn a_message_must_fit_the_outbound_bound() {
        let c = Config::parse_from(["rookery", "--max-message-size", "16777216"]);
        let error = c.check().unwrap_err();
        assert!(error.contains("--max-outbound-bytes (1048576)"), "{error}");
        assert!(error.contains("--max-message-size (16777216)"), "{error}");
        let c = Config::parse_from([
            "rookery",
            "--max-message-size",
            "16777216",
            "--max-outbound-bytes",
            "16777216",
        ]);
        assert_eq!(c.check(), Ok(()));
    }

    #[test]
    fn a_redis_cluster_needs_the_redis_engine_and_database_0() {
        let check = |args: &[&str]| {
            let c = Config::parse_from(["rookery"].iter().chain(args));
            c.check()
        };
        let alone = check(&["--redis-cluster"]).unwrap_err();
        assert!(
            alone.contains("--redis-cluster needs --engine redis"),
            "{alone}"
        );
        let cluster = ["--engine", "redis", "--redis-cluster", "--redis-url"];
        let url = |u: &'static str| [&cluster[..], &[u]].concat();
        assert_eq!(check(&url("redis://127.0.0.1:7000")), Ok(()));
        assert_eq!(check(&url("redis://127.0.0.1:7000/0")), Ok(()));
        let db = check(&url("redis://:secret@127.0.0.1:7000/2")).unwrap_err();
        assert!(db.contains("database 0 only"), "{db}");
        assert!(!db.contains("secret"), "{db}");
        let standalone = [
            "--engine",
            "redis",
            "--redis-url",
            "redis://127.0.0.1:6379/2",
        ];
        assert_eq!(check(&standalone), Ok(()));
    }

    #[test]
    fn the_echo_path_is_checked() {
        let with = |path: &str| {
            Config::parse_from(["rookery", "--echo-path", path])
                .check()
                .map_err(|e| assert!(e.contains("--echo-path"), "{e}"))
        };
        assert_eq!(with("/echo"), Ok(()));
        assert_eq!(with("/conformance/echo"), Ok(()));
        for bad in [
            "",
            "/",
            "echo",
            "/echo?x=1",
            "/e cho",
            "/websocket",
            "/slip",
            "/room/listen",
        ] {
            assert!(with(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn flags_override() {
        let c = Config::parse_from(["rookery", "--cores", "3", "--driver", "epoll"]);
        assert_eq!(c.core_count(), 3);
        assert_eq!(c.driver, DriverChoice::Epoll);
    }
}
