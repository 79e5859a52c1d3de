//! The contract every [`StateStore`] passes: run [`check`] with a constructor of fresh, empty
//! stores (keeping the history size given). A failure panics with what was expected.

use super::{Entry, HistoryQuery, StateStore};
use crate::engine::{Change, Position, RoomEvent, RoomSnapshot, Scope, Sequenced};
use rust_decimal::Decimal;
use serde_json::json;
use std::str::FromStr;

/// Makes a fresh, empty store keeping this many history events per room.
pub type NewStore<'a> = dyn FnMut(usize) -> Box<dyn StateStore> + 'a;

/// Runs every contract check, each on a fresh store.
pub fn check(new: &mut NewStore<'_>) {
    unknown_rooms_load_as_none(new(10).as_mut());
    committed_state_loads_back_exactly(new(10).as_mut());
    later_changes_in_a_batch_win(new(10).as_mut());
    rooms_are_independent(new(10).as_mut());
    the_position_survives(new(10).as_mut());
    history_reads_after_before_and_last(new(10).as_mut());
    history_is_bounded_oldest_first(new(3).as_mut());
    no_history_size_keeps_none(new(0).as_mut());
    history_reads_only_events_since(new(10).as_mut());
}

/// A counter's new value (exact decimal text).
pub(super) fn change_counter(room: &str, counter: &str, value: &str) -> Change {
    Change::Counter {
        room: room.into(),
        counter: counter.into(),
        value: Decimal::from_str(value).unwrap(),
    }
}

/// A user's vote (`None` retracts it).
pub(super) fn vote(room: &str, poll: &str, user: &str, answer: Option<&str>) -> Change {
    Change::Vote {
        room: room.into(),
        poll: poll.into(),
        user: user.into(),
        answer: answer.map(Into::into),
    }
}

/// A broadcast at `seq` of epoch `e1`, made at `seq` × 1000 ms, for the room (odd seqs)
/// or for members `a` and `b` (even ones).
fn event(seq: u64) -> Entry {
    Entry {
        event: Sequenced {
            position: Some(Position {
                epoch: "e1".into(),
                seq,
            }),
            event: RoomEvent::Broadcast {
                kind: "n".into(),
                data: json!({"seq": seq, "text": "exact \u{1F426} 0.1"}).into(),
            },
        },
        scope: if seq % 2 == 1 {
            Scope::Room
        } else {
            Scope::Members(vec!["a".into(), "b".into()])
        },
        at_ms: seq * 1000,
    }
}

fn append(room: &str, seq: u64) -> Change {
    Change::Append {
        room: room.into(),
        entry: event(seq),
    }
}

fn seqs(store: &mut dyn StateStore, room: &str, query: HistoryQuery) -> Vec<u64> {
    let history = store.history(room, query).expect("history reads");
    history
        .events
        .iter()
        .map(|e| {
            e.event
                .position
                .as_ref()
                .expect("kept events have positions")
                .seq
        })
        .collect()
}

fn unknown_rooms_load_as_none(store: &mut dyn StateStore) {
    assert_eq!(store.load("nowhere").unwrap(), None);
    let history = store.history("nowhere", HistoryQuery::last(10)).unwrap();
    assert!(history.events.is_empty() && history.oldest.is_none());
}

fn committed_state_loads_back_exactly(store: &mut dyn StateStore) {
    store
        .commit(&[
            Change::Suffix {
                room: "r".into(),
                suffix: 7,
            },
            Change::Config {
                room: "r".into(),
                config: "{\"a\":1}".into(),
            },
            vote("r", "p", "u1", Some("yes")),
            vote("r", "p", "u2", Some("no")),
            vote("r", "p", "u2", None),
            change_counter("r", "c", "2.61"),
            change_counter("r", "big", "79228162514264337593543950335"),
        ])
        .unwrap();
    let snapshot = store.load("r").unwrap().expect("stored");
    assert_eq!(snapshot.suffix, 7);
    assert_eq!(snapshot.config.as_deref(), Some("{\"a\":1}"));
    assert_eq!(snapshot.polls["p"].len(), 1, "a retracted vote is gone");
    assert_eq!(snapshot.polls["p"]["u1"], "yes");
    assert_eq!(snapshot.counters["c"].to_string(), "2.61", "exact decimals");
    assert_eq!(snapshot.counters["big"], Decimal::MAX);
}

