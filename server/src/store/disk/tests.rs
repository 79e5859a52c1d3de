//! The disk store's own tests (the shared ones are in `store::contract`).

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
                    data: json!({ "seq": seq, "room": room }).into(),
                },
            },
            scope: Scope::Room,
            at_ms: 1_000 * seq,
        },
    }
}

/// Everything a store holds for these rooms: each room's snapshot and whole history.
fn everything(store: &mut dyn StateStore, rooms: &[&str]) -> Vec<(Option<RoomSnapshot>, History)> {
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
        // Appends after the first leave the position key alone: the newest kept event
        // carries it.
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
    // Reopened keeping no history, the dropped events' position stays, and every append
    // writes the position.
    drop(store);
    let mut store = DiskStore::open(dir.path(), 0).unwrap();
    assert_eq!(position(&mut store), ("ep".to_owned(), 9));
    store.commit(&[append("r", 10)]).unwrap();
    drop(store);
    let mut store = DiskStore::open(dir.path(), 3).unwrap();
    assert_eq!(position(&mut store), ("ep".to_owned(), 10));
    let kept = store.history("r", HistoryQuery::last(10)).unwrap();
    assert_eq!(kept.events, [], "the history was dropped");
    store.commit(&[append("r", 11)]).unwrap();
    drop(store);
    let mut store = DiskStore::open(dir.path(), 0).unwrap();
    assert_eq!(position(&mut store), ("ep".to_owned(), 11));
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

/// W3's shape: 100,000 chats over 1,000 rooms, in batches of 64 (a core's batch under
/// load), an fsync every 5 ms; prints µs per chat. `cargo test --release -p rookery --lib
/// store::disk::tests::measure_many_rooms -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement"]
fn measure_many_rooms() {
    const CHATS: usize = 100_000;
    const ROOMS: usize = 1_000;
    const BATCH: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let mut store = DiskStore::open(dir.path(), 100).unwrap();
    let chat = |n: usize| {
        let room = format!("w3-0-{}", n % ROOMS);
        let seq = (n / ROOMS + 1) as u64;
        Change::Append {
            room,
            entry: Entry {
                event: Sequenced {
                    position: Some(Position {
                        epoch: "a1b2c3d4".into(),
                        seq,
                    }),
                    event: RoomEvent::Chat {
                        message: json!(format!("T{n:016}:{}", "x".repeat(100))).into(),
                        user: rookery_protocol::pact::PublicUser {
                            suffix: 7,
                            properties: serde_json::Map::new(),
                        },
                    },
                },
                scope: Scope::Room,
                at_ms: 1_700_000_000_000 + n as u64,
            },
        }
    };
    let all: Vec<Change> = (0..CHATS).map(chat).collect();
    let started = Instant::now();
    let mut last_sync = Instant::now();
    for batch in all.chunks(BATCH) {
        store.commit(batch).unwrap();
        if last_sync.elapsed().as_millis() >= 5 {
            store.sync().unwrap();
            last_sync = Instant::now();
        }
    }
    store.sync().unwrap();
    let elapsed = started.elapsed();
    println!(
        "DiskStore, W3's shape: {CHATS} chats over {ROOMS} rooms in batches of {BATCH}: \
         {:.2?}, {:.2} µs per chat",
        elapsed,
        elapsed.as_secs_f64() * 1e6 / CHATS as f64
    );
    let history = store.history("w3-0-1", HistoryQuery::last(1000)).unwrap();
    assert_eq!(history.events.len(), 100);
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

/// The background fsync finds fjall's active journal by its file name (`<n>.jnl` in the
/// store's directory); if fjall ever names it otherwise, this fails rather than the store
/// quietly fsyncing nothing (the store thread would fall back to inline fsyncs).
#[test]
fn the_background_fsync_finds_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = DiskStore::open(dir.path(), 10).unwrap();
    store.commit(&[append("r", 1)]).unwrap();
    let journals: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|name| name.ends_with(".jnl"))
        .collect();
    assert!(!journals.is_empty(), "a journal file in the directory");
    let mut sync = store
        .background_sync()
        .expect("a disk store syncs in the background");
    sync().expect("the journal is fsynced");
    // Without a journal there is nothing it could fsync: it says so.
    let empty = tempfile::tempdir().unwrap();
    let error = super::sync_journal(empty.path()).unwrap_err();
    assert!(error.to_string().contains("no journal"), "{error}");
}

/// A payload that came as JSON text (from another node through Redis, or from this store)
/// is written as that text and read back equal, however it is later looked at.
#[test]
fn payloads_that_came_as_text_are_kept_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = DiskStore::open(dir.path(), 10).unwrap();
    let text = r#"{"text":"h\u00e9\nllo","n":[1,2.5,-3],"deep":{"x":null}}"#;
    let mut change = append("r", 1);
    let Change::Append { entry, .. } = &mut change else {
        unreachable!()
    };
    entry.event.event = RoomEvent::Broadcast {
        kind: "n".into(),
        data: serde_json::from_str(text).unwrap(),
    };
    let sent = entry.clone();
    store.commit(&[change]).unwrap();
    drop(store);
    let mut store = DiskStore::open(dir.path(), 10).unwrap();
    let kept = store.history("r", HistoryQuery::last(10)).unwrap();
    assert_eq!(kept.events, [sent]);
    let RoomEvent::Broadcast { data, .. } = &kept.events[0].event.event else {
        panic!("{kept:?}")
    };
    assert_eq!(data.value()["text"], "hé\nllo");
    assert_eq!(
        serde_json::to_string(data).unwrap(),
        text,
        "written out as it came"
    );
}
