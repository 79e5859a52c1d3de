//! The SDK in a real browser against a real Rookery (started by `scripts/sdk-test.sh`, which
//! passes its address at compile time: a browser test has no environment).
#![cfg(target_arch = "wasm32")]

use js_sys::{Function, Object, Promise, Reflect};
use rookery_client::RookeryClient;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const URL: &str = match option_env!("ROOKERY_TEST_URL") {
    Some(url) => url,
    None => "ws://127.0.0.1:8080",
};

fn options(room: &str) -> JsValue {
    let o = Object::new();
    Reflect::set(&o, &"room".into(), &room.into()).unwrap();
    Reflect::set(&o, &"minReconnectDelayMs".into(), &50.into()).unwrap();
    Reflect::set(&o, &"maxReconnectDelayMs".into(), &200.into()).unwrap();
    o.into()
}

fn room(name: &str) -> String {
    format!(
        "{name}-{}",
        js_sys::Math::random().to_string().replace('.', "")
    )
}

async fn wait(promise: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(promise).await
}

async fn sleep(ms: i32) {
    let p = Promise::new(&mut |resolve, _| {
        let global = js_sys::global();
        let set_timeout: Function = Reflect::get(&global, &"setTimeout".into()).unwrap().into();
        set_timeout
            .call2(&JsValue::NULL, &resolve, &ms.into())
            .unwrap();
    });
    let _ = wait(p).await;
}

/// Polls `check` every 20 ms for up to 5 s.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..250 {
        if check() {
            return;
        }
        sleep(20).await;
    }
    panic!("never happened: {what}");
}

fn collector() -> (Function, Rc<RefCell<Vec<JsValue>>>) {
    let seen: Rc<RefCell<Vec<JsValue>>> = Rc::default();
    let keep = seen.clone();
    let f = Closure::<dyn FnMut(JsValue)>::new(move |v: JsValue| keep.borrow_mut().push(v));
    (f.into_js_value().unchecked_into(), seen)
}

/// The two arguments of each call.
type Calls = Rc<RefCell<Vec<(JsValue, JsValue)>>>;

/// Collects the two arguments of each call.
fn collector2() -> (Function, Calls) {
    let seen: Calls = Rc::default();
    let keep = seen.clone();
    let f = Closure::<dyn FnMut(JsValue, JsValue)>::new(move |a: JsValue, b: JsValue| {
        keep.borrow_mut().push((a, b))
    });
    (f.into_js_value().unchecked_into(), seen)
}

fn get(v: &JsValue, key: &str) -> JsValue {
    Reflect::get(v, &key.into()).unwrap()
}

#[wasm_bindgen_test]
async fn two_clients_see_each_others_chat_votes_counters_and_presence() {
    let name = room("together");
    let a = RookeryClient::new(URL, options(&name)).unwrap();
    let b = RookeryClient::new(URL, options(&name)).unwrap();
    wait(a.connected()).await.unwrap();
    wait(b.connected()).await.unwrap();

    let props = Object::new();
    Reflect::set(&props, &"name".into(), &"ann".into()).unwrap();
    Reflect::set(&props, &"_secret".into(), &"s".into()).unwrap();
    let profile = wait(a.login(props.into())).await.unwrap();
    assert_eq!(get(&get(&profile, "properties"), "name"), "ann");
    assert_eq!(get(&get(&profile, "properties"), "_secret"), "s");

    let (on_chat, chats) = collector();
    let _sub = b.subscribe("chat", on_chat);
    sleep(100).await;
    wait(a.chat("hello".into())).await.unwrap();
    eventually("b sees a's chat", || chats.borrow().len() == 1).await;
    let chat = chats.borrow()[0].clone();
    assert_eq!(get(&chat, "message"), "hello");
    assert!(get(&get(&get(&chat, "user"), "properties"), "_secret").is_undefined());

    let poll_b = b.poll("p", None);
    let poll_a = a.poll("p", None);
    sleep(100).await;
    wait(poll_a.vote("yes".into())).await.unwrap();
    eventually("b sees the vote", || get(&poll_b.stats(), "yes") == 1).await;

    let counter_a = a.counter("c");
    let counter_b = b.counter("c");
    sleep(100).await;
    wait(counter_b.add(2.5.into())).await.unwrap();
    wait(counter_b.add((-1.0).into())).await.unwrap();
    eventually("a sees the counter", || counter_a.value() == 1.5).await;

    let mut presence = a.presence();
    eventually("presence snapshot", || presence.count() == 2).await;
    let (on_join, joined) = collector();
    presence.on_join(on_join);
    let c = RookeryClient::new(URL, options(&name)).unwrap();
    eventually("a sees c join", || {
        joined.borrow().len() == 1 && presence.count() == 3
    })
    .await;
    c.close();
    eventually("a sees c leave", || presence.count() == 2).await;
    a.close();
    b.close();
}

