//! [`DiskStore`]: rooms' durable state and history in a directory, on fjall (a pure-Rust
//! LSM tree), so they survive a restart of the process and, once synced, of the machine.
//!
//! # Layout
//!
//! The directory holds a file, [`MARKER_FILE`], naming the layout below ([`FORMAT`]), and a
//! fjall database with three keyspaces. `meta` holds one key, `format`, with the same value
//! (it travels with the data). `rooms` holds rooms' state, one key per fact, so that a vote
//! or a counter rewrites one small key and never a whole room:
//!
//! ```text
//! room R      = u32 BE byte length of R ++ R      (or ++ SHA-256(R) when R is long)
//! R ++ 0x00                         → ""          the room exists (anything was committed)
//! R ++ 0x01                         → u64 BE      the Pact suffix counter
//! R ++ 0x02                         → config string
//! R ++ 0x03                         → u64 BE seq ++ epoch   the stream position (its seq
//!                                     may trail the newest history event, which then is it)
//! R ++ 0x04 ++ name(poll) ++ name(user) → len-prefixed poll ++ len-prefixed user ++ answer
//! R ++ 0x05 ++ name(counter)        → len-prefixed counter ++ the exact decimal as a string
//! name(s)     = u32 BE byte length of s ++ s      (or ++ SHA-256(s) when s is long)
//! ```
//!
//! The length prefix makes every room's keys one contiguous range that no other room's keys
//! fall into, whatever bytes the names hold (`"a"` and `"ab"`, or names with `\0`). Names
//! longer than [`INLINE_MAX`] are hashed in keys, since fjall keys are at most 64 KiB (and
//! longer ones would corrupt its journal); keys only identify, values carry the full names
//! back.
//!
//! `log` holds every room's history as a log of chunks: key `u64 BE n`, value the records
//! of events appended by commits, from every room at once (see [`log_index`] for the record
//! format, and why a log: a key per event cost two sorted inserts per chat). Which chunk holds
//! which room's kept events is in memory ([`LogIndex`]), rebuilt by reading the log when the
//! store opens; a chunk is deleted once nothing in it is kept, and the kept events of old
//! chunks are forwarded into new ones so quiet rooms never pin old chunks. A room's position
//! key is written when its epoch changes, when it goes idle, and when no kept event carries
//! its newest `seq`; otherwise its newest kept event is its position (see `Db::load`).
//!
//! # Durability
//!
//! [`StateStore::commit`] writes its whole batch (state keys, new chunks, deleted chunks) as
//! one fjall write batch (atomic: after a crash, all of it or none of it) and hands the
//! journal to the OS before returning, so a killed process loses nothing it committed
//! (fjall's write batches do not do that by default, whatever its `manual_journal_persist`
//! option says: the batch asks for `PersistMode::Buffer`, and a test kills a child process
//! to hold it to that); [`StateStore::sync`] fsyncs the journal, so nothing committed before
//! it is lost to a power cut either. When a write or fsync fails, fjall refuses every later
//! write (it "poisons" itself); the store then drops the database and its log index and
//! reopens both on its next call (journal recovery keeps a consistent prefix of batches), so
//! a caller that retries the same batch can succeed once the disk is back. Every change is
//! idempotent (it sets a value; an event appended again replaces its copy), so committing a
//! batch again is harmless.
//!
//! # Opening
//!
//! [`DiskStore::open`] creates the directory if it is missing, and refuses, without changing
//! anything in it, a directory whose marker names another format or that holds anything but
//! a store (the marker is read before fjall opens anything, since fjall's open is not
//! read-only). fjall itself locks the directory (an exclusive `flock` on its `lock` file,
//! held while the database is open), so a second open, by another process or by this one,
//! fails with an error saying the directory is locked.
//!
//! [`log_index`]: super::log_index

use super::log_index::{self, LogIndex, LogWrites};
use super::{Entry, History, HistoryQuery, StateStore, StoreError};
use crate::engine::{Change, RoomSnapshot};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Names the layout above: the contents of [`MARKER_FILE`], and of the `format` key of the
/// `meta` keyspace. (`rookery-store/1` kept history as a key per event in `rooms`.)
pub const FORMAT: &str = "rookery-store/2";

