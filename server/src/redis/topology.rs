//! Redis Cluster's rules, with no IO: which of the 16,384 slots a key (or a shard
//! channel) is in, which key of a command decides where it goes, the slot map that
//! `CLUSTER SLOTS` answers, and the `MOVED` / `ASK` redirections a master answers for a
//! slot it does not (or no longer) serve. `cluster.rs` does the IO.

use super::resp::{self, Frame};

/// Slots in a Redis Cluster.
pub const SLOTS: usize = 16_384;

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), the checksum Redis Cluster
/// hashes keys with.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of a key or shard channel: only its hash tag (what is between the first `{`
/// and the first `}` after it) counts when there is one and it is not empty, so that
/// `rk:{room}:seq` and `rk:{room}:log` share a slot.
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let close = key[open + 1..].iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &key[open + 1..open + 1 + close])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS as u16
}

/// Where a command has to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To the master of this slot.
    Slot(u16),
    /// Anywhere (no key: `PING`, `CLUSTER SLOTS`, a script without keys).
    Any,
    /// To every master (`SCRIPT LOAD`: each master keeps its own script cache).
    All,
}

/// The route of a command by its first key. The commands this node sends have their key
/// first (`GET k`, `HSET k …`, `SPUBLISH channel …`, `XRANGE k …`) or are scripts, whose
/// first declared key decides (all of a script's keys share a slot by design).
pub fn route<A: AsRef<[u8]>>(args: &[A]) -> Route {
    let Some(name) = args.first() else {
        return Route::Any;
    };
    let name = name.as_ref().to_ascii_uppercase();
    match name.as_slice() {
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            let keys = args
                .get(2)
                .and_then(|n| std::str::from_utf8(n.as_ref()).ok()?.parse::<usize>().ok());
            match (keys, args.get(3)) {
                (Some(n), Some(key)) if n > 0 => Route::Slot(slot(key.as_ref())),
                _ => Route::Any,
            }
        }
        b"SCRIPT" | b"FUNCTION" => Route::All,
        b"PING" | b"CLUSTER" | b"INFO" | b"ASKING" | b"TIME" => Route::Any,
        _ => args
            .get(1)
            .map_or(Route::Any, |key| Route::Slot(slot(key.as_ref()))),
    }
}

/// A master's answer for a slot it does not serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// The slot lives at `addr` now: update the map and send it there.
    Moved { slot: u16, addr: String },
    /// The slot is being migrated and this key is already at `addr`: send it there once,
    /// preceded by `ASKING`; the map does not change.
    Ask { slot: u16, addr: String },
}

/// Reads a `MOVED <slot> <host:port>` or `ASK <slot> <host:port>` error reply (`None` for
/// any other error).
pub fn redirect(error: &str) -> Option<Redirect> {
    let mut parts = error.split_ascii_whitespace();
    let kind = parts.next()?;
    let slot: u16 = parts.next()?.parse().ok()?;
    let addr = parts.next()?.to_owned();
    if parts.next().is_some() || usize::from(slot) >= SLOTS || !addr.contains(':') {
        return None;
    }
    match kind {
        "MOVED" => Some(Redirect::Moved { slot, addr }),
        "ASK" => Some(Redirect::Ask { slot, addr }),
        _ => None,
    }
}

/// One range of `CLUSTER SLOTS`: slots `start..=end` are served by the master at `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub start: u16,
    pub end: u16,
    /// The master's address (`host:port`); an empty host means "the node you asked".
    pub master: String,
}

