//! The route table: which handler serves a request.

use super::mailbox::now_ms;
use super::mailbox::{ToConns, ToOwner};
use super::metrics;
use super::shard::Shard;
use crate::api;
use crate::dialect::{slip, Dialect};
use crate::engine::emit::{EmitOutcome, ReplyToken};
use crate::engine::{Command, Emit, RoomEvent};
use crate::fanout::encode_all;
use crate::http::{self, Request};
use crate::ids::{random_token, random_u64};
use crate::store::HistoryQuery;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use serde_json::{json, Value};
use std::rc::Rc;
use std::time::Duration;

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

/// The WebSocket endpoint `req` upgrades to (`None`: it is no upgrade to one, and
/// [`route`] serves it). Kept apart from `route` so that an upgrade runs without
/// `route`'s state, which is sized for every HTTP handler (~3 KB).
pub fn upgrade_target(req: &Request) -> Option<WebSocketTarget> {
    if !req.wants_upgrade() {
        return None;
    }
    let owned = decoded_segments(req);
    let segments: Vec<&str> = owned.iter().map(String::as_str).collect();
    websocket_target(&segments, req)
}

/// The request path's segments, each percent-decoded.
fn decoded_segments(req: &Request) -> Vec<String> {
    req.path
        .trim_start_matches('/')
        .split('/')
        .map(http::decode_segment)
        .collect()
}

/// Serves one request whose head (and body) has been read, and which is no upgrade to a
/// WebSocket endpoint ([`upgrade_target`]).
pub async fn route(shard: Rc<Shard>, mut stream: TcpStream, req: Request) {
    let owned = decoded_segments(&req);
    let segments: Vec<&str> = owned.iter().map(String::as_str).collect();
    if !req.wants_upgrade() {
        shard.metrics.http_requests.inc();
    }
    let method = req.method.as_str();
    let response = match (method, segments.as_slice()) {
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
        ("GET", ["readyz"]) => http::json(200, &json!({"status": "ready"})),
        ("GET", ["metrics"]) => http::response(
            200,
            "text/plain; version=0.0.4",
            metrics::render(&shard.node.metrics, shard.node.driver).as_bytes(),
        ),
        ("GET", ["api", "rooms", room]) if !room.is_empty() => room_details(&shard, room).await,
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
        _ => http::json_error(404, "not_found", "no such route"),
    };
    let _ = stream.write_all(response).await;
}

/// Checks the admin bearer key: 403 when the admin API is off, 401 when the key is wrong.
fn admin(shard: &Shard, req: &Request) -> Result<(), Vec<u8>> {
    let Some(key) = shard.config.admin_key.as_deref() else {
        return Err(http::json_error(
            403,
            "admin_disabled",
            "the admin API is disabled: start the server with --admin-key",
        ));
    };
    match req.bearer() {
        Some(given) if constant_time_eq(given.as_bytes(), key.as_bytes()) => Ok(()),
        _ => Err(http::json_error(
            401,
            "unauthorized",
            "missing or wrong admin key (Authorization: Bearer <key>)",
        )),
    }
}

/// Compares without an early exit, so timing does not reveal how much of a key matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn room_details(shard: &Shard, room: &str) -> Vec<u8> {
    let (reply, answer) = flume::bounded(1);
    let request = ToOwner::Details {
        room: room.to_owned(),
        reply,
    };
    match ask(shard, room, request, answer).await {
        Some(json) => http::response(200, "application/json", json.as_bytes()),
        None => unavailable(),
    }
}

/// Sends `request` to `room`'s owner and waits for its answer.
async fn ask<T>(
    shard: &Shard,
    room: &str,
    request: ToOwner,
    answer: flume::Receiver<T>,
) -> Option<T> {
    shard
        .owner_of(room)
        .commands
        .send_async(request)
        .await
        .ok()?;
    answer.recv_async().await.ok()
}

