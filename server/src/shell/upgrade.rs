//! Opening a WebSocket session: the upgrade (tungstenite's handshake response), admission
//! under the connection limits, the user's token, the dialect's public id and greeting,
//! SLIP's backend consent, registering the connection and joining its room.

use super::access::ws_refused;
use super::conn::Conn;
use super::mailbox::now_ms;
use super::session;
use super::shard::Shard;
use super::ws::Session;
use crate::auth::Verified;
use crate::dialect::Dialect;
use crate::engine::member::ConnectionDetails;
use crate::engine::Identity;
use crate::http::{self, Request};
use bytes::Bytes;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use tungstenite::handshake::server::create_response;

/// The 101 response for `req`, or the 400 JSON error when it is no valid upgrade.
fn accept_upgrade(req: &Request) -> Result<Vec<u8>, Vec<u8>> {
    let mut builder = tungstenite::http::Request::builder()
        .method(req.method.as_str())
        .uri(req.path.as_str())
        .version(if req.version == 0 {
            tungstenite::http::Version::HTTP_10
        } else {
            tungstenite::http::Version::HTTP_11
        });
    for (name, value) in &req.headers {
        builder = builder.header(name.as_str(), value.as_slice());
    }
    let request = builder
        .body(())
        .map_err(|_| http::json_error(400, "bad_request", "malformed upgrade request"))?;
    let response = create_response(&request)
        .map_err(|e| http::json_error(400, "bad_upgrade", &e.to_string()))?;
    let mut out = Vec::with_capacity(160);
    tungstenite::handshake::server::write_response(&mut out, &response)
        .map_err(|_| http::json_error(400, "bad_upgrade", "cannot build the response"))?;
    Ok(out)
}

/// The user of the request's token (`Authorization: Bearer` or `?token=`) and its expiry:
/// `Ok(None)` when there is no token, `Err(reason)` when there is one and it is refused. A
/// token naming a key the identity provider's cached set lacks waits for a refresh of it.
async fn identify(shard: &Shard, req: &Request) -> Result<Option<Verified>, String> {
    let token = req
        .bearer()
        .or_else(|| req.query_param("token").filter(|t| !t.is_empty()));
    match token {
        None => Ok(None),
        Some(token) => shard
            .node
            .verifier
            .verify_waiting(token)
            .await
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

/// Upgrades the connection, identifies the user, registers the connection and joins its
/// room. `None` when the upgrade is refused (the refusal has been written).
pub(super) async fn open(
    shard: Rc<Shard>,
    mut socket: super::tls::Socket,
    peer: SocketAddr,
    req: Request,
    dialect: Dialect,
    room: Option<String>,
) -> Option<Session> {
    let refused = |response: &[u8]| ws_refused(peer, dialect, &req.path, response);
    let accept = match accept_upgrade(&req) {
        Ok(accept) => accept,
        Err(refusal) => {
            refused(&refusal);
            socket.answer(refusal).await;
            return None;
        }
    };
    let admission = match super::admission::admit(&shard.node, peer.ip()) {
        Ok(admission) => admission,
        Err(refusal) => {
            let response = http::json_error(503, refusal.code, &refusal.message);
            refused(&response);
            socket.answer(response).await;
            return None;
        }
    };
    let config = &shard.config;
    let id = shard.next_conn_id();
    let now = now_ms();
    let (verified, token_error) = match identify(&shard, &req).await {
        Ok(verified) => (verified, None),
        Err(reason) => (None, Some(reason)),
    };
    let (user, token_exp_ms) = match verified {
        Some(v) => (Some(v.user), v.exp_ms),
        None => (None, None),
    };
    let protocol = dialect.protocol();
    let public_id = protocol.new_public_id(user.as_deref(), now);
    // A dialect may need a backend's consent before the handshake ends (SLIP's does).
    let consented = match protocol.consent(config, &public_id, &req, now) {
        Ok(None) => crate::dialect::session::Actions::new(),
        Ok(Some(request)) => {
            // Boxed: the backend call's state is needed by such upgrades only.
            let answer = Box::pin(shard.backend(request)).await;
            match protocol.on_consent(answer) {
                Ok(actions) => actions,
                Err(refusal) => {
                    refused(&refusal);
                    socket.answer(refusal).await;
                    return None;
                }
            }
        }
        Err(refusal) => {
            refused(&refusal);
            socket.answer(refusal).await;
            return None;
        }
    };
    drop(req);
    let identity = Arc::new(Identity { public_id, user });
    let super::tls::Socket { stream, tls } = socket;
    let conn = Rc::new(Conn::new(
        id,
        room.clone(),
        dialect,
        identity.clone(),
        stream.as_raw_fd(),
        tls,
        shard.conn_shared.clone(),
        now,
    ));
    conn.rate.set(crate::ratelimit::TokenBucket::new(
        config.max_message_rate,
        config.message_burst,
        now,
    ));
    // The 101 goes first in the queue; everything else follows it.
    conn.send(Bytes::from(accept), now);
    shard.register(conn.clone());
    if token_exp_ms.is_some() {
        shard.watch_token(conn.id, token_exp_ms);
    }
    super::access::ws_open(&conn, peer, room.as_deref());

    // The dialect's greeting. A refused token is told either here or in the room's
    // welcome (`Reply::TokenRefused`), as each dialect chooses.
    let refused = token_error.as_deref();
    let greeting = conn.with_peer(|peer| protocol.greeting(peer, room.as_deref(), refused));
    for frame in greeting {
        conn.send(frame, now);
    }
    if !consented.is_empty() {
        Box::pin(session::carry_out(&shard, &conn, consented)).await;
    }
    if let Some(room) = &room {
        let details = ConnectionDetails {
            ip: peer.ip(),
            core: u16::try_from(shard.id).unwrap_or(u16::MAX),
        };
        session::join_room_with(&shard, &conn, room, Some(details), token_error).await;
    }
    Some(Session {
        shard,
        conn,
        stream,
        _admission: admission,
    })
}
