//! What the server prints, and how printing never stops the loop.
//!
//! The notes' server does `print data.strip()` for every chunk, which (1)
//! costs a write system call per message, (2) copies whatever a client
//! sends, escape sequences included, onto the operator's terminal, and (3)
//! blocks the whole server whenever whoever reads stdout is slow. Here:
//!
//! - Each loop formats its turn's lines into a staging buffer, and hands the
//!   buffer to a bounded [queue](queue) once per turn, just before it sleeps
//!   in `poll`: output appears promptly, and a busy turn that prints a
//!   thousand lines costs one hand-off and at most one `write(2)`, made by the
//!   queue's writer thread, never by the loop.
//! - When the queue is full (`--output-buffer`), the loop stops reading from
//!   clients until it is down to half (`--output-full block`, the default:
//!   nothing is lost), or drops whole lines and counts them
//!   (`--output-full drop`).
//! - Every byte a client chose is escaped before it is printed
//!   ([`write_escaped`]), so no client can act on the operator's terminal.
//! - The sink is any `Write`: stdout for the binary, a file (`--output`,
//!   reopened on `SIGHUP`), or [`MemorySink`] for a test that wants to read
//!   what would have been printed.
//!
//! stdout carries only what the protocol promises (lines and connection
//! events); diagnostics go to stderr through [`diagnostics`], which is
//! bounded and non-blocking the same way.

pub(crate) mod diagnostics;
pub(crate) mod queue;

use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::proto::write_escaped;
use crate::serve::close::CloseReason;
use queue::{Closed, OutputQueue, Sink};

/// Staged output is handed to the queue once a turn, or as soon as it
/// reaches this size, so that staging never holds much beyond the bound.
const STAGE_LIMIT: usize = 64 * 1024;

/// If `fd` is a pipe, asks the kernel for a larger one (1 MiB instead of
/// 64 KiB): the writer and the reader then take turns far less often. A
/// pipe's size belongs to the pipe, not to our end of it, and a reader never
/// notices; if the kernel refuses (a lower `pipe-max-size`), nothing changes.
fn grow_pipe(fd: &std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    const PIPE_SIZE: libc::c_int = 1024 * 1024;
    // SAFETY: fcntl(2) on a descriptor we own; F_SETPIPE_SZ takes an int and
    // fails harmlessly (EBADF) on anything but a pipe.
    unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE);
    }
}

/// Where printed output goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OutputTarget {
    /// Standard output (`--output -`).
    #[default]
    Stdout,
    /// Appended to this file, created with mode 0640 if missing, and reopened
    /// on `SIGHUP` (`--output FILE`).
    File(PathBuf),
}

/// What to do when the output queue is full (`--output-full`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFull {
    /// Stop reading from clients until the queue is down to half: nothing is
    /// lost, and TCP flow control slows the senders.
    #[default]
    Block,
    /// Keep reading and echoing; drop whole lines that do not fit, and count
    /// them (`lines_dropped`).
    Drop,
}

impl std::str::FromStr for OutputFull {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "block" => Ok(OutputFull::Block),
            "drop" => Ok(OutputFull::Drop),
            other => Err(format!("invalid policy '{other}' (expected block or drop)")),
        }
    }
}

/// How lines and connection events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `[127.0.0.1:50312] hello`, plus `* [peer] open` and `* [peer] close: eof`.
    #[default]
    Tagged,
    /// What the notes' server prints: each line with surrounding whitespace stripped,
    /// and `----------------` after each client.
    Plain,
    /// One JSON object per line: `{"event":"line","peer":"...","line":"..."}`;
    /// events `open`, `line` and `close` (with a `reason`).
    Json,
    /// Nothing at all (for benchmarks).
    None,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "tagged" => Ok(Format::Tagged),
            "plain" => Ok(Format::Plain),
            "json" => Ok(Format::Json),
            "none" => Ok(Format::None),
            other => Err(format!(
                "invalid format '{other}' (expected tagged, plain, json or none)"
            )),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Tagged => "tagged",
            Format::Plain => "plain",
            Format::Json => "json",
            Format::None => "none",
        })
    }
}

