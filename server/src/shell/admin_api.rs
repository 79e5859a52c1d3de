//! The HTTP API for backends and operators, behind the admin key: broadcasts, room config,
//! disconnects, `/api/notify`, and SLIP's control API (behind its own token).

use super::mailbox::ToConns;
use super::shard::Shard;
use crate::api;
use crate::dialect::slip;
use crate::engine::{Command, RoomEvent};
use crate::http::{self, Request};
use crate::ids::new_event_id;
use serde_json::{json, Value};

pub(super) fn admin(shard: &Shard, req: &Request) -> Result<(), Vec<u8>> {
    let Some(key) = shard.config.admin_key.as_deref() else {
        return Err(http::json_error(
            403,
            "admin_disabled",
            "the admin API is disabled: start the server with --admin-key",
        ));
    };
    match req.bearer() {
        Some(given) if crate::auth::secrets_equal(given.as_bytes(), key.as_bytes()) => Ok(()),
        _ => Err(http::json_error(
            401,
            "unauthorized",
            "missing or wrong admin key (Authorization: Bearer <key>)",
        )),
    }
}

pub(super) async fn admin_broadcast(shard: &Shard, room: &str, body: &[u8]) -> Vec<u8> {
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
    shard.command(command).await;
    http::json(200, &json!({"success": true}))
}

pub(super) fn refusal(e: api::ApiError) -> Vec<u8> {
    http::json_error(e.status, e.code, &e.message)
}

pub(super) async fn admin_config(shard: &Shard, room: &str, body: &[u8]) -> Vec<u8> {
    let Ok(config) = std::str::from_utf8(body) else {
        return http::json_error(400, "invalid_body", "the config must be UTF-8 text");
    };
    let command = Command::SetConfig {
        room: room.to_owned(),
        config: config.to_owned(),
    };
    shard.command(command).await;
    http::json(200, &json!({"success": true}))
}

pub(super) async fn disconnect(shard: &Shard, id: &str) -> Vec<u8> {
    let mut closed = disconnect_here(shard, id).await;
    if let Some(sequencer) = shard.sequencer.get() {
        closed += sequencer.disconnect_elsewhere(id).await;
    }
    if closed == 0 {
        http::json_error(404, "not_found", "no connected client has this id")
    } else {
        http::json(200, &json!({"success": true, "disconnected": closed}))
    }
}

/// Closes this node's connections with public id `id`; answers how many.
pub(super) async fn disconnect_here(shard: &Shard, id: &str) -> usize {
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
    closed
}

pub(super) async fn notify(shard: &Shard, body: &[u8]) -> Vec<u8> {
    let api::Notify {
        users,
        channels,
        clients,
        data,
    } = match api::notify_body(body) {
        Ok(body) => body,
        Err(e) => return refusal(e),
    };
    let event_id = new_event_id();
    if !users.is_empty() || !clients.is_empty() {
        let event = RoomEvent::Publish {
            data: data.clone().into(),
            sender: "server".to_owned(),
            event_id: event_id.clone(),
            requires_ack: false,
        };
        shard.send_targeted_event(users, clients, event).await;
    }
    for channel in channels {
        let command = Command::Publish {
            room: channel,
            sender: None,
            sender_label: "server".to_owned(),
            data: data.clone(),
            event_id: event_id.clone(),
        };
        shard.command(command).await;
    }
    http::json(200, &json!({"success": true, "eventID": event_id}))
}

pub(super) async fn slip_control(shard: &Shard, req: &Request) -> Vec<u8> {
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
                    event_id: new_event_id(),
                };
                shard.command(publish).await;
            }
            slip::BackendEvent::Disconnect => {
                disconnect(shard, &command.target).await;
            }
            event => {
                if let Some(sequencer) = shard.sequencer.get() {
                    // The connection may be another node's (`--engine redis`).
                    match &event {
                        slip::BackendEvent::Subscribe(channel) => {
                            sequencer.route_slip(&command.target, true, channel).await
                        }
                        slip::BackendEvent::Unsubscribe(channel) => {
                            sequencer.route_slip(&command.target, false, channel).await
                        }
                        _ => {}
                    }
                }
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

#[cfg(test)]
mod tests {
    #[test]
    fn keys_compare_exactly() {
        use crate::auth::secrets_equal;
        assert!(secrets_equal(b"abc", b"abc"));
        assert!(!secrets_equal(b"abc", b"abd"));
        assert!(!secrets_equal(b"abc", b"ab"));
        assert!(!secrets_equal(b"", b"abc"));
    }
}
