//! RESP2 on the wire, with no IO: commands encoded as arrays of bulk strings, replies
//! decoded by the `redis-protocol` crate (its parser is what is tested and fuzzed upstream;
//! the encoding of a command is a few lines and needs no library).

use redis_protocol::resp2::decode::decode;
pub use redis_protocol::resp2::types::OwnedFrame as Frame;

/// Appends `args` to `out` as one command (a RESP array of bulk strings).
pub fn encode_command<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    // Room for all of it at once: a sequencer call is a dozen arguments, some long.
    out.reserve(16 + args.iter().map(|a| a.as_ref().len() + 16).sum::<usize>());
    out.push(b'*');
    push_decimal(out, args.len());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        let arg = arg.as_ref();
        out.push(b'$');
        push_decimal(out, arg.len());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// `n` in decimal, without a `String` for it.
fn push_decimal(out: &mut Vec<u8>, n: usize) {
    use std::io::Write;
    write!(out, "{n}").expect("a Vec takes every write");
}

/// One command, encoded.
pub fn command<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_command(&mut out, args);
    out
}

/// Takes the whole replies at the front of `buf`, leaving a partial one in place.
pub fn decode_all(buf: &mut Vec<u8>, into: &mut Vec<Frame>) -> Result<(), String> {
    let mut used = 0;
    while used < buf.len() {
        match decode(&buf[used..]) {
            Ok(Some((frame, len))) => {
                into.push(frame);
                used += len;
            }
            Ok(None) => break,
            Err(e) => return Err(format!("bad reply from redis: {e:?}")),
        }
    }
    buf.drain(..used);
    Ok(())
}

/// The most one read takes from a Redis connection. Each read is one io_uring round, after
/// which the core's other tasks run — the engine, then every writer with frames queued —,
/// so what one read brings is what a node delivers per turn. With 16 KB (~40 pushes of
/// one small event), two nodes behind on pushes from 100 busy rooms wrote each frame on
/// its own and never caught up (W3's shape saturated at ~110 k deliveries/s with Redis
/// holding megabytes for the node); with 256 KB a backlog is taken in large turns whose
/// frames share writes, and the same pair keeps up at 300 k (bench/RESULTS.md). 1 MB did
/// no better. Zeroed pages are only touched as far as a read fills them.
const READ_CHUNK: usize = 256 * 1024;

/// The replies arriving on one Redis connection: each [`read`](FrameReader::read) takes
/// what the socket has and decodes the whole frames it completes (a frame split between
/// reads waits in `buf`). Shared by the command and the subscriber connections.
pub struct FrameReader {
    buf: Vec<u8>,
    chunk: Vec<u8>,
}

impl Default for FrameReader {
    fn default() -> FrameReader {
        FrameReader::new()
    }
}

impl FrameReader {
    pub fn new() -> FrameReader {
        FrameReader {
            buf: Vec::with_capacity(16 * 1024),
            chunk: vec![0u8; READ_CHUNK],
        }
    }

    /// Reads once from `rd` and appends the frames that read completes to `frames`.
    /// `Err(why)` when the connection is over (closed, failed, or garbled).
    pub async fn read(
        &mut self,
        rd: &mut impl monoio::io::AsyncReadRent,
        frames: &mut Vec<Frame>,
    ) -> Result<(), String> {
        let chunk = std::mem::take(&mut self.chunk);
        let (result, back) = rd.read(chunk).await;
        self.chunk = back;
        match result {
            Ok(0) => return Err("closed by redis".to_owned()),
            Ok(n) => self.buf.extend_from_slice(&self.chunk[..n]),
            Err(e) => return Err(e.to_string()),
        }
        decode_all(&mut self.buf, frames)
    }
}

/// A reply's text (bulk or simple string), if it is one.
pub fn text(frame: &Frame) -> Option<&str> {
    match frame {
        Frame::BulkString(b) | Frame::SimpleString(b) => std::str::from_utf8(b).ok(),
        _ => None,
    }
}

/// A reply's integer (an integer, or a string holding one).
pub fn int(frame: &Frame) -> Option<i64> {
    match frame {
        Frame::Integer(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            command(&["SET", "k", ""]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
        );
    }

    #[test]
    fn replies_are_taken_whole_and_a_partial_one_waits() {
        let mut buf = b"+OK\r\n:42\r\n$5\r\nhel".to_vec();
        let mut got = Vec::new();
        decode_all(&mut buf, &mut got).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(text(&got[0]), Some("OK"));
        assert_eq!(int(&got[1]), Some(42));
        assert_eq!(buf, b"$5\r\nhel");
        buf.extend_from_slice(b"lo\r\n*2\r\n$1\r\na\r\n$-1\r\n");
        decode_all(&mut buf, &mut got).unwrap();
        assert_eq!(text(&got[2]), Some("hello"));
        assert_eq!(
            got[3],
            Frame::Array(vec![Frame::BulkString(b"a".to_vec()), Frame::Null])
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut buf = b"?what\r\n".to_vec();
        assert!(decode_all(&mut buf, &mut Vec::new()).is_err());
    }
}
