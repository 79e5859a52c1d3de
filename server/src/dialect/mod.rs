//! Dialects: one seed system's protocol each, between its wire messages and the engine's
//! commands and events. No IO here: each dialect is one module implementing [`Protocol`],
//! registered in [`Dialect`] and [`PROTOCOLS`].
//!
//! A dialect says which endpoint is its own, how its connections are named, greeted and
//! kept alive, what each client message leads to ([`session::Action`]s, carried out by the
//! shell), what its members want of a room ([`Traits`]), and how a room event or a reply
//! looks in its frames. The fan-out edge (`crate::fanout`) encodes each event once per
//! dialect present among its recipients.

pub mod echo;
pub mod jac;
pub mod json;
pub mod lambda;
pub mod pact;
pub mod session;
#[cfg(test)]
mod session_tests;
pub mod slip;
#[cfg(test)]
mod tests;
pub mod wsdo;

use crate::backend::{BackendError, BackendRequest, BackendResponse};
use crate::config::Config;
use crate::engine::{CodecId, Reply, Sequenced, Traits};
use crate::frame;
use crate::http::Request;
use bytes::Bytes;
use serde::Serialize;
use session::{Actions, Session};

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
    /// The echo endpoint for conformance runs (`--echo-path`): messages come back as sent.
    Echo,
}

/// Every dialect's protocol, in the order of [`Dialect::ALL`]: the one place a dialect is
/// registered (with its variant above).
static PROTOCOLS: [&(dyn Protocol + Sync); Dialect::COUNT] = [
    &pact::Pact,
    &wsdo::Wsdo,
    &jac::Jac,
    &lambda::Lambda,
    &slip::Slip,
    &echo::Echo,
];

impl Dialect {
    /// How many dialects there are.
    pub const COUNT: usize = 6;

    /// Every dialect, in the order of [`Dialect::index`].
    pub const ALL: [Dialect; Dialect::COUNT] = [
        Dialect::Pact,
        Dialect::Wsdo,
        Dialect::Jac,
        Dialect::Lambda,
        Dialect::Slip,
        Dialect::Echo,
    ];

    /// The dialect's name in docs, logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Pact => "pact",
            Dialect::Wsdo => "wsdo",
            Dialect::Jac => "jac",
            Dialect::Lambda => "lambda",
            Dialect::Slip => "slip",
            Dialect::Echo => "echo",
        }
    }

    /// Position in [`Dialect::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The dialect's protocol.
    pub fn protocol(self) -> &'static dyn Protocol {
        PROTOCOLS[self.index()]
    }

    /// The dialect whose endpoint `segments` (the request path's, decoded) names, and the
    /// room it names (if any).
    pub fn of_endpoint(
        segments: &[&str],
        req: &Request,
        now_ms: u64,
    ) -> Option<(Dialect, Option<String>)> {
        Dialect::ALL.into_iter().find_map(|d| {
            let room = d.protocol().endpoint(segments, req, now_ms)?;
            Some((d, room))
        })
    }

    /// The tag the engine groups this dialect's members by.
    pub fn codec_id(self) -> CodecId {
        CodecId(self as u8)
    }

    /// The dialect a [`CodecId`] stands for.
    pub fn of(id: CodecId) -> Dialect {
        Dialect::ALL[usize::from(id.0)]
    }

    /// What members speaking this dialect want of a room.
    pub fn traits(self) -> Traits {
        self.protocol().traits()
    }
}

/// What a dialect needs to know of a connection to write it a frame of its own.
#[derive(Clone, Copy, Debug)]
pub struct Peer<'a> {
    /// The connection's public id (websockets.do repeats it in every frame).
    pub public_id: &'a str,
    /// The connection's authenticated user, if any.
    pub user: Option<&'a str>,
    /// The round-trip time the last ping measured (websockets.do's `latency`).
    pub latency_ms: u64,
}

/// A client message refused before any dialect decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A binary frame: every dialect here is JSON text.
    Binary,
    /// Over the connection's message rate (this message was dropped).
    RateLimited,
}

/// One dialect's protocol: its endpoint, its rules for its connections, and its encoding of
/// what the engine produces. Pure: the shell carries out what these return.
pub trait Protocol {
    /// `Some(room)` when the request path (its decoded `segments`) is this dialect's
    /// WebSocket endpoint, with the room it names, if any.
    fn endpoint(&self, segments: &[&str], req: &Request, now_ms: u64) -> Option<Option<String>>;

    /// A backend request whose answer decides whether a new connection opens (SLIP's), asked
    /// before the upgrade completes; `Err` is the HTTP response refusing the upgrade at once.
    fn consent(
        &self,
        _config: &Config,
        _public_id: &str,
        _req: &Request,
        _now_ms: u64,
    ) -> Result<Option<BackendRequest>, Vec<u8>> {
        Ok(None)
    }

    /// The backend's answer to [`Protocol::consent`]: what the open connection is to do
    /// first, or the HTTP response refusing the upgrade.
    fn on_consent(
        &self,
        _answer: Result<BackendResponse, BackendError>,
    ) -> Result<Actions, Vec<u8>> {
        Ok(Actions::new())
    }

