//! Identities that cross cores: connection ids and the room → owner-core hash.

/// A connection's identity, unique for the life of the process: the core that holds the
/// socket in the top 16 bits, a per-core sequence number below. Never reused, so a stale id
/// (a connection that closed while a frame for it was in flight) simply finds nothing.
#[derive(
    Copy, Clone, Eq, PartialEq, Hash, Debug, Ord, PartialOrd, serde::Serialize, serde::Deserialize,
)]
pub struct ConnId(pub u64);

impl ConnId {
    pub fn new(core: usize, seq: u64) -> Self {
        ConnId(((core as u64) << 48) | (seq & 0xFFFF_FFFF_FFFF))
    }

    /// The core whose runtime owns this connection's socket.
    pub fn shard(self) -> usize {
        (self.0 >> 48) as usize
    }
}

/// `CORE.SEQ`: how logs name a connection.
impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.shard(), self.0 & 0xFFFF_FFFF_FFFF)
    }
}

/// Fixed seeds, so every core (and every node running the same build) agrees on room owners.
const SEEDS: [u64; 4] = [
    0x5eed_f00d_0000_0001,
    0x5eed_f00d_0000_0002,
    0x5eed_f00d_0000_0003,
    0x5eed_f00d_0000_0004,
];

/// The core that owns room `name`'s authoritative state.
pub fn owner_core(name: &str, cores: usize) -> usize {
    let state = ahash::RandomState::with_seeds(SEEDS[0], SEEDS[1], SEEDS[2], SEEDS[3]);
    (state.hash_one(name) % cores.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_id_round_trips_its_core() {
        let id = ConnId::new(3, 42);
        assert_eq!(id.shard(), 3);
        assert_eq!(id.to_string(), "3.42");
        assert_ne!(ConnId::new(2, 42), id);
    }

    #[test]
    fn owner_core_is_stable_and_spreads_rooms() {
        assert_eq!(owner_core("lobby", 4), owner_core("lobby", 4));
        let mut seen = [0usize; 4];
        for i in 0..400 {
            seen[owner_core(&format!("room-{i}"), 4)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "uneven spread: {seen:?}");
        assert_eq!(owner_core("anything", 1), 0);
    }
}

/// URL-safe alphabet of nanoid.
const ALPHABET: &[u8; 64] = b"ModuleSymbhasOwnPr-0123456789ABCDEFGHNRVfgctiUvz_KqYTJkLxpZXIjQW";

/// A new event id: `evt_` and 8 random characters, as websockets.do makes them.
pub fn new_event_id() -> String {
    format!("evt_{}", random_token(8))
}

/// `len` random URL-safe characters (nanoid's alphabet), from the OS random source.
pub fn random_token(len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for byte in uuid::Uuid::new_v4().as_bytes() {
            if out.len() == len {
                break;
            }
            out.push(ALPHABET[(byte & 63) as usize] as char);
        }
    }
    out
}

/// A random u64 (seeds for the engine's sampling).
pub fn random_u64() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

#[cfg(test)]
mod token_tests {
    use super::*;

    #[test]
    fn tokens_have_the_asked_length_and_alphabet() {
        let t = random_token(21);
        assert_eq!(t.len(), 21);
        assert!(t.bytes().all(|b| ALPHABET.contains(&b)));
        assert_ne!(random_token(8), random_token(8));
    }
}
