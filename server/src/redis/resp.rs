//! RESP2 on the wire, with no IO: commands encoded as arrays of bulk strings, replies
//! decoded by the `redis-protocol` crate (its parser is what is tested and fuzzed upstream;
//! the encoding of a command is a few lines and needs no library).

use redis_protocol::resp2::decode::decode;
pub use redis_protocol::resp2::types::OwnedFrame as Frame;

/// Appends `args` to `out` as one command (a RESP array of bulk strings).
pub fn encode_command<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        let arg = arg.as_ref();
        out.push(b'$');
        out.extend_from_slice(arg.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
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
