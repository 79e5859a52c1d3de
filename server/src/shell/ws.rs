//! A WebSocket session in any dialect: upgrade, join, read loop, leave.
//!
//! The reader owns the socket's read half and feeds bytes to tungstenite; every text message
//! is decoded on this core by the connection's dialect (so JSON parsing spreads over all
//! cores) and sent to the room's owner as a command. A second task, the writer, drains the
//! connection's queue.

use super::conn::{write_loop, Conn};
use super::core::{now_ms, Core};
use crate::dialect::{pact, wsdo, Dialect};
use crate::engine::{Command, Joiner};
use crate::http::{self, Request};
use crate::ids::random_token;
use bytes::Bytes;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;
use rookery_protocol::pact::{codes, Role};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tungstenite::handshake::server::create_response;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Role as WsRole, WebSocketConfig, WebSocketContext};
use tungstenite::Message;

/// Bytes read from the socket per read: small, so idle connections stay cheap.
pub const READ_CHUNK: usize = 4096;

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

/// Runs a session of `dialect` in `room` on `stream`, whose request head was `req`;
/// `leftover` holds bytes the client sent after the head.
pub async fn serve_ws(
    core: Rc<Core>,
    mut stream: TcpStream,
    peer: SocketAddr,
    req: Request,
    leftover: Vec<u8>,
    dialect: Dialect,
    room: String,
) {
    let accept = match accept_upgrade(&req) {
        Ok(accept) => accept,
        Err(refusal) => {
            let _ = stream.write_all(refusal).await;
            return;
        }
    };
    let config = &core.config;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_CHUNK)
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_message_size));
    let id = core.next_conn_id();
    let now = now_ms();
    let public_id = match dialect {
        Dialect::Pact => uuid::Uuid::new_v4().to_string(),
        Dialect::Wsdo => format!("client_{}", random_token(8)),
    };
    let conn = Rc::new(Conn::new(
        id,
        room.clone(),
        dialect,
        public_id.clone(),
        stream.as_raw_fd(),
        config.max_outbound_bytes,
        core.metrics.clone(),
        WebSocketContext::new(WsRole::Server, Some(ws_config)),
        now,
    ));
    // The 101 goes first in the queue; everything else follows it.
    conn.send(Bytes::from(accept), now);
    core.register(conn.clone());
    let (mut reader, writer) = stream.into_split();
    let writer_task = monoio::spawn(write_loop(conn.clone(), writer));

    let joiner = Joiner {
        user_id: public_id.clone(),
        id: public_id,
        dialect,
        role: Role::User,
        details: serde_json::json!({"ip": peer.ip().to_string(), "core": core.id}),
    };
    core.command(
        &room,
        Command::Join {
            conn: id,
            room: room.clone(),
            joiner,
        },
    )
    .await;

    let mut pending = leftover;
    let mut chunk = Vec::with_capacity(READ_CHUNK);
    loop {
        if !pending.is_empty() {
            core.metrics.bytes_in.add(pending.len() as u64);
            conn.ws.borrow_mut().1.inbound.extend(pending.drain(..));
            if dialect == Dialect::Pact {
                // Any traffic is a sign of life; wsdo counts only PONGs (its seed's rule).
                conn.last_seen_ms.set(now_ms());
            }
            if !process_frames(&core, &conn).await {
                break;
            }
        }
        let (result, buf) = reader.read(chunk).await;
        chunk = buf;
        match result {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                pending.extend_from_slice(&chunk[..n]);
                chunk.clear();
            }
        }
    }

    core.unregister(id);
    conn.mark_dead();
    core.command(
        &room,
        Command::Leave {
            conn: id,
            room: room.clone(),
        },
    )
    .await;
    let _ = writer_task.await;
}

