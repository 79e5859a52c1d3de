//! How a core's proposals become calls of the sequencer script (`--engine redis`), with no
//! IO: which proposals share a call, and which wait for the call before them.
//!
//! A call's fixed costs — a script run and a publication in Redis, a push to every node
//! with members in the room, a wake-up of each of their writers — are paid once for all
//! the events it carries, so under load the calls should be large. Two rules make them so:
//! a run of one room's plain events goes as one call ([`calls`]), and while a room has
//! such a call with Redis, its next plain events wait for the answer and go together
//! ([`Held`]). A quiet room's event finds no call under way and goes at once.

use crate::engine::outbox::{Op, Proposal};
use ahash::AHashMap;

/// The most events one script call sequences: a backlog goes as several calls, so that no
/// call holds Redis (single-threaded) for long (~1.3 ms at Redis's ~2.5 µs per event in a
/// run). Larger calls mean fewer publications, so fewer and fuller writes on every node:
/// two nodes on one Redis delivered 5–25 % more at W2's saturation with 512 than with 128
/// (bench/RESULTS.md).
pub const MAX_RUN: usize = 512;

/// The most bytes of bodies one call carries (a run's events are cut into calls of at
/// most this much, in order, by `Sequencer::numbered`), so that a run of large
/// messages does not become one huge argument and publication.
pub const MAX_RUN_BYTES: usize = 1 << 20;

/// The script calls for a turn's proposals, in their order: each run of plain events of
/// one room (up to [`MAX_RUN`]) is one call, anything else a call of its own.
pub fn calls(proposals: impl IntoIterator<Item = Proposal>) -> Vec<Vec<Proposal>> {
    let mut calls: Vec<Vec<Proposal>> = Vec::new();
    let mut open = false; // whether the last call is a run that may take more
    for proposal in proposals {
        let event = matches!(proposal.op, Op::Event);
        match calls.last_mut() {
            Some(run) if open && event && run[0].room == proposal.room && run.len() < MAX_RUN => {
                run.push(proposal)
            }
            _ => calls.push(vec![proposal]),
        }
        open = event;
    }
    calls
}

/// The most runs one call of several rooms carries (`SEQUENCE_ROOMS`: three keys and four
/// arguments each): enough for a turn of many quiet rooms, small enough that one script
/// run stays short.
pub const MAX_ROOMS: usize = 64;

/// How a turn's runs of plain events, given as (events, bytes of bodies) each and in
/// order, go to Redis as calls of several rooms (standalone Redis): consecutive runs
/// together while the call stays within [`MAX_RUN`] events, [`MAX_RUN_BYTES`] bytes and
/// [`MAX_ROOMS`] runs. A run is never split here (it is already within those bounds) and
/// the order is kept, so each room's runs reach Redis in the order they were made.
pub fn pack(runs: &[(usize, usize)]) -> Vec<std::ops::Range<usize>> {
    let mut calls: Vec<std::ops::Range<usize>> = Vec::new();
    let (mut events, mut bytes) = (0, 0);
    for (i, &(n, size)) in runs.iter().enumerate() {
        match calls.last_mut() {
            Some(call)
                if call.len() < MAX_ROOMS
                    && events + n <= MAX_RUN
                    && bytes + size <= MAX_RUN_BYTES =>
            {
                call.end = i + 1;
                events += n;
                bytes += size;
            }
            _ => {
                calls.push(i..i + 1);
                (events, bytes) = (n, size);
            }
        }
    }
    calls
}

/// Per room, its calls of plain events under way and the plain events that came
/// meanwhile. Whatever it hands out to send is counted as under way until
/// [`Held::answered`]; anything else of a room (presence, a vote, a counter) takes what
/// is held first ([`Held::release`]), so a room's proposals reach Redis in the order they
/// were made.
#[derive(Default)]
pub struct Held {
    rooms: AHashMap<String, Room>,
}

#[derive(Default)]
struct Room {
    under_way: usize,
    waiting: Vec<Proposal>,
}

impl Held {
    /// A run of one room's plain events: back to be sent now when the room has no call
    /// under way, else kept until one is answered.
    pub fn offer(&mut self, mut run: Vec<Proposal>) -> Option<Vec<Proposal>> {
        match self.rooms.get_mut(&run[0].room) {
            Some(room) if room.under_way > 0 => {
                room.waiting.append(&mut run);
                return None;
            }
            Some(room) => room.under_way += 1,
            None => {
                let room = Room {
                    under_way: 1,
                    waiting: Vec::new(),
                };
                self.rooms.insert(run[0].room.clone(), room);
            }
        }
        Some(run)
    }

