//! Rookery's browser SDK: a typed client of the `pact` dialect and its native extensions
//! (SPEC §2, §6), compiled to WebAssembly with wasm-bindgen.
//!
//! The logic lives in [`core`] (no IO, tested natively); this module is the browser shell:
//! the WebSocket, timers, JS promises and callbacks. Every request carries a `ref`; its
//! promise settles on the server's direct reply, or rejects with an `Error` whose `code` is
//! the server's error code (or `timeout`, `disconnected`, `offline_queue_full`, `closed`,
//! `invalid_data` for data refused before sending).

pub mod core;

use crate::core::{
    endpoint, jwt_payload_base64, whole, write_pos, Core, Data, Effect, Failure, Incoming,
    Outgoing, Settings, State,
};
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
  /** A JWT (`sub` = user id), sent as `?token=`. */
  token?: string;
  /** Gives a fresh token (or a promise of one) for the same user. Called when the server
   *  says the connection's token expired (`token_expired`): the client sends it as a
   *  `refresh` within the server's grace, and the connection stays open. Called too before
   *  a (re)connect when the current token expires within 5 s. A rejection or an empty
   *  token is reported to `onError` (code `token_refresh_failed`); the server then closes
   *  the connection (4001 "token expired") and the client reconnects, asking again. */
  getToken?: () => string | Promise<string>;
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
/** What comes with a state change (the second argument of `onState`'s callback). */
export interface StateInfo {
  /** With `"connected"` after a reconnect: `true` when every event missed while away was
   *  replayed (in order, without duplicates); `false` when the state was reloaded from
   *  snapshots instead (an `onDiscontinuity` event comes too). Absent on the first connect. */
  recovered?: boolean;
  /** With `"disconnected"`: the WebSocket close code (1006: no close frame, or never opened). */
  code?: number;
  /** With `"disconnected"`: why, when known (e.g. `could not connect to ws://…`). */
  reason?: string;
  /** With `"disconnected"`: the URL the client connects to. */
  url?: string;
}
/** A room's stream position: `seq` grows by one per lasting event; `epoch` changes when the
 *  room's history is lost or reset. */
export interface Pos { epoch: string; seq: number; }
/** Events may have been missed: the app should refetch what it shows (e.g. `history()`).
 *  `not_recovered`: the server could not replay them and sent fresh snapshots;
 *  `epoch_changed`: the room's history was reset; `resume_failed`: the server refused or did
 *  not answer the resume; `no_position`: the server never sent a position to resume from. */
export interface Discontinuity {
  reason: "not_recovered" | "epoch_changed" | "resume_failed" | "no_position";
  /** The position known now. */
  pos?: Pos;
}
/** Options of `history()`: up to `limit` events (default and cap: the server's; `0` gives
 *  the position alone), before `seq` `before` (absent: the latest). Non-negative integers. */
export interface HistoryOptions { limit?: number; before?: number; }
/** What can travel in a frame. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export interface Profile {
  id: string;
  suffix: number;
  properties: Record<string, unknown>;
  connectionDetails: Record<string, unknown>;
  role: "user" | "admin";
  /** The room's position when the profile was sent. */
  pos?: Pos;
}
export interface Member { id: string; suffix: number; properties: Record<string, unknown>; }
export interface PollStats { id: string; stats: Record<string, number>; }
export interface CounterValue { id: string; value: number; }
export interface PresenceDiff { member: Member; count: number; }
/** A `chat` event. */
export interface ChatMessage { user: Member; message: JsonValue; }
/** Lasting room events as sent (each with its `seq`): `history()` returns them. Admin
 *  broadcasts carry the `type` their sender chose; compare `type` as a string for those. */
export interface ChatEvent { type: "chat"; data: ChatMessage; seq: number; }
export interface PollEvent { type: "poll" | "ephemeralPoll"; data: PollStats; seq: number; }
export interface CounterEvent { type: "counter"; data: CounterValue; seq: number; }
export interface ConfigEvent { type: "config"; data: string; seq: number; }
/** An emit (`/:channel/emit`, `/api/notify`) or a broadcast. */
export interface BroadcastEvent {
  type: "broadcast"; data: JsonValue; eventID?: string; requires_ack?: boolean; seq: number;
}
export type RoomEvent = ChatEvent | PollEvent | CounterEvent | ConfigEvent | BroadcastEvent;
/** A page of history, oldest first, and the room's position now. */
export interface HistoryPage { events: RoomEvent[]; pos: Pos; }
/** A rejected request, or a connection error (`onError`): `code` is the server's error
 *  code, or `timeout`, `disconnected`, `offline_queue_full`, `closed`, `invalid_data` (data
 *  refused before sending), `invalid_url`, `connect_failed` (with the `url` tried). */
