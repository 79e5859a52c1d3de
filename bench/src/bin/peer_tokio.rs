//! The baseline peer: what a Rust user writes first. A tokio multi-thread runtime, a task
//! per connection, one `tokio::sync::broadcast` channel per room; every text message a
//! client sends is relayed to every connection in its room (`/room/<name>`), the sender
//! included. A small read buffer, for fairness on memory.
//!
//! `peer_tokio --listen 127.0.0.1:0` prints `listening on ADDR` once ready.

use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

type Rooms = Arc<Mutex<HashMap<String, broadcast::Sender<Utf8Bytes>>>>;

#[tokio::main]
async fn main() {
    let listen = std::env::args()
        .skip_while(|a| a != "--listen")
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&listen).await.expect("bind");
    println!("listening on {}", listener.local_addr().unwrap());
    let rooms: Rooms = Arc::default();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let rooms = rooms.clone();
        tokio::spawn(async move {
            let mut path = String::new();
            let config = WebSocketConfig::default().read_buffer_size(4096);
            // The error type is tungstenite's (`Callback`), not ours to shrink.
            #[allow(clippy::result_large_err)]
            let callback = |req: &Request, resp: Response| {
                path = req.uri().path().to_owned();
                Ok(resp)
            };
            let Ok(ws) =
                tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config))
                    .await
            else {
                return;
            };
            let room = path.trim_start_matches("/room/").to_owned();
            let tx = rooms
                .lock()
                .unwrap()
                .entry(room)
                .or_insert_with(|| broadcast::channel(1024).0)
                .clone();
            let mut rx = tx.subscribe();
            let (mut sink, mut stream) = ws.split();
            let forward = tokio::spawn(async move {
                loop {
                    match rx.recv().await {
                        Ok(text) => {
                            if sink.send(Message::Text(text)).await.is_err() {
                                break;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                }
            });
            while let Some(Ok(message)) = stream.next().await {
                if let Message::Text(text) = message {
                    let _ = tx.send(text);
                }
            }
            forward.abort();
        });
    }
}
