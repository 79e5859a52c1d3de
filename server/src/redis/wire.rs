//! How rooms live in Redis, with no IO: key and channel names, and the one message format
//! that the sequencer script publishes and appends to a room's stream.
//!
//! Every key of a room carries the room in a hash tag (`rk:{room}:…`), so that in a Redis
//! Cluster a room's keys sit in one slot and its script runs on one shard.
//!
//! A message — what the sequencer script publishes on a room's channel and appends to its
//! stream as one entry — is a header line `<epoch> <seq>` and then one body per line, the
//! events of positions `seq`, `seq + 1`, … in order: one body for a vote or a counter, a
//! run of plain events proposed together for op `events` (so that Redis takes the run as
//! one argument and keeps it as one stream entry, whose id is the run's last `seq`). A
//! presence diff, which has no position, is `- 0` and its body. A body is JSON that the
//! proposing node made: `{"s": scope, "t": ms, "o": [node, n], "e": event}` (the event
//! last, so that the script can put a poll's stats at its end); compact JSON holds no
//! newline (its strings escape theirs), so lines never split a body.
//!
//! Entries written before this format (`<epoch> <seq> <body>` on one line, one event per
//! entry) still decode, so a room's history survives an upgrade of its nodes.

use crate::engine::{Position, RoomEvent, Scope, Sequenced};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::Arc;

pub fn key(room: &str, part: &str) -> String {
    format!("rk:{{{room}}}:{part}")
}

/// The pub/sub channel of a room's events.
pub fn channel(room: &str) -> String {
    format!("rk:{{{room}}}")
}

/// The room a channel is about (`None` for the nodes' own channels).
pub fn room_of(channel: &[u8]) -> Option<&str> {
    let name = std::str::from_utf8(channel).ok()?;
    name.strip_prefix("rk:{")?.strip_suffix('}')
}

/// The hash of a poll's votes (user → answer).
pub fn poll_key(room: &str, member: &str) -> String {
    key(room, &format!("poll:{member}"))
}

/// A poll's name in the room's set of polls: `d:<id>` (durable) or `e:<id>` (ephemeral).
pub fn poll_member(ephemeral: bool, id: &str) -> String {
    format!("{}:{id}", if ephemeral { 'e' } else { 'd' })
}

/// A message's body. The proposing node serializes one that borrows its proposal's event
/// and scope (no copy per event); one decoded from Redis owns them.
#[derive(Serialize, Deserialize)]
pub struct Body<'a> {
    #[serde(rename = "s")]
    pub scope: Cow<'a, Scope>,
    #[serde(rename = "t")]
    pub at_ms: u64,
    /// Which node (and which of its proposals) made it: that node releases the replies
    /// waiting for it.
    #[serde(rename = "o")]
    pub origin: (u64, u64),
    /// A presence diff's member key in the room's shared presence.
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(rename = "e")]
    pub event: Cow<'a, RoomEvent>,
}

/// A body as text; for a poll event, split where the script puts the stats
/// (`prefix + stats + suffix`), and for a counter's where it puts the value, which the
/// script computes (`prefix + value + suffix`, inside the value's quotes).
pub fn encode_body(body: &Body) -> (String, Option<String>) {
    let text = serde_json::to_string(body).expect("bodies serialize");
    match &*body.event {
        RoomEvent::Counter { value, .. } => split_last(&text, "\"value\":\"", &value.to_string()),
        RoomEvent::Poll { .. } => split_last(&text, "\"stats\":", "{}"),
        _ => (text, None),
    }
}

/// `text` without `cut` where it last follows `before`: what comes before and after. The
/// field is the event's last and the event is the body's, so its last occurrence is the
/// field's, whatever an id before it holds.
fn split_last(text: &str, before: &str, cut: &str) -> (String, Option<String>) {
    let at = text
        .rfind(&format!("{before}{cut}"))
        .expect("the event has the field")
        + before.len();
    (
        text[..at].to_owned(),
        Some(text[at + cut.len()..].to_owned()),
    )
}

/// One event of a message from the room's channel or stream: a positioned event, or a
/// presence diff, which has no position.
pub struct Message {
    pub position: Option<Position>,
    pub body: Body<'static>,
}

impl Message {
    pub fn sequenced(self) -> (Sequenced, Scope, (u64, u64), u64) {
        let Body {
            scope,
            at_ms,
            origin,
            event,
            ..
        } = self.body;
        let sequenced = Sequenced {
            position: self.position,
            event: event.into_owned(),
        };
        (sequenced, scope.into_owned(), origin, at_ms)
    }
}

