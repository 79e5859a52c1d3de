//! What each dialect does with a client's text message, on the connection's core: decode,
//! answer locally what needs no room state, and send the rest to the room owner.

use super::conn::Conn;
use super::core::{now_ms, Core};
use crate::auth::{strip_bearer, verify_pact_admin};
use crate::backend::BackendRequest;
use crate::dialect::{jac, lambda, pact, slip, wsdo, Dialect, Refusal};
use crate::engine::{Command, Identity, Joiner, Request, RoomEvent};
use crate::fanout::encode_all;
use crate::ids::random_token;
use bytes::Bytes;
use rookery_protocol::pact::{codes, Role};
use serde_json::{Map, Value};
use std::rc::Rc;
use tungstenite::protocol::frame::coding::CloseCode;

/// Handles one text message of `conn`.
pub async fn text(core: &Rc<Core>, conn: &Rc<Conn>, text: &[u8]) {
    match conn.dialect {
        Dialect::Pact => pact_text(core, conn, text).await,
        Dialect::Wsdo => wsdo_text(core, conn, text).await,
        Dialect::Jac => jac_text(core, conn, text).await,
        Dialect::Lambda => lambda_text(core, conn, text).await,
        Dialect::Slip => slip_text(core, conn, text).await,
    }
}

/// The frame refusing a message of `conn` (none: dropped silently).
pub fn refusal(conn: &Conn, refusal: Refusal) -> Option<Bytes> {
    conn.with_peer(|peer| conn.dialect.codec().refusal(refusal, peer))
}

/// Decodes `text` in the core's scratch buffer with `decode`.
fn decode_with<T>(core: &Core, text: &[u8], decode: impl FnOnce(&mut [u8]) -> T) -> T {
    let mut scratch = core.scratch.borrow_mut();
    scratch.clear();
    scratch.extend_from_slice(text);
    decode(&mut scratch)
}

fn refuse(core: &Core, conn: &Conn, frame: Bytes) {
    core.metrics.error_frames.inc();
    conn.send(frame, now_ms());
}

fn new_event_id() -> String {
    format!("evt_{}", random_token(8))
}

async fn pact_text(core: &Rc<Core>, conn: &Rc<Conn>, text: &[u8]) {
    let Some(room) = conn.room() else { return };
    match decode_with(core, text, pact::decode) {
        Ok(pact::Inbound::Request { reference, request }) => {
            let command = Command::Request {
                conn: conn.id,
                room: room.clone(),
                reference,
                request,
            };
            core.command(&room, command).await;
        }
        Ok(pact::Inbound::Authenticate { reference, ts, key }) => {
            let checked = match core.config.pact_signing_key.as_deref() {
                None => Err("authenticate is disabled: the server has no --pact-signing-key"),
                Some(signing) => verify_pact_admin(&room, ts, &key, signing, now_ms()),
            };
            match checked {
                Ok(()) => {
                    let command = Command::SetRole {
                        conn: conn.id,
                        room: room.clone(),
                        role: Role::Admin,
                        reference,
                    };
                    core.command(&room, command).await;
                }
                Err(reason) => refuse(
                    core,
                    conn,
                    pact::error(reference.as_ref(), codes::UNAUTHORIZED, reason),
                ),
            }
        }
        Ok(pact::Inbound::Close) => {
            core.close(conn, CloseCode::Normal, "closed on request", now_ms())
        }
        Ok(pact::Inbound::Pong) => {}
        Err(refused) => refuse(core, conn, refused.frame()),
    }
}

async fn wsdo_text(core: &Rc<Core>, conn: &Rc<Conn>, text: &[u8]) {
    let Some(room) = conn.room() else { return };
    match decode_with(core, text, wsdo::decode) {
        Ok(wsdo::Inbound::Pong) => {
            let now = now_ms();
            if let Some(sent) = conn.ping_sent_ms.take() {
                conn.latency_ms.set(now.saturating_sub(sent));
            }
            conn.last_seen_ms.set(now);
        }
        Ok(wsdo::Inbound::Presence(presence)) => {
            let command = Command::Presence {
                conn: conn.id,
                room: room.clone(),
                presence,
            };
            core.command(&room, command).await;
        }
        Ok(wsdo::Inbound::Ack(event_id)) => {
            let command = Command::Request {
                conn: conn.id,
                room: room.clone(),
                reference: None,
                request: Request::Ack(event_id),
            };
            core.command(&room, command).await;
        }
        Err(refused) => {
            let frame = conn.with_peer(|p| wsdo::error_frame(p, refused.code, &refused.message));
            refuse(core, conn, frame)
        }
    }
}

/// Sends jac's `connection` event: `client_id`, `root_id` (the user, or the public root),
/// `channel_id`.
fn jac_connection_event(conn: &Conn) {
    let channel = conn.room();
    let frame = conn.with_peer(|peer| jac::connection_event(peer, channel.as_deref()));
    conn.send(frame, now_ms());
}

