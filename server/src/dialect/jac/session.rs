//! jac's session rules: sends to users, clients and channels (optionally only for
//! authenticated connections), `change_user` with a new token, and walkers, which a backend
//! runs (`POST <backend>/walker/<name>`).

use super::{connection_event, decode, error, error_one, walker_error, Inbound, PUBLIC_ROOT};
use crate::auth::strip_bearer;
use crate::backend::{BackendError, BackendRequest, BackendResponse};
use crate::dialect::session::{Action, Actions, Session};
use crate::dialect::Peer;
use crate::engine::{Command, Identity, RoomEvent};
use crate::ids::new_event_id;
use serde_json::{Map, Value};

/// Backend calls of walkers whose answer goes back to the caller, and of the others.
const WALKER_ANSWERED: u32 = 1;
const WALKER_SILENT: u32 = 0;

pub fn on_text(session: &Session<'_>, text: &mut [u8], out: &mut Actions) {
    let inbound = match decode(text) {
        Ok(inbound) => inbound,
        Err(errors) => return out.push(Action::Refuse(error(&errors))),
    };
    let needs_auth = session.config.jac_require_auth && session.peer.user.is_none();
    match inbound {
        Inbound::Connection => {
            out.push(Action::Send(connection_event(&session.peer, session.room())));
        }
        Inbound::ChangeUser { token } => change_user(session, token, out),
        Inbound::Walker {
            walker,
            response,
            context,
            node,
        } => match session.config.backend_url.as_deref() {
            None => out.push(Action::Refuse(walker_error(
                "walkers need a backend: this server has no --backend-url",
            ))),
            Some(base) => out.push(Action::Backend {
                request: walker_request(session, base, &walker, context, node),
                tag: if response { WALKER_ANSWERED } else { WALKER_SILENT },
                // A walker may take a while: the connection's other events go on meanwhile.
                concurrent: true,
            }),
        },
        Inbound::User { .. } | Inbound::Channel { .. } | Inbound::Client { .. } if needs_auth => {
            out.push(Action::Refuse(error_one(
                "type",
                "this server lets only authenticated connections send to users, channels and clients",
                "unauthenticated",
            )))
        }
        Inbound::User { root_ids, data } => out.push(Action::Targeted {
            users: root_ids,
            clients: Vec::new(),
            event: published(session, data),
        }),
        Inbound::Client { client_ids, data } => out.push(Action::Targeted {
            users: Vec::new(),
            clients: client_ids,
            event: published(session, data),
        }),
        Inbound::Channel { channel_ids, data } => {
            let data = Value::Object(data);
            for channel in channel_ids {
                let own = session.room() == Some(channel.as_str());
                out.push(Action::Command(Command::Publish {
                    room: channel,
                    sender: own.then_some(session.conn),
                    sender_label: session.peer.public_id.to_owned(),
                    data: data.clone(),
                    event_id: new_event_id(),
                }));
            }
        }
    }
}

/// `data` as the connection publishes it.
fn published(session: &Session<'_>, data: Map<String, Value>) -> RoomEvent {
    RoomEvent::Publish {
        data: Value::Object(data).into(),
        sender: session.peer.public_id.to_owned(),
        event_id: new_event_id(),
        requires_ack: false,
    }
}

/// Becomes the token's user (or the public user without a token, or with a refused one),
/// and tells the connection who it is now.
fn change_user(session: &Session<'_>, token: Option<String>, out: &mut Actions) {
    let (user, refusal, exp_ms) = match token.as_deref().map(strip_bearer) {
        None | Some("") => (None, None, None),
        Some(token) => match session.verifier.verify(token) {
            Err(e) if e.awaits_keys() && !session.keys_awaited => {
                return out.push(Action::AwaitKeys);
            }
            Ok(v) => (Some(v.user), None, v.exp_ms),
            Err(e) => (None, Some(e.to_string()), None),
        },
    };
    let now = Identity {
        public_id: session.peer.public_id.to_owned(),
        user,
    };
    if let Some(reason) = refusal {
        out.push(Action::Refuse(error_one("token", &reason, "invalid_token")));
    }
    let peer = Peer {
        public_id: &now.public_id,
        user: now.user.as_deref(),
        latency_ms: session.peer.latency_ms,
    };
    let event = connection_event(&peer, session.room());
    out.push(Action::SetIdentity(now));
    // The new token's expiry, or none: an anonymous connection has no rights to lose.
    out.push(Action::TokenExpiry(exp_ms));
    out.push(Action::Send(event));
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

/// The walker event as a POST to `<base>/walker/<name>`.
fn walker_request(
    session: &Session<'_>,
    base: &str,
    walker: &str,
    context: Map<String, Value>,
    node: Option<String>,
) -> BackendRequest {
    let name = percent_encoding::utf8_percent_encode(walker, PATH_SEGMENT);
    let root = session.peer.user.unwrap_or(PUBLIC_ROOT).to_owned();
    let client = session.peer.public_id.to_owned();
    let body = serde_json::json!({
        "walker": walker,
        "context": context,
        "node": node,
        "root_id": root,
        "client_id": client,
        "channel_id": session.room(),
        "authenticated": session.peer.user.is_some(),
    });
    BackendRequest {
        url: format!("{}/walker/{name}", base.trim_end_matches('/')),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-rookery-root-id".into(), root),
            ("x-rookery-client-id".into(), client),
        ],
        body: body.to_string().into_bytes(),
    }
}

/// A walker's answer: with `response`, the backend's JSON body goes back to the caller;
/// failures are reported as jac reports walker errors.
pub fn on_backend(tag: u32, answer: Result<BackendResponse, BackendError>, out: &mut Actions) {
    let frame = match answer {
        Ok(answer) if (200..300).contains(&answer.status) => {
            if tag != WALKER_ANSWERED {
                return;
            }
            match serde_json::from_slice::<Value>(&answer.body) {
                Ok(json) => crate::frame::text(json.to_string().as_bytes()),
                Err(_) => walker_error("the backend's answer is not JSON"),
            }
        }
        Ok(answer) => walker_error(&format!("the backend answered {}", answer.status)),
        Err(e) => walker_error(&e.to_string()),
    };
    out.push(Action::Send(frame));
}