fn unavailable() -> Vec<u8> {
    http::json_error(
        503,
        "unavailable",
        "the room owner or its stored state is unavailable",
    )
}

async fn admin_broadcast(shard: &Shard, room: &str, body: &[u8]) -> Vec<u8> {
    let body = match api::broadcast_body(body) {
        Ok(body) => body,
        Err(e) => return refusal(e),
    };
    let command = Command::Broadcast {
        room: room.to_owned(),
        kind: body.kind,
        data: body.data,
        to: body.to,
    };
    shard.command(room, command).await;
    http::json(200, &json!({"success": true}))
}

fn refusal(e: api::ApiError) -> Vec<u8> {
    http::json_error(e.status, e.code, &e.message)
}

async fn admin_config(shard: &Shard, room: &str, body: &[u8]) -> Vec<u8> {
    let Ok(config) = std::str::from_utf8(body) else {
        return http::json_error(400, "invalid_body", "the config must be UTF-8 text");
    };
    let command = Command::SetConfig {
        room: room.to_owned(),
        config: config.to_owned(),
    };
    shard.command(room, command).await;
    http::json(200, &json!({"success": true}))
}

async fn disconnect(shard: &Shard, id: &str) -> Vec<u8> {
    let mut answers = Vec::new();
    for mailbox in &shard.node.mailboxes {
        let (reply, answer) = flume::bounded(1);
        let ask = ToConns::Disconnect {
            id: id.to_owned(),
            reply,
        };
        if mailbox.deliveries.send_async(ask).await.is_ok() {
            answers.push(answer);
        }
    }
    let mut closed = 0;
    for answer in answers {
        closed += answer.recv_async().await.unwrap_or(0);
    }
    if closed == 0 {
        http::json_error(404, "not_found", "no connected client has this id")
    } else {
        http::json(200, &json!({"success": true, "disconnected": closed}))
    }
}

/// `POST /api/notify` `{"users"?, "channels"?, "clients"?, "data"}`: jac's `notify_users`,
/// `notify_channels` and `notify_clients` for a backend, reaching every core.
async fn notify(shard: &Shard, body: &[u8]) -> Vec<u8> {
    let api::Notify {
        users,
        channels,
        clients,
        data,
    } = match api::notify_body(body) {
        Ok(body) => body,
        Err(e) => return refusal(e),
    };
    let event_id = format!("evt_{}", random_token(8));
    if !users.is_empty() || !clients.is_empty() {
        let wires = encode_all(RoomEvent::Publish {
            data: data.clone(),
            sender: "server".to_owned(),
            event_id: event_id.clone(),
            requires_ack: false,
        });
        shard.send_targeted(users, clients, wires).await;
    }
    for channel in channels {
        let command = Command::Publish {
            room: channel.clone(),
            sender: None,
            sender_label: "server".to_owned(),
            data: data.clone(),
            event_id: event_id.clone(),
        };
        shard.command(&channel, command).await;
    }
    http::json(200, &json!({"success": true, "eventID": event_id}))
}

/// SLIP's control API: `[{target, event}]` with a `ControlEvent` token. Answers in the
/// seed's words: 403 `Invalid token`, 400 `invalid commands`, 200 `processed successfully`.
async fn slip_control(shard: &Shard, req: &Request) -> Vec<u8> {
    let secret = shard.config.slip_jwt_secret.as_deref();
    let valid = match (secret, req.bearer()) {
        (Some(secret), Some(token)) => {
            crate::auth::verify_slip_token(secret, slip::AUD_CONTROL, token)
        }
        _ => false,
    };
    if !valid {
        return http::json(403, &json!({"message": "Invalid token"}));
    }
    let Some(commands) = slip::parse_control(&req.body) else {
        return http::json(400, &json!({"message": "invalid commands"}));
    };
    for command in commands {
        match command.event {
            slip::BackendEvent::Text(text) => {
                let publish = Command::Publish {
                    room: command.target.clone(),
                    sender: None,
                    sender_label: "server".to_owned(),
                    data: Value::String(text),
                    event_id: format!("evt_{}", random_token(8)),
                };
                shard.command(&command.target, publish).await;
            }
            slip::BackendEvent::Disconnect => {
                disconnect(shard, &command.target).await;
            }
            event => {
                for mailbox in &shard.node.mailboxes {
                    let apply = ToConns::Slip {
                        conn: command.target.clone(),
                        events: vec![event.clone()],
                    };
                    let _ = mailbox.deliveries.send_async(apply).await;
                }
            }
        }
    }
    http::json(200, &json!({"message": "processed successfully"}))
}

