//! Who may open a WebSocket connection: the global and per-IP connection limits, and
//! nobody while the server drains. A granted [`Admission`] is held for the connection's
//! life and gives its place back when dropped.

use super::mailbox::Node;
use ahash::AHashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// Connections counted against the limits (touched on connect and disconnect only).
#[derive(Default)]
pub struct Seats {
    open: std::sync::atomic::AtomicUsize,
    per_ip: Mutex<AHashMap<IpAddr, usize>>,
}

/// A connection's place under the limits.
pub struct Admission {
    node: Arc<Node>,
    ip: IpAddr,
}

/// Why a connection was refused: answered with 503 and this code and message.
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

/// Admits a connection from `ip`, or says why not.
pub fn admit(node: &Arc<Node>, ip: IpAddr) -> Result<Admission, Refusal> {
    if node.draining.load(Ordering::Relaxed) {
        return Err(Refusal {
            code: "shutting_down",
            message: "the server is shutting down".into(),
        });
    }
    let config = &node.config;
    let seats = &node.seats;
    let mut per_ip = seats.per_ip.lock().unwrap_or_else(|e| e.into_inner());
    let open = seats.open.load(Ordering::Relaxed);
    if config.max_connections > 0 && open >= config.max_connections {
        return Err(Refusal {
            code: "too_many_connections",
            message: format!(
                "the server holds its maximum of {} connections",
                config.max_connections
            ),
        });
    }
    let from_ip = per_ip.get(&ip).copied().unwrap_or(0);
    if config.max_connections_per_ip > 0 && from_ip >= config.max_connections_per_ip {
        return Err(Refusal {
            code: "too_many_connections",
            message: format!(
                "at most {} connections per IP address",
                config.max_connections_per_ip
            ),
        });
    }
    per_ip.insert(ip, from_ip + 1);
    seats.open.store(open + 1, Ordering::Relaxed);
    Ok(Admission {
        node: node.clone(),
        ip,
    })
}

impl Drop for Admission {
    fn drop(&mut self) {
        let seats = &self.node.seats;
        let mut per_ip = seats.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        seats.open.fetch_sub(1, Ordering::Relaxed);
    }
}
