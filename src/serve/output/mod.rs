//! What the server prints, and how printing never stops the loop.
//!
//! The notes' server does `print data.strip()` for every chunk, which (1)
//! costs a write system call per message, (2) copies whatever a client
//! sends, escape sequences included, onto the operator's terminal, and (3)
//! blocks the whole server whenever whoever reads stdout is slow. Here:
//!
//! - Each loop formats its lines into a staging buffer, and hands the
//!   buffer itself to a bounded [queue](queue) when it is full or the loop
//!   is about to sleep in `poll`: output appears promptly, and a busy turn
//!   that prints a thousand lines costs one hand-off and at most one
//!   `writev(2)`, made by the queue's writer thread, never by the loop.
//! - When the queue is full (`--output-buffer`), the loop stops reading from
//!   clients until it is down to half (`--output-full block`, the default:
//!   nothing is lost), or drops whole lines and counts them
//!   (`--output-full drop`).
//! - Each format has a printer of its own ([`printer`]); the peer is
//!   rendered for it once per connection ([`PeerLabel`]), and every byte a
//!   client chose is escaped before it is printed
//!   ([`escape_into`](crate::proto::escape_into)), so no client can act on
//!   the operator's terminal.
//! - The sink is any `Write`: stdout for the binary, a file (`--output`,
//!   reopened on `SIGHUP`), or [`MemorySink`] for a test that wants to read
//!   what would have been printed.
//!
//! stdout carries only what the protocol promises (lines and connection
//! events); diagnostics go to stderr through [`diagnostics`], which is
//! bounded and non-blocking the same way.

pub(crate) mod diagnostics;
mod label;
mod memory;
mod options;
mod printer;
pub(crate) mod queue;
pub(crate) mod writer;

use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::proto::escape::is_plain;
use crate::proto::escape_into;
use crate::serve::close::CloseReason;
use crate::serve::stats::Counters;
use printer::{Printer, Prints};
use queue::{Closed, OutputQueue};
use writer::Sink;

pub(crate) use label::PeerLabel;
pub use memory::MemorySink;
pub use options::{Format, OutputFull, OutputTarget, SEPARATOR};

/// Staged output is handed to the queue (the buffer itself, moved) as soon
/// as it holds this much, before a record could make it outgrow its
/// capacity; otherwise before the loop sleeps.
const BATCH: usize = queue::BUFFER_CAPACITY - 4 * 1024;

/// What a loop stages is handed to the writer at most this often, unless
/// it makes a batch (`BATCH`) first: the first line after a quiet moment
/// goes at once, the lines that follow it within this time go together
/// (Nagle's rule for a pipe: one hand-off and one `writev` per interval,
/// however many turns the loop makes in it). A loop that holds staged
/// output sleeps no longer than this, so nothing waits longer than about
/// twice this. Five milliseconds, as for the counters: unnoticeable to
/// whoever reads the output, and a client echoing one line at a time (a
/// message every 70 µs on loopback) then costs the loop and the writer one
/// hand-off per seventy lines, not per fifteen.
pub(crate) const HAND_OVER_EVERY: Duration = Duration::from_millis(5);

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

/// Records dropped by `--output-full drop`: client lines and connection
/// events apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Dropped {
    lines: u64,
    events: u64,
}

