//! A core's connections by name (public id or user), for admin calls and targeted sends.
//!
//! Keyed by the name's hash rather than the name: every connection already holds its names,
//! so storing them again here would cost each connection another ~70 bytes. A lookup gives
//! the candidates under the hash; the caller keeps those whose name matches (collisions are
//! possible, if rare).

use crate::ids::ConnId;
use ahash::{AHashMap, RandomState};
use smallvec::SmallVec;

#[derive(Default)]
pub struct NameIndex {
    hasher: RandomState,
    ids: AHashMap<u64, SmallVec<[ConnId; 2]>>,
}

impl NameIndex {
    fn key(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    pub fn add(&mut self, name: &str, id: ConnId) {
        let key = self.key(name);
        self.ids.entry(key).or_default().push(id);
    }

    pub fn remove(&mut self, name: &str, id: ConnId) {
        let key = self.key(name);
        if let Some(ids) = self.ids.get_mut(&key) {
            ids.retain(|c| *c != id);
            if ids.is_empty() {
                self.ids.remove(&key);
            }
        }
    }

    /// The connections that may be named `name`: those that are, and any whose name shares
    /// its hash.
    pub fn candidates(&self, name: &str) -> &[ConnId] {
        self.ids
            .get(&self.key(name))
            .map_or(&[], |ids| ids.as_slice())
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
        assert!(index.ids.len() == 1, "an emptied name leaves no entry");
    }
}