/// The file in a store's directory that names its [`FORMAT`].
pub const MARKER_FILE: &str = "rookery.format";

/// Longest name (room, poll, user, counter) kept as is in a key; longer ones are hashed.
pub const INLINE_MAX: usize = 1024;

const META: &str = "meta";
const ROOMS: &str = "rooms";
const LOG: &str = "log";
const FORMAT_KEY: &[u8] = b"format";

const EXISTS: u8 = 0x00;
const SUFFIX: u8 = 0x01;
const CONFIG: u8 = 0x02;
const POSITION: u8 = 0x03;
const VOTE: u8 = 0x04;
const COUNTER: u8 = 0x05;
/// Past the last tag of a room's keys.
const ROOM_END: u8 = 0x06;

/// A durable [`StateStore`] in a directory (see the module documentation).
pub struct DiskStore {
    dir: PathBuf,
    /// Most events kept per room (older ones are dropped as newer ones are appended).
    history_size: usize,
    /// `None` after a write failed and fjall refused further writes: reopened on next use.
    db: Option<Db>,
    /// Rooms' positions as committed, so a commit need not read them back (emptied when the
    /// database is reopened, and when it grows past [`META_CACHE_MAX`] rooms).
    meta: MetaCache,
}

/// Rooms' [`RoomMeta`] by room.
type MetaCache = ahash::AHashMap<Box<str>, RoomMeta>;

/// Most rooms whose [`RoomMeta`] a store keeps in memory (about 100 bytes each).
const META_CACHE_MAX: usize = 100_000;

/// What a commit needs to know of a room besides its changes: its stored position key.
#[derive(Debug, Clone, Default)]
struct RoomMeta {
    /// The stored position's epoch (`None`: none stored) and `seq` — which the room's
    /// newest kept event may be ahead of, see [`Db::load`].
    epoch: Option<String>,
    seq: u64,
}

impl DiskStore {
    /// Opens the store in `dir` (created if missing), keeping up to `history_size` events per
    /// room.
    ///
    /// Fails, leaving the directory as it was, when `dir` cannot be read or made
    /// (`Unavailable`), is a file or holds anything other than a store of this format
    /// (`Corrupt`), or is in use by another process or another `DiskStore` (`Unavailable`,
    /// "locked by another process").
    pub fn open(dir: &Path, history_size: usize) -> Result<DiskStore, StoreError> {
        claim(dir)?;
        let db = Db::open(dir, history_size)?;
        Ok(DiskStore {
            dir: dir.to_path_buf(),
            history_size,
            db: Some(db),
            meta: ahash::AHashMap::new(),
        })
    }

    /// The open database, reopening it if a failed write closed it.
    fn db(&mut self) -> Result<&mut Db, StoreError> {
        let db = match self.db.take() {
            Some(db) => db,
            None => {
                tracing::warn!(dir = %self.dir.display(), "reopening the store after a failed write");
                Db::open(&self.dir, self.history_size)?
            }
        };
        Ok(self.db.insert(db))
    }

    /// Turns a failed write into an error and closes the database: fjall accepts no write
    /// after one failed (it cannot know what reached the disk), so the next call reopens it,
    /// recovering the journal, and rebuilds the log index from what it holds.
    fn write_failed(&mut self, what: &str, error: fjall::Error) -> StoreError {
        tracing::error!(dir = %self.dir.display(), %error, "{what} failed; the store will reopen");
        self.db = None;
        self.meta.clear();
        unavailable(&self.dir, what, error)
    }
}

impl StateStore for DiskStore {
    fn load(&mut self, room: &str) -> Result<Option<RoomSnapshot>, StoreError> {
        self.db()?.load(room)
    }

    fn commit(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        if self.meta.len() > META_CACHE_MAX {
            self.meta.clear();
        }
        let mut meta = std::mem::take(&mut self.meta);
        let db = self.db()?;
        let planned = Writes::plan(db, &mut meta, changes);
        // What the plan read into the cache is what the store holds, committed or not.
        self.meta = meta;
        let (writes, log) = planned?;
        let db = self.db.as_ref().expect("opened above");
        let mut batch = db.database.batch().durability(Some(PersistMode::Buffer));
        for (k, value) in writes {
            match value {
                Some(value) => batch.insert(&db.rooms, k, value),
                None => batch.remove(&db.rooms, k),
            }
        }
        for chunk in log.delete {
            batch.remove(&db.log, chunk.to_be_bytes());
        }
        for (chunk, value) in log.put {
            batch.insert(&db.log, chunk.to_be_bytes(), value);
        }
        match batch.commit() {
            Ok(()) => Ok(()),
            // The log index and the cache already hold the batch, which is not so: forget
            // them (the reopen rebuilds both from the disk).
            Err(error) => Err(self.write_failed("a commit", error)),
        }
    }

