//! What a member or the server sent, as a room's events carry it: one shared value that is
//! a parsed JSON [`Value`], its compact JSON text, or both.
//!
//! Shared, because one event is held at once by the sends of its batch, the room's history
//! and the store's (and, across nodes, the broker's): a copy for each would cost an
//! allocation and a copy of the whole payload per holder.
//!
//! Text as well as a value, because most holders only pass the payload on. An event that
//! comes back from another node (Redis) or from the disk is JSON text already: parsing its
//! payload into a `Value` (a tree node and an allocation per member) only to write it out
//! again in every recipient's frame cost a node on Redis more per event than everything
//! else it did with it (callgrind, docs/ARCHITECTURE.md "Events across nodes"). Such a
//! payload keeps the text and copies it into frames; the value is parsed only if a codec
//! or a request looks inside (SLIP's control text, a store's snapshot), and then kept.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// A payload, cheap to clone (one reference count).
#[derive(Clone)]
pub struct Payload(Arc<Forms>);

/// At least one of the two is set from the start; the other is made on first need.
struct Forms {
    value: OnceLock<Value>,
    /// Compact JSON (no line breaks: Redis's run format puts one body on a line).
    json: OnceLock<Box<RawValue>>,
}

impl Payload {
    /// A payload from a parsed value (a client's frame, an HTTP body).
    pub fn new(value: Value) -> Payload {
        Payload(Arc::new(Forms {
            value: OnceLock::from(value),
            json: OnceLock::new(),
        }))
    }

    /// A payload from JSON text known to be compact (written by [`Payload`]'s `Serialize`).
    fn from_json(json: Box<RawValue>) -> Payload {
        Payload(Arc::new(Forms {
            value: OnceLock::new(),
            json: OnceLock::from(json),
        }))
    }

    /// The parsed value (parsed now if the payload came as text).
    pub fn value(&self) -> &Value {
        self.0.value.get_or_init(|| {
            let json = self
                .0
                .json
                .get()
                .expect("a payload has a value or its text");
            serde_json::from_str(json.get()).expect("a payload's text is JSON")
        })
    }

    /// Whether the value has been parsed (or was given): for tests of who parses.
    #[cfg(test)]
    pub fn is_parsed(&self) -> bool {
        self.0.value.get().is_some()
    }

    /// The value, taken out if this is the last holder.
    pub fn into_value(self) -> Value {
        match Arc::try_unwrap(self.0) {
            Ok(forms) => match forms.value.into_inner() {
                Some(value) => value,
                None => {
                    let json = forms.json.into_inner().expect("a payload has a form");
                    serde_json::from_str(json.get()).expect("a payload's text is JSON")
                }
            },
            Err(shared) => Payload(shared).value().clone(),
        }
    }
}

impl Payload {
    /// Appends the payload's compact JSON to `out`: exactly what `serde_json` writes for it
    /// (its `Serialize`), for codecs that write their hottest frames by hand. A string
    /// value, what most chat messages are, is checked for characters JSON escapes and, when
    /// it has none (the common case), copied as it is: `serde_json` looks each byte up
    /// and was ~7 % of a W3 core's instructions (callgrind) escaping 128-byte messages that
    /// needed no escape.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self.0.json.get() {
            Some(json) => out.extend_from_slice(json.get().as_bytes()),
            None => match self.value() {
                Value::String(text) => write_json_str(text, out),
                value => serde_json::to_writer(out, value).expect("a value serializes"),
            },
        }
    }
}

/// `text` as a JSON string, as `serde_json` writes it (it escapes `"`, `\` and the control
/// characters below U+0020, nothing else).
pub fn write_json_str(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    if is_plain_json_text(bytes) {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
    } else {
        serde_json::to_writer(out, text).expect("a string serializes");
    }
}

/// Whether `bytes` need no escape inside a JSON string: no `"`, no `\\`, no control
/// character below U+0020. Those are exactly what `serde_json` escapes when it writes a
/// string, and exactly what may not stand unescaped between a JSON string's quotes when it
/// is read (RFC 8259 §7), so the same check serves both ways.
pub fn is_plain_json_text(bytes: &[u8]) -> bool {
    fn escaped(b: u8) -> bool {
        b < 0x20 || b == b'"' || b == b'\\'
    }
    // Whole chunks are checked without an early exit, so the check runs on vectors.
    let mut chunks = bytes.chunks_exact(32);
    chunks.all(|chunk| !chunk.iter().fold(false, |any, &b| any | escaped(b)))
        && !chunks.remainder().iter().any(|&b| escaped(b))
}

impl From<Value> for Payload {
    fn from(value: Value) -> Payload {
        Payload::new(value)
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.value() == other.value()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.value(), f)
    }
}

