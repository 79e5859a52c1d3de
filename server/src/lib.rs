//! Rookery: a realtime room server. See `docs/ARCHITECTURE.md` for how a frame travels.
//!
//! Layers, from the wire inwards: [`shell`] (monoio: sockets, tasks, channels) →
//! [`fanout`] and [`dialect`] (codecs, no IO) → [`engine`] (rooms, no IO, no wire format,
//! time as an argument). Beside the engine, the seams it is wired to by the shell:
//! [`store`] (durable state, on a thread of its own) and [`broker`] (other nodes).

pub mod api;
pub mod auth;
pub mod backend;
pub mod broker;
pub mod config;
pub mod config_file;
pub mod dialect;
pub mod engine;
pub mod fanout;
pub mod frame;
pub mod http;
pub mod ids;
pub mod logging;
pub mod origin;
pub mod ratelimit;
pub mod redis;
pub mod sdnotify;
pub mod shell;
pub mod store;
pub mod tls;
pub mod wheel;

pub use config::Config;
pub use shell::{start, ServerHandle};
