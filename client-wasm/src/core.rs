//! The client's logic with no IO and no clock: what to send, what a server frame means, when
//! to reconnect. The wasm shell (`lib.rs`) owns the WebSocket, the timers, JSON and the JS
//! promises; it feeds this core events and time and carries out what it returns.
//!
//! Payloads are opaque to the core (`D: Data`, a `JsValue` in the browser): it reads only
//! the few fields it routes by (a poll's id, a position, a resume's answer). That keeps a JSON library out of the wasm build — the
//! browser's own `JSON` parses and prints frames — which is most of the SDK's size budget.
//! Tested natively with `serde_json::Value` as the payload.
//!
//! Positions (SPEC §5.3): every lasting room event carries a `seq`. The core remembers the
//! last one it applied (and the room's epoch, from the `profile` sent on connect); after a
//! reconnect it re-subscribes, then sends `resume` from there, holds every lasting event
//! that arrives until the `resumed` answer, and then applies the replayed and held events
//! in `seq` order, dropping duplicates (a `seq` at or below the last applied one).

use rookery_protocol::pact::{codes, types, HistoryRequest, Pos};

/// A frame's payload as the core sees it: cloned, read for a few fields, and built for the
/// few frames the core writes itself.
pub trait Data: Clone {
    /// A JSON string.
    fn string(text: &str) -> Self;
    /// A JSON number.
    fn number(value: f64) -> Self;
    /// A JSON object of these fields.
    fn object(fields: &[(&str, Self)]) -> Self;
    /// The text of a JSON string, else `None`.
    fn as_text(&self) -> Option<String>;
    /// The value of a JSON number, else `None`.
    fn as_number(&self) -> Option<f64>;
    /// The value of a JSON boolean, else `None`.
    fn as_bool(&self) -> Option<bool>;
    /// The value at `key` of an object, else `None` (also when absent, `null` or
    /// `undefined`).
    fn at(&self, key: &str) -> Option<Self>;
    /// The text of the string at `key` of an object, else `None`.
    fn text_at(&self, key: &str) -> Option<String> {
        self.at(key)?.as_text()
    }
}

/// A non-negative integer that a JSON number holds exactly, else `None`.
pub fn whole(value: f64) -> Option<u64> {
    (value >= 0.0 && value.fract() == 0.0 && value <= 9_007_199_254_740_991.0)
        .then_some(value as u64)
}

/// A position `{"epoch": "…", "seq": n}` read from a payload.
fn read_pos<D: Data>(data: &D) -> Option<Pos> {
    Some(Pos {
        epoch: data.text_at("epoch")?,
        seq: whole(data.at("seq")?.as_number()?)?,
    })
}

/// A position as a payload: `{"epoch": "…", "seq": n}`.
pub fn write_pos<D: Data>(pos: &Pos) -> D {
    D::object(&[
        ("epoch", D::string(&pos.epoch)),
        ("seq", D::number(pos.seq as f64)),
    ])
}

/// Connection state as the app sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Connecting,
    Connected,
    Disconnected,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::Disconnected => "disconnected",
        }
    }
}

/// A request's failure: the server's error code, or one of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

impl Failure {
    pub fn new(code: &str, message: &str) -> Failure {
        Failure {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// A frame to send: `{"type": kind, "ref": reference, "data": data}`, absent fields left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing<D> {
    pub kind: String,
    pub reference: Option<u64>,
    pub data: Option<D>,
}

/// A frame received, its fields read by the shell.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming<D> {
    pub kind: String,
    pub reference: Option<u64>,
    pub data: Option<D>,
    /// The event's place in its room's stream: lasting events only.
    pub seq: Option<u64>,
}

/// What the shell must do after feeding the core.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect<D> {
    /// Send this frame now.
    Send(Outgoing<D>),
    /// Settle the promise of request `reference`: `Ok(None)` resolves with nothing.
    Settle {
        reference: u64,
        result: Result<Option<D>, Failure>,
    },
    /// Call the callbacks subscribed to `topic` (e.g. `chat`, `poll:p`) with `data` (and
    /// the event's `seq`, lasting events only).
    Event {
        topic: String,
        data: Option<D>,
        seq: Option<u64>,
    },
    /// The connection state changed. `recovered` comes with `Connected` after a reconnect:
    /// whether every event missed while away was replayed.
    State {
        state: State,
        recovered: Option<bool>,
    },
    /// State was reloaded from snapshots, or the room's history was reset: events may have
    /// been missed; the app should refetch what it shows. `pos` is the position now known.
    Discontinuity {
        reason: &'static str,
        pos: Option<Pos>,
    },
    /// The socket closed before it ever opened: the server is unreachable, or the URL is
    /// not a WebSocket endpoint (the browser tells no more).
    ConnectFailed,
    /// The server said the connection's token expired (`token_expired`): the shell asks
    /// the app's `getToken()` for a fresh one and sends it ([`Core::refresh`]) before the
    /// server's grace runs out.
    TokenExpired,
}

/// A token this close to its `exp` is renewed before a (re)connect rather than sent.
pub const TOKEN_MARGIN_MS: u64 = 5_000;

/// The payload segment of a JWT in standard, padded base64 (what `atob` decodes), or
/// `None` when `token` has no payload segment.
pub fn jwt_payload_base64(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1).filter(|p| !p.is_empty())?;
    let mut text: String = payload
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !text.len().is_multiple_of(4) {
        text.push('=');
    }
    Some(text)
}

/// Why a discontinuity was reported.
pub mod reasons {
    /// The server could not replay what was missed (history window passed): it sent fresh
    /// snapshots instead.
    pub const NOT_RECOVERED: &str = "not_recovered";
    /// The room's history was lost or reset (a new epoch).
    pub const EPOCH_CHANGED: &str = "epoch_changed";
    /// `resume` was refused or unanswered.
    pub const RESUME_FAILED: &str = "resume_failed";
    /// No position was known to resume from (the server never sent one).
    pub const NO_POSITION: &str = "no_position";
}

/// Knobs, with the defaults of the SDK's options.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub min_reconnect_ms: u64,
    pub max_reconnect_ms: u64,
    /// Requests queued while offline; more are rejected (`offline_queue_full`).
    pub max_queue: usize,
    /// A request unanswered this long is rejected (`timeout`).
    pub request_timeout_ms: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            min_reconnect_ms: 500,
            max_reconnect_ms: 20_000,
            max_queue: 100,
            request_timeout_ms: 10_000,
        }
    }
}

/// A request sent and not yet answered.
struct Pending {
    reference: u64,
    deadline_ms: u64,
    /// Requests made by the core itself (re-subscribing after a reconnect) settle nothing.
    internal: bool,
}

/// A lasting event held while a `resume` is answered.
struct Held<D> {
    kind: String,
    data: Option<D>,
    seq: u64,
}

