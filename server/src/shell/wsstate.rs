//! A connection's WebSocket protocol state — tungstenite's context and the in-memory stream
//! it runs over — made only while the client is mid-message.
//!
//! tungstenite's context with its read buffer is ~450 bytes, more than anything else an idle
//! connection holds. Between messages it holds nothing that a new context would not: the
//! connection is open, no frame or fragmented message is half received, and every reply it
//! queued (pongs) has been moved to the send queue. [`FrameBounds`] follows the client's
//! frame boundaries with tungstenite's own header parser so the session knows when that is
//! the case and can drop the state ([`WsState::at_rest`]).

use super::memstream::MemStream;
use smallvec::SmallVec;
use std::io::Cursor;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

/// tungstenite's own read chunk (it grows on demand to hold a larger frame): small, since
/// a busy connection's state is made for each burst of messages.
const PROTOCOL_BUFFER: usize = 128;

pub struct WsState {
    pub ctx: WebSocketContext,
    pub stream: MemStream,
    frames: FrameBounds,
}

impl WsState {
    /// A server-side context that refuses messages and frames over `max_message` bytes.
    pub fn new(max_message: usize) -> WsState {
        let config = WebSocketConfig::default()
            .read_buffer_size(PROTOCOL_BUFFER)
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        WsState {
            ctx: WebSocketContext::new(Role::Server, Some(config)),
            stream: MemStream::default(),
            frames: FrameBounds::default(),
        }
    }

    /// Adds bytes read from the client to tungstenite's input.
    pub fn push(&mut self, bytes: &[u8]) {
        self.frames.feed(bytes);
        self.stream.inbound.extend(bytes.iter().copied());
    }

    /// Whether everything given to tungstenite was whole frames of whole messages, all
    /// consumed, with no reply left to move: a new context would behave the same.
    pub fn at_rest(&self) -> bool {
        self.frames.at_rest() && self.stream.inbound.is_empty() && self.stream.outbound.is_empty()
    }
}

/// Where the client's frames end: the bytes still due for the current frame, and whether a
/// fragmented data message is open. Headers are parsed by tungstenite's [`FrameHeader`].
#[derive(Default, Debug)]
pub struct FrameBounds {
    /// The start of a header that has not fully arrived.
    header: SmallVec<[u8; 14]>,
    /// Payload bytes still due for the frame whose header was parsed.
    payload_left: u64,
    /// A data frame without FIN was seen and its final continuation not yet.
    fragmented: bool,
    /// A header did not parse: tungstenite fails the connection; never at rest again.
    broken: bool,
}

