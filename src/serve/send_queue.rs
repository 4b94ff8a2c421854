//! Bytes owed to a peer that it has not taken yet, and the watermarks that
//! bound them.
//!
//! The notes offer `sendall`, which blocks until every byte is sent. A
//! non-blocking server has no `sendall`: a `write` may take part of the
//! bytes or none. So bytes are written at once, and whatever the peer does
//! not take waits here until it signals `WRITABLE`. The owner asks for
//! `WRITABLE` exactly while this queue is not empty, so an idle peer never
//! wakes the loop.
//!
//! The queue also holds the backpressure rule: above the high watermark the
//! owner stops producing (a connection stops reading, so a client that sends
//! but never reads holds at most about that much memory), and it may start
//! again once the queue is down to the low watermark.
//!
//! The queue writes to any `Write`: a socket here, and anything else that
//! takes bytes without blocking.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

/// An empty queue larger than this is given back, so a peer that once had a
/// burst of output does not keep the memory while idle.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Pending output: 8 bytes while nothing waits, which is almost always
/// (every connection has one). The watermarks are the server's, the same
/// for every connection, so they are passed in rather than kept here.
#[derive(Debug, Default)]
pub(crate) struct SendQueue {
    /// Allocated only once some output had to wait. (Boxed on purpose: a
    /// `VecDeque` is 32 bytes even when empty, a box 8, and almost every
    /// connection's queue is empty.)
    #[allow(clippy::box_collection)]
    pending: Option<Box<VecDeque<u8>>>,
}

impl SendQueue {
    /// An empty (and unallocated) queue.
    pub fn new() -> Self {
        SendQueue { pending: None }
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.pending.as_ref().map_or(0, |pending| pending.len())
    }

    /// Nothing waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// More than the high watermark waits: stop producing.
    pub fn is_over_high(&self, high_watermark: usize) -> bool {
        self.len() > high_watermark
    }

    /// Down to the low watermark: production may resume.
    pub fn is_at_low(&self, low_watermark: usize) -> bool {
        self.len() <= low_watermark
    }

    /// Writes `bytes` now if nothing waits before them, and queues what
    /// `sink` does not take; returns the bytes written now. An error means
    /// the peer is gone; nothing is queued then.
    pub fn send(&mut self, sink: &mut impl Write, bytes: &[u8]) -> io::Result<usize> {
        let mut sent = 0;
        if self.is_empty() {
            while sent < bytes.len() {
                match sink.write(&bytes[sent..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => sent += n,
                    // Would block: the peer's buffer is full; queue the rest.
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => return Err(err),
                }
            }
        }
        if sent < bytes.len() {
            self.pending
                .get_or_insert_with(Box::default)
                .extend(&bytes[sent..]);
        }
        Ok(sent)
    }

    /// Writes what waits until it is gone or `sink` is full; returns the
    /// bytes written.
    pub fn flush(&mut self, sink: &mut impl Write) -> io::Result<usize> {
        let Some(pending) = &mut self.pending else {
            return Ok(0);
        };
        let mut total = 0;
        while !pending.is_empty() {
            let (front, back) = pending.as_slices();
            match sink.write_vectored(&[IoSlice::new(front), IoSlice::new(back)]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    pending.drain(..n);
                    total += n;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
        if pending.is_empty() && pending.capacity() > KEEP_CAPACITY {
            self.pending = None;
        }
        Ok(total)
    }

    /// Drops what waits (the peer is gone, or owed nothing any more).
    pub fn clear(&mut self) {
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that takes at most `room` bytes, then would block.
    struct Peer {
        taken: Vec<u8>,
        room: usize,
    }

    impl Write for Peer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn what_the_peer_refuses_waits_in_order() {
        let mut peer = Peer {
            taken: Vec::new(),
            room: 3,
        };
        let mut queue = SendQueue::new();
        assert_eq!(queue.send(&mut peer, b"hello").unwrap(), 3);
        assert_eq!(queue.len(), 2);
        // Queued bytes go first: a later send never jumps ahead of them.
        peer.room = 100;
        assert_eq!(queue.send(&mut peer, b" world").unwrap(), 0);
        assert_eq!(queue.flush(&mut peer).unwrap(), 8);
        assert_eq!(peer.taken, b"hello world");
        assert!(queue.is_empty());
    }

    #[test]
    fn watermarks_say_when_to_pause_and_resume() {
        let mut peer = Peer {
            taken: Vec::new(),
            room: 0,
        };
        let mut queue = SendQueue::new();
        queue.send(&mut peer, b"abcd").unwrap();
        assert!(!queue.is_over_high(4));
        queue.send(&mut peer, b"e").unwrap();
        assert!(queue.is_over_high(4));
        peer.room = 3;
        queue.flush(&mut peer).unwrap();
        assert!(!queue.is_at_low(1));
        peer.room = 1;
        queue.flush(&mut peer).unwrap();
        assert!(queue.is_at_low(1));
    }

    #[test]
    fn an_error_queues_nothing() {
        struct Gone;
        impl Write for Gone {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut queue = SendQueue::new();
        assert!(queue.send(&mut Gone, b"x").is_err());
        assert!(queue.is_empty());
    }
}