export interface RookeryError extends Error { code: string; url?: string; }
/* The methods with optional arguments, merged into the class below. */
export interface RookeryClient {
  /** A page of the room's lasting events, oldest first, each as it was sent (with `seq`),
   *  and the room's position. */
  history(options?: HistoryOptions): Promise<HistoryPage>;
  /** A poll handle; `options.ephemeral` for an ephemeral poll. */
  poll(id: string, options?: { ephemeral?: boolean }): Poll;
}
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
    #[wasm_bindgen(catch)]
    fn atob(data: &str) -> Result<String, JsValue>;
}

/// A JWT's `exp` in epoch ms (`None`: not a JWT, or no `exp`). The payload is read, not
/// verified: the server verifies; the client only needs to know when to renew.
fn token_exp_ms(token: &str) -> Option<u64> {
    let text = atob(&jwt_payload_base64(token)?).ok()?;
    let payload = JSON::parse(&text).ok()?;
    whole(get(&payload, "exp").as_f64()?).map(|s| s.saturating_mul(1000))
}

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// Payloads stay JS values: the browser's `JSON` parses and prints them.
impl Data for JsValue {
    fn string(text: &str) -> JsValue {
        text.into()
    }
    fn number(value: f64) -> JsValue {
        value.into()
    }
    fn object(fields: &[(&str, JsValue)]) -> JsValue {
        let object = Object::new();
        for (key, value) in fields {
            set(&object, key, value);
        }
        object.into()
    }
    fn as_text(&self) -> Option<String> {
        self.as_string()
    }
    fn as_number(&self) -> Option<f64> {
        self.as_f64()
    }
    fn as_bool(&self) -> Option<bool> {
        JsValue::as_bool(self)
    }
    fn at(&self, key: &str) -> Option<JsValue> {
        Some(get(self, key)).filter(|v| !v.is_null() && !v.is_undefined())
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

/// Reads a server frame's `type`, `ref`, `data` and `seq`.
fn read(text: &str) -> Incoming<JsValue> {
    let frame = JSON::parse(text).unwrap_or(JsValue::NULL);
    let data = get(&frame, "data");
    Incoming {
        kind: get(&frame, "type").as_string().unwrap_or_default(),
        reference: get(&frame, "ref").as_f64().and_then(whole),
        data: (!data.is_undefined()).then_some(data),
        seq: get(&frame, "seq").as_f64().and_then(whole),
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

/// The client's own events, apart from server topics.
#[derive(Clone, Copy, PartialEq)]
enum Hook {
    State,
    Discontinuity,
    Error,
}

/// Who listens to a topic: an app callback, or a handle keeping its own state.
#[derive(Clone)]
enum Listener {
    Js(Function),
    Rust(Rc<dyn Fn(&JsValue)>),
}

struct Inner {
    url: String,
    /// `url` as errors and states show it: a token in it as `***`.
    shown_url: String,
    core: Core<JsValue>,
    socket: Option<WebSocket>,
    /// The socket's callbacks, kept alive while it is open.
    callbacks: Vec<Closure<dyn FnMut(JsValue)>>,
    /// Each request's promise: reference, resolve, reject.
    promises: Vec<(u64, Function, Function)>,
    /// Topic, listener id, listener.
    listeners: Vec<(String, u32, Listener)>,
    next_listener: u32,
    hooks: Vec<(Hook, Function)>,
    /// How the last socket closed: code and reason, for the `disconnected` state.
    close: (u16, String),
    connected_waiters: Vec<Function>,
    timer: Option<JsValue>,
    ticker: Option<(JsValue, Closure<dyn FnMut()>)>,
    reconnect: Option<Closure<dyn FnMut()>>,
    /// The URL and room as given, to build the URL again with a fresh token.
    base_url: String,
    room: String,
    /// The app's `getToken`.
    get_token: Option<Function>,
    /// A `getToken()` call under way, and whether a connect waits for it.
    renewing: Option<bool>,
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
            Effect::Event { topic, data, seq } => {
                let listeners: Vec<Listener> = shared
                    .borrow()
                    .listeners
                    .iter()
                    .filter(|(t, _, _)| *t == topic)
                    .map(|(_, _, l)| l.clone())
                    .collect();
                let data = data.unwrap_or(JsValue::UNDEFINED);
                let seq = seq.map_or(JsValue::UNDEFINED, |s| (s as f64).into());
                for listener in listeners {
                    match listener {
                        Listener::Js(f) => {
                            let _ = f.call2(&JsValue::NULL, &data, &seq);
                        }
                        Listener::Rust(f) => f(&data),
                    }
                }
            }
            Effect::State { state, recovered } => {
                let info = Object::new();
                let waiters = {
                    let mut inner = shared.borrow_mut();
                    if let Some(recovered) = recovered {
                        set(&info, "recovered", &recovered.into());
                    }
                    if state == State::Disconnected {
                        set(&info, "code", &inner.close.0.into());
                        if !inner.close.1.is_empty() {
                            set(&info, "reason", &inner.close.1.as_str().into());
                        }
                        set(&info, "url", &inner.shown_url.as_str().into());
                    }
                    if state == State::Connected {
                        std::mem::take(&mut inner.connected_waiters)
                    } else {
                        Vec::new()
                    }
                };
                call_hooks(shared, Hook::State, &state.name().into(), &info);
                for f in waiters {
                    let _ = f.call0(&JsValue::NULL);
                }
            }
            Effect::Discontinuity { reason, pos } => {
                let info = Object::new();
                set(&info, "reason", &reason.into());
                if let Some(pos) = pos {
                    set(&info, "pos", &write_pos::<JsValue>(&pos));
                }
                call_hooks(shared, Hook::Discontinuity, &info, &JsValue::UNDEFINED);
            }
            Effect::TokenExpired => renew_token(shared, false),
            Effect::ConnectFailed => {
                let url = shared.borrow().shown_url.clone();
                let message = String::from("could not connect to ") + &url;
                let error = js_error(&Failure::new("connect_failed", &message));
                set(error.unchecked_ref(), "url", &url.as_str().into());
                shared.borrow_mut().close.1 = message;
                call_hooks(shared, Hook::Error, &error, &JsValue::UNDEFINED);
            }
        }
    }
}

/// Calls the app's callbacks of `hook` with `(a, b)`.
fn call_hooks(shared: &Shared, hook: Hook, a: &JsValue, b: &JsValue) {
    let hooks: Vec<Function> = shared
        .borrow()
        .hooks
        .iter()
        .filter(|(h, _)| *h == hook)
        .map(|(_, f)| f.clone())
        .collect();
    for f in hooks {
        let _ = f.call2(&JsValue::NULL, a, b);
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
            let (delay, effects) = {
                let mut inner = shared.borrow_mut();
                inner.close = (1006, String::new());
                inner.core.closed_socket(js_sys::Math::random())
            };
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
        Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
            let event: web_sys::CloseEvent = event.unchecked_into();
            let (delay, effects) = {
                let mut inner = shared.borrow_mut();
                inner.socket = None;
                inner.close = (event.code(), event.reason());
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

/// Opens a socket, first asking the app for a fresh token when the current one is about
/// to expire (a server would refuse it).
fn connect(shared: &Shared) {
    let stale = {
        let inner = shared.borrow();
        inner.get_token.is_some() && inner.core.token_stale(now_ms())
    };
    if stale {
        renew_token(shared, true);
    } else {
        open(shared);
    }
}

/// Takes `token` as the connection's: in the URL of the next connect, and its `exp`.
fn use_token(shared: &Shared, token: &str) -> Option<u64> {
    let exp = token_exp_ms(token);
    let mut inner = shared.borrow_mut();
    if let Ok(url) = endpoint(&inner.base_url, &inner.room, Some(token)) {
        inner.url = url;
    }
    inner.core.set_token_exp(exp);
    exp
}

/// Calls the app's `getToken()`. With the token: a connect that waits for it goes on
/// (`then_connect`), else the token is sent as a `refresh`. A failure is reported to
/// `onError` (`token_refresh_failed`). One call at a time.
fn renew_token(shared: &Shared, then_connect: bool) {
    let get_token = {
        let mut inner = shared.borrow_mut();
        match (&inner.get_token, inner.renewing) {
            (None, _) => None,
            (Some(_), Some(waiting)) => {
                inner.renewing = Some(waiting || then_connect);
                return;
            }
            (Some(f), None) => {
                let f = f.clone();
                inner.renewing = Some(then_connect);
                Some(f)
            }
        }
    };
    let Some(get_token) = get_token else {
        if then_connect {
            open(shared);
        }
        return;
    };
    let given = match get_token.call0(&JsValue::NULL) {
        Ok(value) => Promise::resolve(&value),
        Err(error) => Promise::reject(&error),
    };
    let done = |shared: &Shared| {
        let connect = shared.borrow_mut().renewing.take().unwrap_or(false);
        connect && !shared.borrow().core.is_closed()
    };
    let weak = Rc::downgrade(shared);
    let on_token = Closure::once_into_js(move |token: JsValue| {
        let Some(shared) = weak.upgrade() else { return };
        let connect = done(&shared);
        match token.as_string().filter(|t| !t.is_empty()) {
            Some(token) => {
                let exp = use_token(&shared, &token);
                if connect {
                    open(&shared);
                } else if !shared.borrow().core.is_closed() {
                    let made = shared.borrow_mut().core.refresh(&token, exp, now_ms());
                    let refused = promise(&shared, made);
                    let weak = Rc::downgrade(&shared);
                    let on_refused = Closure::once_into_js(move |error: JsValue| {
                        if let Some(shared) = weak.upgrade() {
                            call_hooks(&shared, Hook::Error, &error, &JsValue::UNDEFINED);
                        }
                    });
                    then(&refused, &JsValue::UNDEFINED, &on_refused);
                }
            }
            None => {
                token_failed(&shared, "getToken() gave no token");
                if connect {
                    open(&shared);
                }
            }
        }
    });
    let weak = Rc::downgrade(shared);
    let on_error = Closure::once_into_js(move |error: JsValue| {
        let Some(shared) = weak.upgrade() else { return };
        let connect = done(&shared);
        let why = js_sys::Error::from(error).message();
        token_failed(
            &shared,
            &(String::from("getToken() failed: ") + &String::from(why)),
        );
        if connect {
            open(&shared);
        }
    });
    then(&given, &on_token, &on_error);
}

/// `promise.then(ok, err)` with functions made by `Closure::once_into_js`.
fn then(promise: &Promise, ok: &JsValue, err: &JsValue) {
    if let Ok(then) = get(promise, "then").dyn_into::<Function>() {
        let _ = then.call2(promise, ok, err);
    }
}

/// Reports to `onError` that no fresh token could be had.
fn token_failed(shared: &Shared, message: &str) {
    let error = js_error(&Failure::new("token_refresh_failed", message));
    call_hooks(shared, Hook::Error, &error, &JsValue::UNDEFINED);
}

/// Opens a new socket after `delay` ms (`None`: the client was closed, nothing to do).
fn schedule_reconnect(shared: &Shared, delay: Option<u64>) {
    let Some(delay) = delay else { return };
    let weak = Rc::downgrade(shared);
    let callback = Closure::<dyn FnMut()>::new(move || {
        if let Some(shared) = weak.upgrade() {
            shared.borrow_mut().timer = None;
            connect(&shared);
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
    let data = data.map(|d| if d.is_undefined() { JsValue::NULL } else { d });
    let printable = data.as_ref().is_none_or(|d| JSON::stringify(d).is_ok());
    let mut inner = shared.borrow_mut();
    let made = if printable {
        inner.core.request(kind, data, now_ms())
    } else {
        inner.core.refuse("the data cannot be sent as JSON")
    };
    drop(inner);
    promise(shared, made)
}

/// The promise of a request the core made (`reference`), settled by its reply or refusal:
/// registered, then the core's effects carried out.
fn promise(shared: &Shared, (reference, effects): (u64, Vec<Effect<JsValue>>)) -> Promise {
    let promise = Promise::new(&mut |resolve, reject| {
        shared
            .borrow_mut()
            .promises
            .push((reference, resolve, reject));
    });
    apply(shared, effects);
    promise
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

#[wasm_bindgen]
impl RookeryClient {
    /// Connects to `url` and keeps the connection up. `ws://host:port`, `…/`, and the
    /// endpoint itself `…/websocket` all work, with or without a query string (`http(s)://`
    /// stands for `ws(s)://`); anything else throws (`invalid_url`).
    #[wasm_bindgen(constructor)]
    pub fn new(
        url: &str,
        #[wasm_bindgen(unchecked_param_type = "ClientOptions")] options: JsValue,
    ) -> Result<RookeryClient, JsValue> {
        let Some(room) = get(&options, "room").as_string() else {
            return Err(js_sys::Error::new("options.room is required").into());
        };
        let token = get(&options, "token").as_string();
        let get_token = get(&options, "getToken").dyn_into::<Function>().ok();
        let full = endpoint(url, &room, token.as_deref()).map_err(|f| js_error(&f))?;
        let shown_url = endpoint(url, &room, token.as_ref().map(|_| "***")).unwrap_or_default();
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
            shown_url,
            core: Core::new(settings),
            socket: None,
            callbacks: Vec::new(),
            promises: Vec::new(),
            listeners: Vec::new(),
            next_listener: 0,
            hooks: Vec::new(),
            close: (0, String::new()),
            connected_waiters: Vec::new(),
            timer: None,
            ticker: None,
            reconnect: None,
            base_url: url.to_owned(),
            room,
            get_token,
            renewing: None,
        }));
        if let Some(token) = &token {
            use_token(&inner, token);
        }
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
        connect(&inner);
        Ok(RookeryClient { inner })
    }

    /// Calls `callback(state, info)` on every state change: `info.recovered` on a
    /// reconnect's `"connected"`, the close `code`, `reason` and `url` on `"disconnected"`.
    #[wasm_bindgen(js_name = onState)]
    pub fn on_state(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(state: ConnectionState, info: StateInfo) => void")]
        callback: Function,
    ) {
        self.inner.borrow_mut().hooks.push((Hook::State, callback));
    }

    /// Calls `callback(discontinuity)` when events may have been missed: state was reloaded
    /// from snapshots after a reconnect, or the room's history was reset.
    #[wasm_bindgen(js_name = onDiscontinuity)]
    pub fn on_discontinuity(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(discontinuity: Discontinuity) => void")]
        callback: Function,
    ) {
        self.inner
            .borrow_mut()
            .hooks
            .push((Hook::Discontinuity, callback));
    }

    /// Calls `callback(error)` on connection errors: `connect_failed` when a socket closed
    /// before it ever opened (server unreachable, or not a Rookery endpoint), with the `url`.
    #[wasm_bindgen(js_name = onError)]
    pub fn on_error(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(error: RookeryError) => void")] callback: Function,
    ) {
        self.inner.borrow_mut().hooks.push((Hook::Error, callback));
    }

    /// A page of the room's lasting events, oldest first, each as it was sent (with `seq`).
    /// (Typed in `TYPES`, where its options can be optional.)
    #[wasm_bindgen(skip_typescript)]
    pub fn history(&self, options: Option<JsValue>) -> Promise {
        let made = self
            .inner
            .borrow_mut()
            .core
            .history(options.as_ref(), now_ms());
        promise(&self.inner, made)
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

    /// Subscribes to `topic` (`"chat"`, `"poll:id"`, a broadcast topic…): `callback(data,
    /// seq)` for each event (`seq`: its place in the room's stream, lasting events only).
    /// Restored after every reconnect, resuming where it left off.
    pub fn subscribe(
        &self,
        topic: &str,
        #[wasm_bindgen(unchecked_param_type = "(data: unknown, seq?: number) => void")]
        callback: Function,
    ) -> Subscription {
        let id = listen(&self.inner, topic, Listener::Js(callback));
        hold(&self.inner, topic);
        Subscription {
            inner: self.inner.clone(),
            topic: topic.into(),
            id: Some(id),
        }
    }

    /// A poll handle; `options.ephemeral` for an ephemeral poll. (Typed in `TYPES`, where its
    /// options can be optional.)
    #[wasm_bindgen(skip_typescript)]
    pub fn poll(&self, id: &str, options: Option<JsValue>) -> Poll {
        let ephemeral = options
            .and_then(|o| get(&o, "ephemeral").as_bool())
            .unwrap_or(false);
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
            inner.close = (1000, "closed by the app".into());
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

    /// `callback({id, stats}, seq)` on every change (`seq` absent on snapshots).
    #[wasm_bindgen(js_name = onUpdate)]
    pub fn on_update(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "(update: PollStats, seq?: number) => void")]
        callback: Function,
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
    /// Adds `delta` (negative to subtract). Anything but a finite number is rejected
    /// (`invalid_data`) and not sent.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn add(&self, #[wasm_bindgen(unchecked_param_type = "number")] delta: JsValue) -> Promise {
        let inner = &self.handle.inner;
        let made = inner
            .borrow_mut()
            .core
            .counter_add(&self.id, delta.as_f64(), now_ms());
        promise(inner, made)
    }

    #[wasm_bindgen(getter)]
    pub fn value(&self) -> f64 {
        *self.value.borrow()
    }

    /// `callback({id, value}, seq)` on every change (`seq` absent on snapshots).
    #[wasm_bindgen(js_name = onChange)]
    pub fn on_change(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "(change: CounterValue, seq?: number) => void")]
        callback: Function,
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
