//! Rookery's browser SDK: a typed client of the `pact` dialect and its native extensions
//! (SPEC §2, §6), compiled to WebAssembly with wasm-bindgen.
//!
//! The logic lives in [`core`] (no IO, tested natively); this module is the browser shell:
//! the WebSocket, timers, JS promises and callbacks. Every request carries a `ref`; its
//! promise settles on the server's direct reply, or rejects with an `Error` whose `code` is
//! the server's error code (or `timeout`, `disconnected`, `offline_queue_full`, `closed`).

pub mod core;

use crate::core::{Core, Data, Effect, Failure, Incoming, Outgoing, Settings, State};
use js_sys::{Array, Function, Object, Promise, Reflect, JSON};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{MessageEvent, WebSocket};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** Options of `new RookeryClient(url, options)`. */
export interface ClientOptions {
  /** The room to join. */
  room: string;
  /** A JWT (HS256, `sub` = user id), sent as `?token=`. */
  token?: string;
  /** Properties to `login` with on every (re)connect. */
  properties?: Record<string, unknown>;
  /** Full-jitter exponential backoff bounds (defaults 500 ms and 20 s). */
  minReconnectDelayMs?: number;
  maxReconnectDelayMs?: number;
  /** Requests queued while offline (default 100); more are rejected. */
  maxQueue?: number;
  /** A request unanswered this long is rejected with code `timeout` (default 10 s). */
  requestTimeoutMs?: number;
}
export type ConnectionState = "connecting" | "connected" | "disconnected";
/** What can travel in a frame. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export interface Profile {
  id: string;
  suffix: number;
  properties: Record<string, unknown>;
  connectionDetails: Record<string, unknown>;
  role: "user" | "admin";
}
export interface Member { id: string; suffix: number; properties: Record<string, unknown>; }
export interface PollStats { id: string; stats: Record<string, number>; }
export interface CounterValue { id: string; value: number; }
export interface PresenceDiff { member: Member; count: number; }
/** A `chat` event. */
export interface ChatMessage { user: Member; message: JsonValue; }
/** A rejected request: `code` is the server's error code, or `timeout`, `disconnected`,
 *  `offline_queue_full`, `closed`. */
export interface RookeryError extends Error { code: string; }
"#;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(callback: &Function, ms: i32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);
    #[wasm_bindgen(js_name = setInterval)]
    fn set_interval(callback: &Function, ms: i32) -> JsValue;
    #[wasm_bindgen(js_name = clearInterval)]
    fn clear_interval(id: &JsValue);
}

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// Payloads stay JS values: the browser's `JSON` parses and prints them.
impl Data for JsValue {
    fn string(text: &str) -> JsValue {
        text.into()
    }
    fn as_text(&self) -> Option<String> {
        self.as_string()
    }
    fn text_at(&self, key: &str) -> Option<String> {
        get(self, key).as_string()
    }
}

