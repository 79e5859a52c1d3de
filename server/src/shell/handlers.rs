//! What each dialect does with a client's text message, on the connection's core: decode,
//! answer locally what needs no room state, and send the rest to the room owner.

use super::conn::Conn;
use super::core::{now_ms, Core};
use crate::auth::{strip_bearer, verify_pact_admin};
use crate::dialect::event::{encode_all, Event};
use crate::dialect::{jac, lambda, pact, wsdo, Dialect};
use crate::engine::{Command, Joiner};
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
    }
}

/// The refusal of a binary frame: every dialect here is JSON text.
pub fn binary_refusal(conn: &Conn) -> Bytes {
    let message = "frames are JSON text; binary frames are not accepted";
    match conn.dialect {
        Dialect::Pact => pact::error(None, codes::UNSUPPORTED_DATA, message),
        Dialect::Wsdo => wsdo_error(conn, wsdo::codes::UNSUPPORTED_DATA, message),
        Dialect::Jac => jac::error_one("body", message, "unsupported_data"),
        Dialect::Lambda => lambda::error(message),
    }
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
            let command = Command::Pact {
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
            let command = Command::Ack {
                conn: conn.id,
                room: room.clone(),
                event_id,
            };
            core.command(&room, command).await;
        }
        Err(refused) => refuse(core, conn, wsdo_error(conn, refused.code, &refused.message)),
    }
}

fn wsdo_error(conn: &Conn, code: &str, message: &str) -> Bytes {
    wsdo::whole(
        wsdo::ERROR,
        &wsdo::error_payload(code, message),
        &conn.public_id(),
        conn.latency_ms.get(),
    )
}

/// Sends jac's `connection` event: `client_id`, `root_id` (the user, or the public root),
/// `channel_id`.
pub fn jac_connection_event(conn: &Conn) {
    let root = conn
        .user_id()
        .unwrap_or_else(|| jac::PUBLIC_ROOT.to_owned());
    let channel = conn.room().unwrap_or_default();
    conn.send(
        jac::connection(&conn.public_id(), &root, &channel),
        now_ms(),
    );
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
            conn.set_user_id(user);
            core.index(conn);
            if let Some(reason) = refusal {
                refuse(core, conn, jac::error_one("token", &reason, "invalid_token"));
            }
            jac_connection_event(conn);
        }
        jac::Inbound::Walker { .. } => refuse(
            core,
            conn,
            jac::walker_error("walkers need a backend: this server has no --backend-url"),
        ),
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
            let wires = publish_wires(conn, &data);
            core.send_targeted(root_ids, Vec::new(), wires).await;
        }
        jac::Inbound::Client { client_ids, data } => {
            let data = targets_data(data);
            let wires = publish_wires(conn, &data);
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
fn publish_wires(conn: &Conn, data: &Value) -> [crate::dialect::Wire; 4] {
    let sender = conn.public_id();
    let event_id = new_event_id();
    encode_all(&Event::Publish {
        data,
        sender: &sender,
        event_id: &event_id,
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
            let sender_id = random_token(21);
            core.unindex(conn);
            conn.set_public_id(sender_id.clone());
            conn.set_room(Some(channel.clone()));
            core.index(conn);
            let joiner = Joiner {
                user_id: conn.user_id().unwrap_or_else(|| sender_id.clone()),
                id: sender_id,
                dialect: Dialect::Lambda,
                role: Role::User,
                details: Value::Null,
                token_error: None,
            };
            let join = Command::Join {
                conn: conn.id,
                room: channel.clone(),
                joiner,
            };
            core.command(&channel, join).await;
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