#[wasm_bindgen_test]
async fn a_server_error_rejects_the_promise_with_its_code() {
    let client = RookeryClient::new(URL, options(&room("errors"))).unwrap();
    wait(client.connected()).await.unwrap();
    let poll = client.poll("p", None);
    let error = wait(poll.vote(JsValue::NULL)).await.unwrap_err();
    assert_eq!(get(&error, "code"), "invalid_data");
    assert!(error.is_instance_of::<js_sys::Error>());
    client.close();
}

#[wasm_bindgen_test]
async fn after_the_server_drops_the_connection_it_reconnects_and_restores_subscriptions() {
    let name = room("reconnect");
    let listener = RookeryClient::new(URL, options(&name)).unwrap();
    let speaker = RookeryClient::new(URL, options(&name)).unwrap();
    let (on_state, states) = collector();
    listener.on_state(on_state);
    let (on_chat, chats) = collector();
    let _sub = listener.subscribe("chat", on_chat);
    wait(listener.connected()).await.unwrap();
    wait(speaker.connected()).await.unwrap();
    sleep(100).await;
    // A message over the test server's 4 KiB limit: the server closes with 1009.
    let _ = wait(listener.chat("x".repeat(5000).into())).await;
    eventually("disconnected then connected again", || {
        let s = states.borrow();
        s.iter().any(|v| v == "disconnected") && s.last().is_some_and(|v| v == "connected")
    })
    .await;
    sleep(200).await;
    wait(speaker.chat("after".into())).await.unwrap();
    eventually("the restored subscription delivers", || {
        chats.borrow().iter().any(|c| get(c, "message") == "after")
    })
    .await;
    listener.close();
    speaker.close();
}

#[wasm_bindgen_test]
async fn closing_stops_everything_and_rejects_later_calls() {
    let client = RookeryClient::new(URL, options(&room("closed"))).unwrap();
    wait(client.connected()).await.unwrap();
    client.close();
    let error = wait(client.chat("late".into())).await.unwrap_err();
    assert_eq!(get(&error, "code"), "closed");
}

#[wasm_bindgen_test]
async fn every_handle_calls_back_and_releasing_or_unsubscribing_stops_it() {
    let name = room("handles");
    let a = RookeryClient::new(URL, options(&name)).unwrap();
    let b = RookeryClient::new(URL, options(&name)).unwrap();
    wait(a.connected()).await.unwrap();
    wait(b.connected()).await.unwrap();
    assert_eq!(a.state(), "connected");

    let profile = wait(b.profile()).await.unwrap();
    assert!(get(&profile, "id").is_string());
    assert!(get(&profile, "connectionDetails").is_object());

    // Poll (ephemeral) and counter callbacks receive the event's data.
    let mut poll = a.poll("e", Some(options_with("ephemeral", true.into())));
    let (on_poll, polls) = collector();
    poll.on_update(on_poll);
    let mut counter = a.counter("k");
    let (on_counter, counters) = collector();
    counter.on_change(on_counter);
    sleep(100).await;
    wait(
        b.poll("e", Some(options_with("ephemeral", true.into())))
            .vote("no".into()),
    )
    .await
    .unwrap();
    wait(b.counter("k").add(3.into())).await.unwrap();
    eventually("poll update", || {
        polls
            .borrow()
            .iter()
            .any(|p| get(&get(p, "stats"), "no") == 1)
    })
    .await;
    eventually("counter change", || {
        counters.borrow().iter().any(|c| get(c, "value") == 3)
    })
    .await;
    assert_eq!(counter.value(), 3.0);

    // Presence: update and leave callbacks, and the member list.
    let mut presence = a.presence();
    let (on_update, updates) = collector();
    presence.on_update(on_update);
    let (on_leave, leaves) = collector();
    presence.on_leave(on_leave);
    eventually("snapshot", || presence.count() == 2).await;
    let renamed = Object::new();
    Reflect::set(&renamed, &"nick".into(), &"bee".into()).unwrap();
    wait(b.login(renamed.into())).await.unwrap();
    eventually("b's update", || updates.borrow().len() == 1).await;
    let members = presence.members();
    assert!(members
        .iter()
        .any(|m| get(&get(&m, "properties"), "nick") == "bee"));

    // Unsubscribing and releasing stop the callbacks.
    let (on_chat, chats) = collector();
    let mut sub = a.subscribe("chat", on_chat);
    sleep(100).await;
    wait(b.chat("one".into())).await.unwrap();
    eventually("first chat", || chats.borrow().len() == 1).await;
    sub.unsubscribe();
    poll.release();
    counter.release();
    sleep(100).await;
    wait(b.chat("two".into())).await.unwrap();
    wait(b.counter("k").add(1.into())).await.unwrap();
    b.close();
    eventually("b leaves", || {
        leaves.borrow().len() == 1 && presence.count() == 1
    })
    .await;
    assert_eq!(chats.borrow().len(), 1, "no chat after unsubscribe");
    assert_eq!(counter.value(), 3.0, "no counter change after release");
    presence.release();
    a.close();
}