fn later_changes_in_a_batch_win(store: &mut dyn StateStore) {
    store
        .commit(&[
            change_counter("r", "c", "1"),
            change_counter("r", "c", "2"),
            vote("r", "p", "u", Some("a")),
            vote("r", "p", "u", Some("b")),
        ])
        .unwrap();
    store.commit(&[change_counter("r", "c", "3")]).unwrap();
    let snapshot = store.load("r").unwrap().unwrap();
    assert_eq!(snapshot.counters["c"], Decimal::from(3));
    assert_eq!(snapshot.polls["p"]["u"], "b");
}

fn rooms_are_independent(store: &mut dyn StateStore) {
    store
        .commit(&[change_counter("a", "c", "1"), append("a", 1)])
        .unwrap();
    assert_eq!(store.load("b").unwrap(), None);
    assert!(seqs(store, "b", HistoryQuery::last(10)).is_empty());
    assert_eq!(seqs(store, "a", HistoryQuery::last(10)), vec![1]);
}

fn the_position_survives(store: &mut dyn StateStore) {
    let position = Change::Position {
        room: "r".into(),
        epoch: "ep".into(),
        seq: 41,
    };
    store.commit(&[position]).unwrap();
    let snapshot = store.load("r").unwrap().unwrap();
    assert_eq!((snapshot.epoch.as_deref(), snapshot.seq), (Some("ep"), 41));
    // An appended event moves the position with it.
    store.commit(&[append("r", 42)]).unwrap();
    let RoomSnapshot { epoch, seq, .. } = store.load("r").unwrap().unwrap();
    assert_eq!((epoch.as_deref(), seq), (Some("e1"), 42));
}

fn history_reads_after_before_and_last(store: &mut dyn StateStore) {
    let batch: Vec<Change> = (1..=6).map(|s| append("r", s)).collect();
    store.commit(&batch).unwrap();
    let stored = store.history("r", HistoryQuery::last(1)).unwrap();
    assert_eq!(
        stored.events,
        vec![event(6)],
        "events come back as they were"
    );
    assert_eq!(seqs(store, "r", HistoryQuery::last(4)), vec![3, 4, 5, 6]);
    assert_eq!(
        seqs(store, "r", HistoryQuery::last(100)),
        vec![1, 2, 3, 4, 5, 6]
    );
    let after = |after, limit| HistoryQuery {
        after: Some(after),
        before: None,
        limit,
        since_ms: None,
    };
    assert_eq!(seqs(store, "r", after(2, 100)), vec![3, 4, 5, 6]);
    assert_eq!(
        seqs(store, "r", after(2, 2)),
        vec![3, 4],
        "the oldest first"
    );
    assert!(seqs(store, "r", after(6, 10)).is_empty());
    let before = HistoryQuery {
        after: None,
        before: Some(5),
        limit: 2,
        since_ms: None,
    };
    assert_eq!(seqs(store, "r", before), vec![3, 4]);
    assert_eq!(
        store.history("r", HistoryQuery::last(0)).unwrap().oldest,
        Some(1)
    );
}

fn history_is_bounded_oldest_first(store: &mut dyn StateStore) {
    for seq in 1..=5 {
        store.commit(&[append("r", seq)]).unwrap();
    }
    assert_eq!(seqs(store, "r", HistoryQuery::last(10)), vec![3, 4, 5]);
    let history = store.history("r", HistoryQuery::last(10)).unwrap();
    assert_eq!(
        history.oldest,
        Some(3),
        "a resume from 1 is no longer complete"
    );
}

fn no_history_size_keeps_none(store: &mut dyn StateStore) {
    store.commit(&[append("r", 1)]).unwrap();
    assert!(seqs(store, "r", HistoryQuery::last(10)).is_empty());
    let snapshot = store.load("r").unwrap().unwrap();
    assert_eq!(snapshot.seq, 1, "the position is kept even without history");
}

fn history_reads_only_events_since(store: &mut dyn StateStore) {
    let batch: Vec<Change> = (1..=6).map(|s| append("r", s)).collect();
    store.commit(&batch).unwrap();
    let since = |query: HistoryQuery| HistoryQuery {
        since_ms: Some(3_000),
        ..query
    };
    assert_eq!(
        seqs(store, "r", since(HistoryQuery::last(10))),
        vec![3, 4, 5, 6]
    );
    let resume = HistoryQuery {
        after: Some(1),
        ..since(HistoryQuery::last(10))
    };
    assert_eq!(seqs(store, "r", resume), vec![3, 4, 5, 6]);
    let history = store.history("r", since(HistoryQuery::last(1))).unwrap();
    assert_eq!(history.oldest, Some(3), "older events do not count as kept");
}
