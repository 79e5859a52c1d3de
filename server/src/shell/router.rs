//! The route table: which handler serves a request head.

use super::core::{Core, ToOwner};
use super::ws::serve_pact;
use crate::http::{self, Request};
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use std::net::SocketAddr;
use std::rc::Rc;

/// Serves one request whose head has been read.
pub async fn route(
    core: Rc<Core>,
    mut stream: TcpStream,
    peer: SocketAddr,
    req: Request,
    leftover: Vec<u8>,
) {
    let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let response = match (req.method.as_str(), segments.as_slice()) {
        (_, ["websocket"]) => {
            if req.wants_upgrade() {
                return serve_pact(core, stream, peer, req, leftover).await;
            }
            http::json_error(400, "expected_websocket", "expected websocket")
        }
        ("GET", ["healthz"]) => http::json(200, &serde_json::json!({"status": "ok"})),
        ("GET", ["readyz"]) => http::json(200, &serde_json::json!({"status": "ready"})),
        ("GET", ["api", "rooms", room]) if !room.is_empty() => {
            room_details(&core, &http::decode_segment(room)).await
        }
        (_, ["healthz"] | ["readyz"] | ["api", "rooms", _]) => {
            http::json_error(405, "method_not_allowed", "method not allowed")
        }
        _ => http::json_error(404, "not_found", "no such route"),
    };
    let _ = stream.write_all(response).await;
}

async fn room_details(core: &Core, room: &str) -> Vec<u8> {
    let (reply, answer) = flume::bounded(1);
    let asked = core
        .owner_of(room)
        .commands
        .send_async(ToOwner::Details {
            room: room.to_owned(),
            reply,
        })
        .await;
    match (asked, answer.recv_async().await) {
        (Ok(()), Ok(json)) => http::response(200, "application/json", json.as_bytes()),
        _ => http::json_error(503, "unavailable", "room owner unavailable"),
    }
}
