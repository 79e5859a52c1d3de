//! A core's connections by name (public id or user), for admin calls and targeted sends.
//!
//! Keyed by the name's hash rather than the name: every connection already holds its names,
//! so storing them again here would cost each connection another ~70 bytes. A lookup gives
//! the candidates under the hash; the caller keeps those whose name matches (collisions are
//! possible, if rare). A hash most names have alone maps to one id in place; only a hash
//! several connections share gets a list.

use crate::ids::ConnId;
use ahash::{AHashMap, RandomState};

#[derive(Default)]
pub struct NameIndex {
    hasher: RandomState,
    /// Hashes one connection has: nearly all of them (16 bytes an entry).
    one: AHashMap<u64, ConnId>,
    /// Hashes several connections have (a user's several tabs, a collision), in the order
    /// they were added.
    more: AHashMap<u64, Vec<ConnId>>,
}

impl NameIndex {
    fn key(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    pub fn add(&mut self, name: &str, id: ConnId) {
        let key = self.key(name);
        if let Some(ids) = self.more.get_mut(&key) {
            ids.push(id);
        } else if let Some(first) = self.one.remove(&key) {
            self.more.insert(key, vec![first, id]);
        } else {
            self.one.insert(key, id);
        }
    }

    pub fn remove(&mut self, name: &str, id: ConnId) {
        let key = self.key(name);
        if let Some(ids) = self.more.get_mut(&key) {
            ids.retain(|c| *c != id);
            if ids.len() <= 1 {
                let last = ids.first().copied();
                self.more.remove(&key);
                if let Some(last) = last {
                    self.one.insert(key, last);
                }
            }
        } else if self.one.get(&key) == Some(&id) {
            self.one.remove(&key);
        }
    }

    /// The connections that may be named `name`: those that are, and any whose name shares
    /// its hash.
    pub fn candidates(&self, name: &str) -> &[ConnId] {
        let key = self.key(name);
        match self.more.get(&key) {
            Some(ids) => ids,
            None => self.one.get(&key).map_or(&[], std::slice::from_ref),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_names_are_found_and_removed_ones_are_not() {
        let mut index = NameIndex::default();
        index.add("alice", ConnId(1));
        index.add("alice", ConnId(2));
        index.add("bob", ConnId(3));
        assert_eq!(index.candidates("alice"), &[ConnId(1), ConnId(2)]);
        assert_eq!(index.candidates("bob"), &[ConnId(3)]);
        assert!(index.candidates("carol").is_empty());
        index.remove("alice", ConnId(1));
        assert_eq!(index.candidates("alice"), &[ConnId(2)]);
        index.remove("alice", ConnId(2));
        assert!(index.candidates("alice").is_empty());
        assert!(
            index.one.len() == 1 && index.more.is_empty(),
            "an emptied name leaves no entry"
        );
    }

    #[test]
    fn a_name_shared_and_unshared_keeps_its_order_and_its_last_holder() {
        let mut index = NameIndex::default();
        for n in 1..=3 {
            index.add("tabs", ConnId(n));
        }
        assert_eq!(index.candidates("tabs"), &[ConnId(1), ConnId(2), ConnId(3)]);
        index.remove("tabs", ConnId(2));
        assert_eq!(index.candidates("tabs"), &[ConnId(1), ConnId(3)]);
        index.remove("tabs", ConnId(9));
        assert_eq!(
            index.candidates("tabs"),
            &[ConnId(1), ConnId(3)],
            "not there"
        );
        index.remove("tabs", ConnId(1));
        assert_eq!(index.candidates("tabs"), &[ConnId(3)]);
        assert!(
            index.more.is_empty(),
            "one holder again: back among the single ones"
        );
        index.remove("tabs", ConnId(1));
        assert_eq!(
            index.candidates("tabs"),
            &[ConnId(3)],
            "removed twice: no effect"
        );
        index.add("tabs", ConnId(4));
        assert_eq!(index.candidates("tabs"), &[ConnId(3), ConnId(4)]);
    }
}
