//! `--trace-loop`: the reactor, narrated in the notes' terms.
//!
//! A learner who knows `select(inputs, [], [], TIMEOUT)` can watch each turn
//! of the loop on stderr: how long `poll` was allowed to sleep (the nearest
//! deadline), which sockets it returned and why, and what was done:
//!
//! ```text
//! poll(timeout=4.998s) -> 2 events: [listener tcp://127.0.0.1:10001 readable] [conn 7 127.0.0.1:50312 readable]
//!   accepted conn 8 127.0.0.1:50313
//!   conn 7 127.0.0.1:50312: read 12 bytes, 2 lines, wrote 12 bytes
//!   conn 7 127.0.0.1:50312: closed: idle
//! ```
//!
//! When the flag is off, the reactor checks one `bool` per turn and per
//! event and formats nothing.

use std::fmt::{self, Write as _};
use std::time::Duration;

use mio::event::Event;

use crate::serve::stats::Counters;

/// How a `poll` time-out reads: `4.998s`, or `forever` when nothing is due.
pub fn timeout(timeout: Option<Duration>) -> String {
    match timeout {
        Some(duration) => format!("{:.3}s", duration.as_secs_f64()),
        None => "forever".into(),
    }
}

/// The readiness an event reports, as words: `readable writable read-closed`.
pub fn readiness(event: &Event) -> String {
    let mut words = Vec::new();
    let flags = [
        (event.is_readable(), "readable"),
        (event.is_writable(), "writable"),
        (event.is_read_closed(), "read-closed"),
        (event.is_write_closed(), "write-closed"),
        (event.is_error(), "error"),
    ];
    for (set, word) in flags {
        if set {
            words.push(word);
        }
    }
    if words.is_empty() {
        words.push("spurious");
    }
    words.join(" ")
}

/// The header line of a turn: `poll(timeout=...) -> N events: [..] [..]`.
pub fn turn(timeout: Option<Duration>, described: &[String]) -> String {
    let mut line = format!(
        "poll(timeout={}) -> {} event{}",
        self::timeout(timeout),
        described.len(),
        if described.len() == 1 { "" } else { "s" }
    );
    if !described.is_empty() {
        line.push(':');
        for event in described {
            let _ = write!(line, " [{event}]");
        }
    }
    line
}

/// What one connection event did, from the counters before and after:
/// `read 12 bytes, 2 lines, wrote 12 bytes` (or `nothing to do`).
pub fn work(before: &Counters, after: &Counters) -> String {
    let mut parts = Vec::new();
    let read = after.bytes_in - before.bytes_in;
    let lines = after.lines - before.lines;
    let wrote = after.bytes_out - before.bytes_out;
    if read > 0 {
        parts.push(format!("read {read} bytes"));
    }
    if lines > 0 {
        parts.push(format!("{lines} line{}", if lines == 1 { "" } else { "s" }));
    }
    if wrote > 0 {
        parts.push(format!("wrote {wrote} bytes"));
    }
    if parts.is_empty() {
        parts.push("nothing to do".into());
    }
    parts.join(", ")
}

thread_local! {
    /// With several loops, which one this thread runs (each line says so).
    static REACTOR: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Lines traced on this thread start with `r1 `, `r2 `, ...: loop `index`
/// (counted from 0) is `r{index + 1}`.
pub fn set_reactor(index: usize) {
    REACTOR.with(|reactor| reactor.set(Some(index + 1)));
}

/// Writes one trace line to stderr.
pub fn emit(line: fmt::Arguments<'_>) {
    match REACTOR.with(std::cell::Cell::get) {
        Some(reactor) => crate::serve::output::diagnostics::line(format_args!("r{reactor} {line}")),
        None => crate::serve::output::diagnostics::line(line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_lines_read_like_select() {
        let events = vec![
            "listener tcp://127.0.0.1:10001 readable".to_string(),
            "conn 7 127.0.0.1:50312 readable".to_string(),
        ];
        assert_eq!(
            turn(Some(Duration::from_millis(4998)), &events),
            "poll(timeout=4.998s) -> 2 events: [listener tcp://127.0.0.1:10001 readable] \
             [conn 7 127.0.0.1:50312 readable]"
        );
        assert_eq!(turn(None, &[]), "poll(timeout=forever) -> 0 events");
    }

    #[test]
    fn work_is_summarised() {
        let before = Counters::default();
        let after = Counters {
            bytes_in: 12,
            lines: 2,
            bytes_out: 12,
            ..Counters::default()
        };
        assert_eq!(
            work(&before, &after),
            "read 12 bytes, 2 lines, wrote 12 bytes"
        );
        assert_eq!(work(&before, &before), "nothing to do");
    }
}
