//! [`MemoryStore`]: every room's snapshot and recent history in a map. State survives a room
//! emptying out, not the process. The server's only store until a durable one lands.

use super::{Entry, History, HistoryQuery, StateStore, StoreError};
use crate::engine::{Change, RoomSnapshot};
use ahash::AHashMap;
use std::collections::VecDeque;

#[derive(Default)]
struct Kept {
    snapshot: RoomSnapshot,
    history: VecDeque<Entry>,
}

pub struct MemoryStore {
    rooms: AHashMap<String, Kept>,
    /// Most events kept per room (older ones are dropped first).
    history_size: usize,
}

impl MemoryStore {
    /// A store keeping up to `history_size` events per room.
    pub fn new(history_size: usize) -> MemoryStore {
        MemoryStore {
            rooms: AHashMap::new(),
            history_size,
        }
    }

    /// The room's record, made on its first change (the name is copied only then, not for
    /// every change).
    fn room(&mut self, room: &str) -> &mut Kept {
        if !self.rooms.contains_key(room) {
            self.rooms.insert(room.to_owned(), Kept::default());
        }
        self.rooms.get_mut(room).expect("inserted above")
    }

    /// Commits `changes`, keeping their history entries themselves (no copies): what a
    /// store run on the cores does (`StoreHandle::in_memory`), and, from copies, what
    /// [`StateStore::commit`] does.
    pub fn take(&mut self, changes: Vec<Change>) {
        for change in changes {
            self.apply(change);
        }
    }

    fn apply(&mut self, change: Change) {
        let history_size = self.history_size;
        let kept = self.room(change.room());
        let snapshot = &mut kept.snapshot;
        match change {
            Change::Suffix { suffix, .. } => snapshot.suffix = suffix,
            Change::Config { config, .. } => snapshot.config = Some(config),
            Change::Vote {
                poll, user, answer, ..
            } => match answer {
                Some(answer) => {
                    snapshot.polls.entry(poll).or_default().insert(user, answer);
                }
                None => {
                    if let Some(votes) = snapshot.polls.get_mut(&poll) {
                        votes.remove(&user);
                    }
                }
            },
            Change::Counter { counter, value, .. } => {
                snapshot.counters.insert(counter, value);
            }
            Change::Position { epoch, seq, .. } => {
                snapshot.epoch = Some(epoch);
                snapshot.seq = seq;
            }
            Change::Append { entry, .. } => {
                if let Some(position) = &entry.event.position {
                    // The epoch changes rarely: no new string for every event.
                    if snapshot.epoch.as_deref() != Some(&*position.epoch) {
                        snapshot.epoch = Some(position.epoch.to_string());
                    }
                    snapshot.seq = snapshot.seq.max(position.seq);
                }
                if history_size > 0 {
                    kept.history.push_back(entry);
                    while kept.history.len() > history_size {
                        kept.history.pop_front();
                    }
                }
            }
        }
    }
}

impl StateStore for MemoryStore {
    fn load(&mut self, room: &str) -> Result<Option<RoomSnapshot>, StoreError> {
        Ok(self.rooms.get(room).map(|kept| kept.snapshot.clone()))
    }

    fn commit(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        self.take(changes.to_vec());
        Ok(())
    }

    fn history(&mut self, room: &str, query: HistoryQuery) -> Result<History, StoreError> {
        let Some(kept) = self.rooms.get(room) else {
            return Ok(History::default());
        };
        let fresh = |e: &&Entry| query.since_ms.is_none_or(|since| e.at_ms >= since);
        let oldest = kept.history.iter().find(fresh).map(Entry::seq);
        let matching = kept.history.iter().filter(fresh).filter(|e| {
            query.after.is_none_or(|after| e.seq() > after)
                && query.before.is_none_or(|before| e.seq() < before)
        });
        let events: Vec<Entry> = match query.after {
            Some(_) => matching.take(query.limit).cloned().collect(),
            None => {
                let all: Vec<&Entry> = matching.collect();
                let skip = all.len().saturating_sub(query.limit);
                all.into_iter().skip(skip).cloned().collect()
            }
        };
        Ok(History { events, oldest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_contract() {
        super::super::contract::check(&mut |history_size| Box::new(MemoryStore::new(history_size)));
    }
}
