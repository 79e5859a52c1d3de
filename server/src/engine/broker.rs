//! The broker seam: cross-node fanout. A room's owner core hands every event it fans out
//! locally to the broker too, so that members connected to other nodes receive it. With a
//! single node there is nobody to tell: [`LocalBroker`] does nothing. A Redis broker plugs in
//! here without the engine changing.

use bytes::Bytes;

pub trait Broker {
    /// An event was published in `room` on this node; `encoded` is its shared encoding.
    fn publish(&mut self, room: &str, encoded: &Bytes);
}

/// One node: nothing to forward.
#[derive(Default)]
pub struct LocalBroker;

impl Broker for LocalBroker {
    fn publish(&mut self, _room: &str, _encoded: &Bytes) {}
}
