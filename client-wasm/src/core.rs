//! The client's logic with no IO and no clock: what to send, what a server frame means, when
//! to reconnect. The wasm shell (`lib.rs`) owns the WebSocket, the timers and the JS
//! promises; it feeds this core events and time and carries out what it returns. Tested
//! natively, without a browser.

use rookery_protocol::pact::types;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};

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

/// What the shell must do after feeding the core.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send this text frame now.
    Send(String),
    /// Settle the promise of request `reference`.
    Settle {
        reference: u64,
        result: Result<Value, Failure>,
    },
    /// Call the callbacks subscribed to `topic` (e.g. `chat`, `poll:p`) with `data`.
    Event { topic: String, data: Value },
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

struct Pending {
    deadline_ms: u64,
    /// Requests made by the core itself (re-subscribing after a reconnect) settle nothing.
    internal: bool,
}

pub struct Core {
    settings: Settings,
    state: State,
    closed: bool,
    next_ref: u64,
    /// Sent, awaiting their reply.
    pending: BTreeMap<u64, Pending>,
    /// Not sent yet (offline): reference and frame.
    queue: VecDeque<(u64, String, u64)>,
    /// Topics the app holds subscriptions to, with how many handles hold each.
    topics: BTreeMap<String, usize>,
    /// The last `login` properties, sent again after a reconnect.
    properties: Option<Map<String, Value>>,
    attempt: u32,
}