impl FrameBounds {
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.broken {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len() as u64);
                self.payload_left -= n;
                bytes = &bytes[n as usize..];
                continue;
            }
            if self.header.is_empty() {
                // The common case: the whole header is in this read.
                let mut cursor = Cursor::new(bytes);
                match FrameHeader::parse(&mut cursor) {
                    Ok(Some((header, len))) => {
                        self.frame(&header, len);
                        bytes = &bytes[cursor.position() as usize..];
                    }
                    Ok(None) => {
                        self.header.extend_from_slice(bytes);
                        bytes = &[];
                    }
                    Err(_) => self.broken = true,
                }
                continue;
            }
            // A header split across reads: one byte at a time until it parses.
            self.header.push(bytes[0]);
            bytes = &bytes[1..];
            let mut cursor = Cursor::new(&self.header[..]);
            match FrameHeader::parse(&mut cursor) {
                Ok(Some((header, len))) => {
                    self.header.clear();
                    self.frame(&header, len);
                }
                Ok(None) => {}
                Err(_) => self.broken = true,
            }
        }
    }

    fn frame(&mut self, header: &FrameHeader, len: u64) {
        self.payload_left = len;
        if let OpCode::Data(data) = header.opcode {
            if !matches!(data, Data::Reserved(_)) {
                self.fragmented = !header.is_final;
            }
        }
    }

    pub fn at_rest(&self) -> bool {
        !self.broken && !self.fragmented && self.header.is_empty() && self.payload_left == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::protocol::frame::coding::Control;
    use tungstenite::protocol::frame::Frame;

    /// A masked client frame, as tungstenite writes it.
    fn frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut frame = match opcode {
            OpCode::Control(Control::Ping) => Frame::ping(payload.to_vec()),
            _ => Frame::message(payload.to_vec(), opcode, fin),
        };
        frame.header_mut().mask = Some([0x37, 0xfa, 0x21, 0x3d]);
        let mut out = Vec::new();
        frame.format(&mut out).unwrap();
        out
    }

    #[test]
    fn whole_frames_are_at_rest_and_partial_ones_are_not() {
        let text = frame(OpCode::Data(Data::Text), true, b"hello");
        let mut bounds = FrameBounds::default();
        assert!(bounds.at_rest());
        bounds.feed(&text);
        assert!(bounds.at_rest());
        // Split everywhere, header included.
        for cut in 1..text.len() {
            let mut bounds = FrameBounds::default();
            bounds.feed(&text[..cut]);
            assert!(!bounds.at_rest(), "cut at {cut}");
            bounds.feed(&text[cut..]);
            assert!(bounds.at_rest(), "cut at {cut}");
        }
    }

    #[test]
    fn a_fragmented_message_is_open_until_its_final_continuation() {
        let mut bounds = FrameBounds::default();
        bounds.feed(&frame(OpCode::Data(Data::Text), false, b"hel"));
        assert!(!bounds.at_rest());
        // A ping between fragments leaves the message open.
        bounds.feed(&frame(OpCode::Control(Control::Ping), true, b""));
        assert!(!bounds.at_rest());
        bounds.feed(&frame(OpCode::Data(Data::Continue), true, b"lo"));
        assert!(bounds.at_rest());
    }

    #[test]
    fn long_payload_lengths_and_many_frames_in_one_read() {
        let big = frame(OpCode::Data(Data::Binary), true, &[7; 70_000]);
        let mut both = frame(OpCode::Data(Data::Text), true, &[b'a'; 300]);
        both.extend_from_slice(&big);
        let mut bounds = FrameBounds::default();
        bounds.feed(&both[..both.len() - 1]);
        assert!(!bounds.at_rest());
        bounds.feed(&both[both.len() - 1..]);
        assert!(bounds.at_rest());
    }

    /// Random valid streams (messages whole or fragmented, pings between fragments, all
    /// payload lengths encodings) cut at random: at rest exactly at the ends of whole
    /// messages, whatever the cuts.
    #[test]
    fn random_streams_cut_anywhere_are_at_rest_exactly_between_messages() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
        for _ in 0..200 {
            let mut stream = Vec::new();
            let mut rest_points = vec![0];
            for _ in 0..1 + next(6) {
                let parts = 1 + next(3);
                for part in 0..parts {
                    let len = [0, 1, 125, 126, 127, 300, 65_535, 65_536][next(8)];
                    let opcode = if part == 0 {
                        OpCode::Data(Data::Text)
                    } else {
                        OpCode::Data(Data::Continue)
                    };
                    stream.extend(frame(opcode, part + 1 == parts, &vec![b'x'; len]));
                    if part + 1 < parts && next(2) == 0 {
                        stream.extend(frame(OpCode::Control(Control::Ping), true, b""));
                    }
                }
                rest_points.push(stream.len());
            }
            let mut bounds = FrameBounds::default();
            let mut fed = 0;
            while fed < stream.len() {
                let take = (1 + next(70_000)).min(stream.len() - fed);
                bounds.feed(&stream[fed..fed + take]);
                fed += take;
                assert_eq!(
                    bounds.at_rest(),
                    rest_points.contains(&fed),
                    "after {fed} bytes"
                );
            }
        }
    }

    #[test]
    fn state_is_at_rest_only_when_consumed_and_flushed() {
        let mut state = WsState::new(1024);
        state.push(&frame(OpCode::Data(Data::Text), true, b"hi"));
        assert!(!state.at_rest(), "not read by tungstenite yet");
        let message = state.ctx.read(&mut state.stream).unwrap();
        assert_eq!(message.into_text().unwrap().as_str(), "hi");
        assert!(state.at_rest());
        state.push(&frame(OpCode::Control(Control::Ping), true, b"p"));
        let _ = state.ctx.read(&mut state.stream);
        let _ = state.ctx.read(&mut state.stream);
        let _ = state.ctx.flush(&mut state.stream);
        assert!(!state.at_rest(), "the pong is still to move");
        state.stream.outbound.clear();
        assert!(state.at_rest());
    }
}
