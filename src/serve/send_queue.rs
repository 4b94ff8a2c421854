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

/// Pending output with its watermarks.
#[derive(Debug)]
pub(crate) struct SendQueue {
    pending: VecDeque<u8>,
    high_watermark: usize,
    low_watermark: usize,
}

impl SendQueue {
    /// An empty (and unallocated) queue.
    pub fn new(high_watermark: usize, low_watermark: usize) -> Self {
        SendQueue {
            pending: VecDeque::new(),
            high_watermark,
            low_watermark,
        }
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Nothing waiting.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// More than the high watermark waits: stop producing.
    pub fn is_over_high(&self) -> bool {
        self.pending.len() > self.high_watermark
    }

    /// Down to the low watermark: production may resume.
    pub fn is_at_low(&self) -> bool {
        self.pending.len() <= self.low_watermark
    }

    /// Writes `bytes` now if nothing waits before them, and queues what
    /// `sink` does not take; returns the bytes written now. An error means
    /// the peer is gone; nothing is queued then.
    pub fn send(&mut self, sink: &mut impl Write, bytes: &[u8]) -> io::Result<usize> {
        let mut sent = 0;
        if self.pending.is_empty() {
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
            self.pending.extend(&bytes[sent..]);
        }
        Ok(sent)
    }

    /// Writes what waits until it is gone or `sink` is full; returns the
    /// bytes written.
    pub fn flush(&mut self, sink: &mut impl Write) -> io::Result<usize> {
        let mut total = 0;
        while !self.pending.is_empty() {
            let (front, back) = self.pending.as_slices();
            match sink.write_vectored(&[IoSlice::new(front), IoSlice::new(back)]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.pending.drain(..n);
                    total += n;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
        if self.pending.is_empty() && self.pending.capacity() > KEEP_CAPACITY {
            self.pending = VecDeque::new();
        }
        Ok(total)
    }

    /// Drops what waits (the peer is gone, or owed nothing any more).
    pub fn clear(&mut self) {
        self.pending = VecDeque::new();
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
        let mut queue = SendQueue::new(4, 1);
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
        let mut queue = SendQueue::new(4, 1);
        queue.send(&mut peer, b"abcd").unwrap();
        assert!(!queue.is_over_high());
        queue.send(&mut peer, b"e").unwrap();
        assert!(queue.is_over_high());
        peer.room = 3;
        queue.flush(&mut peer).unwrap();
        assert!(!queue.is_at_low());
        peer.room = 1;
        queue.flush(&mut peer).unwrap();
        assert!(queue.is_at_low());
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
        let mut queue = SendQueue::new(4, 1);
        assert!(queue.send(&mut Gone, b"x").is_err());
        assert!(queue.is_empty());
    }
}
