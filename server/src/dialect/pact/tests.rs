use super::*;
use serde_json::json;

fn dec(text: &str) -> Result<Inbound, DecodeError> {
    let mut bytes = text.as_bytes().to_vec();
    decode(&mut bytes)
}

fn request(text: &str) -> Request {
    match dec(text) {
        Ok(Inbound::Request { request, .. }) => request,
        other => panic!("{text}: {other:?}"),
    }
}

fn refused(text: &str) -> DecodeError {
    dec(text).expect_err(text)
}

/// The payload of a short frame built by `frame::text`.
fn payload(frame: &Bytes) -> Value {
    assert_eq!(frame[0], 0x81);
    let len = frame[1] as usize;
    let start = if len == 126 { 4 } else { 2 };
    serde_json::from_slice(&frame[start..]).unwrap()
}

#[test]
fn seed_examples_decode() {
    assert_eq!(request(r#"{"type":"profile"}"#), Request::Profile);
    assert_eq!(
        request(r#"{"type":"subscribe","data":"counter:order_confirmation_subtotal"}"#),
        Request::Subscribe(Topic::parse("counter:order_confirmation_subtotal"))
    );
    assert_eq!(
        request(r#"{"type":"unsubscribe","data":"poll"}"#),
        Request::Unsubscribe(Topic::parse("poll"))
    );
    assert_eq!(
        request(r#"{"type":"chat","data":"Chat message goes here :)"}"#),
        Request::Chat(json!("Chat message goes here :)"))
    );
    assert_eq!(
        request(r#"{"type":"poll","data":{"id":"test poll","answer":"hello"}}"#),
        Request::Vote {
            ephemeral: false,
            poll: "test poll".into(),
            answer: "hello".into()
        }
    );
    assert_eq!(
        request(r#"{"type":"counter","data":{"id":"order_subtotals","value":-15.14}}"#),
        Request::Counter {
            counter: "order_subtotals".into(),
            delta: Decimal::from_str("-15.14").unwrap()
        }
    );
}

#[test]
fn counter_defaults_and_numeric_strings() {
    assert_eq!(
        request(r#"{"type":"counter","data":null}"#),
        Request::Counter {
            counter: "default".into(),
            delta: Decimal::ONE
        }
    );
    assert_eq!(
        request(r#"{"type":"counter","data":{"id":"c","value":" 2.5 "}}"#),
        Request::Counter {
            counter: "c".into(),
            delta: Decimal::from_str("2.5").unwrap()
        }
    );
    assert_eq!(
        request(r#"{"type":"counter","data":{"value":"1e2"}}"#),
        Request::Counter {
            counter: "default".into(),
            delta: Decimal::from(100)
        }
    );
    let e = refused(r#"{"type":"counter","data":{"id":"c","value":"abc"},"ref":7}"#);
    assert_eq!(e.code, codes::INVALID_DATA);
    assert_eq!(e.reference, Some(json!(7)));
    assert_eq!(
        refused(r#"{"type":"counter","data":{"value":1e300}}"#).code,
        codes::INVALID_DATA
    );
    assert_eq!(
        refused(r#"{"type":"counter","data":[1]}"#).code,
        codes::INVALID_DATA
    );
}

#[test]
fn bad_input_is_refused_with_a_code() {
    assert_eq!(refused("not json").code, codes::INVALID_JSON);
    assert_eq!(refused("[1,2]").code, codes::INVALID_JSON);
    assert_eq!(refused(r#"{"data":1}"#).code, codes::INVALID_JSON);
    assert_eq!(refused(r#"{"type":5}"#).code, codes::INVALID_JSON);
    assert_eq!(refused(r#"{"type":"dance"}"#).code, codes::UNKNOWN_TYPE);
    // What each refusal says, and the reference it echoes when it has one.
    for not_an_object in ["[1,2]", r#""chat""#, "7", "null"] {
        let e = refused(not_an_object);
        assert_eq!(
            e.message, "a message must be a JSON object",
            "{not_an_object}"
        );
    }
    for no_type in [r#"{"data":1,"ref":4}"#, r#"{"type":["chat"],"ref":4}"#] {
        let e = refused(no_type);
        assert_eq!(e.message, "a message needs a string \"type\"", "{no_type}");
        assert_eq!(e.reference, Some(json!(4)), "{no_type}");
    }
    assert_eq!(
        refused(r#"{"type":"d\u0061nce"}"#).message,
        "unknown message type \"dance\""
    );
    assert_eq!(
        refused(r#"{"type":"login","data":"x"}"#).code,
        codes::INVALID_DATA
    );
    assert_eq!(
        refused(r#"{"type":"subscribe","data":""}"#).code,
        codes::INVALID_DATA
    );
    assert_eq!(
        refused(r#"{"type":"subscribe","data":3}"#).code,
        codes::INVALID_DATA
    );
    assert_eq!(
        refused(r#"{"type":"poll","data":{"answer":"a"}}"#).code,
        codes::INVALID_DATA
    );
    assert_eq!(
        refused(r#"{"type":"poll","data":{"id":"p","answer":{}}}"#).code,
        codes::INVALID_DATA
    );
    assert_eq!(
        refused(r#"{"type":"poll","data":"p"}"#).code,
        codes::INVALID_DATA
    );
    assert_eq!(
        refused(r#"{"type":"profile","ref":{}}"#).code,
        codes::INVALID_DATA
    );
    assert_eq!(
        refused(r#"{"type":"broadcast","data":{"data":1}}"#).code,
        codes::INVALID_DATA
    );
    let long = format!(r#"{{"type":"subscribe","data":"{}"}}"#, "x".repeat(300));
    assert_eq!(refused(&long).code, codes::INVALID_DATA);
}

#[test]
fn the_ref_is_kept_on_errors_about_the_message() {
    let e = refused(r#"{"type":"nope","ref":"r1"}"#);
    assert_eq!(e.reference, Some(json!("r1")));
    let frame = payload(&e.frame());
    assert_eq!(frame["type"], "error");
    assert_eq!(frame["ref"], "r1");
    assert_eq!(frame["data"]["code"], "unknown_type");
}

#[test]
fn close_pong_and_login_shapes() {
    assert_eq!(dec(r#"{"type":"close"}"#), Ok(Inbound::Close));
    assert_eq!(dec(r#"{"type":"pong","data":1}"#), Ok(Inbound::Pong));
    assert_eq!(request(r#"{"type":"login"}"#), Request::Login(Map::new()));
    match request(r#"{"type":"login","data":{"name":"a","_secret":1}}"#) {
        Request::Login(props) => assert_eq!(props.len(), 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn poll_answers_may_be_numbers_and_ids_may_hold_colons() {
    assert_eq!(
        request(r#"{"type":"ephemeralPoll","data":{"id":"a:b","answer":3}}"#),
        Request::Vote {
            ephemeral: true,
            poll: "a:b".into(),
            answer: "3".into()
        }
    );
}

#[test]
fn encoding_is_compact_and_exact() {
    let frame = encode(
        types::COUNTER,
        None,
        &rookery_protocol::pact::CounterValue {
            id: "x".into(),
            value: decimal_number(Decimal::from_str("2.6100").unwrap()),
        },
    );
    assert_eq!(
        &frame[2..],
        br#"{"type":"counter","data":{"id":"x","value":2.61}}"#
    );
    assert_eq!(payload(&ok(&json!(3))), json!({"type":"ok","ref":3}));
    assert_eq!(payload(&ping(5)), json!({"type":"ping","data":5}));
}

#[test]
fn resume_and_history_decode() {
    assert_eq!(
        request(r#"{"type":"resume","ref":1,"data":{"epoch":"e1","seq":42}}"#),
        Request::Resume {
            epoch: "e1".into(),
            seq: 42
        }
    );
    assert_eq!(
        request(r#"{"type":"history","ref":1,"data":{"limit":10,"before":7}}"#),
        Request::History {
            limit: 10,
            before: Some(7)
        }
    );
    assert_eq!(
        request(r#"{"type":"history"}"#),
        Request::History {
            limit: DEFAULT_HISTORY_LIMIT,
            before: None
        }
    );
}

#[test]
fn malformed_positions_are_invalid_data_with_the_ref() {
    for text in [
        r#"{"type":"resume","ref":"r"}"#,
        r#"{"type":"resume","ref":"r","data":{"epoch":"e"}}"#,
        r#"{"type":"resume","ref":"r","data":{"epoch":"","seq":1}}"#,
        r#"{"type":"resume","ref":"r","data":{"epoch":7,"seq":1}}"#,
        r#"{"type":"resume","ref":"r","data":{"epoch":"e","seq":-1}}"#,
        r#"{"type":"resume","ref":"r","data":{"epoch":"e","seq":1.5}}"#,
        r#"{"type":"resume","ref":"r","data":{"epoch":"e","seq":"3"}}"#,
        r#"{"type":"history","ref":"r","data":{"limit":-1}}"#,
        r#"{"type":"history","ref":"r","data":{"before":"x"}}"#,
        r#"{"type":"history","ref":"r","data":[1]}"#,
    ] {
        let error = refused(text);
        assert_eq!(error.code, codes::INVALID_DATA, "{text}");
        assert_eq!(error.reference, Some(json!("r")), "{text}");
    }
}

#[test]
fn counter_numbers_keep_every_digit() {
    for (text, exact) in [
        ("12345678901234567.89", "12345678901234567.89"),
        ("0.1", "0.1"),
        ("-15.14", "-15.14"),
        ("1.5e3", "1500"),
        ("18446744073709551615", "18446744073709551615"),
    ] {
        let frame = format!(r#"{{"type":"counter","data":{{"id":"c","value":{text}}}}}"#);
        let Request::Counter { delta, .. } = request(&frame) else {
            panic!("{frame}")
        };
        assert_eq!(delta.normalize().to_string(), exact, "{frame}");
    }
    // simd-json refuses integer literals beyond 64 bits: send those as strings.
    let frame = r#"{"type":"counter","data":{"value":79228162514264337593543950335}}"#;
    assert_eq!(refused(frame).code, codes::INVALID_JSON);
    let frame = r#"{"type":"counter","data":{"value":"79228162514264337593543950335"}}"#;
    assert!(matches!(request(frame), Request::Counter { .. }));
}
