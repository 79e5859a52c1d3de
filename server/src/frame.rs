//! Complete server-to-client WebSocket frames, built once and shared by every recipient.
//!
//! Server frames are unmasked (RFC 6455 §5.1), so the same bytes are valid on every socket:
//! an event is serialized once into a [`Bytes`] and each recipient's queue holds a
//! reference-counted handle to it. The header layout comes from tungstenite's `FrameHeader`.

use bytes::Bytes;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame, FrameHeader};

/// A final text frame carrying `payload` (which must be UTF-8: JSON, for every dialect but
/// the echo endpoint).
pub fn text(payload: &[u8]) -> Bytes {
    data(Data::Text, payload)
}

/// The longest header of a server frame (no mask): 1 + 1 + 8 bytes.
const MAX_HEADER: usize = 10;

/// A final text frame whose payload `write` appends to the buffer it is given (UTF-8, as
/// for [`text`]). The frame is built in place — room for the longest header left in front,
/// the header written into its end once the length is known, the handle started there — so
/// the payload is never written to a buffer of its own and copied after it.
pub fn text_from(write: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut out = Vec::with_capacity(256);
    out.resize(MAX_HEADER, 0);
    write(&mut out);
    // The header is formatted on the stack, then moved against the payload.
    let mut header = [0; MAX_HEADER];
    let mut unused = &mut header[..];
    write_header(Data::Text, out.len() - MAX_HEADER, &mut unused);
    let len = MAX_HEADER - unused.len();
    let start = MAX_HEADER - len;
    out[start..MAX_HEADER].copy_from_slice(&header[..len]);
    Bytes::from(out).slice(start..)
}

/// A final binary frame carrying `payload` (only the echo endpoint sends binary).
pub fn binary(payload: &[u8]) -> Bytes {
    data(Data::Binary, payload)
}

fn data(kind: Data, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 10);
    write_header(kind, payload.len(), &mut out);
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// The header of a final text frame of `len` payload bytes, alone (the payload is written
/// after it as buffers of its own).
pub fn text_header(len: usize) -> Bytes {
    let mut out = Vec::with_capacity(10);
    write_header(Data::Text, len, &mut out);
    Bytes::from(out)
}

fn write_header(kind: Data, len: usize, out: &mut impl std::io::Write) {
    let header = FrameHeader {
        opcode: OpCode::Data(kind),
        ..FrameHeader::default()
    };
    header
        .format(len as u64, out)
        .expect("a Vec, or MAX_HEADER bytes, holds any header");
}

/// A close frame with `code` and a human-readable `reason` (truncated to fit 125 bytes).
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = Frame::close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason[..end].to_owned().into(),
    }));
    let mut out = Vec::with_capacity(frame.len());
    frame
        .format(&mut out)
        .expect("writing to a Vec cannot fail");
    Bytes::from(out)
}

/// A protocol-level ping, which every compliant client answers with a pong.
pub fn ping(payload: &[u8]) -> Bytes {
    let frame = Frame::ping(payload.to_vec());
    let mut out = Vec::with_capacity(frame.len());
    frame
        .format(&mut out)
        .expect("writing to a Vec cannot fail");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_frame_has_two_byte_header() {
        let f = text(b"{}");
        assert_eq!(&f[..], &[0x81, 2, b'{', b'}']);
    }

    #[test]
    fn medium_text_frame_uses_16_bit_length() {
        let f = text(&[b'a'; 300]);
        assert_eq!(&f[..4], &[0x81, 126, 1, 44]);
        assert_eq!(f.len(), 304);
    }

    /// Built in place, a frame is the same bytes as one built from its payload, at every
    /// header size (7-bit, 16-bit and 64-bit lengths and their edges).
    #[test]
    fn a_frame_built_in_place_equals_one_built_from_its_payload() {
        for len in [0, 1, 125, 126, 255, 256, 300, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let in_place = text_from(|out| out.extend_from_slice(&payload));
            assert_eq!(in_place, text(&payload), "{len}");
        }
    }

    #[test]
    fn binary_frame_has_the_binary_opcode() {
        let f = binary(&[0, 0xff]);
        assert_eq!(&f[..], &[0x82, 2, 0, 0xff]);
        assert_eq!(&binary(&[7; 70_000])[..2], &[0x82, 127]);
    }

    #[test]
    fn close_frame_carries_code_and_reason() {
        let f = close(1008, "slow");
        assert_eq!(&f[..], &[0x88, 6, 0x03, 0xF0, b's', b'l', b'o', b'w']);
    }

    #[test]
    fn close_reason_is_truncated_on_a_char_boundary() {
        let long = "é".repeat(100);
        let f = close(1000, &long);
        assert!(f.len() <= 127);
        let reason = &f[4..];
        assert!(std::str::from_utf8(reason).is_ok());
    }
}
