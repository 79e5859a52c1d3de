//! The operator's web console at `/console` (docs/CONSOLE.md): its static files, a session
//! check, and one live feed — server-sent events over a `fetch` that carries the admin key
//! in `Authorization`, so the key never appears in a URL.
//!
//! It costs nothing while nobody has it open: every number it shows is computed when a
//! feed asks (the per-core counters `/metrics` reads; the rooms' member counts and stream
//! `seq`s, which the engines keep anyway), and the live tail of a room is an observer
//! (`engine/inspect.rs`) that exists only while a feed shows that room. A feed's own memory
//! (the previous tick's totals and `seq`s, for rates) lives in its task and goes with it.
//!
//! Every answer here carries `cache-control: no-store`, `nosniff` and `DENY` framing; the
//! pages carry a content security policy without inline script (`assets.rs`). Without
//! `--admin-key` every console path answers `403`; data needs the key (`401` without).
//! Which paths are the console's is decided by `router::is_console_path`.

use super::access;
use super::admin_api::admin;
use super::assets::{self, CONSOLE, CONSOLE_CSP};
use super::mailbox::ToOwner;
use super::shard::Shard;
use super::tls::Socket;
use crate::dialect::{pact, Dialect, Wire};
use crate::engine::inspect::RoomView;
use crate::engine::Engine;
use crate::http::{self, Request};
use crate::ids::ConnId;
use ahash::AHashMap;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often a feed sends the counters (and the room it shows).
const TICK: Duration = Duration::from_secs(1);
/// The room list goes out every this many ticks: it costs a look at every live room.
const ROOMS_EVERY: u64 = 2;
/// Rooms one core lists at most (the busiest by members), and a feed sends at most.
const LISTED_PER_CORE: usize = 2_000;
const LISTED: usize = 100;
/// Feeds one core serves at once; more get `503`.
const FEEDS_PER_CORE: usize = 8;
/// Tail events waiting to be written to a feed; past it they are skipped (and counted).
const TAIL_BACKLOG: usize = 512;
/// A feed whose client has not taken a write for this long is ended.
const STALLED: Duration = Duration::from_secs(10);
/// Longest search string and room name a feed takes.
const MAX_PARAM: usize = 256;

/// What a feed asks of a room owner, on its `commands` channel.
pub enum Ask {
    /// Live rooms whose names contain `query` (ASCII case-insensitively): how many, and
    /// the busiest of them by members.
    Rooms {
        query: String,
        reply: flume::Sender<(usize, Vec<RoomRow>)>,
    },
    /// A live room's page as JSON (`None`: not live here).
    Room {
        room: String,
        reply: flume::Sender<Option<String>>,
    },
    /// Tail the room: its events go to `conn`, an observer on the feed's core.
    Observe {
        room: String,
        conn: ConnId,
    },
    Unobserve {
        room: String,
        conn: ConnId,
    },
}

/// A live room in the list.
pub struct RoomRow {
    pub name: String,
    pub members: usize,
    pub seq: u64,
}

/// Answers a feed's question on the room owner's core (called by `owner::run_engine`).
pub fn answer(engine: &mut Engine, ask: Ask) {
    match ask {
        Ask::Rooms { query, reply } => {
            let mut matching = 0;
            let mut rows: Vec<RoomRow> = engine
                .summaries()
                .filter(|s| contains_ignore_ascii_case(s.name, &query))
                .inspect(|_| matching += 1)
                .map(|s| RoomRow {
                    name: s.name.to_owned(),
                    members: s.members,
                    seq: s.seq,
                })
                .collect();
            rows.sort_unstable_by(|a, b| b.members.cmp(&a.members).then(a.name.cmp(&b.name)));
            rows.truncate(LISTED_PER_CORE);
            let _ = reply.try_send((matching, rows));
        }
        Ask::Room { room, reply } => {
            let _ = reply.try_send(engine.inspect(&room).map(|view| render_room(&view)));
        }
        Ask::Observe { room, conn } => engine.observe(&room, conn, Dialect::Pact.codec_id()),
        Ask::Unobserve { room, conn } => engine.unobserve(&room, conn),
    }
}