/// `value[key]`, `undefined` when `value` is not an object or lacks it.
fn get(value: &JsValue, key: &str) -> JsValue {
    if !value.is_object() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(value, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

fn set(target: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(target, &key.into(), value);
}

/// Reads a server frame's `type`, `ref` and `data`.
fn read(text: &str) -> Incoming<JsValue> {
    let frame = JSON::parse(text).unwrap_or(JsValue::NULL);
    let reference = get(&frame, "ref")
        .as_f64()
        .filter(|r| *r >= 0.0 && r.fract() == 0.0)
        .map(|r| r as u64);
    let data = get(&frame, "data");
    Incoming {
        kind: get(&frame, "type").as_string().unwrap_or_default(),
        reference,
        data: (!data.is_undefined()).then_some(data),
    }
}

/// Prints a frame to send.
fn print(frame: &Outgoing<JsValue>) -> Option<String> {
    let object = Object::new();
    set(&object, "type", &frame.kind.as_str().into());
    if let Some(reference) = frame.reference {
        set(&object, "ref", &(reference as f64).into());
    }
    if let Some(data) = &frame.data {
        set(&object, "data", data);
    }
    JSON::stringify(&object).ok()?.as_string()
}

/// Who listens to a topic: an app callback, or a handle keeping its own state.
#[derive(Clone)]
enum Listener {
    Js(Function),
    Rust(Rc<dyn Fn(&JsValue)>),
}

struct Inner {
    url: String,
    core: Core<JsValue>,
    socket: Option<WebSocket>,
    /// The socket's callbacks, kept alive while it is open.
    callbacks: Vec<Closure<dyn FnMut(JsValue)>>,
    /// Each request's promise: reference, resolve, reject.
    promises: Vec<(u64, Function, Function)>,
    /// Topic, listener id, listener.
    listeners: Vec<(String, u32, Listener)>,
    next_listener: u32,
    state_listeners: Vec<Function>,
    connected_waiters: Vec<Function>,
    timer: Option<JsValue>,
    ticker: Option<(JsValue, Closure<dyn FnMut()>)>,
    reconnect: Option<Closure<dyn FnMut()>>,
}

type Shared = Rc<RefCell<Inner>>;

/// A Rookery connection (pact dialect) that reconnects by itself.
#[wasm_bindgen]
pub struct RookeryClient {
    inner: Shared,
}

fn js_error(failure: &Failure) -> JsValue {
    let error = js_sys::Error::new(&failure.message);
    set(&error, "code", &failure.code.as_str().into());
    error.into()
}

/// Settles the promise of `reference`, if it is still waiting.
fn settle(shared: &Shared, reference: u64, result: Result<JsValue, JsValue>) {
    let promise = {
        let mut inner = shared.borrow_mut();
        let at = inner.promises.iter().position(|(r, _, _)| *r == reference);
        at.map(|at| inner.promises.swap_remove(at))
    };
    if let Some((_, resolve, reject)) = promise {
        let _ = match result {
            Ok(value) => resolve.call1(&JsValue::NULL, &value),
            Err(error) => reject.call1(&JsValue::NULL, &error),
        };
    }
}

/// Carries out the core's effects, calling into JS only with no borrow held.
fn apply(shared: &Shared, effects: Vec<Effect<JsValue>>) {
    for effect in effects {
        match effect {
            Effect::Send(frame) => {
                let socket = shared.borrow().socket.clone();
                if let (Some(socket), Some(text)) = (socket, print(&frame)) {
                    let _ = socket.send_with_str(&text);
                }
            }
            Effect::Settle { reference, result } => {
                let result = match result {
                    Ok(value) => Ok(value.unwrap_or(JsValue::UNDEFINED)),
                    Err(failure) => Err(js_error(&failure)),
                };
                settle(shared, reference, result);
            }
            Effect::Event { topic, data } => {
                let listeners: Vec<Listener> = shared
                    .borrow()
                    .listeners
                    .iter()
                    .filter(|(t, _, _)| *t == topic)
                    .map(|(_, _, l)| l.clone())
                    .collect();
                let data = data.unwrap_or(JsValue::UNDEFINED);
                for listener in listeners {
                    match listener {
                        Listener::Js(f) => {
                            let _ = f.call1(&JsValue::NULL, &data);
                        }
                        Listener::Rust(f) => f(&data),
                    }
                }
            }
            Effect::State(state) => {
                let (listeners, waiters) = {
                    let mut inner = shared.borrow_mut();
                    let waiters = if state == State::Connected {
                        std::mem::take(&mut inner.connected_waiters)
                    } else {
                        Vec::new()
                    };
                    (inner.state_listeners.clone(), waiters)
                };
                for f in listeners {
                    let _ = f.call1(&JsValue::NULL, &state.name().into());
                }
                for f in waiters {
                    let _ = f.call0(&JsValue::NULL);
                }
            }
        }
    }
}

/// Opens a socket and wires its events to the core.
fn open(shared: &Shared) {
    let effects = shared.borrow_mut().core.connecting();
    apply(shared, effects);
    let url = shared.borrow().url.clone();
    let socket = match WebSocket::new(&url) {
        Ok(socket) => socket,
        Err(_) => {
            let (delay, effects) = shared
                .borrow_mut()
                .core
                .closed_socket(js_sys::Math::random());
            apply(shared, effects);
            return schedule_reconnect(shared, delay);
        }
    };
    let on_open = {
        let shared = shared.clone();
        Closure::<dyn FnMut(JsValue)>::new(move |_| {
            let effects = shared.borrow_mut().core.opened(now_ms());
            apply(&shared, effects);
        })
    };
    let on_message = {
        let shared = shared.clone();
        Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
            // Not `dyn_into`: Node's WebSocket (undici) dispatches its own MessageEvent
            // class, which fails an `instanceof` against the global one.
            let event: MessageEvent = event.unchecked_into();
            if let Some(text) = event.data().as_string() {
                let effects = shared.borrow_mut().core.message(read(&text));
                apply(&shared, effects);
            }
        })
    };
    let on_close = {
        let shared = shared.clone();
        Closure::<dyn FnMut(JsValue)>::new(move |_event: JsValue| {
            let (delay, effects) = {
                let mut inner = shared.borrow_mut();
                inner.socket = None;
                inner.core.closed_socket(js_sys::Math::random())
            };
            apply(&shared, effects);
            schedule_reconnect(&shared, delay);
        })
    };
    socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    let mut inner = shared.borrow_mut();
    inner.socket = Some(socket);
    inner.callbacks = vec![on_open, on_message, on_close];
}

