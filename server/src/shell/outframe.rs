//! [`OutFrame`]: one frame in a connection's send queue.
//!
//! The queue holds one entry per frame per recipient, so its entry size is what a backlog
//! costs beyond the frames themselves (which recipients share): a slow reader 5,000 frames
//! behind holds 5,000 entries. An entry is therefore the size of one `Bytes` handle
//! (32 bytes), not a small vector of three (104), even though websockets.do's frames come
//! in three pieces: those are boxed, one allocation per such delivery next to the two its
//! header and tail already cost.

use bytes::Bytes;

/// A whole frame (every dialect but websockets.do, and the protocol's own frames), or the
/// three pieces of one finished per recipient — websockets.do's frame header, the body its
/// recipients share and the recipient's tail — always written together and in order.
pub(super) enum OutFrame {
    Whole(Bytes),
    Pieces(Box<[Bytes; 3]>),
}

impl OutFrame {
    /// A frame made of `head`, the shared `body` and `tail`.
    pub fn pieces(head: Bytes, body: Bytes, tail: Bytes) -> OutFrame {
        OutFrame::Pieces(Box::new([head, body, tail]))
    }

    /// The frame's size on the wire.
    pub fn len(&self) -> usize {
        match self {
            OutFrame::Whole(frame) => frame.len(),
            OutFrame::Pieces(pieces) => pieces.iter().map(Bytes::len).sum(),
        }
    }

    /// How many buffers (iovecs) the frame takes in a vectored write.
    pub fn buffers(&self) -> usize {
        match self {
            OutFrame::Whole(_) => 1,
            OutFrame::Pieces(_) => 3,
        }
    }

    /// Appends the frame's non-empty buffers to `batch`, in order.
    pub fn move_into(self, batch: &mut Vec<Bytes>) {
        match self {
            OutFrame::Whole(frame) => {
                if !frame.is_empty() {
                    batch.push(frame);
                }
            }
            OutFrame::Pieces(pieces) => {
                batch.extend(pieces.into_iter().filter(|piece| !piece.is_empty()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The point of the type: a queue entry costs what one `Bytes` handle does.
    #[test]
    fn an_entry_is_the_size_of_one_handle() {
        assert_eq!(
            std::mem::size_of::<OutFrame>(),
            std::mem::size_of::<Bytes>()
        );
    }

    #[test]
    fn pieces_go_out_in_order_and_empty_ones_take_no_buffer() {
        let frame = OutFrame::pieces(
            Bytes::from_static(b"\x81\x05"),
            Bytes::from_static(b"abc"),
            Bytes::new(),
        );
        assert_eq!((frame.len(), frame.buffers()), (5, 3));
        let mut batch = vec![Bytes::from_static(b"before")];
        frame.move_into(&mut batch);
        OutFrame::Whole(Bytes::new()).move_into(&mut batch);
        OutFrame::Whole(Bytes::from_static(b"after")).move_into(&mut batch);
        let parts: Vec<&[u8]> = batch.iter().map(|b| &b[..]).collect();
        assert_eq!(parts, [&b"before"[..], b"\x81\x05", b"abc", b"after"]);
    }
}