async fn emit(shard: &Shard, channel: &str, req: &Request) -> Vec<u8> {
    let parsed = api::targets(req.query_param("clients")).and_then(|targets| {
        let require_ack = api::boolean(req.query_param("require-ack"))?;
        let payload = api::emit_payload(req.method == "POST", &req.query, &req.body)?;
        Ok((targets, require_ack, payload))
    });
    let (targets, require_ack, payload) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return refusal(e),
    };
    let event_id = format!("evt_{}", random_token(8));
    let emit = Emit {
        payload,
        targets,
        require_ack,
        event_id,
        seed: random_u64(),
        ack_timeout_ms: shard.config.ack_timeout_ms,
        reply: ReplyToken(0),
    };
    let (reply, answer) = flume::bounded(1);
    let request = ToOwner::Emit {
        room: channel.to_owned(),
        emit,
        reply,
    };
    // The owner always answers, at the latest when the ack deadline passes.
    let limit = Duration::from_millis(shard.config.ack_timeout_ms + 5_000);
    let outcome = monoio::time::timeout(limit, ask(shard, channel, request, answer)).await;
    match outcome {
        Ok(Some(outcome)) => emit_response(outcome),
        _ => unavailable(),
    }
}

fn emit_response(outcome: EmitOutcome) -> Vec<u8> {
    match outcome {
        EmitOutcome::Sent { event_id, clients } => http::json(
            200,
            &json!({"success": true, "eventID": event_id, "clients": clients}),
        ),
        EmitOutcome::Acked { event_id, acked } => http::json(
            200,
            &json!({"success": true, "eventID": event_id, "acked": acked}),
        ),
        EmitOutcome::AckTimeout {
            event_id,
            acked,
            missing,
        } => http::json_error_with(
            408,
            "ack_timeout",
            &format!("{} client(s) did not acknowledge in time", missing.len()),
            json!({"success": false, "eventID": event_id, "acked": acked, "missing": missing}),
        ),
        EmitOutcome::NotEnoughClients { wanted, connected } => http::json_error_with(
            400,
            "not_enough_clients",
            "Not enough clients to target.",
            json!({"success": false, "wanted": wanted, "connected": connected}),
        ),
        EmitOutcome::NoClients => http::json_error_with(
            404,
            "no_clients",
            "none of the targeted clients is connected",
            json!({"success": false}),
        ),
        EmitOutcome::Unavailable => unavailable(),
    }
}

async fn history(shard: &Shard, channel: &str, req: &Request) -> Vec<u8> {
    let limit = match req.query_param("limit").map(str::parse::<usize>) {
        None => shard.config.history_size,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return http::json_error(400, "invalid_limit", "limit must be a non-negative integer")
        }
    };
    // The store holds the history (an emit's answer waits for its commit, so it is there).
    let page = shard
        .node
        .store
        .history(channel.to_owned(), HistoryQuery::last(limit));
    match page.wait().await {
        Ok(page) => http::json(200, &json!({"history": emitted(page)})),
        Err(e) => http::json_error(503, "unavailable", &e.to_string()),
    }
}

/// The payloads of the emits in a page of history (websockets.do's `/history` lists those).
fn emitted(page: crate::store::History) -> Vec<Value> {
    page.events
        .into_iter()
        .filter_map(|e| match e.event {
            RoomEvent::Publish { data, .. } => Some(data),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