/// The events of one message, in order: an error for a message without a header, and
/// then for each body that does not decode (the others still do).
pub fn decode(message: &[u8]) -> Result<Events<'_>, String> {
    let text = std::str::from_utf8(message).map_err(|e| e.to_string())?;
    let (head, bodies) = text.split_once('\n').unwrap_or((text, ""));
    let mut parts = head.splitn(3, ' ');
    let (Some(epoch), Some(seq)) = (parts.next(), parts.next()) else {
        return Err("a message needs an epoch and a seq".into());
    };
    // The format before runs: `<epoch> <seq> <body>`, one event, on one line.
    let bodies = match parts.next() {
        Some(body) if bodies.is_empty() => body,
        Some(_) => return Err("a header line with more than an epoch and a seq".into()),
        None if bodies.is_empty() => return Err("a message needs a body".into()),
        None => bodies,
    };
    let seq = seq.parse().map_err(|_| format!("bad seq {seq:?}"))?;
    Ok(Events {
        epoch: (epoch != "-").then(|| Arc::from(epoch)),
        seq,
        bodies: bodies.split('\n'),
    })
}

/// The events of a message ([`decode`]); they share one copy of the epoch.
pub struct Events<'a> {
    epoch: Option<Arc<str>>,
    seq: u64,
    bodies: std::str::Split<'a, char>,
}