    fn history(&mut self, room: &str, query: HistoryQuery) -> Result<History, StoreError> {
        self.db()?.history(room, query)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.db()?
            .database
            .persist(PersistMode::SyncAll)
            .map_err(|error| self.write_failed("an fsync", error))
    }

    fn background_sync(&self) -> Option<super::SyncFn> {
        let dir = self.dir.clone();
        Some(Box::new(move || sync_journal(&dir)))
    }
}

/// Fsyncs (`fdatasync`) fjall's active journal through a handle of its own, which makes
/// every commit handed to the OS before the call durable. fjall's own
/// `persist(SyncAll)` holds the journal's writer for the whole fsync (milliseconds here),
/// so commits would wait on it; this one does not stop them. The active journal is the
/// highest-numbered `<n>.jnl` in the directory (fjall fsyncs a journal itself when it
/// seals it for the next one). If none is found (another fjall layout), it fails, and the
/// store thread falls back to `sync` (a test holds the layout to this).
fn sync_journal(dir: &Path) -> Result<(), StoreError> {
    let failed = |e: std::io::Error| {
        StoreError::Unavailable(format!(
            "the store in {}: an fsync of the journal failed: {e}",
            dir.display()
        ))
    };
    let mut newest: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).map_err(failed)? {
        let path = entry.map_err(failed)?.path();
        let number = path
            .file_name()
            .and_then(|name| name.to_str()?.strip_suffix(".jnl")?.parse::<u64>().ok());
        if let Some(n) = number {
            if newest.as_ref().is_none_or(|(m, _)| n > *m) {
                newest = Some((n, path));
            }
        }
    }
    let (_, journal) = newest.ok_or_else(|| {
        StoreError::Unavailable(format!(
            "the store in {}: no journal (<n>.jnl) to fsync",
            dir.display()
        ))
    })?;
    std::fs::File::open(journal)
        .and_then(|file| file.sync_data())
        .map_err(failed)
}

/// Checks, before fjall touches anything, that `dir` is a store of this [`FORMAT`] (by its
/// [`MARKER_FILE`]) or empty (or missing: then it is made); for a new store, writes the
/// marker. fjall's own open is not read-only (its first recovery of a database truncates
/// the journal's preallocated space and removes stale version files), so only a check done
/// here can refuse a directory and leave it exactly as it was.
fn claim(dir: &Path) -> Result<(), StoreError> {
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(StoreError::Corrupt(format!(
                "the store path {shown} is not a directory (it is a file)"
            )))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create the store directory {shown}: {e}"))
            })?;
        }
        Err(e) => {
            return Err(StoreError::Unavailable(format!(
                "cannot read the store directory {shown}: {e}"
            )))
        }
    }
    let cannot_read = |e: std::io::Error| {
        StoreError::Unavailable(format!("cannot read the store directory {shown}: {e}"))
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(cannot_read)? {
        names.push(entry.map_err(cannot_read)?.file_name());
    }
    match std::fs::read(dir.join(MARKER_FILE)) {
        Ok(marker) if marker.trim_ascii_end() == FORMAT.as_bytes() => Ok(()),
        Ok(marker) => Err(StoreError::Corrupt(format!(
            "the store directory {shown} holds a Rookery store of another format: its \
             {MARKER_FILE} says {:?}, this build reads {FORMAT:?}; nothing in it was changed \
             (there is no conversion between formats: to start afresh, move it aside or point \
             --data-dir elsewhere)",
            String::from_utf8_lossy(marker.trim_ascii_end())
        ))),
        Err(e) if e.kind() == ErrorKind::NotFound && names.is_empty() => write_marker(dir),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            names.sort();
            let some: Vec<String> = names
                .iter()
                .take(5)
                .map(|n| format!("{:?}", n.to_string_lossy()))
                .collect();
            Err(StoreError::Corrupt(format!(
                "the store directory {shown} is not a Rookery store: it has no {MARKER_FILE} \
                 and holds {} other entr{} ({}{}); nothing in it was changed (give an empty \
                 or new directory)",
                names.len(),
                if names.len() == 1 { "y" } else { "ies" },
                some.join(", "),
                if names.len() > 5 { ", ..." } else { "" },
            )))
        }
        Err(e) => Err(cannot_read(e)),
    }
}