/// The server's printed output, as one loop sees it: a printer for the
/// format, a staging buffer, and the queue it feeds.
pub(crate) struct Output {
    printer: &'static dyn Printer,
    prints: Prints,
    format: Format,
    staged: Vec<u8>,
    queue: OutputQueue,
    policy: OutputFull,
    /// Whether the sink is a file that `SIGHUP` reopens.
    reopenable: bool,
    /// Dropped since the start, and since the last time that was logged.
    dropped: Dropped,
    dropped_unlogged: Dropped,
    /// Where this loop's last push ended, in everything ever queued.
    pushed_end: u64,
    /// Something was pushed without waking the writer: wake it before the
    /// loop sleeps.
    unannounced: bool,
    /// What is staged waits for this instant to be handed over (see
    /// `HAND_OVER_EVERY`); `None`: nothing was handed over lately, the
    /// next turn's output goes at once.
    hold_until: Option<Instant>,
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
        let queue = OutputQueue::spawn(sink, limit, "selectd-output", true)?;
        Ok(Self::feeding(format, queue, policy, reopenable))
    }

    fn feeding(format: Format, queue: OutputQueue, policy: OutputFull, reopenable: bool) -> Output {
        let printer = printer::for_format(format);
        Output {
            printer,
            prints: printer.prints(),
            format,
            staged: Vec::with_capacity(queue::BUFFER_CAPACITY),
            queue,
            policy,
            reopenable,
            dropped: Dropped::default(),
            dropped_unlogged: Dropped::default(),
            pushed_end: 0,
            unannounced: false,
            hold_until: None,
        }
    }

    /// Another loop's view of the same output: its own staging buffer,
    /// the same queue and writer (several loops, one output).
    pub fn share(&self) -> Output {
        Self::feeding(
            self.format,
            self.queue.clone(),
            self.policy,
            self.reopenable,
        )
    }

    /// The loop to wake when the queue has room again, empties, or closes.
    pub fn add_waker(&self, waker: Arc<mio::Waker>) {
        self.queue.add_waker(waker);
    }

    /// `peer` rendered for this output's format: escaped once here, so that
    /// printing copies it as it is. An address (almost every peer) needs no
    /// escaping and is kept as formatted.
    pub fn label(&self, peer: &impl fmt::Display) -> PeerLabel {
        let raw = peer.to_string();
        let json = self.printer.json_peer();
        if is_plain(raw.as_bytes(), json) {
            return PeerLabel::new(raw);
        }
        let mut escaped = Vec::with_capacity(raw.len() + 16);
        escape_into(&mut escaped, raw.as_bytes(), json);
        PeerLabel::new(String::from_utf8_lossy(&escaped).into_owned())
    }

    /// A client connected.
    pub fn open(&mut self, peer: &PeerLabel) {
        if self.prints.opens && self.keeps(false) {
            self.printer.open(&mut self.staged, peer);
            self.staged_one();
        }
    }

    /// A client sent a line (`text` is without its terminator).
    pub fn line(&mut self, peer: &PeerLabel, text: &[u8]) {
        if self.prints.lines && self.keeps(true) {
            self.printer.line(&mut self.staged, peer, text);
            self.staged_one();
        }
    }

    /// A client's connection closed, for `reason`.
    pub fn close(&mut self, peer: &PeerLabel, reason: CloseReason) {
        if self.prints.closes && self.keeps(false) {
            self.printer.close(&mut self.staged, peer, reason);
            self.staged_one();
        }
    }

    /// The loop is about to sleep in `poll`: hand what this turn printed to
    /// the writer, and wake it if it sleeps. Called once more before the
    /// loop stops.
    pub fn flush(&mut self) {
        if self.staged.is_empty() {
            if self.unannounced {
                self.queue.nudge();
            }
        } else if let Some(end) = self.queue.push(&mut self.staged, true) {
            self.pushed_end = end;
        }
        self.unannounced = false;
    }

    /// A turn is over, at `now`. What is staged goes to the writer if it
    /// makes a batch, or if nothing went for `HAND_OVER_EVERY`; otherwise it
    /// is held, so that the lines of many turns go in one hand-off and one
    /// `writev(2)`, and the loop may sleep no longer than the returned
    /// time (`sleeping`: the loop is about to sleep in `poll`).
    ///
    /// Per turn this costs a comparison of instants, inline: nothing
    /// printed (`--format none`), or lines held for the next hand-off. The
    /// lock and the writer's wake-up come at most once per interval.
    #[inline]
    pub fn end_turn(&mut self, sleeping: bool, now: Instant) -> Option<Duration> {
        if !self.unannounced && self.dropped_unlogged == Dropped::default() {
            if self.staged.is_empty() {
                return None;
            }
            if self.staged.len() < BATCH && self.hold_until.is_some_and(|until| now < until) {
                return Some(HAND_OVER_EVERY);
            }
        }
        self.end_turn_slowly(sleeping, now)
    }

    /// `end_turn`'s other cases: drops to report, a batch to hand over, a
    /// writer to wake, the interval over.
    #[cold]
    fn end_turn_slowly(&mut self, sleeping: bool, now: Instant) -> Option<Duration> {
        self.report_drops();
        if self.staged.is_empty() {
            if sleeping && self.unannounced {
                self.flush();
            }
            return None;
        }
        if self.hold_until.is_some_and(|until| now < until) {
            if self.staged.len() >= BATCH {
                self.hand_over();
            }
            if sleeping && self.unannounced {
                // A batch went without waking the writer: it may write it
                // while the rest waits.
                self.queue.nudge();
                self.unannounced = false;
            }
            return Some(HAND_OVER_EVERY);
        }
        self.flush();
        self.hold_until = Some(now + HAND_OVER_EVERY);
        None
    }

    /// Queues what is staged without waking a sleeping writer (unless
    /// enough waits): the loop goes on producing and flushes before it
    /// sleeps.
    fn hand_over(&mut self) {
        if let Some(end) = self.queue.push(&mut self.staged, false) {
            self.pushed_end = end;
            self.unannounced = true;
        }
    }

    /// Hands over what is staged and waits up to `timeout` for everything
    /// to be written; `true` if it was. Not for a running loop: for the end
    /// of one, and for tests.
    pub fn wait_written(&mut self, timeout: Duration) -> bool {
        self.flush();
        let deadline = Instant::now() + timeout;
        while !self.queue.written_up_to(self.pushed_end) && self.queue.closed().is_none() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
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
    pub fn pause_producers(&mut self) -> bool {
        // What is staged counts against the bound: let the writer have it.
        self.flush();
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

    /// Whether the output can no longer be written: its reader went away
    /// (`EPIPE`), or its writer died.
    pub fn closed(&self) -> Option<Closed> {
        self.queue.closed()
    }

    /// Says on stderr, in one line, why the output closed; of all the loops
    /// that call this, only the first does.
    pub fn report_closed(&self) {
        if let Some(report) = self.queue.closed_report() {
            diagnostics::line(format_args!("{report}"));
        }
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

    /// Copies what this loop dropped (`--output-full drop`) since the start
    /// into its counters: client lines and connection events apart.
    pub fn count_drops(&self, counters: &mut Counters) {
        counters.lines_dropped = self.dropped.lines;
        counters.events_dropped = self.dropped.events;
    }

    /// Logs how many records were dropped, once output flows again (at the
    /// end of a turn).
    fn report_drops(&mut self) {
        let Dropped { lines, events } = self.dropped_unlogged;
        if lines + events > 0 && self.has_room() {
            log::warn!(
                "output was full: dropped {lines} lines and {events} connection events \
                 (lines_dropped={} events_dropped={})",
                self.dropped.lines,
                self.dropped.events
            );
            self.dropped_unlogged = Dropped::default();
        }
    }

    /// Whether a record may be staged; if not (the queue is full and the
    /// policy is to drop), it is counted as dropped, a client's line or a
    /// connection event.
    fn keeps(&mut self, line: bool) -> bool {
        if self.policy == OutputFull::Block || self.pending() < self.queue.limit() {
            return true;
        }
        let (total, unlogged) = if line {
            (&mut self.dropped.lines, &mut self.dropped_unlogged.lines)
        } else {
            (&mut self.dropped.events, &mut self.dropped_unlogged.events)
        };
        *total += 1;
        *unlogged += 1;
        false
    }

    /// A record was staged: a full buffer goes to the writer at once (the
    /// buffer itself, not a copy).
    fn staged_one(&mut self) {
        if self.staged.len() >= BATCH {
            self.hand_over();
        }
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
        assert!(output.queue.wait_drained(Duration::from_secs(10)));
        sink.contents()
    }

    #[test]
    fn a_full_queue_drops_whole_lines_and_counts_them() {
        // A sink that never takes anything: the queue fills and stays full.
        struct Stalled;
        impl Write for Stalled {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                std::thread::sleep(Duration::from_secs(3600));
                Ok(0)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut output =
            Output::to_writer(Format::Tagged, Box::new(Stalled), 100, OutputFull::Drop).unwrap();
        let peer = output.label(&"127.0.0.1:5");
        for _ in 0..50 {
            output.line(&peer, b"0123456789");
            output.flush();
        }
        output.close(&peer, CloseReason::Eof);
        let mut counters = Counters::default();
        output.count_drops(&mut counters);
        assert!(counters.lines_dropped > 0);
        assert_eq!(counters.events_dropped, 1, "an event is no line");
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
        assert!(output.queue.wait_drained(Duration::from_secs(10)));
        assert!(!output.is_full());
        assert!(output.has_room());
    }

    #[test]
    fn tagged_format() {
        let text = printed(Format::Tagged, |o| {
            let peer = o.label(&"127.0.0.1:5");
            o.open(&peer);
            o.line(&peer, b"hello");
            o.close(&peer, CloseReason::Eof);
        });
        assert_eq!(
            text,
            "* [127.0.0.1:5] open\n[127.0.0.1:5] hello\n* [127.0.0.1:5] close: eof\n"
        );
    }

    #[test]
    fn plain_format_is_the_notes() {
        let text = printed(Format::Plain, |o| {
            let peer = o.label(&"p");
            o.open(&peer);
            o.line(&peer, b"  hello \t");
            o.close(&peer, CloseReason::Disconnect);
        });
        assert_eq!(text, "hello\n----------------\n");
    }

    #[test]
    fn json_format() {
        let text = printed(Format::Json, |o| {
            let peer = o.label(&"[::1]:5");
            o.open(&peer);
            o.line(&peer, b"a \"q\"");
            o.close(&peer, CloseReason::Idle);
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
            let peer = o.label(&"p");
            o.open(&peer);
            o.line(&peer, b"x");
            o.close(&peer, CloseReason::Eof);
        });
        assert_eq!(text, "");
    }

    /// The first line after a quiet moment goes to the writer at once; the
    /// lines that follow within `HAND_OVER_EVERY` are held (the loop is told
    /// how long it may sleep) and go together once it has passed.
    #[test]
    fn staged_lines_go_at_once_then_together_each_interval() {
        let sink = MemorySink::new();
        let mut output = Output::to_writer(
            Format::Tagged,
            Box::new(sink.clone()),
            1 << 20,
            OutputFull::Block,
        )
        .unwrap();
        let peer = output.label(&"p");
        let start = Instant::now();
        output.line(&peer, b"first");
        assert_eq!(output.end_turn(true, start), None);
        assert!(output.staged.is_empty(), "the first line went at once");
        for (turn, sleeping) in [(1, true), (2, false), (3, true)] {
            output.line(&peer, format!("held {turn}").as_bytes());
            let now = start + HAND_OVER_EVERY / 4 * turn;
            let bound = output.end_turn(sleeping, now);
            assert_eq!(bound, Some(HAND_OVER_EVERY), "turn {turn}");
        }
        assert!(!output.staged.is_empty(), "held for one hand-off");
        assert_eq!(output.end_turn(true, start + HAND_OVER_EVERY), None);
        assert!(output.staged.is_empty(), "handed over together");
        assert_eq!(
            output.end_turn(true, start + HAND_OVER_EVERY * 3),
            None,
            "nothing staged, nothing to wait for"
        );
        assert!(output.wait_written(Duration::from_secs(10)));
        assert_eq!(
            sink.contents(),
            "[p] first\n[p] held 1\n[p] held 2\n[p] held 3\n"
        );
    }

    /// A peer that needs escaping (a Unix socket path can hold anything) is
    /// escaped once, for the format: inert on a terminal, valid in JSON.
    #[test]
    fn a_peer_is_rendered_once_for_its_format() {
        let peer = "unix:/tmp/a\"b\x1b[2J";
        let text = printed(Format::Tagged, |o| {
            let label = o.label(&peer);
            assert_eq!(&*label, r#"unix:/tmp/a"b\u{1b}[2J"#);
            o.line(&label, b"x");
        });
        assert_eq!(text, "[unix:/tmp/a\"b\\u{1b}[2J] x\n");
        let text = printed(Format::Json, |o| {
            let label = o.label(&peer);
            o.open(&label);
        });
        let parsed: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(parsed["peer"], r#"unix:/tmp/a"b\u{1b}[2J"#);
    }

    /// Output from several loops, pushed as whole buffers and small pieces,
    /// arrives whole and in each loop's order.
    #[test]
    fn buffers_moved_and_copied_arrive_in_order() {
        let text = printed(Format::Tagged, |o| {
            let peer = o.label(&"p");
            for i in 0..20_000 {
                o.line(&peer, format!("line {i}").as_bytes());
                if i % 7_000 == 0 {
                    o.flush();
                } else if i % 3 == 0 {
                    o.end_turn(false, Instant::now());
                }
            }
        });
        let expected: String = (0..20_000).map(|i| format!("[p] line {i}\n")).collect();
        assert!(
            text == expected,
            "{} bytes, {} expected",
            text.len(),
            expected.len()
        );
    }
}
