//! stderr without blocking: log records, `--trace-loop` lines, counters.
//!
//! A loop that writes a log line to a stalled stderr (a terminal scrolled
//! back with Ctrl-S, a log shipper that fell behind) would stall like one
//! that prints to a stalled stdout. So diagnostics go through a queue of
//! their own, written by a thread of their own, like printed output (see
//! [`queue`](super::queue)). Unlike printed output, diagnostics are never
//! worth stopping the server for: when the queue is full, records are
//! dropped whole, counted, and the count is reported once stderr flows again.

use std::fmt;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::queue::OutputQueue;
use super::writer::Sink;

/// At most this much waits for stderr; beyond it records are dropped.
const LIMIT: usize = 1024 * 1024;

/// Bytes of diagnostics dropped and not yet reported.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The one stderr queue, started on first use; `None` if stderr cannot be
/// duplicated or the thread cannot start (then diagnostics are lost rather
/// than blocking).
fn queue() -> Option<&'static OutputQueue> {
    static QUEUE: OnceLock<Option<OutputQueue>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let fd = io::stderr().as_fd().try_clone_to_owned().ok()?;
            let sink = Sink::Stream(Box::new(std::fs::File::from(fd)));
            OutputQueue::spawn(sink, LIMIT, "selectd-stderr", false).ok()
        })
        .as_ref()
}

/// Makes the stderr queue now (its own descriptor for stderr, no thread yet):
/// done when a server is bound, so that diagnostics still reach stderr when
/// the process has run out of descriptors later (`EMFILE`, when they matter
/// most). The writer thread starts with the first record.
pub fn prepare() {
    let _ = queue();
}

/// Queues one whole record (ending in a newline) for stderr, or drops it.
pub fn write_record(record: &[u8]) {
    let Some(queue) = queue() else {
        return;
    };
    if queue.pending() + record.len() > queue.limit() {
        DROPPED.fetch_add(record.len() as u64, Ordering::Relaxed);
        return;
    }
    let dropped = DROPPED.swap(0, Ordering::Relaxed);
    let mut staged = Vec::with_capacity(record.len() + 64);
    if dropped > 0 {
        let _ = writeln!(
            staged,
            "[stderr was full: {dropped} bytes of diagnostics dropped]"
        );
    }
    staged.extend_from_slice(record);
    queue.push(&mut staged, true);
}

/// Queues one line for stderr (a newline is added).
pub fn line(args: fmt::Arguments<'_>) {
    let mut record = Vec::with_capacity(128);
    let _ = record.write_fmt(args);
    record.push(b'\n');
    write_record(&record);
}

/// Waits up to `timeout` for queued diagnostics to reach stderr; `false` if
/// they did not. For the end of a program: a stalled stderr then delays the
/// exit by at most `timeout`.
pub fn finish(timeout: Duration) -> bool {
    queue().is_none_or(|queue| queue.wait_drained(timeout))
}

/// A `Write` that queues for stderr without blocking: give it to a logger
/// (`env_logger`'s `Target::Pipe`). Each `write` should be one whole record.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_record(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