    /// What one text message of the connection leads to. `text` is scratch space (simd-json
    /// parses in place).
    fn on_text(&self, session: &Session<'_>, text: &mut [u8], out: &mut Actions);

    /// What a backend's answer to the connection's [`Action::Backend`] call `tag` leads to.
    fn on_backend(
        &self,
        _session: &Session<'_>,
        _tag: u32,
        _answer: Result<BackendResponse, BackendError>,
        _out: &mut Actions,
    ) {
    }

    /// What the end of the connection leads to (beyond leaving its rooms).
    fn on_close(&self, _session: &Session<'_>, _out: &mut Actions) {}

    /// What this dialect's members want of a room beyond what every member gets.
    fn traits(&self) -> Traits {
        Traits::default()
    }

    /// `event` as this dialect's members receive it; `None` for events the dialect has no
    /// message for (its members are then not sent anything).
    fn event(&self, event: &Sequenced) -> Option<Wire>;

    /// A reply to one member; `None` where the dialect has no such message.
    fn reply(&self, reply: &Reply) -> Option<Wire>;

    /// The public id of a new connection (`user`: its authenticated user, if any).
    fn new_public_id(&self, user: Option<&str>, now_ms: u64) -> String;

    /// What a new connection is sent once upgraded, before it joins a room. `room` is the
    /// one it will join, `token_error` why its token was refused (when the room's welcome
    /// does not tell it).
    fn greeting(
        &self,
        _peer: &Peer<'_>,
        _room: Option<&str>,
        _token_error: Option<&str>,
    ) -> Vec<Bytes> {
        Vec::new()
    }

    /// The frame refusing a message; `None` drops it silently.
    fn refusal(&self, refusal: Refusal, peer: &Peer<'_>) -> Option<Bytes>;

    /// Whether binary messages are this dialect's to handle ([`Protocol::on_binary`]); the
    /// default: no, every dialect but the echo is JSON text, and the shell refuses them.
    fn takes_binary(&self) -> bool {
        false
    }

    /// What one binary message leads to, for a dialect that [`Protocol::takes_binary`].
    fn on_binary(&self, _session: &Session<'_>, _data: &[u8], _out: &mut Actions) {}

    /// A binary frame closes the connection (1003) instead of being refused.
    fn binary_closes(&self) -> bool {
        false
    }

    /// The heartbeat sent every ping interval. The default is a protocol ping, which every
    /// client answers.
    fn ping(&self, now_ms: u64, _peer: &Peer<'_>) -> Vec<Bytes> {
        vec![frame::ping(&now_ms.to_be_bytes())]
    }

    /// Said when the connection's token expires; it is closed with
    /// [`TOKEN_EXPIRED_CLOSE`] unless it presents a fresh token within `grace_ms`. `None`:
    /// the dialect has no error frame (SLIP), nothing is said.
    fn token_expired(&self, _peer: &Peer<'_>, _grace_ms: u64) -> Option<Bytes> {
        None
    }

    /// Said before a connection is closed for missing its pings.
    fn ping_timeout(&self, _peer: &Peer<'_>) -> Option<Bytes> {
        None
    }

    /// The frame header and the tail that make a [`Wire::Body`] this connection's frame.
    /// Only a dialect that encodes bodies needs it; the default adds no tail.
    fn finish(&self, body: &[u8], _peer: &Peer<'_>) -> (Bytes, Bytes) {
        (frame::text_header(body.len()), Bytes::new())
    }

    /// Whether any frame from the client shows it is alive; `false`: only its answers to
    /// the heartbeat do.
    fn any_frame_is_alive(&self) -> bool {
        true
    }
}

/// The close code of a connection whose token expired and was not refreshed within
/// `--token-grace-ms` (4000–4999 are the application's; 4001 as Centrifugo and others use
/// it for an expired token), with [`TOKEN_EXPIRED_REASON`].
pub const TOKEN_EXPIRED_CLOSE: u16 = 4001;
pub const TOKEN_EXPIRED_REASON: &str = "token expired";

/// The message of a `token_expired` error: what expired and what to do, `how` naming the
/// dialect's way to present a fresh token.
pub fn token_expired_message(grace_ms: u64, how: &str) -> String {
    format!(
        "the token has expired: {how} within {grace_ms} ms, or the connection is closed \
         ({TOKEN_EXPIRED_CLOSE} \"{TOKEN_EXPIRED_REASON}\")"
    )
}

/// An encoded event on its way to recipients.
#[derive(Clone, Debug)]
pub enum Wire {
    /// A complete WebSocket frame (or several): the same bytes for every recipient.
    Frame(Bytes),
    /// The shared part of a frame that differs per recipient (websockets.do's objects end
    /// with the recipient's `"clientID":..,"latency":..}`): the recipient's core asks its
    /// dialect to [`Protocol::finish`] it (a frame header and a tail, written as iovecs of
    /// their own), so the shared body is never re-serialized or copied per recipient.
    Body(Bytes),
}

impl Wire {
    /// The shared bytes, whichever kind.
    pub fn bytes(&self) -> &Bytes {
        match self {
            Wire::Frame(b) | Wire::Body(b) => b,
        }
    }
}

/// `value` as JSON in one text frame.
pub(crate) fn json_frame<T: Serialize + ?Sized>(value: &T) -> Wire {
    Wire::Frame(frame::text(
        &serde_json::to_vec(value).expect("events serialize"),
    ))
}

/// `{"type": kind, "data": data}`: how most dialects carry an admin broadcast.
#[derive(Serialize)]
pub(crate) struct Typed<'a, T: Serialize + ?Sized> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub data: &'a T,
}
