//! Parsing a client's JSON text with simd-json, on scratch buffers each core keeps.
//!
//! `simd_json::serde::from_slice` allocates four buffers (the input's aligned copy, the
//! structural indexes, strings, the parser's stack) for every message and frees them after;
//! on a core handling ~150 k messages a second (W3: many small rooms) that was ~4 % of its
//! time in the allocator. The buffers are kept per thread instead, unless the message was
//! large: a core keeps what an ordinary message needs, not what its largest one did.

use serde::Deserialize;
use simd_json::Buffers;
use std::cell::Cell;

/// Messages up to this size leave their buffers for the next one.
const KEEP_FOR: usize = 16 * 1024;

thread_local! {
    /// Taken while a parse runs (a nested parse, if ever, makes its own).
    static SCRATCH: Cell<Option<Buffers>> = const { Cell::new(None) };
}

/// Parses `text` in place (it is scratch space afterwards), as `simd_json::serde::from_slice`.
pub fn from_slice<'a, T: Deserialize<'a>>(text: &'a mut [u8]) -> simd_json::Result<T> {
    let len = text.len();
    let mut buffers = SCRATCH.take().unwrap_or_else(|| Buffers::new(len));
    let parsed = simd_json::serde::from_slice_with_buffers(text, &mut buffers);
    if len <= KEEP_FOR {
        SCRATCH.set(Some(buffers));
    }
    parsed
}

/// Whether this thread keeps scratch buffers now (for tests).
#[cfg(test)]
fn keeps_scratch() -> bool {
    let kept = SCRATCH.take();
    let keeps = kept.is_some();
    SCRATCH.set(kept);
    keeps
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(text: &str) -> simd_json::Result<Value> {
        from_slice(&mut text.as_bytes().to_vec())
    }

    #[test]
    fn reused_buffers_never_carry_one_message_into_the_next() {
        let long = format!(r#"{{"type":"chat","data":"{}","ref":7}}"#, "x".repeat(4000));
        assert_eq!(parse(&long).unwrap()["data"].as_str().unwrap().len(), 4000);
        assert!(keeps_scratch());
        assert_eq!(parse(r#"{"a":"b"}"#).unwrap(), json!({"a":"b"}));
        assert_eq!(parse(r#"[1,{"c":null}]"#).unwrap(), json!([1, {"c": null}]));
        // A refusal leaves the buffers fit for the next message too.
        assert!(parse(r#"{"a":"#).is_err());
        assert!(parse("{\"a\":\"\\u12\"}").is_err());
        assert_eq!(parse(r#"{"é":"ü"}"#).unwrap(), json!({"é":"ü"}));
    }

    #[test]
    fn a_large_message_leaves_no_buffers_behind() {
        let large = format!(r#"{{"data":"{}"}}"#, "y".repeat(KEEP_FOR * 4));
        assert_eq!(
            parse(&large).unwrap()["data"].as_str().unwrap().len(),
            KEEP_FOR * 4
        );
        assert!(
            !keeps_scratch(),
            "a core keeps no buffers sized for its largest message"
        );
        parse(r#"{"small":1}"#).unwrap();
        assert!(keeps_scratch());
    }
}
