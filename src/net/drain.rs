//! Reading a non-blocking socket until the kernel says `WouldBlock`.
//!
//! mio's readiness is edge-triggered: "readable" is reported once per change,
//! so a handler must read until `WouldBlock`, or remember that it stopped
//! early; bytes left behind otherwise wait for an event that never comes.
//! `serve`, `send` and `bench` all read that way, each with its own bound
//! per turn (so one busy peer cannot starve the others) and its own use for
//! the bytes. The loop itself, and the meaning of each way it can end, is
//! written once here: `WouldBlock` and `Interrupted` are control flow, `0`
//! is the end of the stream, and a spent budget means "come back, no event
//! will remind you".
//!
//! Who uses this loop, and who keeps its own, on purpose:
//!
//! - `send` (`send::session`) reads through [`read_until_would_block`].
//! - `serve` (`Connection::on_readable`) keeps its own loop: it frames and
//!   replies on the same socket inside each read, may stop at a short TCP
//!   read (a rule this helper does not know), and must leave the state
//!   machine between reads (held back, closing).
//! - `bench` (`bench::conn`) keeps its own too: its reads are interleaved
//!   with its send schedule and its latency clock.
//!
//! Each of those follows the same rules, written above.

use std::io::{self, Read};
use std::ops::ControlFlow;

/// How a [`read_until_would_block`] loop ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Drained<B> {
    /// The kernel said `WouldBlock`: nothing more to read until the next edge.
    Empty,
    /// The peer closed its side: `read` returned 0.
    Eof,
    /// The byte budget ran out first: more may be waiting, and no new
    /// readiness event will say so, so the caller must come back by itself.
    Budget,
    /// The caller's `each` stopped the loop, with its reason.
    Stopped(B),
}

/// One successful read, as handed to the caller.
#[derive(Debug)]
pub(crate) struct Chunk<'a> {
    /// The bytes just read (never empty).
    pub bytes: &'a [u8],
    /// The read did not fill the space offered. On TCP this proves the
    /// receive queue empty (a new arrival raises a new edge); on other
    /// sockets it does not: a Unix socket stops at a message boundary that
    /// carries ancillary data. A caller that relies on it says why.
    #[allow(
        dead_code,
        reason = "for serve's TCP short-read rule; send reads to WouldBlock"
    )]
    pub short: bool,
}

/// Reads `source` into `buf` until `WouldBlock`, the end of the stream, or
/// `budget` bytes, handing each chunk to `each`, which may stop the loop
/// early with `ControlFlow::Break`. Errors other than `WouldBlock` and
/// `Interrupted` end the loop as `Err`; the bytes read before them have
/// already been handed over.
pub(crate) fn read_until_would_block<R, B>(
    source: &mut R,
    buf: &mut [u8],
    mut budget: usize,
    mut each: impl FnMut(Chunk<'_>) -> ControlFlow<B>,
) -> io::Result<Drained<B>>
where
    R: Read + ?Sized,
{
    loop {
        if budget == 0 {
            return Ok(Drained::Budget);
        }
        let want = buf.len().min(budget);
        let n = match source.read(&mut buf[..want]) {
            Ok(0) => return Ok(Drained::Eof),
            Ok(n) => n,
            // Would block "errors" are the OS's way of saying that the
            // socket is not actually ready to perform this I/O operation.
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(Drained::Empty),
            // A signal interrupted the call before any byte moved: try again.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        budget -= n;
        let chunk = Chunk {
            bytes: &buf[..n],
            short: n < want,
        };
        if let ControlFlow::Break(reason) = each(chunk) {
            return Ok(Drained::Stopped(reason));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that replays a script of read results.
    struct Script(Vec<io::Result<Vec<u8>>>);

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            match self.0.remove(0) {
                Ok(bytes) => {
                    let n = bytes.len().min(buf.len());
                    buf[..n].copy_from_slice(&bytes[..n]);
                    Ok(n)
                }
                Err(err) => Err(err),
            }
        }
    }

    fn collect(script: Script, budget: usize) -> (io::Result<Drained<()>>, Vec<u8>) {
        let mut source = script;
        let mut buf = [0; 4];
        let mut seen = Vec::new();
        let end = read_until_would_block(&mut source, &mut buf, budget, |chunk| {
            seen.extend_from_slice(chunk.bytes);
            ControlFlow::Continue(())
        });
        (end, seen)
    }

    #[test]
    fn would_block_ends_the_loop_after_every_byte() {
        let (end, seen) = collect(Script(vec![Ok(b"ab".to_vec()), Ok(b"cd".to_vec())]), 100);
        assert_eq!(end.unwrap(), Drained::Empty);
        assert_eq!(seen, b"abcd");
    }

    #[test]
    fn interrupted_is_retried_and_zero_is_eof() {
        let script = Script(vec![
            Err(io::ErrorKind::Interrupted.into()),
            Ok(b"x".to_vec()),
            Ok(Vec::new()),
        ]);
        let (end, seen) = collect(script, 100);
        assert_eq!(end.unwrap(), Drained::Eof);
        assert_eq!(seen, b"x");
    }

    #[test]
    fn the_budget_bounds_each_read_and_the_turn() {
        let script = Script(vec![Ok(b"abcd".to_vec()), Ok(b"efgh".to_vec())]);
        let (end, seen) = collect(script, 6);
        assert_eq!(end.unwrap(), Drained::Budget);
        assert_eq!(seen, b"abcdef");
    }

    #[test]
    fn errors_end_the_loop_and_break_stops_it() {
        let script = Script(vec![
            Ok(b"a".to_vec()),
            Err(io::ErrorKind::ConnectionReset.into()),
        ]);
        let (end, seen) = collect(script, 100);
        assert_eq!(end.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(seen, b"a");

        let mut source = Script(vec![Ok(b"ab".to_vec()), Ok(b"cd".to_vec())]);
        let mut buf = [0; 4];
        let end = read_until_would_block(&mut source, &mut buf, 100, |chunk| {
            assert!(chunk.short);
            ControlFlow::Break(chunk.bytes.len())
        });
        assert_eq!(end.unwrap(), Drained::Stopped(2));
    }
}
