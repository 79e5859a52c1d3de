//! Emits (websockets.do's `/emit`, targeted or not) and their acknowledgements.
//!
//! An emit that requires acks stays pending until every target acked or its deadline
//! passed; deadlines sit on a timer wheel advanced by [`super::Command::Tick`].

use crate::wheel::Wheel;
use ahash::{AHashMap, AHashSet};

/// Which members an emit goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// Every member of the room.
    All,
    /// This many distinct members, picked at random (`?clients=N`).
    Random(usize),
    /// The members with these ids (`?clients=id1,id2`).
    Ids(Vec<String>),
}

/// Identifies the waiting requester of an emit to the shell; opaque to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplyToken(pub u64);

/// How an emit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmitOutcome {
    /// Sent (no ack asked): the ids it went to.
    Sent {
        event_id: String,
        clients: Vec<String>,
    },
    /// Every target acked.
    Acked {
        event_id: String,
        acked: Vec<String>,
    },
    /// The deadline passed first.
    AckTimeout {
        event_id: String,
        acked: Vec<String>,
        missing: Vec<String>,
    },
    /// `Random(n)` with fewer members than `n`.
    NotEnoughClients { wanted: usize, connected: usize },
    /// `Random(0)`, or `Ids` of which none is in the room.
    NoClients,
    /// The room's state could not be loaded from the store.
    Unavailable,
}

#[derive(Debug)]
struct PendingAck {
    token: ReplyToken,
    waiting: AHashSet<String>,
    acked: Vec<String>,
}

/// Emits waiting for acks, by event id.
#[derive(Default, Debug)]
pub struct AckTracker {
    pending: AHashMap<String, PendingAck>,
    wheel: Option<Wheel<String>>,
}

/// Granularity of ack deadlines.
const ACK_TICK_MS: u64 = 50;

impl AckTracker {
    pub fn wait(
        &mut self,
        event_id: String,
        token: ReplyToken,
        targets: Vec<String>,
        deadline_ms: u64,
        now_ms: u64,
    ) {
        let wheel = self
            .wheel
            .get_or_insert_with(|| Wheel::new(ACK_TICK_MS, 256, now_ms));
        wheel.schedule(deadline_ms, event_id.clone());
        self.pending.insert(
            event_id,
            PendingAck {
                token,
                waiting: targets.into_iter().collect(),
                acked: Vec::new(),
            },
        );
    }

    /// Records `client`'s ack. Returns whether it was expected, and the finished emit's
    /// token and outcome when it was the last one.
    pub fn ack(
        &mut self,
        event_id: &str,
        client: &str,
    ) -> (bool, Option<(ReplyToken, EmitOutcome)>) {
        let Some(pending) = self.pending.get_mut(event_id) else {
            return (false, None);
        };
        if !pending.waiting.remove(client) {
            return (false, None);
        }
        pending.acked.push(client.to_owned());
        if !pending.waiting.is_empty() {
            return (true, None);
        }
        let done = self.pending.remove(event_id).expect("present above");
        (
            true,
            Some((
                done.token,
                EmitOutcome::Acked {
                    event_id: event_id.to_owned(),
                    acked: done.acked,
                },
            )),
        )
    }

    /// Emits whose deadline passed, with who acked and who did not.
    pub fn expire(&mut self, now_ms: u64, out: &mut Vec<(ReplyToken, EmitOutcome)>) {
        let Some(wheel) = self.wheel.as_mut() else {
            return;
        };
        let mut due = Vec::new();
        wheel.advance(now_ms, &mut due);
        for event_id in due {
            if let Some(p) = self.pending.remove(&event_id) {
                let mut missing: Vec<String> = p.waiting.into_iter().collect();
                missing.sort();
                out.push((
                    p.token,
                    EmitOutcome::AckTimeout {
                        event_id,
                        acked: p.acked,
                        missing,
                    },
                ));
            }
        }
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// `n` distinct indexes below `len`, chosen with a seeded generator (splitmix64), so the
/// engine stays deterministic: the shell passes the randomness in.
pub fn sample(len: usize, n: usize, mut seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..len).collect();
    let mut next = || {
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    // Partial Fisher–Yates: the first n positions end up a uniform sample.
    for i in 0..n.min(len) {
        let j = i + (next() % (len - i) as u64) as usize;
        idx.swap(i, j);
    }
    idx.truncate(n.min(len));
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_distinct_and_seeded() {
        let a = sample(10, 4, 7);
        assert_eq!(a.len(), 4);
        let set: AHashSet<_> = a.iter().collect();
        assert_eq!(set.len(), 4);
        assert_eq!(a, sample(10, 4, 7));
        assert_eq!(sample(3, 3, 1).len(), 3);
    }

    #[test]
    fn last_ack_finishes_and_deadline_names_the_missing() {
        let mut t = AckTracker::default();
        t.wait(
            "e1".into(),
            ReplyToken(1),
            vec!["a".into(), "b".into()],
            1000,
            0,
        );
        assert_eq!(t.ack("e1", "a"), (true, None));
        assert_eq!(t.ack("e1", "a"), (false, None), "a second ack is ignored");
        assert_eq!(t.ack("e1", "zz"), (false, None), "not a target");
        let (_, done) = t.ack("e1", "b");
        assert_eq!(
            done,
            Some((
                ReplyToken(1),
                EmitOutcome::Acked {
                    event_id: "e1".into(),
                    acked: vec!["a".into(), "b".into()]
                }
            ))
        );
        t.wait(
            "e2".into(),
            ReplyToken(2),
            vec!["a".into(), "c".into()],
            1000,
            0,
        );
        t.ack("e2", "c");
        let mut out = Vec::new();
        t.expire(999, &mut out);
        assert!(out.is_empty());
        t.expire(1000, &mut out);
        assert_eq!(
            out,
            vec![(
                ReplyToken(2),
                EmitOutcome::AckTimeout {
                    event_id: "e2".into(),
                    acked: vec!["c".into()],
                    missing: vec!["a".into()]
                }
            )]
        );
        assert!(t.is_empty());
    }
}
