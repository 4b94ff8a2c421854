//! What every connection of one loop shares, lent to each in turn.
//!
//! A handler needs, besides its own connection, a few things that belong to
//! the loop: the registry (to change its interest), the output, the
//! settings, the counters, and the way to ask for a stop. They live in one
//! struct so that the loop can lend them while it holds one connection out of
//! its slab: two disjoint borrows, no macro, no `RefCell`.

use std::io::{self, Write};

use mio::Registry;

use crate::serve::config::Config;
use crate::serve::output::Output;
use crate::serve::shared::SharedRef;
use crate::serve::stats::Counters;

/// What a connection may touch besides itself while it handles an event:
/// the loop's state that every connection shares. It is a struct of its own
/// so that the loop can lend it while it holds one connection from its slab.
pub(crate) struct Context {
    pub registry: Registry,
    pub output: Output,
    pub config: Config,
    /// Set when a client's `stop` is accepted; the loop acts on it after
    /// the current batch of events.
    pub stop_requested: bool,
    pub counters: Counters,
    /// What every loop of this server shares, and which loop this is.
    pub shared: SharedRef,
    pub reactor: usize,
}

impl Context {
    /// The reply to `stats`: the whole server's counters (this loop's live,
    /// the others' as last published) and, with several loops, how many
    /// connections each holds.
    pub(crate) fn stats_reply(&mut self, reply: &mut [u8]) -> usize {
        self.counters.lines_dropped = self.output.dropped();
        // One copy of every loop's counters, so the fields of one reply
        // agree (the total open is the sum of the per-loop figures).
        let by_loop = self.shared.by_loop(Some((self.reactor, &self.counters)));
        let totals = Counters::sum(&by_loop);
        let mut cursor = io::Cursor::new(reply);
        let _ = write!(cursor, "stats {totals}");
        if by_loop.len() > 1 {
            let _ = write!(cursor, " reactors={} open_by_reactor=", by_loop.len());
            for (index, counters) in by_loop.iter().enumerate() {
                let separator = if index == 0 { "" } else { "," };
                let _ = write!(cursor, "{separator}{}", counters.open);
            }
        }
        let _ = write!(cursor, "\r\n");
        cursor.position() as usize
    }
}
