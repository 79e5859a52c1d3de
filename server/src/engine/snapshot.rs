//! Everything durable about one room: what the store keeps while the room is idle (or the
//! process is down) and hands back when the room becomes live again.

use rookery_protocol::pact::Member;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

#[derive(Default, Debug, Clone, PartialEq)]
pub struct RoomSnapshot {
    /// The Pact suffix counter: the last suffix handed out.
    pub suffix: u64,
    /// With a shared sequencer: the last suffix of the block this node reserved (`None`:
    /// no bound, this node alone hands suffixes out).
    pub suffix_until: Option<u64>,
    pub config: Option<String>,
    /// poll id → (user id → answer).
    pub polls: BTreeMap<String, BTreeMap<String, String>>,
    pub counters: BTreeMap<String, Decimal>,
    /// Ephemeral polls' votes, the same way (only a shared sequencer keeps them: a node's
    /// own store never does, they go with their voters).
    pub ephemeral_polls: BTreeMap<String, BTreeMap<String, String>>,
    /// Members held by other nodes, by their key in the room's shared presence (only a
    /// shared sequencer knows them).
    pub members: BTreeMap<String, Member>,
    /// The room's stream position: its epoch and the last `seq` given out. `None` for a room
    /// the store knows nothing of, which starts a new epoch.
    pub epoch: Option<String>,
    pub seq: u64,
}
