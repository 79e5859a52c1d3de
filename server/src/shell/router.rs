//! The route table: which handler serves a request (the WebSocket endpoints are the
//! dialects' own; the HTTP API is in `room_api.rs` and `admin_api.rs`).

use super::admin_api::{admin, admin_broadcast, admin_config, disconnect, notify, slip_control};
use super::mailbox::now_ms;
use super::metrics;
use super::room_api::{emit, history, room_details, room_history};
use super::shard::Shard;
use crate::dialect::Dialect;
use crate::http::{self, Request};
use serde_json::json;
use std::net::SocketAddr;
use std::rc::Rc;

/// A WebSocket endpoint's dialect and room, or the 400 response refusing the request.
type WebSocketTarget = Result<(Dialect, Option<String>), Vec<u8>>;

/// The target of a WebSocket endpoint (`None`: the path is not one): each dialect knows
/// its own.
fn websocket_target(segments: &[&str], req: &Request) -> Option<WebSocketTarget> {
    let (dialect, room) = Dialect::of_endpoint(segments, req, now_ms())?;
    if room.as_deref() == Some("") {
        return Some(Err(http::json_error(
            400,
            "bad_request",
            "the channel name is empty",
        )));
    }
    Some(Ok((dialect, room)))
}

/// Whether `req` is for the echo endpoint (`--echo-path`, when set): the exact path, any
/// query.
fn is_echo(req: &Request, echo_path: Option<&str>) -> bool {
    echo_path == Some(req.path.as_str())
}

/// The WebSocket endpoint `req` upgrades to (`None`: it is no upgrade to one, and
/// [`route`] serves it). Kept apart from `route` so that an upgrade runs without
/// `route`'s state, which is sized for every HTTP handler (~3 KB).
pub fn upgrade_target(req: &Request, echo_path: Option<&str>) -> Option<WebSocketTarget> {
    if !req.wants_upgrade() {
        return None;
    }
    if is_echo(req, echo_path) {
        return Some(Ok((Dialect::Echo, None)));
    }
    let owned = decoded_segments(req);
    let segments: Vec<&str> = owned.iter().map(String::as_str).collect();
    websocket_target(&segments, req)
}

/// Whether `req` is for an operator route: one for the people who run the server, not for
/// its clients — `/metrics` and the admin HTTP API (`/api/rooms/:room/broadcast`,
/// `/api/rooms/:room/config`, `/api/notify`, `/api/clients/:id`), whatever the method, and
/// the web console ([`is_console_path`]: its page, assets and live feed). With
/// `--admin-listen` these are served on that listener only, and the public one answers them
/// 404 ([`serves`]). The one place this is decided: a new operator-only route is added
/// here, and moves to the operator listener with the others.
pub fn is_operator_route(req: &Request) -> bool {
    if is_console_path(&req.path) {
        return true;
    }
    let owned = decoded_segments(req);
    let segments: Vec<&str> = owned.iter().map(String::as_str).collect();
    matches!(
        segments.as_slice(),
        ["metrics"]
            | ["api", "rooms", _, "broadcast" | "config"]
            | ["api", "notify"]
            | ["api", "clients", _]
    )
}

/// Whether the listener `kind` serves `req` (else: 404). Without `--admin-listen`
/// (`separate` false) the one listener serves everything. With it, the public listener
/// serves everything but the [operator routes](is_operator_route), and the operator
/// listener those and the health checks (`/healthz`, `/readyz`), and nothing else — no
/// WebSocket endpoint, no client API.
pub fn serves(req: &Request, kind: super::Listener, separate: bool) -> bool {
    if !separate {
        return true;
    }
    match kind {
        super::Listener::Public => !is_operator_route(req),
        super::Listener::Admin => {
            is_operator_route(req) || matches!(req.path.as_str(), "/healthz" | "/readyz")
        }
    }
}

/// The request path's segments, each percent-decoded.
fn decoded_segments(req: &Request) -> Vec<String> {
    req.path
        .trim_start_matches('/')
        .split('/')
        .map(http::decode_segment)
        .collect()
}

/// Whether `path` is one of the web console's (`/console`, its files and its API): the one
/// place that decides it, so that the console can be served on another listener (or
/// refused on this one) by asking here. Three-segment paths under `/console/assets/` and
/// `/console/api/` never collide with websockets.do's `/:channel/emit|history|listen`.
pub fn is_console_path(path: &str) -> bool {
    path == "/console"
        || path == "/console/"
        || path.starts_with("/console/assets/")
        || path.starts_with("/console/api/")
}

