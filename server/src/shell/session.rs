//! Carries out what a connection's dialect decides (`dialect::session`): the dialect says
//! what a message, a backend's answer or the connection's end leads to; this sends, commands
//! room owners, calls the backend and changes the connection, in order.

use super::conn::{Conn, State};
use super::mailbox::now_ms;
use super::shard::Shard;
use crate::backend::BackendRequest;
use crate::dialect::session::{Action, Actions, Session};
use crate::dialect::Refusal;
use crate::engine::member::ConnectionDetails;
use crate::engine::{Command, Joiner};
use bytes::Bytes;
use rookery_protocol::pact::Role;
use std::rc::Rc;

/// Handles one text message of `conn`. A message whose token names a key the identity
/// provider's cached set lacks ([`Action::AwaitKeys`]) waits for a refresh of the set (a
/// channel await: the core goes on) and is decided again.
pub async fn text(shard: &Rc<Shard>, conn: &Rc<Conn>, text: &[u8]) {
    let mut actions = decide_text(shard, conn, text, false);
    if matches!(actions.as_slice(), [Action::AwaitKeys]) {
        if let Some(refreshed) = shard.node.verifier.key_refresh() {
            let _ = refreshed.recv_async().await;
        }
        actions = decide_text(shard, conn, text, true);
    }
    carry_out(shard, conn, actions).await;
}

/// What the dialect makes of one text message.
fn decide_text(shard: &Shard, conn: &Conn, text: &[u8], keys_awaited: bool) -> Actions {
    let mut actions = Actions::new();
    // simd-json parses in place: the message is copied into the core's scratch buffer.
    let mut scratch = shard.scratch.borrow_mut();
    scratch.clear();
    scratch.extend_from_slice(text);
    let protocol = conn.dialect.protocol();
    with_session_keys(shard, conn, keys_awaited, |s| {
        protocol.on_text(s, &mut scratch, &mut actions)
    });
    actions
}

/// Handles one binary message of `conn`, whose dialect [`takes_binary`] messages.
///
/// [`takes_binary`]: crate::dialect::Protocol::takes_binary
pub async fn binary(shard: &Rc<Shard>, conn: &Rc<Conn>, data: &[u8]) {
    let mut actions = Actions::new();
    let protocol = conn.dialect.protocol();
    with_session(shard, conn, |s| protocol.on_binary(s, data, &mut actions));
    carry_out(shard, conn, actions).await;
}

/// Handles the end of `conn`'s session (after it left its rooms).
pub async fn closed(shard: &Rc<Shard>, conn: &Rc<Conn>) {
    let mut actions = Actions::new();
    let protocol = conn.dialect.protocol();
    with_session(shard, conn, |s| protocol.on_close(s, &mut actions));
    carry_out(shard, conn, actions).await;
}

/// The frame refusing a message of `conn` (none: dropped silently).
pub fn refusal(conn: &Conn, refusal: Refusal) -> Option<Bytes> {
    conn.with_peer(|peer| conn.dialect.protocol().refusal(refusal, peer))
}

/// What the dialect's rules know of `conn`.
fn with_session<T>(shard: &Shard, conn: &Conn, f: impl FnOnce(&Session<'_>) -> T) -> T {
    with_session_keys(shard, conn, false, f)
}

fn with_session_keys<T>(
    shard: &Shard,
    conn: &Conn,
    keys_awaited: bool,
    f: impl FnOnce(&Session<'_>) -> T,
) -> T {
    conn.with_peer(|peer| {
        conn.with_rooms(|rooms| {
            f(&Session {
                conn: conn.id,
                peer: *peer,
                rooms,
                now_ms: now_ms(),
                config: &shard.config,
                verifier: &shard.node.verifier,
                keys_awaited,
            })
        })
    })
}

/// Carries out `actions` for `conn`, in order.
pub async fn carry_out(shard: &Rc<Shard>, conn: &Rc<Conn>, actions: Actions) {
    // Kept last-first, so the next action is popped off the end and a backend's answer's
    // actions are pushed to come next.
    let mut queue = actions;
    queue.reverse();
    while let Some(action) = queue.pop() {
        let now = now_ms();
        match action {
            Action::Send(frame) => {
                conn.send(frame, now);
            }
            Action::Refuse(frame) => {
                shard.metrics.error_frame(conn.dialect);
                conn.send(frame, now);
            }
            Action::Command(command) => shard.command(command).await,
            Action::Join(room) => {
                if conn.state() == State::Open && conn.add_room(&room) {
                    join_room(shard, conn, &room).await;
                }
            }
            Action::Leave(room) => {
                if conn.remove_room(&room) {
                    let leave = Command::Leave {
                        conn: conn.id,
                        room,
                    };
                    shard.command(leave).await;
                }
            }
            Action::SetIdentity(identity) => {
                shard.unindex(conn);
                conn.set_identity(identity);
                shard.index(conn);
            }
            Action::Close(code, reason) => shard.close(conn, code, &reason, now),
            // Decided again by `text` after the wait; anywhere else there is nothing to do.
            Action::AwaitKeys => {}
            Action::TokenExpiry(exp_ms) => shard.watch_token(conn.id, exp_ms),
            Action::Pong => {
                if let Some(sent) = conn.ping_sent_ms.take() {
                    conn.latency_ms.set(now.saturating_sub(sent));
                }
                conn.last_seen_ms.set(now);
            }
            Action::Targeted {
                users,
                clients,
                event,
            } => shard.send_targeted_event(users, clients, event).await,
            Action::Backend {
                request,
                tag,
                concurrent: false,
            } => {
                let more = backend(shard, conn, request, tag).await;
                queue.extend(more.into_iter().rev());
            }
            Action::Backend {
                request,
                tag,
                concurrent: true,
            } => {
                let (shard, conn) = (shard.clone(), conn.clone());
                monoio::spawn(async move {
                    let more = backend(&shard, &conn, request, tag).await;
                    Box::pin(carry_out(&shard, &conn, more)).await;
                });
            }
        }
    }
}

/// Makes a backend call of `conn`'s and returns what its dialect makes of the answer.
async fn backend(shard: &Shard, conn: &Conn, request: BackendRequest, tag: u32) -> Actions {
    let answer = shard.backend(request).await;
    let mut more = Actions::new();
    let protocol = conn.dialect.protocol();
    with_session(shard, conn, |s| {
        protocol.on_backend(s, tag, answer, &mut more)
    });
    more
}

/// Joins `conn` to `room` as who it is now (at connect, or later: Lambda `join`, SLIP
/// `SUBSCRIBE`). `details` are Pact's `profile.connectionDetails`; `token_error` why its
/// token was refused (the room's welcome may tell it).
pub async fn join_room(shard: &Shard, conn: &Conn, room: &str) {
    join_room_with(shard, conn, room, None, None).await;
}

/// [`join_room`] with the connection's details and token refusal.
pub async fn join_room_with(
    shard: &Shard,
    conn: &Conn,
    room: &str,
    details: Option<ConnectionDetails>,
    token_error: Option<String>,
) {
    let joiner = Joiner {
        identity: conn.identity(),
        codec: conn.dialect.codec_id(),
        traits: conn.dialect.traits(),
        role: Role::User,
        details,
        token_error,
    };
    let join = Command::Join {
        conn: conn.id,
        room: room.to_owned(),
        joiner,
    };
    shard.command(join).await;
}
