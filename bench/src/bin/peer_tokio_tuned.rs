//! The tuned tokio peer: what an expert writes with the same parts as `peer_tokio` (a task
//! per connection, one `tokio::sync::broadcast` channel per room, tokio-tungstenite). The
//! difference is in the forwarding loop: every message that is ready is `feed` into the
//! sink (buffered, no write yet) and the batch is written with one `flush`, so a socket
//! gets one write per wake-up instead of one per message; `TCP_NODELAY`, a 4 KiB read
//! buffer, and a write buffer that holds a batch.
//!
//! `peer_tokio_tuned --listen 127.0.0.1:0` prints `listening on ADDR` once ready.

use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
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
            let config = WebSocketConfig::default()
                .read_buffer_size(4096)
                .write_buffer_size(64 * 1024)
                .max_write_buffer_size(usize::MAX);
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
                    let first = match rx.recv().await {
                        Ok(text) => text,
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => break,
                    };
                    if sink.feed(Message::Text(first)).await.is_err() {
                        break;
                    }
                    // Everything else already waiting goes into the same write.
                    loop {
                        match rx.try_recv() {
                            Ok(text) => {
                                if sink.feed(Message::Text(text)).await.is_err() {
                                    return;
                                }
                            }
                            Err(TryRecvError::Lagged(_)) => continue,
                            Err(_) => break,
                        }
                    }
                    if sink.flush().await.is_err() {
                        break;
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