#[wasm_bindgen_test]
async fn requests_made_offline_are_queued_and_sent_once_connected() {
    let name = room("offline");
    let listener = RookeryClient::new(URL, options(&name)).unwrap();
    let (on_chat, chats) = collector();
    let _sub = listener.subscribe("chat", on_chat);
    wait(listener.connected()).await.unwrap();
    sleep(100).await;
    // Made before the socket is even open: queued, then sent.
    let speaker = RookeryClient::new(URL, options(&name)).unwrap();
    assert_eq!(speaker.state(), "connecting");
    wait(speaker.chat("early".into())).await.unwrap();
    eventually("the queued chat arrives", || chats.borrow().len() == 1).await;

    // A server that never answers: the request is rejected with `timeout`.
    let o = options(&room("unreachable"));
    Reflect::set(&o, &"requestTimeoutMs".into(), &300.into()).unwrap();
    let lost = RookeryClient::new("ws://127.0.0.1:9", o).unwrap();
    let error = wait(lost.profile()).await.unwrap_err();
    assert_eq!(get(&error, "code"), "timeout");
    lost.close();
    listener.close();
    speaker.close();
}

fn options_with(key: &str, value: JsValue) -> JsValue {
    let o = Object::new();
    Reflect::set(&o, &key.into(), &value).unwrap();
    o.into()
}

#[wasm_bindgen_test]
async fn a_dropped_connection_resumes_without_losing_duplicating_or_reordering_events() {
    let name = room("resume");
    let listener = RookeryClient::new(URL, options(&name)).unwrap();
    let speaker = RookeryClient::new(URL, options(&name)).unwrap();
    let (on_state, states) = collector2();
    listener.on_state(on_state);
    let (on_gap, gaps) = collector();
    listener.on_discontinuity(on_gap);
    let (on_chat, chats) = collector2();
    let _sub = listener.subscribe("chat", on_chat);
    let counter = listener.counter("n");
    wait(listener.connected()).await.unwrap();
    wait(speaker.connected()).await.unwrap();
    sleep(100).await;
    // (`connecting` was reported in the constructor, before `onState`.)
    let first = states.borrow().clone();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, "connected");
    assert!(
        get(&first[0].1, "recovered").is_undefined(),
        "no `recovered` on the first connect"
    );

    // Messages flow while the listener's connection drops (a frame over the test server's
    // 4 KiB limit: the server closes with 1009) and comes back.
    const N: usize = 80;
    let mut sent = Vec::new();
    let mut drop = None;
    for i in 0..N {
        sent.push(speaker.chat((i as u32).into()));
        if i % 4 == 0 {
            sent.push(speaker.counter("n").add(1.into()));
        }
        if i == 20 {
            drop = Some(listener.chat("x".repeat(5000).into()));
        }
        sleep(5).await;
    }
    for promise in sent {
        wait(promise).await.unwrap();
    }
    let dropped = wait(drop.unwrap()).await.unwrap_err();
    assert_eq!(get(&dropped, "code"), "disconnected");
    eventually("every chat arrives", || chats.borrow().len() >= N).await;
    sleep(200).await;

    let chats = chats.borrow();
    let messages: Vec<f64> = chats
        .iter()
        .map(|(data, _)| get(data, "message").as_f64().unwrap())
        .collect();
    let expected: Vec<f64> = (0..N).map(|i| i as f64).collect();
    assert_eq!(messages, expected, "nothing lost, duplicated or reordered");
    let seqs: Vec<f64> = chats.iter().map(|(_, seq)| seq.as_f64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seqs increase: {seqs:?}"
    );
    assert_eq!(
        counter.value(),
        (N / 4) as f64,
        "every counter change applied"
    );
    let states = states.borrow();
    let disconnected = states
        .iter()
        .find(|(s, _)| s == "disconnected")
        .expect("the connection dropped");
    assert_eq!(get(&disconnected.1, "code"), 1009);
    let (last, info) = states.last().unwrap();
    assert_eq!(last, "connected");
    assert_eq!(get(info, "recovered"), true, "resumed with every event");
    assert!(gaps.borrow().is_empty(), "no discontinuity");
    listener.close();
    speaker.close();
}