/// Opens a new socket after `delay` ms (`None`: the client was closed, nothing to do).
fn schedule_reconnect(shared: &Shared, delay: Option<u64>) {
    let Some(delay) = delay else { return };
    let weak = Rc::downgrade(shared);
    let callback = Closure::<dyn FnMut()>::new(move || {
        if let Some(shared) = weak.upgrade() {
            shared.borrow_mut().timer = None;
            open(&shared);
        }
    });
    let id = set_timeout(callback.as_ref().unchecked_ref(), delay as i32);
    let mut inner = shared.borrow_mut();
    inner.timer = Some(id);
    inner.reconnect = Some(callback);
}

/// Makes a request and returns the promise settled by its reply. Data JSON cannot print
/// (a cycle, a BigInt) is rejected at once with code `invalid_data`; `undefined` is `null`.
fn request(shared: &Shared, kind: &'static str, data: Option<JsValue>) -> Promise {
    let shared = shared.clone();
    let data = data.map(|d| if d.is_undefined() { JsValue::NULL } else { d });
    Promise::new(&mut move |resolve, reject| {
        if let Some(data) = &data {
            if JSON::stringify(data).is_err() {
                let failure = Failure {
                    code: "invalid_data".into(),
                    message: "the data cannot be sent as JSON".into(),
                };
                let _ = reject.call1(&JsValue::NULL, &js_error(&failure));
                return;
            }
        }
        let (reference, effects) = shared
            .borrow_mut()
            .core
            .request(kind, data.clone(), now_ms());
        shared
            .borrow_mut()
            .promises
            .push((reference, resolve, reject));
        apply(&shared, effects);
    })
}

fn listen(shared: &Shared, topic: &str, listener: Listener) -> u32 {
    let mut inner = shared.borrow_mut();
    inner.next_listener += 1;
    let id = inner.next_listener;
    inner.listeners.push((topic.into(), id, listener));
    id
}

fn unlisten(shared: &Shared, id: u32) {
    shared.borrow_mut().listeners.retain(|(_, i, _)| *i != id);
}

/// Subscribes `topic` for a handle: the server subscription is shared by handles.
fn hold(shared: &Shared, topic: &str) {
    let effects = shared.borrow_mut().core.hold(topic, now_ms());
    apply(shared, effects);
}

fn release(shared: &Shared, topic: &str) {
    let effects = shared.borrow_mut().core.release(topic, now_ms());
    apply(shared, effects);
}

/// A number option, if given.
fn number(options: &JsValue, key: &str) -> Option<f64> {
    get(options, key).as_f64()
}

/// Appends `key=value` (value URI-encoded) to a query string.
fn query(url: &mut String, key: &str, value: &str) {
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str(key);
    url.push('=');
    url.push_str(&String::from(js_sys::encode_uri_component(value)));
}