impl Core {
    pub fn new(settings: Settings) -> Core {
        Core {
            settings,
            state: State::Disconnected,
            closed: false,
            next_ref: 1,
            pending: BTreeMap::new(),
            queue: VecDeque::new(),
            topics: BTreeMap::new(),
            properties: None,
            attempt: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The shell is opening a socket.
    pub fn connecting(&mut self) -> Vec<Effect> {
        self.set_state(State::Connecting)
    }

    fn set_state(&mut self, state: State) -> Vec<Effect> {
        if self.state == state {
            return Vec::new();
        }
        self.state = state;
        vec![Effect::State(state)]
    }

    /// A request of `kind` with `data`: sent now when connected, else queued. Returns its
    /// reference (the promise's key) and what to do.
    pub fn request(&mut self, kind: &str, data: Option<Value>, now_ms: u64) -> (u64, Vec<Effect>) {
        let reference = self.next_ref;
        self.next_ref += 1;
        let mut frame = json!({"type": kind, "ref": reference});
        if let Some(data) = data {
            frame["data"] = data;
        }
        if kind == types::LOGIN {
            self.properties = frame["data"].as_object().cloned().or(Some(Map::new()));
        }
        let frame = frame.to_string();
        if self.closed {
            let failure = Failure::new("closed", "the client is closed");
            return (reference, vec![settle(reference, Err(failure))]);
        }
        if self.state == State::Connected {
            self.pending.insert(
                reference,
                Pending {
                    deadline_ms: now_ms + self.settings.request_timeout_ms,
                    internal: false,
                },
            );
            return (reference, vec![Effect::Send(frame)]);
        }
        if self.queue.len() >= self.settings.max_queue {
            let failure = Failure::new("offline_queue_full", "offline and the send queue is full");
            return (reference, vec![settle(reference, Err(failure))]);
        }
        self.queue.push_back((reference, frame, now_ms));
        (reference, Vec::new())
    }

    /// Adds a handle on `topic`; the first one subscribes. Returns the subscribe request's
    /// reference when one was made.
    pub fn hold(&mut self, topic: &str, now_ms: u64) -> (Option<u64>, Vec<Effect>) {
        let count = self.topics.entry(topic.to_owned()).or_insert(0);
        *count += 1;
        if *count > 1 {
            return (None, Vec::new());
        }
        let (reference, effects) = self.request(types::SUBSCRIBE, Some(json!(topic)), now_ms);
        (Some(reference), effects)
    }

    /// Drops a handle on `topic`; the last one unsubscribes.
    pub fn release(&mut self, topic: &str, now_ms: u64) -> Vec<Effect> {
        match self.topics.get_mut(topic) {
            Some(count) if *count > 1 => {
                *count -= 1;
                Vec::new()
            }
            Some(_) => {
                self.topics.remove(topic);
                if self.state == State::Connected {
                    self.request(types::UNSUBSCRIBE, Some(json!(topic)), now_ms)
                        .1
                } else {
                    Vec::new()
                }
            }
            None => Vec::new(),
        }
    }

    /// The socket opened: log in again, subscribe again, then send what was queued.
    pub fn opened(&mut self, now_ms: u64) -> Vec<Effect> {
        self.attempt = 0;
        let mut effects = self.set_state(State::Connected);
        let internal = |core: &mut Core, frame: Value| {
            let reference = core.next_ref;
            core.next_ref += 1;
            let mut frame = frame;
            frame["ref"] = json!(reference);
            core.pending.insert(
                reference,
                Pending {
                    deadline_ms: now_ms + core.settings.request_timeout_ms,
                    internal: true,
                },
            );
            Effect::Send(frame.to_string())
        };
        let queued_login = self
            .queue
            .iter()
            .any(|(_, f, _)| f.contains("\"type\":\"login\""));
        if let (Some(properties), false) = (self.properties.clone(), queued_login) {
            effects.push(internal(
                self,
                json!({"type": types::LOGIN, "data": properties}),
            ));
        }
        let queued_topics: Vec<String> = self.queue.iter().map(|(_, f, _)| f.clone()).collect();
        let topics: Vec<String> = self.topics.keys().cloned().collect();
        for topic in topics {
            let already = queued_topics.iter().any(|f| {
                f.contains("\"type\":\"subscribe\"")
                    && f.contains(&format!("\"data\":{}", json!(topic)))
            });
            if !already {
                effects.push(internal(
                    self,
                    json!({"type": types::SUBSCRIBE, "data": topic}),
                ));
            }
        }
        while let Some((reference, frame, _)) = self.queue.pop_front() {
            self.pending.insert(
                reference,
                Pending {
                    deadline_ms: now_ms + self.settings.request_timeout_ms,
                    internal: false,
                },
            );
            effects.push(Effect::Send(frame));
        }
        effects
    }

    /// The socket closed. Requests in flight are rejected (`disconnected`: the server may
    /// or may not have applied them); queued ones wait for the next connection. Returns the
    /// delay before reconnecting (`None` once closed by the app): full jitter,
    /// `random * min(max, min * 2^attempt)` with `random` in [0, 1).
    pub fn closed_socket(&mut self, random: f64) -> (Option<u64>, Vec<Effect>) {
        let mut effects = self.set_state(State::Disconnected);
        let in_flight: Vec<(u64, Pending)> =
            std::mem::take(&mut self.pending).into_iter().collect();
        for (reference, pending) in in_flight {
            if !pending.internal {
                let failure =
                    Failure::new("disconnected", "the connection closed before the reply");
                effects.push(settle(reference, Err(failure)));
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
    pub fn close(&mut self) -> Vec<Effect> {
        self.closed = true;
        let mut effects = Vec::new();
        for (reference, _, _) in std::mem::take(&mut self.queue) {
            effects.push(settle(
                reference,
                Err(Failure::new("closed", "the client is closed")),
            ));
        }
        effects.extend(self.set_state(State::Disconnected));
        effects
    }

    /// Requests past their deadline are rejected (`timeout`).
    pub fn tick(&mut self, now_ms: u64) -> Vec<Effect> {
        let late: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline_ms <= now_ms)
            .map(|(r, _)| *r)
            .collect();
        let queued_late: Vec<u64> = self
            .queue
            .iter()
            .filter(|(_, _, at)| at + self.settings.request_timeout_ms <= now_ms)
            .map(|(r, _, _)| *r)
            .collect();
        self.queue.retain(|(r, _, _)| !queued_late.contains(r));
        let mut effects = Vec::new();
        for reference in late.into_iter().chain(queued_late) {
            let internal = self.pending.remove(&reference).is_some_and(|p| p.internal);
            if !internal {
                let failure = Failure::new("timeout", "no reply from the server in time");
                effects.push(settle(reference, Err(failure)));
            }
        }
        effects
    }

    /// A text frame from the server.
    pub fn message(&mut self, text: &str) -> Vec<Effect> {
        let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(text) else {
            return Vec::new();
        };
        let kind = message
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let data = message.remove("data").unwrap_or(Value::Null);
        let mut effects = Vec::new();
        if let Some(reference) = message.get("ref").and_then(Value::as_u64) {
            if let Some(pending) = self.pending.remove(&reference) {
                if !pending.internal {
                    let result = if kind == types::ERROR {
                        Err(Failure {
                            code: data["code"].as_str().unwrap_or("error").to_owned(),
                            message: data["message"].as_str().unwrap_or("").to_owned(),
                        })
                    } else if kind == types::OK {
                        Ok(Value::Null)
                    } else {
                        Ok(data.clone())
                    };
                    effects.push(settle(reference, result));
                }
                // A direct reply (profile, ok, error) is not also an event.
                if kind != types::PROFILE {
                    return effects;
                }
            }
        }
        match kind.as_str() {
            types::PING => {
                effects.push(Effect::Send(
                    json!({"type": types::PONG, "data": data}).to_string(),
                ));
            }
            types::POLL | types::EPHEMERAL_POLL | types::COUNTER => {
                let id = data["id"].as_str().unwrap_or("").to_owned();
                effects.push(Effect::Event {
                    topic: format!("{kind}:{id}"),
                    data: data.clone(),
                });
                effects.push(Effect::Event { topic: kind, data });
            }
            "" | types::OK | types::ERROR => {}
            other => effects.push(Effect::Event {
                topic: other.to_owned(),
                data,
            }),
        }
        effects
    }
}

fn settle(reference: u64, result: Result<Value, Failure>) -> Effect {
    Effect::Settle { reference, result }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(effects: &[Effect]) -> Vec<Value> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send(f) => serde_json::from_str(f).ok(),
                _ => None,
            })
            .collect()
    }

    fn connected() -> Core {
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
        let effects = c.message(&json!({"type":"ok","ref":r}).to_string());
        assert_eq!(effects, vec![settle(r, Ok(Value::Null))]);
        let (r, _) = c.request("counter", Some(json!({"value":"x"})), 0);
        let effects = c.message(
            &json!({"type":"error","ref":r,"data":{"code":"invalid_data","message":"m"}})
                .to_string(),
        );
        assert_eq!(
            effects,
            vec![settle(r, Err(Failure::new("invalid_data", "m")))]
        );
    }

    #[test]
    fn profile_replies_settle_and_are_events_too() {
        let mut c = connected();
        let (r, _) = c.request("login", Some(json!({"n":1})), 0);
        let effects = c.message(&json!({"type":"profile","ref":r,"data":{"id":"u"}}).to_string());
        assert_eq!(effects[0], settle(r, Ok(json!({"id":"u"}))));
        assert_eq!(
            effects[1],
            Effect::Event {
                topic: "profile".into(),
                data: json!({"id":"u"})
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
        assert!(c
            .message(&json!({"type":"ok","ref":r}).to_string())
            .is_empty());
    }

    #[test]
    fn backoff_is_full_jitter_and_capped() {
        let mut c = Core::new(Settings {
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
        let (first, e) = c.hold("counter:c", 0);
        assert!(first.is_some() && sent(&e).len() == 1);
        assert_eq!(c.hold("counter:c", 0).0, None);
        assert!(c.release("counter:c", 0).is_empty());
        assert_eq!(sent(&c.release("counter:c", 0))[0]["type"], "unsubscribe");
    }

    #[test]
    fn events_are_routed_by_topic_and_pings_answered() {
        let mut c = connected();
        let e = c.message(r#"{"type":"poll","data":{"id":"p","stats":{"a":1}}}"#);
        assert_eq!(e.len(), 2);
        assert!(matches!(&e[0], Effect::Event { topic, .. } if topic == "poll:p"));
        let e = c.message(r#"{"type":"ping","data":5}"#);
        assert_eq!(sent(&e), vec![json!({"type":"pong","data":5})]);
        let e = c.message(r#"{"type":"presence:joined","data":{"member":{},"count":2}}"#);
        assert!(matches!(&e[0], Effect::Event { topic, .. } if topic == "presence:joined"));
        assert!(c.message("not json").is_empty());
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
        assert!(c
            .opened(30_001)
            .iter()
            .all(|e| !matches!(e, Effect::Send(f) if f.contains(&format!("\"ref\":{q}")))));
    }
}
