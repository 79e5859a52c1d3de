//! The disk store's history log, in memory: where each room's kept events are in the log's
//! chunks, how much of each chunk is still kept, and how chunks are written, forwarded and
//! dropped. No IO here: [`super::DiskStore`] reads and writes the chunks; this decides what
//! they hold.
//!
//! # Why a log
//!
//! History is the store's hottest write (every chat is an event), and most events are
//! deleted soon after (a room keeps its newest `--history-size`). Stored as a key per event,
//! each one cost an insert into the LSM's memtable and, once trimmed, a tombstone — two
//! sorted inserts of long keys per chat, most of the store thread's time. In the log, a
//! commit's events, from every room, are appended to one chunk (a single key, numbered in
//! order), and a chunk is deleted as a whole (one tombstone) once none of its events is kept.
//! The price is this index (about 40 bytes per kept event, rebuilt by reading the log when
//! the store opens) and forwarding: a quiet room's few kept events would pin old chunks
//! full of dead ones, so while the log is more than twice what it keeps (plus
//! [`SLACK_BYTES`]), each commit copies the kept events of the oldest chunks into its own
//! chunk and drops them — a circular log, whose cleaning writes at most as much as new
//! events do.
//!
//! # Records
//!
//! A chunk's value is records back to back, each
//! `u32 BE room length ++ room ++ u64 BE seq ++ u64 BE at_ms ++ u32 BE length ++ entry JSON`
//! (the room's name in full: the index is rebuilt from nothing else).

use super::HistoryQuery;
use ahash::AHashMap;
use std::collections::{BTreeMap, VecDeque};

/// A chunk is closed once its value reaches this size (a commit larger than that writes
/// several), so a read of one old event never fetches a whole large commit.
pub const CHUNK_BYTES: usize = 32 * 1024;

/// The log may hold this much more than twice what it keeps before it forwards anything.
pub const SLACK_BYTES: u64 = 4 * 1024 * 1024;

/// Most chunks forwarded by one commit (the cleaning keeps pace with the log's growth since
/// a commit writes at most a few new chunks; this bounds one commit's extra work).
pub const MAX_FORWARDED: usize = 4;

/// Where one kept event is: its chunk, and its entry's JSON within the chunk's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub seq: u64,
    pub at_ms: u64,
    pub chunk: u64,
    pub offset: u32,
    pub len: u32,
}

impl Slot {
    /// The bytes its record takes in a chunk (for the live/total accounting).
    fn record_bytes(&self, room: &str) -> u64 {
        (RECORD_HEADER + room.len()) as u64 + u64::from(self.len)
    }
}

/// Room length, seq, at_ms, entry length.
const RECORD_HEADER: usize = 4 + 8 + 8 + 4;

/// One record read back from a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub room: &'a str,
    pub slot: Slot,
    /// The entry's JSON.
    pub entry: &'a [u8],
}

/// The records of chunk `chunk`'s `value`, in order; `Err` names what is unreadable.
pub fn records(chunk: u64, value: &[u8]) -> impl Iterator<Item = Result<Record<'_>, String>> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at >= value.len() {
            return None;
        }
        let record = read_record(chunk, value, at);
        at = match &record {
            Ok(r) => r.slot.offset as usize + r.entry.len(),
            Err(_) => value.len(),
        };
        Some(record)
    })
}

fn read_record(chunk: u64, value: &[u8], at: usize) -> Result<Record<'_>, String> {
    let bad = || format!("history chunk {chunk}: a record at byte {at} is cut short or garbled");
    let u32_at = |i: usize| -> Option<u32> {
        Some(u32::from_be_bytes(value.get(i..i + 4)?.try_into().ok()?))
    };
    let u64_at = |i: usize| -> Option<u64> {
        Some(u64::from_be_bytes(value.get(i..i + 8)?.try_into().ok()?))
    };
    let room_len = u32_at(at).ok_or_else(bad)? as usize;
    let room = value.get(at + 4..at + 4 + room_len).ok_or_else(bad)?;
    let room = std::str::from_utf8(room).map_err(|_| bad())?;
    let after_room = at + 4 + room_len;
    let seq = u64_at(after_room).ok_or_else(bad)?;
    let at_ms = u64_at(after_room + 8).ok_or_else(bad)?;
    let len = u32_at(after_room + 16).ok_or_else(bad)?;
    let offset = after_room + 20;
    let entry = value.get(offset..offset + len as usize).ok_or_else(bad)?;
    let offset = u32::try_from(offset).map_err(|_| bad())?;
    Ok(Record {
        room,
        slot: Slot {
            seq,
            at_ms,
            chunk,
            offset,
            len,
        },
        entry,
    })
}

