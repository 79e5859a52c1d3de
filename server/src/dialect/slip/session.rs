//! SLIP's session rules: every text message goes to the backend, in order, and the events
//! of its answer are carried out (`ACCEPT`, `DISCONNECT`, `TEXT`, `SUBSCRIBE`,
//! `UNSUBSCRIBE`); the backend is told when the connection closes.

use super::CONTENT_TYPE;
use super::{
    close_body, open_body, parse_events, text_body, text_frame, BackendEvent, AUD_TO_BACKEND,
};
use crate::backend::{BackendError, BackendRequest, BackendResponse};
use crate::config::Config;
use crate::dialect::session::{Action, Actions, Session};
use crate::http::{self, Request};
use serde_json::json;
use tungstenite::protocol::frame::coding::CloseCode;

/// A backend call whose answer's events are carried out, and one whose answer is of no use.
const APPLY: u32 = 1;
const IGNORE: u32 = 0;

/// The request telling the backend about one of connection `conn_id`'s events (`None`:
/// SLIP is not configured).
pub fn backend_request(
    config: &Config,
    conn_id: &str,
    body: Vec<u8>,
    now_ms: u64,
) -> Option<BackendRequest> {
    let url = config.slip_target_url.clone()?;
    let mut headers = vec![
        ("content-type".into(), CONTENT_TYPE.into()),
        ("x-connection-id".into(), conn_id.to_owned()),
    ];
    if let Some(secret) = config.slip_jwt_secret.as_deref() {
        let token = crate::auth::slip_token(secret, AUD_TO_BACKEND, now_ms / 1000);
        headers.push(("authorization".into(), format!("Bearer {token}")));
    }
    Some(BackendRequest { url, headers, body })
}

fn post(session: &Session<'_>, body: Vec<u8>, tag: u32, out: &mut Actions) {
    let request = backend_request(session.config, session.peer.public_id, body, session.now_ms);
    if let Some(request) = request {
        // In order: the backend sees a connection's messages as they were sent.
        out.push(Action::Backend {
            request,
            tag,
            concurrent: false,
        });
    }
}

pub fn on_text(session: &Session<'_>, text: &mut [u8], out: &mut Actions) {
    let text = String::from_utf8_lossy(text);
    post(session, text_body(&text), APPLY, out);
}

/// Tells the backend the connection closed.
pub fn on_close(session: &Session<'_>, out: &mut Actions) {
    tracing::debug!(client = %session.peer.public_id, "telling the SLIP backend");
    post(session, close_body(), IGNORE, out);
}

/// Carries out the events of the backend's 2xx answer; anything else is logged (and was
/// counted by the shell), and nothing else happens.
pub fn on_backend(
    session: &Session<'_>,
    tag: u32,
    answer: Result<BackendResponse, BackendError>,
    out: &mut Actions,
) {
    if tag != APPLY {
        return;
    }
    match answer {
        Ok(answer) if (200..300).contains(&answer.status) => match parse_events(&answer.body) {
            Some(events) => apply(events, out),
            None => {
                let client = session.peer.public_id;
                tracing::warn!(%client, "invalid commands from the SLIP backend");
            }
        },
        Ok(answer) => {
            let client = session.peer.public_id;
            let status = answer.status;
            tracing::warn!(%client, status, "the SLIP backend refused an event");
        }
        Err(e) => {
            let client = session.peer.public_id;
            tracing::warn!(%client, error = %e, "the SLIP backend did not answer");
        }
    }
}

/// The backend's events (in an answer, or from the control API) as actions, in order.
pub fn apply(events: Vec<BackendEvent>, out: &mut Actions) {
    for event in events {
        match event {
            BackendEvent::Accept => {}
            BackendEvent::Disconnect => out.push(Action::Close(
                CloseCode::Normal,
                "disconnected by the backend".into(),
            )),
            BackendEvent::Text(text) => out.push(Action::Send(text_frame(&text))),
            BackendEvent::Subscribe(channel) => out.push(Action::Join(channel)),
            BackendEvent::Unsubscribe(channel) => out.push(Action::Leave(channel)),
        }
    }
}

/// The request asking the backend whether connection `conn_id` may open (the handshake's
/// headers in an `OPEN` event); `Err`: SLIP is not configured (503).
pub fn consent(
    config: &Config,
    conn_id: &str,
    req: &Request,
    now_ms: u64,
) -> Result<Option<BackendRequest>, Vec<u8>> {
    match backend_request(config, conn_id, open_body(&req.headers), now_ms) {
        Some(request) => Ok(Some(request)),
        None => Err(http::json_error(
            503,
            "unavailable",
            "SLIP is not configured (--slip-target-url)",
        )),
    }
}

/// The backend's answer to [`consent`]: `Ok` holds what follows the leading `ACCEPT`;
/// `Err` the HTTP response refusing the upgrade, with the statuses the seed's code used: 500
/// when the backend fails or answers non-2xx, 400 for invalid events or a first event that
/// is not `ACCEPT`, 406 for `ACCEPT` with `DISCONNECT`.
pub fn on_consent(answer: Result<BackendResponse, BackendError>) -> Result<Actions, Vec<u8>> {
    let answer = answer.map_err(|e| http::json_error(500, "backend_error", &e.to_string()))?;
    if !(200..300).contains(&answer.status) {
        let message = format!("the backend answered {}", answer.status);
        return Err(http::json_error(500, "backend_error", &message));
    }
    let invalid = || http::json(400, &json!({"message": "invalid commands"}));
    let mut events = parse_events(&answer.body).ok_or_else(invalid)?;
    if events.first() != Some(&BackendEvent::Accept) {
        return Err(invalid());
    }
    if events.contains(&BackendEvent::Disconnect) {
        let message = json!({"message": "the backend accepted and disconnected"});
        return Err(http::json(406, &message));
    }
    events.remove(0);
    let mut actions = Actions::new();
    apply(events, &mut actions);
    Ok(actions)
}