#[wasm_bindgen]
impl RookeryClient {
    /// Connects to `url` (e.g. `ws://localhost:8080`) and keeps the connection up.
    #[wasm_bindgen(constructor)]
    pub fn new(
        url: &str,
        #[wasm_bindgen(unchecked_param_type = "ClientOptions")] options: JsValue,
    ) -> Result<RookeryClient, JsValue> {
        let Some(room) = get(&options, "room").as_string() else {
            return Err(js_sys::Error::new("options.room is required").into());
        };
        let mut full = String::from(url.trim_end_matches('/'));
        full.push_str("/websocket");
        query(&mut full, "room", &room);
        if let Some(token) = get(&options, "token").as_string() {
            query(&mut full, "token", &token);
        }
        let defaults = Settings::default();
        let millis = |key, default: u64| number(&options, key).map_or(default, |v| v as u64);
        let settings = Settings {
            min_reconnect_ms: millis("minReconnectDelayMs", defaults.min_reconnect_ms),
            max_reconnect_ms: millis("maxReconnectDelayMs", defaults.max_reconnect_ms),
            max_queue: number(&options, "maxQueue").map_or(defaults.max_queue, |v| v as usize),
            request_timeout_ms: millis("requestTimeoutMs", defaults.request_timeout_ms),
        };
        let inner = Rc::new(RefCell::new(Inner {
            url: full,
            core: Core::new(settings),
            socket: None,
            callbacks: Vec::new(),
            promises: Vec::new(),
            listeners: Vec::new(),
            next_listener: 0,
            state_listeners: Vec::new(),
            connected_waiters: Vec::new(),
            timer: None,
            ticker: None,
            reconnect: None,
        }));
        // Timeouts of requests are checked every 250 ms.
        let weak = Rc::downgrade(&inner);
        let tick = Closure::<dyn FnMut()>::new(move || {
            if let Some(shared) = weak.upgrade() {
                let effects = shared.borrow_mut().core.tick(now_ms());
                apply(&shared, effects);
            }
        });
        let id = set_interval(tick.as_ref().unchecked_ref(), 250);
        inner.borrow_mut().ticker = Some((id, tick));
        let properties = get(&options, "properties");
        if properties.is_object() {
            let (_, effects) = inner
                .borrow_mut()
                .core
                .request("login", Some(properties), now_ms());
            apply(&inner, effects);
        }
        open(&inner);
        Ok(RookeryClient { inner })
    }

    /// Calls `callback(state)` on every state change.
    #[wasm_bindgen(js_name = onState)]
    pub fn on_state(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(state: ConnectionState) => void")]
        callback: Function,
    ) {
        self.inner.borrow_mut().state_listeners.push(callback);
    }

    /// The current state.
    #[wasm_bindgen(getter, unchecked_return_type = "ConnectionState")]
    pub fn state(&self) -> String {
        self.inner.borrow().core.state().name().into()
    }

