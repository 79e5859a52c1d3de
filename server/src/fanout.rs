//! The fan-out edge: the engine's dialect-free sends become frames here, each event encoded
//! once per dialect present among its recipients (never per recipient). No IO: the shell
//! hands the result to the cores that hold the recipients.

use crate::dialect::{Dialect, Wire};
use crate::engine::{RoomEvent, Send, Sequenced};
use crate::ids::ConnId;

/// Encodes `send`, adding one `(frame, recipients)` pair per dialect that has a message for
/// it to `into`.
pub fn encode(send: Send, into: &mut Vec<(Wire, Vec<ConnId>)>) {
    match send {
        Send::Event { event, to } => {
            for (codec, conns) in to.groups {
                if let Some(wire) = Dialect::of(codec).protocol().event(&event) {
                    into.push((wire, conns));
                }
            }
        }
        Send::Reply { to, codec, reply } => {
            if let Some(wire) = Dialect::of(codec).protocol().reply(&reply) {
                into.push((wire, vec![to]));
            }
        }
    }
}

/// An event in every dialect (`None` where a dialect has no message for it), for sends whose
/// recipients' dialects are not known where it is encoded: user- and client-targeted sends,
/// which every core resolves itself.
pub fn encode_all(event: RoomEvent) -> [Option<Wire>; Dialect::COUNT] {
    let event = Sequenced {
        position: None,
        event,
    };
    Dialect::ALL.map(|d| d.protocol().event(&event))
}

#[cfg(test)]
mod tests;