/// Marks a new store's directory: written aside, synced, then renamed into place (and the
/// directory synced), so the marker is either whole or absent.
fn write_marker(dir: &Path) -> Result<(), StoreError> {
    let cannot_write = |e: std::io::Error| {
        StoreError::Unavailable(format!(
            "cannot write {MARKER_FILE} in the store directory {}: {e}",
            dir.display()
        ))
    };
    let aside = dir.join(format!("{MARKER_FILE}.new"));
    let mut file = std::fs::File::create(&aside).map_err(cannot_write)?;
    file.write_all(format!("{FORMAT}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(cannot_write)?;
    std::fs::rename(&aside, dir.join(MARKER_FILE)).map_err(cannot_write)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(cannot_write)
}

/// An open database, its keyspaces of rooms and of the history log, and the log's index.
struct Db {
    dir: PathBuf,
    rooms: Keyspace,
    log: Keyspace,
    index: LogIndex,
    database: Database,
}

impl Db {
    /// Hands the (claimed) directory to fjall, checks that the database inside is a store
    /// of this format too (or, for a new store, marks it so), and reads the history log
    /// into its index.
    fn open(dir: &Path, history_size: usize) -> Result<Db, StoreError> {
        let database = Database::builder(dir)
            .journal_compression(fjall::CompressionType::None)
            .open()
            .map_err(|e| open_failed(dir, e))?;
        let marker = match database.keyspace_exists(META) {
            true => keyspace(dir, &database, META)?
                .get(FORMAT_KEY)
                .map_err(|e| open_failed(dir, e))?,
            false => None,
        };
        match marker {
            Some(format) if &*format == FORMAT.as_bytes() => {}
            Some(format) => {
                return Err(StoreError::Corrupt(format!(
                    "the store directory {} holds a database of another format: its `format` \
                     key says {:?}, this build reads {FORMAT:?}",
                    dir.display(),
                    String::from_utf8_lossy(&format)
                )))
            }
            None => {
                // No key: a new database, or a first open that stopped before writing it
                // (then only our keyspaces exist, and they hold nothing). Anything else is
                // somebody else's database, next to a marker file it should not have.
                let names = database.list_keyspace_names();
                let names: Vec<&str> = names.iter().map(|n| &**n).collect();
                let foreign = names.iter().any(|n| ![META, ROOMS, LOG].contains(n));
                let mut holds_data = false;
                for name in [ROOMS, LOG] {
                    holds_data |= database.keyspace_exists(name)
                        && !keyspace(dir, &database, name)?
                            .is_empty()
                            .map_err(|e| open_failed(dir, e))?;
                }
                if foreign || holds_data {
                    return Err(StoreError::Corrupt(format!(
                        "the store directory {} holds a fjall database that is not a Rookery \
                         store (keyspaces {names:?}, no `format` key)",
                        dir.display(),
                    )));
                }
                let meta = keyspace(dir, &database, META)?;
                let mut batch = database.batch().durability(Some(PersistMode::SyncAll));
                batch.insert(&meta, FORMAT_KEY, FORMAT.as_bytes());
                batch.commit().map_err(|e| open_failed(dir, e))?;
                tracing::info!(dir = %dir.display(), format = FORMAT, "created a store");
            }
        }
        let rooms = keyspace(dir, &database, ROOMS)?;
        let log = keyspace(dir, &database, LOG)?;
        if history_size == 0 {
            keep_positions_of_dropped_history(dir, &database, &rooms, &log)?;
        }
        let mut index = LogIndex::new(history_size);
        for guard in log.iter() {
            let (k, value) = guard.into_inner().map_err(|e| open_failed(dir, e))?;
            let chunk = u64_at(&k, 0).filter(|_| k.len() == 8).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "the store in {}: the history log holds a key that is not a chunk number",
                    dir.display()
                ))
            })?;
            index.recover(chunk, &value).map_err(|what| {
                StoreError::Corrupt(format!("the store in {}: {what}", dir.display()))
            })?;
        }
        Ok(Db {
            dir: dir.to_path_buf(),
            rooms,
            log,
            index,
            database,
        })
    }

    /// A failed read.
    fn failed(&self, what: &str, error: fjall::Error) -> StoreError {
        unavailable(&self.dir, what, error)
    }

    /// Data that does not decode as this format wrote it.
    fn corrupt(&self, room: &str, what: &str) -> StoreError {
        StoreError::Corrupt(format!(
            "the store in {}: room {room:?}: {what}",
            self.dir.display()
        ))
    }

    fn load(&self, room: &str) -> Result<Option<RoomSnapshot>, StoreError> {
        let prefix = room_prefix(room);
        let start = key(&prefix, EXISTS, &[]);
        let end = key(&prefix, ROOM_END, &[]);
        let mut snapshot = RoomSnapshot::default();
        // The newest kept event is the position when it is ahead of the position key
        // (appends move the position without rewriting that key).
        let newest = self.index.newest(room);
        let mut found = newest.is_some();
        snapshot.seq = newest.unwrap_or(0);
        for guard in self.rooms.range(start..end) {
            let (k, value) = guard
                .into_inner()
                .map_err(|e| self.failed("reading a room", e))?;
            found = true;
            let tag = k.get(prefix.len()).copied().unwrap_or(u8::MAX);
            let bad = || self.corrupt(room, &format!("an unreadable value (tag {tag:#04x})"));
            match tag {
                EXISTS => {}
                SUFFIX => snapshot.suffix = u64_at(&value, 0).ok_or_else(bad)?,
                CONFIG => snapshot.config = Some(text(&value).ok_or_else(bad)?.into()),
                POSITION => {
                    let (epoch, seq) = position(&value).ok_or_else(bad)?;
                    snapshot.epoch = Some(epoch.into());
                    snapshot.seq = snapshot.seq.max(seq);
                }
                VOTE => {
                    let (poll, rest) = name_at(&value).ok_or_else(bad)?;
                    let (user, answer) = name_at(rest).ok_or_else(bad)?;
                    let answer = text(answer).ok_or_else(bad)?;
                    let votes = snapshot.polls.entry(poll.into()).or_default();
                    votes.insert(user.into(), answer.into());
                }
                COUNTER => {
                    let (counter, value) = name_at(&value).ok_or_else(bad)?;
                    let value = text(value).and_then(|v| Decimal::from_str(v).ok());
                    let value = value.ok_or_else(bad)?;
                    snapshot.counters.insert(counter.into(), value);
                }
                _ => return Err(bad()),
            }
        }
        Ok(found.then_some(snapshot))
    }

    /// The room's stored position key.
    fn meta(&self, room: &str, prefix: &[u8]) -> Result<RoomMeta, StoreError> {
        let value = self
            .rooms
            .get(key(prefix, POSITION, &[]))
            .map_err(|e| self.failed("reading before a commit", e))?;
        Ok(match value {
            None => RoomMeta::default(),
            Some(value) => {
                let (epoch, seq) =
                    position(&value).ok_or_else(|| self.corrupt(room, "an unreadable position"))?;
                RoomMeta {
                    epoch: Some(epoch.to_owned()),
                    seq,
                }
            }
        })
    }

    /// A chunk of the history log (`None`: not stored, which a kept event never points at).
    fn chunk(&self, chunk: u64) -> Result<Option<fjall::Slice>, StoreError> {
        self.log
            .get(chunk.to_be_bytes())
            .map_err(|e| self.failed("reading the history log", e))
    }

    fn history(&self, room: &str, query: HistoryQuery) -> Result<History, StoreError> {
        let (slots, oldest) = self.index.select(room, query);
        let mut events = Vec::with_capacity(slots.len());
        // Neighbouring events mostly share a chunk: read each one once.
        let mut read: Option<(u64, fjall::Slice)> = None;
        for slot in slots {
            let value = match &read {
                Some((chunk, value)) if *chunk == slot.chunk => value,
                _ => {
                    let value = self.chunk(slot.chunk)?.ok_or_else(|| {
                        self.corrupt(room, &format!("history chunk {} is missing", slot.chunk))
                    })?;
                    &read.insert((slot.chunk, value)).1
                }
            };
            let at = slot.offset as usize;
            let json = value.get(at..at + slot.len as usize).ok_or_else(|| {
                self.corrupt(room, &format!("history chunk {} is cut short", slot.chunk))
            })?;
            let entry: Entry = serde_json::from_slice(json)
                .map_err(|e| self.corrupt(room, &format!("an unreadable history event: {e}")))?;
            events.push(entry);
        }
        Ok(History { events, oldest })
    }
}

