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

    let poll_b = b.poll("p", JsValue::UNDEFINED);
    let poll_a = a.poll("p", JsValue::UNDEFINED);
    sleep(100).await;
    wait(poll_a.vote("yes".into())).await.unwrap();
    eventually("b sees the vote", || get(&poll_b.stats(), "yes") == 1).await;

    let counter_a = a.counter("c");
    let counter_b = b.counter("c");
    sleep(100).await;
    wait(counter_b.add(2.5)).await.unwrap();
    wait(counter_b.add(-1.0)).await.unwrap();
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
    let poll = client.poll("p", JsValue::UNDEFINED);
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
    let mut poll = a.poll("e", options_with("ephemeral", true.into()));
    let (on_poll, polls) = collector();
    poll.on_update(on_poll);
    let mut counter = a.counter("k");
    let (on_counter, counters) = collector();
    counter.on_change(on_counter);
    sleep(100).await;
    wait(
        b.poll("e", options_with("ephemeral", true.into()))
            .vote("no".into()),
    )
    .await
    .unwrap();
    wait(b.counter("k").add(3.0)).await.unwrap();
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
    wait(b.counter("k").add(1.0)).await.unwrap();
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
