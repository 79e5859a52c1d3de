//! Dialects: codecs between one seed system's wire messages and the engine's commands and
//! events. No IO here; each dialect is one module.

pub mod event;
pub mod jac;
pub mod lambda;
pub mod pact;
pub mod slip;
pub mod wsdo;

use bytes::Bytes;

/// The wire protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Pact's Socket Server, and Rookery's native protocol (seed 000).
    Pact,
    /// websockets.do (seed 001).
    Wsdo,
    /// jac-cloud's websocket (seed 002).
    Jac,
    /// The Websocket Lambda Channel Server (seed 004).
    Lambda,
    /// SLIP Sockets (seed 003): a backend decides, over HTTP.
    Slip,
}

impl Dialect {
    /// Every dialect, in the order of [`Dialect::index`].
    pub const ALL: [Dialect; 5] = [
        Dialect::Pact,
        Dialect::Wsdo,
        Dialect::Jac,
        Dialect::Lambda,
        Dialect::Slip,
    ];

    /// Position in [`Dialect::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// An encoded event on its way to recipients.
#[derive(Clone, Debug)]
pub enum Wire {
    /// A complete WebSocket frame: the same bytes for every recipient.
    Frame(Bytes),
    /// A wsdo JSON object without its recipient-specific tail (`"clientID":..,"latency":..}`)
    /// and frame header. The recipient's core adds both, so the shared body is never
    /// re-serialized or copied per recipient.
    WsdoBody(Bytes),
}

impl Wire {
    /// The shared bytes, whichever kind.
    pub fn bytes(&self) -> &Bytes {
        match self {
            Wire::Frame(b) | Wire::WsdoBody(b) => b,
        }
    }
}