/// Before a store that kept history opens keeping none (`--history-size 0`): the newest
/// kept event of a room may be its position (its position key trailing it), so each such
/// room's position key is moved up to it, and the log deleted, in one batch. (With any
/// history kept, the newest event of each room survives every trim, so nothing is lost.)
fn keep_positions_of_dropped_history(
    dir: &Path,
    database: &Database,
    rooms: &Keyspace,
    log: &Keyspace,
) -> Result<(), StoreError> {
    let corrupt =
        |what: String| StoreError::Corrupt(format!("the store in {}: {what}", dir.display()));
    let mut newest: ahash::AHashMap<String, u64> = ahash::AHashMap::new();
    let mut chunks = Vec::new();
    for guard in log.iter() {
        let (k, value) = guard.into_inner().map_err(|e| open_failed(dir, e))?;
        let chunk = u64_at(&k, 0).unwrap_or(0);
        for record in log_index::records(chunk, &value) {
            let record = record.map_err(corrupt)?;
            let seq = newest.entry(record.room.to_owned()).or_default();
            *seq = (*seq).max(record.slot.seq);
        }
        chunks.push(k);
    }
    if chunks.is_empty() {
        return Ok(());
    }
    let mut batch = database.batch().durability(Some(PersistMode::SyncAll));
    for (room, seq) in newest {
        let at = key(&room_prefix(&room), POSITION, &[]);
        let stored = rooms.get(&at).map_err(|e| open_failed(dir, e))?;
        let stored = stored.as_deref().and_then(position);
        let (epoch, stored_seq) =
            stored.ok_or_else(|| corrupt(format!("room {room:?} has history but no position")))?;
        if seq > stored_seq {
            batch.insert(rooms, at.clone(), position_value(epoch, seq));
        }
    }
    for chunk in chunks {
        batch.remove(log, chunk);
    }
    batch.commit().map_err(|e| open_failed(dir, e))?;
    tracing::info!(dir = %dir.display(), "history dropped: the store now keeps none (--history-size 0)");
    Ok(())
}