async fn jac_text(core: &Rc<Core>, conn: &Rc<Conn>, text: &[u8]) {
    let inbound = match decode_with(core, text, jac::decode) {
        Ok(inbound) => inbound,
        Err(errors) => return refuse(core, conn, jac::error(&errors)),
    };
    let targets_data = |data: Map<String, Value>| Value::Object(data);
    let needs_auth = core.config.jac_require_auth && conn.user_id().is_none();
    match inbound {
        jac::Inbound::Connection => jac_connection_event(conn),
        jac::Inbound::ChangeUser { token } => {
            let (user, refusal) = match token.as_deref().map(strip_bearer) {
                None | Some("") => (None, None),
                Some(token) => match core.shared.verifier.verify(token) {
                    Ok(user) => (Some(user), None),
                    Err(e) => (None, Some(e.to_string())),
                },
            };
            core.unindex(conn);
            conn.set_identity(Identity {
                public_id: conn.public_id(),
                user,
            });
            core.index(conn);
            if let Some(reason) = refusal {
                refuse(core, conn, jac::error_one("token", &reason, "invalid_token"));
            }
            jac_connection_event(conn);
        }
        jac::Inbound::Walker {
            walker,
            response,
            context,
            node,
        } => match core.config.backend_url.clone() {
            None => refuse(
                core,
                conn,
                jac::walker_error("walkers need a backend: this server has no --backend-url"),
            ),
            Some(base) => {
                // A walker may take a while: its answer comes when it comes, and the
                // connection's other events go on meanwhile.
                let (core, conn) = (core.clone(), conn.clone());
                monoio::spawn(async move {
                    run_walker(&core, &conn, &base, walker, response, context, node).await;
                });
            }
        },
        jac::Inbound::User { .. } | jac::Inbound::Channel { .. } | jac::Inbound::Client { .. }
            if needs_auth =>
        {
            refuse(
                core,
                conn,
                jac::error_one(
                    "type",
                    "this server lets only authenticated connections send to users, channels and clients",
                    "unauthenticated",
                ),
            )
        }
        jac::Inbound::User { root_ids, data } => {
            let data = targets_data(data);
            let wires = publish_wires(conn, data);
            core.send_targeted(root_ids, Vec::new(), wires).await;
        }
        jac::Inbound::Client { client_ids, data } => {
            let data = targets_data(data);
            let wires = publish_wires(conn, data);
            core.send_targeted(Vec::new(), client_ids, wires).await;
        }
        jac::Inbound::Channel { channel_ids, data } => {
            let data = targets_data(data);
            let own = conn.room();
            for channel in channel_ids {
                let sender = (own.as_deref() == Some(channel.as_str())).then_some(conn.id);
                let command = Command::Publish {
                    room: channel.clone(),
                    sender,
                    sender_label: conn.public_id(),
                    data: data.clone(),
                    event_id: new_event_id(),
                };
                core.command(&channel, command).await;
            }
        }
    }
}

/// `data` published by `conn`, encoded for each dialect.
fn publish_wires(conn: &Conn, data: Value) -> [Option<crate::dialect::Wire>; Dialect::COUNT] {
    encode_all(RoomEvent::Publish {
        data,
        sender: conn.public_id(),
        event_id: new_event_id(),
        requires_ack: false,
    })
}

async fn lambda_text(core: &Rc<Core>, conn: &Rc<Conn>, text: &[u8]) {
    let inbound = match decode_with(core, text, lambda::decode) {
        Ok(inbound) => inbound,
        Err(reason) => return refuse(core, conn, lambda::error(&reason)),
    };
    let now = now_ms();
    match inbound {
        lambda::Inbound::Ping(data) => {
            conn.send(lambda::pong(data), now);
        }
        lambda::Inbound::BadJoin => {
            conn.send(lambda::join_failure(), now);
        }
        lambda::Inbound::Join(channel) => {
            // A join replaces the channel and issues a fresh senderId.
            if let Some(old) = conn.room() {
                let leave = Command::Leave {
                    conn: conn.id,
                    room: old.clone(),
                };
                core.command(&old, leave).await;
            }
            core.unindex(conn);
            conn.set_identity(Identity {
                public_id: conn.dialect.codec().new_public_id(None, now),
                user: conn.user_id(),
            });
            conn.set_room(Some(channel.clone()));
            core.index(conn);
            join_room(core, conn, &channel).await;
        }
        lambda::Inbound::Publish(data) => match conn.room() {
            None => {
                conn.send(
                    lambda::publish_failure(
                        "not in a channel: send {\"type\":\"join\",\"channelId\":…} first",
                    ),
                    now,
                );
            }
            Some(room) => {
                let command = Command::Publish {
                    room: room.clone(),
                    sender: Some(conn.id),
                    sender_label: conn.public_id(),
                    data,
                    event_id: new_event_id(),
                };
                core.command(&room, command).await;
            }
        },
    }
}

/// What must be escaped in a URL path segment (RFC 3986: everything but unreserved
/// characters and sub-delimiters).
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