/// A live room's page: Pact's room details (`GET /api/rooms/:room`), each member with its
/// dialect, and the room's stream position.
fn render_room(view: &RoomView) -> String {
    let mut page: Value =
        serde_json::from_str(&pact::room_details(&view.details)).unwrap_or(Value::Null);
    if let Some(members) = page["members"].as_array_mut() {
        for (member, codec) in members.iter_mut().zip(&view.codecs) {
            member["dialect"] = json!(Dialect::of(*codec).name());
        }
    }
    page["live"] = json!(true);
    page["pos"] = json!({"epoch": &*view.position.epoch, "seq": view.position.seq});
    page.to_string()
}

fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    needle.is_empty()
        || haystack
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Serves a request for a console path (`router::is_console_path`).
pub async fn serve(shard: Rc<Shard>, mut socket: Socket, peer: SocketAddr, req: Request) {
    let started = Instant::now();
    let response = match respond(&shard, &req) {
        Answer::Now(response) => assets::no_store(response),
        Answer::Feed(params) => return feed(shard, socket, peer, req, params).await,
    };
    access::http(
        peer,
        &req.method,
        &req.path,
        &response,
        started.elapsed().as_micros(),
    );
    socket.answer(response).await;
}

enum Answer {
    Now(Vec<u8>),
    Feed(FeedParams),
}

fn respond(shard: &Shard, req: &Request) -> Answer {
    // Without an admin key there is nothing to log in to.
    if shard.config.admin_key.is_none() {
        return Answer::Now(admin(shard, req).err().unwrap_or_default());
    }
    let method = req.method.as_str();
    let path = req.path.as_str();
    if let Some((_, file)) = CONSOLE.iter().find(|(p, _)| *p == path) {
        return Answer::Now(match method {
            "GET" | "HEAD" => assets::send(req, file, CONSOLE_CSP, "no-store"),
            _ => http::json_error(405, "method_not_allowed", "method not allowed"),
        });
    }
    let api = matches!(path, "/console/api/session" | "/console/api/feed");
    if api && method != "GET" {
        return Answer::Now(http::json_error(
            405,
            "method_not_allowed",
            "method not allowed",
        ));
    }
    if !api {
        return Answer::Now(http::json_error(404, "not_found", "no such route"));
    }
    if let Err(refusal) = admin(shard, req) {
        return Answer::Now(refusal);
    }
    if path == "/console/api/session" {
        let dialects: Vec<&str> = Dialect::ALL.iter().map(|d| d.name()).collect();
        return Answer::Now(http::json(
            200,
            &json!({
                "version": env!("CARGO_PKG_VERSION"),
                "cores": shard.cores,
                "driver": shard.node.driver,
                "dialects": dialects,
                "demo": !shard.config.no_demo,
            }),
        ));
    }
    match FeedParams::of(req) {
        Ok(params) => Answer::Feed(params),
        Err(refusal) => Answer::Now(refusal),
    }
}

/// What a feed shows: the room list's search and order, and the room whose page is open.
struct FeedParams {
    query: String,
    by_traffic: bool,
    room: Option<String>,
}

impl FeedParams {
    fn of(req: &Request) -> Result<FeedParams, Vec<u8>> {
        let bad = |message: &str| Err(http::json_error(400, "bad_request", message));
        let query = req.query_param("q").unwrap_or("").to_owned();
        let room = req.query_param("room").filter(|r| !r.is_empty());
        if query.len() > MAX_PARAM || room.is_some_and(|r| r.len() > MAX_PARAM) {
            return bad("q and room are at most 256 bytes");
        }
        let by_traffic = match req.query_param("sort").unwrap_or("members") {
            "members" => false,
            "traffic" => true,
            _ => return bad("sort is members or traffic"),
        };
        Ok(FeedParams {
            query,
            by_traffic,
            room: room.map(str::to_owned),
        })
    }
}

thread_local! {
    /// This core's live tails, by observer id: [`to_tail`] looks here.
    static TAILS: RefCell<AHashMap<ConnId, Rc<TailSink>>> = RefCell::default();
    /// Feeds this core serves now.
    static FEEDS: Cell<usize> = const { Cell::new(0) };
}

/// Where a room's events for one feed go.
struct TailSink {
    frames: flume::Sender<Bytes>,
    skipped: Cell<u64>,
}