#[wasm_bindgen_test]
async fn history_returns_the_rooms_lasting_events_with_their_seq() {
    let client = RookeryClient::new(URL, options(&room("history"))).unwrap();
    wait(client.connected()).await.unwrap();
    wait(client.chat("one".into())).await.unwrap();
    wait(client.chat("two".into())).await.unwrap();
    wait(client.counter("c").add(2.into())).await.unwrap();

    let page = wait(client.history(None)).await.unwrap();
    let events: Vec<JsValue> = js_sys::Array::from(&get(&page, "events")).iter().collect();
    let types: Vec<String> = events
        .iter()
        .map(|e| get(e, "type").as_string().unwrap())
        .collect();
    assert_eq!(types, ["chat", "chat", "counter"]);
    assert_eq!(get(&get(&events[0], "data"), "message"), "one");
    assert_eq!(get(&get(&events[2], "data"), "value"), 2);
    let seqs: Vec<f64> = events
        .iter()
        .map(|e| get(e, "seq").as_f64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {seqs:?}"
    );
    let pos = get(&page, "pos");
    assert!(get(&pos, "epoch").is_string());
    assert_eq!(get(&pos, "seq").as_f64(), Some(seqs[2]));

    let o = Object::new();
    Reflect::set(&o, &"limit".into(), &1.into()).unwrap();
    Reflect::set(&o, &"before".into(), &seqs[2].into()).unwrap();
    let page = wait(client.history(Some(o.into()))).await.unwrap();
    let events = js_sys::Array::from(&get(&page, "events"));
    assert_eq!(events.length(), 1);
    assert_eq!(get(&get(&events.get(0), "data"), "message"), "two");

    let page = wait(client.history(Some(options_with("limit", 0.into()))))
        .await
        .unwrap();
    assert_eq!(js_sys::Array::from(&get(&page, "events")).length(), 0);
    assert_eq!(get(&get(&page, "pos"), "seq").as_f64(), Some(seqs[2]));
    let error = wait(client.history(Some(options_with("limit", 2.5.into()))))
        .await
        .unwrap_err();
    assert_eq!(get(&error, "code"), "invalid_data");
    client.close();
}