/// Plans a commit's writes.
struct Writes;

/// The `rooms` keys one commit writes, each once (`None`: removed), holding the value the
/// batch leaves it with. A fjall batch must not hold a key twice (its items share one
/// sequence number, so which one wins is undefined).
type Keys = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// What one commit does to one room beyond single keys: its position.
struct RoomPlan<'a> {
    /// The position the batch leaves (`None`: untouched).
    position: Option<(&'a str, u64)>,
    /// Whether a `Change::Position` set the position (then its key is written).
    positioned: bool,
    /// Whether the batch writes any value for the room (else its existence key is).
    wrote_value: bool,
}

impl Writes {
    /// The `rooms` keys and log chunks a batch of changes writes, and what the rooms'
    /// [`RoomMeta`] will be once it is committed. `meta` is what is known of rooms already;
    /// others are read.
    ///
    /// Everything that can fail (encoding, reads) is done before the log index takes the
    /// batch's events; once it has, only the commit itself can fail, and a failed commit
    /// closes the database (the index is rebuilt with it).
    fn plan<'a>(
        db: &mut Db,
        meta: &mut MetaCache,
        changes: &'a [Change],
    ) -> Result<(Keys, LogWrites), StoreError> {
        let keep_history = db.index.keeps_history();
        let mut keys = Keys::new();
        // The old chunks this commit forwards, read before anything changes, then the
        // batch's events, encoded straight into its chunks (the index does not take them
        // before `place_all`, so an error on the way leaves it as it was).
        let mut forwarded = Vec::new();
        if keep_history {
            for chunk in db.index.to_forward() {
                if let Some(value) = db.chunk(chunk)? {
                    forwarded.push((chunk, value));
                }
            }
        }
        let mut appends = db.index.appends();
        for (chunk, value) in &forwarded {
            db.index
                .forward(&mut appends, *chunk, value)
                .map_err(|what| {
                    StoreError::Corrupt(format!("the store in {}: {what}", db.dir.display()))
                })?;
        }
        // What the batch does to each room's position, written once per room at the end
        // (a batch interleaves rooms).
        let mut rooms: ahash::AHashMap<&str, RoomPlan<'a>> =
            ahash::AHashMap::with_capacity(changes.len().min(1024));
        for change in changes {
            let room = change.room();
            let plan = rooms.entry(room).or_insert_with(|| RoomPlan {
                position: None,
                positioned: false,
                wrote_value: false,
            });
            let prefix = || room_prefix(room);
            let (k, value) = match change {
                Change::Suffix { suffix, .. } => (
                    key(&prefix(), SUFFIX, &[]),
                    Some(suffix.to_be_bytes().into()),
                ),
                Change::Config { config, .. } => {
                    (key(&prefix(), CONFIG, &[]), Some(config.as_bytes().into()))
                }
                Change::Vote {
                    poll, user, answer, ..
                } => {
                    let mut names = name(poll);
                    names.extend_from_slice(&name(user));
                    let value = answer.as_ref().map(|answer| {
                        let mut value = with_length(poll);
                        value.extend_from_slice(&with_length(user));
                        value.extend_from_slice(answer.as_bytes());
                        value
                    });
                    (key(&prefix(), VOTE, &names), value)
                }
                Change::Counter { counter, value, .. } => {
                    let mut stored = with_length(counter);
                    stored.extend_from_slice(value.to_string().as_bytes());
                    (key(&prefix(), COUNTER, &name(counter)), Some(stored))
                }
                Change::Position { epoch, seq, .. } => {
                    plan.position = Some((epoch.as_str(), *seq));
                    plan.positioned = true;
                    plan.wrote_value = true;
                    continue;
                }
                Change::Append { entry, .. } => {
                    plan.wrote_value = true;
                    if let Some(at) = &entry.event.position {
                        match &mut plan.position {
                            Some((epoch, seq)) if **epoch == *at.epoch => *seq = (*seq).max(at.seq),
                            _ => {
                                let seq = plan.position.as_ref().map_or(0, |(_, seq)| *seq);
                                plan.position = Some((&at.epoch, seq.max(at.seq)));
                            }
                        }
                    }
                    if keep_history {
                        let encoded = db.index.append_with(
                            &mut appends,
                            room,
                            entry.seq(),
                            entry.at_ms,
                            |value| serde_json::to_writer(value, entry),
                        );
                        encoded.map_err(|e| {
                            db.corrupt(room, &format!("an event that cannot be encoded: {e}"))
                        })?;
                    }
                    continue;
                }
            };
            plan.wrote_value |= value.is_some();
            keys.insert(k, value);
        }
        // The stored positions of the rooms whose position the batch moves (read into the
        // cache: they are what the store holds).
        for (room, plan) in &rooms {
            if plan.position.is_some() && !meta.contains_key(*room) {
                let stored = db.meta(room, &room_prefix(room))?;
                meta.insert((*room).into(), stored);
            }
        }
        // Nothing fails from here on but the commit (whose failure empties the cache).
        let log = db.index.place_all(appends);
        for (room, plan) in rooms {
            let Some((epoch, mut seq)) = plan.position else {
                if !plan.wrote_value {
                    // Only removals: mark the room as known all the same.
                    keys.insert(key(&room_prefix(room), EXISTS, &[]), Some(Vec::new()));
                }
                continue;
            };
            let room_meta = meta.get_mut(room).expect("read above");
            let newest = db.index.newest(room);
            if !plan.positioned {
                // Appends move the position, never back.
                seq = seq.max(room_meta.seq).max(newest.unwrap_or(0));
            }
            // The position key is rewritten when its epoch changes, when the room goes
            // idle (a `Change::Position`) or when no kept event carries the newest `seq`;
            // otherwise the newest kept event carries it (see `Db::load`).
            let same_epoch = room_meta.epoch.as_deref() == Some(epoch);
            let carried = newest == Some(seq) && same_epoch && !plan.positioned;
            if !carried {
                let value = position_value(epoch, seq);
                keys.insert(key(&room_prefix(room), POSITION, &[]), Some(value));
                room_meta.seq = seq;
            }
            if !same_epoch {
                room_meta.epoch = Some(epoch.to_owned());
            }
        }
        Ok((keys, log))
    }
}

