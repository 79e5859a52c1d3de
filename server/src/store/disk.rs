//! [`DiskStore`]: rooms' durable state and history in a directory, on fjall (a pure-Rust
//! LSM tree), so they survive a restart of the process and, once synced, of the machine.
//!
//! # Layout
//!
//! The directory holds a file, [`MARKER_FILE`], naming the layout below ([`FORMAT`]), and a
//! fjall database with two keyspaces. `meta` holds one key, `format`, with the same value
//! (it travels with the data). `rooms` holds everything else, one key per fact, so that a
//! vote or a counter rewrites one small key and never a whole room:
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
//! R ++ 0x10                         → u64 BE count ++ u64 BE oldest seq ++ u64 BE newest seq
//!                                                 (history bounds)
//! R ++ 0x11 ++ u64 BE seq           → u64 BE at_ms ++ the entry as JSON
//! name(s)     = u32 BE byte length of s ++ s      (or ++ SHA-256(s) when s is long)
//! ```
//!
//! The length prefix makes every room's keys one contiguous range that no other room's keys
//! fall into, whatever bytes the names hold (`"a"` and `"ab"`, or names with `\0`). Names
//! longer than [`INLINE_MAX`] are hashed in keys, since fjall keys are at most 64 KiB (and
//! longer ones would corrupt its journal); keys only identify, values carry the full names
//! back. History is keyed by `seq`, which only grows within a room's epoch (a room gets a new
//! epoch only when the store knows nothing of it), so it reads back oldest first; the bounds
//! key lets an append trim the oldest events and a read start past their tombstones without
//! counting the range. `at_ms` leads the value so the age bound is checked without parsing.
//!
//! # Durability
//!
//! [`StateStore::commit`] writes its whole batch as one fjall write batch (atomic: after a
//! crash, all of it or none of it) and hands the journal to the OS before returning, so a
//! killed process loses nothing it committed (fjall's write batches do not do that by
//! default, whatever its `manual_journal_persist` option says: the batch asks for
//! `PersistMode::Buffer`, and a test kills a child process to hold it to that);
//! [`StateStore::sync`] fsyncs the journal, so nothing committed before it is lost to a
//! power cut either. When a write or fsync fails,
//! fjall refuses every later write (it "poisons" itself); the store then drops the database
//! and reopens it on its next call (journal recovery keeps a consistent prefix of batches),
//! so a caller that retries the same batch can succeed once the disk is back. Every change
//! is idempotent (it sets a value), so committing a batch again is harmless.
//!
//! # Opening
//!
//! [`DiskStore::open`] creates the directory if it is missing, and refuses, without changing
//! anything in it, a directory whose marker names another format or that holds anything but
//! a store (the marker is read before fjall opens anything, since fjall's open is not
//! read-only). fjall itself locks the directory (an exclusive `flock` on its `lock` file,
//! held while the database is open), so a second open, by another process or by this one,
//! fails with an error saying the directory is locked.

use super::{Entry, History, HistoryQuery, StateStore, StoreError};
use crate::engine::{Change, RoomSnapshot};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Names the key layout above: the contents of [`MARKER_FILE`], and of the `format` key of
/// the `meta` keyspace.
pub const FORMAT: &str = "rookery-store/1";

/// The file in a store's directory that names its [`FORMAT`].
pub const MARKER_FILE: &str = "rookery.format";

/// Longest name (room, poll, user, counter) kept as is in a key; longer ones are hashed.
pub const INLINE_MAX: usize = 1024;

const META: &str = "meta";
const ROOMS: &str = "rooms";
const FORMAT_KEY: &[u8] = b"format";

const EXISTS: u8 = 0x00;
const SUFFIX: u8 = 0x01;
const CONFIG: u8 = 0x02;
const POSITION: u8 = 0x03;
const VOTE: u8 = 0x04;
const COUNTER: u8 = 0x05;
/// Tags below this one are the room's snapshot (what `load` reads).
const BOUNDS: u8 = 0x10;
const HISTORY: u8 = 0x11;

/// A durable [`StateStore`] in a directory (see the module documentation).
pub struct DiskStore {
    dir: PathBuf,
    /// Most events kept per room (older ones are deleted as newer ones are appended).
    history_size: usize,
    /// `None` after a write failed and fjall refused further writes: reopened on next use.
    db: Option<Db>,
    /// Rooms' positions and history bounds as committed, so a commit need not read them
    /// back (emptied when the database is reopened, and when it grows past
    /// [`META_CACHE_MAX`] rooms).
    meta: MetaCache,
}

/// Rooms' [`RoomMeta`] by room prefix.
type MetaCache = ahash::AHashMap<Vec<u8>, RoomMeta>;

/// Most rooms whose [`RoomMeta`] a store keeps in memory (about 100 bytes each).
const META_CACHE_MAX: usize = 100_000;