#[wasm_bindgen_test]
async fn every_url_form_connects_and_a_wrong_one_says_so() {
    let name = room("urls");
    for url in [
        URL.to_owned(),
        format!("{URL}/"),
        format!("{URL}/websocket"),
        format!("{URL}/websocket?unused=1"),
    ] {
        let client = RookeryClient::new(&url, options(&name)).unwrap();
        wait(client.connected()).await.unwrap();
        let profile = wait(client.profile()).await.unwrap();
        assert!(get(&profile, "id").is_string(), "{url}");
        client.close();
    }

    // Not a WebSocket endpoint (404 on upgrade) and nothing listening: both are errors
    // naming the URL, on `onError` and on the `disconnected` state.
    // A token in the URL shown is masked.
    for url in [format!("{URL}/nothing-here"), "ws://127.0.0.1:9".to_owned()] {
        let o = options(&name);
        Reflect::set(&o, &"token".into(), &"s3cret".into()).unwrap();
        let client = RookeryClient::new(&url, o).unwrap();
        let (on_error, errors) = collector();
        client.on_error(on_error);
        let (on_state, states) = collector2();
        client.on_state(on_state);
        eventually("a connect error", || !errors.borrow().is_empty()).await;
        let error = errors.borrow()[0].clone();
        assert_eq!(get(&error, "code"), "connect_failed", "{url}");
        let tried = get(&error, "url").as_string().unwrap();
        assert!(
            tried.starts_with(&url) && tried.contains("/websocket?room="),
            "{tried}"
        );
        assert!(tried.ends_with("&token=***"), "{tried}");
        let message = get(&error, "message").as_string().unwrap();
        assert!(
            message.contains(&tried) && !message.contains("s3cret"),
            "{message}"
        );
        assert!(error.is_instance_of::<js_sys::Error>());
        eventually("disconnected", || {
            states.borrow().iter().any(|(s, _)| s == "disconnected")
        })
        .await;
        let states = states.borrow();
        let (_, info) = states.iter().find(|(s, _)| s == "disconnected").unwrap();
        assert!(get(info, "reason").as_string().unwrap().contains(&url));
        assert_eq!(get(info, "url").as_string().unwrap(), tried);
        client.close();
    }

    let error = RookeryClient::new("localhost:8080", options(&name))
        .err()
        .expect("not a ws:// URL");
    assert_eq!(get(&error, "code"), "invalid_url");
}

#[wasm_bindgen_test]
async fn a_counter_change_that_is_not_a_finite_number_is_refused_unsent() {
    let name = room("nan");
    let client = RookeryClient::new(URL, options(&name)).unwrap();
    wait(client.connected()).await.unwrap();
    let counter = client.counter("c");
    sleep(100).await;
    for bad in [
        JsValue::from(f64::NAN),
        JsValue::from(f64::INFINITY),
        JsValue::from(f64::NEG_INFINITY),
        JsValue::from("x"),
        JsValue::UNDEFINED,
    ] {
        let error = wait(counter.add(bad.clone())).await.unwrap_err();
        assert_eq!(get(&error, "code"), "invalid_data", "{bad:?}");
    }
    wait(counter.add(1.5.into())).await.unwrap();
    eventually("the valid change", || counter.value() == 1.5).await;
    let page = wait(client.history(None)).await.unwrap();
    assert_eq!(
        js_sys::Array::from(&get(&page, "events")).length(),
        1,
        "nothing else was sent"
    );
    client.close();
}

#[wasm_bindgen_test]
async fn a_resume_past_the_history_window_reloads_and_reports_a_discontinuity() {
    let name = room("window");
    let listener = RookeryClient::new(URL, options(&name)).unwrap();
    let speaker = RookeryClient::new(URL, options(&name)).unwrap();
    let (on_state, states) = collector2();
    listener.on_state(on_state);
    let (on_gap, gaps) = collector();
    listener.on_discontinuity(on_gap);
    let (on_chat, chats) = collector2();
    let _sub = listener.subscribe("chat", on_chat);
    wait(listener.connected()).await.unwrap();
    wait(speaker.connected()).await.unwrap();
    sleep(100).await;
    // More lasting events than the server's history holds (`--history-size`, 100 by
    // default), none of them covered by the listener's subscriptions: its position falls out
    // of the window.
    let counter = speaker.counter("many");
    for _ in 0..150 {
        wait(counter.add(1.into())).await.unwrap();
    }
    let _ = wait(listener.chat("x".repeat(5000).into())).await;
    eventually("reconnected", || {
        let s = states.borrow();
        s.iter().any(|(s, _)| s == "disconnected")
            && s.last().is_some_and(|(s, _)| s == "connected")
    })
    .await;
    let (_, info) = states.borrow().last().unwrap().clone();
    assert_eq!(get(&info, "recovered"), false);
    let gap = gaps.borrow().first().cloned().expect("a discontinuity");
    assert_eq!(get(&gap, "reason"), "not_recovered");
    assert!(get(&get(&gap, "pos"), "seq").as_f64().unwrap() >= 150.0);
    // Live again: the next chat arrives once.
    wait(speaker.chat("after".into())).await.unwrap();
    eventually("the chat after", || chats.borrow().len() == 1).await;
    sleep(100).await;
    assert_eq!(chats.borrow().len(), 1);
    listener.close();
    speaker.close();
}

