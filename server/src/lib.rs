//! Rookery: a realtime room server. See `docs/ARCHITECTURE.md` for how a frame travels.
//!
//! Layers, from the wire inwards: [`shell`] (monoio: sockets, tasks, channels) →
//! [`dialect`] (codecs, no IO) → [`engine`] (rooms, no IO, time as an argument).

pub mod api;
pub mod auth;
pub mod backend;
pub mod config;
pub mod dialect;
pub mod engine;
pub mod frame;
pub mod http;
pub mod ids;
pub mod ratelimit;
pub mod shell;
pub mod wheel;

pub use config::Config;
pub use shell::{start, ServerHandle};
