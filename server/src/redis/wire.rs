//! How rooms live in Redis, with no IO: key and channel names, and the one message format
//! that the sequencer script publishes and appends to a room's stream.
//!
//! Every key of a room carries the room in a hash tag (`rk:{room}:…`), so that in a Redis
//! Cluster a room's keys sit in one slot and its script runs on one shard.
//!
//! A message is `<epoch> <seq> <body>`: the script writes the position it gave; the body
//! is JSON that the proposing node made: `{"s": scope, "t": ms, "o": [node, n], "e": event}`
//! (the event last, so that the script can put a poll's stats at its end).

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

/// A message from the room's channel or stream: a positioned event, or (`- 0 <body>`) a
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

/// The messages of one publication on a room's channel: one, or (the sequencer's op
/// `events`) several joined by newlines. A body never holds a newline: it is compact JSON,
/// whose strings escape theirs.
pub fn messages(payload: &[u8]) -> impl Iterator<Item = &[u8]> {
    payload.split(|b| *b == b'\n')
}

pub fn decode(message: &[u8]) -> Result<Message, String> {
    let text = std::str::from_utf8(message).map_err(|e| e.to_string())?;
    let mut parts = text.splitn(3, ' ');
    let (Some(epoch), Some(seq), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("a message needs an epoch, a seq and a body".into());
    };
    let seq = seq.parse().map_err(|_| format!("bad seq {seq:?}"))?;
    let body = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let position = (epoch != "-").then(|| Position {
        epoch: Arc::from(epoch),
        seq,
    });
    Ok(Message { position, body })
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
        let message = decode(format!("ep 42 {text}").as_bytes()).unwrap();
        let position = message.position.unwrap();
        assert_eq!((&*position.epoch, position.seq), ("ep", 42));
        assert_eq!(message.body.origin, (7, 9));
        assert_eq!(*message.body.event, *body.event);
        assert!(decode(b"ep x {}").is_err());
        assert!(decode(b"ep 1").is_err());
    }

    #[test]
    fn a_publication_of_several_events_splits_into_their_messages() {
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
        let payload = format!("ep 1 {first}\nep 2 {second}");
        let decoded: Vec<Message> = messages(payload.as_bytes())
            .map(|m| decode(m).unwrap())
            .collect();
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[1].position.as_ref().unwrap().seq, 2);
        assert_eq!(*decoded[0].body.event, *body("a\nb").event);
        assert_eq!(*decoded[1].body.event, *body("\n").event);
        assert_eq!(messages(b"ep 3 {}").count(), 1);
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
        let message = decode(format!("e 1 {text}").as_bytes()).unwrap();
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
        let message = decode(format!("e 1 {text}").as_bytes()).unwrap();
        match message.body.event.into_owned() {
            RoomEvent::Poll { id, stats, .. } => {
                assert_eq!(id, "\"stats\":{}");
                assert_eq!(stats.get("yes"), Some(&2));
            }
            other => panic!("{other:?}"),
        }
    }
}
