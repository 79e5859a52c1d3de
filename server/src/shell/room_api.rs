//! The HTTP API about rooms: Pact-style room details, websockets.do's emit (with acks) and
//! history.

use super::admin_api::refusal;
use super::mailbox::{now_ms, ToOwner};
use super::shard::Shard;
use crate::api;
use crate::dialect::pact;
use crate::engine::emit::{EmitOutcome, ReplyToken};
use crate::engine::{Emit, Position, Scope};
use crate::http::{self, Request};
use crate::ids::{new_event_id, random_u64};
use crate::store::HistoryQuery;
use serde_json::json;
use std::time::Duration;

pub(super) async fn room_details(shard: &Shard, room: &str) -> Vec<u8> {
    let (reply, answer) = flume::bounded(1);
    let request = ToOwner::Details {
        room: room.to_owned(),
        reply,
    };
    match ask(shard, room, request, answer).await {
        Some(json) => http::response(200, "application/json", json.as_bytes()),
        None => unavailable(),
    }
}

/// `GET /api/rooms/:room/history?limit=L&before=S`: the room's lasting events from the store,
/// as Pact members received them, oldest first (emits aimed at chosen members left out).
pub(super) async fn room_history(shard: &Shard, room: &str, req: &Request) -> Vec<u8> {
    let number = |name: &str| match req.query_param(name) {
        None => Ok(None),
        Some(text) => text.parse::<u64>().map(Some).map_err(|_| name.to_owned()),
    };
    let (limit, before) = match (number("limit"), number("before")) {
        (Ok(limit), Ok(before)) => (limit, before),
        (Err(name), _) | (_, Err(name)) => {
            let message = format!("{name} must be a non-negative integer");
            return http::json_error(400, "invalid_query", &message);
        }
    };
    let config = &shard.config;
    let limit = limit.map_or(pact::DEFAULT_HISTORY_LIMIT, |l| {
        usize::try_from(l).unwrap_or(usize::MAX)
    });
    let query = HistoryQuery {
        before,
        ..HistoryQuery::last(limit.min(config.history_size))
    }
    .within_ttl(now_ms(), config.history_ttl_ms);
    let (snapshot, page) = match read_history(shard, room, query, true).await {
        Ok(read) => read,
        Err(e) => return http::json_error(503, "unavailable", &e),
    };
    let events: Vec<_> = page
        .events
        .into_iter()
        .filter(|e| !matches!(e.scope, Scope::Members(_)))
        .map(|e| e.event)
        .collect();
    let pos = snapshot.and_then(|s| {
        let epoch = s.epoch?;
        Some(Position {
            epoch: epoch.into(),
            seq: s.seq,
        })
    });
    let body = pact::history_page(&events, pos.as_ref());
    http::response(200, "application/json", body.as_bytes())
}

pub(super) async fn ask<T>(
    shard: &Shard,
    room: &str,
    request: ToOwner,
    answer: flume::Receiver<T>,
) -> Option<T> {
    shard
        .owner_of(room)
        .commands
        .send_async(request)
        .await
        .ok()?;
    answer.recv_async().await.ok()
}

pub(super) fn unavailable() -> Vec<u8> {
    http::json_error(
        503,
        "unavailable",
        "the room owner or its stored state is unavailable",
    )
}

pub(super) async fn emit(shard: &Shard, channel: &str, req: &Request) -> Vec<u8> {
    let parsed = api::targets(req.query_param("clients")).and_then(|targets| {
        let require_ack = api::boolean(req.query_param("require-ack"))?;
        let payload = api::emit_payload(req.method == "POST", &req.query, &req.body)?;
        Ok((targets, require_ack, payload))
    });
    let (targets, require_ack, payload) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return refusal(e),
    };
    let event_id = new_event_id();
    let emit = Emit {
        payload,
        targets,
        require_ack,
        event_id,
        seed: random_u64(),
        ack_timeout_ms: shard.config.ack_timeout_ms,
        reply: ReplyToken(0),
    };
    let (reply, answer) = flume::bounded(1);
    let request = ToOwner::Emit {
        room: channel.to_owned(),
        emit,
        reply,
    };
    // The owner always answers, at the latest when the ack deadline passes.
    let limit = Duration::from_millis(shard.config.ack_timeout_ms + 5_000);
    let outcome = monoio::time::timeout(limit, ask(shard, channel, request, answer)).await;
    match outcome {
        Ok(Some(outcome)) => emit_response(outcome),
        _ => unavailable(),
    }
}

pub(super) fn emit_response(outcome: EmitOutcome) -> Vec<u8> {
    match outcome {
        EmitOutcome::Sent { event_id, clients } => http::json(
            200,
            &json!({"success": true, "eventID": event_id, "clients": clients}),
        ),
        EmitOutcome::Acked { event_id, acked } => http::json(
            200,
            &json!({"success": true, "eventID": event_id, "acked": acked}),
        ),
        EmitOutcome::AckTimeout {
            event_id,
            acked,
            missing,
        } => http::json_error_with(
            408,
            "ack_timeout",
            &format!("{} client(s) did not acknowledge in time", missing.len()),
            json!({"success": false, "eventID": event_id, "acked": acked, "missing": missing}),
        ),
        EmitOutcome::NotEnoughClients { wanted, connected } => http::json_error_with(
            400,
            "not_enough_clients",
            "Not enough clients to target.",
            json!({"success": false, "wanted": wanted, "connected": connected}),
        ),
        EmitOutcome::NoClients => http::json_error_with(
            404,
            "no_clients",
            "none of the targeted clients is connected",
            json!({"success": false}),
        ),
        EmitOutcome::Unavailable => unavailable(),
    }
}

pub(super) async fn history(shard: &Shard, channel: &str, req: &Request) -> Vec<u8> {
    let limit = match req.query_param("limit").map(str::parse::<usize>) {
        None => shard.config.history_size,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return http::json_error(400, "invalid_limit", "limit must be a non-negative integer")
        }
    };
    // The store holds the history (an emit's answer waits for its commit, so it is there).
    // It holds every lasting event: read all that counts and keep the newest emits.
    let config = &shard.config;
    let query = HistoryQuery::last(config.history_size).within_ttl(now_ms(), config.history_ttl_ms);
    match read_history(shard, channel, query, false).await {
        Ok((_, page)) => {
            let mut emitted = crate::store::emitted(page);
            emitted.drain(..emitted.len().saturating_sub(limit));
            http::json(200, &json!({ "history": emitted }))
        }
        Err(e) => http::json_error(503, "unavailable", &e),
    }
}

/// A page of a room's history (and, with `snapshot`, the room's state read first, so the
/// page is at least as new): the store's, or Redis's with `--engine redis`.
async fn read_history(
    shard: &Shard,
    room: &str,
    query: HistoryQuery,
    snapshot: bool,
) -> Result<(Option<crate::engine::RoomSnapshot>, crate::engine::History), String> {
    if let Some(sequencer) = shard.sequencer.get() {
        let state = match snapshot {
            true => sequencer.load(room.to_owned(), false).await?,
            false => None,
        };
        return Ok((state, sequencer.read(room, query).await?));
    }
    let store = &shard.node.store;
    let state = snapshot.then(|| store.load(room.to_owned()));
    let page = store.history(room.to_owned(), query);
    let state = match state {
        Some(state) => state.wait().await.map_err(|e| e.to_string())?,
        None => None,
    };
    Ok((state, page.wait().await.map_err(|e| e.to_string())?))
}