/// A `resume` sent and not yet answered, and the lasting events that arrived meanwhile.
struct Resume<D> {
    reference: u64,
    held: Vec<Held<D>>,
}

/// A request made while offline, waiting for a connection.
struct Queued<D> {
    frame: Outgoing<D>,
    at_ms: u64,
}

/// The client's state. Its collections are small `Vec`s scanned linearly: a client holds a
/// handful of requests and topics, and every distinct map type would cost wasm size.
pub struct Core<D> {
    settings: Settings,
    /// The state the app sees: `Connected` once the socket is open and, after a reconnect,
    /// the `resume` answered.
    state: State,
    /// The socket is open: requests go out at once.
    open: bool,
    /// A socket opened before: the next open is a reconnect, and resumes.
    opened_before: bool,
    closed: bool,
    next_ref: u64,
    pending: Vec<Pending>,
    queue: Vec<Queued<D>>,
    /// Topics the app holds subscriptions to, with how many handles hold each.
    topics: Vec<(String, usize)>,
    /// The last `login` properties, sent again after a reconnect.
    properties: Option<D>,
    attempt: u32,
    /// The room's epoch and the `seq` of the last lasting event applied.
    pos: Option<Pos>,
    resume: Option<Resume<D>>,
    /// When the app's token expires (its `exp`, epoch ms), if it has one.
    token_exp_ms: Option<u64>,
}