/// The notes' separator, printed after each client in `plain` format.
pub const SEPARATOR: &str = "----------------";

/// The server's printed output, as one loop sees it: a format, a staging
/// buffer, and the queue it feeds.
pub(crate) struct Output {
    format: Format,
    staged: Vec<u8>,
    queue: OutputQueue,
    policy: OutputFull,
    /// Whether the sink is a file that `SIGHUP` reopens.
    reopenable: bool,
    /// Lines dropped (`--output-full drop`) since the start, and since the
    /// last time that was logged.
    dropped_total: u64,
    dropped_unlogged: u64,
    /// Where this loop's last push ended, in everything ever queued.
    pushed_end: u64,
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output")
            .field("format", &self.format)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl Output {
    /// Output in `format` to `target`, through a queue of at most `limit`
    /// bytes, with its own writer thread.
    pub fn start(
        format: Format,
        target: &OutputTarget,
        limit: usize,
        policy: OutputFull,
    ) -> io::Result<Output> {
        let (sink, reopenable) = match target {
            OutputTarget::Stdout => {
                // A descriptor of our own for the writer thread: blocking
                // writes, and the shell's file description left as it is.
                use std::os::fd::AsFd;
                let fd = io::stdout().as_fd().try_clone_to_owned()?;
                grow_pipe(&fd);
                (Sink::Stream(Box::new(std::fs::File::from(fd))), false)
            }
            OutputTarget::File(path) => (Sink::file(path)?, true),
        };
        Self::with_sink(format, sink, limit, policy, reopenable)
    }

    /// Output to any `Write` (a test's [`MemorySink`], `io::sink()`).
    pub fn to_writer(
        format: Format,
        writer: Box<dyn Write + Send>,
        limit: usize,
        policy: OutputFull,
    ) -> io::Result<Output> {
        Self::with_sink(format, Sink::Stream(writer), limit, policy, false)
    }

    fn with_sink(
        format: Format,
        sink: Sink,
        limit: usize,
        policy: OutputFull,
        reopenable: bool,
    ) -> io::Result<Output> {
        Ok(Output {
            format,
            staged: Vec::with_capacity(queue::BUFFER_CAPACITY),
            queue: OutputQueue::spawn(sink, limit, "selectd-output", true)?,
            policy,
            reopenable,
            dropped_total: 0,
            dropped_unlogged: 0,
            pushed_end: 0,
        })
    }

    /// Another loop's view of the same output: its own staging buffer,
    /// the same queue and writer (several loops, one output).
    pub fn share(&self) -> Output {
        Output {
            format: self.format,
            staged: Vec::with_capacity(queue::BUFFER_CAPACITY),
            queue: self.queue.clone(),
            policy: self.policy,
            reopenable: self.reopenable,
            dropped_total: 0,
            dropped_unlogged: 0,
            pushed_end: 0,
        }
    }

    /// The loop to wake when the queue has room again, empties, or closes.
    pub fn add_waker(&self, waker: Arc<mio::Waker>) {
        self.queue.add_waker(waker);
    }

    /// A client connected.
    pub fn open(&mut self, peer: &str) {
        match self.format {
            Format::Tagged => self.emit(|w| {
                w.write_all(b"* [")?;
                write_escaped(w, peer.as_bytes(), false)?;
                w.write_all(b"] open\n")
            }),
            Format::Json => self.emit(|w| {
                w.write_all(b"{\"event\":\"open\",\"peer\":\"")?;
                write_escaped(w, peer.as_bytes(), true)?;
                w.write_all(b"\"}\n")
            }),
            Format::Plain | Format::None => {}
        }
    }

    /// A client sent a line (`text` is without its terminator).
    pub fn line(&mut self, peer: &str, text: &[u8]) {
        match self.format {
            Format::Tagged => self.emit(|w| {
                w.write_all(b"[")?;
                write_escaped(w, peer.as_bytes(), false)?;
                w.write_all(b"] ")?;
                write_escaped(w, text, false)?;
                w.write_all(b"\n")
            }),
            Format::Plain => self.emit(|w| {
                write_escaped(w, crate::proto::command::strip(text), false)?;
                w.write_all(b"\n")
            }),
            Format::Json => self.emit(|w| {
                w.write_all(b"{\"event\":\"line\",\"peer\":\"")?;
                write_escaped(w, peer.as_bytes(), true)?;
                w.write_all(b"\",\"line\":\"")?;
                write_escaped(w, text, true)?;
                w.write_all(b"\"}\n")
            }),
            Format::None => {}
        }
    }

    /// A client's connection closed, for `reason`.
    pub fn close(&mut self, peer: &str, reason: CloseReason) {
        match self.format {
            Format::Tagged => self.emit(|w| {
                w.write_all(b"* [")?;
                write_escaped(w, peer.as_bytes(), false)?;
                writeln!(w, "] close: {reason}")
            }),
            Format::Plain => self.emit(|w| writeln!(w, "{SEPARATOR}")),
            Format::Json => self.emit(|w| {
                w.write_all(b"{\"event\":\"close\",\"peer\":\"")?;
                write_escaped(w, peer.as_bytes(), true)?;
                writeln!(w, "\",\"reason\":\"{reason}\"}}")
            }),
            Format::None => {}
        }
    }

    /// Hands what this turn printed to the writer. The loop calls this once
    /// per turn, before it sleeps in `poll`, and once more before it stops.
    pub fn flush(&mut self) {
        if let Some(end) = self.queue.push(&mut self.staged) {
            self.pushed_end = end;
        }
    }

    /// Hands over what is staged and waits up to `timeout` for everything
    /// to be written; `true` if it was. Not for a running loop: for the end
    /// of one, and for tests.
    pub fn wait_written(&mut self, timeout: std::time::Duration) -> bool {
        self.flush();
        let deadline = std::time::Instant::now() + timeout;
        while !self.queue.written_up_to(self.pushed_end) && self.queue.closed().is_none() {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        true
    }

    /// Bytes this loop printed that are not written yet (with what other
    /// loops queued before them).
    pub fn unwritten(&self) -> u64 {
        self.queue.unwritten_before(self.pushed_end) + self.staged.len() as u64
    }

    /// The queue is over its bound and the policy is to stop reading.
    pub fn is_full(&self) -> bool {
        self.policy == OutputFull::Block && self.pending() >= self.queue.limit()
    }

    /// Asks to be woken once the queue is down to half; `false` if it
    /// already is (then there is no need to stop reading).
    pub fn pause_producers(&self) -> bool {
        self.queue.pause_producers()
    }

    /// The queue is down to half its bound (reading may resume).
    pub fn has_room(&self) -> bool {
        self.pending() <= self.queue.limit() / 2
    }

    /// Bytes printed and not yet written (staged, queued or being written).
    pub fn pending(&self) -> usize {
        self.queue.pending() + self.staged.len()
    }

    /// Asks to be woken once everything is written; `true` if it already is
    /// (or never can be).
    pub fn want_drained(&mut self) -> bool {
        self.flush();
        self.queue.want_drained(self.pushed_end)
    }

    /// Whether the output was closed by its reader (`EPIPE`).
    pub fn closed(&self) -> Option<Closed> {
        self.queue.closed()
    }

    /// `SIGHUP`: everything printed so far goes to the current file, what
    /// follows to a file newly opened at the same path. `false` if the output
    /// is not a file.
    pub fn reopen(&mut self) -> bool {
        if !self.reopenable {
            return false;
        }
        self.flush();
        self.queue.reopen();
        true
    }

    /// Lines dropped since the start (`--output-full drop`).
    pub fn dropped(&self) -> u64 {
        self.dropped_total
    }

    /// Logs how many lines were dropped, once output flows again.
    pub fn report_drops(&mut self) {
        if self.dropped_unlogged > 0 && self.has_room() {
            log::warn!(
                "output was full: dropped {} lines (lines_dropped={})",
                self.dropped_unlogged,
                self.dropped_total
            );
            self.dropped_unlogged = 0;
        }
    }

    /// Formats one record into the staging buffer, or drops it whole when
    /// the queue is full and the policy is to drop.
    fn emit(&mut self, write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) {
        if self.policy == OutputFull::Drop && self.pending() >= self.queue.limit() {
            self.dropped_total += 1;
            self.dropped_unlogged += 1;
            return;
        }
        // Writing to a `Vec` cannot fail.
        let _ = write(&mut self.staged);
        if self.staged.len() >= STAGE_LIMIT {
            self.flush();
        }
    }
}

/// A sink that keeps everything written to it in memory, shareable across
/// threads: give a clone to [`crate::Server::with_output`] and read it back.
#[derive(Debug, Clone, Default)]
pub struct MemorySink(Arc<Mutex<Vec<u8>>>);

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far, as (lossy) UTF-8 text.
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.lock()).into_owned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A panic elsewhere while holding the lock leaves bytes that are
        // still valid bytes; keep them readable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Write for MemorySink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printed(format: Format, run: impl FnOnce(&mut Output)) -> String {
        let sink = MemorySink::new();
        let mut output =
            Output::to_writer(format, Box::new(sink.clone()), 1 << 20, OutputFull::Block).unwrap();
        run(&mut output);
        output.flush();
        assert!(
            output
                .queue
                .wait_drained(std::time::Duration::from_secs(10))
        );
        sink.contents()
    }

    #[test]
    fn a_full_queue_drops_whole_lines_and_counts_them() {
        // A sink that never takes anything: the queue fills and stays full.
        struct Stalled;
        impl Write for Stalled {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok(0)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut output =
            Output::to_writer(Format::Tagged, Box::new(Stalled), 100, OutputFull::Drop).unwrap();
        for _ in 0..50 {
            output.line("127.0.0.1:5", b"0123456789");
            output.flush();
        }
        assert!(output.dropped() > 0);
        assert!(!output.is_full(), "dropping never stops reading");
        // Whole lines only: what was kept is a whole number of records.
        let record = "[127.0.0.1:5] 0123456789\n".len();
        assert_eq!(output.pending() % record, 0, "{}", output.pending());
        assert!(output.pending() < 100 + record);
    }

    #[test]
    fn a_full_queue_blocks_reading_until_half_is_written() {
        let sink = MemorySink::new();
        let mut output =
            Output::to_writer(Format::None, Box::new(sink), 100, OutputFull::Block).unwrap();
        assert!(!output.is_full());
        output.staged.extend_from_slice(&[b'x'; 150]);
        assert!(output.is_full());
        output.flush();
        assert!(
            output
                .queue
                .wait_drained(std::time::Duration::from_secs(10))
        );
        assert!(!output.is_full());
        assert!(output.has_room());
    }

    #[test]
    fn tagged_format() {
        let text = printed(Format::Tagged, |o| {
            o.open("127.0.0.1:5");
            o.line("127.0.0.1:5", b"hello");
            o.close("127.0.0.1:5", CloseReason::Eof);
        });
        assert_eq!(
            text,
            "* [127.0.0.1:5] open\n[127.0.0.1:5] hello\n* [127.0.0.1:5] close: eof\n"
        );
    }

    #[test]
    fn plain_format_is_the_notes() {
        let text = printed(Format::Plain, |o| {
            o.open("p");
            o.line("p", b"  hello \t");
            o.close("p", CloseReason::Disconnect);
        });
        assert_eq!(text, "hello\n----------------\n");
    }

    #[test]
    fn json_format() {
        let text = printed(Format::Json, |o| {
            o.open("[::1]:5");
            o.line("[::1]:5", b"a \"q\"");
            o.close("[::1]:5", CloseReason::Idle);
        });
        assert_eq!(
            text,
            concat!(
                "{\"event\":\"open\",\"peer\":\"[::1]:5\"}\n",
                "{\"event\":\"line\",\"peer\":\"[::1]:5\",\"line\":\"a \\\"q\\\"\"}\n",
                "{\"event\":\"close\",\"peer\":\"[::1]:5\",\"reason\":\"idle\"}\n"
            )
        );
    }

    #[test]
    fn none_prints_nothing() {
        let text = printed(Format::None, |o| {
            o.open("p");
            o.line("p", b"x");
            o.close("p", CloseReason::Eof);
        });
        assert_eq!(text, "");
    }
}
