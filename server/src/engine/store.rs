//! The state-store seam: where a room's durable state (polls, counters, config, suffix
//! counter) is written as it changes and read back when the room becomes live again.
//!
//! Writes are fine-grained so that a durable implementation can batch them (group commit)
//! without the engine changing. [`MemoryStore`] keeps everything in memory: state survives a
//! room emptying out, not a restart.

use ahash::AHashMap;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// Everything durable about one room.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct RoomSnapshot {
    pub suffix: u64,
    pub config: Option<String>,
    /// poll id → (user id → answer).
    pub polls: BTreeMap<String, BTreeMap<String, String>>,
    pub counters: BTreeMap<String, Decimal>,
}

pub trait StateStore {
    /// The room's durable state, or `None` if nothing was ever stored for it.
    fn load(&mut self, room: &str) -> Option<RoomSnapshot>;
    fn put_suffix(&mut self, room: &str, suffix: u64);
    fn put_config(&mut self, room: &str, config: &str);
    /// Records `user`'s vote in a (non-ephemeral) poll; `None` retracts it.
    fn put_vote(&mut self, room: &str, poll: &str, user: &str, answer: Option<&str>);
    fn put_counter(&mut self, room: &str, counter: &str, value: Decimal);
}

/// Keeps every room's snapshot in a map; nothing survives the process.
#[derive(Default)]
pub struct MemoryStore {
    rooms: AHashMap<String, RoomSnapshot>,
}

impl MemoryStore {
    fn room(&mut self, room: &str) -> &mut RoomSnapshot {
        self.rooms.entry(room.to_owned()).or_default()
    }
}

impl StateStore for MemoryStore {
    fn load(&mut self, room: &str) -> Option<RoomSnapshot> {
        self.rooms.get(room).cloned()
    }

    fn put_suffix(&mut self, room: &str, suffix: u64) {
        self.room(room).suffix = suffix;
    }

    fn put_config(&mut self, room: &str, config: &str) {
        self.room(room).config = Some(config.to_owned());
    }

    fn put_vote(&mut self, room: &str, poll: &str, user: &str, answer: Option<&str>) {
        let polls = &mut self.room(room).polls;
        match answer {
            Some(answer) => {
                polls
                    .entry(poll.to_owned())
                    .or_default()
                    .insert(user.to_owned(), answer.to_owned());
            }
            None => {
                if let Some(votes) = polls.get_mut(poll) {
                    votes.remove(user);
                }
            }
        }
    }

    fn put_counter(&mut self, room: &str, counter: &str, value: Decimal) {
        self.room(room).counters.insert(counter.to_owned(), value);
    }
}