impl<D: Data> Core<D> {
    pub fn new(settings: Settings) -> Core<D> {
        Core {
            settings,
            state: State::Disconnected,
            open: false,
            opened_before: false,
            closed: false,
            next_ref: 1,
            pending: Vec::new(),
            queue: Vec::new(),
            topics: Vec::new(),
            properties: None,
            attempt: 0,
            pos: None,
            resume: None,
            token_exp_ms: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The room's epoch and the `seq` of the last lasting event applied, once known.
    pub fn position(&self) -> Option<&Pos> {
        self.pos.as_ref()
    }

    /// Whether the app closed the client.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The app's token now expires at `exp_ms` (`None`: no token, or no `exp`).
    pub fn set_token_exp(&mut self, exp_ms: Option<u64>) {
        self.token_exp_ms = exp_ms;
    }

    /// Whether the token must be renewed before the next connect: it expires within
    /// [`TOKEN_MARGIN_MS`] (a server would refuse it, or tell it expired at once).
    pub fn token_stale(&self, now_ms: u64) -> bool {
        self.token_exp_ms
            .is_some_and(|exp| exp <= now_ms + TOKEN_MARGIN_MS)
    }

    /// Sends a fresh token for the connection's user (`refresh`); its promise settles with
    /// the server's `refreshed` (`{exp}`) or an error (`invalid_token`: refused).
    pub fn refresh(
        &mut self,
        token: &str,
        exp_ms: Option<u64>,
        now_ms: u64,
    ) -> (u64, Vec<Effect<D>>) {
        self.token_exp_ms = exp_ms;
        let data = D::object(&[("token", D::string(token))]);
        self.request(types::REFRESH, Some(data), now_ms)
    }

    /// The shell is opening a socket.
    pub fn connecting(&mut self) -> Vec<Effect<D>> {
        self.set_state(State::Connecting, None)
    }

    fn set_state(&mut self, state: State, recovered: Option<bool>) -> Vec<Effect<D>> {
        if self.state == state {
            return Vec::new();
        }
        self.state = state;
        vec![Effect::State { state, recovered }]
    }

    fn take_ref(&mut self) -> u64 {
        self.next_ref += 1;
        self.next_ref - 1
    }

    fn sent(&mut self, frame: Outgoing<D>, now_ms: u64, internal: bool) -> Effect<D> {
        self.pending.push(Pending {
            reference: frame.reference.unwrap_or(0),
            deadline_ms: now_ms + self.settings.request_timeout_ms,
            internal,
        });
        Effect::Send(frame)
    }

    /// A request of `kind` with `data`: sent now when connected, else queued. Returns its
    /// reference (the promise's key) and what to do.
    pub fn request(&mut self, kind: &str, data: Option<D>, now_ms: u64) -> (u64, Vec<Effect<D>>) {
        let reference = self.take_ref();
        if kind == types::LOGIN {
            self.properties = data.clone();
        }
        let fail = |code, message| {
            (
                reference,
                vec![settle(reference, Err(Failure::new(code, message)))],
            )
        };
        if self.closed {
            return fail("closed", "the client is closed");
        }
        let frame = Outgoing {
            kind: kind.into(),
            reference: Some(reference),
            data,
        };
        if self.open {
            return (reference, vec![self.sent(frame, now_ms, false)]);
        }
        if self.queue.len() >= self.settings.max_queue {
            return fail("offline_queue_full", "offline and the send queue is full");
        }
        self.queue.push(Queued {
            frame,
            at_ms: now_ms,
        });
        (reference, Vec::new())
    }

    /// Adds a handle on `topic`; the first one subscribes.
    pub fn hold(&mut self, topic: &str, now_ms: u64) -> Vec<Effect<D>> {
        if let Some((_, count)) = self.topics.iter_mut().find(|(t, _)| t == topic) {
            *count += 1;
            return Vec::new();
        }
        self.topics.push((topic.into(), 1));
        self.request(types::SUBSCRIBE, Some(D::string(topic)), now_ms)
            .1
    }

    /// Drops a handle on `topic`; the last one unsubscribes.
    pub fn release(&mut self, topic: &str, now_ms: u64) -> Vec<Effect<D>> {
        let Some(at) = self.topics.iter().position(|(t, _)| t == topic) else {
            return Vec::new();
        };
        self.topics[at].1 -= 1;
        if self.topics[at].1 > 0 {
            return Vec::new();
        }
        self.topics.remove(at);
        if !self.open {
            return Vec::new();
        }
        self.request(types::UNSUBSCRIBE, Some(D::string(topic)), now_ms)
            .1
    }

    /// Adds `delta` to counter `id`: the value the app passed if it was a number, else
    /// `None`. Only a finite number is sent: anything else (not a number, `NaN`,
    /// `Infinity`, which JSON would print as `null`) is rejected (`invalid_data`).
    pub fn counter_add(
        &mut self,
        id: &str,
        delta: Option<f64>,
        now_ms: u64,
    ) -> (u64, Vec<Effect<D>>) {
        match delta.filter(|d| d.is_finite()) {
            Some(delta) => {
                let change = D::object(&[("id", D::string(id)), ("value", D::number(delta))]);
                self.request(types::COUNTER, Some(change), now_ms)
            }
            None => self.refuse("a counter change must be a finite number"),
        }
    }

    /// Asks for a page of the room's history: up to `options.limit` events (absent: the
    /// server's default; 0 asks for the position alone) before `seq` `options.before`
    /// (absent: the latest). A bad option (not a non-negative integer) is rejected unsent.
    pub fn history(&mut self, options: Option<&D>, now_ms: u64) -> (u64, Vec<Effect<D>>) {
        let read = |key| match options.and_then(|o| o.at(key)) {
            None => Ok(None),
            Some(v) => v.as_number().and_then(whole).map(Some).ok_or(()),
        };
        let (Ok(limit), Ok(before)) = (read("limit"), read("before")) else {
            return self.refuse("history options must be {limit?: integer >= 0, before?: seq}");
        };
        let request = HistoryRequest { limit, before };
        let mut fields = Vec::new();
        if let Some(limit) = request.limit {
            fields.push(("limit", D::number(limit as f64)));
        }
        if let Some(before) = request.before {
            fields.push(("before", D::number(before as f64)));
        }
        self.request(types::HISTORY, Some(D::object(&fields)), now_ms)
    }

    /// A request rejected before it is sent (`invalid_data`).
    pub fn refuse(&mut self, message: &str) -> (u64, Vec<Effect<D>>) {
        let reference = self.take_ref();
        let failure = Failure::new(codes::INVALID_DATA, message);
        (reference, vec![settle(reference, Err(failure))])
    }

    /// The socket opened: log in again, subscribe again, resume after a reconnect, then
    /// send what was queued. The app sees `Connected` now on a first connection, and after a
    /// reconnect once the `resume` is answered (with whether it recovered everything).
    pub fn opened(&mut self, now_ms: u64) -> Vec<Effect<D>> {
        self.attempt = 0;
        self.open = true;
        let reconnect = std::mem::replace(&mut self.opened_before, true);
        let mut effects = if reconnect {
            Vec::new()
        } else {
            self.set_state(State::Connected, None)
        };
        let mut again = Vec::new();
        let queued = |kind: &str, data: &Option<D>| {
            self.queue.iter().any(|q| {
                q.frame.kind == kind
                    && (kind == types::LOGIN
                        || q.frame.data.as_ref().and_then(D::as_text)
                            == data.as_ref().and_then(D::as_text))
            })
        };
        if self.properties.is_some() && !queued(types::LOGIN, &None) {
            again.push((types::LOGIN, self.properties.clone()));
        }
        for (topic, _) in &self.topics {
            let data = Some(D::string(topic));
            if !queued(types::SUBSCRIBE, &data) {
                again.push((types::SUBSCRIBE, data));
            }
        }
        // After re-subscribing (the server replays what those subscriptions cover).
        let resume = self.pos.as_ref().filter(|_| reconnect).map(write_pos);
        let resuming = resume.is_some();
        if let Some(data) = resume {
            again.push((types::RESUME, Some(data)));
        }
        for (kind, data) in again {
            let reference = self.take_ref();
            if kind == types::RESUME {
                self.resume = Some(Resume {
                    reference,
                    held: Vec::new(),
                });
            }
            let frame = Outgoing {
                kind: kind.into(),
                reference: Some(reference),
                data,
            };
            effects.push(self.sent(frame, now_ms, true));
        }
        for queued in std::mem::take(&mut self.queue) {
            effects.push(self.sent(queued.frame, now_ms, false));
        }
        if reconnect && !resuming {
            effects.push(Effect::Discontinuity {
                reason: reasons::NO_POSITION,
                pos: None,
            });
            effects.extend(self.set_state(State::Connected, Some(false)));
        }
        effects
    }

    /// The answer to `resume` (`resumed`; or an error, or none in time: `None`): applies the
    /// replayed and held events in `seq` order, duplicates dropped, then reports.
    fn resumed(&mut self, answer: Option<&D>) -> Vec<Effect<D>> {
        let Some(resume) = self.resume.take() else {
            return Vec::new();
        };
        // In `seq` order (an insertion sort: a few events, and no sort routine in the wasm).
        let mut held: Vec<Held<D>> = Vec::new();
        for h in resume.held {
            let at = held
                .iter()
                .position(|x| x.seq > h.seq)
                .unwrap_or(held.len());
            held.insert(at, h);
        }
        let recovered = answer.and_then(|a| a.at("recovered")?.as_bool()) == Some(true);
        let now = answer.and_then(|a| read_pos(&a.at("pos")?));
        let mut reason = None;
        if !recovered {
            let epoch_changed =
                matches!((&now, &self.pos), (Some(n), Some(p)) if n.epoch != p.epoch);
            reason = Some(if answer.is_none() {
                reasons::RESUME_FAILED
            } else if epoch_changed {
                reasons::EPOCH_CHANGED
            } else {
                reasons::NOT_RECOVERED
            });
            // The snapshots the server sent stand for every event up to `now`: held events
            // at or below it are already in them.
            if now.is_some() {
                self.pos = now;
            }
        }
        let mut effects = Vec::new();
        for h in held {
            effects.extend(self.lasting(h.kind, h.data, h.seq));
        }
        if let Some(reason) = reason {
            effects.push(Effect::Discontinuity {
                reason,
                pos: self.pos.clone(),
            });
        }
        effects.extend(self.set_state(State::Connected, Some(recovered)));
        effects
    }

    /// A lasting event: held while a resume is answered, dropped if already applied, else
    /// applied (and its `seq` remembered).
    fn lasting(&mut self, kind: String, data: Option<D>, seq: u64) -> Vec<Effect<D>> {
        if let Some(resume) = &mut self.resume {
            resume.held.push(Held { kind, data, seq });
            return Vec::new();
        }
        if let Some(pos) = &mut self.pos {
            if seq <= pos.seq {
                return Vec::new();
            }
            pos.seq = seq;
        }
        events(kind, data, Some(seq))
    }

    /// A `profile` frame's position: the initial one, or a new epoch (history reset).
    fn profile_pos(&mut self, data: Option<&D>) -> Vec<Effect<D>> {
        let Some(now) = data.and_then(|d| read_pos(&d.at("pos")?)) else {
            return Vec::new();
        };
        match &self.pos {
            None => self.pos = Some(now),
            // While resuming, the `resumed` answer tells (it will not recover).
            Some(pos) if pos.epoch != now.epoch && self.resume.is_none() => {
                self.pos = Some(now.clone());
                return vec![Effect::Discontinuity {
                    reason: reasons::EPOCH_CHANGED,
                    pos: Some(now),
                }];
            }
            Some(_) => {}
        }
        Vec::new()
    }

    /// The socket closed. Requests in flight are rejected (`disconnected`: the server may
    /// or may not have applied them); queued ones wait for the next connection. Returns the
    /// delay before reconnecting (`None` once closed by the app): full jitter,
    /// `random * min(max, min * 2^attempt)` with `random` in [0, 1).
    pub fn closed_socket(&mut self, random: f64) -> (Option<u64>, Vec<Effect<D>>) {
        let was_open = std::mem::replace(&mut self.open, false);
        // Held events are dropped: the next resume asks for them again.
        self.resume = None;
        let mut effects = Vec::new();
        if !was_open && !self.closed {
            effects.push(Effect::ConnectFailed);
        }
        effects.extend(self.set_state(State::Disconnected, None));
        for pending in std::mem::take(&mut self.pending) {
            if !pending.internal {
                let failure =
                    Failure::new("disconnected", "the connection closed before the reply");
                effects.push(settle(pending.reference, Err(failure)));
            }
        }
        if self.closed {
            return (None, effects);
        }
        let cap = self
            .settings
            .min_reconnect_ms
            .saturating_mul(1u64 << self.attempt.min(20))
            .min(self.settings.max_reconnect_ms);
        self.attempt += 1;
        (Some((random.clamp(0.0, 1.0) * cap as f64) as u64), effects)
    }

    /// The app closed the client: nothing reconnects; queued requests are rejected.
    pub fn close(&mut self) -> Vec<Effect<D>> {
        self.closed = true;
        let mut effects: Vec<Effect<D>> = std::mem::take(&mut self.queue)
            .into_iter()
            .filter_map(|q| q.frame.reference)
            .map(|r| settle(r, Err(Failure::new("closed", "the client is closed"))))
            .collect();
        effects.extend(self.set_state(State::Disconnected, None));
        effects
    }

    /// Requests past their deadline, sent or queued, are rejected (`timeout`).
    /// An unanswered `resume` counts as failed.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Effect<D>> {
        let mut late = Vec::new();
        let mut resume_late = false;
        let resume = self.resume.as_ref().map(|r| r.reference);
        self.pending.retain(|p| {
            let keep = p.deadline_ms > now_ms;
            if !keep && !p.internal {
                late.push(p.reference);
            }
            resume_late |= !keep && Some(p.reference) == resume;
            keep
        });
        let timeout = self.settings.request_timeout_ms;
        self.queue.retain(|q| {
            let keep = q.at_ms + timeout > now_ms;
            if !keep {
                late.extend(q.frame.reference);
            }
            keep
        });
        let mut effects: Vec<Effect<D>> = late
            .into_iter()
            .map(|r| {
                settle(
                    r,
                    Err(Failure::new("timeout", "no reply from the server in time")),
                )
            })
            .collect();
        if resume_late {
            effects.extend(self.resumed(None));
        }
        effects
    }

    /// A frame from the server (a frame that was not a JSON object comes with kind `""`).
    pub fn message(&mut self, frame: Incoming<D>) -> Vec<Effect<D>> {
        let Incoming {
            kind,
            reference,
            data,
            seq,
        } = frame;
        let mut effects = Vec::new();
        let answered = reference.and_then(|r| self.pending.iter().position(|p| p.reference == r));
        if let Some(at) = answered {
            let pending = self.pending.remove(at);
            if self.resume.as_ref().map(|r| r.reference) == Some(pending.reference) {
                let answer = data.as_ref().filter(|_| kind == types::RESUMED);
                return self.resumed(answer);
            }
            if !pending.internal {
                let result = match kind.as_str() {
                    types::ERROR => {
                        let text = |key| data.as_ref().and_then(|d| d.text_at(key));
                        Err(Failure {
                            code: text("code").unwrap_or_else(|| "error".into()),
                            message: text("message").unwrap_or_default(),
                        })
                    }
                    types::OK => Ok(None),
                    _ => Ok(data.clone()),
                };
                effects.push(settle(pending.reference, result));
            }
            // A direct reply (profile, ok, error, history) is not also an event.
            if kind != types::PROFILE {
                return effects;
            }
        }
        if let Some(seq) = seq {
            effects.extend(self.lasting(kind, data, seq));
            return effects;
        }
        match kind.as_str() {
            types::PING => effects.push(Effect::Send(Outgoing {
                kind: types::PONG.into(),
                reference: None,
                data,
            })),
            types::PROFILE => {
                effects.extend(self.profile_pos(data.as_ref()));
                effects.extend(events(kind, data, None));
            }
            types::ERROR
                if data.as_ref().and_then(|d| d.text_at("code")).as_deref()
                    == Some(codes::TOKEN_EXPIRED) =>
            {
                effects.push(Effect::TokenExpired)
            }
            "" | types::OK | types::ERROR | types::RESUMED => {}
            _ => effects.extend(events(kind, data, None)),
        }
        effects
    }
}

/// The events a frame fires: on its type, and polls and counters on `type:id` first.
fn events<D: Data>(kind: String, data: Option<D>, seq: Option<u64>) -> Vec<Effect<D>> {
    let mut effects = Vec::new();
    if let types::POLL | types::EPHEMERAL_POLL | types::COUNTER = kind.as_str() {
        let id = data
            .as_ref()
            .and_then(|d| d.text_at("id"))
            .unwrap_or_default();
        effects.push(Effect::Event {
            topic: kind.clone() + ":" + &id,
            data: data.clone(),
            seq,
        });
    }
    effects.push(Effect::Event {
        topic: kind,
        data,
        seq,
    });
    effects
}

/// The WebSocket URL for `url` as given: `ws://host`, `ws://host/`, `ws://host/websocket`
/// (with or without a query string, a path prefix, or `http(s)://`) all reach the native
/// endpoint `…/websocket?room=R[&token=T]`. `room` (and `token`, when given) replace any
/// already in the query. Anything not `ws(s)://` or `http(s)://` is `invalid_url`.
///
/// (No string slicing by index and no substring search: either would pull Rust's panic
/// formatting or its two-way searcher into the wasm.)
pub fn endpoint(url: &str, room: &str, token: Option<&str>) -> Result<String, Failure> {
    let url = url.trim_ascii().split('#').next().unwrap_or_default();
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (scheme, rest) = base.split_once(':').unwrap_or_default();
    let is = |name| scheme.eq_ignore_ascii_case(name);
    let secure = is("wss") || is("https");
    let rest = rest.strip_prefix("//").unwrap_or_default();
    if !(secure || is("ws") || is("http")) || rest.is_empty() || rest.starts_with('/') {
        let message = String::from("not a ws:// or wss:// URL: ") + url;
        return Err(Failure::new("invalid_url", &message));
    }
    let mut path = rest;
    while let Some(shorter) = path.strip_suffix('/') {
        path = shorter;
    }
    let mut full = String::from(if secure { "wss://" } else { "ws://" }) + path;
    if !full.ends_with("/websocket") {
        full.push_str("/websocket");
    }
    full.push('?');
    for param in query.split('&') {
        let key = param.split('=').next().unwrap_or_default();
        if !param.is_empty() && key != "room" && !(key == "token" && token.is_some()) {
            full.push_str(param);
            full.push('&');
        }
    }
    full.push_str("room=");
    full.push_str(&encode(room));
    if let Some(token) = token {
        full.push_str("&token=");
        full.push_str(&encode(token));
    }
    Ok(full)
}

/// `encodeURIComponent`: every byte but `A-Z a-z 0-9 - _ . ! ~ * ' ( )` as `%XX`.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(byte >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(byte & 15)]));
        }
    }
    out
}