    /// What `room` holds, as calls to send now (before a proposal of another kind).
    pub fn release(&mut self, room: &str) -> Vec<Vec<Proposal>> {
        let Some(entry) = self.rooms.get_mut(room) else {
            return Vec::new();
        };
        let runs = calls(std::mem::take(&mut entry.waiting));
        entry.under_way += runs.len();
        runs
    }

    /// One of `room`'s calls was answered (or failed): once none is under way, what
    /// waited goes, as calls to send now; a room with nothing left is forgotten.
    pub fn answered(&mut self, room: &str) -> Vec<Vec<Proposal>> {
        let Some(entry) = self.rooms.get_mut(room) else {
            return Vec::new();
        };
        entry.under_way = entry.under_way.saturating_sub(1);
        if entry.under_way > 0 {
            return Vec::new();
        }
        if entry.waiting.is_empty() {
            self.rooms.remove(room);
            return Vec::new();
        }
        self.release(room)
    }

    /// `more` further calls of `room` went out with the one handed out (a run cut by
    /// size): each is answered on its own.
    pub fn also_under_way(&mut self, room: &str, more: usize) {
        if let Some(entry) = self.rooms.get_mut(room) {
            entry.under_way += more;
        }
    }

    /// Rooms with a call under way or events waiting.
    pub fn rooms(&self) -> usize {
        self.rooms.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{RoomEvent, Scope};

    fn proposal(room: &str, op: Op, i: usize) -> Proposal {
        Proposal {
            room: room.into(),
            event: RoomEvent::Broadcast {
                kind: "n".into(),
                data: serde_json::json!(i).into(),
            },
            scope: Scope::Room,
            at_ms: 0,
            op,
            replies: Vec::new(),
            outcomes: Vec::new(),
        }
    }

    fn events(room: &str, numbers: std::ops::Range<usize>) -> Vec<Proposal> {
        numbers.map(|i| proposal(room, Op::Event, i)).collect()
    }

    fn numbers(call: &[Proposal]) -> Vec<usize> {
        call.iter()
            .map(|p| match &p.event {
                RoomEvent::Broadcast { data, .. } => data.value().as_u64().unwrap() as usize,
                _ => unreachable!(),
            })
            .collect()
    }

    /// What each call holds: (room, the proposals' numbers).
    fn shape(calls: Vec<Vec<Proposal>>) -> Vec<(String, Vec<usize>)> {
        calls
            .into_iter()
            .map(|call| (call[0].room.clone(), numbers(&call)))
            .collect()
    }

    #[test]
    fn runs_of_one_rooms_plain_events_share_a_call_and_nothing_is_reordered() {
        let ops = [
            ("a", Op::Event),
            ("a", Op::Event),
            ("a", Op::Config("{}".into())),
            ("a", Op::Event),
            ("a", Op::Event),
            ("b", Op::Event),
            ("a", Op::Event),
        ];
        let proposals = ops
            .into_iter()
            .enumerate()
            .map(|(i, (room, op))| proposal(room, op, i));
        let expected = [
            ("a", vec![0, 1]),
            ("a", vec![2]),
            ("a", vec![3, 4]),
            ("b", vec![5]),
            ("a", vec![6]),
        ]
        .map(|(room, numbers)| (room.to_owned(), numbers));
        assert_eq!(shape(calls(proposals)), expected);
    }

    #[test]
    fn a_long_backlog_goes_as_several_calls_in_order() {
        let proposals = (0..MAX_RUN * 2 + 1).map(|i| proposal("a", Op::Event, i));
        let calls = shape(calls(proposals));
        let sizes: Vec<usize> = calls.iter().map(|(_, n)| n.len()).collect();
        assert_eq!(sizes, [MAX_RUN, MAX_RUN, 1]);
        let all: Vec<usize> = calls.into_iter().flat_map(|(_, n)| n).collect();
        assert_eq!(all, (0..MAX_RUN * 2 + 1).collect::<Vec<_>>());
    }

    #[test]
    fn runs_of_many_rooms_share_calls_within_every_bound_and_in_order() {
        assert!(pack(&[]).is_empty());
        assert_eq!(pack(&[(3, 100)]), vec![0..1usize]);
        // Small runs of many rooms: MAX_ROOMS to a call.
        let small = vec![(1, 300); MAX_ROOMS * 2 + 1];
        assert_eq!(
            pack(&small),
            [
                0..MAX_ROOMS,
                MAX_ROOMS..2 * MAX_ROOMS,
                2 * MAX_ROOMS..2 * MAX_ROOMS + 1
            ]
        );
        // Events: a call stops before MAX_RUN would be passed.
        let half = MAX_RUN / 2;
        assert_eq!(pack(&[(half, 1), (half, 1), (1, 1)]), [0..2, 2..3]);
        assert_eq!(pack(&[(half, 1), (half + 1, 1)]), [0..1, 1..2]);
        // Bytes likewise.
        let big = MAX_RUN_BYTES / 2;
        assert_eq!(pack(&[(1, big), (1, big), (1, 1)]), [0..2, 2..3]);
        assert_eq!(pack(&[(1, big + 1), (1, big)]), [0..1, 1..2]);
        // A run at a bound alone is a call of its own, and nothing is lost or reordered.
        let mixed = [(MAX_RUN, 10), (1, 10), (2, MAX_RUN_BYTES), (1, 1), (1, 1)];
        let calls = pack(&mixed);
        assert_eq!(calls, [0..1, 1..2, 2..3, 3..5]);
        for call in &calls {
            let events: usize = mixed[call.clone()].iter().map(|r| r.0).sum();
            let bytes: usize = mixed[call.clone()].iter().map(|r| r.1).sum();
            assert!(events <= MAX_RUN && bytes <= MAX_RUN_BYTES && call.len() <= MAX_ROOMS);
        }
    }

    #[test]
    fn a_quiet_rooms_events_go_at_once_and_are_forgotten_when_answered() {
        let mut held = Held::default();
        let run = held.offer(events("a", 0..2)).expect("nothing under way");
        assert_eq!(numbers(&run), [0, 1]);
        // Another room is not held up by this one.
        assert!(held.offer(events("b", 2..3)).is_some());
        assert!(held.answered("a").is_empty());
        assert!(held.answered("b").is_empty());
        assert_eq!(held.rooms(), 0);
        assert!(held.offer(events("a", 3..4)).is_some());
    }

    #[test]
    fn events_during_a_call_wait_and_go_together_in_order_when_it_is_answered() {
        let mut held = Held::default();
        assert!(held.offer(events("a", 0..1)).is_some());
        assert!(held.offer(events("a", 1..3)).is_none());
        assert!(held.offer(events("a", 3..4)).is_none());
        let next = held.answered("a");
        assert_eq!(shape(next), [("a".to_owned(), vec![1, 2, 3])]);
        // That call is under way now: more waits for it.
        assert!(held.offer(events("a", 4..5)).is_none());
        assert_eq!(shape(held.answered("a")), [("a".to_owned(), vec![4])]);
        assert!(held.answered("a").is_empty());
        assert_eq!(held.rooms(), 0);
    }

    #[test]
    fn a_large_wait_goes_as_several_calls_and_all_are_answered_before_more_goes() {
        let mut held = Held::default();
        assert!(held.offer(events("a", 0..1)).is_some());
        let waiting = MAX_RUN + 5;
        assert!(held.offer(events("a", 1..1 + waiting)).is_none());
        let next = held.answered("a");
        let sizes: Vec<usize> = next.iter().map(Vec::len).collect();
        assert_eq!(sizes, [MAX_RUN, 5]);
        assert!(held.offer(events("a", 200..201)).is_none());
        assert!(
            held.answered("a").is_empty(),
            "one of two calls is still under way"
        );
        assert_eq!(shape(held.answered("a")), [("a".to_owned(), vec![200])]);
    }

    #[test]
    fn another_kind_of_proposal_takes_what_waits_first() {
        let mut held = Held::default();
        assert!(held.offer(events("a", 0..1)).is_some());
        assert!(held.offer(events("a", 1..3)).is_none());
        // Sent before the other proposal, and counted as under way.
        assert_eq!(shape(held.release("a")), [("a".to_owned(), vec![1, 2])]);
        assert!(held.release("a").is_empty());
        assert!(
            held.release("b").is_empty(),
            "a room never seen holds nothing"
        );
        assert!(held.offer(events("a", 3..4)).is_none());
        assert!(
            held.answered("a").is_empty(),
            "the released call is under way"
        );
        assert_eq!(shape(held.answered("a")), [("a".to_owned(), vec![3])]);
    }

    #[test]
    fn a_run_cut_into_several_calls_waits_for_all_of_them() {
        let mut held = Held::default();
        assert!(held.offer(events("a", 0..3)).is_some());
        held.also_under_way("a", 2);
        assert!(held.offer(events("a", 3..4)).is_none());
        assert!(held.answered("a").is_empty());
        assert!(
            held.answered("a").is_empty(),
            "one of three still under way"
        );
        assert_eq!(shape(held.answered("a")), [("a".to_owned(), vec![3])]);
        held.also_under_way("b", 1);
        assert!(
            held.offer(events("b", 4..5)).is_some(),
            "b had nothing under way"
        );
    }

    #[test]
    fn an_answer_for_a_room_never_seen_changes_nothing() {
        let mut held = Held::default();
        assert!(held.answered("a").is_empty());
        assert_eq!(held.rooms(), 0);
    }
}