/// Reads a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id, …], replicas…], …]`.
/// Replicas are ignored (this node reads and writes on masters only).
pub fn parse_slots(frame: &Frame) -> Result<Vec<Range>, String> {
    let bad = |why: &str| format!("an unexpected CLUSTER SLOTS reply: {why}");
    let Frame::Array(ranges) = frame else {
        return Err(bad("not an array"));
    };
    let mut out = Vec::with_capacity(ranges.len());
    for range in ranges {
        let Frame::Array(parts) = range else {
            return Err(bad("a range is not an array"));
        };
        let (Some(start), Some(end), Some(Frame::Array(master))) =
            (parts.first(), parts.get(1), parts.get(2))
        else {
            return Err(bad("a range without its master"));
        };
        let in_range = |f: &Frame| {
            resp::int(f)
                .and_then(|n| u16::try_from(n).ok())
                .filter(|&n| usize::from(n) < SLOTS)
        };
        let (Some(start), Some(end)) = (in_range(start), in_range(end)) else {
            return Err(bad("a slot out of range"));
        };
        if start > end {
            return Err(bad("a range that ends before it starts"));
        }
        let host = master.first().and_then(resp::text).unwrap_or("");
        let Some(port) = master
            .get(1)
            .and_then(resp::int)
            .and_then(|p| u16::try_from(p).ok())
        else {
            return Err(bad("a master without a port"));
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        out.push(Range {
            start,
            end,
            master: format!("{host}:{port}"),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Frame {
        Frame::BulkString(s.as_bytes().to_vec())
    }

    /// Known answers of `redis-cli cluster keyslot` (Redis 7.0.15).
    #[test]
    fn slots_match_redis() {
        assert_eq!(crc16(b"123456789"), 0x31C3, "the CRC16/XMODEM check value");
        for (key, expected) in [
            ("foo", 12182),
            ("bar", 5061),
            ("hello", 866),
            ("", 0),
            ("{user1000}.following", 3443),
            ("{user1000}.followers", 3443),
            ("foo{}{bar}", 8363),
            ("foo{{bar}}zap", 4015),
            ("foo{bar}{zap}", 5061),
            ("rk:{lobby}:seq", slot(b"lobby")),
            ("rk:{lobby}", slot(b"lobby")),
        ] {
            assert_eq!(slot(key.as_bytes()), expected, "{key}");
        }
    }

    #[test]
    fn commands_go_where_their_first_key_is() {
        let at = |k: &str| Route::Slot(slot(k.as_bytes()));
        assert_eq!(route(&["GET", "rk:{a}:epoch"]), at("a"));
        assert_eq!(route(&["spublish", "rk:{a}", "m"]), at("a"));
        assert_eq!(
            route(&["EVALSHA", "abc", "2", "rk:{b}:x", "rk:{b}:y", "v"]),
            at("b")
        );
        assert_eq!(route(&["EVAL", "return 1", "0"]), Route::Any);
        assert_eq!(route(&["SCRIPT", "LOAD", "return 1"]), Route::All);
        assert_eq!(route(&["PING"]), Route::Any);
        assert_eq!(route(&["CLUSTER", "SLOTS"]), Route::Any);
        assert_eq!(route::<&str>(&[]), Route::Any);
    }

    #[test]
    fn redirections_are_read_and_other_errors_are_not() {
        assert_eq!(
            redirect("MOVED 3999 127.0.0.1:6381"),
            Some(Redirect::Moved {
                slot: 3999,
                addr: "127.0.0.1:6381".into()
            })
        );
        assert_eq!(
            redirect("ASK 12 10.0.0.2:7000"),
            Some(Redirect::Ask {
                slot: 12,
                addr: "10.0.0.2:7000".into()
            })
        );
        for other in [
            "ERR unknown command",
            "MOVED",
            "MOVED x 1.2.3.4:5",
            "MOVED 16384 1.2.3.4:5",
            "MOVED 1 nowhere",
            "ASK 1 1.2.3.4:5 extra",
            "TRYAGAIN Multiple keys request during rehashing of slot",
        ] {
            assert_eq!(redirect(other), None, "{other}");
        }
    }

    #[test]
    fn a_slot_map_is_read_from_cluster_slots() {
        let range = |start: i64, end: i64, host: &str, port: i64| {
            Frame::Array(vec![
                Frame::Integer(start),
                Frame::Integer(end),
                Frame::Array(vec![bulk(host), Frame::Integer(port), bulk("id1")]),
                // A replica: ignored.
                Frame::Array(vec![bulk("10.9.9.9"), Frame::Integer(1), bulk("id2")]),
            ])
        };
        let reply = Frame::Array(vec![
            range(0, 5460, "127.0.0.1", 7000),
            range(5461, 16383, "", 7001),
            range(100, 100, "::1", 7002),
        ]);
        assert_eq!(
            parse_slots(&reply).unwrap(),
            vec![
                Range {
                    start: 0,
                    end: 5460,
                    master: "127.0.0.1:7000".into()
                },
                Range {
                    start: 5461,
                    end: 16383,
                    master: ":7001".into()
                },
                Range {
                    start: 100,
                    end: 100,
                    master: "[::1]:7002".into()
                },
            ]
        );
        assert_eq!(parse_slots(&Frame::Array(vec![])).unwrap(), vec![]);
        for bad in [
            Frame::Integer(1),
            Frame::Array(vec![Frame::Integer(1)]),
            Frame::Array(vec![range(0, 16384, "h", 1)]),
            Frame::Array(vec![range(10, 5, "h", 1)]),
            Frame::Array(vec![range(0, 1, "h", 70_000)]),
        ] {
            assert!(parse_slots(&bad).is_err(), "{bad:?}");
        }
    }
}