/// An event for `to`, a connection this core does not hold: if `to` is a console's tail,
/// it gets the frame (called by `Shard::deliver` only when no connection has the id, so it
/// costs the delivery path nothing).
pub fn to_tail(to: ConnId, wire: &Wire) {
    TAILS.with(|tails| {
        let tails = tails.borrow();
        if tails.is_empty() {
            return;
        }
        if let Some(sink) = tails.get(&to) {
            if sink.frames.try_send(wire.bytes().clone()).is_err() {
                sink.skipped.set(sink.skipped.get() + 1);
            }
        }
    });
}

/// A feed's tail of a room, while the feed is open.
struct Tail {
    room: String,
    conn: ConnId,
    frames: flume::Receiver<Bytes>,
    sink: Rc<TailSink>,
}

impl Tail {
    async fn open(shard: &Shard, room: String) -> Tail {
        let conn = shard.next_conn_id();
        let (tx, frames) = flume::bounded(TAIL_BACKLOG);
        let sink = Rc::new(TailSink {
            frames: tx,
            skipped: Cell::new(0),
        });
        TAILS.with(|t| t.borrow_mut().insert(conn, sink.clone()));
        let observe = Ask::Observe {
            room: room.clone(),
            conn,
        };
        let _ = shard
            .owner_of(&room)
            .commands
            .send_async(ToOwner::Console(observe))
            .await;
        Tail {
            room,
            conn,
            frames,
            sink,
        }
    }

    async fn close(self, shard: &Shard) {
        TAILS.with(|t| t.borrow_mut().remove(&self.conn));
        let unobserve = Ask::Unobserve {
            room: self.room.clone(),
            conn: self.conn,
        };
        let _ = shard
            .owner_of(&self.room)
            .commands
            .send_async(ToOwner::Console(unobserve))
            .await;
    }
}

/// A feed's place among the core's feeds, given back when the feed ends.
struct FeedSlot;

impl FeedSlot {
    fn take() -> Option<FeedSlot> {
        FEEDS.with(|n| (n.get() < FEEDS_PER_CORE).then(|| n.set(n.get() + 1)))?;
        Some(FeedSlot)
    }
}

impl Drop for FeedSlot {
    fn drop(&mut self) {
        FEEDS.with(|n| n.set(n.get() - 1));
    }
}

/// The live feed: `stats` every second, `rooms` every two, `room` (the open room's page)
/// every second and `tail` (its events, as Pact frames) as they happen, until the client
/// goes away or the server drains.
async fn feed(
    shard: Rc<Shard>,
    mut socket: Socket,
    peer: SocketAddr,
    req: Request,
    params: FeedParams,
) {
    let Some(_slot) = FeedSlot::take() else {
        let busy = http::json_error(503, "too_many_feeds", "too many console feeds open");
        let busy = assets::no_store(busy);
        access::http(peer, &req.method, &req.path, &busy, 0);
        socket.answer(busy).await;
        return;
    };
    let head: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
        cache-control: no-store\r\nx-content-type-options: nosniff\r\nx-frame-options: DENY\r\n\
        connection: close\r\n\r\n";
    access::http(peer, &req.method, &req.path, head, 0);
    if !socket.write_part(head.to_vec()).await {
        return;
    }
    let tail = match params.room.clone() {
        Some(room) => Some(Tail::open(&shard, room).await),
        None => None,
    };
    let mut state = FeedState::default();
    let mut ticks = 0u64;
    let mut next = Instant::now();
    loop {
        if shard.node.draining.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        if now >= next {
            let mut out = String::new();
            state.stats(&shard, now, &mut out);
            if ticks.is_multiple_of(ROOMS_EVERY) {
                state.rooms(&shard, &params, now, &mut out).await;
            }
            if let Some(room) = &params.room {
                room_page(&shard, room, tail.as_ref(), &mut out).await;
            }
            if !send(&mut socket, out).await {
                break;
            }
            ticks += 1;
            next = (next + TICK).max(now);
            continue;
        }
        let Some(tail) = &tail else {
            monoio::time::sleep(next - now).await;
            continue;
        };
        if let Ok(Ok(frame)) = monoio::time::timeout(next - now, tail.frames.recv_async()).await {
            let mut out = String::new();
            tail_event(&frame, &mut out);
            while let Ok(frame) = tail.frames.try_recv() {
                tail_event(&frame, &mut out);
            }
            if !send(&mut socket, out).await {
                break;
            }
        }
    }
    if let Some(tail) = tail {
        tail.close(&shard).await;
    }
}