/// The server's `--jwt-secret` (scripts/sdk-test.sh).
const JWT_SECRET: &[u8] = b"sdk-test-secret";

/// An HS256 token of `sub` expiring `exp_in_s` seconds from now.
fn token(sub: &str, exp_in_s: f64) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let exp = (js_sys::Date::now() / 1000.0 + exp_in_s).floor();
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = B64.encode(format!(r#"{{"sub":"{sub}","exp":{exp}}}"#));
    let signed = format!("{header}.{claims}");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(JWT_SECRET).unwrap();
    mac.update(signed.as_bytes());
    format!("{signed}.{}", B64.encode(mac.finalize().into_bytes()))
}

/// `options(room)` with `token`, and a `getToken` that gives fresh tokens of `sub` and
/// counts its calls.
fn token_options(room: &str, token: &str, sub: &'static str) -> (JsValue, Rc<RefCell<u32>>) {
    let o = options(room);
    Reflect::set(&o, &"token".into(), &token.into()).unwrap();
    let calls: Rc<RefCell<u32>> = Rc::default();
    let count = calls.clone();
    let get_token = Closure::<dyn FnMut() -> Promise>::new(move || {
        *count.borrow_mut() += 1;
        // A promise, as an app's call to its auth server gives.
        let fresh: JsValue = self::token(sub, 600.0).into();
        Promise::resolve(&fresh)
    });
    Reflect::set(&o, &"getToken".into(), &get_token.into_js_value()).unwrap();
    (o, calls)
}

/// Polls `check` every 50 ms for up to 30 s (tokens expire in seconds; a busy machine).
async fn eventually_long(what: &str, check: impl Fn() -> bool) {
    for _ in 0..600 {
        if check() {
            return;
        }
        sleep(50).await;
    }
    panic!("never happened: {what}");
}

#[wasm_bindgen_test]
async fn an_expiring_token_is_renewed_with_get_token_and_the_connection_stays() {
    let name = room("refresh");
    let (o, calls) = token_options(&name, &token("sdk-ann", 2.0), "sdk-ann");
    let client = RookeryClient::new(URL, o).unwrap();
    let (on_state, states) = collector();
    client.on_state(on_state);
    let (on_error, errors) = collector();
    client.on_error(on_error);
    wait(client.connected()).await.unwrap();
    let profile = wait(client.profile()).await.unwrap();
    assert_eq!(get(&profile, "id"), "sdk-ann");
    eventually_long(
        "the server said token_expired and getToken was called",
        || *calls.borrow() >= 1,
    )
    .await;
    // A witness without getToken, whose token expires after the client's: once the server
    // closed it (4001), the client's own grace is over too.
    let witness = RookeryClient::new(URL, {
        let o = options(&name);
        Reflect::set(&o, &"token".into(), &token("sdk-wit", 1.0).into()).unwrap();
        o
    })
    .unwrap();
    let (on_witness, witness_states) = collector2();
    witness.on_state(on_witness);
    eventually_long("the witness is closed with 4001", || {
        witness_states
            .borrow()
            .iter()
            .any(|(s, info)| s == "disconnected" && get(info, "code") == 4001)
    })
    .await;
    witness.close();
    assert!(
        !states.borrow().iter().any(|s| s == "disconnected"),
        "the refreshed client was disconnected: {:?}",
        states.borrow()
    );
    assert!(errors.borrow().is_empty(), "{:?}", errors.borrow());
    let profile = wait(client.profile()).await.unwrap();
    assert_eq!(get(&profile, "id"), "sdk-ann", "still the same user");
    client.close();
}

#[wasm_bindgen_test]
async fn a_stale_token_is_renewed_before_connecting() {
    let (o, calls) = token_options(&room("stale"), &token("sdk-bo", -60.0), "sdk-bo");
    let client = RookeryClient::new(URL, o).unwrap();
    wait(client.connected()).await.unwrap();
    assert_eq!(*calls.borrow(), 1, "getToken before the connect");
    let profile = wait(client.profile()).await.unwrap();
    assert_eq!(
        get(&profile, "id"),
        "sdk-bo",
        "connected with the fresh token"
    );
    client.close();
}
