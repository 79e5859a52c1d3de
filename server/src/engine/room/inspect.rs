//! A room as the operator's console sees it (`engine/inspect.rs`), read from its state.

use super::Room;
use crate::engine::inspect::RoomSummary;
use crate::engine::member::CodecId;

impl Room {
    pub fn summary(&self) -> RoomSummary<'_> {
        RoomSummary {
            name: &self.name,
            members: self.members.len(),
            seq: self.seq,
        }
    }

    /// Each member's codec, in the order [`Room::details`] lists the members.
    pub fn member_codecs(&self) -> Vec<CodecId> {
        self.members.values().map(|m| m.codec).collect()
    }
}
