//! A shard's delivery task: carries out what other shards (and the HTTP API) ask of the
//! connections it holds. It never waits on anything but its own channel (`mailbox.rs`).

use super::mailbox::{now_ms, ToConns};
use super::shard::Shard;
use crate::dialect::Dialect;
use std::rc::Rc;

/// Carries out what other cores ask of this core's connections.
pub async fn run_deliveries(shard: Rc<Shard>, deliveries: flume::Receiver<ToConns>) {
    while let Ok(message) = deliveries.recv_async().await {
        let now = now_ms();
        match message {
            ToConns::Deliver(batch) => {
                for (wire, conns) in batch {
                    for to in conns {
                        shard.deliver(to, &wire, now);
                    }
                }
            }
            ToConns::Disconnect { id, reply } => {
                let _ = reply.try_send(shard.disconnect(&id, now));
            }
            ToConns::Targeted {
                users,
                clients,
                wires,
            } => shard.deliver_targeted(&users, &clients, &wires, now),
            ToConns::Close { conn, code, reason } => shard.close_id(conn, code, &reason, now),
            ToConns::Drain { jitter_ms } => shard.drain(jitter_ms, now),
            ToConns::Slip { conn, events } => {
                // Carrying them out sends commands, which may wait: not on this task, which
                // must never wait (see the module docs).
                for target in shard.conns_with_id(&conn) {
                    if target.dialect == Dialect::Slip {
                        let shard = shard.clone();
                        let events = events.clone();
                        monoio::spawn(async move {
                            let mut actions = crate::dialect::session::Actions::new();
                            crate::dialect::slip::apply(events, &mut actions);
                            super::session::carry_out(&shard, &target, actions).await;
                        });
                    }
                }
            }
        }
    }
}
