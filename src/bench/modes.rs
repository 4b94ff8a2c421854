//! One turn of a connection in each mode: what it does when its socket is
//! ready (or its schedule says a line is due).
//!
//! A turn reads first, then writes (read first: a reply that completes a
//! message lets the next message go out in the same turn), and both go to
//! `WouldBlock`, because the sockets are edge-triggered: a readiness left
//! unconsumed is never reported again.

use std::time::Instant;

use super::BenchError;
use super::config::{BenchConfig, Target};
use super::conn::{Conn, drain, push_message, write_some};
use super::plan::{Schedule, Window};
use super::record::{Measured, Sent};

/// How lines are paced.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pace {
    /// Closed loop: a new line as soon as one comes back.
    Closed,
    /// Open loop: lines go out on this schedule.
    Open(Schedule),
    /// Open loop before the schedule starts (connections still connecting).
    NotYet,
}

/// What a turn shares with every connection's turn.
pub(crate) struct Ctx<'a> {
    pub(crate) config: &'a BenchConfig,
    /// The server, resolved.
    pub(crate) target: &'a Target,
    pub(crate) window: Window,
    pub(crate) pace: Pace,
}

/// Messages completed: inside the measured window, and in all.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Count {
    pub(crate) in_window: u64,
    pub(crate) all: u64,
}

impl std::ops::AddAssign for Count {
    fn add_assign(&mut self, other: Count) {
        self.in_window += other.in_window;
        self.all += other.all;
    }
}

/// Bytes one ingest connection writes per turn before letting the others go.
const INGEST_TURN: usize = 256 * 1024;

/// One turn of an echo connection: read and verify, record completed round
/// trips, top the pipeline up, write.
pub(crate) fn echo_turn(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    scratch: &mut [u8],
    measured: &mut Measured,
) -> Result<Count, BenchError> {
    let completed = read_echoes(conn, ctx, scratch, measured)?;
    top_up(conn, ctx, Instant::now());
    if let Some(stream) = conn.stream.as_mut() {
        conn.echo.flush(stream, conn.id)?;
    }
    Ok(completed)
}

/// Reads until `WouldBlock`, verifying every byte; records each message
/// the bytes complete. An early close is an error.
pub(crate) fn read_echoes(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    scratch: &mut [u8],
    measured: &mut Measured,
) -> Result<Count, BenchError> {
    let Conn {
        id, stream, echo, ..
    } = conn;
    let Some(stream) = stream.as_mut() else {
        return Ok(Count::default());
    };
    let mut completed = Count::default();
    let open = drain(
        stream,
        scratch,
        |got| {
            let done = echo.verify(got, ctx.config.size, *id)?;
            let now = Instant::now();
            let done = (done as usize).min(echo.in_flight.len());
            for sent in echo.in_flight.drain(..done) {
                if ctx.window.counts(now) {
                    measured.round_trip(sent, now);
                    completed.in_window += 1;
                } else if unanswered_at_the_end(ctx, sent, now) {
                    measured.round_trip(sent, ctx.window.end);
                }
                completed.all += 1;
            }
            Ok(())
        },
        *id,
    )?;
    if !open {
        return Err(BenchError::Closed {
            conn: *id,
            received: echo.echoed,
        });
    }
    Ok(completed)
}

/// Open loop: a reply read in the last turn, after the window closed (the
/// loop wakes on whole milliseconds), was still unanswered at its end: it
/// counts as such, as the lines that never came back do (see the worker's
/// `count_unanswered`).
fn unanswered_at_the_end(ctx: &Ctx<'_>, sent: Sent, now: Instant) -> bool {
    matches!(ctx.pace, Pace::Open(_)) && now >= ctx.window.end && sent.intended < ctx.window.end
}

/// Queues lines until `--pipeline` are in flight: at once in the closed
/// loop; in the open loop only those the schedule has made due, each
/// stamped with when it was due.
fn top_up(conn: &mut Conn, ctx: &Ctx<'_>, now: Instant) {
    while conn.echo.in_flight.len() < ctx.config.pipeline {
        let sent = match ctx.pace {
            Pace::Closed => Sent::now(now),
            Pace::NotYet => return,
            Pace::Open(schedule) => {
                let due = schedule.due(conn.slot, conn.started);
                if due > now {
                    return;
                }
                Sent {
                    intended: due,
                    actual: now,
                }
            }
        };
        conn.echo.queue(conn.id, ctx.config.size, sent);
        conn.started += 1;
    }
}

/// The lines every ingest connection writes, over and over: about 64 KiB of
/// whole lines (at least one), each with its own sequence number.
pub(crate) fn ingest_block(size: usize) -> Vec<u8> {
    let lines = (64 * 1024 / size).max(1);
    let mut block = Vec::with_capacity(lines * size);
    for seq in 0..lines {
        push_message(&mut block, 0, seq as u64, size);
    }
    block
}

/// One turn of an ingest connection: drop whatever the server sent, then
/// write up to [`INGEST_TURN`] bytes. Returns lines completed and whether
/// the turn ended before `WouldBlock` (so it must be resumed).
pub(crate) fn ingest_turn(
    conn: &mut Conn,
    ctx: &Ctx<'_>,
    block: &[u8],
    scratch: &mut [u8],
) -> Result<(Count, bool), BenchError> {
    let Some(stream) = conn.stream.as_mut() else {
        return Ok((Count::default(), false));
    };
    if !drain(stream, scratch, |_| Ok(()), conn.id)? {
        return Err(BenchError::Closed {
            conn: conn.id,
            received: 0,
        });
    }
    let size = ctx.config.size as u64;
    let before = conn.ingested;
    let mut budget = INGEST_TURN;
    while budget > 0 {
        let at = (conn.ingested % block.len() as u64) as usize;
        let chunk = &block[at..(at + budget).min(block.len())];
        let n = write_some(stream, chunk, conn.id)?;
        conn.ingested += n as u64;
        budget -= n;
        if n < chunk.len() {
            break;
        }
    }
    let all = conn.ingested / size - before / size;
    let lines = Count {
        all,
        in_window: if ctx.window.counts(Instant::now()) {
            all
        } else {
            0
        },
    };
    Ok((lines, budget == 0))
}

/// An event on an idle connection: drain it; `Some(reason)` if the server
/// closed it or it failed.
pub(crate) fn idle_turn(conn: &mut Conn, scratch: &mut [u8]) -> Option<String> {
    let stream = conn.stream.as_mut()?;
    match drain(stream, scratch, |_| Ok(()), conn.id) {
        Ok(true) => None,
        Ok(false) => Some(format!("connection {} closed by the server", conn.id)),
        Err(e) => Some(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_block_is_whole_lines() {
        for size in [1, 64, 100_000] {
            let block = ingest_block(size);
            assert_eq!(block.len() % size, 0);
            assert!(!block.is_empty());
        }
    }
}
