//! The client's logic with no IO and no clock: what to send, what a server frame means, when
//! to reconnect. The wasm shell (`lib.rs`) owns the WebSocket, the timers, JSON and the JS
//! promises; it feeds this core events and time and carries out what it returns.
//!
//! Payloads are opaque to the core (`D: Data`, a `JsValue` in the browser): it reads only
//! the few strings it routes by. That keeps a JSON library out of the wasm build — the
//! browser's own `JSON` parses and prints frames — which is most of the SDK's size budget.
//! Tested natively with `serde_json::Value` as the payload.

use rookery_protocol::pact::types;

/// A frame's payload as the core sees it: cloned, and read for a few strings.
pub trait Data: Clone {
    /// A JSON string.
    fn string(text: &str) -> Self;
    /// The text of a JSON string, else `None`.
    fn as_text(&self) -> Option<String>;
    /// The text of the string at `key` of an object, else `None`.
    fn text_at(&self, key: &str) -> Option<String>;
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
    fn new(code: &str, message: &str) -> Failure {
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

/// A frame received, its three fields read by the shell.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming<D> {
    pub kind: String,
    pub reference: Option<u64>,
    pub data: Option<D>,
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
    /// Call the callbacks subscribed to `topic` (e.g. `chat`, `poll:p`) with `data`.
    Event { topic: String, data: Option<D> },
    /// The connection state changed.
    State(State),
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

/// A request made while offline, waiting for a connection.
struct Queued<D> {
    frame: Outgoing<D>,
    at_ms: u64,
}

/// The client's state. Its collections are small `Vec`s scanned linearly: a client holds a
/// handful of requests and topics, and every distinct map type would cost wasm size.
pub struct Core<D> {
    settings: Settings,
    state: State,
    closed: bool,
    next_ref: u64,
    pending: Vec<Pending>,
    queue: Vec<Queued<D>>,
    /// Topics the app holds subscriptions to, with how many handles hold each.
    topics: Vec<(String, usize)>,
    /// The last `login` properties, sent again after a reconnect.
    properties: Option<D>,
    attempt: u32,
}

impl<D: Data> Core<D> {
    pub fn new(settings: Settings) -> Core<D> {
        Core {
            settings,
            state: State::Disconnected,
            closed: false,
            next_ref: 1,
            pending: Vec::new(),
            queue: Vec::new(),
            topics: Vec::new(),
            properties: None,
            attempt: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The shell is opening a socket.
    pub fn connecting(&mut self) -> Vec<Effect<D>> {
        self.set_state(State::Connecting)
    }

    fn set_state(&mut self, state: State) -> Vec<Effect<D>> {
        if self.state == state {
            return Vec::new();
        }
        self.state = state;
        vec![Effect::State(state)]
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
        if self.state == State::Connected {
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
        if self.state != State::Connected {
            return Vec::new();
        }
        self.request(types::UNSUBSCRIBE, Some(D::string(topic)), now_ms)
            .1
    }

    /// The socket opened: log in again, subscribe again, then send what was queued.
    pub fn opened(&mut self, now_ms: u64) -> Vec<Effect<D>> {
        self.attempt = 0;
        let mut effects = self.set_state(State::Connected);
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
        for (kind, data) in again {
            let frame = Outgoing {
                kind: kind.into(),
                reference: Some(self.take_ref()),
                data,
            };
            effects.push(self.sent(frame, now_ms, true));
        }
        for queued in std::mem::take(&mut self.queue) {
            effects.push(self.sent(queued.frame, now_ms, false));
        }
        effects
    }

    /// The socket closed. Requests in flight are rejected (`disconnected`: the server may
    /// or may not have applied them); queued ones wait for the next connection. Returns the
    /// delay before reconnecting (`None` once closed by the app): full jitter,
    /// `random * min(max, min * 2^attempt)` with `random` in [0, 1).
    pub fn closed_socket(&mut self, random: f64) -> (Option<u64>, Vec<Effect<D>>) {
        let mut effects = self.set_state(State::Disconnected);
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
        effects.extend(self.set_state(State::Disconnected));
        effects
    }

    /// Requests past their deadline, sent or queued, are rejected (`timeout`).
    pub fn tick(&mut self, now_ms: u64) -> Vec<Effect<D>> {
        let mut late = Vec::new();
        self.pending.retain(|p| {
            let keep = p.deadline_ms > now_ms;
            if !keep && !p.internal {
                late.push(p.reference);
            }
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
        late.into_iter()
            .map(|r| {
                settle(
                    r,
                    Err(Failure::new("timeout", "no reply from the server in time")),
                )
            })
            .collect()
    }

    /// A frame from the server (a frame that was not a JSON object comes with kind `""`).
    pub fn message(&mut self, frame: Incoming<D>) -> Vec<Effect<D>> {
        let Incoming {
            kind,
            reference,
            data,
        } = frame;
        let mut effects = Vec::new();
        let answered = reference.and_then(|r| self.pending.iter().position(|p| p.reference == r));
        if let Some(at) = answered {
            let pending = self.pending.remove(at);
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
            // A direct reply (profile, ok, error) is not also an event.
            if kind != types::PROFILE {
                return effects;
            }
        }
        match kind.as_str() {
            types::PING => effects.push(Effect::Send(Outgoing {
                kind: types::PONG.into(),
                reference: None,
                data,
            })),
            types::POLL | types::EPHEMERAL_POLL | types::COUNTER => {
                let id = data
                    .as_ref()
                    .and_then(|d| d.text_at("id"))
                    .unwrap_or_default();
                effects.push(Effect::Event {
                    topic: kind.clone() + ":" + &id,
                    data: data.clone(),
                });
                effects.push(Effect::Event { topic: kind, data });
            }
            "" | types::OK | types::ERROR => {}
            _ => effects.push(Effect::Event { topic: kind, data }),
        }
        effects
    }
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
        fn as_text(&self) -> Option<String> {
            self.as_str().map(str::to_owned)
        }
        fn text_at(&self, key: &str) -> Option<String> {
            self[key].as_str().map(str::to_owned)
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
                data: Some(json!({"id":"u"}))
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
}