/// The text when there is one (copied as it is), else the value. Every serializer of events
/// is `serde_json`'s, which writes the text verbatim; the text is not made and kept here, so
/// a payload that only ever has a value costs no more than before.
impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.json.get() {
            Some(json) => json.serialize(serializer),
            None => self.value().serialize(serializer),
        }
    }
}

/// Kept as text, unparsed, when the text is on one line (all that `Serialize` writes is);
/// text with line breaks (only ever whitespace between tokens) is parsed, so that the text a
/// payload keeps can always go on one line.
impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Payload, D::Error> {
        let json = Box::<RawValue>::deserialize(deserializer)?;
        if memchr::memchr2(b'\n', b'\r', json.get().as_bytes()).is_some() {
            let value = serde_json::from_str(json.get()).map_err(serde::de::Error::custom)?;
            Ok(Payload::new(value))
        } else {
            Ok(Payload::from_json(json))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(payload: &Payload) -> Payload {
        serde_json::from_str(&serde_json::to_string(payload).unwrap()).unwrap()
    }

    #[test]
    fn a_value_round_trips_as_text_and_is_parsed_on_demand() {
        let sent =
            Payload::new(json!({"b": [1, 2.5, "x\ny"], "a": null, "big": 18446744073709551615u64}));
        let text = serde_json::to_string(&sent).unwrap();
        assert_eq!(text, serde_json::to_string(sent.value()).unwrap());
        let received = round_trip(&sent);
        assert!(received.0.value.get().is_none(), "not parsed on arrival");
        assert_eq!(
            serde_json::to_string(&received).unwrap(),
            text,
            "the text as it came"
        );
        assert!(
            received.0.value.get().is_none(),
            "not parsed to be written out"
        );
        assert_eq!(received, sent);
        assert_eq!(received.value()["b"][2], "x\ny");
        assert_eq!(received.into_value(), sent.into_value());
    }

    #[test]
    fn text_inside_other_json_is_copied_verbatim() {
        let received = round_trip(&Payload::new(json!({"k": "v"})));
        #[derive(Serialize)]
        struct Outer<'a> {
            data: &'a Payload,
            n: u8,
        }
        let text = serde_json::to_string(&Outer {
            data: &received,
            n: 1,
        })
        .unwrap();
        assert_eq!(text, r#"{"data":{"k":"v"},"n":1}"#);
    }

    #[test]
    fn text_with_line_breaks_is_parsed_and_written_compact() {
        let payload: Payload = serde_json::from_str("{\n  \"a\": [1,\r\n 2]\n}").unwrap();
        assert_eq!(serde_json::to_string(&payload).unwrap(), r#"{"a":[1,2]}"#);
        let nested: Vec<Payload> = serde_json::from_str("[1, {\"x\":\n2}]").unwrap();
        assert_eq!(serde_json::to_string(&nested).unwrap(), r#"[1,{"x":2}]"#);
    }

    /// `write_json` writes what `serde_json` does, for every form and every character
    /// class a string may hold (each ASCII byte, in a short and in a long string, where the
    /// check runs on whole chunks).
    #[test]
    fn write_json_matches_serde_json() {
        let mut texts: Vec<String> = (0u8..=0x7f)
            .flat_map(|b| {
                let c = char::from(b);
                [
                    c.to_string(),
                    format!("{}{c}{}", "a".repeat(40), "b".repeat(30)),
                ]
            })
            .collect();
        texts.extend(["", "héllo wörld ✓ 𝄞", "\u{2028}\u{2029}\u{7f}"].map(String::from));
        texts.push("x".repeat(64));
        let mut payloads: Vec<Payload> =
            texts.into_iter().map(|t| Payload::new(json!(t))).collect();
        payloads.push(Payload::new(
            json!({"a": [1, "q\"", null], "b": {"c": 2.5}}),
        ));
        payloads.push(Payload::new(json!(12)));
        payloads.push(round_trip(&Payload::new(json!({"k": "v\n"}))));
        for payload in &payloads {
            let mut out = b"prefix".to_vec();
            payload.write_json(&mut out);
            let expected = format!("prefix{}", serde_json::to_string(payload).unwrap());
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{payload:?}");
        }
    }

    #[test]
    fn bad_text_is_refused() {
        assert!(serde_json::from_str::<Payload>("{\"a\":").is_err());
        assert!(serde_json::from_str::<Payload>("[1,]").is_err());
        assert!(serde_json::from_str::<Payload>("").is_err());
    }

    #[test]
    fn a_value_from_another_deserializer_works() {
        let payload: Payload = serde_json::from_value(json!({"a": [true]})).unwrap();
        assert_eq!(*payload.value(), json!({"a": [true]}));
        assert_eq!(
            serde_json::to_value(&payload).unwrap(),
            json!({"a": [true]})
        );
    }
}
