//! Each dialect's session rules, without IO: a message in, the actions it leads to out.

use super::session::{Action, Actions, Session};
use super::{slip, Dialect, Peer};
use crate::auth::Verifier;
use crate::backend::BackendResponse;
use crate::config::Config;
use crate::engine::{Command, Request};
use crate::ids::ConnId;
use serde_json::{json, Value};
use tungstenite::protocol::frame::coding::CloseCode;

const CONN: ConnId = ConnId(9);

/// Runs `f` with the session of connection "me" (of `user`, in `rooms`).
fn with_session<T>(
    config: &Config,
    user: Option<&str>,
    rooms: &[&str],
    f: impl FnOnce(&Session<'_>) -> T,
) -> T {
    let rooms: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
    let verifier = Verifier::new(Some("secret"));
    f(&Session {
        conn: CONN,
        peer: Peer {
            public_id: "me",
            user,
            latency_ms: 3,
        },
        rooms: &rooms,
        now_ms: 1_000,
        config,
        verifier: &verifier,
        keys_awaited: false,
    })
}

/// The actions `text` leads to for a connection of `dialect` in `rooms`.
fn on_text(
    dialect: Dialect,
    config: &Config,
    user: Option<&str>,
    rooms: &[&str],
    text: &str,
) -> Actions {
    let mut out = Actions::new();
    let mut text = text.as_bytes().to_vec();
    with_session(config, user, rooms, |session| {
        dialect.protocol().on_text(session, &mut text, &mut out)
    });
    out
}

/// The JSON of a frame built by `frame::text`.
fn json(frame: &[u8]) -> Value {
    let start = if frame[1] & 0x7f == 126 { 4 } else { 2 };
    serde_json::from_slice(&frame[start..]).unwrap()
}

#[test]
fn pact_requests_go_to_the_room_and_authenticate_needs_a_key() {
    let config = Config::local();
    let out = on_text(
        Dialect::Pact,
        &config,
        None,
        &["r"],
        r#"{"type":"chat","data":"hi","ref":1}"#,
    );
    match &out[..] {
        [Action::Command(Command::Request {
            conn,
            room,
            reference,
            request: Request::Chat(data),
        })] => {
            assert_eq!((*conn, room.as_str(), data), (CONN, "r", &json!("hi")));
            assert_eq!(reference, &Some(json!(1)));
        }
        other => panic!("{other:?}"),
    }
    let out = on_text(
        Dialect::Pact,
        &config,
        None,
        &["r"],
        r#"{"type":"authenticate","data":{"ts":1000,"key":"00"}}"#,
    );
    match &out[..] {
        [Action::Refuse(frame)] => assert_eq!(json(frame)["data"]["code"], "unauthorized"),
        other => panic!("{other:?}"),
    }
    let out = on_text(Dialect::Pact, &config, None, &["r"], r#"{"type":"close"}"#);
    assert!(matches!(&out[..], [Action::Close(CloseCode::Normal, _)]));
    let out = on_text(Dialect::Pact, &config, None, &["r"], "nope");
    assert!(matches!(&out[..], [Action::Refuse(_)]));
}

#[test]
fn wsdo_pongs_measure_and_acks_go_to_the_room() {
    let config = Config::local();
    let out = on_text(Dialect::Wsdo, &config, None, &["c"], r#"{"type":"PONG"}"#);
    assert!(matches!(&out[..], [Action::Pong]));
    let out = on_text(
        Dialect::Wsdo,
        &config,
        None,
        &["c"],
        r#"{"type":"ACK","payload":{"eventID":"evt_1"}}"#,
    );
    assert!(matches!(
        &out[..],
        [Action::Command(Command::Request {
            request: Request::Ack(_),
            ..
        })]
    ));
    let out = on_text(Dialect::Wsdo, &config, None, &["c"], r#"{"type":"HELLO"}"#);
    match &out[..] {
        [Action::Refuse(frame)] => {
            let error = json(frame);
            assert_eq!(error["payload"]["code"], "UNKNOWN_TYPE");
            assert_eq!(error["clientID"], "me", "written for this connection");
            assert_eq!(error["latency"], 3);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn lambda_join_leaves_the_old_channel_and_takes_a_new_sender_id() {
    let config = Config::local();
    let out = on_text(
        Dialect::Lambda,
        &config,
        None,
        &["old"],
        r#"{"type":"join","channelId":"new"}"#,
    );
    match &out[..] {
        [Action::Leave(old), Action::SetIdentity(identity), Action::Join(new)] => {
            assert_eq!((old.as_str(), new.as_str()), ("old", "new"));
            assert_eq!(identity.public_id.len(), 21);
            assert_ne!(identity.public_id, "me");
        }
        other => panic!("{other:?}"),
    }
    let out = on_text(
        Dialect::Lambda,
        &config,
        None,
        &[],
        r#"{"type":"publish","data":1}"#,
    );
    match &out[..] {
        [Action::Send(frame)] => assert_eq!(json(frame)["type"], "publishFailure"),
        other => panic!("{other:?}"),
    }
    let out = on_text(
        Dialect::Lambda,
        &config,
        None,
        &[],
        r#"{"type":"ping","data":5}"#,
    );
    match &out[..] {
        [Action::Send(frame)] => assert_eq!(json(frame), json!({"type":"pong","data":5})),
        other => panic!("{other:?}"),
    }
}

#[test]
fn jac_change_user_with_a_bad_token_falls_back_to_the_public_user() {
    let config = Config::local();
    let out = on_text(
        Dialect::Jac,
        &config,
        Some("alice"),
        &["ch"],
        r#"{"type":"change_user","token":"Bearer nonsense"}"#,
    );
    match &out[..] {
        [Action::Refuse(_), Action::SetIdentity(identity), Action::TokenExpiry(None), Action::Send(event)] =>
        {
            assert_eq!(identity.user, None);
            assert_eq!(identity.public_id, "me");
            let event = json(event);
            assert_eq!(event["type"], "connection");
            assert_eq!(event["data"]["root_id"], super::jac::PUBLIC_ROOT);
            assert_eq!(event["data"]["channel_id"], "ch");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn jac_sends_can_be_kept_to_authenticated_connections_and_walkers_need_a_backend() {
    let mut config = Config::local();
    let to_users = r#"{"type":"user","root_ids":["u"],"data":{"x":1}}"#;
    let out = on_text(Dialect::Jac, &config, None, &["ch"], to_users);
    assert!(matches!(&out[..], [Action::Targeted { .. }]), "{out:?}");
    config.jac_require_auth = true;
    let out = on_text(Dialect::Jac, &config, None, &["ch"], to_users);
    assert!(matches!(&out[..], [Action::Refuse(_)]));
    let out = on_text(Dialect::Jac, &config, Some("u"), &["ch"], to_users);
    assert!(matches!(&out[..], [Action::Targeted { .. }]));
    let walker = r#"{"type":"walker","walker":"w","response":true}"#;
    let out = on_text(Dialect::Jac, &config, None, &["ch"], walker);
    assert!(
        matches!(&out[..], [Action::Refuse(_)]),
        "no backend: {out:?}"
    );
    config.backend_url = Some("http://127.0.0.1:9/api".into());
    let out = on_text(Dialect::Jac, &config, None, &["ch"], walker);
    match &out[..] {
        [Action::Backend {
            request,
            concurrent: true,
            ..
        }] => assert_eq!(request.url, "http://127.0.0.1:9/api/walker/w"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn slip_posts_in_order_and_carries_out_the_backends_events() {
    let mut config = Config::local();
    let out = on_text(Dialect::Slip, &config, None, &[], "hello");
    assert!(out.is_empty(), "no backend configured: nothing to do");
    config.slip_target_url = Some("http://127.0.0.1:9/slip".into());
    let out = on_text(Dialect::Slip, &config, None, &[], "hello");
    let tag = match &out[..] {
        [Action::Backend {
            request,
            tag,
            concurrent: false,
        }] => {
            assert_eq!(request.url, "http://127.0.0.1:9/slip");
            *tag
        }
        other => panic!("{other:?}"),
    };
    let answer = BackendResponse {
        status: 200,
        body: br#"[{"type":"TEXT","data":"hi"},{"type":"SUBSCRIBE","target":"c"},{"type":"DISCONNECT"}]"#.to_vec(),
    };
    let mut out = Actions::new();
    with_session(&config, None, &[], |session| {
        Dialect::Slip
            .protocol()
            .on_backend(session, tag, Ok(answer), &mut out)
    });
    assert!(matches!(
        &out[..],
        [Action::Send(_), Action::Join(c), Action::Close(CloseCode::Normal, _)] if c == "c"
    ));
    let mut out = Actions::new();
    slip::apply(vec![slip::BackendEvent::Unsubscribe("c".into())], &mut out);
    assert!(matches!(&out[..], [Action::Leave(c)] if c == "c"));
}

#[test]
fn each_endpoint_names_one_dialect() {
    let req = |path: &str, query: &[(&str, &str)]| crate::http::Request {
        method: "GET".into(),
        path: path.into(),
        query: query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        headers: Vec::new(),
        version: 1,
        body: Vec::new(),
    };
    let lobby = [("room", "lobby")];
    let found = Dialect::of_endpoint(&["websocket"], &req("/websocket", &lobby), 0);
    assert_eq!(found, Some((Dialect::Pact, Some("lobby".to_owned()))));
    let cases = [
        ("/x/listen", &["x", "listen"][..], Dialect::Wsdo, Some("x")),
        ("/channels", &["channels"][..], Dialect::Lambda, None),
        ("/slip", &["slip"][..], Dialect::Slip, None),
    ];
    for (path, segments, dialect, room) in cases {
        let found = Dialect::of_endpoint(segments, &req(path, &[]), 0);
        assert_eq!(found, Some((dialect, room.map(str::to_owned))), "{path}");
    }
    assert_eq!(Dialect::of_endpoint(&["nope"], &req("/nope", &[]), 0), None);
    let jac = Dialect::of_endpoint(&["jac", "websocket"], &req("/jac/websocket", &[]), 5_000);
    match jac {
        Some((Dialect::Jac, Some(channel))) => assert!(channel.starts_with("5:"), "{channel}"),
        other => panic!("{other:?}"),
    }
}

/// An HS256 token of the session verifier's ("secret").
fn hs256(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"secret"),
    )
    .unwrap()
}

#[test]
fn pact_refresh_takes_a_fresh_token_of_the_same_user_only() {
    let config = Config::local();
    let exp = 4_000_000_000u64;
    let fresh = hs256(json!({"sub":"alice","exp":exp}));
    let refresh = |user: Option<&str>, token: &str| {
        let message = json!({"type":"refresh","ref":7,"data":{"token":token}}).to_string();
        on_text(Dialect::Pact, &config, user, &["r"], &message)
    };
    match &refresh(Some("alice"), &fresh)[..] {
        [Action::TokenExpiry(Some(ms)), Action::Send(reply)] => {
            assert_eq!(*ms, exp * 1000);
            assert_eq!(
                json(reply),
                json!({"type":"refreshed","ref":7,"data":{"exp":exp}})
            );
        }
        other => panic!("{other:?}"),
    }
    let no_exp = hs256(json!({"sub":"alice"}));
    match &refresh(Some("alice"), &no_exp)[..] {
        [Action::TokenExpiry(None), Action::Send(reply)] => {
            assert_eq!(json(reply)["data"], json!({"exp": null}));
        }
        other => panic!("{other:?}"),
    }
    // Another user's token, an anonymous connection, a forged and an expired token: refused
    // (the connection's expiry is untouched).
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub":"alice"}),
        &jsonwebtoken::EncodingKey::from_secret(b"forged"),
    )
    .unwrap();
    for (user, token, why) in [
        (Some("alice"), hs256(json!({"sub":"bob"})), "another user"),
        (None, fresh.clone(), "another user"),
        (Some("alice"), forged, "signature"),
        (
            Some("alice"),
            hs256(json!({"sub":"alice","exp":1})),
            "expired",
        ),
    ] {
        match &refresh(user, &token)[..] {
            [Action::Refuse(frame)] => {
                let e = json(frame);
                assert_eq!(e["ref"], 7);
                assert_eq!(e["data"]["code"], "invalid_token");
                let message = e["data"]["message"].as_str().unwrap();
                assert!(message.contains(why), "{why}: {message}");
            }
            other => panic!("{why}: {other:?}"),
        }
    }
    match &on_text(
        Dialect::Pact,
        &config,
        Some("alice"),
        &["r"],
        r#"{"type":"refresh","data":{}}"#,
    )[..]
    {
        [Action::Refuse(frame)] => assert_eq!(json(frame)["data"]["code"], "invalid_data"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_dialect_with_an_error_form_says_token_expired() {
    let peer = Peer {
        public_id: "me",
        user: Some("alice"),
        latency_ms: 3,
    };
    for dialect in Dialect::ALL {
        let frame = dialect.protocol().token_expired(&peer, 30_000);
        let Some(frame) = frame else {
            assert!(
                matches!(dialect, Dialect::Slip | Dialect::Echo),
                "{dialect:?}"
            );
            continue;
        };
        let text = json(&frame).to_string();
        assert!(
            text.to_lowercase().contains("token_expired"),
            "{dialect:?}: {text}"
        );
        assert!(text.contains("30000 ms"), "{dialect:?}: {text}");
        assert!(text.contains("4001"), "{dialect:?}: {text}");
    }
}
