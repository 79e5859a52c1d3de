//! What an operator's console sees of a core's rooms, computed when it is asked for from
//! what the engine keeps anyway: no bookkeeping exists for it while nobody looks.
//!
//! - [`Engine::summaries`]: every live room's name, member count and stream `seq` (its
//!   traffic is the `seq`'s growth between two looks: lasting events per second).
//! - [`Engine::inspect`]: one live room's details, with each member's codec (its dialect).
//! - [`Engine::observe`]: a console's live tail of a room. The observer gets every event
//!   the room makes (any scope, encoded by `codec`) without being a member: nobody sees it
//!   join, it holds no suffix, it is in no presence list. Kept in one map per engine,
//!   empty while no console tails a room.

use super::member::CodecId;
use super::room::{Room, RoomDetails};
use super::{Engine, Position};
use crate::ids::ConnId;
use ahash::AHashMap;

/// A live room as the console's room list shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomSummary<'a> {
    pub name: &'a str,
    pub members: usize,
    /// The last `seq` given to a lasting event.
    pub seq: u64,
}

/// A live room as the console's room page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomView {
    pub details: RoomDetails,
    /// Each member's codec, in the order of `details.members`.
    pub codecs: Vec<CodecId>,
    pub position: Position,
}

impl Engine {
    /// Every live room of this core.
    pub fn summaries(&self) -> impl Iterator<Item = RoomSummary<'_>> {
        self.rooms.values().map(Room::summary)
    }

    /// A live room's details with its members' codecs; `None` when it is not live here.
    pub fn inspect(&self, name: &str) -> Option<RoomView> {
        let room = self.rooms.get(name)?;
        Some(RoomView {
            details: room.details(),
            codecs: room.member_codecs(),
            position: room.position(),
        })
    }

    /// From now on, every event of room `name` also goes to `conn`, encoded by `codec`
    /// (whether or not the room is live: a room that comes to life later is observed too).
    pub fn observe(&mut self, name: &str, conn: ConnId, codec: CodecId) {
        let observers = self.observers.entry(name.to_owned()).or_default();
        if !observers.iter().any(|(c, _)| *c == conn) {
            observers.push((conn, codec));
        }
    }

    /// Ends [`Engine::observe`].
    pub fn unobserve(&mut self, name: &str, conn: ConnId) {
        if let Some(observers) = self.observers.get_mut(name) {
            observers.retain(|(c, _)| *c != conn);
            if observers.is_empty() {
                self.observers.remove(name);
            }
        }
    }
}

/// The observers of room `room` (none: an empty slice, after one emptiness check while no
/// console tails anything).
pub(super) fn observers_of<'a>(
    observers: &'a AHashMap<String, Vec<(ConnId, CodecId)>>,
    room: &str,
) -> &'a [(ConnId, CodecId)] {
    if observers.is_empty() {
        return &[];
    }
    observers.get(room).map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::subscriptions::Topic;
    use crate::engine::{Command, Identity, Joiner, Outbox, Request, Send, Traits};
    use rookery_protocol::pact::Role;
    use serde_json::json;
    use std::sync::Arc;

    const ROOM: &str = "lobby";
    const PACT: CodecId = CodecId(0);
    const WSDO: CodecId = CodecId(1);
    const OBSERVER: ConnId = ConnId(99 | (3 << 48));

    fn conn(n: u64) -> ConnId {
        ConnId::new(0, n)
    }

    fn run(e: &mut Engine, command: Command) -> Outbox {
        let mut out = Outbox::default();
        e.handle(command, 0, &mut out);
        while let Some(room) = out.loads.pop() {
            e.handle(
                Command::Loaded {
                    room,
                    result: Ok(None),
                },
                0,
                &mut out,
            );
        }
        out
    }

    fn join(e: &mut Engine, n: u64, codec: CodecId) -> Outbox {
        let joiner = Joiner {
            identity: Arc::new(Identity {
                public_id: format!("m{n}"),
                user: None,
            }),
            codec,
            traits: Traits::default(),
            role: Role::User,
            details: None,
            token_error: None,
        };
        run(
            e,
            Command::Join {
                conn: conn(n),
                room: ROOM.into(),
                joiner,
            },
        )
    }

    fn chat(e: &mut Engine, n: u64) -> Outbox {
        let request = Request::Chat(json!("hi"));
        run(
            e,
            Command::Request {
                conn: conn(n),
                room: ROOM.into(),
                reference: None,
                request,
            },
        )
    }

    /// Whether `out` sends an event to `who`.
    fn reaches(out: &Outbox, who: ConnId) -> bool {
        out.sends
            .iter()
            .any(|s| matches!(s, Send::Event { to, .. } if to.contains(who)))
    }

    #[test]
    fn an_observer_sees_every_event_without_being_a_member() {
        let mut e = Engine::new(1);
        e.observe(ROOM, OBSERVER, PACT);
        join(&mut e, 1, PACT);
        let out = join(&mut e, 2, WSDO);
        assert!(reaches(&out, OBSERVER), "presence diffs reach the observer");
        // Nobody subscribed to chat: the observer gets it all the same.
        let out = chat(&mut e, 1);
        assert!(reaches(&out, OBSERVER));
        let view = e.inspect(ROOM).unwrap();
        assert_eq!(view.details.count, 2, "the observer is no member");
        assert_eq!(view.codecs, vec![PACT, WSDO]);
        assert_eq!(view.position.seq, 1);
        e.unobserve(ROOM, OBSERVER);
        assert!(
            e.observers.is_empty(),
            "nothing is kept once nobody observes"
        );
        assert!(!reaches(&chat(&mut e, 1), OBSERVER));
    }

    #[test]
    fn summaries_list_live_rooms_with_members_and_seq() {
        let mut e = Engine::new(1);
        assert_eq!(e.summaries().count(), 0);
        join(&mut e, 1, PACT);
        let subscribe = Request::Subscribe(Topic::parse("chat"));
        run(
            &mut e,
            Command::Request {
                conn: conn(1),
                room: ROOM.into(),
                reference: None,
                request: subscribe,
            },
        );
        chat(&mut e, 1);
        chat(&mut e, 1);
        let all: Vec<_> = e.summaries().collect();
        assert_eq!(
            all,
            vec![RoomSummary {
                name: ROOM,
                members: 1,
                seq: 2
            }]
        );
        assert!(e.inspect("elsewhere").is_none());
    }
}