/// POSTs a walker event to `<base>/walker/<name>`; with `response`, the backend's JSON body
/// goes back to the caller. Failures are reported as jac reports walker errors.
async fn run_walker(
    core: &Rc<Core>,
    conn: &Rc<Conn>,
    base: &str,
    walker: String,
    response: bool,
    context: Map<String, Value>,
    node: Option<String>,
) {
    let name = percent_encoding::utf8_percent_encode(&walker, PATH_SEGMENT);
    let root = conn
        .user_id()
        .unwrap_or_else(|| jac::PUBLIC_ROOT.to_owned());
    let body = serde_json::json!({
        "walker": walker,
        "context": context,
        "node": node,
        "root_id": root,
        "client_id": conn.public_id(),
        "channel_id": conn.room(),
        "authenticated": conn.user_id().is_some(),
    });
    let request = crate::backend::BackendRequest {
        url: format!("{}/walker/{name}", base.trim_end_matches('/')),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-rookery-root-id".into(), root),
            ("x-rookery-client-id".into(), conn.public_id()),
        ],
        body: body.to_string().into_bytes(),
    };
    let outcome = core.backend(request).await;
    let frame = match outcome {
        Ok(answer) if (200..300).contains(&answer.status) => {
            if !response {
                return;
            }
            match serde_json::from_slice::<Value>(&answer.body) {
                Ok(json) => crate::frame::text(json.to_string().as_bytes()),
                Err(_) => jac::walker_error("the backend's answer is not JSON"),
            }
        }
        Ok(answer) => jac::walker_error(&format!("the backend answered {}", answer.status)),
        Err(e) => jac::walker_error(&e.to_string()),
    };
    conn.send(frame, now_ms());
}

/// The request telling the SLIP backend about one of `conn_id`'s events.
pub fn slip_request(core: &Core, conn_id: &str, body: Vec<u8>) -> Option<BackendRequest> {
    let url = core.config.slip_target_url.clone()?;
    let mut headers = vec![
        ("content-type".into(), slip::CONTENT_TYPE.into()),
        ("x-connection-id".into(), conn_id.to_owned()),
    ];
    if let Some(secret) = core.config.slip_jwt_secret.as_deref() {
        let token = crate::auth::slip_token(secret, slip::AUD_TO_BACKEND, now_ms() / 1000);
        headers.push(("authorization".into(), format!("Bearer {token}")));
    }
    Some(BackendRequest { url, headers, body })
}

/// Sends a SLIP event to the backend and returns the events of its 2xx answer; `None` when
/// there is no usable answer (logged and counted, nothing else happens).
async fn slip_post(core: &Core, conn: &Conn, body: Vec<u8>) -> Option<Vec<slip::BackendEvent>> {
    let request = slip_request(core, &conn.public_id(), body)?;
    match core.backend(request).await {
        Ok(answer) if (200..300).contains(&answer.status) => {
            let events = slip::parse_events(&answer.body);
            if events.is_none() {
                tracing::warn!(conn = %conn.public_id(), "invalid commands from the SLIP backend");
            }
            events
        }
        Ok(answer) => {
            tracing::warn!(status = answer.status, "the SLIP backend refused an event");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "the SLIP backend did not answer");
            None
        }
    }
}

async fn slip_text(core: &Rc<Core>, conn: &Rc<Conn>, text: &[u8]) {
    let text = String::from_utf8_lossy(text);
    if let Some(events) = slip_post(core, conn, slip::text_body(&text)).await {
        slip_apply(core, conn, events).await;
    }
}

/// Tells the backend a SLIP connection closed (its answer is of no use any more).
pub async fn slip_closed(core: &Core, conn: &Conn) {
    tracing::debug!(conn = %conn.public_id(), "telling the SLIP backend");
    let _ = slip_post(core, conn, slip::close_body()).await;
}

/// Joins `conn` to `room` later in its life (Lambda `join`, SLIP `SUBSCRIBE`), as who it is
/// now: its public id, and its user when authenticated.
async fn join_room(core: &Core, conn: &Conn, room: &str) {
    let joiner = Joiner {
        identity: conn.identity(),
        codec: conn.dialect.codec_id(),
        traits: conn.dialect.traits(),
        role: Role::User,
        details: Value::Null,
        token_error: None,
    };
    let join = Command::Join {
        conn: conn.id,
        room: room.to_owned(),
        joiner,
    };
    core.command(room, join).await;
}

/// Carries out backend events for `conn`, in order.
pub async fn slip_apply(core: &Rc<Core>, conn: &Rc<Conn>, events: Vec<slip::BackendEvent>) {
    for event in events {
        let now = now_ms();
        match event {
            slip::BackendEvent::Accept => {}
            slip::BackendEvent::Disconnect => {
                core.close(conn, CloseCode::Normal, "disconnected by the backend", now)
            }
            slip::BackendEvent::Text(text) => {
                conn.send(slip::text_frame(&text), now);
            }
            slip::BackendEvent::Subscribe(channel) => {
                if conn.state() == super::conn::State::Open && conn.add_room(&channel) {
                    join_room(core, conn, &channel).await;
                }
            }
            slip::BackendEvent::Unsubscribe(channel) => {
                if conn.remove_room(&channel) {
                    let leave = Command::Leave {
                        conn: conn.id,
                        room: channel.clone(),
                    };
                    core.command(&channel, leave).await;
                }
            }
        }
    }
}