    /// Resolves once connected (at once if already).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn connected(&self) -> Promise {
        let inner = self.inner.clone();
        Promise::new(&mut move |resolve, _| {
            if inner.borrow().core.state() == State::Connected {
                let _ = resolve.call0(&JsValue::NULL);
            } else {
                inner.borrow_mut().connected_waiters.push(resolve);
            }
        })
    }

    /// Replaces this connection's properties (`_`-prefixed ones stay private); kept and
    /// sent again after a reconnect.
    #[wasm_bindgen(unchecked_return_type = "Promise<Profile>")]
    pub fn login(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Record<string, unknown>")] properties: JsValue,
    ) -> Promise {
        request(&self.inner, "login", Some(properties))
    }

    /// This connection's profile.
    #[wasm_bindgen(unchecked_return_type = "Promise<Profile>")]
    pub fn profile(&self) -> Promise {
        request(&self.inner, "profile", None)
    }

    /// Sends a chat message to the room's `chat` subscribers.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn chat(
        &self,
        #[wasm_bindgen(unchecked_param_type = "JsonValue")] message: JsValue,
    ) -> Promise {
        request(&self.inner, "chat", Some(message))
    }

    /// Subscribes to `topic` (`"chat"`, `"poll:id"`, a broadcast topic…): `callback(data)`
    /// for each event. Restored after every reconnect.
    pub fn subscribe(
        &self,
        topic: &str,
        #[wasm_bindgen(unchecked_param_type = "(data: unknown) => void")] callback: Function,
    ) -> Subscription {
        let id = listen(&self.inner, topic, Listener::Js(callback));
        hold(&self.inner, topic);
        Subscription {
            inner: self.inner.clone(),
            topic: topic.into(),
            id: Some(id),
        }
    }

    /// A poll handle; `options.ephemeral` for an ephemeral poll.
    pub fn poll(
        &self,
        id: &str,
        #[wasm_bindgen(unchecked_param_type = "{ ephemeral?: boolean } | undefined")]
        options: JsValue,
    ) -> Poll {
        let ephemeral = get(&options, "ephemeral").as_bool().unwrap_or(false);
        let kind = if ephemeral { "ephemeralPoll" } else { "poll" };
        let stats = Rc::new(RefCell::new(JsValue::from(Object::new())));
        let keep = stats.clone();
        let handle = TopicHandle::new(
            &self.inner,
            String::from(kind) + ":" + id,
            Rc::new(move |data: &JsValue| *keep.borrow_mut() = get(data, "stats")),
        );
        Poll {
            handle,
            id: id.into(),
            kind,
            stats,
        }
    }

    /// A counter handle.
    pub fn counter(&self, id: &str) -> Counter {
        let value = Rc::new(RefCell::new(0.0));
        let keep = value.clone();
        let handle = TopicHandle::new(
            &self.inner,
            String::from("counter:") + id,
            Rc::new(move |data: &JsValue| {
                *keep.borrow_mut() = get(data, "value").as_f64().unwrap_or(0.0);
            }),
        );
        Counter {
            handle,
            id: id.into(),
            value,
        }
    }

    /// A presence handle: who is in the room.
    pub fn presence(&self) -> Presence {
        let members: Rc<RefCell<Vec<JsValue>>> = Rc::default();
        // Keeps `members` up to date with one kind of presence event.
        let keeper = |change: u8| -> Rc<dyn Fn(&JsValue)> {
            let keep = members.clone();
            Rc::new(move |data: &JsValue| {
                let mut members = keep.borrow_mut();
                let member = get(data, "member");
                let same = |m: &JsValue| {
                    get(m, "suffix") == get(&member, "suffix") && get(m, "id") == get(&member, "id")
                };
                match change {
                    0 => {
                        let list = get(data, "members");
                        *members = if Array::is_array(&list) {
                            Array::from(&list).iter().collect()
                        } else {
                            Vec::new()
                        };
                    }
                    1 => members.push(member),
                    2 => members.retain(|m| !same(m)),
                    _ => {
                        if let Some(m) = members.iter_mut().find(|m| same(m)) {
                            *m = member;
                        }
                    }
                }
            })
        };
        // One subscription (`presence`) carries the snapshot and every diff topic.
        let mut handle = TopicHandle::new(&self.inner, "presence".into(), keeper(0));
        for (topic, change) in [
            ("presence:joined", 1),
            ("presence:left", 2),
            ("presence:updated", 3),
        ] {
            handle.listen_to(topic, Listener::Rust(keeper(change)));
        }
        Presence { handle, members }
    }

    /// Closes the connection for good: no reconnect; pending requests are rejected.
    pub fn close(&self) {
        let (socket, effects) = {
            let mut inner = self.inner.borrow_mut();
            if let Some(timer) = inner.timer.take() {
                clear_timeout(&timer);
            }
            if let Some((id, _)) = inner.ticker.take() {
                clear_interval(&id);
            }
            (inner.socket.clone(), inner.core.close())
        };
        apply(&self.inner, effects);
        if let Some(socket) = socket {
            let _ = socket.close();
        }
    }
}

/// A subscription made with `client.subscribe`.
#[wasm_bindgen]
pub struct Subscription {
    inner: Shared,
    topic: String,
    id: Option<u32>,
}

#[wasm_bindgen]
impl Subscription {
    pub fn unsubscribe(&mut self) {
        if let Some(id) = self.id.take() {
            unlisten(&self.inner, id);
            release(&self.inner, &self.topic);
        }
    }
}

/// One server subscription held by a handle: the handle's own listeners (keeping its
/// state), the app's callbacks (on its topic, or on topics it carries, like presence's
/// diffs), and its share of the subscription.
struct TopicHandle {
    inner: Shared,
    topic: String,
    listeners: Vec<u32>,
}

impl TopicHandle {
    fn new(inner: &Shared, topic: String, keep: Rc<dyn Fn(&JsValue)>) -> TopicHandle {
        let listener = listen(inner, &topic, Listener::Rust(keep));
        hold(inner, &topic);
        TopicHandle {
            inner: inner.clone(),
            topic,
            listeners: vec![listener],
        }
    }

