//! A room's history: the lasting events it keeps (each with its position, the members it was
//! for and when it happened), the pages the store reads back, and the reads the engine asks
//! the shell for (a `resume` or a `history` request).

use super::event::Sequenced;
use super::outbox::Scope;
use crate::ids::ConnId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One lasting event as the room's history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The event with its position (history keeps only positioned events).
    pub event: Sequenced,
    /// Whom it was for: a replay or a history page shows it only to members it covers
    /// (a targeted emit is nobody else's business).
    pub scope: Scope,
    /// When the room made it (ms since the Unix epoch), for `--history-ttl-ms`.
    pub at_ms: u64,
}

impl Entry {
    /// The event's `seq` (0 for an unpositioned event, which history never holds).
    pub fn seq(&self) -> u64 {
        self.event.position.as_ref().map_or(0, |p| p.seq)
    }
}

/// Which part of a room's history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only events after this `seq`, oldest first, the first `limit` of them (resuming).
    pub after: Option<u64>,
    /// Only events before this `seq` (paging back).
    pub before: Option<u64>,
    /// At most this many events; without `after`, the newest ones (oldest first still).
    pub limit: usize,
    /// Only events made at or after this time (ms): the history's age bound. Older ones are
    /// as good as gone, and `History::oldest` does not count them.
    pub since_ms: Option<u64>,
}

impl HistoryQuery {
    /// The newest `limit` events.
    pub fn last(limit: usize) -> HistoryQuery {
        HistoryQuery {
            after: None,
            before: None,
            limit,
            since_ms: None,
        }
    }

    /// The same query, counting only events made within `ttl_ms` of `now_ms`
    /// (`--history-ttl-ms`; 0 keeps them for ever).
    pub fn within_ttl(self, now_ms: u64, ttl_ms: u64) -> HistoryQuery {
        HistoryQuery {
            since_ms: (ttl_ms > 0).then(|| now_ms.saturating_sub(ttl_ms)),
            ..self
        }
    }
}

/// A page of a room's history.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct History {
    /// Oldest first.
    pub events: Vec<Entry>,
    /// The `seq` of the oldest event the store still keeps for the room (within
    /// `since_ms`; `None`: none kept). A resume from `seq` S is complete only if
    /// S + 1 >= this.
    pub oldest: Option<u64>,
}

/// Why the engine asked for a page of history.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadFor {
    /// A member's `resume` from `after` (of the room's current epoch): replay what it
    /// missed, up to `until` (the room's `seq` when it asked; later events reach it live).
    Resume {
        reference: Option<Value>,
        after: u64,
        until: u64,
    },
    /// A member's `history` request.
    History { reference: Option<Value> },
}

/// A page of history the engine needs for one member; answered with `Command::Read`.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub room: String,
    pub conn: ConnId,
    pub query: HistoryQuery,
    pub purpose: ReadFor,
}