/// Handles every complete message now buffered. Returns false when the session is over.
async fn process_frames(core: &Rc<Core>, conn: &Rc<Conn>) -> bool {
    loop {
        let next = {
            let mut ws = conn.ws.borrow_mut();
            let (ctx, stream) = &mut *ws;
            ctx.read(stream)
        };
        match next {
            Ok(Message::Text(text)) => {
                core.metrics.messages_in.inc();
                match conn.dialect {
                    Dialect::Pact => pact_text(core, conn, text.as_bytes()).await,
                    Dialect::Wsdo => wsdo_text(core, conn, text.as_bytes()).await,
                }
            }
            Ok(Message::Binary(_)) => {
                core.metrics.messages_in.inc();
                core.metrics.error_frames.inc();
                let refusal = match conn.dialect {
                    Dialect::Pact => {
                        pact::error(None, codes::UNSUPPORTED_DATA, "pact frames are JSON text")
                    }
                    Dialect::Wsdo => wsdo_error(
                        conn,
                        wsdo::codes::UNSUPPORTED_DATA,
                        "wsdo frames are JSON text",
                    ),
                };
                conn.send(refusal, now_ms());
            }
            Ok(_) => {} // ping, pong, close: tungstenite queued what the protocol requires.
            Err(WsError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                conn.flush_protocol();
                return true;
            }
            Err(WsError::ConnectionClosed) | Err(WsError::AlreadyClosed) => {
                conn.flush_protocol();
                return false;
            }
            Err(error) => {
                let (code, reason) = close_for(&error);
                conn.close(code, &reason, now_ms());
                // The stream cannot be parsed past an error (RFC 6455 §7.1.7: fail the
                // connection): the writer flushes the close frame, then the socket ends.
                return false;
            }
        }
    }
}

/// Decodes `text` into the core's scratch buffer with `decode`.
fn decode_with<T>(core: &Core, text: &[u8], decode: impl FnOnce(&mut [u8]) -> T) -> T {
    let mut scratch = core.scratch.borrow_mut();
    scratch.clear();
    scratch.extend_from_slice(text);
    decode(&mut scratch)
}

async fn pact_text(core: &Rc<Core>, conn: &Rc<Conn>, text: &[u8]) {
    match decode_with(core, text, pact::decode) {
        Ok(pact::Inbound::Request { reference, request }) => {
            let command = Command::Pact {
                conn: conn.id,
                room: conn.room.clone(),
                reference,
                request,
            };
            core.command(&conn.room, command).await;
        }
        Ok(pact::Inbound::Close) => {
            core.close(conn, CloseCode::Normal, "closed on request", now_ms())
        }
        Ok(pact::Inbound::Pong) => {}
        Err(refused) => {
            core.metrics.error_frames.inc();
            conn.send(refused.frame(), now_ms());
        }
    }
}

async fn wsdo_text(core: &Rc<Core>, conn: &Rc<Conn>, text: &[u8]) {
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
                room: conn.room.clone(),
                presence,
            };
            core.command(&conn.room, command).await;
        }
        Ok(wsdo::Inbound::Ack(event_id)) => {
            let command = Command::Ack {
                conn: conn.id,
                room: conn.room.clone(),
                event_id,
            };
            core.command(&conn.room, command).await;
        }
        Err(refused) => {
            core.metrics.error_frames.inc();
            conn.send(wsdo_error(conn, refused.code, &refused.message), now_ms());
        }
    }
}

fn wsdo_error(conn: &Conn, code: &str, message: &str) -> Bytes {
    wsdo::whole(
        wsdo::ERROR,
        &wsdo::error_payload(code, message),
        &conn.public_id,
        conn.latency_ms.get(),
    )
}

/// The close code and reason for a protocol-level failure.
fn close_for(error: &WsError) -> (CloseCode, String) {
    match error {
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => (
            CloseCode::Size,
            format!("message of {size} bytes exceeds the limit of {max_size}"),
        ),
        WsError::Capacity(e) => (CloseCode::Size, e.to_string()),
        WsError::Utf8(_) => (CloseCode::Invalid, "invalid UTF-8 in a text message".into()),
        WsError::Protocol(ProtocolError::InvalidCloseSequence) => {
            (CloseCode::Protocol, "invalid close sequence".into())
        }
        WsError::Protocol(e) => (CloseCode::Protocol, e.to_string()),
        other => (CloseCode::Error, other.to_string()),
    }
}