impl Iterator for Events<'_> {
    type Item = Result<Message, String>;

    fn next(&mut self) -> Option<Self::Item> {
        let body = self.bodies.next()?;
        let position = self.epoch.as_ref().map(|epoch| Position {
            epoch: epoch.clone(),
            seq: self.seq,
        });
        self.seq += 1;
        Some(
            serde_json::from_str(body)
                .map(|body| Message { position, body })
                .map_err(|e| e.to_string()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::PollKind;
    use serde_json::json;
    use std::borrow::Cow;

    #[test]
    fn keys_share_the_rooms_hash_tag_and_channels_name_their_room() {
        assert_eq!(key("a b", "seq"), "rk:{a b}:seq");
        assert_eq!(room_of(channel("a}b").as_bytes()), Some("a}b"));
        assert_eq!(room_of(b"rk:node:1"), None);
    }

    /// The header line of a message whose events have positions `seq`, `seq + 1`, … of
    /// `epoch` (the scripts write it; here for the tests' messages).
    fn header(epoch: &str, seq: u64) -> String {
        format!("{epoch} {seq}")
    }

    /// The one event of `message`.
    fn only(message: &str) -> Message {
        let mut events = decode(message.as_bytes()).unwrap();
        let event = events.next().unwrap().unwrap();
        assert!(events.next().is_none(), "one event in {message:?}");
        event
    }

    #[test]
    fn a_message_round_trips() {
        let body = Body {
            scope: Cow::Owned(Scope::Topic {
                kind: Cow::Borrowed("chat"),
                id: None,
            }),
            at_ms: 5,
            origin: (7, 9),
            key: None,
            event: Cow::Owned(RoomEvent::Broadcast {
                kind: "k".into(),
                data: json!({"x": "a b"}).into(),
            }),
        };
        let (text, rest) = encode_body(&body);
        assert!(rest.is_none());
        let message = only(&format!("{}\n{text}", header("ep", 42)));
        let position = message.position.unwrap();
        assert_eq!((&*position.epoch, position.seq), ("ep", 42));
        assert_eq!(message.body.origin, (7, 9));
        assert_eq!(*message.body.event, *body.event);
        let presence = only(&format!("- 0\n{text}"));
        assert!(presence.position.is_none(), "a diff has no position");
    }

    /// A chat that comes back from Redis reaches its Pact members as the text it was sent
    /// as: its payload is never parsed on this node.
    #[test]
    fn a_payload_goes_from_the_message_into_frames_unparsed() {
        use crate::dialect::{pact::Pact, Protocol, Wire};
        use rookery_protocol::pact::PublicUser;
        let sent = json!({"text": "h\u{e9}", "n": [1, 2.5], "z": {"y": null}});
        let body = Body {
            scope: Cow::Owned(Scope::Room),
            at_ms: 5,
            origin: (7, 9),
            key: None,
            event: Cow::Owned(RoomEvent::Chat {
                message: sent.clone().into(),
                user: PublicUser {
                    suffix: 3,
                    properties: Default::default(),
                },
            }),
        };
        let (text, _) = encode_body(&body);
        let message = only(&format!("{}\n{text}", header("ep", 42)));
        let (event, ..) = message.sequenced();
        let Some(Wire::Frame(frame)) = Pact.event(&event) else {
            panic!("a frame")
        };
        let RoomEvent::Chat { message, .. } = &event.event else {
            panic!("a chat")
        };
        assert!(!message.is_parsed(), "the payload stayed text");
        let frame = String::from_utf8_lossy(&frame);
        let json_text = serde_json::to_string(&sent).unwrap();
        assert!(frame.contains(&json_text), "{frame} has {json_text}");
        assert_eq!(*message.value(), sent);
    }

    #[test]
    fn a_message_without_a_header_or_a_body_is_refused_and_a_bad_body_alone() {
        for bad in [
            "ep x\n{}",
            "ep 1",
            "ep 1\n",
            "ep\n{}",
            "ep 1 {}\n{}",
            "\u{ff}",
        ] {
            let refused = match decode(bad.as_bytes()) {
                Err(_) => true,
                Ok(mut events) => events.any(|e| e.is_err()),
            };
            assert!(refused, "{bad:?}");
        }
        // One body that does not decode leaves the others of its run.
        let good = encode_body(&Body {
            scope: Cow::Owned(Scope::Room),
            at_ms: 1,
            origin: (1, 1),
            key: None,
            event: Cow::Owned(RoomEvent::Broadcast {
                kind: "k".into(),
                data: json!(1).into(),
            }),
        })
        .0;
        let events: Vec<_> = decode(format!("ep 7\n{good}\nnot json\n{good}").as_bytes())
            .unwrap()
            .collect();
        assert!(events[0].is_ok() && events[1].is_err() && events[2].is_ok());
        let last = events.into_iter().last().unwrap().unwrap();
        assert_eq!(last.position.unwrap().seq, 9, "the bad body kept its place");
    }

    #[test]
    fn a_run_of_several_events_decodes_into_them_at_consecutive_positions() {
        let body = |text: &str| Body {
            scope: Cow::Owned(Scope::Room),
            at_ms: 1,
            origin: (1, 1),
            key: None,
            event: Cow::Owned(RoomEvent::Broadcast {
                kind: "k\nk".into(),
                data: json!({"line\nbreak": text}).into(),
            }),
        };
        let (first, _) = encode_body(&body("a\nb"));
        let (second, _) = encode_body(&body("\n"));
        assert!(!first.contains('\n') && !second.contains('\n'), "{first}");
        let payload = format!("{}\n{first}\n{second}", header("ep", 1));
        let decoded: Vec<Message> = decode(payload.as_bytes())
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].position.as_ref().unwrap().seq, 1);
        assert_eq!(decoded[1].position.as_ref().unwrap().seq, 2);
        assert!(Arc::ptr_eq(
            &decoded[0].position.as_ref().unwrap().epoch,
            &decoded[1].position.as_ref().unwrap().epoch
        ));
        assert_eq!(*decoded[0].body.event, *body("a\nb").event);
        assert_eq!(*decoded[1].body.event, *body("\n").event);
    }

    /// Entries of the format before runs (one event, `<epoch> <seq> <body>` on one line)
    /// are still read: a room's history outlives the upgrade.
    #[test]
    fn an_entry_of_the_earlier_one_line_format_still_decodes() {
        let message =
            only(r#"ep 5 {"s":"Room","t":1,"o":[1,1],"e":{"Broadcast":{"kind":"a b","data":1}}}"#);
        assert_eq!(message.position.unwrap().seq, 5);
        assert!(
            matches!(*message.body.event, RoomEvent::Broadcast { ref kind, .. } if kind == "a b")
        );
    }

    #[test]
    fn a_counter_body_splits_where_the_value_goes_whatever_its_id() {
        let body = Body {
            scope: Cow::Owned(Scope::Room),
            at_ms: 1,
            origin: (1, 1),
            key: None,
            event: Cow::Owned(RoomEvent::Counter {
                id: "\"value\":\"7\"".into(),
                value: "7".parse().unwrap(),
            }),
        };
        let (prefix, suffix) = encode_body(&body);
        let text = format!("{prefix}-0.30000000000000000001{}", suffix.unwrap());
        let message = only(&format!("e 1\n{text}"));
        match message.body.event.into_owned() {
            RoomEvent::Counter { id, value } => {
                assert_eq!(id, "\"value\":\"7\"");
                assert_eq!(value.to_string(), "-0.30000000000000000001");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_poll_body_splits_where_the_stats_go_whatever_its_id() {
        let body = Body {
            scope: Cow::Owned(Scope::Room),
            at_ms: 1,
            origin: (1, 1),
            key: None,
            event: Cow::Owned(RoomEvent::Poll {
                kind: PollKind::Durable,
                id: "\"stats\":{}".into(),
                stats: Default::default(),
            }),
        };
        let (prefix, suffix) = encode_body(&body);
        let text = format!("{prefix}{}{}", r#"{"yes":2}"#, suffix.unwrap());
        let message = only(&format!("e 1\n{text}"));
        match message.body.event.into_owned() {
            RoomEvent::Poll { id, stats, .. } => {
                assert_eq!(id, "\"stats\":{}");
                assert_eq!(stats.get("yes"), Some(&2));
            }
            other => panic!("{other:?}"),
        }
    }
}