fn settle<D>(reference: u64, result: Result<Option<D>, Failure>) -> Effect<D> {
    Effect::Settle { reference, result }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    impl Data for Value {
        fn string(text: &str) -> Value {
            json!(text)
        }
        fn number(value: f64) -> Value {
            json!(value)
        }
        fn object(fields: &[(&str, Value)]) -> Value {
            Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| ((*k).into(), v.clone()))
                    .collect(),
            )
        }
        fn as_text(&self) -> Option<String> {
            self.as_str().map(str::to_owned)
        }
        fn as_number(&self) -> Option<f64> {
            self.as_f64()
        }
        fn as_bool(&self) -> Option<bool> {
            self.as_bool()
        }
        fn at(&self, key: &str) -> Option<Value> {
            self.get(key).filter(|v| !v.is_null()).cloned()
        }
    }

    /// The frames sent, as the shell would print them.
    fn sent(effects: &[Effect<Value>]) -> Vec<Value> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send(f) => {
                    let mut frame = json!({"type": f.kind});
                    if let Some(r) = f.reference {
                        frame["ref"] = json!(r);
                    }
                    if let Some(d) = &f.data {
                        frame["data"] = d.clone();
                    }
                    Some(frame)
                }
                _ => None,
            })
            .collect()
    }

    /// A frame received, read as the shell reads it.
    fn frame(value: Value) -> Incoming<Value> {
        Incoming {
            kind: value["type"].as_str().unwrap_or("").into(),
            reference: value["ref"].as_u64(),
            data: value.get("data").cloned(),
            seq: value["seq"].as_u64(),
        }
    }

    fn connected() -> Core<Value> {
        let mut c = Core::new(Settings::default());
        c.connecting();
        c.opened(0);
        c
    }

    #[test]
    fn requests_carry_refs_and_settle_on_the_reply() {
        let mut c = connected();
        let (r, effects) = c.request("chat", Some(json!("hi")), 0);
        assert_eq!(
            sent(&effects),
            vec![json!({"type":"chat","data":"hi","ref":r})]
        );
        let effects = c.message(frame(json!({"type":"ok","ref":r})));
        assert_eq!(effects, vec![settle(r, Ok(None))]);
        let (r, _) = c.request("counter", Some(json!({"value":"x"})), 0);
        let effects = c.message(frame(
            json!({"type":"error","ref":r,"data":{"code":"invalid_data","message":"m"}}),
        ));
        assert_eq!(
            effects,
            vec![settle(r, Err(Failure::new("invalid_data", "m")))]
        );
        assert!(
            c.message(frame(json!({"type":"ok","ref":r}))).is_empty(),
            "a reply settles once"
        );
    }

    #[test]
    fn profile_replies_settle_and_are_events_too() {
        let mut c = connected();
        let (r, _) = c.request("login", Some(json!({"n":1})), 0);
        let effects = c.message(frame(json!({"type":"profile","ref":r,"data":{"id":"u"}})));
        assert_eq!(effects[0], settle(r, Ok(Some(json!({"id":"u"})))));
        assert_eq!(
            effects[1],
            Effect::Event {
                topic: "profile".into(),
                data: Some(json!({"id":"u"})),
                seq: None
            }
        );
    }

    #[test]
    fn offline_requests_queue_up_to_a_bound_and_go_out_on_connect() {
        let mut c = Core::new(Settings {
            max_queue: 2,
            ..Settings::default()
        });
        c.connecting();
        let (a, e) = c.request("chat", Some(json!(1)), 0);
        assert!(e.is_empty());
        c.request("chat", Some(json!(2)), 0);
        let (third, e) = c.request("chat", Some(json!(3)), 0);
        assert!(
            matches!(&e[0], Effect::Settle { reference, result: Err(f) } if *reference == third && f.code == "offline_queue_full")
        );
        let effects = c.opened(10);
        let frames = sent(&effects);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0]["ref"], a);
    }

    #[test]
    fn a_reconnect_logs_in_and_subscribes_again() {
        let mut c = connected();
        c.request("login", Some(json!({"name":"ann"})), 0);
        c.hold("chat", 0);
        c.hold("poll:p", 0);
        c.hold("chat", 0);
        let (delay, effects) = c.closed_socket(0.5);
        assert_eq!(delay, Some(250));
        assert!(effects.iter().any(
            |e| matches!(e, Effect::Settle { result: Err(f), .. } if f.code == "disconnected")
        ));
        c.connecting();
        let frames = sent(&c.opened(1000));
        let kinds: Vec<(String, Value)> = frames
            .iter()
            .map(|f| (f["type"].as_str().unwrap().to_owned(), f["data"].clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("login".into(), json!({"name":"ann"})),
                ("subscribe".into(), json!("chat")),
                ("subscribe".into(), json!("poll:p"))
            ]
        );
        // Internal requests settle nothing.
        let r = frames[1]["ref"].as_u64().unwrap();
        assert!(c.message(frame(json!({"type":"ok","ref":r}))).is_empty());
    }

    #[test]
    fn a_subscription_queued_offline_is_not_sent_twice() {
        let mut c = Core::<Value>::new(Settings::default());
        c.connecting();
        c.request("login", Some(json!({"name":"bo"})), 0);
        c.hold("chat", 0);
        let frames = sent(&c.opened(5));
        let kinds: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, vec!["login", "subscribe"]);
    }

    #[test]
    fn backoff_is_full_jitter_and_capped() {
        let mut c = Core::<Value>::new(Settings {
            min_reconnect_ms: 100,
            max_reconnect_ms: 1000,
            ..Settings::default()
        });
        let delays: Vec<u64> = (0..6).map(|_| c.closed_socket(0.999).0.unwrap()).collect();
        assert_eq!(delays, vec![99, 199, 399, 799, 999, 999]);
        assert_eq!(c.closed_socket(0.0).0, Some(0));
        c.opened(0);
        assert_eq!(
            c.closed_socket(0.999).0,
            Some(99),
            "a connection resets the backoff"
        );
        c.close();
        assert_eq!(c.closed_socket(0.5).0, None, "closed: no reconnect");
    }

    #[test]
    fn handles_share_a_subscription() {
        let mut c = connected();
        let e = c.hold("counter:c", 0);
        assert_eq!(sent(&e).len(), 1);
        assert!(c.hold("counter:c", 0).is_empty());
        assert!(c.release("counter:c", 0).is_empty());
        assert_eq!(sent(&c.release("counter:c", 0))[0]["type"], "unsubscribe");
        assert!(c.release("counter:c", 0).is_empty(), "released twice");
    }

    #[test]
    fn events_are_routed_by_topic_and_pings_answered() {
        let mut c = connected();
        let e = c.message(frame(
            json!({"type":"poll","data":{"id":"p","stats":{"a":1}}}),
        ));
        assert_eq!(e.len(), 2);
        assert!(matches!(&e[0], Effect::Event { topic, .. } if topic == "poll:p"));
        assert!(matches!(&e[1], Effect::Event { topic, .. } if topic == "poll"));
        let e = c.message(frame(json!({"type":"ping","data":5})));
        assert_eq!(sent(&e), vec![json!({"type":"pong","data":5})]);
        let e = c.message(frame(
            json!({"type":"presence:joined","data":{"member":{},"count":2}}),
        ));
        assert!(matches!(&e[0], Effect::Event { topic, .. } if topic == "presence:joined"));
        assert!(c.message(frame(json!("not an object"))).is_empty());
    }

    #[test]
    fn timeouts_reject_sent_and_queued_requests() {
        let mut c = connected();
        let (r, _) = c.request("chat", None, 0);
        assert!(c.tick(9_999).is_empty());
        assert_eq!(
            c.tick(10_000),
            vec![settle(
                r,
                Err(Failure::new("timeout", "no reply from the server in time"))
            )]
        );
        c.closed_socket(0.0);
        let (q, _) = c.request("chat", None, 20_000);
        assert_eq!(c.tick(30_000).len(), 1);
        assert!(sent(&c.opened(30_001)).iter().all(|f| f["ref"] != q));
    }

    #[test]
    fn a_closed_client_rejects_queued_and_new_requests() {
        let mut c = Core::<Value>::new(Settings::default());
        let (q, _) = c.request("chat", Some(json!("x")), 0);
        let effects = c.close();
        assert!(
            matches!(&effects[0], Effect::Settle { reference, result: Err(f) } if *reference == q && f.code == "closed")
        );
        let (_, effects) = c.request("chat", Some(json!("y")), 0);
        assert!(matches!(&effects[0], Effect::Settle { result: Err(f), .. } if f.code == "closed"));
    }

    /// The events fired on `topic`, as (seq, data).
    fn fired(effects: &[Effect<Value>], topic: &str) -> Vec<(Option<u64>, Value)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Event {
                    topic: t,
                    data,
                    seq,
                } if t == topic => Some((*seq, data.clone().unwrap_or(Value::Null))),
                _ => None,
            })
            .collect()
    }

    fn chat(seq: u64) -> Incoming<Value> {
        frame(json!({"type":"chat","data":{"message":seq},"seq":seq}))
    }

    /// A client connected to a room at `e1`/`seq`, subscribed to chat.
    fn in_room(seq: u64) -> Core<Value> {
        let mut c = connected();
        c.hold("chat", 0);
        c.message(frame(
            json!({"type":"profile","data":{"id":"u","pos":{"epoch":"e1","seq":seq}}}),
        ));
        c
    }

    /// Drops the socket and opens a new one; returns the `resume` frame sent, if any.
    fn reconnect(c: &mut Core<Value>) -> (Option<Value>, Vec<Effect<Value>>) {
        c.closed_socket(0.0);
        c.connecting();
        let effects = c.opened(100);
        let resume = sent(&effects).into_iter().find(|f| f["type"] == "resume");
        (resume, effects)
    }

    fn states(effects: &[Effect<Value>]) -> Vec<(State, Option<bool>)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::State { state, recovered } => Some((*state, *recovered)),
                _ => None,
            })
            .collect()
    }

    fn discontinuities(effects: &[Effect<Value>]) -> Vec<(&'static str, Option<Pos>)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Discontinuity { reason, pos } => Some((*reason, pos.clone())),
                _ => None,
            })
            .collect()
    }

    fn pos(epoch: &str, seq: u64) -> Pos {
        Pos {
            epoch: epoch.into(),
            seq,
        }
    }

    #[test]
    fn the_first_connect_is_connected_with_no_recovered_and_takes_the_profiles_position() {
        let mut c = Core::<Value>::new(Settings::default());
        c.connecting();
        assert_eq!(states(&c.opened(0)), vec![(State::Connected, None)]);
        assert!(c.position().is_none());
        c.message(frame(
            json!({"type":"profile","data":{"id":"u","pos":{"epoch":"e1","seq":7}}}),
        ));
        assert_eq!(c.position(), Some(&pos("e1", 7)));
    }

    #[test]
    fn lasting_events_carry_their_seq_and_duplicates_are_dropped() {
        let mut c = in_room(10);
        assert_eq!(fired(&c.message(chat(11)), "chat")[0].0, Some(11));
        assert!(c.message(chat(11)).is_empty(), "a duplicate");
        assert!(c.message(chat(9)).is_empty(), "before the known position");
        assert_eq!(
            fired(&c.message(chat(14)), "chat").len(),
            1,
            "gaps are fine"
        );
        assert_eq!(c.position(), Some(&pos("e1", 14)));
        // Frames without a seq (presence, snapshots) are never dropped.
        let presence = json!({"type":"presence:joined","data":{"count":2}});
        assert_eq!(c.message(frame(presence.clone())).len(), 1);
        assert_eq!(c.message(frame(presence)).len(), 1);
    }

    #[test]
    fn a_resume_applies_replayed_and_held_events_in_seq_order_without_duplicates() {
        let mut c = in_room(10);
        c.message(chat(11));
        let (resume, effects) = reconnect(&mut c);
        let resume = resume.expect("a resume after the re-subscribe");
        assert_eq!(resume["data"], json!({"epoch":"e1","seq":11.0}));
        let kinds: Vec<Value> = sent(&effects).iter().map(|f| f["type"].clone()).collect();
        assert_eq!(kinds, vec![json!("subscribe"), json!("resume")]);
        assert!(
            states(&effects).is_empty(),
            "connected is reported once the resume is answered"
        );
        assert_eq!(c.state(), State::Connecting);

        let mut applied = Vec::new();
        // Live events arrive before the replay, out of order, with duplicates.
        for seq in [15, 14] {
            applied.extend(c.message(chat(seq)));
        }
        // The subscription's snapshot and presence carry no seq: they pass at once.
        let snapshot = c.message(frame(json!({"type":"presence","data":{"count":1}})));
        assert_eq!(fired(&snapshot, "presence").len(), 1);
        // The replay: the missed events, one already live, one already applied before.
        for seq in [11, 12, 13, 14] {
            applied.extend(c.message(chat(seq)));
        }
        assert!(applied.is_empty(), "held until the resume is answered");
        let r = resume["ref"].as_u64().unwrap();
        let effects = c.message(frame(json!({"type":"resumed","ref":r,
            "data":{"recovered":true,"missed":4,"pos":{"epoch":"e1","seq":15}}})));
        let seqs: Vec<Option<u64>> = fired(&effects, "chat").iter().map(|e| e.0).collect();
        assert_eq!(seqs, vec![Some(12), Some(13), Some(14), Some(15)]);
        assert_eq!(fired(&effects, "chat")[0].1, json!({"message":12}));
        assert_eq!(states(&effects), vec![(State::Connected, Some(true))]);
        assert!(discontinuities(&effects).is_empty());
        assert!(matches!(effects.last(), Some(Effect::State { .. })));
        // Afterwards: live again, still deduplicated.
        assert!(c.message(chat(15)).is_empty());
        assert_eq!(fired(&c.message(chat(16)), "chat").len(), 1);
        assert_eq!(c.position(), Some(&pos("e1", 16)));
    }

    #[test]
    fn polls_and_counters_replayed_fire_their_id_topics_in_order() {
        let mut c = in_room(0);
        let (resume, _) = reconnect(&mut c);
        let r = resume.unwrap()["ref"].as_u64().unwrap();
        c.message(frame(
            json!({"type":"counter","data":{"id":"k","value":3},"seq":2}),
        ));
        c.message(frame(
            json!({"type":"counter","data":{"id":"k","value":1},"seq":1}),
        ));
        let effects = c.message(frame(json!({"type":"resumed","ref":r,
            "data":{"recovered":true,"missed":2,"pos":{"epoch":"e1","seq":2}}})));
        let values: Vec<Value> = fired(&effects, "counter:k")
            .into_iter()
            .map(|(_, d)| d["value"].clone())
            .collect();
        assert_eq!(values, vec![json!(1), json!(3)]);
    }

    #[test]
    fn not_recovered_is_a_discontinuity_and_drops_what_the_snapshots_hold() {
        let mut c = in_room(10);
        let (resume, _) = reconnect(&mut c);
        let r = resume.unwrap()["ref"].as_u64().unwrap();
        c.message(chat(40));
        c.message(chat(43));
        let effects = c.message(frame(json!({"type":"resumed","ref":r,
            "data":{"recovered":false,"missed":0,"pos":{"epoch":"e1","seq":42}}})));
        let seqs: Vec<Option<u64>> = fired(&effects, "chat").iter().map(|e| e.0).collect();
        assert_eq!(seqs, vec![Some(43)], "40 is in the snapshots (pos 42)");
        assert_eq!(
            discontinuities(&effects),
            vec![(reasons::NOT_RECOVERED, Some(pos("e1", 43)))]
        );
        assert_eq!(states(&effects), vec![(State::Connected, Some(false))]);
        assert_eq!(c.state(), State::Connected);
    }

    #[test]
    fn a_new_epoch_is_a_discontinuity_in_the_resume_answer_or_in_a_profile() {
        let mut c = in_room(10);
        let (resume, _) = reconnect(&mut c);
        let r = resume.unwrap()["ref"].as_u64().unwrap();
        // The connect profile shows the new epoch; the resume answer decides.
        let p = c.message(frame(
            json!({"type":"profile","data":{"id":"u","pos":{"epoch":"e2","seq":3}}}),
        ));
        assert!(discontinuities(&p).is_empty());
        let effects = c.message(frame(json!({"type":"resumed","ref":r,
            "data":{"recovered":false,"missed":0,"pos":{"epoch":"e2","seq":3}}})));
        assert_eq!(
            discontinuities(&effects),
            vec![(reasons::EPOCH_CHANGED, Some(pos("e2", 3)))]
        );
        assert_eq!(c.position(), Some(&pos("e2", 3)));
        assert_eq!(fired(&c.message(chat(4)), "chat").len(), 1);

        // A profile with another epoch while connected (no resume pending).
        let effects = c.message(frame(
            json!({"type":"profile","data":{"id":"u","pos":{"epoch":"e3","seq":1}}}),
        ));
        assert_eq!(
            discontinuities(&effects),
            vec![(reasons::EPOCH_CHANGED, Some(pos("e3", 1)))]
        );
        assert_eq!(fired(&effects, "profile").len(), 1);
        assert_eq!(fired(&c.message(chat(2)), "chat").len(), 1);
        // The same epoch again changes nothing (the seq stays the last applied one).
        let effects = c.message(frame(
            json!({"type":"profile","data":{"id":"u","pos":{"epoch":"e3","seq":9}}}),
        ));
        assert!(discontinuities(&effects).is_empty());
        assert_eq!(c.position(), Some(&pos("e3", 2)));
    }

    #[test]
    fn a_refused_or_unanswered_resume_is_a_discontinuity_and_applies_what_was_held() {
        let mut c = in_room(10);
        let (resume, _) = reconnect(&mut c);
        let r = resume.unwrap()["ref"].as_u64().unwrap();
        c.message(chat(13));
        c.message(chat(12));
        let effects = c.message(frame(json!({"type":"error","ref":r,
            "data":{"code":"unknown_type","message":"m"}})));
        let seqs: Vec<Option<u64>> = fired(&effects, "chat").iter().map(|e| e.0).collect();
        assert_eq!(seqs, vec![Some(12), Some(13)]);
        assert_eq!(discontinuities(&effects)[0].0, reasons::RESUME_FAILED);
        assert_eq!(states(&effects), vec![(State::Connected, Some(false))]);

        let (resume, _) = reconnect(&mut c);
        assert_eq!(resume.unwrap()["data"]["seq"], json!(13.0));
        assert!(c.tick(10_099).is_empty());
        let effects = c.tick(10_100);
        assert_eq!(discontinuities(&effects)[0].0, reasons::RESUME_FAILED);
        assert_eq!(states(&effects), vec![(State::Connected, Some(false))]);
    }

    #[test]
    fn a_drop_while_resuming_forgets_what_was_held_and_resumes_from_the_last_applied() {
        let mut c = in_room(10);
        c.message(chat(11));
        reconnect(&mut c);
        c.message(chat(15));
        let (resume, _) = reconnect(&mut c);
        assert_eq!(resume.unwrap()["data"], json!({"epoch":"e1","seq":11.0}));
    }

    #[test]
    fn a_reconnect_with_no_known_position_reports_not_recovered() {
        let mut c = connected();
        c.hold("chat", 0);
        let (resume, effects) = reconnect(&mut c);
        assert!(resume.is_none());
        assert_eq!(discontinuities(&effects)[0].0, reasons::NO_POSITION);
        assert_eq!(states(&effects), vec![(State::Connected, Some(false))]);
    }

    #[test]
    fn requests_made_while_resuming_go_out_at_once() {
        let mut c = in_room(1);
        reconnect(&mut c);
        let (r, effects) = c.request("chat", Some(json!("now")), 0);
        assert_eq!(sent(&effects)[0]["ref"], json!(r));
    }

    #[test]
    fn a_socket_that_closes_before_it_opens_is_a_connect_failure() {
        let mut c = Core::<Value>::new(Settings::default());
        c.connecting();
        let (_, effects) = c.closed_socket(0.0);
        assert_eq!(effects[0], Effect::ConnectFailed);
        c.connecting();
        c.opened(0);
        let (_, effects) = c.closed_socket(0.0);
        assert!(!effects.contains(&Effect::ConnectFailed), "it had opened");
        c.connecting();
        c.close();
        let (_, effects) = c.closed_socket(0.0);
        assert!(
            !effects.contains(&Effect::ConnectFailed),
            "closed by the app"
        );
    }

    #[test]
    fn counter_changes_must_be_finite_numbers() {
        let mut c = connected();
        // `None`: not a number ("x", "5", null, an object); NaN and the infinities are
        // numbers to JS, printed as `null` by JSON.
        for bad in [
            None,
            Some(f64::NAN),
            Some(f64::INFINITY),
            Some(f64::NEG_INFINITY),
        ] {
            let (r, effects) = c.counter_add("k", bad, 0);
            assert!(sent(&effects).is_empty(), "{bad:?} is not sent");
            assert!(
                matches!(&effects[..], [Effect::Settle { reference, result: Err(f) }] if *reference == r && f.code == "invalid_data"),
                "{bad:?}"
            );
        }
        let (_, effects) = c.counter_add("k", Some(-2.5), 0);
        assert_eq!(sent(&effects)[0]["data"], json!({"id":"k","value":-2.5}));
    }

    #[test]
    fn history_requests_carry_their_options_and_refuse_bad_ones() {
        let mut c = connected();
        let (r, effects) = c.history(None, 0);
        assert_eq!(
            sent(&effects),
            vec![json!({"type":"history","ref":r,"data":{}})]
        );
        let options = json!({"limit": 20, "before": 31});
        let (_, effects) = c.history(Some(&options), 0);
        assert_eq!(
            sent(&effects)[0]["data"],
            json!({"limit":20.0,"before":31.0})
        );
        let options = json!({"limit": null});
        assert_eq!(sent(&c.history(Some(&options), 0).1)[0]["data"], json!({}));
        for bad in [
            json!({"limit":-1}),
            json!({"limit":1.5}),
            json!({"before":-1}),
            json!({"limit":"5"}),
        ] {
            let (_, effects) = c.history(Some(&bad), 0);
            assert!(sent(&effects).is_empty(), "{bad}");
            assert!(
                matches!(&effects[0], Effect::Settle { result: Err(f), .. } if f.code == "invalid_data")
            );
        }
        // The answer settles the promise with the page, and fires no event.
        let page = json!({"events":[{"type":"chat","data":{"message":1},"seq":1}],"pos":{"epoch":"e","seq":1}});
        let effects = c.message(frame(json!({"type":"history","ref":r,"data":page.clone()})));
        assert_eq!(effects, vec![settle(r, Ok(Some(page)))]);
    }

    #[test]
    fn every_url_form_reaches_the_websocket_endpoint() {
        let cases = [
            ("ws://h:8080", "ws://h:8080/websocket?room=r"),
            ("ws://h:8080/", "ws://h:8080/websocket?room=r"),
            ("ws://h:8080/websocket", "ws://h:8080/websocket?room=r"),
            ("ws://h:8080/websocket/", "ws://h:8080/websocket?room=r"),
            (
                "  wss://h/websocket?x=1#frag",
                "wss://h/websocket?x=1&room=r",
            ),
            ("ws://h?x=1", "ws://h/websocket?x=1&room=r"),
            ("ws://h/?room=old&x=1", "ws://h/websocket?x=1&room=r"),
            ("ws://h/prefix", "ws://h/prefix/websocket?room=r"),
            ("ws://h/prefix/websocket?", "ws://h/prefix/websocket?room=r"),
            ("http://h:1/", "ws://h:1/websocket?room=r"),
            ("HTTPS://h", "wss://h/websocket?room=r"),
        ];
        for (given, want) in cases {
            assert_eq!(endpoint(given, "r", None).unwrap(), want, "{given}");
        }
        assert_eq!(
            endpoint("ws://h/websocket?token=old", "a b/é", Some("t&=")).unwrap(),
            "ws://h/websocket?room=a%20b%2F%C3%A9&token=t%26%3D"
        );
        assert_eq!(
            endpoint("ws://h/websocket?token=kept", "r", None).unwrap(),
            "ws://h/websocket?token=kept&room=r"
        );
        for bad in [
            "localhost:8080",
            "ftp://h",
            "ws://",
            "ws:///x",
            "",
            "/websocket",
        ] {
            assert_eq!(
                endpoint(bad, "r", None).unwrap_err().code,
                "invalid_url",
                "{bad}"
            );
        }
    }

    #[test]
    fn token_expired_asks_for_a_token_and_refresh_settles_on_refreshed() {
        let mut core = Core::<Value>::new(Settings::default());
        core.connecting();
        core.opened(0);
        let told = json!({"type":"error","data":{"code":"token_expired","message":"m"}});
        assert_eq!(core.message(frame(told)), vec![Effect::TokenExpired]);
        // Other errors without a ref ask for nothing.
        let other = json!({"type":"error","data":{"code":"invalid_token","message":"m"}});
        assert!(core.message(frame(other)).is_empty());
        let (r, effects) = core.refresh("fresh.jwt.sig", Some(90_000), 10);
        assert_eq!(
            sent(&effects),
            vec![json!({"type":"refresh","ref":r,"data":{"token":"fresh.jwt.sig"}})]
        );
        let reply = json!({"type":"refreshed","ref":r,"data":{"exp":90}});
        assert_eq!(
            core.message(frame(reply)),
            vec![Effect::Settle {
                reference: r,
                result: Ok(Some(json!({"exp":90})))
            }]
        );
        let (r, _) = core.refresh("other.jwt.sig", None, 20);
        let refused = json!({"type":"error","ref":r,"data":{"code":"invalid_token","message":"another user"}});
        assert!(matches!(
            &core.message(frame(refused))[..],
            [Effect::Settle { result: Err(f), .. }] if f.code == "invalid_token"
        ));
    }

    #[test]
    fn a_token_near_its_exp_is_stale_before_a_reconnect() {
        let mut core = Core::<Value>::new(Settings::default());
        assert!(!core.token_stale(1_000), "no token");
        core.set_token_exp(Some(100_000));
        assert!(!core.token_stale(94_000));
        assert!(core.token_stale(95_000), "within the margin");
        assert!(core.token_stale(200_000));
        core.set_token_exp(None);
        assert!(!core.token_stale(200_000), "no exp: never stale");
    }

    #[test]
    fn jwt_payloads_become_padded_base64() {
        assert_eq!(
            jwt_payload_base64("h.eyJzdWIiOiJhIn0.s").as_deref(),
            Some("eyJzdWIiOiJhIn0=")
        );
        assert_eq!(jwt_payload_base64("h.a-b_.s").as_deref(), Some("a+b/"));
        assert_eq!(jwt_payload_base64("nodots"), None);
        assert_eq!(jwt_payload_base64("h..s"), None);
    }
}
