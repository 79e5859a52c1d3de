//! One poll: at most one vote per user; answers with no votes leave the stats.

use ahash::AHashMap;
use std::collections::BTreeMap;

#[derive(Default, Debug, Clone)]
pub struct Poll {
    /// user id → the answer that user currently holds.
    votes: AHashMap<String, String>,
    /// answer → number of votes; only answers with at least one vote are present.
    tally: BTreeMap<String, u64>,
}

impl Poll {
    /// Casts (or moves) `user`'s vote. Returns false when nothing changed.
    pub fn vote(&mut self, user: &str, answer: &str) -> bool {
        match self.votes.get(user) {
            Some(previous) if previous == answer => return false,
            Some(previous) => {
                let previous = previous.clone();
                self.decrement(&previous);
            }
            None => {}
        }
        self.votes.insert(user.to_owned(), answer.to_owned());
        *self.tally.entry(answer.to_owned()).or_insert(0) += 1;
        true
    }

    /// Removes `user`'s vote. Returns false when the user had none.
    pub fn retract(&mut self, user: &str) -> bool {
        match self.votes.remove(user) {
            Some(answer) => {
                self.decrement(&answer);
                true
            }
            None => false,
        }
    }

    fn decrement(&mut self, answer: &str) {
        if let Some(n) = self.tally.get_mut(answer) {
            *n -= 1;
            if *n == 0 {
                self.tally.remove(answer);
            }
        }
    }

    /// A poll known only by its tally (a node's copy of a poll whose votes the sequencer
    /// keeps, `--engine redis`).
    pub fn tallied(tally: BTreeMap<String, u64>) -> Poll {
        Poll {
            votes: AHashMap::new(),
            tally,
        }
    }

    pub fn stats(&self) -> &BTreeMap<String, u64> {
        &self.tally
    }

    pub fn is_empty(&self) -> bool {
        self.votes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_vote_moves_the_old_one_and_empty_answers_vanish() {
        let mut p = Poll::default();
        assert!(p.vote("u1", "yes"));
        assert!(p.vote("u2", "yes"));
        assert!(!p.vote("u1", "yes"));
        assert!(p.vote("u1", "no"));
        assert_eq!(p.stats().get("yes"), Some(&1));
        assert_eq!(p.stats().get("no"), Some(&1));
        assert!(p.vote("u2", "no"));
        assert_eq!(p.stats().get("yes"), None);
        assert_eq!(p.stats().get("no"), Some(&2));
    }

    #[test]
    fn retract_removes_only_that_users_vote() {
        let mut p = Poll::default();
        p.vote("u1", "a");
        p.vote("u2", "a");
        assert!(p.retract("u1"));
        assert!(!p.retract("u1"));
        assert_eq!(p.stats().get("a"), Some(&1));
        assert!(p.retract("u2"));
        assert!(p.stats().is_empty());
        assert!(p.is_empty());
    }
}