/// One server-sent event. Compact JSON has no line breaks, but a line break in `data`
/// would end the event early: each line gets its own `data:` (the reader joins them).
fn event(out: &mut String, name: &str, data: &str) {
    out.push_str("event: ");
    out.push_str(name);
    out.push('\n');
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
}

/// Writes `out` to the feed's client; false when it is gone or has read nothing for
/// [`STALLED`] (a reader that stopped would otherwise hold the feed, and its tail, forever).
async fn send(socket: &mut Socket, out: String) -> bool {
    let write = socket.write_part(out.into_bytes());
    matches!(monoio::time::timeout(STALLED, write).await, Ok(true))
}

/// A tailed frame as a `tail` event: the Pact event's JSON (the frame's payload).
fn tail_event(frame: &[u8], out: &mut String) {
    if let Some(text) = payload(frame).and_then(|p| std::str::from_utf8(p).ok()) {
        event(out, "tail", text);
    }
}

/// The payload of one unmasked server frame.
fn payload(frame: &[u8]) -> Option<&[u8]> {
    let start = match frame.get(1)? & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    frame.get(start..)
}

/// The open room's page: its live state from its owner, or what the store keeps of it.
async fn room_page(shard: &Shard, room: &str, tail: Option<&Tail>, out: &mut String) {
    let (reply, answer) = flume::bounded(1);
    let ask = ToOwner::Console(Ask::Room {
        room: room.to_owned(),
        reply,
    });
    let owner = shard.owner_of(room);
    let _ = owner.commands.send_async(ask).await;
    let mut page = match answer.recv_async().await {
        Ok(Some(live)) => serde_json::from_str(&live).unwrap_or(Value::Null),
        _ => {
            let (reply, answer) = flume::bounded(1);
            let ask = ToOwner::Details {
                room: room.to_owned(),
                reply,
            };
            let _ = owner.commands.send_async(ask).await;
            let mut idle: Value = match answer.recv_async().await {
                Ok(details) => serde_json::from_str(&details).unwrap_or(Value::Null),
                Err(_) => json!({"room": room, "unavailable": true}),
            };
            idle["live"] = json!(false);
            idle
        }
    };
    page["tailSkipped"] = json!(tail.map_or(0, |t| t.sink.skipped.get()));
    event(out, "room", &page.to_string());
}

/// What a feed remembers between ticks, for rates.
#[derive(Default)]
struct FeedState {
    last: Option<(Instant, Totals)>,
    /// Each listed room's `seq` at the last room list, and when.
    seqs: AHashMap<String, u64>,
    seqs_at: Option<Instant>,
}

#[derive(Clone, Copy, Default)]
struct Totals {
    deliveries: u64,
    messages_in: u64,
}

impl FeedState {
    /// The node's counters, summed over cores, with rates since the last tick.
    fn stats(&mut self, shard: &Shard, now: Instant, out: &mut String) {
        let cores = &shard.node.metrics;
        let sum = |f: &dyn Fn(&super::metrics::Metrics) -> u64| cores.iter().map(|m| f(m)).sum();
        let totals = Totals {
            deliveries: sum(&|m| m.deliveries.get()),
            messages_in: sum(&|m| m.messages_in.get()),
        };
        // None in a feed's first tick: there is nothing to compare with yet.
        let rate = |now_total: u64, then: &dyn Fn(&Totals) -> u64| {
            let (at, last) = self.last.as_ref()?;
            let secs = now.duration_since(*at).as_secs_f64().max(1e-3);
            Some(now_total.saturating_sub(then(last)) as f64 / secs)
        };
        let deliveries_per_sec = rate(totals.deliveries, &|t| t.deliveries);
        let messages_per_sec = rate(totals.messages_in, &|t| t.messages_in);
        self.last = Some((now, totals));
        let mut errors = Map::new();
        for dialect in Dialect::ALL {
            let n: u64 = sum(&|m| m.error_frames_of(dialect));
            errors.insert(dialect.name().to_owned(), json!(n));
        }
        let mut closes = Map::new();
        for code in super::metrics::COUNTED_CLOSE_CODES {
            closes.insert(code.to_string(), json!(sum(&|m| m.closed(code))));
        }
        let stats = json!({
            "connections": sum(&|m| m.connections.get()),
            "rooms": sum(&|m| m.rooms.get()),
            "deliveries": totals.deliveries,
            "deliveriesPerSec": deliveries_per_sec,
            "messagesPerSec": messages_per_sec,
            "queuedBytes": sum(&|m| m.queued_bytes.get()),
            "slowConsumers": sum(&|m| m.slow_consumers.get()),
            "rateLimited": sum(&|m| m.rate_limited.get()),
            "errors": errors,
            "closes": closes,
            "storeHealthy": shard.node.store.healthy(),
            "draining": shard.node.draining.load(Ordering::Relaxed),
        });
        event(out, "stats", &stats.to_string());
    }

