//! Where one loop is in its life, as two small state machines.
//!
//! A loop serves, then stops gracefully (no new clients; those connected
//! finish what they sent, within the grace period), perhaps is told to stop
//! at once (a second signal), and is done. Apart from that, at any time, its
//! reading may be paused because the output is full: a stopping loop may be
//! paused too (and must be, for a stop behind a stalled output to lose
//! nothing), so the pause is a second machine, not a state of the first.
//! Every change goes through `EventLoop::set_lifecycle` or
//! `EventLoop::set_reading`, which `--trace-loop` narrates
//! (`loop: serving -> stopping`).

use std::fmt;
use std::time::Instant;

use super::EventLoop;
use crate::serve::trace;

/// The loop's life, in order: each state only ever moves to a later one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lifecycle {
    /// Accepting clients and serving them.
    Serving,
    /// Stopping gracefully: listeners closed, clients finishing, replies
    /// and output flushed, until `grace_until` at the latest.
    Stopping { grace_until: Instant },
    /// Told to stop at once (a second signal): every client is closed,
    /// output is not waited for.
    StoppingNow,
    /// The last turn is over.
    Done,
}

impl Lifecycle {
    /// Whether the loop has begun to stop (in any way).
    pub(super) fn is_stopping(self) -> bool {
        self != Lifecycle::Serving
    }

    /// The end of the grace period, while stopping gracefully.
    pub(super) fn grace_until(self) -> Option<Instant> {
        match self {
            Lifecycle::Stopping { grace_until } => Some(grace_until),
            _ => None,
        }
    }
}

impl fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lifecycle::Serving => "serving",
            Lifecycle::Stopping { .. } => "stopping",
            Lifecycle::StoppingNow => "stopping now",
            Lifecycle::Done => "done",
        })
    }
}

/// Whether the loop reads its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reading {
    /// Clients are read as their data arrives.
    Open,
    /// The output is full (`--output-full block`): no client is read, and no
    /// client's idle or line clock runs, until the writer makes room.
    PausedForOutput,
}

impl fmt::Display for Reading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reading::Open => "reading",
            Reading::PausedForOutput => "paused for output",
        })
    }
}

impl EventLoop {
    /// The one place the loop's life changes; `--trace-loop` says so.
    pub(super) fn set_lifecycle(&mut self, next: Lifecycle) {
        if next == self.lifecycle {
            return;
        }
        if self.ctx.config.trace_loop {
            trace::emit(format_args!("  loop: {} -> {next}", self.lifecycle));
        }
        self.lifecycle = next;
    }

    /// The one place reading pauses or resumes; `--trace-loop` says so.
    pub(super) fn set_reading(&mut self, next: Reading) {
        if next == self.reading {
            return;
        }
        if self.ctx.config.trace_loop {
            trace::emit(format_args!("  loop: {} -> {next}", self.reading));
        }
        self.reading = next;
        self.ctx.counters.reading_paused = u64::from(self.reading_paused());
        // The clients' clocks stop or start again: deadlines change.
        self.wake_stale = true;
    }

    /// Whether reading is paused for output.
    pub(super) fn reading_paused(&self) -> bool {
        self.reading == Reading::PausedForOutput
    }
}