/// What a commit needs to know of a room besides its changes: its stored position and
/// history bounds.
#[derive(Debug, Clone, Default)]
struct RoomMeta {
    /// The stored position's epoch (`None`: none stored) and `seq` — which the history's
    /// newest event may be ahead of, see [`Db::load`].
    epoch: Option<String>,
    seq: u64,
    bounds: Option<Bounds>,
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
        let db = Db::open(dir)?;
        Ok(DiskStore {
            dir: dir.to_path_buf(),
            history_size,
            db: Some(db),
            meta: ahash::AHashMap::new(),
        })
    }

    /// The open database, reopening it if a failed write closed it.
    fn db(&mut self) -> Result<&Db, StoreError> {
        let db = match self.db.take() {
            Some(db) => db,
            None => {
                tracing::warn!(dir = %self.dir.display(), "reopening the store after a failed write");
                Db::open(&self.dir)?
            }
        };
        Ok(self.db.insert(db))
    }

    /// Turns a failed write into an error and closes the database: fjall accepts no write
    /// after one failed (it cannot know what reached the disk), so the next call reopens it,
    /// recovering the journal.
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
        let history_size = self.history_size;
        if self.meta.len() > META_CACHE_MAX {
            self.meta.clear();
        }
        let meta = std::mem::take(&mut self.meta);
        let db = self.db()?;
        let (writes, known) = match Writes::plan(db, &meta, history_size, changes) {
            Ok(planned) => planned,
            Err(error) => {
                self.meta = meta;
                return Err(error);
            }
        };
        let mut batch = db.database.batch().durability(Some(PersistMode::Buffer));
        for (k, value) in writes {
            match value {
                Some(value) => batch.insert(&db.rooms, k, value),
                None => batch.remove(&db.rooms, k),
            }
        }
        match batch.commit() {
            Ok(()) => {
                self.meta = meta;
                self.meta.extend(known);
                Ok(())
            }
            // What the batch would have made known is not so: forget it all.
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
             {MARKER_FILE} says {:?}, this build reads {FORMAT:?}; nothing in it was changed",
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

/// An open database and its keyspace of rooms.
struct Db {
    dir: PathBuf,
    rooms: Keyspace,
    database: Database,
}

impl Db {
    /// Hands the (claimed) directory to fjall, and checks that the database inside is a
    /// store of this format too (or, for a new store, marks it so).
    fn open(dir: &Path) -> Result<Db, StoreError> {
        let database = Database::builder(dir)
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
                let foreign = names.iter().any(|n| *n != META && *n != ROOMS);
                let holds_rooms = database.keyspace_exists(ROOMS)
                    && !keyspace(dir, &database, ROOMS)?
                        .is_empty()
                        .map_err(|e| open_failed(dir, e))?;
                if foreign || holds_rooms {
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
        Ok(Db {
            dir: dir.to_path_buf(),
            rooms,
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
        // The bounds too: the newest kept event is the position when it is ahead of the
        // position key (appends move the position without rewriting that key).
        let end = key(&prefix, BOUNDS + 1, &[]);
        let mut snapshot = RoomSnapshot::default();
        let mut found = false;
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
                BOUNDS => {
                    // Sorted after the position: its epoch is already known.
                    if let Some(newest) = u64_at(&value, 16) {
                        snapshot.seq = snapshot.seq.max(newest);
                    }
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

    /// The room's stored position and history bounds.
    fn meta(&self, room: &str, prefix: &[u8]) -> Result<RoomMeta, StoreError> {
        let value = self
            .rooms
            .get(key(prefix, POSITION, &[]))
            .map_err(|e| self.failed("reading before a commit", e))?;
        let (epoch, seq) = match value {
            None => (None, 0),
            Some(value) => {
                let (epoch, seq) =
                    position(&value).ok_or_else(|| self.corrupt(room, "an unreadable position"))?;
                (Some(epoch.to_owned()), seq)
            }
        };
        Ok(RoomMeta {
            epoch,
            seq,
            bounds: self.bounds(room, prefix)?,
        })
    }

    /// The room's history bounds (`None`: it keeps none).
    fn bounds(&self, room: &str, prefix: &[u8]) -> Result<Option<Bounds>, StoreError> {
        let value = self
            .rooms
            .get(key(prefix, BOUNDS, &[]))
            .map_err(|e| self.failed("reading history bounds", e))?;
        let Some(value) = value else {
            return Ok(None);
        };
        let bounds = u64_at(&value, 0).zip(u64_at(&value, 8));
        let (count, oldest) =
            bounds.ok_or_else(|| self.corrupt(room, "unreadable history bounds"))?;
        Ok((count > 0).then_some(Bounds {
            count,
            oldest,
            newest: u64_at(&value, 16),
        }))
    }

    fn history(&self, room: &str, query: HistoryQuery) -> Result<History, StoreError> {
        let prefix = room_prefix(room);
        let Some(Bounds { oldest: first, .. }) = self.bounds(room, &prefix)? else {
            return Ok(History::default());
        };
        let fresh = |at_ms: u64| query.since_ms.is_none_or(|since| at_ms >= since);
        let end = key(&prefix, HISTORY + 1, &[]);
        // The oldest kept event (within the age bound), wherever the page is.
        let oldest = match query.since_ms {
            None => Some(first),
            Some(_) => {
                let mut oldest = None;
                for guard in self.rooms.range(history_key(&prefix, first)..end.clone()) {
                    let (k, value) = guard
                        .into_inner()
                        .map_err(|e| self.failed("reading history", e))?;
                    let at_ms = u64_at(&value, 0)
                        .ok_or_else(|| self.corrupt(room, "an unreadable history event"))?;
                    if fresh(at_ms) {
                        let seq = u64_at(&k, k.len().saturating_sub(8))
                            .ok_or_else(|| self.corrupt(room, "an unreadable history key"))?;
                        oldest = Some(seq);
                        break;
                    }
                }
                oldest
            }
        };
        let mut events = Vec::new();
        // The lowest `seq` the page may hold (`None`: past the end).
        let low = match query.after {
            None => Some(first),
            Some(after) => after.checked_add(1).map(|after| first.max(after)),
        };
        let empty =
            query.limit == 0 || low.is_none_or(|low| query.before.is_some_and(|b| b <= low));
        if let (false, Some(low)) = (empty, low) {
            let start = Bound::Included(history_key(&prefix, low));
            let stop = match query.before {
                Some(before) => Bound::Excluded(history_key(&prefix, before)),
                None => Bound::Excluded(end),
            };
            let range = self.rooms.range::<Vec<u8>, _>((start, stop));
            // Resuming reads forward from `after`; otherwise the newest come first.
            let page: Box<dyn Iterator<Item = fjall::Guard>> = match query.after {
                Some(_) => Box::new(range),
                None => Box::new(range.rev()),
            };
            for guard in page {
                let (_, value) = guard
                    .into_inner()
                    .map_err(|e| self.failed("reading history", e))?;
                let at_ms = u64_at(&value, 0)
                    .ok_or_else(|| self.corrupt(room, "an unreadable history event"))?;
                if !fresh(at_ms) {
                    continue;
                }
                let entry: Entry = serde_json::from_slice(&value[8..]).map_err(|e| {
                    self.corrupt(room, &format!("an unreadable history event: {e}"))
                })?;
                events.push(entry);
                if events.len() == query.limit {
                    break;
                }
            }
            if query.after.is_none() {
                events.reverse();
            }
        }
        Ok(History { events, oldest })
    }
}

/// What one commit writes: every key it touches once (`None`: removed), holding the value
/// the batch leaves it with. A fjall batch must not hold a key twice (its items share one
/// sequence number, so which one wins is undefined), and later changes read earlier ones
/// here, since the batch is not visible before it is committed.
struct Writes<'a> {
    db: &'a Db,
    keys: Keys,
}

/// Keys to write, each with its value (`None`: removed).
type Keys = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// What a committed batch makes known of its rooms: prefix and meta.
type Known = Vec<(Vec<u8>, RoomMeta)>;

/// A room's appended events: `seq` → stored value.
type Events = BTreeMap<u64, Vec<u8>>;

/// What one commit does to one room beyond single keys: its position and appended events.
struct RoomPlan {
    prefix: Vec<u8>,
    /// The position the batch leaves (`None`: untouched).
    position: Option<(String, u64)>,
    /// Whether anything was appended (the events are empty when no history is kept).
    appended: bool,
    /// Whether a `Change::Position` set the position (then its key is written).
    positioned: bool,
    /// Whether the batch writes any value for the room (else its existence key is).
    wrote_value: bool,
    events: Events,
}

impl Writes<'_> {
    /// The keys a batch of changes writes, and what the rooms' [`RoomMeta`] will be once
    /// it is committed. `meta` is what is known of rooms already; others are read.
    fn plan(
        db: &Db,
        meta: &MetaCache,
        history_size: usize,
        changes: &[Change],
    ) -> Result<(Keys, Known), StoreError> {
        let mut writes = Writes {
            db,
            keys: BTreeMap::new(),
        };
        // What the batch does to each room's position and history, written once per room
        // at the end (a batch interleaves rooms; each room's keys are built once).
        let mut rooms: ahash::AHashMap<&str, RoomPlan> = ahash::AHashMap::new();
        for change in changes {
            let room = change.room();
            let plan = rooms.entry(room).or_insert_with(|| RoomPlan {
                prefix: room_prefix(room),
                position: None,
                appended: false,
                positioned: false,
                wrote_value: false,
                events: BTreeMap::new(),
            });
            let prefix = &plan.prefix;
            let (k, value) = match change {
                Change::Suffix { suffix, .. } => {
                    (key(prefix, SUFFIX, &[]), Some(suffix.to_be_bytes().into()))
                }
                Change::Config { config, .. } => {
                    (key(prefix, CONFIG, &[]), Some(config.as_bytes().into()))
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
                    (key(prefix, VOTE, &names), value)
                }
                Change::Counter { counter, value, .. } => {
                    let mut stored = with_length(counter);
                    stored.extend_from_slice(value.to_string().as_bytes());
                    (key(prefix, COUNTER, &name(counter)), Some(stored))
                }
                Change::Position { epoch, seq, .. } => {
                    plan.position = Some((epoch.clone(), *seq));
                    plan.positioned = true;
                    plan.wrote_value = true;
                    continue;
                }
                Change::Append { entry, .. } => {
                    plan.appended = true;
                    plan.wrote_value = true;
                    if let Some(at) = &entry.event.position {
                        let epoch = match &plan.position {
                            Some((epoch, _)) if **epoch == *at.epoch => None,
                            _ => Some(at.epoch.to_string()),
                        };
                        let seq = plan.position.as_ref().map_or(0, |(_, seq)| *seq);
                        match epoch {
                            Some(epoch) => plan.position = Some((epoch, seq.max(at.seq))),
                            None => {
                                let position = plan.position.as_mut().expect("matched");
                                position.1 = position.1.max(at.seq);
                            }
                        }
                    }
                    if history_size > 0 {
                        let mut value = entry.at_ms.to_be_bytes().to_vec();
                        serde_json::to_writer(&mut value, entry).map_err(|e| {
                            db.corrupt(room, &format!("an event that cannot be encoded: {e}"))
                        })?;
                        plan.events.insert(entry.seq(), value);
                    }
                    continue;
                }
            };
            plan.wrote_value |= value.is_some();
            writes.set(k, value);
        }
        let mut known = Vec::new();
        for (room, plan) in rooms {
            if !plan.wrote_value {
                // Only removals: mark the room as known all the same.
                writes.set(key(&plan.prefix, EXISTS, &[]), Some(Vec::new()));
            }
            if plan.position.is_none() && !plan.appended {
                continue;
            }
            let mut room_meta = match meta.get(&plan.prefix) {
                Some(cached) => cached.clone(),
                None => db.meta(room, &plan.prefix)?,
            };
            // The stored position, as `Db::load` reads it.
            let stored_seq = room_meta
                .seq
                .max(room_meta.bounds.and_then(|b| b.newest).unwrap_or(0));
            if plan.appended {
                room_meta.bounds = writes.trim(
                    room,
                    &plan.prefix,
                    plan.events,
                    history_size as u64,
                    room_meta.bounds,
                )?;
            }
            if let Some((epoch, mut seq)) = plan.position {
                if !plan.positioned {
                    // Appends move the position, never back.
                    seq = seq.max(stored_seq);
                }
                // The position key is rewritten when its epoch changes, when the room goes
                // idle (a `Change::Position`) or when no history carries the newest `seq`;
                // otherwise the history's bounds carry it (see `Db::load`).
                let carried = room_meta.bounds.and_then(|b| b.newest) == Some(seq)
                    && room_meta.epoch.as_deref() == Some(epoch.as_str())
                    && !plan.positioned;
                if !carried {
                    let value = position_value(&epoch, seq);
                    writes.set(key(&plan.prefix, POSITION, &[]), Some(value));
                    room_meta.seq = seq;
                }
                room_meta.epoch = Some(epoch);
            }
            known.push((plan.prefix, room_meta));
        }
        Ok((writes.keys, known))
    }

    fn set(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.keys.insert(key, value);
    }

    /// Adds the batch's appended events to the room's history, keeping the newest
    /// `history_size` of what it held and what is added: the oldest are deleted (or, if
    /// among the new ones, never written).
    ///
    /// The common case reads one key: a room whose kept events are exactly
    /// `oldest..=newest` (as appends leave them) and a batch of newer events trims by
    /// arithmetic. Anything else (an event appended again, a gap) walks the kept events.
    fn trim(
        &mut self,
        room: &str,
        prefix: &[u8],
        events: Events,
        history_size: u64,
        bounds: Option<Bounds>,
    ) -> Result<Option<Bounds>, StoreError> {
        let dense = match &bounds {
            None => true,
            Some(b) => b.newest.is_some_and(|newest| {
                newest.checked_sub(b.oldest) == Some(b.count - 1)
                    && events.keys().next().is_none_or(|first| *first > newest)
            }),
        };
        if !dense {
            return self.trim_walking(room, prefix, events, history_size, bounds);
        }
        let (count, oldest, newest) =
            bounds.map_or((0, 0, 0), |b| (b.count, b.oldest, b.newest.expect("dense")));
        let total = count + events.len() as u64;
        let excess = total.saturating_sub(history_size);
        let dropped_old = excess.min(count);
        for seq in oldest..oldest + dropped_old {
            self.set(history_key(prefix, seq), None);
        }
        let mut new = events
            .into_iter()
            .skip((excess - dropped_old) as usize)
            .peekable();
        let kept = total - excess;
        let first_new = new.peek().map(|(seq, _)| *seq);
        let oldest = if dropped_old < count {
            oldest + dropped_old
        } else {
            first_new.unwrap_or(0)
        };
        let mut newest = newest;
        for (seq, value) in new {
            newest = newest.max(seq);
            self.set(history_key(prefix, seq), Some(value));
        }
        Ok(self.set_bounds(prefix, kept, oldest, newest))
    }

    /// [`Self::trim`] for a history that is not one dense run: walks the kept events.
    fn trim_walking(
        &mut self,
        room: &str,
        prefix: &[u8],
        events: Events,
        history_size: u64,
        bounds: Option<Bounds>,
    ) -> Result<Option<Bounds>, StoreError> {
        let db = self.db;
        let (count, first) = bounds.map_or((0, 0), |b| (b.count, b.oldest));
        let mut added = 0;
        for seq in events.keys() {
            let replaces = count > 0
                && db
                    .rooms
                    .contains_key(history_key(prefix, *seq))
                    .map_err(|e| db.failed("reading before a commit", e))?;
            added += u64::from(!replaces);
        }
        let total = count + added;
        let mut excess = total.saturating_sub(history_size);
        let kept = total - excess;
        let end = key(prefix, HISTORY + 1, &[]);
        // The newest kept event before this batch (the last key of the range).
        let mut newest = match count > 0 {
            false => 0,
            true => match db
                .rooms
                .range(history_key(prefix, first)..end.clone())
                .next_back()
            {
                None => 0,
                Some(guard) => {
                    let k = guard
                        .key()
                        .map_err(|e| db.failed("reading before a commit", e))?;
                    u64_at(&k, k.len().saturating_sub(8))
                        .ok_or_else(|| db.corrupt(room, "an unreadable history key"))?
                }
            },
        };
        // Walk the kept events (from the oldest) and the new ones together, oldest first,
        // dropping `excess` of them.
        let mut kept_seqs = (count > 0)
            .then(|| db.rooms.range(history_key(prefix, first)..end))
            .into_iter()
            .flatten();
        let mut next_kept = || -> Result<Option<u64>, StoreError> {
            match kept_seqs.next() {
                None => Ok(None),
                Some(guard) => {
                    let k = guard
                        .key()
                        .map_err(|e| db.failed("reading before a commit", e))?;
                    let seq = u64_at(&k, k.len().saturating_sub(8));
                    Ok(Some(seq.ok_or_else(|| {
                        db.corrupt(room, "an unreadable history key")
                    })?))
                }
            }
        };
        let mut old = next_kept()?;
        let mut new = events.into_iter().peekable();
        while excess > 0 {
            let young = new.peek().map(|(seq, _)| *seq);
            match (old, young) {
                (None, None) => break,
                (Some(o), y) if y.is_none_or(|y| o <= y) => {
                    self.set(history_key(prefix, o), None);
                    if y == Some(o) {
                        new.next();
                    }
                    old = next_kept()?;
                }
                _ => {
                    new.next();
                }
            }
            excess -= 1;
        }
        let young = new.peek().map(|(seq, _)| *seq);
        let oldest = match (old, young) {
            (Some(o), Some(y)) => o.min(y),
            (o, y) => o.or(y).unwrap_or(0),
        };
        for (seq, value) in new {
            newest = newest.max(seq);
            self.set(history_key(prefix, seq), Some(value));
        }
        Ok(self.set_bounds(prefix, kept, oldest, newest))
    }

    /// Writes the room's history bounds (removes them when nothing is kept), and returns
    /// them.
    fn set_bounds(&mut self, prefix: &[u8], kept: u64, oldest: u64, newest: u64) -> Option<Bounds> {
        let bounds_key = key(prefix, BOUNDS, &[]);
        if kept == 0 {
            self.set(bounds_key, None);
            return None;
        }
        let mut value = kept.to_be_bytes().to_vec();
        value.extend_from_slice(&oldest.to_be_bytes());
        value.extend_from_slice(&newest.to_be_bytes());
        self.set(bounds_key, Some(value));
        Some(Bounds {
            count: kept,
            oldest,
            newest: Some(newest),
        })
    }
}

/// A room's history bounds: how many events it keeps, the oldest one's `seq` and the newest
/// one's (`None` in bounds written without it: then the kept events are walked).
#[derive(Debug, Clone, Copy)]
struct Bounds {
    count: u64,
    oldest: u64,
    newest: Option<u64>,
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

fn history_key(prefix: &[u8], seq: u64) -> Vec<u8> {
    key(prefix, HISTORY, &seq.to_be_bytes())
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
mod tests {
    use super::*;
    use crate::engine::{Position, RoomEvent, Scope, Sequenced};
    use serde_json::json;
    use std::io::{BufRead, BufReader};
    use std::time::Instant;

    use crate::store::contract::{change_counter as counter, vote};

    fn append(room: &str, seq: u64) -> Change {
        Change::Append {
            room: room.into(),
            entry: Entry {
                event: Sequenced {
                    position: Some(Position {
                        epoch: "ep".into(),
                        seq,
                    }),
                    event: RoomEvent::Broadcast {
                        kind: "n".into(),
                        data: json!({ "seq": seq, "room": room }),
                    },
                },
                scope: Scope::Room,
                at_ms: 1_000 * seq,
            },
        }
    }

    /// Everything a store holds for these rooms: each room's snapshot and whole history.
    fn everything(
        store: &mut dyn StateStore,
        rooms: &[&str],
    ) -> Vec<(Option<RoomSnapshot>, History)> {
        rooms
            .iter()
            .map(|room| {
                let snapshot = store.load(room).unwrap();
                let history = store.history(room, HistoryQuery::last(usize::MAX)).unwrap();
                (snapshot, history)
            })
            .collect()
    }

    /// Every file under `dir` (path and contents), to show that a refused open changed
    /// nothing.
    fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut found = BTreeMap::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(at) = pending.pop() {
            for entry in std::fs::read_dir(&at).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    found.insert(path.clone(), Vec::new());
                    pending.push(path);
                } else {
                    found.insert(path.clone(), std::fs::read(&path).unwrap());
                }
            }
        }
        found
    }

    fn long(c: char) -> String {
        std::iter::repeat_n(c, 70_000).collect()
    }

    #[test]
    fn the_newest_event_carries_the_position_across_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let position = |store: &mut DiskStore| {
            let snapshot = store.load("r").unwrap().unwrap();
            (snapshot.epoch.unwrap(), snapshot.seq)
        };
        let mut store = DiskStore::open(dir.path(), 3).unwrap();
        store.commit(&[append("r", 1)]).unwrap();
        for seq in 2..=8 {
            // Appends after the first leave the position key alone: the bounds carry it.
            store.commit(&[append("r", seq)]).unwrap();
            assert_eq!(position(&mut store), ("ep".to_owned(), seq));
        }
        drop(store);
        let mut store = DiskStore::open(dir.path(), 3).unwrap();
        assert_eq!(position(&mut store), ("ep".to_owned(), 8));
        // A room going idle writes its position as it is.
        let idle = Change::Position {
            room: "r".into(),
            epoch: "ep".into(),
            seq: 8,
        };
        store.commit(&[idle, append("r", 9)]).unwrap();
        assert_eq!(position(&mut store), ("ep".to_owned(), 9));
        // Without history, every append writes the position.
        drop(store);
        let mut store = DiskStore::open(dir.path(), 0).unwrap();
        store.commit(&[append("r", 10)]).unwrap();
        drop(store);
        let mut store = DiskStore::open(dir.path(), 0).unwrap();
        assert_eq!(position(&mut store), ("ep".to_owned(), 10));
    }

    #[test]
    fn gaps_and_appends_again_keep_the_bounds_exact() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = DiskStore::open(dir.path(), 3).unwrap();
        let seqs = |store: &mut DiskStore| {
            let page = store.history("r", HistoryQuery::last(10)).unwrap();
            let seqs: Vec<u64> = page.events.iter().map(Entry::seq).collect();
            (seqs, page.oldest)
        };
        store.commit(&[append("r", 1), append("r", 2)]).unwrap();
        store.commit(&[append("r", 3)]).unwrap();
        assert_eq!(seqs(&mut store), (vec![1, 2, 3], Some(1)));
        // A gap: trimmed by arithmetic still, but the run is no longer dense.
        store.commit(&[append("r", 7)]).unwrap();
        assert_eq!(seqs(&mut store), (vec![2, 3, 7], Some(2)));
        // So the next trims walk the kept events.
        store.commit(&[append("r", 8)]).unwrap();
        assert_eq!(seqs(&mut store), (vec![3, 7, 8], Some(3)));
        store.commit(&[append("r", 7)]).unwrap();
        assert_eq!(
            seqs(&mut store),
            (vec![3, 7, 8], Some(3)),
            "7 again replaces"
        );
        store.commit(&[append("r", 9), append("r", 10)]).unwrap();
        assert_eq!(seqs(&mut store), (vec![8, 9, 10], Some(8)));
        // Dense again: one batch larger than the history.
        store
            .commit(&(11..=16).map(|s| append("r", s)).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(seqs(&mut store), (vec![14, 15, 16], Some(14)));
        drop(store);
        let mut store = DiskStore::open(dir.path(), 3).unwrap();
        assert_eq!(seqs(&mut store), (vec![14, 15, 16], Some(14)));
    }

    #[test]
    fn passes_the_contract() {
        let mut dirs = Vec::new();
        crate::store::contract::check(&mut |history_size| {
            let dir = tempfile::tempdir().unwrap();
            let store = DiskStore::open(dir.path(), history_size).unwrap();
            dirs.push(dir);
            Box::new(store)
        });
    }

    #[test]
    fn everything_survives_close_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let long_room = long('r');
        let rooms = [
            "a",
            "ab",
            "",
            "a\0",
            "\0",
            "a\0b",
            long_room.as_str(),
            "empty",
        ];
        let mut changes = vec![
            Change::Suffix {
                room: "a".into(),
                suffix: 9,
            },
            Change::Config {
                room: "a".into(),
                config: "{\"x\":\"\\u0000\"}".into(),
            },
            vote("a", "p", "u1", Some("yes")),
            vote("a", "p", "u2", Some("no")),
            vote("a", "p\0", "u1", Some("other poll")),
            vote("a", &long('p'), &long('u'), Some("long names")),
            counter("a", "c", "0.10"),
            counter("a", &long('c'), "-79228162514264337593543950335"),
            Change::Position {
                room: "ab".into(),
                epoch: "e0".into(),
                seq: 4,
            },
            counter("", "c", "1"),
            counter("a\0", "c", "2"),
            counter("\0", "c", "3"),
            counter("a\0b", "c", "4"),
            counter(&long_room, "c", "5"),
            vote("empty", "p", "u", None),
        ];
        changes.extend((1..=7).map(|seq| append("ab", seq)));
        changes.extend((1..=2).map(|seq| append(&long_room, seq)));
        let before = {
            let mut store = DiskStore::open(dir.path(), 5).unwrap();
            store.commit(&changes).unwrap();
            store.commit(&[vote("a", "p", "u2", None)]).unwrap();
            everything(&mut store, &rooms)
        };
        let mut store = DiskStore::open(dir.path(), 5).unwrap();
        let after = everything(&mut store, &rooms);
        assert_eq!(before, after);
        let a = after[0].0.clone().unwrap();
        assert_eq!(a.suffix, 9);
        assert_eq!(a.polls["p"].len(), 1);
        assert_eq!(a.polls["p\0"]["u1"], "other poll");
        assert_eq!(a.polls[&long('p')][&long('u')], "long names");
        assert_eq!(a.counters["c"].to_string(), "0.10", "the scale is kept");
        assert_eq!(a.counters[&long('c')], Decimal::MIN);
        let ab = after[1].clone();
        let seqs: Vec<u64> = ab.1.events.iter().map(Entry::seq).collect();
        assert_eq!(seqs, [3, 4, 5, 6, 7], "five kept, across the reopen");
        assert_eq!(ab.1.oldest, Some(3));
        assert_eq!(ab.0.unwrap().seq, 7);
        for (i, n) in [(2, "1"), (3, "2"), (4, "3"), (5, "4"), (6, "5")] {
            let snapshot = after[i].0.clone().unwrap();
            assert_eq!(snapshot.counters.len(), 1, "{:?}", rooms[i]);
            assert_eq!(snapshot.counters["c"].to_string(), n);
        }
        assert_eq!(after[6].1.events.len(), 2);
        assert_eq!(
            after[7].0,
            Some(RoomSnapshot::default()),
            "a touched room exists"
        );
        assert_eq!(store.load("b").unwrap(), None);
        // A smaller history size trims on the next append.
        drop(store);
        let mut store = DiskStore::open(dir.path(), 2).unwrap();
        store.commit(&[append("ab", 8)]).unwrap();
        let history = store.history("ab", HistoryQuery::last(10)).unwrap();
        let seqs: Vec<u64> = history.events.iter().map(Entry::seq).collect();
        assert_eq!((seqs, history.oldest), (vec![7, 8], Some(7)));
    }

    #[test]
    fn a_store_closed_by_a_failed_write_reopens_on_next_use() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = DiskStore::open(dir.path(), 10).unwrap();
        store.commit(&[counter("r", "c", "1")]).unwrap();
        // What a failed write does: the database is dropped (releasing its lock).
        let _ = store.write_failed(
            "a test",
            fjall::Error::Io(std::io::Error::other("simulated")),
        );
        assert!(store.db.is_none());
        store
            .commit(&[counter("r", "c", "2"), append("r", 1)])
            .unwrap();
        store.sync().unwrap();
        let snapshot = store.load("r").unwrap().unwrap();
        assert_eq!(snapshot.counters["c"], Decimal::from(2));
        assert_eq!(
            store
                .history("r", HistoryQuery::last(5))
                .unwrap()
                .events
                .len(),
            1
        );
    }

    #[test]
    fn runs_under_the_store_thread() {
        use crate::store::worker::{Durability, StoreHandle};
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path(), 10).unwrap();
        let handle = StoreHandle::spawn(Box::new(store), Durability::EveryMs(5)).unwrap();
        let runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().build();
        runtime.unwrap().block_on(async {
            let commits: Vec<_> = (1..=20)
                .map(|seq| handle.commit(vec![append("r", seq)]))
                .collect();
            let page = handle.history("r".into(), HistoryQuery::last(100));
            for commit in commits {
                commit.wait().await.unwrap();
            }
            assert_eq!(page.wait().await.unwrap().events.len(), 10);
            handle.sync().wait().await.unwrap();
        });
        drop(handle);
        // The thread ends on its own once the last handle is gone, closing the store.
        let started = Instant::now();
        let mut store = loop {
            match DiskStore::open(dir.path(), 10) {
                Ok(store) => break store,
                Err(e) if started.elapsed().as_secs() < 10 => eprintln!("not yet: {e}"),
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(store.load("r").unwrap().unwrap().seq, 20);
    }

    #[test]
    fn empty_and_odd_pages_read_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = DiskStore::open(dir.path(), 10).unwrap();
        let batch: Vec<Change> = (1..=6).map(|seq| append("r", seq)).collect();
        store.commit(&batch).unwrap();
        let page = |after, before| HistoryQuery {
            after,
            before,
            limit: 10,
            since_ms: None,
        };
        for (after, before) in [
            (Some(5), Some(3)),
            (Some(3), Some(4)),
            (None, Some(0)),
            (None, Some(1)),
            (Some(u64::MAX), None),
            (Some(u64::MAX - 1), Some(u64::MAX)),
        ] {
            let history = store.history("r", page(after, before)).unwrap();
            assert!(history.events.is_empty(), "{after:?} {before:?}");
            assert_eq!(history.oldest, Some(1));
        }
        let all = store.history("r", page(Some(0), Some(u64::MAX))).unwrap();
        assert_eq!(all.events.len(), 6);
    }

    #[test]
    fn a_committed_batch_survives_a_killed_process() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "store::disk::tests::child_commits_and_waits"])
            .args(["--ignored", "--nocapture", "--test-threads=1"])
            .env("ROOKERY_STORE_CHILD_DIR", dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let said = lines.find(|line| line.as_deref().is_ok_and(|l| l.contains("CHILD-COMMITTED")));
        assert!(said.is_some(), "the child committed");
        let error = DiskStore::open(dir.path(), 10)
            .err()
            .expect("the child holds it");
        assert!(
            matches!(&error, StoreError::Unavailable(m) if m.contains("locked by another process")),
            "{error}"
        );
        child.kill().unwrap(); // SIGKILL: no destructor runs, nothing is flushed
        child.wait().unwrap();
        let mut store = DiskStore::open(dir.path(), 10).unwrap();
        let snapshot = store.load("r").unwrap().expect("committed before the kill");
        assert_eq!(snapshot.counters["c"], Decimal::from(1000));
        let history = store.history("r", HistoryQuery::last(100)).unwrap();
        assert_eq!(history.events.len(), 10);
    }

    /// Run by [`a_committed_batch_survives_a_killed_process`] in a child process: commits
    /// (without a sync), says so, and waits to be killed.
    #[test]
    #[ignore = "a helper run by another test"]
    fn child_commits_and_waits() {
        let Some(dir) = std::env::var_os("ROOKERY_STORE_CHILD_DIR") else {
            return;
        };
        let mut store = DiskStore::open(Path::new(&dir), 10).unwrap();
        for n in 1..=1000 {
            store.commit(&[counter("r", "c", &n.to_string())]).unwrap();
        }
        let appends: Vec<Change> = (1..=10).map(|seq| append("r", seq)).collect();
        store.commit(&appends).unwrap();
        println!("\nCHILD-COMMITTED");
        std::thread::sleep(std::time::Duration::from_secs(60));
    }

    #[test]
    fn a_store_of_another_format_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = DiskStore::open(dir.path(), 10).unwrap();
            store.commit(&[counter("r", "c", "1")]).unwrap();
        }
        std::fs::write(dir.path().join(MARKER_FILE), "rookery-store/999\n").unwrap();
        let before = files(dir.path());
        let error = DiskStore::open(dir.path(), 10).err().expect("refused");
        let message = error.to_string();
        assert!(matches!(error, StoreError::Corrupt(_)), "{message}");
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("rookery-store/999"), "{message}");
        assert_eq!(files(dir.path()), before, "nothing changed");
    }

    #[test]
    fn a_directory_of_other_things_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        std::fs::create_dir(dir.path().join("photos")).unwrap();
        let before = files(dir.path());
        let error = DiskStore::open(dir.path(), 10).err().expect("refused");
        let message = error.to_string();
        assert!(matches!(error, StoreError::Corrupt(_)), "{message}");
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("notes.txt"), "{message}");
        assert_eq!(files(dir.path()), before, "nothing changed");
    }

    #[test]
    fn another_fjall_database_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        {
            let database = Database::builder(dir.path()).open().unwrap();
            let other = database
                .keyspace("other", KeyspaceCreateOptions::default)
                .unwrap();
            other.insert("k", "v").unwrap();
            database.persist(PersistMode::SyncAll).unwrap();
        }
        let before = files(dir.path());
        let error = DiskStore::open(dir.path(), 10).err().expect("refused");
        let message = error.to_string();
        assert!(matches!(error, StoreError::Corrupt(_)), "{message}");
        assert!(message.contains("not a Rookery store"), "{message}");
        assert!(message.contains(MARKER_FILE), "{message}");
        assert_eq!(files(dir.path()), before, "nothing changed");
    }

    #[test]
    fn a_new_directory_is_made_and_marked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep").join("store");
        drop(DiskStore::open(&path, 10).unwrap());
        let marker = std::fs::read_to_string(path.join(MARKER_FILE)).unwrap();
        assert_eq!(marker, format!("{FORMAT}\n"));
        let database = Database::builder(&path).open().unwrap();
        let meta = database
            .keyspace(META, KeyspaceCreateOptions::default)
            .unwrap();
        assert_eq!(
            meta.get(FORMAT_KEY).unwrap().as_deref(),
            Some(FORMAT.as_bytes())
        );
    }

    #[test]
    fn a_second_open_of_one_directory_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let first = DiskStore::open(dir.path(), 10).unwrap();
        let started = Instant::now();
        let error = DiskStore::open(dir.path(), 10).err().expect("locked");
        let message = error.to_string();
        assert!(message.contains("locked by another process"), "{message}");
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(started.elapsed().as_secs() < 5);
        drop(first);
        DiskStore::open(dir.path(), 10).expect("free once the first is closed");
    }

    #[test]
    fn an_unreadable_path_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        // A regular file where the directory should be.
        let file = dir.path().join("a-file");
        std::fs::write(&file, "not a store").unwrap();
        let error = DiskStore::open(&file, 10).err().expect("refused");
        let message = error.to_string();
        assert!(message.contains(&file.display().to_string()), "{message}");
        assert!(message.contains("not a directory"), "{message}");
        assert_eq!(std::fs::read(&file).unwrap(), b"not a store");
        // A directory this user may not read (root may read anything: skipped).
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let locked = dir.path().join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        let error = DiskStore::open(&locked, 10).err().expect("refused");
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
        let message = error.to_string();
        assert!(matches!(error, StoreError::Unavailable(_)), "{message}");
        assert!(message.contains(&locked.display().to_string()), "{message}");
        assert!(message.contains("ermission denied"), "{message}");
    }

    /// Writes 100,000 changes in batches of 256, one commit each and an fsync every 5 ms,
    /// and prints the rate. `cargo test --release -p rookery --lib store::disk -- --ignored
    /// --nocapture`.
    #[test]
    #[ignore = "a measurement"]
    fn measure_writes_per_second() {
        const CHANGES: usize = 100_000;
        const BATCH: usize = 256;
        let dir = tempfile::tempdir().unwrap();
        let mut store = DiskStore::open(dir.path(), 100).unwrap();
        // A mix like a busy server's: mostly appended events, then counters and votes,
        // over 64 rooms.
        let change = |n: usize| {
            let room = format!("room-{}", n % 64);
            match n % 8 {
                0..=4 => append(&room, (n / 64 + 1) as u64),
                5 | 6 => counter(&room, &format!("c{}", n % 5), &format!("{n}.25")),
                _ => vote(&room, "p", &format!("user-{}", n % 1000), Some("yes")),
            }
        };
        let all: Vec<Change> = (0..CHANGES).map(change).collect();
        let started = Instant::now();
        let mut last_sync = Instant::now();
        let mut syncs = 0;
        for batch in all.chunks(BATCH) {
            store.commit(batch).unwrap();
            if last_sync.elapsed().as_millis() >= 5 {
                store.sync().unwrap();
                last_sync = Instant::now();
                syncs += 1;
            }
        }
        store.sync().unwrap();
        let elapsed = started.elapsed();
        println!(
            "DiskStore: {CHANGES} changes in batches of {BATCH}, {} syncs: {:.2?}, {:.0} writes/s",
            syncs + 1,
            elapsed,
            CHANGES as f64 / elapsed.as_secs_f64()
        );
        let history = store.history("room-1", HistoryQuery::last(1000)).unwrap();
        assert_eq!(history.events.len(), 100);
    }
}