/// Opens (or, for a new store, creates) a keyspace.
fn keyspace(dir: &Path, database: &Database, name: &str) -> Result<Keyspace, StoreError> {
    database
        .keyspace(name, KeyspaceCreateOptions::default)
        .map_err(|e| open_failed(dir, e))
}

/// Why fjall could not open the directory, said for whoever runs the server.
fn open_failed(dir: &Path, error: fjall::Error) -> StoreError {
    let shown = dir.display();
    match error {
        fjall::Error::Locked => StoreError::Unavailable(format!(
            "the store directory {shown} is locked by another process (or already open in \
             this one): only one server can use a store at a time"
        )),
        fjall::Error::Io(e) if e.kind() == ErrorKind::PermissionDenied => StoreError::Unavailable(
            format!("cannot open the store directory {shown}: permission denied ({e})"),
        ),
        fjall::Error::InvalidVersion(version) => StoreError::Corrupt(format!(
            "the store directory {shown} holds a fjall database of another on-disk version \
             ({version:?}; this build reads fjall 3); nothing in it was changed"
        )),
        error => match classify(&error) {
            Kind::Transient => {
                StoreError::Unavailable(format!("cannot open the store directory {shown}: {error}"))
            }
            Kind::Data => StoreError::Corrupt(format!(
                "the store directory {shown} cannot be read back: {error}"
            )),
        },
    }
}