    /// The room list: every core's live rooms matching the search, with their traffic
    /// (lasting events per second since the last list), sorted and cut to [`LISTED`].
    async fn rooms(&mut self, shard: &Shard, params: &FeedParams, now: Instant, out: &mut String) {
        let mut answers = Vec::with_capacity(shard.cores);
        for mailbox in &shard.node.mailboxes {
            let (reply, answer) = flume::bounded(1);
            let ask = Ask::Rooms {
                query: params.query.clone(),
                reply,
            };
            if mailbox
                .commands
                .send_async(ToOwner::Console(ask))
                .await
                .is_ok()
            {
                answers.push(answer);
            }
        }
        let mut total = 0;
        let mut rows = Vec::new();
        for answer in answers {
            if let Ok((matching, core_rows)) = answer.recv_async().await {
                total += matching;
                rows.extend(core_rows);
            }
        }
        let secs = self
            .seqs_at
            .map_or(0.0, |at| now.duration_since(at).as_secs_f64());
        let mut listed: Vec<(RoomRow, f64)> = rows
            .into_iter()
            .map(|row| {
                let rate = match self.seqs.get(&row.name) {
                    Some(before) if secs > 0.0 => row.seq.saturating_sub(*before) as f64 / secs,
                    _ => 0.0,
                };
                (row, rate)
            })
            .collect();
        self.seqs = listed
            .iter()
            .map(|(row, _)| (row.name.clone(), row.seq))
            .collect();
        self.seqs_at = Some(now);
        if params.by_traffic {
            listed.sort_unstable_by(|(a, ra), (b, rb)| {
                rb.total_cmp(ra)
                    .then(b.members.cmp(&a.members))
                    .then(a.name.cmp(&b.name))
            });
        } else {
            listed.sort_unstable_by(|(a, _), (b, _)| {
                b.members.cmp(&a.members).then(a.name.cmp(&b.name))
            });
        }
        listed.truncate(LISTED);
        let rooms: Vec<Value> = listed
            .iter()
            .map(|(row, rate)| {
                json!({"name": row.name, "members": row.members, "seq": row.seq, "rate": rate})
            })
            .collect();
        let list = json!({"total": total, "rooms": rooms, "sort": if params.by_traffic {"traffic"} else {"members"}});
        event(out, "rooms", &list.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_ignores_ascii_case() {
        assert!(contains_ignore_ascii_case("Lobby-42", "by-4"));
        assert!(contains_ignore_ascii_case("Lobby", "LOBBY"));
        assert!(contains_ignore_ascii_case("anything", ""));
        assert!(!contains_ignore_ascii_case("lob", "lobby"));
    }

    #[test]
    fn line_breaks_stay_inside_their_event() {
        let mut out = String::new();
        event(&mut out, "tail", "a\nb");
        assert_eq!(out, "event: tail\ndata: a\ndata: b\n\n");
    }

    #[test]
    fn payloads_of_frames_of_every_length() {
        for len in [0usize, 125, 126, 65_535, 65_536] {
            let text = "x".repeat(len);
            let frame = crate::frame::text(text.as_bytes());
            assert_eq!(payload(&frame), Some(text.as_bytes()), "{len}");
        }
    }
}
