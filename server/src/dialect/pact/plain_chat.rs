//! The commonest Pact frame read without the JSON parser: a chat whose message is a string
//! with nothing escaped in it, written as `JSON.stringify` and the SDK write it —
//! `{"type":"chat","data":"…"}`, or with a numeric `ref` after the data,
//! `{"type":"chat","data":"…","ref":7}`.
//!
//! Why: a chat is most of what rooms carry, and simd-json's parse of one (copying it into
//! its buffers, the structural scan, serde's visit of three members) was ~2,000
//! instructions a message, an eighth of a saturated W3 core's work (callgrind). This reads
//! it with one vectorized check of the message and a few comparisons.
//!
//! It only ever answers what [`super::decode_json`] would: anything else — other members,
//! another order, white space, an escape, a `ref` that is not a small unsigned integer — is
//! `None`, and the full decoder reads it. A test runs both over every shape it accepts and
//! many it must not.

use super::Inbound;
use crate::engine::payload::is_plain_json_text;
use crate::engine::Request;
use serde_json::Value;

/// What comes before the message.
const HEAD: &[u8] = br#"{"type":"chat","data":""#;

/// What comes between the message and the `ref`'s digits (the message's closing quote
/// first).
const REF_AFTER_MESSAGE: &[u8] = br#"","ref":"#;

/// The longest `ref` read here: every integer of 15 digits is exact as a JSON number in
/// any reader (below 2^53).
const MAX_REF_DIGITS: usize = 15;

/// `text` as [`super::decode_json`] decodes it, when it is a plain chat; `None` otherwise.
pub fn decode(text: &[u8]) -> Option<Inbound> {
    let rest = text.strip_prefix(HEAD)?;
    // The frame's end is matched from the back; a quote inside the message (which would
    // make these boundaries ambiguous) fails the plainness check below.
    let (message, reference) = match rest.strip_suffix(br#""}"#) {
        Some(message) => (message, None),
        None => {
            let body = rest.strip_suffix(b"}")?;
            let digits_at = body.iter().rposition(|b| !b.is_ascii_digit())? + 1;
            let (head, digits) = body.split_at(digits_at);
            let message = head.strip_suffix(REF_AFTER_MESSAGE)?;
            (message, Some(Value::from(small_uint(digits)?)))
        }
    };
    if !is_plain_json_text(message) {
        return None;
    }
    let message = std::str::from_utf8(message).ok()?;
    Some(Inbound::Request {
        reference,
        request: Request::Chat(Value::String(message.to_owned())),
    })
}

/// Decimal digits as JSON writes an unsigned integer (no sign, no leading zero, no
/// fraction or exponent), of at most [`MAX_REF_DIGITS`].
fn small_uint(digits: &[u8]) -> Option<u64> {
    let well_formed = !digits.is_empty()
        && digits.len() <= MAX_REF_DIGITS
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || digits.len() == 1);
    well_formed.then(|| {
        digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::super::{decode_json, DecodeError};
    use super::*;

    fn full(text: &str) -> Result<Inbound, DecodeError> {
        decode_json(&mut text.as_bytes().to_vec())
    }

    /// Frames read here, each exactly as the JSON parser reads it.
    #[test]
    fn what_it_reads_is_what_the_parser_reads() {
        let long = "x".repeat(1000);
        let every_plain_ascii: String = (0x20u8..0x7f)
            .filter(|b| *b != b'"' && *b != b'\\')
            .map(char::from)
            .collect();
        let messages = [
            "",
            "hi",
            "T1234567890:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "grüße, 世界, 🦀",
            "a '}' and a ',\"ref\":' inside",
            &long,
            &every_plain_ascii,
            "ref",
            "}",
            "{\"type\":\"chat\"}",
        ];
        let mut read = 0;
        for message in messages {
            // Messages with a quote in them are written escaped, and go to the parser.
            let escaped = serde_json::to_string(message).unwrap();
            let frames = [
                format!(r#"{{"type":"chat","data":{escaped}}}"#),
                format!(r#"{{"type":"chat","data":{escaped},"ref":0}}"#),
                format!(r#"{{"type":"chat","data":{escaped},"ref":7}}"#),
                format!(r#"{{"type":"chat","data":{escaped},"ref":999999999999999}}"#),
            ];
            for frame in frames {
                let fast = decode(frame.as_bytes());
                if let Some(fast) = &fast {
                    read += 1;
                    assert_eq!(Ok(fast), full(&frame).as_ref(), "{frame}");
                } else {
                    assert!(message.contains('"'), "{frame} is plain: read here");
                }
            }
        }
        assert_eq!(read, 32, "every plain message, with and without a ref");
    }

    /// Anything else goes to the parser, which gives it its meaning (or its error).
    #[test]
    fn anything_else_is_left_to_the_parser() {
        let others = [
            r#"{"type":"chat","data":"a\"b"}"#,
            r#"{"type":"chat","data":"a\nb"}"#,
            r#"{"type":"chat","data":"a\u0041"}"#,
            "{\"type\":\"chat\",\"data\":\"tab\there\"}",
            "{\"type\":\"chat\",\"data\":\"nul\u{0}\"}",
            r#"{"type":"chat","data":"a" }"#,
            r#"{"type":"chat","data":"a"} "#,
            r#"{"type":"chat","data":"a","ref":"r1"}"#,
            r#"{"type":"chat","data":"a","ref":01}"#,
            r#"{"type":"chat","data":"a","ref":-1}"#,
            r#"{"type":"chat","data":"a","ref":1.5}"#,
            r#"{"type":"chat","data":"a","ref":1e3}"#,
            r#"{"type":"chat","data":"a","ref":}"#,
            r#"{"type":"chat","data":"a","ref":1000000000000000}"#,
            r#"{"type":"chat","data":"a","ref":1,"data":"b"}"#,
            r#"{"type":"chat","data":"a","type":"poll"}"#,
            r#"{"type":"chat","data":"a","x":1}"#,
            r#"{"type":"chat","data":"a""#,
            r#"{"type":"chat","data":"a"}}"#,
            r#"{"type":"chat","data":"a"]"#,
            r#"{"type":"chat","data":"}"#,
            r#"{"type":"chat","data":""#,
            r#"{"type":"chat","data":123}"#,
            r#"{"type":"chat","data":{"text":"a"}}"#,
            r#"{"type":"chat", "data":"a"}"#,
            r#"{"data":"a","type":"chat"}"#,
            r#"{"type":"chatx","data":"a"}"#,
        ];
        for frame in others {
            assert_eq!(decode(frame.as_bytes()), None, "{frame}");
        }
    }

    #[test]
    fn refs_are_read_as_json_writes_unsigned_integers() {
        assert_eq!(small_uint(b"0"), Some(0));
        assert_eq!(small_uint(b"42"), Some(42));
        assert_eq!(small_uint(b"999999999999999"), Some(999_999_999_999_999));
        for refused in [&b""[..], b"00", b"01", b"-1", b"1.0", b"1e2", b"+1", b" 1"] {
            assert_eq!(small_uint(refused), None);
        }
        assert_eq!(small_uint(b"1000000000000000"), None, "16 digits");
    }
}