/// How much of one chunk is kept.
#[derive(Debug, Default, Clone, Copy)]
struct ChunkUse {
    /// Kept events in it.
    live: u64,
    /// Their records' bytes.
    live_bytes: u64,
    /// The chunk's whole value.
    bytes: u64,
}

/// Every room's kept events and every chunk's use (see the module documentation).
#[derive(Debug)]
pub struct LogIndex {
    history_size: usize,
    rooms: AHashMap<Box<str>, VecDeque<Slot>>,
    /// Chunks in the log, by number (dead ones leave as soon as a commit deletes them).
    chunks: BTreeMap<u64, ChunkUse>,
    /// The number the next chunk gets.
    next_chunk: u64,
    log_bytes: u64,
    live_bytes: u64,
    /// Chunks that may keep nothing any more (checked, and deleted if so, by the next
    /// [`LogIndex::place_all`]), so a commit never walks every chunk.
    emptied: Vec<u64>,
}

/// What one commit does to the log: chunks to write and chunks to delete.
#[derive(Debug, Default)]
pub struct LogWrites {
    pub put: Vec<(u64, Vec<u8>)>,
    pub delete: Vec<u64>,
}

/// A commit's new records, gathered before they are placed in the index.
#[derive(Debug, Default)]
pub struct Appends<'a> {
    chunks: Vec<(u64, Vec<u8>)>,
    /// Each record's room and slot, in the order appended.
    placed: Vec<(&'a str, Slot)>,
}

impl LogIndex {
    /// An empty log keeping `history_size` events per room.
    pub fn new(history_size: usize) -> LogIndex {
        LogIndex {
            history_size,
            rooms: AHashMap::new(),
            chunks: BTreeMap::new(),
            next_chunk: 0,
            log_bytes: 0,
            live_bytes: 0,
            emptied: Vec::new(),
        }
    }

    /// Reads one stored chunk back (when the store opens; chunks in key order). Chunks that
    /// end up holding nothing kept are deleted by the next commit.
    pub fn recover(&mut self, chunk: u64, value: &[u8]) -> Result<(), String> {
        self.chunks.insert(
            chunk,
            ChunkUse {
                bytes: value.len() as u64,
                ..ChunkUse::default()
            },
        );
        self.log_bytes += value.len() as u64;
        self.next_chunk = self.next_chunk.max(chunk + 1);
        self.emptied.push(chunk);
        for record in records(chunk, value) {
            let record = record?;
            self.place(record.room, record.slot);
        }
        Ok(())
    }

    /// Whether rooms keep any history (`--history-size` > 0).
    pub fn keeps_history(&self) -> bool {
        self.history_size > 0
    }

    /// The `seq` of the room's newest kept event.
    pub fn newest(&self, room: &str) -> Option<u64> {
        self.rooms.get(room)?.back().map(|s| s.seq)
    }