/// Serves one request whose head (and body) has been read, and which is no upgrade to a
/// WebSocket endpoint ([`upgrade_target`]). `origin`: the allowed web page it came from,
/// whose browser gets the CORS headers that let it read the answer.
pub async fn route(
    shard: Rc<Shard>,
    mut socket: super::tls::Socket,
    peer: SocketAddr,
    req: Request,
    origin: Option<String>,
) {
    let started = std::time::Instant::now();
    let owned = decoded_segments(&req);
    let segments: Vec<&str> = owned.iter().map(String::as_str).collect();
    if !req.wants_upgrade() {
        shard.metrics.http_requests.inc();
    }
    if is_console_path(&req.path) {
        return super::console::serve(shard, socket, peer, req).await;
    }
    let method = req.method.as_str();
    let response = match (method, segments.as_slice()) {
        // A CORS preflight from an allowed page (others were refused before routing).
        ("OPTIONS", _) if origin.is_some() => {
            crate::origin::preflight(origin.as_deref().unwrap_or(""))
        }
        _ if super::assets::is_public_path(&req.path) => super::assets::public(&shard.config, &req),
        (_, segments) if Dialect::of_endpoint(segments, &req, now_ms()).is_some() => {
            http::json_error(400, "expected_websocket", "expected websocket")
        }
        ("POST", ["slip", "control"]) => slip_control(&shard, &req).await,
        ("GET", ["healthz"]) => http::json(200, &json!({"status": "ok"})),
        ("GET", ["readyz"])
            if shard
                .node
                .draining
                .load(std::sync::atomic::Ordering::Relaxed) =>
        {
            http::json(503, &json!({"status": "draining"}))
        }
        ("GET", ["readyz"]) if !shard.node.store.healthy() => {
            http::json(503, &json!({"status": "store unavailable"}))
        }
        ("GET", ["readyz"]) if !crate::redis::all_live(shard.node.redis.as_ref(), now_ms()) => {
            http::json(503, &json!({"status": "redis unavailable"}))
        }
        ("GET", ["readyz"]) => http::json(200, &json!({"status": "ready"})),
        ("GET", ["metrics"]) => {
            let store = metrics::StoreHealth {
                failures: shard.node.store.failures(),
                healthy: shard.node.store.healthy(),
            };
            let runtime = metrics::Runtime {
                driver: shard.node.driver,
                uring_available: shard.node.uring_available,
            };
            let mut text = metrics::render(&shard.node.metrics, runtime, store);
            text.push_str(&crate::redis::metrics_text(
                shard.node.redis.as_ref(),
                now_ms(),
            ));
            http::response(200, "text/plain; version=0.0.4", text.as_bytes())
        }
        ("GET", ["api", "rooms", room]) if !room.is_empty() => room_details(&shard, room).await,
        ("GET", ["api", "rooms", room, "history"]) if !room.is_empty() => {
            room_history(&shard, room, &req).await
        }
        ("POST", ["api", "rooms", room, "broadcast"]) if !room.is_empty() => {
            match admin(&shard, &req) {
                Err(refusal) => refusal,
                Ok(()) => admin_broadcast(&shard, room, &req.body).await,
            }
        }
        ("PUT", ["api", "rooms", room, "config"]) if !room.is_empty() => {
            match admin(&shard, &req) {
                Err(refusal) => refusal,
                Ok(()) => admin_config(&shard, room, &req.body).await,
            }
        }
        ("POST", ["api", "notify"]) => match admin(&shard, &req) {
            Err(refusal) => refusal,
            Ok(()) => notify(&shard, &req.body).await,
        },
        ("DELETE", ["api", "clients", id]) if !id.is_empty() => match admin(&shard, &req) {
            Err(refusal) => refusal,
            Ok(()) => disconnect(&shard, id).await,
        },
        ("GET" | "POST", [channel, "emit"]) if !channel.is_empty() => {
            emit(&shard, channel, &req).await
        }
        ("GET", [channel, "history"]) if !channel.is_empty() => {
            history(&shard, channel, &req).await
        }
        (
            _,
            ["healthz"]
            | ["readyz"]
            | ["metrics"]
            | ["api", "rooms", _]
            | ["api", "rooms", _, _]
            | ["api", "clients", _]
            | [_, "emit"]
            | [_, "history"],
        ) => http::json_error(405, "method_not_allowed", "method not allowed"),
        _ if is_echo(&req, shard.config.echo_path.as_deref()) => {
            http::json_error(400, "expected_websocket", "expected websocket")
        }
        _ => http::json_error(404, "not_found", "no such route"),
    };
    let response = match &origin {
        Some(origin) if method != "OPTIONS" => crate::origin::with_cors(response, origin),
        _ => response,
    };
    let micros = started.elapsed().as_micros();
    super::access::http(peer, method, &req.path, &response, micros);
    socket.answer(response).await;
}
