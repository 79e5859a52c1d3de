//! The in-memory stream tungstenite runs over.
//!
//! tungstenite wants a blocking-style `Read + Write`; monoio does owned-buffer IO. Bytes read
//! from the socket are appended to `inbound`, and tungstenite reads them back (`WouldBlock`
//! when empty, so it yields instead of blocking). Whatever tungstenite writes (pongs, close
//! frames) collects in `outbound`, which the connection moves to its send queue whole, so
//! those frames are batched with everything else.

use std::collections::VecDeque;
use std::io::{self, Read, Write};

#[derive(Default, Debug)]
pub struct MemStream {
    pub inbound: VecDeque<u8>,
    pub outbound: Vec<u8>,
}

impl MemStream {
    /// Gives back memory a burst left behind, once everything has been consumed.
    pub fn compact(&mut self) {
        if self.inbound.is_empty() && self.inbound.capacity() > 4096 {
            self.inbound = VecDeque::new();
        }
        if self.outbound.is_empty() && self.outbound.capacity() > 4096 {
            self.outbound = Vec::new();
        }
    }
}

impl Read for MemStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.inbound.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.inbound.read(buf)
    }
}

impl Write for MemStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outbound.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_reads_would_block() {
        let mut s = MemStream::default();
        let mut buf = [0u8; 4];
        assert_eq!(
            s.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        s.inbound.extend(b"abcdef");
        assert_eq!(s.read(&mut buf).unwrap(), 4);
        assert_eq!(&buf, b"abcd");
    }
}