    /// Kept events, over all rooms.
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.rooms.values().map(VecDeque::len).sum()
    }

    /// Chunks in the log.
    #[cfg(test)]
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Starts gathering a commit's records.
    pub fn appends<'a>(&self) -> Appends<'a> {
        Appends::default()
    }

    /// Adds one event to a commit's records (`entry`: its JSON).
    pub fn append<'a>(
        &mut self,
        appends: &mut Appends<'a>,
        room: &'a str,
        seq: u64,
        at_ms: u64,
        entry: &[u8],
    ) {
        let copied = self.append_with(appends, room, seq, at_ms, |value| {
            value.extend_from_slice(entry);
            Ok::<(), std::convert::Infallible>(())
        });
        let Ok(()) = copied;
    }

    /// Adds one event to a commit's records, its entry's JSON written by `write` straight
    /// into the chunk (no buffer of its own to fill and copy). If `write` fails, the chunk
    /// is left as it was.
    pub fn append_with<'a, E>(
        &mut self,
        appends: &mut Appends<'a>,
        room: &'a str,
        seq: u64,
        at_ms: u64,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let fits = appends
            .chunks
            .last()
            .is_some_and(|(_, value)| value.len() < CHUNK_BYTES);
        if !fits {
            appends.chunks.push((
                self.next_chunk,
                Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4),
            ));
            self.next_chunk += 1;
        }
        let (chunk, value) = appends.chunks.last_mut().expect("pushed");
        let start = value.len();
        value.extend_from_slice(&(room.len() as u32).to_be_bytes());
        value.extend_from_slice(room.as_bytes());
        value.extend_from_slice(&seq.to_be_bytes());
        value.extend_from_slice(&at_ms.to_be_bytes());
        let len_at = value.len();
        value.extend_from_slice(&[0; 4]);
        let offset = value.len();
        if let Err(error) = write(value) {
            value.truncate(start);
            return Err(error);
        }
        let len = (value.len() - offset) as u32;
        value[len_at..offset].copy_from_slice(&len.to_be_bytes());
        let slot = Slot {
            seq,
            at_ms,
            chunk: *chunk,
            offset: offset as u32,
            len,
        };
        appends.placed.push((room, slot));
        Ok(())
    }

    /// The oldest chunks to forward in this commit: while the log holds more than twice
    /// what it keeps (plus [`SLACK_BYTES`]), up to [`MAX_FORWARDED`] of them.
    pub fn to_forward(&self) -> Vec<u64> {
        let mut chosen = Vec::new();
        let mut log = self.log_bytes;
        for (chunk, used) in &self.chunks {
            if chosen.len() == MAX_FORWARDED || log <= 2 * self.live_bytes + SLACK_BYTES {
                break;
            }
            chosen.push(*chunk);
            log = log.saturating_sub(used.bytes - used.live_bytes);
        }
        chosen
    }

    /// Adds the still-kept records of chunk `chunk` (read back as `value`) to a commit's
    /// records, so that the chunk can be deleted once they are placed.
    pub fn forward<'a>(
        &mut self,
        appends: &mut Appends<'a>,
        chunk: u64,
        value: &'a [u8],
    ) -> Result<(), String> {
        for record in records(chunk, value) {
            let record = record?;
            let kept = self.rooms.get(record.room).is_some_and(|slots| {
                find(slots, record.slot.seq).is_ok_and(|i| slots[i].chunk == chunk)
            });
            if kept {
                let Record { room, slot, entry } = record;
                self.append(appends, room, slot.seq, slot.at_ms, entry);
            }
        }
        Ok(())
    }

    /// Places a commit's records (the newest `history_size` of each room stay), and says
    /// what to write: its chunks that still hold a kept event, and the deletion of every
    /// older chunk that holds none any more. The caller commits both at once; if that
    /// fails, this index no longer matches the log and must be rebuilt from it.
    pub fn place_all(&mut self, appends: Appends<'_>) -> LogWrites {
        for (chunk, value) in &appends.chunks {
            let used = self.chunks.entry(*chunk).or_default();
            used.bytes = value.len() as u64;
            self.log_bytes += value.len() as u64;
        }
        for (room, slot) in &appends.placed {
            self.place(room, *slot);
        }
        let mut writes = LogWrites::default();
        for (chunk, value) in appends.chunks {
            match self.chunks.get(&chunk) {
                Some(used) if used.live > 0 => writes.put.push((chunk, value)),
                // A chunk of this commit that keeps nothing is never written at all.
                _ => {
                    if let Some(used) = self.chunks.remove(&chunk) {
                        self.log_bytes -= used.bytes;
                    }
                }
            }
        }
        for chunk in std::mem::take(&mut self.emptied) {
            if let Some(used) = self.chunks.get(&chunk).filter(|used| used.live == 0) {
                self.log_bytes -= used.bytes;
                self.chunks.remove(&chunk);
                writes.delete.push(chunk);
            }
        }
        writes
    }

    /// Puts `slot` in the room's kept events (replacing one of the same `seq`), then drops
    /// the oldest beyond `history_size`.
    fn place(&mut self, room: &str, slot: Slot) {
        if self.history_size == 0 {
            return;
        }
        if !self.rooms.contains_key(room) {
            self.rooms.insert(room.into(), VecDeque::new());
        }
        let slots = self.rooms.get_mut(room).expect("inserted");
        // Appends come in order: the newest goes last, without a search.
        let replaced = match slots.back() {
            Some(last) if last.seq >= slot.seq => match find(slots, slot.seq) {
                Ok(i) => Some(std::mem::replace(&mut slots[i], slot)),
                Err(i) => {
                    slots.insert(i, slot);
                    None
                }
            },
            _ => {
                slots.push_back(slot);
                None
            }
        };
        let mut dropped: Vec<Slot> = replaced.into_iter().collect();
        while slots.len() > self.history_size {
            dropped.extend(slots.pop_front());
        }
        let bytes = slot.record_bytes(room);
        let used = self.chunks.entry(slot.chunk).or_default();
        used.live += 1;
        used.live_bytes += bytes;
        self.live_bytes += bytes;
        for gone in dropped {
            let bytes = gone.record_bytes(room);
            if let Some(used) = self.chunks.get_mut(&gone.chunk) {
                used.live -= 1;
                used.live_bytes -= bytes;
                if used.live == 0 {
                    self.emptied.push(gone.chunk);
                }
            }
            self.live_bytes -= bytes;
        }
    }

    /// The slots a query reads, oldest first, and the `seq` of the oldest kept event within
    /// its age bound (as [`super::History::oldest`]).
    pub fn select(&self, room: &str, query: HistoryQuery) -> (Vec<Slot>, Option<u64>) {
        let Some(slots) = self.rooms.get(room) else {
            return (Vec::new(), None);
        };
        let fresh = |s: &&Slot| query.since_ms.is_none_or(|since| s.at_ms >= since);
        let oldest = slots.iter().find(fresh).map(|s| s.seq);
        let matching = slots.iter().filter(fresh).filter(|s| {
            query.after.is_none_or(|after| s.seq > after)
                && query.before.is_none_or(|before| s.seq < before)
        });
        let chosen = match query.after {
            Some(_) => matching.take(query.limit).copied().collect(),
            None => {
                let all: Vec<Slot> = matching.copied().collect();
                let skip = all.len().saturating_sub(query.limit);
                all[skip..].to_vec()
            }
        };
        (chosen, oldest)
    }
}