/// Whether a failure may pass (IO) or is in the data.
enum Kind {
    Transient,
    Data,
}

fn classify(error: &fjall::Error) -> Kind {
    match error {
        fjall::Error::Io(_)
        | fjall::Error::Storage(fjall::LsmError::Io(_))
        | fjall::Error::Poisoned
        | fjall::Error::Locked => Kind::Transient,
        _ => Kind::Data,
    }
}

/// A failed read or write of an open store.
fn unavailable(dir: &Path, what: &str, error: fjall::Error) -> StoreError {
    let message = format!("the store in {}: {what} failed: {error}", dir.display());
    match classify(&error) {
        Kind::Transient => StoreError::Unavailable(message),
        Kind::Data => StoreError::Corrupt(message),
    }
}

/// A name as keys hold it: its length, then itself or (when long) its SHA-256.
fn name(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + s.len().min(INLINE_MAX + 1));
    out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
    if s.len() <= INLINE_MAX {
        out.extend_from_slice(s.as_bytes());
    } else {
        out.extend_from_slice(&Sha256::digest(s.as_bytes()));
    }
    out
}

/// The prefix of every key of a room.
fn room_prefix(room: &str) -> Vec<u8> {
    name(room)
}

fn key(prefix: &[u8], tag: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 1 + rest.len());
    k.extend_from_slice(prefix);
    k.push(tag);
    k.extend_from_slice(rest);
    k
}

/// A name as values hold it (in full): its length, then itself.
fn with_length(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + s.len());
    out.extend_from_slice(&(s.len() as u64).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    out
}

/// Reads a name written by [`with_length`]; returns it and what follows.
fn name_at(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let len = usize::try_from(u64_at(bytes, 0)?).ok()?;
    let rest = bytes.get(8..)?;
    let (s, rest) = (rest.get(..len)?, rest.get(len..)?);
    Some((text(s)?, rest))
}

fn position_value(epoch: &str, seq: u64) -> Vec<u8> {
    let mut value = seq.to_be_bytes().to_vec();
    value.extend_from_slice(epoch.as_bytes());
    value
}

/// The epoch and `seq` of a stored position.
fn position(value: &[u8]) -> Option<(&str, u64)> {
    Some((text(value.get(8..)?)?, u64_at(value, 0)?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

fn text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests;
