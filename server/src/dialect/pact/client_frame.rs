//! [`ClientFrame`]: the members of a client frame that Pact gives meaning to — `type`, `data`
//! and `ref` — read straight off the parser.
//!
//! Reading the frame into a `Value` first cost a map node and a string per member (and the
//! type's own string) on every message, a chat included, only to take three members out
//! of it again. `ClientFrame` keeps only what it reads: the type borrowed from the frame
//! (simd-json unescapes strings in place, so a string is always a slice of the frame), the
//! data and the reference as values. It reads exactly what the map did: members in any
//! order, others skipped, a repeated member's last value kept, and anything but an object
//! refused.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// What a Pact client frame says, before its `type` is interpreted.
#[derive(Debug, PartialEq)]
pub(super) enum ClientFrame<'a> {
    /// A JSON object.
    Object {
        /// The `type` member: `None` when absent, `Some(None)` when it is not a string.
        kind: Option<Option<Cow<'a, str>>>,
        /// The `data` member (`null` when absent).
        data: Value,
        /// The `ref` member, as sent.
        reference: Option<Value>,
    },
    /// Any other JSON value: refused by the caller.
    NotAnObject,
}

impl<'de: 'a, 'a> Deserialize<'de> for ClientFrame<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ClientFrameVisitor)
    }
}

struct ClientFrameVisitor;

/// Visitor methods that answer `$answer` (a `$out`) to whatever scalar they are given: both
/// visitors here accept any JSON value and care about one kind only.
macro_rules! answer_scalars_with {
    ($out:ty, $answer:expr; $($method:ident($($arg:ty)?)),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self $(, _: $arg)?) -> Result<$out, E> {
                Ok($answer)
            }
        )*
    };
}

impl<'de> Visitor<'de> for ClientFrameVisitor {
    type Value = ClientFrame<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    answer_scalars_with!(ClientFrame<'de>, ClientFrame::NotAnObject;
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_f64(f64),
        visit_str(&str),
        visit_unit(),
        visit_none(),
    );

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ClientFrame<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(ClientFrame::NotAnObject)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ClientFrame<'de>, A::Error> {
        let (mut kind, mut data, mut reference) = (None, Value::Null, None);
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Type => kind = Some(map.next_value::<TypeName>()?.0),
                Key::Data => data = map.next_value()?,
                Key::Ref => reference = Some(map.next_value()?),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(ClientFrame::Object {
            kind,
            data,
            reference,
        })
    }
}

/// A member's name, told apart without keeping it.
enum Key {
    Type,
    Data,
    Ref,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "type" => Key::Type,
                    "data" => Key::Data,
                    "ref" => Key::Ref,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The `type` member: the string, borrowed from the frame where the parser lends it, or
/// `None` for any other value (which is consumed).
struct TypeName<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for TypeName<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TypeNameVisitor)
    }
}

struct TypeNameVisitor;

impl<'de> Visitor<'de> for TypeNameVisitor {
    type Value = TypeName<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, name: &'de str) -> Result<TypeName<'de>, E> {
        Ok(TypeName(Some(Cow::Borrowed(name))))
    }

    /// Only from a parser that cannot lend the string (simd-json always can).
    fn visit_str<E: de::Error>(self, name: &str) -> Result<TypeName<'de>, E> {
        Ok(TypeName(Some(Cow::Owned(name.to_owned()))))
    }

    // Every value but a string is "not a type name".
    answer_scalars_with!(TypeName<'de>, TypeName(None);
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_f64(f64),
        visit_unit(),
        visit_none(),
    );

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TypeName<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(TypeName(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TypeName<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(TypeName(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(text: &str) -> Result<ClientFrame<'static>, String> {
        let bytes: &'static mut [u8] = Box::leak(text.as_bytes().to_vec().into_boxed_slice());
        super::super::super::json::from_slice(bytes).map_err(|e| e.to_string())
    }

    fn object(
        kind: Option<Option<&'static str>>,
        data: Value,
        reference: Option<Value>,
    ) -> ClientFrame<'static> {
        ClientFrame::Object {
            kind: kind.map(|kind| kind.map(Cow::Borrowed)),
            data,
            reference,
        }
    }

    /// The type as `ClientFrame` holds it: borrowed from the frame, not copied.
    fn borrowed(frame: &ClientFrame<'_>) -> bool {
        matches!(
            frame,
            ClientFrame::Object {
                kind: Some(Some(Cow::Borrowed(_))),
                ..
            }
        )
    }

    #[test]
    fn reads_the_three_members_in_any_order_and_skips_the_rest() {
        assert_eq!(
            read(r#"{"ref":7,"extra":{"a":[1,2]},"data":{"x":"y"},"type":"chat"}"#),
            Ok(object(
                Some(Some("chat")),
                json!({"x": "y"}),
                Some(json!(7))
            ))
        );
        assert_eq!(
            read(r#"{"type":"profile"}"#),
            Ok(object(Some(Some("profile")), Value::Null, None))
        );
        assert_eq!(read("{}"), Ok(object(None, Value::Null, None)));
    }

    #[test]
    fn an_escaped_type_is_unescaped_and_still_borrowed() {
        let frame = read(r#"{"type":"ch\u0061t","data":"\"hi\""}"#).unwrap();
        assert_eq!(frame, object(Some(Some("chat")), json!("\"hi\""), None));
        assert!(borrowed(&frame));
        assert!(borrowed(&read(r#"{"type":"chat"}"#).unwrap()));
    }

    #[test]
    fn a_repeated_member_keeps_its_last_value_as_a_map_would() {
        assert_eq!(
            read(r#"{"type":"x","data":1,"type":"chat","data":2,"ref":null}"#),
            Ok(object(Some(Some("chat")), json!(2), Some(Value::Null)))
        );
    }

    #[test]
    fn a_type_that_is_not_a_string_is_read_whole_and_reported() {
        for kind in ["1", "true", "null", "[1,[2]]", r#"{"a":{"b":1}}"#, "2.5"] {
            assert_eq!(
                read(&format!(r#"{{"type":{kind},"data":"d"}}"#)),
                Ok(object(Some(None), json!("d"), None)),
                "{kind}"
            );
        }
    }

    #[test]
    fn anything_but_an_object_is_not_an_object_and_bad_json_is_an_error() {
        for text in [r#"["chat","hi"]"#, r#""chat""#, "1", "null", "true"] {
            assert_eq!(read(text), Ok(ClientFrame::NotAnObject), "{text}");
        }
        for text in [r#"{"type":"chat""#, r#"{"type":}"#, "", r#"{"type":"a"} x"#] {
            assert!(read(text).is_err(), "{text}");
        }
    }
}