/// Where `seq` is among a room's slots (sorted by `seq`), or where it would go.
fn find(slots: &VecDeque<Slot>, seq: u64) -> Result<usize, usize> {
    slots.binary_search_by_key(&seq, |s| s.seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes what `place_all` says into `log` (the stand-in for the keyspace).
    fn apply(log: &mut BTreeMap<u64, Vec<u8>>, writes: LogWrites) {
        for chunk in writes.delete {
            assert!(
                log.remove(&chunk).is_some(),
                "deleted chunk {chunk} was stored"
            );
        }
        for (chunk, value) in writes.put {
            assert!(
                log.insert(chunk, value).is_none(),
                "chunk {chunk} written twice"
            );
        }
    }

    /// One commit of `events` (room, seq) through the index, with forwarding.
    fn commit(index: &mut LogIndex, log: &mut BTreeMap<u64, Vec<u8>>, events: &[(&str, u64)]) {
        let forwarded: Vec<(u64, Vec<u8>)> = index
            .to_forward()
            .into_iter()
            .map(|chunk| (chunk, log[&chunk].clone()))
            .collect();
        let mut appends = index.appends();
        for (chunk, value) in &forwarded {
            index.forward(&mut appends, *chunk, value).unwrap();
        }
        for (room, seq) in events {
            let entry = format!("{{\"room\":\"{room}\",\"seq\":{seq}}}").repeat(20);
            index.append(&mut appends, room, *seq, 1_000 + seq, entry.as_bytes());
        }
        let writes = index.place_all(appends);
        apply(log, writes);
    }

    /// What the log holds, read back through a fresh index, per room: kept `seq`s.
    fn reread(log: &BTreeMap<u64, Vec<u8>>, history_size: usize) -> LogIndex {
        let mut index = LogIndex::new(history_size);
        for (chunk, value) in log {
            index.recover(*chunk, value).unwrap();
        }
        index
    }

    fn seqs(index: &LogIndex, room: &str) -> Vec<u64> {
        index
            .select(room, HistoryQuery::last(usize::MAX))
            .0
            .iter()
            .map(|s| s.seq)
            .collect()
    }

    #[test]
    fn keeps_the_newest_of_each_room_and_reads_them_back() {
        let mut index = LogIndex::new(3);
        let mut log = BTreeMap::new();
        for seq in 1..=5 {
            commit(&mut index, &mut log, &[("a", seq), ("b", seq * 10)]);
        }
        assert_eq!(seqs(&index, "a"), [3, 4, 5]);
        assert_eq!(seqs(&index, "b"), [30, 40, 50]);
        assert_eq!(index.newest("a"), Some(5));
        let again = reread(&log, 3);
        assert_eq!(seqs(&again, "a"), [3, 4, 5]);
        assert_eq!(seqs(&again, "b"), [30, 40, 50]);
        // Each slot points at its own entry.
        for slot in index.select("a", HistoryQuery::last(10)).0 {
            let value = &log[&slot.chunk];
            let entry = &value[slot.offset as usize..][..slot.len as usize];
            assert!(std::str::from_utf8(entry)
                .unwrap()
                .starts_with(&format!("{{\"room\":\"a\",\"seq\":{}}}", slot.seq)));
        }
    }

    #[test]
    fn chunks_nobody_keeps_are_deleted_and_never_written() {
        let mut index = LogIndex::new(2);
        let mut log = BTreeMap::new();
        // Five events of one room in one commit: only the newest two are written.
        commit(
            &mut index,
            &mut log,
            &[("a", 1), ("a", 2), ("a", 3), ("a", 4), ("a", 5)],
        );
        assert_eq!(seqs(&index, "a"), [4, 5]);
        // Two more: the first commit's chunk keeps nothing and is deleted.
        commit(&mut index, &mut log, &[("a", 6), ("a", 7)]);
        assert_eq!(log.len(), 1, "{:?}", log.keys().collect::<Vec<_>>());
        assert_eq!(index.chunk_count(), 1);
        assert_eq!(seqs(&reread(&log, 2), "a"), [6, 7]);
    }

    #[test]
    fn quiet_rooms_are_forwarded_and_the_log_stays_bounded() {
        let mut index = LogIndex::new(4);
        let mut log = BTreeMap::new();
        // Each commit: one event of a room never heard from again, and a busy room's eight
        // (which die soon). Without forwarding, every chunk would stay for its one kept event.
        let quiet: Vec<String> = (0..12_000).map(|i| format!("quiet-{i}")).collect();
        let mut seq = 0;
        for room in &quiet {
            let mut events = vec![(room.as_str(), 1)];
            for _ in 0..8 {
                seq += 1;
                events.push(("busy", seq));
            }
            commit(&mut index, &mut log, &events);
            let stored: u64 = log.values().map(|v| v.len() as u64).sum();
            assert!(
                stored <= 2 * index.live_bytes + SLACK_BYTES + 2 * CHUNK_BYTES as u64,
                "the log holds {stored} bytes for {} kept",
                index.live_bytes
            );
        }
        assert!(index.log_bytes > SLACK_BYTES, "the test reached the slack");
        assert!(
            !log.contains_key(&0),
            "the first chunk was forwarded and deleted"
        );
        let again = reread(&log, 4);
        for room in &quiet {
            assert_eq!(seqs(&again, room), [1], "{room}");
        }
        assert_eq!(seqs(&again, "busy"), [seq - 3, seq - 2, seq - 1, seq]);
        assert_eq!(again.kept(), quiet.len() + 4);
        assert_eq!(again.live_bytes, index.live_bytes);
    }

    #[test]
    fn an_event_appended_again_replaces_its_slot() {
        let mut index = LogIndex::new(10);
        let mut log = BTreeMap::new();
        commit(&mut index, &mut log, &[("a", 1), ("a", 2)]);
        // A retried commit, and an event filling a gap.
        commit(&mut index, &mut log, &[("a", 1), ("a", 2), ("a", 5)]);
        commit(&mut index, &mut log, &[("a", 3)]);
        assert_eq!(seqs(&index, "a"), [1, 2, 3, 5]);
        assert_eq!(log.len(), 2, "the first chunk is replaced whole");
        assert_eq!(seqs(&reread(&log, 10), "a"), [1, 2, 3, 5]);
    }

    #[test]
    fn pages_as_the_memory_store_pages() {
        let mut index = LogIndex::new(10);
        let mut log = BTreeMap::new();
        commit(
            &mut index,
            &mut log,
            &[("a", 1), ("a", 2), ("a", 3), ("a", 4)],
        );
        let pick = |query: HistoryQuery| -> (Vec<u64>, Option<u64>) {
            let (slots, oldest) = index.select("a", query);
            (slots.iter().map(|s| s.seq).collect(), oldest)
        };
        assert_eq!(pick(HistoryQuery::last(2)), (vec![3, 4], Some(1)));
        let after = HistoryQuery {
            after: Some(1),
            ..HistoryQuery::last(2)
        };
        assert_eq!(pick(after), (vec![2, 3], Some(1)));
        let before = HistoryQuery {
            before: Some(3),
            ..HistoryQuery::last(5)
        };
        assert_eq!(pick(before), (vec![1, 2], Some(1)));
        // at_ms is 1000 + seq here.
        let young = HistoryQuery {
            since_ms: Some(1_003),
            ..HistoryQuery::last(5)
        };
        assert_eq!(pick(young), (vec![3, 4], Some(3)));
        assert_eq!(index.select("nobody", HistoryQuery::last(5)).0, []);
    }

    #[test]
    fn garbled_chunks_are_errors() {
        let mut index = LogIndex::new(10);
        assert!(index.recover(0, &[0, 0, 0, 9, b'a']).is_err());
        let mut appends = index.appends();
        index.append(&mut appends, "a", 1, 1, b"{}");
        let value = appends.chunks[0].1.clone();
        assert!(index.recover(1, &value[..value.len() - 1]).is_err());
        assert!(index.recover(2, &value).is_ok());
    }
}