    /// Adds a listener on `topic`, which the handle's subscription carries.
    fn listen_to(&mut self, topic: &str, listener: Listener) {
        self.listeners.push(listen(&self.inner, topic, listener));
    }

    fn on(&mut self, callback: Function) {
        let topic = self.topic.clone();
        self.listen_to(&topic, Listener::Js(callback));
    }

    fn release(&mut self) {
        if self.listeners.is_empty() {
            return;
        }
        for id in self.listeners.drain(..) {
            unlisten(&self.inner, id);
        }
        release(&self.inner, &self.topic);
    }
}

/// A poll: its live stats, votes, and update events.
#[wasm_bindgen]
pub struct Poll {
    handle: TopicHandle,
    id: String,
    kind: &'static str,
    stats: Rc<RefCell<JsValue>>,
}

#[wasm_bindgen]
impl Poll {
    /// Votes `answer` (moving an earlier vote).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn vote(
        &self,
        #[wasm_bindgen(unchecked_param_type = "JsonValue")] answer: JsValue,
    ) -> Promise {
        let vote = Object::new();
        set(&vote, "id", &self.id.as_str().into());
        set(&vote, "answer", &answer);
        request(&self.handle.inner, self.kind, Some(vote.into()))
    }

    /// The latest stats: answer → votes.
    #[wasm_bindgen(getter, unchecked_return_type = "Record<string, number>")]
    pub fn stats(&self) -> JsValue {
        self.stats.borrow().clone()
    }

    /// `callback({id, stats})` on every change.
    #[wasm_bindgen(js_name = onUpdate)]
    pub fn on_update(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "(update: PollStats) => void")] callback: Function,
    ) {
        self.handle.on(callback);
    }

    /// Stops this handle's updates.
    pub fn release(&mut self) {
        self.handle.release();
    }
}

/// A counter: its live value, changes, and change events.
#[wasm_bindgen]
pub struct Counter {
    handle: TopicHandle,
    id: String,
    value: Rc<RefCell<f64>>,
}

#[wasm_bindgen]
impl Counter {
    /// Adds `delta` (negative to subtract).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn add(&self, delta: f64) -> Promise {
        let change = Object::new();
        set(&change, "id", &self.id.as_str().into());
        set(&change, "value", &delta.into());
        request(&self.handle.inner, "counter", Some(change.into()))
    }

    #[wasm_bindgen(getter)]
    pub fn value(&self) -> f64 {
        *self.value.borrow()
    }

    /// `callback({id, value})` on every change.
    #[wasm_bindgen(js_name = onChange)]
    pub fn on_change(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "(change: CounterValue) => void")] callback: Function,
    ) {
        self.handle.on(callback);
    }

    /// Stops this handle's updates.
    pub fn release(&mut self) {
        self.handle.release();
    }
}

/// Who is in the room.
#[wasm_bindgen]
pub struct Presence {
    handle: TopicHandle,
    members: Rc<RefCell<Vec<JsValue>>>,
}

#[wasm_bindgen]
impl Presence {
    #[wasm_bindgen(getter, unchecked_return_type = "Member[]")]
    pub fn members(&self) -> Array {
        self.members.borrow().iter().collect()
    }

    #[wasm_bindgen(getter)]
    pub fn count(&self) -> usize {
        self.members.borrow().len()
    }

    #[wasm_bindgen(js_name = onJoin)]
    pub fn on_join(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "(diff: PresenceDiff) => void")] callback: Function,
    ) {
        self.handle
            .listen_to("presence:joined", Listener::Js(callback));
    }

    #[wasm_bindgen(js_name = onLeave)]
    pub fn on_leave(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "(diff: PresenceDiff) => void")] callback: Function,
    ) {
        self.handle
            .listen_to("presence:left", Listener::Js(callback));
    }

    #[wasm_bindgen(js_name = onUpdate)]
    pub fn on_update(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "(diff: PresenceDiff) => void")] callback: Function,
    ) {
        self.handle
            .listen_to("presence:updated", Listener::Js(callback));
    }

    /// Stops this handle's updates.
    pub fn release(&mut self) {
        self.handle.release();
    }
}
